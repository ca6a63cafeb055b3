//! Learning-rate schedules, as Hugging Face transformers defines them: an optional linear
//! warm-up from 0, then constant, linear decay to 0, or half-cosine decay to 0.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the learning rate does after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Stay at the base rate.
    #[default]
    Constant,
    /// Fall linearly to 0 at the last step.
    Linear,
    /// Follow half a cosine down to 0 at the last step.
    Cosine,
}

/// A schedule: warm-up length and decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The shape after the warm-up (default constant).
    pub decay: Decay,
    /// Fraction of all optimizer steps spent warming up linearly from 0 (default 0).
    pub warmup_fraction: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            decay: Decay::Constant,
            warmup_fraction: 0.0,
        }
    }
}

impl ScheduleConfig {
    /// Check the fields.
    ///
    /// # Errors
    /// [`Error::Config`] when the warm-up fraction is outside `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.warmup_fraction.is_finite() && (0.0..=1.0).contains(&self.warmup_fraction)) {
            return Err(Error::config(
                "warmup_fraction",
                format!(
                    "expected a fraction in [0, 1], found {}",
                    self.warmup_fraction
                ),
            ));
        }
        Ok(())
    }

    /// Warm-up steps out of `total`.
    pub fn warmup_steps(&self, total: usize) -> usize {
        (self.warmup_fraction * total as f64).round() as usize
    }

    /// The multiplier of the base rate at 0-based optimizer step `step` of `total`.
    pub fn factor(&self, step: usize, total: usize) -> f64 {
        let warmup = self.warmup_steps(total);
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let progress = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => (1.0 - progress).max(0.0),
            Decay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn linear_warmup_then_linear_decay_matches_transformers() {
        // transformers.get_linear_schedule_with_warmup(warmup=2, total=10)
        let s = ScheduleConfig {
            decay: Decay::Linear,
            warmup_fraction: 0.2,
        };
        let expected = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125];
        for (step, e) in expected.iter().enumerate() {
            close(s.factor(step, 10), *e);
        }
    }

    #[test]
    fn cosine_decay_matches_transformers() {
        // transformers.get_cosine_schedule_with_warmup(warmup=0, total=4)
        let s = ScheduleConfig {
            decay: Decay::Cosine,
            warmup_fraction: 0.0,
        };
        let expected = [
            1.0,
            0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()),
            0.5,
            0.5 * (1.0 + (3.0 * std::f64::consts::PI / 4.0).cos()),
        ];
        for (step, e) in expected.iter().enumerate() {
            close(s.factor(step, 4), *e);
        }
    }

    #[test]
    fn constant_and_validation() {
        let s = ScheduleConfig::default();
        close(s.factor(0, 5), 1.0);
        close(s.factor(4, 5), 1.0);
        let err = ScheduleConfig {
            warmup_fraction: 1.5,
            ..ScheduleConfig::default()
        }
        .validate()
        .expect_err("range");
        assert!(err.to_string().contains("warmup_fraction"));
        let json: ScheduleConfig = serde_json::from_str(r#"{"decay":"cosine"}"#).expect("parse");
        assert_eq!(json.decay, Decay::Cosine);
    }
}
