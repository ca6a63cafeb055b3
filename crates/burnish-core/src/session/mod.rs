//! A training session as the outside world sees it: commands in, events out.
//!
//! [`protocol`] is the contract between the page and the training worker (and what the CLI
//! prints); [`runner`] drives a [`Trainer`](crate::train::Trainer) through a run, reporting every
//! step, and obeys pause, resume and cancel. Where it runs (a browser worker, a terminal, a test)
//! is abstracted by [`runner::Host`].

pub mod checkpoint;
pub mod fit;
pub mod lm;
pub mod memory;
pub mod protocol;
pub mod recipe;
pub mod runner;
pub mod text_fit;
pub mod text_session;
pub mod workspace;

pub use protocol::{Command, DemoRequest, Event};
pub use runner::{Control, Host, RunState, run_demo};
pub use workspace::Workspace;

/// The wgpu adapter a device runs on, for a run's `started` event: `None` for other backends, or
/// where the runtime was not started through [`crate::gpu`].
pub(crate) fn adapter_name(device: &burn::prelude::Device) -> Option<String> {
    #[cfg(feature = "wgpu")]
    {
        crate::gpu::adapter_of(device).map(ToString::to_string)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = device;
        None
    }
}

/// Test doubles shared by the session tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;

    use super::{Event, Host};

    /// A host that records every event, with a clock that stands still.
    #[derive(Default)]
    pub(crate) struct Recorder(pub(crate) RefCell<Vec<Event>>);

    impl Host for Recorder {
        fn now_ms(&self) -> f64 {
            0.0
        }
        fn post(&self, event: Event) {
            self.0.borrow_mut().push(event);
        }
        async fn sleep(&self, _ms: u32) {}
    }

    /// A recording host whose clock moves 1 ms each time it is read, counting the reads.
    #[derive(Default)]
    pub(crate) struct Ticking(pub(crate) Recorder, pub(crate) std::cell::Cell<u32>);

    impl Host for Ticking {
        fn now_ms(&self) -> f64 {
            self.1.set(self.1.get() + 1);
            f64::from(self.1.get())
        }
        fn post(&self, event: Event) {
            self.0.post(event);
        }
        async fn sleep(&self, _ms: u32) {}
    }
}
