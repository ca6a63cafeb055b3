//! Fused layer normalisation (`shaders/layer_norm.wgsl` forward, `layer_norm_grad.wgsl` and
//! `layer_norm_params_grad.wgsl` backward): `(x - mean) / sqrt(var + eps) * gamma + beta` over
//! the last dimension in one dispatch, and its gradients in two more (the input's; the scale's
//! and shift's together), in place of burn 0.22's composed `layer_norm` (about ten kernels
//! forward and twenty backward, which burn-autodiff does not override).
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph,
//! keeping the input, the scale and each row's mean and reciprocal standard deviation.
//!
//! [`residual_layer_norm`] runs the same kernels in their residual mode: a post-norm
//! transformer's join `res + dropout(h + bias)` formed in the forward kernel's first pass (and
//! kept as the input), `h`'s gradient written by the input's kernel and the bias's summed by
//! the parameters' kernel, in place of the bias add, dropout, residual add and their backward
//! launches.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the three layer-norm kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LayerNormUniform {
        rows: u32,
        cols: u32,
        epsilon: f32,
        /// The residual join's dropout mask: seed, keep probability, scale (`has_drop` only).
        seed: u32,
        keep: f32,
        drop_scale: f32,
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

/// Whether the kernels can take the residual join `res + dropout(h + bias)` and normalise it:
/// `h` and `res` `[rows, cols]`, `bias`, `gamma` and `beta` `[cols]`, as [`applies`] asks.
pub(crate) fn applies_residual(
    h: &Tensor<2>,
    bias: &Tensor<1>,
    res: &Tensor<2>,
    gamma: &Tensor<1>,
    beta: Option<&Tensor<1>>,
) -> bool {
    let tracked = h.is_autodiff();
    applies(h, gamma, beta)
        && super::applies(&[res])
        && super::applies(&[bias])
        && res.is_autodiff() == tracked
        && bias.is_autodiff() == tracked
        && res.dims() == h.dims()
        && bias.dims() == [h.dims()[1]]
}

/// The post-norm transformer's residual join and layer norm in one launch:
/// `layer_norm(res + dropout(h + bias))`, `h` a linear layer's product before its bias, the
/// dropout mask `drop` computed in the kernel from its seed (the host's [`DropMask::value`] on
/// the composed path); differentiable with respect to all five tensors. Call only where
/// [`applies_residual`] said yes.
///
/// [`DropMask::value`]: crate::model::DropMask
pub(crate) fn residual_layer_norm(
    h: Tensor<2>,
    bias: Tensor<1>,
    res: Tensor<2>,
    drop: Option<crate::model::DropMask>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<2> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::residual_layer_norm(h, bias, res, drop, gamma, beta, epsilon)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (bias, res, drop, gamma, beta, epsilon);
        unreachable!("the fused layer norm needs the wgpu feature; `applies` said no: {h:?}")
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
        register_input_and_params, stand_ins, threads_per_row, tracked,
    };
    use crate::model::DropMask;

    /// What the kernels are specialised for: a plain layer norm, or the residual join before
    /// it, with or without dropout.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Plain,
        Residual { has_drop: bool },
    }

    impl Mode {
        fn residual(self) -> bool {
            self != Self::Plain
        }

        fn has_drop(self) -> bool {
            self == Self::Residual { has_drop: true }
        }
    }

    fn kernel(
        name: &'static str,
        source: &'static str,
        uniform: &LayerNormUniform,
        mode: Mode,
    ) -> WgslKernel {
        WgslKernel::new(name, source)
            .uniform::<LayerNormUniform>()
            .item("threads", threads_per_row(uniform.cols).to_string())
            .item("residual", mode.residual().to_string())
            .item("has_drop", mode.has_drop().to_string())
    }

    /// The normalised rows and each row's statistics (`[rows, 2]`: mean, reciprocal standard
    /// deviation), from contiguous tensors; with `join` (`h`, `bias`, `res`), `x` is first
    /// written as `res + dropout(h + bias)`.
    fn forward(
        x: &CubeTensor,
        gamma: &CubeTensor,
        beta: &CubeTensor,
        join: Option<[&CubeTensor; 3]>,
        uniform: &LayerNormUniform,
        mode: Mode,
    ) -> (CubeTensor, CubeTensor) {
        let (rows, cols) = (uniform.rows as usize, uniform.cols as usize);
        let y = empty_like(x, [rows, cols]);
        let stats = empty_like(x, [rows, 2]);
        let kernel = kernel(
            "layer_norm.wgsl",
            include_str!("../../../../shaders/layer_norm.wgsl"),
            uniform,
            mode,
        );
        let stand_ins: [CubeTensor; 3] = stand_ins(x);
        let [h, bias, res] = join.unwrap_or([&stand_ins[0], &stand_ins[1], &stand_ins[2]]);
        Launch::new(kernel, rows * threads_per_row(uniform.cols) as usize)
            .buffer(x)
            .buffer(gamma)
            .buffer(beta)
            .buffer(&y)
            .buffer(&stats)
            .buffer(h)
            .buffer(bias)
            .buffer(res)
            .run(uniform);
        (y, stats)
    }

    /// What the backward step keeps from the forward pass (`x`: the joined rows in the
    /// residual mode).
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        gamma: CubeTensor,
        stats: CubeTensor,
        uniform: LayerNormUniform,
        mode: Mode,
    }

    /// The input's gradient from the output's (`dy`, contiguous), and with dropout in the
    /// residual join, `h`'s (the input's times the mask).
    fn input_grad(state: &State, dy: &CubeTensor) -> (CubeTensor, Option<CubeTensor>) {
        let (rows, cols) = (state.uniform.rows as usize, state.uniform.cols as usize);
        let dx = empty_like(&state.x, [rows, cols]);
        let dh = state
            .mode
            .has_drop()
            .then(|| empty_like(&state.x, [rows, cols]));
        let kernel = kernel(
            "layer_norm_grad.wgsl",
            include_str!("../../../../shaders/layer_norm_grad.wgsl"),
            &state.uniform,
            state.mode,
        );
        let [stand_in] = stand_ins(&state.x);
        Launch::new(kernel, rows * threads_per_row(state.uniform.cols) as usize)
            .buffer(&state.x)
            .buffer(&state.gamma)
            .buffer(&state.stats)
            .buffer(dy)
            .buffer(&dx)
            .buffer(dh.as_ref().unwrap_or(&stand_in))
            .run(&state.uniform);
        (dx, dh)
    }

    /// The scale's and the shift's gradients from the output's (`dy`, contiguous), and with
    /// `dh` (`h`'s gradient, residual mode), the join's bias's.
    fn params_grad(
        state: &State,
        dy: &CubeTensor,
        dh: Option<&CubeTensor>,
    ) -> (CubeTensor, CubeTensor, Option<CubeTensor>) {
        let cols = state.uniform.cols as usize;
        let dgamma = empty_like(&state.x, [cols]);
        let dbeta = empty_like(&state.x, [cols]);
        let dbias = dh.map(|_| empty_like(&state.x, [cols]));
        // 16 columns a workgroup (the kernel's COLS).
        let kernel = kernel(
            "layer_norm_params_grad.wgsl",
            include_str!("../../../../shaders/layer_norm_params_grad.wgsl"),
            &state.uniform,
            if dh.is_some() {
                Mode::Residual { has_drop: false }
            } else {
                Mode::Plain
            },
        );
        let stand_ins: [CubeTensor; 2] = stand_ins(&state.x);
        Launch::new(kernel, cols.div_ceil(16) * WORKGROUP as usize)
            .buffer(&state.x)
            .buffer(&state.stats)
            .buffer(dy)
            .buffer(&dgamma)
            .buffer(&dbeta)
            .buffer(dh.unwrap_or(&stand_ins[0]))
            .buffer(dbias.as_ref().unwrap_or(&stand_ins[1]))
            .run(&state.uniform);
        (dgamma, dbeta, dbias)
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
                || input_grad(&state, &dy).0,
                || {
                    let (dgamma, dbeta, _) = params_grad(&state, &dy, None);
                    (dgamma, dbeta)
                },
            );
        }
    }

    /// burn-autodiff's backward step of [`residual_layer_norm`]: parents `h`, the join's bias,
    /// `res`, scale, shift.
    #[derive(Debug)]
    struct ResidualBackward;

    impl Backward<CubeBackend, 5> for ResidualBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 5>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Ops {
                parents,
                node,
                state,
            } = ops;
            let [h, bias, res, gamma, beta] = parents.map(|p| p.map(|node| node.id));
            let dy = contiguous(grads.consume::<CubeBackend>(&node));
            // The join's gradients: `res`'s is the input's, `h`'s and the bias's that times
            // the mask (the input's itself without dropout).
            let (dx, dh) = if h.is_some() || bias.is_some() || res.is_some() {
                let (dx, dh) = input_grad(&state, &dy);
                let dh = dh.unwrap_or_else(|| dx.clone());
                (Some(dx), Some(dh))
            } else {
                (None, None)
            };
            if gamma.is_some() || beta.is_some() || bias.is_some() {
                let dh = bias.and(dh.as_ref());
                let (dgamma, dbeta, dbias) = params_grad(&state, &dy, dh);
                for (id, grad) in [(gamma, Some(dgamma)), (beta, Some(dbeta)), (bias, dbias)] {
                    if let (Some(id), Some(grad)) = (id, grad) {
                        grads.register::<CubeBackend>(id, grad);
                    }
                }
            }
            for (id, grad) in [(res, dx), (h, dh)] {
                if let (Some(id), Some(grad)) = (id, grad) {
                    grads.register::<CubeBackend>(id, grad);
                }
            }
        }
    }

    fn uniform(
        rows: usize,
        cols: usize,
        epsilon: f64,
        drop: Option<&DropMask>,
    ) -> LayerNormUniform {
        LayerNormUniform {
            rows: u32::try_from(rows).expect("`applies` checked the size"),
            cols: u32::try_from(cols).expect("`applies` checked the size"),
            epsilon: epsilon as f32,
            seed: drop.map_or(0, |m| m.seed),
            keep: drop.map_or(1.0, |m| m.keep),
            drop_scale: drop.map_or(1.0, |m| m.scale),
        }
    }

    pub(super) fn layer_norm(
        x: Tensor<2>,
        gamma: Tensor<1>,
        beta: Option<Tensor<1>>,
        epsilon: f64,
    ) -> Tensor<2> {
        let [rows, cols] = x.dims();
        let uniform = uniform(rows, cols, epsilon, None);
        // No shift: a constant zero one (no gradient).
        let beta = beta.unwrap_or_else(|| Tensor::zeros([cols], &gamma.device()));
        if !x.is_autodiff() {
            let (y, _) = forward(
                &contiguous(cube_tensor(x)),
                &contiguous(cube_tensor(gamma)),
                &contiguous(cube_tensor(beta)),
                None,
                &uniform,
                Mode::Plain,
            );
            return burn_tensor(y);
        }
        let (x, x_node) = tracked(x);
        let (gamma, gamma_node) = tracked(gamma);
        let (beta, beta_node) = tracked(beta);
        let (y, stats) = forward(&x, &gamma, &beta, None, &uniform, Mode::Plain);
        record(
            LayerNormBackward,
            [x_node, gamma_node, beta_node],
            |_| State {
                x,
                gamma,
                stats,
                uniform,
                mode: Mode::Plain,
            },
            y,
        )
    }

    pub(super) fn residual_layer_norm(
        h: Tensor<2>,
        bias: Tensor<1>,
        res: Tensor<2>,
        drop: Option<DropMask>,
        gamma: Tensor<1>,
        beta: Option<Tensor<1>>,
        epsilon: f64,
    ) -> Tensor<2> {
        let [rows, cols] = h.dims();
        let uniform = uniform(rows, cols, epsilon, drop.as_ref());
        let mode = Mode::Residual {
            has_drop: drop.is_some(),
        };
        let beta = beta.unwrap_or_else(|| Tensor::zeros([cols], &gamma.device()));
        if !h.is_autodiff() {
            let h = contiguous(cube_tensor(h));
            let (bias, res) = (contiguous(cube_tensor(bias)), contiguous(cube_tensor(res)));
            let x = empty_like(&h, [rows, cols]);
            let (y, _) = forward(
                &x,
                &contiguous(cube_tensor(gamma)),
                &contiguous(cube_tensor(beta)),
                Some([&h, &bias, &res]),
                &uniform,
                mode,
            );
            return burn_tensor(y);
        }
        let (h, h_node) = tracked(h);
        let (bias, bias_node) = tracked(bias);
        let (res, res_node) = tracked(res);
        let (gamma, gamma_node) = tracked(gamma);
        let (beta, beta_node) = tracked(beta);
        let x = empty_like(&h, [rows, cols]);
        let (y, stats) = forward(&x, &gamma, &beta, Some([&h, &bias, &res]), &uniform, mode);
        record(
            ResidualBackward,
            [h_node, bias_node, res_node, gamma_node, beta_node],
            |_| State {
                x,
                gamma,
                stats,
                uniform,
                mode,
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

    /// What trains in a residual case: the join's product `h` and residual `res` (a layer
    /// above the first), and the parameters (the join's bias, scale and shift: full
    /// fine-tuning; frozen under LoRA).
    #[derive(Debug, Clone, Copy)]
    struct Join {
        rows: usize,
        cols: usize,
        drop: bool,
        h_grad: bool,
        res_grad: bool,
        params_grad: bool,
    }

    /// `layer_norm(res + dropout(h + bias))` and the gradients of `sum(y * upstream)` that
    /// the case trains (h, bias, res, gamma, beta: empty where not), through the kernel or
    /// burn's operations with the host's mask; the launches forward and in all.
    fn run_join(device: &Device, join: Join, fused: bool) -> (Vec<Vec<f32>>, usize, usize) {
        use crate::model::DropMask;
        let Join { rows, cols, .. } = join;
        let case = Case::new(rows, cols);
        let other = Case::new(rows + 1, cols);
        let matrix = |v: &[f32], grad: bool| {
            let t = Tensor::<2>::from_data(
                TensorData::new(v[..rows * cols].to_vec(), [rows, cols]),
                device,
            );
            if grad { t.require_grad() } else { t }
        };
        let vector = |v: &[f32]| {
            let t = Tensor::<1>::from_data(TensorData::new(v.to_vec(), [cols]), device);
            if join.params_grad {
                t.require_grad()
            } else {
                t
            }
        };
        let h = matrix(&case.x, join.h_grad);
        let res = matrix(&other.x, join.res_grad);
        let bias = vector(&other.beta);
        let (gamma, beta) = (vector(&case.gamma), vector(&case.beta));
        let mask = join.drop.then(|| DropMask::new(0x5eed, 0.3));
        let upstream = matrix(&case.upstream, false);
        let before = launched();
        let y = if fused {
            assert!(kernels::layer_norm::applies_residual(
                &h,
                &bias,
                &res,
                &gamma,
                Some(&beta)
            ));
            kernels::layer_norm::residual_layer_norm(
                h.clone(),
                bias.clone(),
                res.clone(),
                mask,
                gamma.clone(),
                Some(beta.clone()),
                EPS,
            )
        } else {
            let joined = h.clone() + bias.clone().unsqueeze_dim(0);
            let joined = match mask {
                Some(m) => joined * m.tensor([rows, cols], device),
                None => joined,
            };
            burn::tensor::module::layer_norm(
                res.clone() + joined,
                gamma.clone(),
                Some(beta.clone()),
                EPS,
            )
        };
        let forward = launched() - before;
        let grads = (y.clone() * upstream).sum().backward();
        let mut got = vec![read(y)];
        let grad2 = |t: &Tensor<2>, on: bool| {
            if on {
                read(t.grad(&grads).expect("a gradient"))
            } else {
                Vec::new()
            }
        };
        let grad1 = |t: &Tensor<1>| {
            if join.params_grad {
                read(t.grad(&grads).expect("a gradient"))
            } else {
                Vec::new()
            }
        };
        got.push(grad2(&h, join.h_grad));
        got.push(grad2(&res, join.res_grad));
        got.extend([grad1(&bias), grad1(&gamma), grad1(&beta)]);
        (got, forward, launched() - before)
    }

    /// The residual join and layer norm through one kernel forward against burn's bias add,
    /// mask multiply, add and composed layer norm on flex, every gradient included: with and
    /// without dropout; full fine-tuning, frozen parameters (LoRA), a first layer (no
    /// residual gradient), nothing trained below the parameters; widths from one value to
    /// MiniLM's. Backward: the input's kernel where the join trains, the parameters' where
    /// they do.
    #[test]
    fn the_residual_join_matches_burns_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        let full = |rows, cols, drop| Join {
            rows,
            cols,
            drop,
            h_grad: true,
            res_grad: true,
            params_grad: true,
        };
        let mut cases = Vec::new();
        for drop in [false, true] {
            cases.extend([
                full(1, 1, drop),
                full(5, 10, drop),
                full(64, 384, drop),
                full(300, 33, drop),
                Join {
                    params_grad: false,
                    ..full(40, 96, drop)
                },
                Join {
                    res_grad: false,
                    ..full(12, 64, drop)
                },
                Join {
                    h_grad: false,
                    res_grad: false,
                    ..full(7, 48, drop)
                },
            ]);
        }
        for join in cases {
            let what = format!("{join:?}");
            let (got, forward, launches) = run_join(&wgpu, join, true);
            let (want, _, _) = run_join(&flex, join, false);
            assert_eq!(forward, 1, "{what}: one forward dispatch");
            let input = join.h_grad || join.res_grad || join.params_grad;
            let backward = usize::from(input) + usize::from(join.params_grad);
            assert_eq!(launches - forward, backward, "{what}: backward kernels");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{what}: value {i}"), g, w, 5e-4, 1e-2);
            }
        }
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
