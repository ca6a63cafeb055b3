//! A LoRA adapter's low-rank path as burnish's own launches (`shaders/lora.wgsl`,
//! `lora_params_grad.wgsl`, `lora_params_sum.wgsl`): `scale * dropout(x) A B`, with the dropout
//! mask computed from its seed inside the products.
//!
//! The composed path is a dropout launch and two of burn's tiled matrix products forward, and
//! backward four products, dropout's backward and the adds of a second gradient. Their
//! arithmetic is small (rank 8 against hidden sizes of hundreds) but burn's matrix product
//! costs about three times a launch of ours in host time (it chooses a kernel and builds its
//! argument views at every launch), and in the browser that host time is the floor of a step on
//! a GPU: with LoRA, 43% of the worker's time went to matrix products. Here: two launches
//! forward (down, then up), and backward `dt = scale g B^T`, the input's gradient (where it is
//! tracked) and the factors' gradients, summed over the rows in chunks (one more launch adds
//! the chunks up where there are several). The backward pass keeps the input and the down
//! product `t` (`[rows, rank]`), not the dropped-out input.

use burn::prelude::*;

use super::uniform;
use crate::model::DropMask;

/// Rows a thread of `lora_params_grad.wgsl` sums: a batch of 32 x 128 tokens is 16 chunks, so
/// the factors' gradients spread over ~100k threads; the page's small batches are one chunk
/// (no second pass).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
const CHUNK_ROWS: usize = 256;

uniform!(
    /// The uniform block of `lora.wgsl`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LoraUniform {
        rows: u32,
        /// The summed length.
        inner: u32,
        /// Outputs a row.
        cols: u32,
        stride_k: u32,
        stride_j: u32,
        /// 0: no mask; 1: on the input; 2: on the output.
        mode: u32,
        seed: u32,
        keep: f32,
        drop_scale: f32,
        factor: f32,
    }
);

uniform!(
    /// The uniform block of `lora_params_grad.wgsl` and `lora_params_sum.wgsl`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LoraGradUniform {
        rows: u32,
        d_in: u32,
        rank: u32,
        d_out: u32,
        chunk_rows: u32,
        chunks: u32,
        masked: u32,
        seed: u32,
        keep: f32,
        drop_scale: f32,
        factor: f32,
    }
);

/// Whether the kernels can run the adapter on input `x` (`[rows, d_in]`) with factors `a`
/// (`[d_in, rank]`) and `b` (`[rank, d_out]`): all `f32` on a wgpu device, all on an autodiff
/// device or none, matching shapes, fewer than 2^32 values in every tensor, and the gradient's
/// partial sums within the device's storage binding limit.
pub(crate) fn applies(x: &Tensor<2>, a: &Tensor<2>, b: &Tensor<2>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, d_in] = x.dims();
        let [a_in, rank] = a.dims();
        let [b_rank, d_out] = b.dims();
        let tracked = x.is_autodiff();
        // Counted in u64: usize is 32 bits on wasm32.
        let (rows, d_in, rank, d_out) = (rows as u64, d_in as u64, rank as u64, d_out as u64);
        let partials = rows.div_ceil(CHUNK_ROWS as u64) * (d_in + d_out) * rank;
        let largest = (rows * d_in.max(d_out)).max(partials);
        super::applies(&[x, a, b])
            && a.is_autodiff() == tracked
            && b.is_autodiff() == tracked
            && a_in as u64 == d_in
            && b_rank as u64 == rank
            && rows > 0
            && d_in > 0
            && rank > 0
            && d_out > 0
            && u32::try_from(largest).is_ok()
            && largest * 4 <= super::max_storage_binding(&x.device())
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, a, b);
        false
    }
}

/// `scale * (x * mask) a b` (the mask over `x`'s flat indices, none without one),
/// differentiable with respect to `x`, `a` and `b`. Call only where [`applies`] said yes.
pub(crate) fn low_rank(
    x: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    mask: Option<DropMask>,
    scale: f32,
) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::low_rank(x, a, b, mask, scale)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (a, b, mask, scale);
        unreachable!("the fused LoRA path needs the wgpu feature; `applies` said no: {x:?}")
    }
}

/// The composed reference: the mask multiplied in, two matrix products, the scale.
#[cfg(all(test, feature = "wgpu"))]
fn composed(
    x: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    mask: Option<DropMask>,
    scale: f32,
) -> Tensor<2> {
    let x = match mask {
        Some(mask) => x.clone() * mask.tensor(x.dims(), &x.device()),
        None => x,
    };
    x.matmul(a).matmul(b) * f64::from(scale)
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::{CHUNK_ROWS, LoraGradUniform, LoraUniform};
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record,
        register_input_and_params, stand_ins, tracked,
    };
    use crate::model::DropMask;

    /// The adapter's sizes, scale and mask.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        rows: u32,
        d_in: u32,
        rank: u32,
        d_out: u32,
        scale: f32,
        mask: Option<DropMask>,
    }

    impl Shape {
        /// `lora.wgsl`'s block for `rows x cols` outputs over `inner`, the right factor read at
        /// `k * stride_k + j * stride_j`, the mask in `mode`, times `factor`.
        fn product(
            &self,
            [inner, cols, stride_k, stride_j]: [u32; 4],
            mode: u32,
            factor: f32,
        ) -> LoraUniform {
            let mask = self.mask.filter(|_| mode != 0);
            LoraUniform {
                rows: self.rows,
                inner,
                cols,
                stride_k,
                stride_j,
                mode: if mask.is_some() { mode } else { 0 },
                seed: mask.map_or(0, |m| m.seed),
                keep: mask.map_or(1.0, |m| m.keep),
                drop_scale: mask.map_or(1.0, |m| m.scale),
                factor,
            }
        }
    }

    /// `lora.wgsl` on `lhs` and `rhs` by `u`: a new `[rows, cols]` tensor.
    fn product(lhs: &CubeTensor, rhs: &CubeTensor, u: &LoraUniform) -> CubeTensor {
        let (rows, cols) = (u.rows as usize, u.cols as usize);
        let out = empty_like(lhs, [rows, cols]);
        let kernel = WgslKernel::new("lora.wgsl", include_str!("../../../../shaders/lora.wgsl"))
            .uniform::<LoraUniform>();
        Launch::new(kernel, rows * cols)
            .buffer(lhs)
            .buffer(rhs)
            .buffer(&out)
            .run(u);
        out
    }

    /// Forward: the down product `t` (`[rows, rank]`) and the output.
    fn forward(
        x: &CubeTensor,
        a: &CubeTensor,
        b: &CubeTensor,
        s: &Shape,
    ) -> (CubeTensor, CubeTensor) {
        let t = product(x, a, &s.product([s.d_in, s.rank, s.rank, 1], 1, 1.0));
        let y = product(&t, b, &s.product([s.rank, s.d_out, s.d_out, 1], 0, s.scale));
        (t, y)
    }

    /// What the backward step keeps: the input, the factors and the down product.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        t: CubeTensor,
        shape: Shape,
    }

    /// The factors' gradients from the upstream gradient `g` and `dt = scale g B^T`.
    fn params_grad(state: &State, g: &CubeTensor, dt: &CubeTensor) -> (CubeTensor, CubeTensor) {
        let s = &state.shape;
        let (rows, d_in, rank, d_out) = (
            s.rows as usize,
            s.d_in as usize,
            s.rank as usize,
            s.d_out as usize,
        );
        let da = empty_like(g, [d_in, rank]);
        let db = empty_like(g, [rank, d_out]);
        let chunks = rows.div_ceil(CHUNK_ROWS);
        let total = (d_in + d_out) * rank;
        let u = LoraGradUniform {
            rows: s.rows,
            d_in: s.d_in,
            rank: s.rank,
            d_out: s.d_out,
            chunk_rows: CHUNK_ROWS as u32,
            chunks: chunks as u32,
            masked: u32::from(s.mask.is_some()),
            seed: s.mask.map_or(0, |m| m.seed),
            keep: s.mask.map_or(1.0, |m| m.keep),
            drop_scale: s.mask.map_or(1.0, |m| m.scale),
            factor: s.scale,
        };
        let partials = if chunks > 1 {
            empty_like(g, [chunks, total])
        } else {
            stand_ins::<1>(g)[0].clone()
        };
        let kernel = WgslKernel::new(
            "lora_params_grad.wgsl",
            include_str!("../../../../shaders/lora_params_grad.wgsl"),
        )
        .uniform::<LoraGradUniform>();
        Launch::new(kernel, chunks * total)
            .buffer(&state.x)
            .buffer(dt)
            .buffer(&state.t)
            .buffer(g)
            .buffer(&da)
            .buffer(&db)
            .buffer(&partials)
            .run(&u);
        if chunks > 1 {
            let kernel = WgslKernel::new(
                "lora_params_sum.wgsl",
                include_str!("../../../../shaders/lora_params_sum.wgsl"),
            )
            .uniform::<LoraGradUniform>();
            Launch::new(kernel, total)
                .buffer(&partials)
                .buffer(&da)
                .buffer(&db)
                .run(&u);
        }
        (da, db)
    }

    /// burn-autodiff's backward step of [`low_rank`]: parents input, `a`, `b`.
    #[derive(Debug)]
    struct LoraBackward;

    impl Backward<CubeBackend, 3> for LoraBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Ops {
                parents,
                node,
                state,
            } = ops;
            let g = contiguous(grads.consume::<CubeBackend>(&node));
            let s = &state.shape;
            // dt[r, j] = scale sum_c g[r, c] B[j, c]: B read along its rows.
            let dt = product(
                &g,
                &state.b,
                &s.product([s.d_out, s.rank, 1, s.d_out], 0, s.scale),
            );
            register_input_and_params(
                grads,
                parents.map(|p| p.map(|node| node.id)),
                // dx[r, i] = mask[r, i] sum_j dt[r, j] A[i, j]: A read along its rows.
                || {
                    product(
                        &dt,
                        &state.a,
                        &s.product([s.rank, s.d_in, 1, s.rank], 2, 1.0),
                    )
                },
                || params_grad(&state, &g, &dt),
            );
        }
    }

    pub(super) fn low_rank(
        x: Tensor<2>,
        a: Tensor<2>,
        b: Tensor<2>,
        mask: Option<DropMask>,
        scale: f32,
    ) -> Tensor<2> {
        let ([rows, d_in], [_, rank], [_, d_out]) = (x.dims(), a.dims(), b.dims());
        let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
        let shape = Shape {
            rows: n(rows),
            d_in: n(d_in),
            rank: n(rank),
            d_out: n(d_out),
            scale,
            mask,
        };
        if !x.is_autodiff() {
            let plain = |t: Tensor<2>| contiguous(cube_tensor(t));
            return burn_tensor(forward(&plain(x), &plain(a), &plain(b), &shape).1);
        }
        let (x, x_node) = tracked(x);
        let (a, a_node) = tracked(a);
        let (b, b_node) = tracked(b);
        let (t, y) = forward(&x, &a, &b, &shape);
        record(
            LoraBackward,
            [x_node, a_node, b_node],
            |_| State { x, a, b, t, shape },
            y,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, composed, low_rank};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::model::DropMask;
    use crate::rng::Rng;

    /// Output and the gradients of the input (when `input_grad`) and both factors of
    /// `sum(y * upstream)` for seeded values (inputs and upstream in ±1, factors in PEFT's
    /// ranges, `b` not zero so that every gradient is); the kernels launched forward and in all.
    fn run(
        device: &Device,
        [rows, d_in, rank, d_out]: [usize; 4],
        fused: bool,
        mask: Option<DropMask>,
        input_grad: bool,
    ) -> ([Vec<f32>; 4], usize, usize) {
        let mut rng = Rng::new((rows * 131 + d_in * 17 + rank * 5 + d_out) as u64);
        let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                .collect()
        };
        let tensor = |values: Vec<f32>, dims: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(values, dims), device)
        };
        let x = tensor(uniform(rows * d_in, 1.0), [rows, d_in]);
        let x = if input_grad { x.require_grad() } else { x };
        let bound = 1.0 / (d_in as f32).sqrt();
        let a = tensor(uniform(d_in * rank, bound), [d_in, rank]).require_grad();
        let b = tensor(uniform(rank * d_out, 0.1), [rank, d_out]).require_grad();
        let upstream = tensor(uniform(rows * d_out, 1.0), [rows, d_out]);
        let scale = 16.0 / rank as f32;
        let before = launched();
        let y = if fused {
            assert!(applies(&x, &a, &b), "the kernels apply");
            low_rank(x.clone(), a.clone(), b.clone(), mask, scale)
        } else {
            composed(x.clone(), a.clone(), b.clone(), mask, scale)
        };
        let forward = launched() - before;
        let grads = (y.clone() * upstream).sum().backward();
        let dx = if input_grad {
            read(x.grad(&grads).expect("x has a gradient"))
        } else {
            Vec::new()
        };
        (
            [
                read(y),
                dx,
                read(a.grad(&grads).expect("a has a gradient")),
                read(b.grad(&grads).expect("b has a gradient")),
            ],
            forward,
            launched() - before,
        )
    }

    /// Output and all three gradients through the kernels on wgpu against the composed
    /// adapter (the host's mask, burn's products) and burn-autodiff's gradients of it on flex:
    /// one row, MiniLM's query at the page's batch (64 rows) and past a chunk of rows (300 and
    /// 520: the two-pass sum), its feed-forward widths, ranks 1 to 16; with and without dropout
    /// and the input's gradient.
    #[test]
    fn fused_adapter_matches_the_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for shape in [
            [1usize, 3, 1, 2],
            [64, 384, 8, 384],
            [300, 32, 4, 48],
            [520, 24, 16, 96],
            [37, 96, 2, 384],
            [37, 384, 8, 96],
        ] {
            let chunks = shape[0].div_ceil(super::CHUNK_ROWS);
            for (p, seed) in [(0.0, 0), (0.1, 0x5eed), (0.5, 7)] {
                let mask = (p > 0.0).then(|| DropMask::new(seed, p));
                for input_grad in [true, false] {
                    let what = format!("{shape:?}, p {p}, input gradient {input_grad}");
                    let (got, forward, launches) = run(&wgpu, shape, true, mask, input_grad);
                    assert_eq!(forward, 2, "{what}: forward launches");
                    let backward = 1 + usize::from(input_grad) + 1 + usize::from(chunks > 1);
                    assert_eq!(launches, 2 + backward, "{what}: backward launches");
                    let (want, _, _) = run(&flex, shape, false, mask, input_grad);
                    for (name, (g, w)) in ["y", "dx", "da", "db"].iter().zip(got.iter().zip(&want))
                    {
                        assert_close(&format!("{what}: {name}"), g, w, 1e-4, 1e-2);
                    }
                    if p == 0.5 && input_grad && shape[0] * shape[1] >= 1000 {
                        let dropped = got[1].iter().filter(|v| **v == 0.0).count();
                        let share = dropped as f64 / got[1].len() as f64;
                        assert!((share - 0.5).abs() < 0.1, "{what}: dx dropped {share}");
                    }
                }
            }
        }
    }

    /// Without autodiff (evaluation, inference): two launches, the composed values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let device = kernels::test_device();
        let mut rng = Rng::new(11);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() - 0.5).collect() };
        let x = Tensor::<2>::from_data(TensorData::new(values(5 * 6), [5, 6]), &device);
        let a = Tensor::<2>::from_data(TensorData::new(values(6 * 2), [6, 2]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(values(2 * 7), [2, 7]), &device);
        let want = read(composed(x.clone(), a.clone(), b.clone(), None, 2.0));
        let before = launched();
        let y = read(low_rank(x, a, b, None, 2.0));
        assert_eq!(launched() - before, 2);
        assert_close("untracked y", &y, &want, 1e-5, 1e-3);
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_mismatched_factors() {
        let check = |device: &Device, x: [usize; 2], a: [usize; 2], b: [usize; 2]| {
            applies(
                &Tensor::zeros(x, device),
                &Tensor::zeros(a, device),
                &Tensor::zeros(b, device),
            )
        };
        assert!(!check(&Device::flex(), [2, 3], [3, 1], [1, 4]));
        let wgpu = kernels::test_device();
        assert!(check(&wgpu, [2, 3], [3, 1], [1, 4]));
        assert!(!check(&wgpu, [2, 3], [4, 1], [1, 4]), "input width");
        assert!(!check(&wgpu, [2, 3], [3, 2], [1, 4]), "rank");
        assert!(
            !applies(
                &Tensor::zeros([2, 3], &wgpu.clone().autodiff()),
                &Tensor::zeros([3, 1], &wgpu),
                &Tensor::zeros([1, 4], &wgpu.clone().autodiff()),
            ),
            "a tracked input with an untracked factor"
        );
    }
}
