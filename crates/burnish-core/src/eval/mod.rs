//! Evaluation: metrics computed on the host from labels and predictions.

mod report;

pub use report::{ClassMetrics, ClassificationReport};
