//! `burnish`: the native command line. It runs the same core engine as the page, on the CPU
//! (flex) or a GPU through wgpu (Vulkan, Metal, DX12), with a terminal progress bar.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use burnish_core::session::{Control, DemoRequest, Event, Host, run_demo};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "burnish",
    version,
    about = "Train small models on your own machine, natively or as the web page does."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the built-in demo (an MLP on interleaved spirals) and report loss, accuracy and speed.
    Demo {
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// A JSON demo request (`data`, `hidden`, `train`, `eval_every`; any may be left out).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Override the number of steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Print every event as one JSON line instead of a progress bar.
        #[arg(long)]
        json: bool,
    },
}

/// The backends the CLI can run on.
#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// burn's pure-Rust CPU backend.
    Flex,
    /// burn's wgpu backend on the best GPU adapter found (or a software one such as lavapipe).
    Wgpu,
}

fn device(backend: Backend) -> Result<Device> {
    Ok(match backend {
        Backend::Flex => Device::flex(),
        Backend::Wgpu => Device::wgpu_options()
            .init()
            .context("no wgpu adapter could be started (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)")?,
    })
}

/// Prints events to the terminal: a progress bar on a TTY, a line per tenth otherwise.
struct Terminal {
    start: Instant,
    json: bool,
    tty: bool,
    last_tenth: Cell<usize>,
    done: RefCell<Option<Event>>,
}

impl Host for Terminal {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }

    fn post(&self, event: Event) {
        if self.json {
            println!("{}", serde_json::to_string(&event).unwrap_or_default());
        } else {
            match &event {
                Event::Started {
                    rows,
                    steps,
                    parameters,
                    device,
                    ..
                } => {
                    println!(
                        "training {parameters} parameters on {rows} rows for {steps} steps ({device})"
                    );
                }
                Event::Progress {
                    step,
                    steps,
                    loss,
                    ms_per_step,
                    ..
                } => {
                    let tenth = step * 10 / steps;
                    if self.tty {
                        let filled = step * 30 / steps;
                        print!(
                            "\r[{}{}] {step}/{steps} loss {loss:.4} {ms_per_step:.2} ms/step",
                            "#".repeat(filled),
                            "-".repeat(30 - filled)
                        );
                        let _ = std::io::stdout().flush();
                        if step == steps {
                            println!();
                        }
                    } else if tenth > self.last_tenth.get() || *step == 1 {
                        self.last_tenth.set(tenth);
                        println!("step {step}/{steps} loss {loss:.4} {ms_per_step:.2} ms/step");
                    }
                }
                Event::Done {
                    steps,
                    cancelled,
                    loss,
                    accuracy,
                    ms_per_step,
                } => {
                    println!(
                        "done: {steps} steps{}, loss {loss:.4}, accuracy {:.1}%, {ms_per_step:.3} ms/step",
                        if *cancelled { " (cancelled)" } else { "" },
                        accuracy * 100.0
                    );
                }
                Event::Error { message } => eprintln!("error: {message}"),
                _ => {}
            }
        }
        if matches!(event, Event::Done { .. }) {
            *self.done.borrow_mut() = Some(event);
        }
    }

    async fn sleep(&self, ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo {
            device: backend,
            recipe,
            steps,
            json,
        } => {
            let mut request = match &recipe {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the recipe {}", path.display()))?;
                    serde_json::from_str::<DemoRequest>(&text).with_context(|| {
                        format!("{} is not a valid demo request", path.display())
                    })?
                }
                None => DemoRequest::default(),
            };
            if let Some(steps) = steps {
                request.train.steps = steps;
            }
            let device = device(backend)?;
            let host = Terminal {
                start: Instant::now(),
                json,
                tty: std::io::stdout().is_terminal(),
                last_tenth: Cell::new(0),
                done: RefCell::new(None),
            };
            pollster::block_on(run_demo(&request, &device, &Control::default(), &host))?;
            if host.done.borrow().is_none() {
                bail!("the run ended without a result");
            }
        }
    }
    Ok(())
}
