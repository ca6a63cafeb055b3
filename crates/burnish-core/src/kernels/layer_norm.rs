//! Fused layer normalisation (`shaders/layer_norm.wgsl` forward, `layer_norm_grad.wgsl` and
//! `layer_norm_params_grad.wgsl` backward): `(x - mean) / sqrt(var + eps) * gamma + beta` over
//! the last dimension in one dispatch, and its gradients in two more (the input's; the scale's
//! and shift's together), in place of burn 0.22's composed `layer_norm` (about ten kernels
//! forward and twenty backward, which burn-autodiff does not override).
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph,
//! keeping the input, the scale and each row's mean and reciprocal standard deviation.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the three layer-norm kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LayerNormUniform {
        rows: u32,
        cols: u32,
        epsilon: f32,
    }
);

/// Whether the kernels can normalise `x` (`[rows, cols]`) with `gamma` and `beta` (`[cols]`):
/// all `f32` on a wgpu device, all tracked by autodiff or none, fewer than 2^32 values.
pub(crate) fn applies(x: &Tensor<2>, gamma: &Tensor<1>, beta: Option<&Tensor<1>>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [rows, cols] = x.dims();
        let tracked = x.is_autodiff();
        super::applies(&[x])
            && super::applies(&[gamma])
            && beta.is_none_or(|b| super::applies(&[b]) && b.is_autodiff() == tracked)
            && gamma.is_autodiff() == tracked
            && gamma.dims() == [cols]
            && beta.is_none_or(|b| b.dims() == [cols])
            && rows > 0
            && cols > 0
            && u32::try_from(rows * cols).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (x, gamma, beta);
        false
    }
}

/// `(x - mean) / sqrt(var + epsilon) * gamma + beta` for each row of `x` (mean and biased
/// variance over the row), differentiable with respect to all three. Call only where
/// [`applies`] said yes.
pub(crate) fn layer_norm(
    x: Tensor<2>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::layer_norm(x, gamma, beta, epsilon)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (gamma, beta, epsilon);
        unreachable!("the fused layer norm needs the wgpu feature; `applies` said no: {x:?}")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::LayerNormUniform;
    use crate::kernels::registry::{
        Launch, WORKGROUP, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record,
        register_input_and_params, threads_per_row, tracked,
    };

    fn kernel(name: &'static str, source: &'static str, uniform: &LayerNormUniform) -> WgslKernel {
        WgslKernel::new(name, source)
            .uniform::<LayerNormUniform>()
            .item("threads", threads_per_row(uniform.cols).to_string())
    }

    /// The normalised rows and each row's statistics (`[rows, 2]`: mean, reciprocal standard
    /// deviation), from contiguous tensors.
    fn forward(
        x: &CubeTensor,
        gamma: &CubeTensor,
        beta: &CubeTensor,
        uniform: &LayerNormUniform,
    ) -> (CubeTensor, CubeTensor) {
        let (rows, cols) = (uniform.rows as usize, uniform.cols as usize);
        let y = empty_like(x, [rows, cols]);
        let stats = empty_like(x, [rows, 2]);
        let kernel = kernel(
            "layer_norm.wgsl",
            include_str!("../../../../shaders/layer_norm.wgsl"),
            uniform,
        );
        Launch::new(kernel, rows * threads_per_row(uniform.cols) as usize)
            .buffer(x)
            .buffer(gamma)
            .buffer(beta)
            .buffer(&y)
            .buffer(&stats)
            .run(uniform);
        (y, stats)
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        gamma: CubeTensor,
        stats: CubeTensor,
        uniform: LayerNormUniform,
    }

    /// The input's gradient from the output's (`dy`, contiguous).
    fn input_grad(state: &State, dy: &CubeTensor) -> CubeTensor {
        let (rows, cols) = (state.uniform.rows as usize, state.uniform.cols as usize);
        let dx = empty_like(&state.x, [rows, cols]);
        let kernel = kernel(
            "layer_norm_grad.wgsl",
            include_str!("../../../../shaders/layer_norm_grad.wgsl"),
            &state.uniform,
        );
        Launch::new(kernel, rows * threads_per_row(state.uniform.cols) as usize)
            .buffer(&state.x)
            .buffer(&state.gamma)
            .buffer(&state.stats)
            .buffer(dy)
            .buffer(&dx)
            .run(&state.uniform);
        dx
    }

    /// The scale's and the shift's gradients from the output's (`dy`, contiguous).
    fn params_grad(state: &State, dy: &CubeTensor) -> (CubeTensor, CubeTensor) {
        let cols = state.uniform.cols as usize;
        let dgamma = empty_like(&state.x, [cols]);
        let dbeta = empty_like(&state.x, [cols]);
        // 16 columns a workgroup (the kernel's COLS).
        let kernel = WgslKernel::new(
            "layer_norm_params_grad.wgsl",
            include_str!("../../../../shaders/layer_norm_params_grad.wgsl"),
        )
        .uniform::<LayerNormUniform>();
        Launch::new(kernel, cols.div_ceil(16) * WORKGROUP as usize)
            .buffer(&state.x)
            .buffer(&state.stats)
            .buffer(dy)
            .buffer(&dgamma)
            .buffer(&dbeta)
            .run(&state.uniform);
        (dgamma, dbeta)
    }

    /// burn-autodiff's backward step of [`layer_norm`]: parents input, scale, shift.
    #[derive(Debug)]
    struct LayerNormBackward;

    impl Backward<CubeBackend, 3> for LayerNormBackward {
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

    pub(super) fn layer_norm(
        x: Tensor<2>,
        gamma: Tensor<1>,
        beta: Option<Tensor<1>>,
        epsilon: f64,
    ) -> Tensor<2> {
        let [rows, cols] = x.dims();
        let uniform = LayerNormUniform {
            rows: u32::try_from(rows).expect("`applies` checked the size"),
            cols: u32::try_from(cols).expect("`applies` checked the size"),
            epsilon: epsilon as f32,
        };
        // No shift: a constant zero one (no gradient).
        let beta = beta.unwrap_or_else(|| Tensor::zeros([cols], &gamma.device()));
        if !x.is_autodiff() {
            let (y, _) = forward(
                &contiguous(cube_tensor(x)),
                &contiguous(cube_tensor(gamma)),
                &contiguous(cube_tensor(beta)),
                &uniform,
            );
            return burn_tensor(y);
        }
        let (x, x_node) = tracked(x);
        let (gamma, gamma_node) = tracked(gamma);
        let (beta, beta_node) = tracked(beta);
        let (y, stats) = forward(&x, &gamma, &beta, &uniform);
        record(
            LayerNormBackward,
            [x_node, gamma_node, beta_node],
            |_| State {
                x,
                gamma,
                stats,
                uniform,
            },
            y,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, layer_norm};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::rng::Rng;

    const EPS: f64 = 1e-5;

    /// Seeded values: rows of spread 3 around offsets of 0 to 3 (so the mean matters; larger
    /// ones would measure f32's cancellation, in both paths, more than the kernels), scales
    /// around 1, shifts around 0, and an upstream gradient.
    struct Case {
        rows: usize,
        cols: usize,
        x: Vec<f32>,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        upstream: Vec<f32>,
    }

    impl Case {
        fn new(rows: usize, cols: usize) -> Self {
            let mut rng = Rng::new((rows * 7919 + cols) as u64);
            let mut uniform = |n: usize, scale: f32, shift: f32| -> Vec<f32> {
                (0..n)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale + shift)
                    .collect()
            };
            let mut x = uniform(rows * cols, 3.0, 0.0);
            for (i, v) in x.iter_mut().enumerate() {
                *v += ((i / cols) % 7) as f32 * 0.5;
            }
            Self {
                rows,
                cols,
                x,
                gamma: uniform(cols, 0.5, 1.0),
                beta: uniform(cols, 0.5, 0.0),
                upstream: uniform(rows * cols, 1.0, 0.0),
            }
        }

        /// Output, and the gradients of x, gamma and beta (if any) of `sum(y * upstream)`; the
        /// kernels launched for the forward pass and in all.
        fn run(&self, device: &Device, fused: bool, with_beta: bool) -> Run {
            let [rows, cols] = [self.rows, self.cols];
            let vector =
                |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
            let x: Tensor<2> =
                Tensor::from_data(TensorData::new(self.x.clone(), [rows, cols]), device)
                    .require_grad();
            let gamma = vector(&self.gamma).require_grad();
            let beta = with_beta.then(|| vector(&self.beta).require_grad());
            let upstream: Tensor<2> =
                Tensor::from_data(TensorData::new(self.upstream.clone(), [rows, cols]), device);
            let before = launched();
            let y = if fused {
                assert!(applies(&x, &gamma, beta.as_ref()), "the kernel applies");
                layer_norm(x.clone(), gamma.clone(), beta.clone(), EPS)
            } else {
                burn::tensor::module::layer_norm(x.clone(), gamma.clone(), beta.clone(), EPS)
            };
            let forward = launched() - before;
            let grads = (y.clone() * upstream).sum().backward();
            Run {
                y: read(y),
                dx: read(x.grad(&grads).expect("x has a gradient")),
                dgamma: read(gamma.grad(&grads).expect("gamma has a gradient")),
                dbeta: beta.map(|b| read(b.grad(&grads).expect("beta has a gradient"))),
                forward,
                launches: launched() - before,
            }
        }
    }

    struct Run {
        y: Vec<f32>,
        dx: Vec<f32>,
        dgamma: Vec<f32>,
        dbeta: Option<Vec<f32>>,
        forward: usize,
        launches: usize,
    }

    /// The output and all three gradients through the kernels on wgpu against burn's composed
    /// `layer_norm` (and burn-autodiff's gradients of it) on flex: widths around each step of
    /// the threads per row (1 thread up to 32 values, 2 up to 64, ... 256 from 8,161), one
    /// value a row (zero variance), rows that fill a workgroup's last slots only partly, more
    /// rows than the scale's gradient kernel has lanes, with and without a shift.
    #[test]
    fn fused_layer_norm_matches_burns_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for (rows, cols) in [
            (1, 1),
            (3, 2),
            (5, 10),
            (7, 32),
            (4, 33),
            (300, 64),
            (6, 384),
            (33, 385),
            (4, 1000),
            (2, 8200),
            (2100, 16),
            (3, 17),
        ] {
            let case = Case::new(rows, cols);
            for with_beta in [true, false] {
                let what = format!(
                    "{rows} x {cols}{}",
                    if with_beta { "" } else { ", no shift" }
                );
                let fused = case.run(&wgpu, true, with_beta);
                assert_eq!(fused.forward, 1, "{what}: one forward dispatch");
                assert_eq!(fused.launches, 3, "{what}: and two backward");
                let composed = case.run(&flex, false, with_beta);
                let close = |name: &str, got: &[f32], want: &[f32], tol: f32| {
                    assert_close(&format!("{what}: {name}"), got, want, tol, 1.0);
                };
                close("y", &fused.y, &composed.y, 4e-6);
                // dx is a difference of terms of about rstd * dy * gamma that nearly cancel for
                // narrow rows (for two values it is ~eps), so its rounding is relatively larger.
                close("dx", &fused.dx, &composed.dx, 5e-4);
                close("dgamma", &fused.dgamma, &composed.dgamma, 1e-5);
                if let (Some(got), Some(want)) = (&fused.dbeta, &composed.dbeta) {
                    close("dbeta", got, want, 1e-5);
                }
            }
        }
    }

    /// Without autodiff (evaluation, inference): one dispatch, the same values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let case = Case::new(9, 384);
        let device = kernels::test_device();
        let x = Tensor::<2>::from_data(TensorData::new(case.x.clone(), [9, 384]), &device);
        let gamma = Tensor::<1>::from_data(TensorData::new(case.gamma.clone(), [384]), &device);
        let beta = Tensor::<1>::from_data(TensorData::new(case.beta.clone(), [384]), &device);
        let before = launched();
        let y = read(layer_norm(x, gamma, Some(beta), EPS));
        assert_eq!(launched() - before, 1);
        let composed = case.run(&Device::flex().autodiff(), false, true);
        assert_close("untracked y", &y, &composed.y, 4e-6, 1.0);
    }

    /// The models' path (`Masks::layer_norm` with a burn `LayerNorm` module, a 3-D input):
    /// the same output and gradients, reaching the module's own parameters, as burn's
    /// `LayerNorm::forward` on flex; no kernel when a trainer switches them off.
    #[test]
    fn models_normalise_through_the_kernel_with_the_modules_parameters() {
        use burn::nn::LayerNormConfig;

        use crate::model::Masks;
        let case = Case::new(10, 96);
        let run = |device: &Device, fused: bool| {
            let mut ln = LayerNormConfig::new(96).with_epsilon(EPS).init(device);
            let vector =
                |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [96]), device);
            ln.gamma = ln.gamma.map(|_| vector(&case.gamma).require_grad());
            ln.beta = ln
                .beta
                .map(|b| b.map(|_| vector(&case.beta).require_grad()));
            let x = Tensor::<3>::from_data(TensorData::new(case.x.clone(), [2, 5, 96]), device)
                .require_grad();
            let upstream =
                Tensor::<3>::from_data(TensorData::new(case.upstream.clone(), [2, 5, 96]), device);
            let before = launched();
            let y = if fused {
                Masks::none().layer_norm(&ln, EPS, x.clone())
            } else {
                ln.forward(x.clone())
            };
            let grads = (y.clone() * upstream).sum().backward();
            let beta = ln.beta.as_ref().expect("a shift");
            (
                [
                    read(y),
                    read(x.grad(&grads).expect("dx")),
                    read(
                        ln.gamma
                            .grad(&grads)
                            .expect("the module's scale has a gradient"),
                    ),
                    read(
                        beta.grad(&grads)
                            .expect("the module's shift has a gradient"),
                    ),
                ],
                launched() - before,
            )
        };
        let (fused, launches) = run(&kernels::test_device().autodiff(), true);
        assert_eq!(launches, 3);
        let (composed, _) = run(&Device::flex().autodiff(), false);
        for ((name, got), want) in ["y", "dx", "dgamma", "dbeta"]
            .iter()
            .zip(&fused)
            .zip(&composed)
        {
            assert_close(name, got, want, 5e-4, 1.0);
        }
        let x = Tensor::<3>::zeros([2, 5, 96], &kernels::test_device());
        let ln = LayerNormConfig::new(96).init(&kernels::test_device());
        let before = launched();
        let _ = Masks::none()
            .with_fused_kernels(false)
            .layer_norm(&ln, EPS, x);
        assert_eq!(launched() - before, 0, "switched off");
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_mixed_tensors() {
        let flex = Device::flex();
        let (x, g) = (
            Tensor::<2>::zeros([2, 3], &flex),
            Tensor::<1>::ones([3], &flex),
        );
        assert!(!applies(&x, &g, None));
        let wgpu = kernels::test_device();
        let x = Tensor::<2>::zeros([2, 3], &wgpu.clone().autodiff());
        assert!(
            !applies(&x, &Tensor::<1>::ones([3], &wgpu), None),
            "a tracked input with an untracked scale"
        );
        assert!(
            !applies(&x, &Tensor::<1>::ones([4], &wgpu.autodiff()), None),
            "a wrong width"
        );
    }
}
