//! A fused small dense layer (`shaders/linear.wgsl` forward, `linear_input_grad.wgsl` and
//! `linear_params_grad.wgsl` backward): `x w + b`, optionally through ReLU, in one dispatch,
//! and its gradients in two more (the input's, skipped when the input needs none; the weights'
//! and bias's together), in place of burn's tiled matrix product, bias add and ReLU (four
//! launches forward, five backward).
//!
//! Only for small products ([`small`]): the image and table classifiers' layers (at most
//! [`MAX_WEIGHTS`] weights, any batch), and the transformers' dense layers and packed
//! query/key/value projection (`kernels::qkv`, through [`wgpu`]'s functions) while a product
//! takes at most [`MAX_PRODUCT`] multiply-adds (or the limit [`set_max_product`] sets): MiniLM's layers at a few hundred tokens a batch,
//! the browser demo's sizes. The kernels are plain loops, a 4 x 4 block of outputs a thread,
//! with no workgroup memory, which is what CPU renderers run fastest and what a GPU finishes at
//! once for such sizes, where burn's product costs more in host time than in GPU time (it
//! selects and configures a kernel at every call: ~3 of our launches natively, measured). A
//! larger product keeps burn's tiled, autotuned kernel, which a GPU runs faster there.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;

use super::uniform;

/// The largest layer (`d_in x d_out` weights) the kernels take at any batch: a 256 x 256 layer.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) const MAX_WEIGHTS: usize = 1 << 16;

/// The most multiply-adds (`rows x d_in x d_out`) of a larger layer's product the kernels take:
/// MiniLM's feed-forward layers up to 227 rows (tokens in a batch), its attention output up to
/// 910. A guess until measured on a GPU: there a kernel without workgroup tiling may run a few
/// times slower than burn's tuned one, and at 2^27 multiply-adds that costs about what a
/// product's host time saves (~0.2 ms).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) const MAX_PRODUCT: u64 = 1 << 27;

/// The process's limit in place of [`MAX_PRODUCT`] ([`set_max_product`]): one wgpu runtime a
/// process (or a worker), so one limit.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
static PRODUCT_LIMIT: AtomicU64 = AtomicU64::new(MAX_PRODUCT);

/// Set how many multiply-adds a larger layer's product may take and still run on the kernels
/// (`crate::gpu::set_product_kernel_limit`).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn set_max_product(multiply_adds: u64) {
    PRODUCT_LIMIT.store(multiply_adds, Ordering::Relaxed);
}

/// The limit [`small`] applies: [`MAX_PRODUCT`] unless [`set_max_product`] changed it.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn max_product() -> u64 {
    PRODUCT_LIMIT.load(Ordering::Relaxed)
}

/// Whether the kernels take a product of `[rows, d_in]` by `[d_in, d_out]`: a small layer
/// ([`MAX_WEIGHTS`]) or a small product ([`max_product`]), every size non-zero and every index
/// within 32 bits.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn small(rows: usize, d_in: usize, d_out: usize) -> bool {
    // u64: usize is 32 bits on wasm32.
    let (rows, d_in, d_out) = (rows as u64, d_in as u64, d_out as u64);
    let weights = d_in * d_out;
    rows > 0
        && weights > 0
        && (weights <= MAX_WEIGHTS as u64 || rows * weights <= max_product())
        && u32::try_from(rows * d_in.max(d_out)).is_ok()
        && u32::try_from(weights).is_ok()
}

uniform!(
    /// The uniform block of the three dense-layer kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LinearUniform {
        rows: u32,
        d_in: u32,
        d_out: u32,
    }
);

/// Whether the kernels can run the layer on input `x` (`[rows, d_in]`), weights `w`
/// (`[d_in, d_out]`, burn's layout) and bias `b` (`[d_out]`): all `f32` on a wgpu device, all on
/// an autodiff device or none, and a [`small`] product.
pub(crate) fn applies(x: &Tensor<2>, w: &Tensor<2>, b: &Tensor<1>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, d_in] = x.dims();
        let [w_in, d_out] = w.dims();
        let tracked = x.is_autodiff();
        super::applies(&[x])
            && super::applies(&[w])
            && super::applies(&[b])
            && w.is_autodiff() == tracked
            && b.is_autodiff() == tracked
            && w_in == d_in
            && b.dims() == [d_out]
            && small(rows, d_in, d_out)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, w, b);
        false
    }
}

/// `x w + b`, through ReLU when `relu`, differentiable with respect to all three. Call only
/// where [`applies`] said yes.
pub(crate) fn linear(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::linear(x, w, b, relu)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (w, b, relu);
        unreachable!("the fused dense layer needs the wgpu feature; `applies` said no: {x:?}")
    }
}

/// Whether the kernels can take the product `x w` alone (no bias: BERT's residual projections,
/// whose bias the residual layer norm adds; the GPT's tied head): as [`applies`].
pub(crate) fn applies_product(x: &Tensor<2>, w: &Tensor<2>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, d_in] = x.dims();
        let [w_in, d_out] = w.dims();
        super::applies(&[x, w])
            && w.is_autodiff() == x.is_autodiff()
            && w_in == d_in
            && small(rows, d_in, d_out)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, w);
        false
    }
}

/// `x w`, differentiable with respect to both (the bias column of the weights' gradient kernel
/// is computed and dropped). Call only where [`applies_product`] said yes.
pub(crate) fn product(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::product_of(x, w)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = w;
        unreachable!("the fused product needs the wgpu feature; `applies_product` said no: {x:?}")
    }
}

/// The kernels on CubeCL tensors, for other kernels' autodiff steps (`kernels::qkv`): the
/// caller checked [`small`] and that every tensor is contiguous `f32` on a wgpu device.
#[cfg(feature = "wgpu")]
pub(super) mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::LinearUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record,
        register_input_and_params, stand_ins, tracked,
    };

    /// Whether the `vec4` kernels take the layer: both widths multiples of 4.
    fn vec4(u: &LinearUniform) -> bool {
        u.d_in.is_multiple_of(4) && u.d_out.is_multiple_of(4)
    }

    /// 4 x 4 blocks of outputs a thread: blocks along a side of `n`.
    fn blocks(n: usize) -> usize {
        n.div_ceil(4)
    }

    fn kernel(name: &'static str, source: &'static str, relu: bool) -> WgslKernel {
        WgslKernel::new(name, source)
            .uniform::<LinearUniform>()
            .item("relu", relu.to_string())
    }

    /// `x w (+ b)`, through ReLU when `relu`: `[rows, d_out]`.
    pub(in crate::kernels) fn product(
        x: &CubeTensor,
        w: &CubeTensor,
        b: Option<&CubeTensor>,
        relu: bool,
        u: &LinearUniform,
    ) -> CubeTensor {
        let (rows, d_out) = (u.rows as usize, u.d_out as usize);
        let y = empty_like(x, [rows, d_out]);
        let kernel = if vec4(u) {
            kernel(
                "linear4.wgsl",
                include_str!("../../../../shaders/linear4.wgsl"),
                relu,
            )
        } else {
            kernel(
                "linear.wgsl",
                include_str!("../../../../shaders/linear.wgsl"),
                relu,
            )
        }
        .item("bias", b.is_some().to_string());
        let b = b.map_or_else(|| stand_ins::<1>(x)[0].clone(), Clone::clone);
        Launch::new(kernel, blocks(rows) * blocks(d_out))
            .buffer(x)
            .buffer(w)
            .buffer(&b)
            .buffer(&y)
            .run(u);
        y
    }

    /// What the backward step keeps from the forward pass: the output only with ReLU (its
    /// gradient's mask); without, a four-value stand-in that the kernels never read.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        w: CubeTensor,
        y: CubeTensor,
        relu: bool,
        uniform: LinearUniform,
    }

    /// The input's gradient `dz w^T` (`[rows, d_in]`), `dz` the upstream gradient `dy` through
    /// ReLU's mask from the kept output `y` when `relu` (else `y` is never read).
    pub(in crate::kernels) fn input_grad(
        w: &CubeTensor,
        y: &CubeTensor,
        dy: &CubeTensor,
        relu: bool,
        u: &LinearUniform,
    ) -> CubeTensor {
        let (rows, d_in) = (u.rows as usize, u.d_in as usize);
        let dx = empty_like(dy, [rows, d_in]);
        let kernel = if vec4(u) {
            kernel(
                "linear4_input_grad.wgsl",
                include_str!("../../../../shaders/linear4_input_grad.wgsl"),
                relu,
            )
        } else {
            kernel(
                "linear_input_grad.wgsl",
                include_str!("../../../../shaders/linear_input_grad.wgsl"),
                relu,
            )
        };
        Launch::new(kernel, blocks(rows) * blocks(d_in))
            .buffer(w)
            .buffer(y)
            .buffer(dy)
            .buffer(&dx)
            .run(u);
        dx
    }

    /// The weights' and bias's gradients `x^T dz` and the column sums of `dz`, in one launch
    /// (`dz` as in [`input_grad`]).
    pub(in crate::kernels) fn params_grad(
        x: &CubeTensor,
        y: &CubeTensor,
        dy: &CubeTensor,
        relu: bool,
        u: &LinearUniform,
    ) -> (CubeTensor, CubeTensor) {
        let (d_in, d_out) = (u.d_in as usize, u.d_out as usize);
        let dw = empty_like(dy, [d_in, d_out]);
        let db = empty_like(dy, [d_out]);
        let kernel = if vec4(u) {
            kernel(
                "linear4_params_grad.wgsl",
                include_str!("../../../../shaders/linear4_params_grad.wgsl"),
                relu,
            )
        } else {
            kernel(
                "linear_params_grad.wgsl",
                include_str!("../../../../shaders/linear_params_grad.wgsl"),
                relu,
            )
        };
        Launch::new(kernel, (blocks(d_in) + 1) * blocks(d_out))
            .buffer(x)
            .buffer(y)
            .buffer(dy)
            .buffer(&dw)
            .buffer(&db)
            .run(u);
        (dw, db)
    }

    /// burn-autodiff's backward step of [`linear`]: parents input, weights, bias.
    #[derive(Debug)]
    struct LinearBackward;

    impl Backward<CubeBackend, 3> for LinearBackward {
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
            let dy = contiguous(grads.consume::<CubeBackend>(&node));
            let s = &state;
            register_input_and_params(
                grads,
                parents.map(|p| p.map(|node| node.id)),
                || input_grad(&s.w, &s.y, &dy, s.relu, &s.uniform),
                || params_grad(&s.x, &s.y, &dy, s.relu, &s.uniform),
            );
        }
    }

    /// burn-autodiff's backward step of [`product_of`]: parents input and weights.
    #[derive(Debug)]
    struct ProductBackward;

    impl Backward<CubeBackend, 2> for ProductBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Ops {
                parents,
                node,
                state,
            } = ops;
            let dy = contiguous(grads.consume::<CubeBackend>(&node));
            let s = &state;
            let [x, w] = parents.map(|p| p.map(|node| node.id));
            register_input_and_params(
                grads,
                [x, w, None],
                || input_grad(&s.w, &s.y, &dy, false, &s.uniform),
                || params_grad(&s.x, &s.y, &dy, false, &s.uniform),
            );
        }
    }

    fn uniform(x: &Tensor<2>, w: &Tensor<2>) -> LinearUniform {
        let ([rows, d_in], [_, d_out]) = (x.dims(), w.dims());
        let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
        LinearUniform {
            rows: n(rows),
            d_in: n(d_in),
            d_out: n(d_out),
        }
    }

    pub(super) fn product_of(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        let u = uniform(&x, &w);
        if !x.is_autodiff() {
            let (x, w) = (contiguous(cube_tensor(x)), contiguous(cube_tensor(w)));
            return burn_tensor(product(&x, &w, None, false, &u));
        }
        let (x, x_node) = tracked(x);
        let (w, w_node) = tracked(w);
        let y = product(&x, &w, None, false, &u);
        record(
            ProductBackward,
            [x_node, w_node],
            |y| State {
                x,
                w,
                y: stand_ins::<1>(y)[0].clone(),
                relu: false,
                uniform: u,
            },
            y,
        )
    }

    pub(super) fn linear(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
        let u = uniform(&x, &w);
        if !x.is_autodiff() {
            return burn_tensor(product(
                &contiguous(cube_tensor(x)),
                &contiguous(cube_tensor(w)),
                Some(&contiguous(cube_tensor(b))),
                relu,
                &u,
            ));
        }
        let (x, x_node) = tracked(x);
        let (w, w_node) = tracked(w);
        let (b, b_node) = tracked(b);
        let y = product(&x, &w, Some(&b), relu, &u);
        record(
            LinearBackward,
            [x_node, w_node, b_node],
            |y| State {
                x,
                w,
                y: if relu {
                    y.clone()
                } else {
                    stand_ins::<1>(y)[0].clone()
                },
                relu,
                uniform: u,
            },
            y,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{MAX_WEIGHTS, applies, linear};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, param_grads, read};
    use crate::rng::Rng;

    /// Output and the gradients of the input (when `input_grad`), weights and bias of
    /// `sum(y * upstream)` for seeded values (inputs and upstream in ±1, weights in PyTorch's
    /// default range, biases in ±0.3 so that ReLU cuts some outputs); the kernels launched
    /// forward and in all.
    fn run(
        device: &Device,
        [rows, d_in, d_out]: [usize; 3],
        fused: bool,
        relu: bool,
        input_grad: bool,
    ) -> ([Vec<f32>; 4], usize, usize) {
        let mut rng = Rng::new((rows * 131 + d_in * 17 + d_out) as u64);
        let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                .collect()
        };
        let k = 1.0 / (d_in as f32).sqrt();
        let x = Tensor::<2>::from_data(
            TensorData::new(uniform(rows * d_in, 1.0), [rows, d_in]),
            device,
        );
        let x = if input_grad { x.require_grad() } else { x };
        let w = Tensor::<2>::from_data(
            TensorData::new(uniform(d_in * d_out, k), [d_in, d_out]),
            device,
        )
        .require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(uniform(d_out, 0.3), [d_out]), device)
            .require_grad();
        let upstream = Tensor::<2>::from_data(
            TensorData::new(uniform(rows * d_out, 1.0), [rows, d_out]),
            device,
        );
        let before = launched();
        let y = if fused {
            assert!(applies(&x, &w, &b), "the kernel applies");
            linear(x.clone(), w.clone(), b.clone(), relu)
        } else {
            let z = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
            if relu {
                burn::tensor::activation::relu(z)
            } else {
                z
            }
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
                read(w.grad(&grads).expect("w has a gradient")),
                read(b.grad(&grads).expect("b has a gradient")),
            ],
            forward,
            launched() - before,
        )
    }

    /// Output and all three gradients through the kernels on wgpu against burn's matrix
    /// product, bias add and ReLU (and burn-autodiff's gradients of them) on flex: one row, one
    /// input, one output, the digits CNN's head at batch 64, sizes that fill a workgroup partly
    /// and many times, the largest small layer, MiniLM's feed-forward layers at the page's
    /// batch of 4 x 16 (products past `MAX_WEIGHTS`); widths that are multiples of 4 (the
    /// `vec4` kernels; rows too, and not) and not; with and without ReLU and the input's
    /// gradient.
    #[test]
    fn fused_linear_matches_burns_composed_layer() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for shape in [
            [1, 1, 1],
            [3, 5, 7],
            [64, 128, 64],
            [64, 64, 10],
            [130, 33, 17],
            [5, 256, 256],
            [300, 2, 3],
            [7, 12, 20],
            [64, 384, 1536],
            [64, 1536, 384],
        ] {
            for relu in [true, false] {
                for input_grad in [true, false] {
                    let what = format!("{shape:?}, relu {relu}, input gradient {input_grad}");
                    let (got, forward, launches) = run(&wgpu, shape, true, relu, input_grad);
                    assert_eq!(forward, 1, "{what}: one forward dispatch");
                    let backward = if input_grad { 2 } else { 1 };
                    assert_eq!(launches, 1 + backward, "{what}: backward dispatches");
                    let (want, _, _) = run(&flex, shape, false, relu, input_grad);
                    if relu && shape[0] * shape[2] >= 32 {
                        assert!(got[0].contains(&0.0), "{what}: ReLU cuts some outputs");
                    }
                    for (name, (g, w)) in ["y", "dx", "dw", "db"].iter().zip(got.iter().zip(&want))
                    {
                        assert_close(&format!("{what}: {name}"), g, w, 1e-4, 1e-2);
                    }
                }
            }
        }
    }

    /// The product alone against burn's `matmul` on flex (and burn-autodiff's gradients): a
    /// plain weight, MiniLM's residual projections at the page's 64 rows, and the GPT's tied
    /// head (a transposed view of the embedding, which the kernels copy once); one launch
    /// forward, one for each gradient asked for; without autodiff one launch and the same
    /// values.
    #[test]
    fn the_product_alone_matches_burns_matmul() {
        use super::{applies_product, product};
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        let values = |n: usize, seed: u64| -> Vec<f32> {
            let mut rng = Rng::new(seed);
            (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
        };
        for ([rows, d_in, d_out], transposed, input_grad) in [
            ([7, 5, 3], false, true),
            ([64, 384, 384], false, true),
            ([64, 1536, 384], false, false),
            ([33, 16, 65], true, true),
        ] {
            let what = format!("{rows} x {d_in} x {d_out}, transposed {transposed}");
            let run = |device: &Device, fused: bool| {
                let x = Tensor::<2>::from_data(
                    TensorData::new(values(rows * d_in, 1), [rows, d_in]),
                    device,
                );
                let x = if input_grad { x.require_grad() } else { x };
                let stored = if transposed {
                    [d_out, d_in]
                } else {
                    [d_in, d_out]
                };
                let param = Tensor::<2>::from_data(
                    TensorData::new(values(d_in * d_out, 2), stored),
                    device,
                )
                .require_grad();
                let w = if transposed {
                    param.clone().transpose()
                } else {
                    param.clone()
                };
                let upstream = Tensor::<2>::from_data(
                    TensorData::new(values(rows * d_out, 3), [rows, d_out]),
                    device,
                );
                let before = launched();
                let y = if fused {
                    assert!(applies_product(&x, &w), "{what}: applies");
                    product(x.clone(), w)
                } else {
                    x.clone().matmul(w)
                };
                let forward = launched() - before;
                let grads = (y.clone() * upstream).sum().backward();
                let dx = x.grad(&grads).map(read).unwrap_or_default();
                let dw = read(param.grad(&grads).expect("the weights' gradient"));
                ([read(y), dx, dw], forward, launched() - before)
            };
            let (got, forward, all) = run(&wgpu, true);
            let (want, ..) = run(&flex, false);
            assert_eq!(
                (forward, all),
                (1, 2 + usize::from(input_grad)),
                "{what}: launches"
            );
            for (name, (g, w)) in ["y", "dx", "dw"].iter().zip(got.iter().zip(&want)) {
                assert_close(&format!("{what}: {name}"), g, w, 1e-4, 1e-2);
            }
        }
        let plain = kernels::test_device();
        let x = Tensor::<2>::from_data(TensorData::new(values(12, 4), [3, 4]), &plain);
        let w = Tensor::<2>::from_data(TensorData::new(values(20, 5), [4, 5]), &plain);
        let want = read(x.clone().matmul(w.clone()));
        let before = launched();
        let got = read(product(x, w));
        assert_eq!(launched() - before, 1);
        assert_close("untracked", &got, &want, 1e-5, 1e-3);
    }

    /// Without autodiff (evaluation, inference): one dispatch, the same values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let device = kernels::test_device();
        let mut rng = Rng::new(3);
        let values: Vec<f32> = (0..4 * 6 + 6 * 5 + 5)
            .map(|_| rng.next_f32() - 0.5)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(values[..24].to_vec(), [4, 6]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(values[24..54].to_vec(), [6, 5]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(values[54..].to_vec(), [5]), &device);
        let want = read(burn::tensor::activation::relu(
            x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0),
        ));
        let before = launched();
        let y = read(linear(x, w, b, true));
        assert_eq!(launched() - before, 1);
        assert_close("untracked y", &y, &want, 1e-5, 1e-3);
    }

    /// The models' path: an MLP of three layers trains through the kernels (three dispatches
    /// forward; two backward a layer, one for the first, whose input is the data) to the logits
    /// and parameter gradients of burn's layers; none when a trainer switches them off.
    #[test]
    fn the_mlp_trains_through_the_kernels_to_the_composed_gradients() {
        use burn::optim::GradientsParams;

        use crate::model::{Masks, MlpConfig};
        let device = kernels::test_device().autodiff();
        let model = MlpConfig::new(12, 4)
            .with_hidden(vec![16, 8])
            .init(7, &device)
            .expect("valid");
        let mut rng = Rng::new(9);
        let input: Vec<f32> = (0..10 * 12).map(|_| rng.next_f32() - 0.5).collect();
        let run = |fused: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(input.clone(), [10, 12]), &device);
            let before = launched();
            let logits = model.forward_with(x, &mut Masks::none().with_fused_kernels(fused));
            let forward = launched() - before;
            let grads = GradientsParams::from_grads(logits.clone().sum().backward(), &model);
            (
                read(logits),
                param_grads(&model, &grads),
                forward,
                launched() - before,
            )
        };
        let (logits, grads, forward, launches) = run(true);
        assert_eq!((forward, launches), (3, 3 + 5));
        let (want_logits, want_grads, forward, launches) = run(false);
        assert_eq!((forward, launches), (0, 0), "switched off");
        assert_close("logits", &logits, &want_logits, 1e-5, 1e-3);
        assert_eq!(grads.len(), want_grads.len());
        for (i, (got, want)) in grads.iter().zip(&want_grads).enumerate() {
            assert!(!got.is_empty(), "parameter {i} has a gradient");
            assert_close(&format!("parameter {i}"), got, want, 1e-4, 1e-3);
        }
    }

    /// Where the kernels apply: on wgpu only, small layers at any batch, larger ones up to
    /// `MAX_PRODUCT` multiply-adds (2040 x 257 x 256 is within it, 2041 rows past it), matching
    /// shapes, the weights tracked when the input is.
    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_large_products() {
        let layer = |device: &Device, x: [usize; 2], w: [usize; 2], b: usize| {
            applies(
                &Tensor::zeros(x, device),
                &Tensor::zeros(w, device),
                &Tensor::zeros([b], device),
            )
        };
        assert!(!layer(&Device::flex(), [2, 3], [3, 4], 4));
        let wgpu = kernels::test_device();
        assert!(layer(&wgpu, [2, 3], [3, 4], 4));
        assert!(layer(
            &wgpu,
            [2, 256],
            [256, MAX_WEIGHTS / 256],
            MAX_WEIGHTS / 256
        ));
        assert!(
            layer(&wgpu, [20_000, 256], [256, 256], 256),
            "a small layer at any batch"
        );
        assert!(
            layer(&wgpu, [2040, 257], [257, 256], 256),
            "a larger layer within the product limit"
        );
        assert!(
            !layer(&wgpu, [2041, 257], [257, 256], 256),
            "past the product limit"
        );
        assert!(!layer(&wgpu, [0, 3], [3, 4], 4), "no rows");
        assert!(!layer(&wgpu, [2, 3], [4, 4], 4), "widths disagree");
        assert!(!layer(&wgpu, [2, 3], [3, 4], 5), "bias disagrees");
        assert!(
            !applies(
                &Tensor::zeros([2, 3], &wgpu.clone().autodiff()),
                &Tensor::zeros([3, 4], &wgpu),
                &Tensor::zeros([4], &wgpu.clone().autodiff()),
            ),
            "a tracked input with untracked weights"
        );
    }
}
