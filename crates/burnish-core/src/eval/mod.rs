//! Evaluation: metrics computed on the host from labels and predictions.

mod entities;
mod report;

pub use entities::{EntityMetrics, EntityReport, entities};
pub use report::{ClassMetrics, ClassificationReport};
