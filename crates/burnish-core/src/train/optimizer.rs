//! Optimizer choice, and gradient clipping by the global norm.
//!
//! burn's `GradientClipping::Norm` clips each parameter's gradient by its own norm; PyTorch's
//! `clip_grad_norm_`, which users know, scales all gradients by one factor so that their joint
//! norm is at most the limit. [`clip_global_norm`] does the latter, on the device, without a
//! read-back.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;

use super::config::TrainConfig;
use super::optim::Optimizer;
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

/// Build the optimizer of `config`, with `weight_decay` (the text trainers decay matrices by
/// hand and pass 0).
pub(crate) fn build(config: &TrainConfig, weight_decay: f32) -> Optimizer {
    let mut optim = Optimizer::new(config.optimizer, weight_decay, config.momentum);
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

/// Multiplies every gradient by a device scalar `[1]`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register(param.id, grad * factor);
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

/// Scale all gradients so that their joint L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`, with its 1e-6 epsilon). Returns the norm before clipping, as a device
/// tensor. With `fused` (the trainer's `fused_kernels`) on a wgpu device the norm and the factor
/// come from `kernels::clip` (one launch a gradient and one more, instead of four a gradient).
pub(crate) fn clip_global_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
    fused: bool,
) -> Option<Tensor<1>> {
    if fused {
        let mut flat = Flat {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut flat);
        if crate::kernels::clip::applies(&flat.out) {
            let (norm, factor) = crate::kernels::clip::norm_and_factor(&flat.out, max_norm);
            module.visit(&mut Scale { grads, factor });
            return Some(norm);
        }
    }
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    let norm = visitor.total?.sqrt();
    let factor = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    module.visit(&mut Scale { grads, factor });
    Some(norm)
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};

    use super::*;

    #[test]
    fn global_norm_clipping_scales_every_gradient_by_one_factor() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device);
        let loss = layer.forward(x).sum() * 10.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &layer);
        let before_w: Vec<f32> = grads
            .get::<2>(layer.weight.id)
            .expect("w")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let before_b: Vec<f32> = grads
            .get::<1>(layer.bias.as_ref().expect("bias").id)
            .expect("b")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let norm = clip_global_norm(&layer, &mut grads, 1.0, false)
            .expect("grads")
            .into_scalar::<f32>();
        let expected_norm = before_w
            .iter()
            .chain(&before_b)
            .map(|g| g * g)
            .sum::<f32>()
            .sqrt();
        assert!(
            (norm - expected_norm).abs() < 1e-4,
            "{norm} vs {expected_norm}"
        );
        let after_w: Vec<f32> = grads
            .get::<2>(layer.weight.id)
            .expect("w")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let after_b: Vec<f32> = grads
            .get::<1>(layer.bias.as_ref().expect("bias").id)
            .expect("b")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let after_norm = after_w
            .iter()
            .chain(&after_b)
            .map(|g| g * g)
            .sum::<f32>()
            .sqrt();
        assert!((after_norm - 1.0).abs() < 1e-4, "clipped norm {after_norm}");
        for (a, b) in after_w.iter().zip(&before_w) {
            assert!(
                (a * expected_norm - b).abs() < 1e-3,
                "same factor everywhere: {a} vs {b}"
            );
        }
        // Below the limit nothing changes.
        let mut small = GradientsParams::from_grads(
            layer
                .forward(Tensor::<2>::from_floats([[0.001, 0.0, 0.0]], &device))
                .sum()
                .backward(),
            &layer,
        );
        let before: Vec<f32> = small
            .get::<1>(layer.bias.as_ref().expect("bias").id)
            .expect("b")
            .into_data()
            .try_to_vec()
            .expect("f32");
        clip_global_norm(&layer, &mut small, 100.0, false);
        let after: Vec<f32> = small
            .get::<1>(layer.bias.as_ref().expect("bias").id)
            .expect("b")
            .into_data()
            .try_to_vec()
            .expect("f32");
        assert_eq!(before, after);
    }

    #[test]
    fn optimizer_kinds_parse_from_json() {
        assert_eq!(
            serde_json::from_str::<OptimizerKind>("\"sgd\"").expect("parse"),
            OptimizerKind::Sgd
        );
        assert!(serde_json::from_str::<OptimizerKind>("\"lion\"").is_err());
    }

    /// The fused norm and factor on wgpu (one launch a gradient, one more) against the composed
    /// ones on the same device: the norm, and every clipped gradient, for tensors from 3 values
    /// to past 64 workgroups' worth (160,400), clipping (limit below the norm) and not (above).
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_fused_clipping_matches_the_composed_one() {
        use crate::kernels::test_util::{assert_close, launched, param_grads, read};
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
        for max_norm in [1.0, 1e9] {
            let (mut fused, mut composed) = (grads(), grads());
            let before = launched();
            let norm = clip_global_norm(&layers, &mut fused, max_norm, true).expect("grads");
            assert_eq!(
                launched() - before,
                8 + 1,
                "one launch a gradient, one more"
            );
            let want = clip_global_norm(&layers, &mut composed, max_norm, false).expect("grads");
            assert_eq!(launched() - before, 9, "none composed");
            assert_close("norm", &read(norm), &read(want), 1e-5, 1.0);
            assert_close(
                &format!("gradients clipped to {max_norm}"),
                &param_grads(&layers, &fused).concat(),
                &param_grads(&layers, &composed).concat(),
                1e-5,
                1e-3,
            );
        }
    }
}
