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
    #[error("training diverged at step {step}: loss is {loss}; lower the learning rate")]
    Diverged {
        /// The optimizer step at which it happened.
        step: usize,
        /// The value that was read.
        loss: f32,
    },
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
