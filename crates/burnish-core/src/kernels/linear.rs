//! A fused small dense layer (`shaders/linear.wgsl` forward, `linear_input_grad.wgsl` and
//! `linear_params_grad.wgsl` backward): `x w + b`, optionally through ReLU, in one dispatch,
//! and its gradients in two more (the input's, skipped when the input needs none; the weights'
//! and bias's together), in place of burn's tiled matrix product, bias add and ReLU (four
//! launches forward, five backward).
//!
//! Only for small layers (the image and table classifiers' MLPs, at most [`MAX_WEIGHTS`]
//! weights): the kernels are plain loops, one thread per output, with no tiling, which is what
//! CPU renderers run fastest and what a GPU finishes at once for such sizes; a large layer's
//! product keeps burn's tiled kernel.

use burn::prelude::*;

use super::uniform;

/// The largest layer (`d_in x d_out` weights) the kernels take: a 256 x 256 layer.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) const MAX_WEIGHTS: usize = 1 << 16;

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
/// an autodiff device or none, at most [`MAX_WEIGHTS`] weights, and fewer than 2^32 values.
pub(crate) fn applies(x: &Tensor<2>, w: &Tensor<2>, b: &Tensor<1>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, d_in] = x.dims();
        let [w_in, d_out] = w.dims();
        let tracked = x.is_autodiff();
        let fits = |n: usize| u32::try_from(n).is_ok();
        super::applies(&[x])
            && super::applies(&[w])
            && super::applies(&[b])
            && w.is_autodiff() == tracked
            && b.is_autodiff() == tracked
            && w_in == d_in
            && b.dims() == [d_out]
            && rows > 0
            && d_in > 0
            && d_out > 0
            && d_in * d_out <= MAX_WEIGHTS
            && fits(rows * d_in.max(d_out))
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

#[cfg(feature = "wgpu")]
mod wgpu {
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

    /// 4 x 4 blocks of outputs a thread: blocks along a side of `n`.
    fn blocks(n: usize) -> usize {
        n.div_ceil(4)
    }

    fn kernel(name: &'static str, source: &'static str, relu: bool) -> WgslKernel {
        WgslKernel::new(name, source)
            .uniform::<LinearUniform>()
            .item("relu", relu.to_string())
    }

    fn forward(
        x: &CubeTensor,
        w: &CubeTensor,
        b: &CubeTensor,
        relu: bool,
        u: &LinearUniform,
    ) -> CubeTensor {
        let (rows, d_out) = (u.rows as usize, u.d_out as usize);
        let y = empty_like(x, [rows, d_out]);
        let kernel = kernel(
            "linear.wgsl",
            include_str!("../../../../shaders/linear.wgsl"),
            relu,
        );
        Launch::new(kernel, blocks(rows) * blocks(d_out))
            .buffer(x)
            .buffer(w)
            .buffer(b)
            .buffer(&y)
            .run(u);
        y
    }

    /// What the backward step keeps from the forward pass: the output only with ReLU (its
    /// gradient's mask); without, a one-value stand-in that the kernels never read.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        w: CubeTensor,
        y: CubeTensor,
        relu: bool,
        uniform: LinearUniform,
    }

    fn input_grad(state: &State, dy: &CubeTensor) -> CubeTensor {
        let u = &state.uniform;
        let (rows, d_in) = (u.rows as usize, u.d_in as usize);
        let dx = empty_like(&state.x, [rows, d_in]);
        let kernel = kernel(
            "linear_input_grad.wgsl",
            include_str!("../../../../shaders/linear_input_grad.wgsl"),
            state.relu,
        );
        Launch::new(kernel, blocks(rows) * blocks(d_in))
            .buffer(&state.w)
            .buffer(&state.y)
            .buffer(dy)
            .buffer(&dx)
            .run(u);
        dx
    }

    fn params_grad(state: &State, dy: &CubeTensor) -> (CubeTensor, CubeTensor) {
        let u = &state.uniform;
        let (d_in, d_out) = (u.d_in as usize, u.d_out as usize);
        let dw = empty_like(&state.x, [d_in, d_out]);
        let db = empty_like(&state.x, [d_out]);
        let kernel = kernel(
            "linear_params_grad.wgsl",
            include_str!("../../../../shaders/linear_params_grad.wgsl"),
            state.relu,
        );
        Launch::new(kernel, (blocks(d_in) + 1) * blocks(d_out))
            .buffer(&state.x)
            .buffer(&state.y)
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
            register_input_and_params(
                grads,
                parents.map(|p| p.map(|node| node.id)),
                || input_grad(&state, &dy),
                || params_grad(&state, &dy),
            );
        }
    }

    pub(super) fn linear(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
        let ([rows, d_in], [_, d_out]) = (x.dims(), w.dims());
        let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
        let u = LinearUniform {
            rows: n(rows),
            d_in: n(d_in),
            d_out: n(d_out),
        };
        if !x.is_autodiff() {
            return burn_tensor(forward(
                &contiguous(cube_tensor(x)),
                &contiguous(cube_tensor(w)),
                &contiguous(cube_tensor(b)),
                relu,
                &u,
            ));
        }
        let (x, x_node) = tracked(x);
        let (w, w_node) = tracked(w);
        let (b, b_node) = tracked(b);
        let y = forward(&x, &w, &b, relu, &u);
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
    /// and many times, the largest layer taken; with and without ReLU and the input's gradient.
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

    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_large_layers() {
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
            !layer(&wgpu, [2, 257], [257, 256], 256),
            "past the size limit"
        );
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
