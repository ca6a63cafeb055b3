//! Optimizer choice, and gradient clipping by the global norm.
//!
//! burn's `GradientClipping::Norm` clips each parameter's gradient by its own norm; PyTorch's
//! `clip_grad_norm_`, which users know, scales all gradients by one factor so that their joint
//! norm is at most the limit. [`clip_factor`] computes that factor on the device, without a
//! read-back, and the optimizer applies it as it reads each gradient (no pass of its own).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;

use super::config::TrainConfig;
use super::optim::{DecayScope, Optimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay (Loshchilov and Hutter).
    #[default]
    Adamw,
    /// Adam; weight decay, if any, is an L2 penalty added to the gradient.
    Adam,
    /// Stochastic gradient descent with momentum; weight decay is an L2 penalty.
    Sgd,
}

/// Build the optimizer of `config`, its weight decay applied to the parameters of `scope`.
pub(crate) fn build(config: &TrainConfig, scope: DecayScope) -> Optimizer {
    let mut optim = Optimizer::new(config.optimizer, config.weight_decay, config.momentum);
    optim.set_decay_scope(scope);
    optim.set_fused_kernels(config.fused_kernels);
    optim
}

/// Sum of squares of every gradient of `module`'s parameters, as a device tensor `[1]`.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let sq = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sq,
                None => sq,
            });
        }
    }
}

/// Every gradient of `module`'s parameters, flattened.
struct Flat<'a> {
    grads: &'a GradientsParams,
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Flat<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let len = grad.shape().num_elements();
            self.out.push(grad.reshape([len]));
        }
    }
}

/// Global-norm clipping of a step's gradients, as device scalars `[1]`.
#[derive(Debug, Clone)]
pub(crate) struct Clip {
    /// The joint L2 norm of the gradients before clipping.
    #[cfg_attr(not(test), allow(dead_code))]
    pub norm: Tensor<1>,
    /// What to multiply every gradient by so that their joint norm is at most the limit (1 when
    /// it already is): the `scale` of [`Optimizer::step`].
    pub factor: Tensor<1>,
}

/// The factor that scales all gradients so that their joint L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`, with its 1e-6 epsilon), and the norm, left on the device; the
/// gradients themselves are not touched (`None` without any). With `fused` (the trainer's
/// `fused_kernels`) on a wgpu device both come from `kernels::clip` (one launch a gradient and
/// one more, instead of four a gradient).
pub(crate) fn clip_factor<M: Module>(
    module: &M,
    grads: &GradientsParams,
    max_norm: f32,
    fused: bool,
) -> Option<Clip> {
    if fused {
        let mut flat = Flat {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut flat);
        if crate::kernels::clip::applies(&flat.out) {
            let (norm, factor) = crate::kernels::clip::norm_and_factor(&flat.out, max_norm);
            return Some(Clip { norm, factor });
        }
    }
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    let norm = visitor.total?.sqrt();
    let factor = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    Some(Clip { norm, factor })
}

/// Dynamic loss scaling's factor for `module`'s gradients (computed from a loss scaled by
/// `scaler[0]`) and the scaler's next state, through `kernels::clip::dynamic_factor`; `None`
/// where the kernels do not apply (then the caller scales statically).
pub(crate) fn dynamic_factor<M: Module>(
    module: &M,
    grads: &GradientsParams,
    max_norm: Option<f32>,
    scaler: Tensor<1>,
    interval: u32,
) -> Option<(Tensor<1>, Tensor<1>)> {
    let mut flat = Flat {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut flat);
    crate::kernels::clip::applies(&flat.out)
        .then(|| crate::kernels::clip::dynamic_factor(&flat.out, max_norm, scaler, interval))
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};

    use super::*;

    fn flat(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec().expect("f32")
    }

    /// The clipping factor, applied by the optimizer as it reads each gradient: plain SGD with
    /// learning rate 1 moves every weight by exactly its scaled gradient, so the moves show the
    /// clipped gradients (joint norm 1, one factor everywhere) and the unclipped ones.
    #[test]
    fn global_norm_clipping_scales_every_gradient_by_one_factor() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let run = |x: [[f32; 3]; 1], max_norm: f32| {
            let loss = layer.forward(Tensor::<2>::from_floats(x, &device)).sum() * 10.0;
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            let mut before = flat(grads.get::<2>(layer.weight.id).expect("w"));
            let bias = grads
                .get::<1>(layer.bias.as_ref().expect("bias").id)
                .expect("b");
            before.extend(flat(bias.unsqueeze()));
            let clip = clip_factor(&layer, &grads, max_norm, false).expect("grads");
            let mut optim = Optimizer::new(OptimizerKind::Sgd, 0.0, 0.0);
            let start = flat(layer.weight.val().inner());
            let mut start_all = start.clone();
            start_all.extend(flat(
                layer.bias.as_ref().expect("b").val().inner().unsqueeze(),
            ));
            let moved = optim.step(1.0, layer.clone(), grads, Some(&clip.factor));
            let mut after = flat(moved.weight.val().inner());
            after.extend(flat(moved.bias.expect("b").val().inner().unsqueeze()));
            let moves: Vec<f32> = start_all.iter().zip(&after).map(|(a, b)| a - b).collect();
            let factor = clip.factor.into_scalar::<f32>();
            (before, clip.norm.into_scalar::<f32>(), factor, moves)
        };
        let norm_of = |v: &[f32]| v.iter().map(|g| g * g).sum::<f32>().sqrt();

        let (grads, norm, _, moves) = run([[1.0, 2.0, 3.0]], 1.0);
        let expected_norm = norm_of(&grads);
        assert!(expected_norm > 2.0, "the case clips: {expected_norm}");
        assert!(
            (norm - expected_norm).abs() < 1e-4,
            "{norm} vs {expected_norm}"
        );
        assert!(
            (norm_of(&moves) - 1.0).abs() < 1e-4,
            "clipped norm {}",
            norm_of(&moves)
        );
        for (m, g) in moves.iter().zip(&grads) {
            assert!(
                (m * expected_norm - g).abs() < 1e-3,
                "same factor everywhere: {m} vs {g}"
            );
        }
        // Below the limit the factor is 1: every weight moves by its own gradient (up to the
        // rounding of `w - g`).
        let (grads, _, factor, moves) = run([[0.001, 0.0, 0.0]], 100.0);
        assert_eq!(factor, 1.0);
        for (m, g) in moves.iter().zip(&grads) {
            assert!((m - g).abs() < 1e-6, "{m} vs {g}");
        }
    }

    #[test]
    fn optimizer_kinds_parse_from_json() {
        assert_eq!(
            serde_json::from_str::<OptimizerKind>("\"sgd\"").expect("parse"),
            OptimizerKind::Sgd
        );
        assert!(serde_json::from_str::<OptimizerKind>("\"lion\"").is_err());
    }

    /// The fused norm and factor on wgpu (one launch per seven gradients, one more: eight
    /// gradients fill one launch and start another) against the composed
    /// ones on the same device, for tensors from 3 values to past 64 workgroups' worth
    /// (160,400), clipping (limit below the norm) and not (above). The optimizer's tests check
    /// that the fused update applies the factor as the composed one does.
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_fused_clipping_matches_the_composed_one() {
        use crate::kernels::test_util::{assert_close, launched, read};
        let device = crate::kernels::test_device().autodiff();
        let layers: Vec<Linear> = [(3, 1), (40, 30), (400, 400), (1, 2049)]
            .iter()
            .map(|&(i, o)| LinearConfig::new(i, o).init(&device))
            .collect();
        let grads = || {
            let loss = layers
                .iter()
                .map(|l| {
                    let [i, _] = l.weight.dims();
                    let x = Tensor::<2>::ones([2, i], &device) * 0.5;
                    (l.forward(x) * 3.0).powf_scalar(2.0).sum()
                })
                .reduce(|a, b| a + b)
                .expect("layers");
            GradientsParams::from_grads(loss.backward(), &layers)
        };
        let grads = grads();
        for max_norm in [1.0, 1e9] {
            let before = launched();
            let clip = clip_factor(&layers, &grads, max_norm, true).expect("grads");
            assert_eq!(
                launched() - before,
                2 + 1,
                "one launch per seven gradients, one more"
            );
            let want = clip_factor(&layers, &grads, max_norm, false).expect("grads");
            assert_eq!(launched() - before, 3, "none composed");
            assert_close("norm", &read(clip.norm), &read(want.norm), 1e-5, 1.0);
            let factor = read(clip.factor);
            assert_close("factor", &factor, &read(want.factor), 1e-5, 1.0);
            assert_eq!(
                factor[0] < 1.0,
                max_norm == 1.0,
                "clips only below the norm"
            );
        }
    }
}
