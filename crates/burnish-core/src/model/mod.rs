//! Models. One model per file; each has a `#[derive(Config)]` config whose `init` builds it on a
//! device with weights drawn from the portable [`Rng`](crate::rng::Rng), so that a seed gives the
//! same starting weights on every backend.

mod init;
pub mod mlp;

pub use mlp::{Mlp, MlpConfig};
