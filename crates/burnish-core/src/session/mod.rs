//! A training session as the outside world sees it: commands in, events out.
//!
//! [`protocol`] is the contract between the page and the training worker (and what the CLI
//! prints); [`runner`] drives a [`Trainer`](crate::train::Trainer) through a run, reporting every
//! step, and obeys pause, resume and cancel. Where it runs (a browser worker, a terminal, a test)
//! is abstracted by [`runner::Host`].

pub mod fit;
pub mod protocol;
pub mod recipe;
pub mod runner;
pub mod workspace;

pub use protocol::{Command, DemoRequest, Event};
pub use runner::{Control, Host, RunState, run_demo};
pub use workspace::Workspace;
