use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerKind;
use super::schedule::ScheduleConfig;
use crate::{Error, Result};

/// How to train: optimizer settings, batch size, length and seed.
///
/// Serialises to JSON with the field names below, so the page, the CLI and tests share it. A
/// JSON recipe may leave out any field (it takes the default documented here); an unknown field
/// is an error that names it, so a typo never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The optimizer (default AdamW).
    pub optimizer: OptimizerKind,
    /// Peak learning rate (default 0.01); the schedule scales it.
    pub learning_rate: f64,
    /// Learning-rate warm-up and decay (default: constant, no warm-up).
    pub schedule: ScheduleConfig,
    /// Weight decay (default 1e-4): decoupled for AdamW, an L2 penalty for Adam and SGD. The
    /// classifier trainer decays every parameter, the text and GPT trainers matrices and
    /// embeddings only (not biases or LayerNorm), as transformers' `Trainer` does.
    pub weight_decay: f32,
    /// SGD momentum (default 0.9; 0 turns it off). Ignored by Adam and AdamW.
    pub momentum: f64,
    /// Micro-batches whose gradients are summed before each optimizer step (default 1). The
    /// effective batch is `batch_size * grad_accumulation`.
    pub grad_accumulation: usize,
    /// Scale gradients so their joint L2 norm is at most this (PyTorch's `clip_grad_norm_`);
    /// `null` (default) does not clip.
    pub clip_grad_norm: Option<f32>,
    /// Rows per optimizer step (default 64).
    pub batch_size: usize,
    /// Number of optimizer steps to run (default 300).
    pub steps: usize,
    /// Seed of weight initialisation and batch order; the same seed repeats a run on one backend (default 42).
    pub seed: u64,
    /// Use burnish's hand-written WGSL kernels where the device is wgpu (default true): the
    /// fused optimizer step (Adam/AdamW, SGD), the fused softmax cross-entropy and the
    /// transformers' fused layer norm, attention softmax and GELU (forward and backward each),
    /// and the global norm of gradient clipping.
    /// `false` runs burn's composed operations only, which compute the same thing; it exists
    /// to compare the two (`cargo xtask bench`).
    pub fused_kernels: bool,
    /// With `fused_kernels` on, also fuse the softmax cross-entropy (default true); `false`
    /// keeps the other fused kernels, so the bench can measure the loss kernel's own gain.
    pub fused_loss: bool,
    /// The transformers' (BERT's, the GPT's) matrix products: `f32` (default), or `f16` (mixed
    /// precision: the dense layers' and the language-model head's products take half-precision
    /// inputs, forward and backward, while weights, gradients, the optimizer's state and every
    /// other operation stay f32). `f16` runs only on a wgpu adapter with `shader-f16`; elsewhere,
    /// and for the small classifiers, training runs f32 (the run's `started` event says which).
    pub precision: Precision,
    /// With `f16` products, the loss scale the run starts with (default 1024): the loss is
    /// multiplied by the scale before the backward pass and the gradients divided by it again as
    /// the optimizer reads them, so small gradients do not flush to zero in half precision. With
    /// the fused kernels the scale is dynamic: a step whose gradients overflow is skipped and
    /// the scale halved, and it doubles after 500 good steps in a row (PyTorch's `GradScaler`,
    /// all on the device); without them it stays as given.
    pub loss_scale: f32,
}

/// The precision of the transformers' matrix products (see [`TrainConfig::precision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Single precision everywhere.
    #[default]
    F32,
    /// Half-precision inputs to the dense layers' products where the adapter has `shader-f16`.
    F16,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Adamw,
            learning_rate: 0.01,
            schedule: ScheduleConfig::default(),
            weight_decay: 1e-4,
            momentum: 0.9,
            grad_accumulation: 1,
            clip_grad_norm: None,
            batch_size: 64,
            steps: 300,
            seed: 42,
            fused_kernels: true,
            fused_loss: true,
            precision: Precision::F32,
            loss_scale: 1024.0,
        }
    }
}

impl TrainConfig {
    /// Whether the loss runs on the fused cross-entropy kernels where they apply.
    pub(crate) fn fuse_loss(&self) -> bool {
        self.fused_kernels && self.fused_loss
    }

    /// The loss scale of a transformer's run on `device`: `Some(loss_scale)` where the matrix
    /// products run in half precision (`f16` asked for, and the device is a wgpu adapter with
    /// `shader-f16`), `None` where the run is f32.
    pub(crate) fn half_products(&self, device: &burn::prelude::Device) -> Option<f32> {
        (self.precision == Precision::F16 && crate::kernels::has_f16(device))
            .then_some(self.loss_scale)
    }

    /// How a run on `device` computes, as its `started` event says: "f32", or "f16 products,
    /// dynamic loss scale from 1024" (a transformer's run with `f16` on a device with
    /// `shader-f16`; "loss scale 1024" without the fused kernels).
    pub fn precision_on(&self, device: &burn::prelude::Device, transformer: bool) -> String {
        if !transformer {
            return match self.precision {
                Precision::F32 => "f32".to_string(),
                Precision::F16 => {
                    "f32 (f16 products are for the transformers, BERT and the GPT)".to_string()
                }
            };
        }
        match self.half_products(device) {
            Some(scale) if self.fused_kernels => {
                format!("f16 products, dynamic loss scale from {scale}")
            }
            Some(scale) => format!("f16 products, loss scale {scale}"),
            None if self.precision == Precision::F16 => {
                "f32 (f16 asked for; the device has no shader-f16)".to_string()
            }
            None => "f32".to_string(),
        }
    }

    /// The learning rate of step `step` (0-based) of `steps`: the peak rate scaled by the
    /// schedule.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        self.learning_rate * self.schedule.factor(step, self.steps)
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::config(
                "learning_rate",
                format!("expected a positive number, found {}", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "weight_decay",
                format!("expected a number >= 0, found {}", self.weight_decay),
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::config(
                "momentum",
                format!("expected a number in [0, 1), found {}", self.momentum),
            ));
        }
        if self.grad_accumulation == 0 {
            return Err(Error::config(
                "grad_accumulation",
                "expected at least 1, found 0",
            ));
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::config(
                "clip_grad_norm",
                format!("expected a positive number or null, found {c}"),
            ));
        }
        if !(self.loss_scale.is_finite() && self.loss_scale >= 1.0) {
            return Err(Error::config(
                "loss_scale",
                format!("expected a number >= 1, found {}", self.loss_scale),
            ));
        }
        self.schedule.validate()?;
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", "expected at least 1, found 0"));
        }
        if self.steps == 0 {
            return Err(Error::config("steps", "expected at least 1, found 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults_fill_missing_fields() {
        let config = TrainConfig {
            steps: 7,
            ..TrainConfig::default()
        };
        let json = serde_json::to_string(&config).expect("serialise");
        let back: TrainConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, config);
        let partial: TrainConfig = serde_json::from_str(r#"{"batch_size": 8}"#).expect("parse");
        assert_eq!(
            partial,
            TrainConfig {
                batch_size: 8,
                ..TrainConfig::default()
            }
        );
        let err = serde_json::from_str::<TrainConfig>(r#"{"lerning_rate": 1}"#)
            .expect_err("typo")
            .to_string();
        assert!(err.contains("unknown field `lerning_rate`"), "{err}");
    }

    #[test]
    fn invalid_fields_are_named() {
        for (config, field) in [
            (
                TrainConfig {
                    learning_rate: -1.0,
                    ..TrainConfig::default()
                },
                "learning_rate",
            ),
            (
                TrainConfig {
                    learning_rate: f64::NAN,
                    ..TrainConfig::default()
                },
                "learning_rate",
            ),
            (
                TrainConfig {
                    weight_decay: -0.1,
                    ..TrainConfig::default()
                },
                "weight_decay",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..TrainConfig::default()
                },
                "batch_size",
            ),
            (
                TrainConfig {
                    steps: 0,
                    ..TrainConfig::default()
                },
                "steps",
            ),
        ] {
            let err = config.validate().expect_err(field).to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
