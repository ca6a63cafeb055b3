//! The training engine: a step-at-a-time trainer that a caller drives.
//!
//! The caller (the web worker, the CLI, a test) owns the loop, so it can report progress, yield to
//! the browser's event loop, pause or cancel between steps. Every value read back from the device
//! is read with an `async` read, which works on WebGPU and natively alike.

mod batches;
mod config;
pub mod lm;
mod loss;
pub mod optim;
pub mod optimizer;
pub mod schedule;
pub mod text;
mod trainer;

pub use batches::BatchPosition;
pub use config::{Precision, TrainConfig};
pub(crate) use trainer::step_report;
pub use trainer::{Evaluation, StepReport, Trainer, TrainerState, evaluate};
