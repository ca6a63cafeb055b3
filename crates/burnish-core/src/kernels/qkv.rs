//! A transformer layer's query, key and value projections as one (`shaders/qkv_pack.wgsl`,
//! `shaders/qkv_parts.wgsl`): the three weights and biases packed side by side, one matrix
//! product for all three, the bias and any LoRA adapters' scaled low-rank products added in one
//! pass, straight into the packed `[rows, 3 * d_out]` form the fused self-attention reads.
//! Backward: one product for the input's gradient, one for the packed weights', one column sum
//! for the biases', one kernel cutting those back into the six parameters' gradients, and one
//! cutting out the adapters' (each where something needs it).
//!
//! The products are `kernels::linear`'s where it takes them (f32, a small product: the bias
//! then added by the product itself when no part has an extra, and the biases' sum done with
//! the weights' gradient), else burn's tiled kernel (larger batches, f16).
//!
//! It replaces three layers (a product and a bias add each), the `cat` that packs their outputs
//! for the attention kernel (three copies), and backward three products for the input's
//! gradient and the two adds that sum them, three copies of the cut gradient, three weight
//! products and three bias sums: 9 launches forward and 14 backward a layer (BERT, full
//! fine-tuning) become 3 and 4. With frozen weights (LoRA, top layers) the backward pass is the
//! input's product and the adapters' cut.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the two projection kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    QkvUniform {
        rows: u32,
        d_in: u32,
        /// d_out in the kernels' values (`vec4`s where d_out is a multiple of 4, else `f32`s).
        units: u32,
        /// Bit p set: part p has an extra (`qkv_parts.wgsl`).
        extras: u32,
        /// The extras' scales.
        s0: f32,
        s1: f32,
        s2: f32,
    }
);

/// One of the three projections: weights `w` (`[d_in, d_out]`, burn's layout), bias `b`
/// (`[d_out]`), and optionally an extra (`[rows, d_out]`) added times its scale: a LoRA
/// adapter's low-rank product.
pub(crate) struct Part {
    pub w: Tensor<2>,
    pub b: Tensor<1>,
    pub extra: Option<(Tensor<2>, f32)>,
}

/// Whether the kernels can project input `x` (`[rows, d_in]`) by `parts`: everything `f32` on a
/// wgpu device, all on an autodiff device or none, matching shapes, and the packed output
/// within the device's storage binding limit.
pub(crate) fn applies(x: &Tensor<2>, parts: &[Part; 3]) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, d_in] = x.dims();
        let d_out = parts[0].w.dims()[1];
        let tracked = x.is_autodiff();
        // The packed weights and output, counted in u64 (a 32-bit usize on wasm32).
        let packed = rows.max(d_in) as u64 * 3 * d_out as u64;
        let binding = super::max_storage_binding(&x.device());
        let part_fits = |p: &Part| {
            super::applies(&[&p.w])
                && super::applies(&[&p.b])
                && p.w.is_autodiff() == tracked
                && p.b.is_autodiff() == tracked
                && p.w.dims() == [d_in, d_out]
                && p.b.dims() == [d_out]
                && p.extra.as_ref().is_none_or(|(e, s)| {
                    super::applies(&[e])
                        && e.is_autodiff() == tracked
                        && e.dims() == [rows, d_out]
                        && s.is_finite()
                })
        };
        super::applies(&[x])
            && parts.iter().all(part_fits)
            && rows > 0
            && d_in > 0
            && d_out > 0
            && u32::try_from(packed).is_ok()
            && packed * 4 <= binding
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, parts);
        false
    }
}

/// The packed projection `[rows, 3 * d_out]`: part p's `x w + b + scale * extra` in columns
/// `p * d_out ..`, differentiable with respect to everything. With `half`, the products (the
/// forward one and the two backward) take the input, the packed weights and the upstream
/// gradient cast to f16 and give f32 (the bias, the extras and every gradient stay f32). Call
/// only where [`applies`] said yes.
pub(crate) fn project(x: Tensor<2>, parts: [Part; 3], half: bool) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::project(x, parts, half)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (parts, half);
        unreachable!("the fused projection needs the wgpu feature; `applies` said no: {x:?}")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops};
    use burn::prelude::*;
    use burn::tensor::FloatDType;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::{Part, QkvUniform};
    use crate::kernels::linear::{self, LinearUniform};
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record, stand_ins,
        tracked,
    };

    /// The layer's sizes, and how many values the kernels move as one (4: `vec4`s, where
    /// `d_out` is a multiple of 4).
    #[derive(Debug, Clone, Copy)]
    struct Dims {
        rows: usize,
        d_in: usize,
        d_out: usize,
        lanes: usize,
        half: bool,
        /// The products are `kernels::linear`'s (f32, small), not burn's.
        ours: bool,
    }

    impl Dims {
        /// The packed product's sizes for `kernels::linear`.
        fn linear(&self) -> LinearUniform {
            let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
            LinearUniform {
                rows: n(self.rows),
                d_in: n(self.d_in),
                d_out: n(3 * self.d_out),
            }
        }
    }

    /// A product's operand as the products take it: cast to f16 where they are half.
    fn operand(t: Tensor<2>, d: Dims) -> Tensor<2> {
        if d.half { t.cast(FloatDType::F16) } else { t }
    }

    /// A product's result as f32, contiguous.
    fn result(t: Tensor<2>, d: Dims) -> CubeTensor {
        let t = if d.half { t.cast(FloatDType::F32) } else { t };
        contiguous(cube_tensor(t))
    }

    /// The kernel `name` on `vec4`s or `f32`s, as `d` says.
    fn kernel(name: &'static str, source: &'static str, d: Dims) -> WgslKernel {
        let t = if d.lanes == 4 { "vec4<f32>" } else { "f32" };
        WgslKernel::new(name, source)
            .uniform::<QkvUniform>()
            .item("t", t)
    }

    /// Move the six parameters into the packed pair (`unpack` false) or back.
    fn pack(
        ws: [&CubeTensor; 3],
        bs: [&CubeTensor; 3],
        packed: [&CubeTensor; 2],
        unpack: bool,
        d: Dims,
        u: &QkvUniform,
    ) {
        let source = include_str!("../../../../shaders/qkv_pack.wgsl");
        let kernel = kernel("qkv_pack.wgsl", source, d).item("unpack", unpack.to_string());
        let threads = d.d_in * 3 * d.d_out / d.lanes;
        let launch = ws
            .into_iter()
            .chain(bs)
            .chain(packed)
            .fold(Launch::new(kernel, threads), Launch::buffer);
        launch.run(u);
    }

    /// Add the bias and the extras to the product `y` in place (`split` false), or cut the
    /// extras' gradients out of the upstream gradient `y` (`packed_b` unused).
    fn parts(
        y: &CubeTensor,
        packed_b: &CubeTensor,
        extras: [&CubeTensor; 3],
        split: bool,
        d: Dims,
        u: &QkvUniform,
    ) {
        let source = include_str!("../../../../shaders/qkv_parts.wgsl");
        let kernel = kernel("qkv_parts.wgsl", source, d).item("split", split.to_string());
        let threads = d.rows * 3 * d.d_out / d.lanes;
        let launch = [y, packed_b]
            .into_iter()
            .chain(extras)
            .fold(Launch::new(kernel, threads), Launch::buffer);
        launch.run(u);
    }

    /// The packed weights and bias of `ws`, `bs`.
    fn packed(
        ws: [&CubeTensor; 3],
        bs: [&CubeTensor; 3],
        d: Dims,
        u: &QkvUniform,
    ) -> (CubeTensor, CubeTensor) {
        let w = empty_like(ws[0], [d.d_in, 3 * d.d_out]);
        let b = empty_like(ws[0], [3 * d.d_out]);
        pack(ws, bs, [&w, &b], false, d, u);
        (w, b)
    }

    /// `x w + b + extras`, packed; also the product's operands `x` and `w` (f16 where the
    /// products are half), which the backward step reuses.
    fn forward(
        x: &CubeTensor,
        w: &CubeTensor,
        b: &CubeTensor,
        extras: [&CubeTensor; 3],
        d: Dims,
        u: &QkvUniform,
    ) -> (CubeTensor, Tensor<2>, Tensor<2>) {
        if d.ours {
            // The bias in the product when there is nothing else to add.
            let alone = u.extras == 0;
            let y = linear::wgpu::product(x, w, alone.then_some(b), false, &d.linear());
            if !alone {
                parts(&y, b, extras, false, d, u);
            }
            return (y, burn_tensor(x.clone()), burn_tensor(w.clone()));
        }
        let (x, w) = (
            operand(burn_tensor(x.clone()), d),
            operand(burn_tensor(w.clone()), d),
        );
        let y = result(x.clone().matmul(w.clone()), d);
        parts(&y, b, extras, false, d, u);
        (y, x, w)
    }

    /// What the backward step keeps: the input (the weights' gradient) and the packed weights
    /// (the input's), as the products take them (f16 where they are half).
    #[derive(Debug, Clone)]
    struct State {
        x: Tensor<2>,
        w: Tensor<2>,
        dims: Dims,
        uniform: QkvUniform,
    }

    /// burn-autodiff's backward step of [`project`]: parents the input, the three weights, the
    /// three biases and the three extras (a constant stand-in where a part has none).
    #[derive(Debug)]
    struct QkvBackward;

    impl Backward<CubeBackend, 10> for QkvBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 10>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Ops {
                parents,
                node,
                state: s,
            } = ops;
            let [x, w0, w1, w2, b0, b1, b2, e0, e1, e2] = parents.map(|p| p.map(|node| node.id));
            let (d, u) = (s.dims, s.uniform);
            let dy = contiguous(grads.consume::<CubeBackend>(&node));
            let upstream = || burn_tensor::<2>(dy.clone());
            let (ws, bs) = ([w0, w1, w2], [b0, b1, b2]);
            let weights = ws.iter().chain(&bs).any(Option::is_some);
            // burn's products take the upstream gradient as an operand (cast once for both);
            // `linear`'s kernels (no ReLU) take it as it is, and a stand-in for the output they
            // would read with ReLU.
            let operand_dy = (!d.ours && (x.is_some() || weights)).then(|| operand(upstream(), d));
            let unread = || stand_ins::<1>(&dy)[0].clone();
            if let Some(x) = x {
                let dx = match &operand_dy {
                    Some(g) => result(g.clone().matmul(s.w.clone().transpose()), d),
                    None => {
                        let w = cube_tensor(s.w.clone());
                        linear::wgpu::input_grad(&w, &unread(), &dy, false, &d.linear())
                    }
                };
                grads.register::<CubeBackend>(x, dx);
            }
            if weights {
                let (dw, db) = match operand_dy {
                    Some(g) => (
                        result(s.x.clone().transpose().matmul(g), d),
                        contiguous(cube_tensor(upstream().sum_dim(0))),
                    ),
                    None => {
                        let x = cube_tensor(s.x.clone());
                        linear::wgpu::params_grad(&x, &unread(), &dy, false, &d.linear())
                    }
                };
                let dws = [(); 3].map(|()| empty_like(&dy, [d.d_in, d.d_out]));
                let dbs = [(); 3].map(|()| empty_like(&dy, [d.d_out]));
                pack(
                    [&dws[0], &dws[1], &dws[2]],
                    [&dbs[0], &dbs[1], &dbs[2]],
                    [&dw, &db],
                    true,
                    d,
                    &u,
                );
                for (id, grad) in ws.into_iter().zip(dws).chain(bs.into_iter().zip(dbs)) {
                    if let Some(id) = id {
                        grads.register::<CubeBackend>(id, grad);
                    }
                }
            }
            let es = [e0, e1, e2];
            if es.iter().any(Option::is_some) {
                let outs = es.map(|e| match e {
                    Some(_) => empty_like(&dy, [d.rows, d.d_out]),
                    None => empty_like(&dy, [4]),
                });
                let split = QkvUniform {
                    extras: es
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.is_some())
                        .fold(0, |bits, (p, _)| bits | 1 << p),
                    ..u
                };
                let stand_in = empty_like(&dy, [4]);
                parts(
                    &dy,
                    &stand_in,
                    [&outs[0], &outs[1], &outs[2]],
                    true,
                    d,
                    &split,
                );
                for (id, grad) in es.into_iter().zip(outs) {
                    if let Some(id) = id {
                        grads.register::<CubeBackend>(id, grad);
                    }
                }
            }
        }
    }

    pub(super) fn project(x: Tensor<2>, parts: [Part; 3], half: bool) -> Tensor<2> {
        let ([rows, d_in], [_, d_out]) = (x.dims(), parts[0].w.dims());
        let d = Dims {
            rows,
            d_in,
            d_out,
            lanes: if d_out.is_multiple_of(4) { 4 } else { 1 },
            half,
            ours: !half && linear::small(rows, d_in, 3 * d_out),
        };
        let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
        let scale = |p: usize| parts[p].extra.as_ref().map_or(0.0, |(_, s)| *s);
        let u = QkvUniform {
            rows: n(rows),
            d_in: n(d_in),
            units: n(d_out / d.lanes),
            extras: (0..3)
                .filter(|&p| parts[p].extra.is_some())
                .fold(0, |bits, p| bits | 1 << p),
            s0: scale(0),
            s1: scale(1),
            s2: scale(2),
        };
        let device = x.device();
        // A part without an extra binds a stand-in the kernel never touches (four values, the
        // least a `vec4` binding takes), and hands burn's graph an untracked constant as its
        // parent.
        let stand_in = || Tensor::<2>::empty([1, 4], &device);
        let [p0, p1, p2] = parts;
        let split = |p: Part| (p.w, p.b, p.extra.map_or_else(stand_in, |(e, _)| e));
        let ((w0, b0, e0), (w1, b1, e1), (w2, b2, e2)) = (split(p0), split(p1), split(p2));
        if !x.is_autodiff() {
            let input = |t: Tensor<2>| contiguous(cube_tensor(t));
            let input1 = |t: Tensor<1>| contiguous(cube_tensor(t));
            let (ws, bs) = ([w0, w1, w2].map(input), [b0, b1, b2].map(input1));
            let es = [e0, e1, e2].map(input);
            let (w, b) = packed([&ws[0], &ws[1], &ws[2]], [&bs[0], &bs[1], &bs[2]], d, &u);
            let extras = [&es[0], &es[1], &es[2]];
            return burn_tensor(forward(&input(x), &w, &b, extras, d, &u).0);
        }
        let (x, x_node) = tracked(x);
        let [(w0, n_w0), (w1, n_w1), (w2, n_w2)] = [w0, w1, w2].map(tracked);
        let [(b0, n_b0), (b1, n_b1), (b2, n_b2)] = [b0, b1, b2].map(tracked);
        let [(e0, n_e0), (e1, n_e1), (e2, n_e2)] = [e0, e1, e2].map(tracked);
        let (w, b) = packed([&w0, &w1, &w2], [&b0, &b1, &b2], d, &u);
        let (y, x, w) = forward(&x, &w, &b, [&e0, &e1, &e2], d, &u);
        let nodes: [NodeGuard; 10] = [x_node, n_w0, n_w1, n_w2, n_b0, n_b1, n_b2, n_e0, n_e1, n_e2];
        record(
            QkvBackward,
            nodes,
            |_| State {
                x,
                w,
                dims: d,
                uniform: u,
            },
            y,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{Part, applies, project};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::rng::Rng;

    /// What trains in a case: the input's gradient (a layer above the first), the weights and
    /// biases (full fine-tuning; frozen under LoRA), and which parts carry an extra.
    #[derive(Debug, Clone, Copy)]
    struct Case {
        dims: [usize; 3],
        input_grad: bool,
        weights_grad: bool,
        extras: [bool; 3],
    }

    /// The packed output and every gradient (input, weights, biases, extras; empty where not
    /// asked for) of `sum(out * upstream)` for seeded values, through the kernels or burn's
    /// products, adds and `cat`; and the kernels launched forward and in all. `half`: the
    /// kernels' products in f16.
    fn run(device: &Device, case: Case, fused: bool, half: bool) -> (Vec<Vec<f32>>, usize, usize) {
        let [rows, d_in, d_out] = case.dims;
        let mut rng = Rng::new((rows * 131 + d_in * 17 + d_out) as u64);
        let mut values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                .collect()
        };
        let leaf = |v: Vec<f32>, dims: Vec<usize>, grad: bool| {
            let t = Tensor::<2>::from_data(TensorData::new(v, dims), device);
            if grad { t.require_grad() } else { t }
        };
        let x = leaf(values(rows * d_in, 1.0), vec![rows, d_in], case.input_grad);
        let k = 1.0 / (d_in as f32).sqrt();
        let ws: Vec<_> = (0..3)
            .map(|_| {
                leaf(
                    values(d_in * d_out, k),
                    vec![d_in, d_out],
                    case.weights_grad,
                )
            })
            .collect();
        let bs: Vec<Tensor<1>> = (0..3)
            .map(|_| {
                let b =
                    Tensor::<1>::from_data(TensorData::new(values(d_out, 0.3), [d_out]), device);
                if case.weights_grad {
                    b.require_grad()
                } else {
                    b
                }
            })
            .collect();
        let es: Vec<Option<(Tensor<2>, f32)>> = (0..3)
            .map(|p| {
                case.extras[p].then(|| {
                    (
                        leaf(values(rows * d_out, 0.5), vec![rows, d_out], true),
                        2.0 - p as f32 * 0.75,
                    )
                })
            })
            .collect();
        let upstream = Tensor::<2>::from_data(
            TensorData::new(values(rows * 3 * d_out, 1.0), [rows, 3 * d_out]),
            device,
        );
        let before = launched();
        let out = if fused {
            let parts = [0, 1, 2].map(|p| Part {
                w: ws[p].clone(),
                b: bs[p].clone(),
                extra: es[p].clone(),
            });
            assert!(applies(&x, &parts), "{case:?}: the kernels apply");
            project(x.clone(), parts, half)
        } else {
            let part = |p: usize| {
                let y = x.clone().matmul(ws[p].clone()) + bs[p].clone().unsqueeze_dim(0);
                match &es[p] {
                    Some((e, s)) => y + e.clone() * f64::from(*s),
                    None => y,
                }
            };
            Tensor::cat(vec![part(0), part(1), part(2)], 1)
        };
        let forward = launched() - before;
        let grads = (out.clone() * upstream).sum().backward();
        let mut got = vec![read(out)];
        got.push(if case.input_grad {
            read(x.grad(&grads).expect("x's gradient"))
        } else {
            Vec::new()
        });
        for p in 0..3 {
            if case.weights_grad {
                got.push(read(ws[p].grad(&grads).expect("a weight's gradient")));
                got.push(read(bs[p].grad(&grads).expect("a bias's gradient")));
            }
            if let Some((e, _)) = &es[p] {
                got.push(read(e.grad(&grads).expect("an extra's gradient")));
            }
        }
        (got, forward, launched() - before)
    }

    /// burnish's launches in a case, forward and in all: the pack; `kernels::linear`'s product
    /// (`ours`: f32 and a small product) with the bias in it and the parts' pass only for
    /// extras, or burn's product (not counted) and the parts' pass; backward `linear`'s input
    /// gradient where the input trains (else burn's product), its weights' gradient with the
    /// biases' sums (else burn's product and sum) and the unpack where weights train, and the
    /// extras' cut where any exists.
    fn launches(case: Case, ours: bool) -> (usize, usize) {
        let extras = usize::from(case.extras.contains(&true));
        let weights = usize::from(case.weights_grad);
        let forward = 1 + if ours { 1 + extras } else { 1 };
        let backward = if ours {
            usize::from(case.input_grad) + 2 * weights + extras
        } else {
            weights + extras
        };
        (forward, forward + backward)
    }

    /// Output and every gradient through the kernels on wgpu against burn's layers and `cat`
    /// on flex: full fine-tuning (weights and input train), LoRA on query and value (frozen
    /// weights, the adapters' products train) and on all three, a first layer (no input
    /// gradient), frozen layers with nothing above them; one row, MiniLM's layer at a batch of
    /// 4 x 16, sizes that fill workgroups partly, and d_in != d_out, all through
    /// `kernels::linear`'s products; MiniLM's layer at 1,200 rows (past `linear::MAX_PRODUCT`)
    /// through burn's, full and LoRA. Launches counted exactly ([`launches`]).
    #[test]
    fn packed_projection_matches_three_layers_and_cat() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        let full = |dims| Case {
            dims,
            input_grad: true,
            weights_grad: true,
            extras: [false; 3],
        };
        let lora = |dims, extras| Case {
            dims,
            input_grad: true,
            weights_grad: false,
            extras,
        };
        let cases = [
            full([1, 1, 1]),
            full([64, 384, 384]),
            full([13, 7, 5]),
            full([37, 20, 33]),
            lora([64, 48, 48], [true, false, true]),
            lora([21, 9, 12], [true, true, true]),
            lora([5, 3, 7], [false, true, false]),
            Case {
                input_grad: false,
                ..full([30, 16, 8])
            },
            Case {
                input_grad: false,
                extras: [true, false, false],
                ..lora([30, 16, 8], [false; 3])
            },
            Case {
                weights_grad: true,
                ..lora([17, 12, 12], [false, false, true])
            },
            full([1200, 384, 384]),
            lora([1200, 384, 384], [true, false, true]),
        ];
        for case in cases {
            let what = format!("{case:?}");
            let [rows, d_in, d_out] = case.dims;
            let ours = kernels::linear::small(rows, d_in, 3 * d_out);
            assert_eq!(ours, rows < 1200, "{what}: whose products");
            let (got, forward, all) = run(&wgpu, case, true, false);
            let (want, _, _) = run(&flex, case, false, false);
            assert_eq!((forward, all), launches(case, ours), "{what}: launches");
            assert_eq!(got.len(), want.len(), "{what}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{what}: value {i}"), g, w, 1e-4, 1e-2);
            }
        }
    }

    /// With half-precision products the output and every gradient are the f32 ones to f16's
    /// rounding (the operands' 11 significant bits: within 1% of a tenth of the largest value),
    /// and not bit for bit (the f16 products ran); the products are burn's (the casts too), the
    /// rest burnish's kernels as in f32.
    #[test]
    fn half_precision_products_give_the_f32_values_to_f16_rounding() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        let cases = [
            Case {
                dims: [64, 48, 48],
                input_grad: true,
                weights_grad: true,
                extras: [false; 3],
            },
            Case {
                dims: [21, 9, 12],
                input_grad: true,
                weights_grad: false,
                extras: [true, false, true],
            },
            Case {
                dims: [13, 7, 5],
                input_grad: false,
                weights_grad: true,
                extras: [false, true, false],
            },
        ];
        for case in cases {
            let what = format!("{case:?}");
            let (single, ..) = run(&wgpu, case, true, false);
            let (half, forward, all) = run(&wgpu, case, true, true);
            let (want, _, _) = run(&flex, case, false, false);
            assert_eq!(
                (forward, all),
                launches(case, false),
                "{what}: burn's products"
            );
            for (i, (g, w)) in half.iter().zip(&want).enumerate() {
                // Errors measured against a tenth of the largest value: f16's rounding is
                // relative to the operands, not to each sum of their products.
                assert_close(&format!("{what}: value {i}"), g, w, 1e-2, 0.1);
            }
            assert!(
                half.iter().zip(&single).any(|(h, s)| h != s),
                "{what}: the half path ran"
            );
        }
    }

    /// Without autodiff (evaluation, prediction) the kernels give the same packed values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let wgpu = kernels::test_device();
        let mut rng = Rng::new(9);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() - 0.5).collect() };
        let [rows, d_in, d_out] = [10, 6, 4];
        let x = Tensor::<2>::from_data(TensorData::new(values(rows * d_in), [rows, d_in]), &wgpu);
        let parts = |device: &Device, values: &mut dyn FnMut(usize) -> Vec<f32>| {
            [0, 1, 2].map(|p| Part {
                w: Tensor::from_data(TensorData::new(values(d_in * d_out), [d_in, d_out]), device),
                b: Tensor::from_data(TensorData::new(values(d_out), [d_out]), device),
                extra: (p != 1).then(|| {
                    (
                        Tensor::from_data(
                            TensorData::new(values(rows * d_out), [rows, d_out]),
                            device,
                        ),
                        0.5,
                    )
                }),
            })
        };
        let parts = parts(&wgpu, &mut values);
        let want: Vec<f32> = {
            let part = |p: &Part| {
                let y = x.clone().matmul(p.w.clone()) + p.b.clone().unsqueeze_dim(0);
                match &p.extra {
                    Some((e, s)) => y + e.clone() * f64::from(*s),
                    None => y,
                }
            };
            read(Tensor::cat(parts.iter().map(part).collect(), 1))
        };
        assert!(applies(&x, &parts));
        assert_close(
            "untracked",
            &read(project(x, parts, false)),
            &want,
            1e-5,
            1e-4,
        );
    }

    /// Not on flex, not for mismatched shapes, not across autodiff and plain tensors.
    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_mismatched_parts() {
        let part = |device: &Device, d_in: usize, d_out: usize| Part {
            w: Tensor::zeros([d_in, d_out], device),
            b: Tensor::zeros([d_out], device),
            extra: None,
        };
        let flex = Device::flex();
        let x = Tensor::<2>::zeros([4, 3], &flex);
        assert!(!applies(&x, &[0, 1, 2].map(|_| part(&flex, 3, 2))));
        let wgpu = kernels::test_device();
        let x = Tensor::<2>::zeros([4, 3], &wgpu);
        assert!(applies(&x, &[0, 1, 2].map(|_| part(&wgpu, 3, 2))));
        assert!(!applies(
            &x,
            &[part(&wgpu, 3, 2), part(&wgpu, 3, 3), part(&wgpu, 3, 2)]
        ));
        assert!(!applies(&x, &[0, 1, 2].map(|_| part(&wgpu, 4, 2))));
        let mut odd = [0, 1, 2].map(|_| part(&wgpu, 3, 2));
        odd[2].extra = Some((Tensor::zeros([5, 2], &wgpu), 1.0));
        assert!(!applies(&x, &odd), "an extra of the wrong rows");
        let mut tracked = [0, 1, 2].map(|_| part(&wgpu, 3, 2));
        tracked[1].w = Tensor::zeros([3, 2], &wgpu.clone().autodiff());
        assert!(!applies(&x, &tracked), "a weight on the autodiff device");
    }
}
