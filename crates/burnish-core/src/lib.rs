//! burnish-core: the target-agnostic engine of burnish.
//!
//! This crate knows nothing of wasm, the DOM or files on disk. It takes bytes and typed values,
//! returns bytes and typed values, and runs on whatever burn [`Device`](burn::prelude::Device) it
//! is handed: wgpu in the browser or natively, flex on the CPU. Every read of a tensor back to the
//! host is asynchronous, because a synchronous read panics on WebGPU; native callers drive the
//! futures with a simple executor (see the CLI).

#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod generate;
#[cfg(feature = "wgpu")]
pub mod gpu;
mod kernels;
pub mod model;
pub mod rng;
pub mod session;
pub mod text;
pub mod train;

pub use error::{Error, Result};
