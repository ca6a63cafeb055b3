//! Errors of the core, grouped by kind. Each variant says what was expected and what was found.

use thiserror::Error;

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, Error)]
pub enum Error {
    /// A configuration value is out of its valid range.
    #[error("invalid config field `{field}`: {reason}")]
    Config {
        /// The field's name, as it appears in the serialised config.
        field: &'static str,
        /// What was expected, and what was found.
        reason: String,
    },
    /// A data set does not have the shape or content that was expected.
    #[error("invalid data in {source_name}: {reason}")]
    Data {
        /// Where the data came from (a file name, or "demo").
        source_name: String,
        /// What was expected, and what was found.
        reason: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading `{what}` back from the device failed: {reason}")]
    Readback {
        /// Which value was being read.
        what: &'static str,
        /// The backend's own message.
        reason: String,
    },
    /// Training produced a value that cannot be trained on (NaN or infinite loss).
    #[error("training diverged at step {step}: loss is {loss}; {}", diverged_advice(*step, *half))]
    Diverged {
        /// The optimizer step at which it happened.
        step: usize,
        /// The value that was read.
        loss: f32,
        /// Whether the run multiplied in half precision (`precision: "f16"`).
        half: bool,
    },
}

/// What to do about a non-finite loss. The first step's loss comes before any update, so the
/// learning rate cannot be the cause there. In a half-precision run a value past f16's range
/// in the forward pass is a cause of its own (the gradients' overflows are skipped, not this).
fn diverged_advice(step: usize, half: bool) -> &'static str {
    match (step <= 1, half) {
        (true, false) => {
            "it came before any update, so the model's outputs are not finite: check the weights and the input values"
        }
        (true, true) => {
            "it came before any update: the run multiplies in f16, whose largest value is 65504, so a layer's input or output past it is one cause: train with \"precision\": \"f32\"; else check the weights and the input values"
        }
        (false, false) => "lower the learning rate",
        (false, true) => {
            "lower the learning rate, or train with \"precision\": \"f32\" (the run multiplies in f16, whose largest value is 65504)"
        }
    }
}

impl Error {
    /// The error of a half-precision run (`half`): a divergence then says so in its advice.
    #[must_use]
    pub fn in_precision(self, half: bool) -> Self {
        match self {
            Self::Diverged { step, loss, .. } => Self::Diverged { step, loss, half },
            other => other,
        }
    }

    /// Shorthand for a [`Error::Config`] error.
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            field,
            reason: reason.into(),
        }
    }

    /// A mapper from a backend read error to [`Error::Readback`] about `what`.
    pub fn readback<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Self {
        move |e| Self::Readback {
            what,
            reason: e.to_string(),
        }
    }

    /// Shorthand for a [`Error::Data`] error.
    pub fn data(source_name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Data {
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn divergence_advice_depends_on_whether_an_update_came_first() {
        let first = Error::Diverged {
            step: 1,
            loss: f32::NAN,
            half: false,
        }
        .to_string();
        assert_eq!(
            first,
            "training diverged at step 1: loss is NaN; it came before any update, so the model's \
             outputs are not finite: check the weights and the input values"
        );
        let later = Error::Diverged {
            step: 7,
            loss: f32::INFINITY,
            half: false,
        };
        assert_eq!(
            later.to_string(),
            "training diverged at step 7: loss is inf; lower the learning rate"
        );
        // A half-precision run names f16's range and the way back to f32; other errors pass.
        assert_eq!(
            later.in_precision(true).to_string(),
            "training diverged at step 7: loss is inf; lower the learning rate, or train with \
             \"precision\": \"f32\" (the run multiplies in f16, whose largest value is 65504)"
        );
        let first = Error::Diverged {
            step: 1,
            loss: f32::NAN,
            half: false,
        }
        .in_precision(true)
        .to_string();
        assert!(
            first.contains("multiplies in f16") && first.contains("check the weights"),
            "{first}"
        );
        assert!(matches!(
            Error::config("x", "y").in_precision(true),
            Error::Config { field: "x", .. }
        ));
    }
}
