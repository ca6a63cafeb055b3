//! The run loop behind the worker and the CLI: drives a core [`Trainer`] step by step, reports each step as an
//! [`Event`], and obeys pause, resume and cancel between steps.
//!
//! The loop is written against a small [`Host`] (clock, message sink, sleep) so that the same code
//! runs in the browser worker and in native tests.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use crate::Result;
use crate::model::{MlpConfig, ModelConfig};
use crate::train::{Trainer, step_report};
use burn::module::Module;
use burn::prelude::Device;

use super::protocol::{DemoRequest, Event};

/// What the run loop needs from where it runs.
pub trait Host {
    /// Milliseconds from an arbitrary origin, monotonic.
    fn now_ms(&self) -> f64;
    /// Deliver an event to the page (or to a test).
    fn post(&self, event: Event);
    /// Whether this host keeps autosaves (runs skip saving otherwise).
    fn autosaves(&self) -> bool {
        false
    }
    /// Keep an autosave of the run in progress (the page: IndexedDB; the CLI: a file).
    fn autosave(&self, _info: super::checkpoint::CheckpointInfo, _bytes: Vec<u8>) {}
    /// Give the host's event loop a turn, for about `ms` milliseconds, so commands can arrive.
    fn sleep(&self, ms: u32) -> impl Future<Output = ()>;
}

/// Whether a run should go on, wait, or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Take the next step.
    Running,
    /// Wait between steps.
    Paused,
    /// Stop at the next step boundary.
    Cancelled,
}

/// Shared switch between the message handler (which sets it) and the run loop (which reads it).
#[derive(Debug, Clone)]
pub struct Control(Rc<Cell<RunState>>);

impl Default for Control {
    fn default() -> Self {
        Self(Rc::new(Cell::new(RunState::Running)))
    }
}

impl Control {
    /// The current state.
    pub fn get(&self) -> RunState {
        self.0.get()
    }

    /// Ask the loop to pause (ignored once cancelled).
    pub fn pause(&self) {
        if self.get() == RunState::Running {
            self.0.set(RunState::Paused);
        }
    }

    /// Ask the loop to go on (ignored once cancelled).
    pub fn resume(&self) {
        if self.get() == RunState::Paused {
            self.0.set(RunState::Running);
        }
    }

    /// Ask the loop to stop.
    pub fn cancel(&self) {
        self.0.set(RunState::Cancelled);
    }

    /// Called by run loops between steps: while paused, post `paused`, wait, and post `resumed`
    /// when it goes on. Returns `false` when the run is cancelled and must stop.
    pub async fn checkpoint(&self, host: &impl Host, step: usize) -> bool {
        if self.get() == RunState::Paused {
            host.post(Event::Paused { step });
            while self.get() == RunState::Paused {
                host.sleep(50).await;
            }
            if self.get() == RunState::Running {
                host.post(Event::Resumed { step });
            }
        }
        self.get() != RunState::Cancelled
    }
}

/// Train the demo MLP on the demo spirals on `device`, posting `started`, `progress`, `metrics`,
/// `paused`/`resumed` and finally `done` to `host`.
///
/// # Errors
/// Any error of the core (bad request, failed read-back, divergence); the caller reports it.
pub async fn run_demo(
    request: &DemoRequest,
    device: &Device,
    control: &Control,
    host: &impl Host,
) -> Result<()> {
    let data = request.data.generate()?;
    let model = ModelConfig::Mlp(
        MlpConfig::new(data.n_features, data.n_classes()).with_hidden(request.hidden.clone()),
    );
    let steps = request.train.steps;
    let mut trainer = Trainer::new(&model, request.train.clone(), data.clone(), device)?;
    host.post(Event::Started {
        rows: data.len(),
        steps,
        epochs: 1,
        steps_per_epoch: steps,
        parameters: trainer.model().num_params(),
        total_parameters: trainer.model().num_params(),
        device: format!("{device:?}"),
        adapter: super::adapter_name(device),
        precision: request.train.precision_on(device, false),
    });

    let start = host.now_ms();
    let mut after_first = None;
    let mut loss = f32::NAN;
    let mut cancelled = false;
    while trainer.steps_done() < steps {
        if !control.checkpoint(host, trainer.steps_done()).await {
            cancelled = true;
            break;
        }
        let before = host.now_ms();
        let (total, learning_rate) = trainer.step_unread()?;
        let host_ms = host.now_ms() - before;
        let report = step_report(Some(total), trainer.steps_done(), learning_rate).await?;
        loss = report.loss;
        let now = host.now_ms();
        let first_done = *after_first.get_or_insert(now);
        let ms_per_step = if report.step > 1 {
            (now - first_done) / (report.step - 1) as f64
        } else {
            now - start
        };
        host.post(Event::Progress {
            step: report.step,
            steps,
            loss,
            learning_rate: report.learning_rate,
            ms_per_step,
            host_ms,
        });
        if request.eval_every > 0 && report.step % request.eval_every == 0 && report.step < steps {
            let accuracy = trainer.evaluate(&data).await?.report.accuracy as f32;
            host.post(Event::Metrics {
                step: report.step,
                accuracy,
            });
        }
    }
    let accuracy = trainer.evaluate(&data).await?.report.accuracy as f32;
    host.post(Event::Metrics {
        step: trainer.steps_done(),
        accuracy,
    });
    let done = trainer.steps_done();
    let elapsed = host.now_ms() - after_first.unwrap_or(start);
    host.post(Event::Done {
        steps: done,
        cancelled,
        loss,
        accuracy,
        ms_per_step: if done > 1 {
            elapsed / (done - 1) as f64
        } else {
            elapsed
        },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::train::TrainConfig;

    use super::*;

    /// A host that records events and plays the page: it pauses at one step, resumes after a few
    /// sleeps, and cancels at another step.
    struct TestHost {
        events: RefCell<Vec<Event>>,
        control: Control,
        pause_at: usize,
        cancel_at: usize,
        sleeps: Cell<usize>,
        clock: Cell<f64>,
    }

    impl Host for TestHost {
        fn now_ms(&self) -> f64 {
            self.clock.set(self.clock.get() + 1.0);
            self.clock.get()
        }
        fn post(&self, event: Event) {
            if let Event::Progress { step, .. } = event {
                if step == self.pause_at {
                    self.control.pause();
                }
                if step == self.cancel_at {
                    self.control.cancel();
                }
            }
            self.events.borrow_mut().push(event);
        }
        async fn sleep(&self, _ms: u32) {
            self.sleeps.set(self.sleeps.get() + 1);
            if self.sleeps.get() == 3 {
                self.control.resume();
            }
        }
    }

    fn host(pause_at: usize, cancel_at: usize) -> TestHost {
        TestHost {
            events: RefCell::default(),
            control: Control::default(),
            pause_at,
            cancel_at,
            sleeps: Cell::new(0),
            clock: Cell::new(0.0),
        }
    }

    fn request(steps: usize) -> DemoRequest {
        DemoRequest {
            train: TrainConfig {
                steps,
                batch_size: 32,
                learning_rate: 0.02,
                ..TrainConfig::default()
            },
            eval_every: 10,
            ..DemoRequest::default()
        }
    }

    #[test]
    fn a_full_run_reports_every_step_and_learns() {
        let host = host(0, 0);
        pollster::block_on(run_demo(
            &request(200),
            &Device::flex(),
            &host.control,
            &host,
        ))
        .expect("run");
        let events = host.events.into_inner();
        assert!(
            matches!(
                events[0],
                Event::Started {
                    rows: 300,
                    steps: 200,
                    ..
                }
            ),
            "{:?}",
            events[0]
        );
        let losses: Vec<f32> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress { loss, .. } => Some(*loss),
                _ => None,
            })
            .collect();
        assert_eq!(losses.len(), 200);
        let head: f32 = losses[..10].iter().sum::<f32>() / 10.0;
        let tail: f32 = losses[190..].iter().sum::<f32>() / 10.0;
        assert!(tail < head * 0.6, "loss {head} -> {tail}");
        let metrics = events
            .iter()
            .filter(|e| matches!(e, Event::Metrics { .. }))
            .count();
        assert_eq!(metrics, 20, "19 intermediate evaluations and a final one");
        let Some(Event::Done {
            steps: 200,
            cancelled: false,
            accuracy,
            ..
        }) = events.last()
        else {
            panic!("expected a completed done event, got {:?}", events.last())
        };
        assert!(*accuracy > 0.7, "accuracy {accuracy}");
    }

    #[test]
    fn pause_resume_and_cancel_take_effect_between_steps() {
        let host = host(3, 6);
        pollster::block_on(run_demo(
            &request(50),
            &Device::flex(),
            &host.control,
            &host,
        ))
        .expect("run");
        let events = host.events.into_inner();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Progress { step, .. } => format!("p{step}"),
                Event::Paused { step } => format!("paused{step}"),
                Event::Resumed { step } => format!("resumed{step}"),
                Event::Done {
                    steps, cancelled, ..
                } => format!("done{steps}{cancelled}"),
                Event::Metrics { .. } => "m".into(),
                Event::Started { .. } => "s".into(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "s",
                "p1",
                "p2",
                "p3",
                "paused3",
                "resumed3",
                "p4",
                "p5",
                "p6",
                "m",
                "done6true"
            ],
        );
        assert_eq!(host.sleeps.get(), 3);
    }

    #[test]
    fn a_bad_request_is_an_error_not_a_panic() {
        let host = host(0, 0);
        let mut bad = request(10);
        bad.data.classes = 1;
        let err = pollster::block_on(run_demo(&bad, &Device::flex(), &host.control, &host))
            .expect_err("one class")
            .to_string();
        assert!(err.contains("classes"), "{err}");
    }
}
