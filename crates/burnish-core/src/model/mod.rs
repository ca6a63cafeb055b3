//! Models. One family per file, each with a serde config whose `init` builds it on a device with
//! weights drawn from the portable [`Rng`](crate::rng::Rng), so that a seed gives the same
//! starting weights on every backend; [`classifier`] puts the families behind one type.

pub mod activation;
pub mod bert;
pub mod bert_classifier;
pub mod classifier;
pub mod cnn;
pub mod dropout;
pub mod gpt;
mod init;
pub mod lora;
pub mod mlp;
pub mod peft;

pub use classifier::{Classifier, ModelConfig};
pub use cnn::{Cnn, CnnConfig};
pub use dropout::{DropMask, Masks, Projections};
pub use mlp::{Mlp, MlpConfig};
