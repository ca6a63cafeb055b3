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
    #[error("training diverged at step {step}: loss is {loss}; {}", diverged_advice(*step))]
    Diverged {
        /// The optimizer step at which it happened.
        step: usize,
        /// The value that was read.
        loss: f32,
    },
}

/// What to do about a non-finite loss. The first step's loss comes before any update, so the
/// learning rate cannot be the cause there.
fn diverged_advice(step: usize) -> &'static str {
    if step <= 1 {
        "it came before any update, so the model's outputs are not finite: check the weights and the input values"
    } else {
        "lower the learning rate"
    }
}

impl Error {
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
        }
        .to_string();
        assert_eq!(
            later,
            "training diverged at step 7: loss is inf; lower the learning rate"
        );
    }
}
