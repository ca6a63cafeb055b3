//! A fused convolution block (`shaders/conv_pool.wgsl` forward, `conv_pool_input_grad.wgsl` and
//! `conv_pool_params_grad.wgsl` backward): 3x3 convolution (stride 1, zero padding 1) with bias,
//! ReLU and 2x2 max pooling (stride 2) in one dispatch, and its gradients in two more (the
//! input's, skipped when the input needs none; the weights' and bias's together), in place of
//! burn's composed block ([`composed`]: five or six launches forward, about a dozen backward,
//! with dense `[batch, out, height, width]` intermediates and layout copies).
//!
//! The forward pass keeps, per pooled output, which position of its window won (or that ReLU
//! cut it), a `[batch, out, height / 2, width / 2]` tensor; the backward kernels route the
//! gradient by it, so the pre-activations are never stored and the weights' gradient sums a
//! quarter of the terms of the dense convolution's.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the three convolution-block kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    ConvPoolUniform {
        batch: u32,
        c_in: u32,
        c_out: u32,
        height: u32,
        width: u32,
        pooled_h: u32,
        pooled_w: u32,
    }
);

/// Whether the kernels can run the block on input `x` (`[batch, in, height, width]`), weights
/// `w` (`[out, in, 3, 3]`) and bias `b` (`[out]`): all `f32` on a wgpu device, all on an
/// autodiff device or none, an image of at least 2x2 (one pooled output), and every count the
/// kernels index below 2^32.
pub(crate) fn applies(x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [batch, c_in, height, width] = x.dims();
        let [c_out, w_in, kh, kw] = w.dims();
        let tracked = x.is_autodiff();
        let fits = |n: usize| u32::try_from(n).is_ok();
        super::applies(&[x])
            && super::applies(&[w])
            && super::applies(&[b])
            && w.is_autodiff() == tracked
            && b.is_autodiff() == tracked
            && [w_in, kh, kw] == [c_in, 3, 3]
            && b.dims() == [c_out]
            && batch > 0
            && c_in > 0
            && c_out > 0
            && height >= 2
            && width >= 2
            && fits(batch * c_in * height * width)
            && fits(c_out * c_in * 9 + c_out)
            && fits(batch * c_out * (height / 2) * (width / 2))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, w, b);
        false
    }
}

/// `max_pool_2x2(relu(conv3x3(x, w, padding 1) + b))`, differentiable with respect to all
/// three. Call only where [`applies`] said yes.
pub(crate) fn conv_relu_pool(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::conv_relu_pool(x, w, b)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (w, b);
        unreachable!("the fused convolution block needs the wgpu feature; `applies` said no: {x:?}")
    }
}

/// The same block from burn's operations: the reference the kernels are tested against.
#[cfg(all(test, feature = "wgpu"))]
pub(crate) fn composed(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    use burn::tensor::activation::relu;
    use burn::tensor::module::{conv2d, max_pool2d};
    use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
    let z = conv2d(x, w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    max_pool2d(relu(z), MaxPoolOptions::new([2, 2]))
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::ConvPoolUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record,
        register_input_and_params, threads_per_row, tracked,
    };

    fn uniform(x: [usize; 4], c_out: usize) -> ConvPoolUniform {
        let [batch, c_in, height, width] = x;
        let n = |v: usize| u32::try_from(v).expect("`applies` checked the sizes");
        ConvPoolUniform {
            batch: n(batch),
            c_in: n(c_in),
            c_out: n(c_out),
            height: n(height),
            width: n(width),
            pooled_h: n(height / 2),
            pooled_w: n(width / 2),
        }
    }

    fn pooled_shape(u: &ConvPoolUniform) -> [usize; 4] {
        [u.batch, u.c_out, u.pooled_h, u.pooled_w].map(|v| v as usize)
    }

    /// The pooled output and each output's winning position (`arg`), from contiguous tensors.
    fn forward(
        x: &CubeTensor,
        w: &CubeTensor,
        b: &CubeTensor,
        u: &ConvPoolUniform,
    ) -> (CubeTensor, CubeTensor) {
        let out = empty_like(x, pooled_shape(u));
        let arg = empty_like(x, pooled_shape(u));
        let kernel = WgslKernel::new(
            "conv_pool.wgsl",
            include_str!("../../../../shaders/conv_pool.wgsl"),
        )
        .uniform::<ConvPoolUniform>();
        // One thread per pooled position in four output channels.
        let [batch, c_out, rows, cols] = pooled_shape(u);
        Launch::new(kernel, batch * c_out.div_ceil(4) * rows * cols)
            .buffer(x)
            .buffer(w)
            .buffer(b)
            .buffer(&out)
            .buffer(&arg)
            .run(u);
        (out, arg)
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        w: CubeTensor,
        arg: CubeTensor,
        uniform: ConvPoolUniform,
    }

    /// The input's gradient from the pooled output's (`g`, contiguous).
    fn input_grad(state: &State, g: &CubeTensor) -> CubeTensor {
        let u = &state.uniform;
        let shape = [u.batch, u.c_in, u.height, u.width].map(|v| v as usize);
        let dx = empty_like(&state.x, shape);
        let kernel = WgslKernel::new(
            "conv_pool_input_grad.wgsl",
            include_str!("../../../../shaders/conv_pool_input_grad.wgsl"),
        )
        .uniform::<ConvPoolUniform>();
        // One thread per position in four input channels.
        Launch::new(
            kernel,
            shape[0] * shape[1].div_ceil(4) * shape[2] * shape[3],
        )
        .buffer(&state.w)
        .buffer(&state.arg)
        .buffer(g)
        .buffer(&dx)
        .run(u);
        dx
    }

    /// Threads sharing each of `rows` sums of `terms` terms in the weights' gradient: about 2,048
    /// threads in all (each cross-thread step costs workgroup barriers, which CPU renderers pay
    /// dearly for: the digits CNN's second block, 512 sums of 256 terms, took 11.2 ms a step on
    /// SwiftShader at 8 threads a sum, 6.8 at 2), but at most ~1,024 terms a thread and at least
    /// ~32 (`threads_per_row`) and at most a workgroup; a power of two.
    fn params_threads(rows: usize, terms: u32) -> u32 {
        let most = threads_per_row(terms).min(PARAMS_WORKGROUP);
        let least = terms.div_ceil(1024).next_power_of_two().min(most);
        let wanted = u32::try_from(2048 / rows.max(1)).unwrap_or(u32::MAX).max(1);
        let floor_pow2 = 1 << wanted.ilog2();
        floor_pow2.clamp(least, most)
    }

    /// Threads per workgroup of `conv_pool_params_grad.wgsl`: its ten sums a thread in
    /// workgroup memory are 10 KiB at 256 threads, which WebGPU zero-fills at the start of every
    /// workgroup; SwiftShader's fill costs in proportion to the memory times the threads, so
    /// 64-thread workgroups (2.5 KiB) pay a quarter of it in all.
    const PARAMS_WORKGROUP: u32 = 64;

    /// The weights' and the bias's gradients from the pooled output's (`g`, contiguous).
    fn params_grad(state: &State, g: &CubeTensor) -> (CubeTensor, CubeTensor) {
        let u = &state.uniform;
        let (c_out, c_in) = (u.c_out as usize, u.c_in as usize);
        let dw = empty_like(&state.x, [c_out, c_in, 3, 3]);
        let db = empty_like(&state.x, [c_out]);
        let threads = params_threads(c_out * c_in, u.batch * u.pooled_h * u.pooled_w);
        let kernel = WgslKernel::new(
            "conv_pool_params_grad.wgsl",
            include_str!("../../../../shaders/conv_pool_params_grad.wgsl"),
        )
        .uniform::<ConvPoolUniform>()
        .workgroup(PARAMS_WORKGROUP)
        .item("threads", threads.to_string());
        Launch::new(kernel, c_out * c_in * threads as usize)
            .buffer(&state.x)
            .buffer(&state.arg)
            .buffer(g)
            .buffer(&dw)
            .buffer(&db)
            .run(u);
        (dw, db)
    }

    /// burn-autodiff's backward step of [`conv_relu_pool`]: parents input, weights, bias.
    #[derive(Debug)]
    struct ConvPoolBackward;

    impl Backward<CubeBackend, 3> for ConvPoolBackward {
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
            register_input_and_params(
                grads,
                parents.map(|p| p.map(|node| node.id)),
                || input_grad(&state, &g),
                || params_grad(&state, &g),
            );
        }
    }

    pub(super) fn conv_relu_pool(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
        let u = uniform(x.dims(), w.dims()[0]);
        if !x.is_autodiff() {
            let (out, _) = forward(
                &contiguous(cube_tensor(x)),
                &contiguous(cube_tensor(w)),
                &contiguous(cube_tensor(b)),
                &u,
            );
            return burn_tensor(out);
        }
        let (x, x_node) = tracked(x);
        let (w, w_node) = tracked(w);
        let (b, b_node) = tracked(b);
        let (out, arg) = forward(&x, &w, &b, &u);
        record(
            ConvPoolBackward,
            [x_node, w_node, b_node],
            |_| State {
                x,
                w,
                arg,
                uniform: u,
            },
            out,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, composed, conv_relu_pool};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, param_grads, read};
    use crate::rng::Rng;

    /// Seeded inputs in ±1, weights in PyTorch's default range, biases in ±0.3 (so some
    /// windows are all negative and ReLU cuts their gradient), and an upstream gradient.
    struct Case {
        x: [usize; 4],
        c_out: usize,
        input: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        upstream: Vec<f32>,
    }

    impl Case {
        fn new(x: [usize; 4], c_out: usize) -> Self {
            let [batch, c_in, h, w] = x;
            let mut rng = Rng::new((batch * 31 + c_in * 7 + c_out * 3 + h * w) as u64);
            let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
                (0..n)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                    .collect()
            };
            let k = 1.0 / ((c_in * 9) as f32).sqrt();
            Self {
                x,
                c_out,
                input: uniform(batch * c_in * h * w, 1.0),
                w: uniform(c_out * c_in * 9, k),
                b: uniform(c_out, 0.3),
                upstream: uniform(batch * c_out * (h / 2) * (w / 2), 1.0),
            }
        }

        /// Output and the gradients of the input (when `input_grad`), weights and bias of
        /// `sum(y * upstream)`; the kernels launched for the forward pass and in all.
        fn run(&self, device: &Device, fused: bool, input_grad: bool) -> Run {
            let [batch, c_in, h, w] = self.x;
            let x = Tensor::<4>::from_data(TensorData::new(self.input.clone(), self.x), device);
            let x = if input_grad { x.require_grad() } else { x };
            let weights = Tensor::<4>::from_data(
                TensorData::new(self.w.clone(), [self.c_out, c_in, 3, 3]),
                device,
            )
            .require_grad();
            let bias =
                Tensor::<1>::from_data(TensorData::new(self.b.clone(), [self.c_out]), device)
                    .require_grad();
            let upstream = Tensor::<4>::from_data(
                TensorData::new(self.upstream.clone(), [batch, self.c_out, h / 2, w / 2]),
                device,
            );
            let before = launched();
            let y = if fused {
                assert!(applies(&x, &weights, &bias), "the kernel applies");
                conv_relu_pool(x.clone(), weights.clone(), bias.clone())
            } else {
                composed(x.clone(), weights.clone(), bias.clone())
            };
            let forward = launched() - before;
            let grads = (y.clone() * upstream).sum().backward();
            Run {
                y: read(y),
                dx: input_grad.then(|| read(x.grad(&grads).expect("x has a gradient"))),
                dw: read(weights.grad(&grads).expect("w has a gradient")),
                db: read(bias.grad(&grads).expect("b has a gradient")),
                forward,
                launches: launched() - before,
            }
        }
    }

    struct Run {
        y: Vec<f32>,
        dx: Option<Vec<f32>>,
        dw: Vec<f32>,
        db: Vec<f32>,
        forward: usize,
        launches: usize,
    }

    /// The output and all three gradients through the kernels on wgpu against burn's composed
    /// convolution, ReLU and max pooling (and burn-autodiff's gradients of them) on flex: odd
    /// heights and widths (the last row or column pooled away, yet in the input's gradient),
    /// the smallest image (2x2: one window, every tap at the border), channels in and out, the
    /// digits CNN's two blocks at batch 64 (1 to 32 threads per weight's sum), with and without
    /// the input's gradient.
    #[test]
    fn fused_block_matches_burns_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for (x, c_out) in [
            ([2, 1, 8, 8], 3),
            ([3, 2, 7, 6], 5),
            ([1, 3, 2, 3], 4),
            ([2, 2, 5, 9], 3),
            ([64, 1, 8, 8], 16),
            ([64, 16, 4, 4], 32),
            ([5, 4, 12, 10], 6),
        ] {
            let case = Case::new(x, c_out);
            for input_grad in [true, false] {
                let what = format!("{x:?} -> {c_out}, input gradient {input_grad}");
                let fused = case.run(&wgpu, true, input_grad);
                assert_eq!(fused.forward, 1, "{what}: one forward dispatch");
                let backward = if input_grad { 2 } else { 1 };
                assert_eq!(fused.launches, 1 + backward, "{what}: backward dispatches");
                let composed = case.run(&flex, false, input_grad);
                let close = |name: &str, got: &[f32], want: &[f32]| {
                    assert_close(&format!("{what}: {name}"), got, want, 1e-4, 1e-2);
                };
                close("y", &fused.y, &composed.y);
                if fused.y.len() >= 32 {
                    assert!(fused.y.contains(&0.0), "{what}: some windows cut");
                    assert!(fused.y.iter().any(|&v| v > 0.0), "{what}: some pass");
                }
                if let (Some(got), Some(want)) = (&fused.dx, &composed.dx) {
                    close("dx", got, want);
                }
                close("dw", &fused.dw, &composed.dw);
                close("db", &fused.db, &composed.db);
            }
        }
    }

    /// Without autodiff (evaluation, inference): one dispatch, the same values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let case = Case::new([4, 3, 9, 8], 5);
        let device = kernels::test_device();
        let x = Tensor::<4>::from_data(TensorData::new(case.input.clone(), case.x), &device);
        let w = Tensor::<4>::from_data(TensorData::new(case.w.clone(), [5, 3, 3, 3]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(case.b.clone(), [5]), &device);
        let before = launched();
        let y = read(conv_relu_pool(x, w, b));
        assert_eq!(launched() - before, 1);
        let composed = case.run(&Device::flex().autodiff(), false, false);
        assert_close("untracked y", &y, &composed.y, 1e-4, 1e-2);
    }

    /// The model's path: a CNN of two blocks trains through the kernels (three dispatches for
    /// the blocks backward: the first block's input, the data, gets no gradient)
    /// to the logits and parameter gradients of burn's composed blocks; none when a trainer
    /// switches the kernels off.
    #[test]
    fn the_cnn_trains_through_the_kernels_to_the_composed_gradients() {
        use burn::optim::GradientsParams;

        use crate::model::{CnnConfig, Masks};
        let config = CnnConfig::new([2, 9, 8], 4);
        let mut rng = Rng::new(5);
        let input: Vec<f32> = (0..6 * 2 * 9 * 8).map(|_| rng.next_f32()).collect();
        let device = kernels::test_device().autodiff();
        let model = config.init(11, &device).expect("valid");
        let run = |fused: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(input.clone(), [6, 2 * 9 * 8]), &device);
            let before = launched();
            let logits = model.forward_with(x, &mut Masks::none().with_fused_kernels(fused));
            let forward = launched() - before;
            let grads = GradientsParams::from_grads(logits.clone().sum().backward(), &model);
            let launches = launched() - before;
            (read(logits), param_grads(&model, &grads), forward, launches)
        };
        let (logits, grads, forward, launches) = run(true);
        // Two blocks and the head's two dense layers (kernels/linear.rs).
        assert_eq!(forward, 2 + 2, "one dispatch a block or layer forward");
        assert_eq!(
            launches,
            4 + 3 + 4,
            "three backward for the blocks, four for the layers"
        );
        let (want_logits, want_grads, forward, launches) = run(false);
        assert_eq!((forward, launches), (0, 0), "switched off");
        assert_close("logits", &logits, &want_logits, 1e-4, 1e-2);
        assert_eq!(grads.len(), want_grads.len());
        for (i, (got, want)) in grads.iter().zip(&want_grads).enumerate() {
            assert!(!got.is_empty(), "parameter {i} has a gradient");
            assert_close(&format!("parameter {i}"), got, want, 1e-4, 1e-2);
        }
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_other_shapes() {
        let flex = Device::flex();
        let block = |device: &Device, x: [usize; 4], w: [usize; 4], b: usize| {
            applies(
                &Tensor::zeros(x, device),
                &Tensor::zeros(w, device),
                &Tensor::zeros([b], device),
            )
        };
        assert!(!block(&flex, [1, 2, 4, 4], [3, 2, 3, 3], 3));
        let wgpu = kernels::test_device();
        assert!(block(&wgpu, [1, 2, 4, 4], [3, 2, 3, 3], 3));
        assert!(!block(&wgpu, [1, 2, 4, 4], [3, 2, 5, 5], 3), "a 5x5 kernel");
        assert!(
            !block(&wgpu, [1, 2, 4, 4], [3, 1, 3, 3], 3),
            "channels disagree"
        );
        assert!(
            !block(&wgpu, [1, 2, 4, 4], [3, 2, 3, 3], 4),
            "bias disagrees"
        );
        assert!(
            !block(&wgpu, [1, 2, 1, 4], [3, 2, 3, 3], 3),
            "nothing to pool"
        );
        let tracked = wgpu.clone().autodiff();
        assert!(
            !applies(
                &Tensor::zeros([1, 2, 4, 4], &tracked),
                &Tensor::zeros([3, 2, 3, 3], &wgpu),
                &Tensor::zeros([3], &tracked),
            ),
            "a tracked input with untracked weights"
        );
    }
}
