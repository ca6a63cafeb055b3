//! `burnish`: the native command line. It runs the same core engine as the page, on the CPU
//! (flex) or a GPU through wgpu (Vulkan, Metal, DX12), with a terminal progress bar.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use burnish_core::data::ClassificationDataset;
use burnish_core::data::idx::idx_dataset;
use burnish_core::data::images::{FolderFile, ImageFolderConfig, image_folder};
use burnish_core::data::split::{Normalizer, Splits};
use burnish_core::data::table::{Table, TableFormat};
use burnish_core::export::ExportedClassifier;
use burnish_core::model::MlpConfig;
use burnish_core::session::fit::fit;
use burnish_core::session::recipe::Recipe;
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
    /// Train a classifier from a CSV/TSV/JSONL table or IDX files, print the classification
    /// report on the test split, and export the model as safetensors.
    Train {
        /// A table with a header row (.csv, .tsv, .jsonl; .gz accepted), an IDX images file, or a
        /// folder of PNG/JPEG images with one sub-folder per class (resized to 28x28 grayscale).
        data: PathBuf,
        /// IDX labels file, when `data` is an IDX images file.
        #[arg(long)]
        idx_labels: Option<PathBuf>,
        /// The label column (default: the last column).
        #[arg(long)]
        label: Option<String>,
        /// The table has no header row; columns are then named 1, 2, ...
        #[arg(long)]
        no_header: bool,
        /// Recipe JSON (model, train, fit, split, normalize; any may be left out).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Continue training from an exported model (its classes and normalisation are kept).
        #[arg(long)]
        import: Option<PathBuf>,
        /// Where to write the trained model.
        #[arg(long, default_value = "model.safetensors")]
        out: PathBuf,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// Print every event as one JSON line.
        #[arg(long)]
        json: bool,
    },
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

impl Terminal {
    fn new(json: bool) -> Self {
        Self {
            start: Instant::now(),
            json,
            tty: std::io::stdout().is_terminal(),
            last_tenth: Cell::new(0),
            done: RefCell::new(None),
        }
    }
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
                Event::Epoch {
                    epoch,
                    epochs,
                    train_loss,
                    validation_loss,
                    validation_accuracy,
                    improved,
                    ..
                } => {
                    if self.tty {
                        println!();
                    }
                    println!(
                        "epoch {epoch}/{epochs}: train loss {train_loss:.4}, validation loss {validation_loss:.4}, accuracy {:.1}%{}",
                        validation_accuracy * 100.0,
                        if *improved { " (best so far)" } else { "" }
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

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Every file under `dir`, with its path relative to `root`.
fn collect(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<FolderFile>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push(FolderFile {
                path: relative,
                bytes: read(&path)?,
            });
        }
    }
    Ok(())
}

/// Load the data set from an image folder, a table or an IDX pair.
fn load(
    data: &PathBuf,
    idx_labels: Option<&PathBuf>,
    label: Option<&str>,
    no_header: bool,
    classes: Option<&[String]>,
) -> Result<ClassificationDataset> {
    let source = name(data);
    if data.is_dir() {
        let mut files = Vec::new();
        collect(data, data, &mut files)?;
        let folder = image_folder(&source, &files, &ImageFolderConfig::default())?;
        if !folder.skipped.is_empty() {
            println!(
                "skipped {} files that are not PNG or JPEG: {}",
                folder.skipped.len(),
                folder.skipped.join(", ")
            );
        }
        return Ok(folder.dataset);
    }
    if let Some(labels) = idx_labels {
        return Ok(idx_dataset(
            &source,
            &read(data)?,
            &name(labels),
            &read(labels)?,
        )?);
    }
    let format = TableFormat::from_name(&source).with_context(|| {
        format!("{source}: cannot tell the format from the name; expected .csv, .tsv, .jsonl (optionally .gz), or IDX files with --idx-labels")
    })?;
    let table = Table::parse_with(&source, &read(data)?, format, !no_header)?;
    let label = label.map_or_else(
        || table.header.last().cloned().unwrap_or_default(),
        str::to_string,
    );
    Ok(table.to_dataset(&label, classes)?)
}

#[allow(clippy::too_many_arguments)]
fn train(
    data: &PathBuf,
    idx_labels: Option<&PathBuf>,
    label: Option<&str>,
    no_header: bool,
    recipe: Option<&PathBuf>,
    import: Option<&PathBuf>,
    out: &PathBuf,
    device: &Device,
    host: &Terminal,
) -> Result<()> {
    let recipe: Recipe = match recipe {
        Some(path) => serde_json::from_slice(&read(path)?)
            .with_context(|| format!("{} is not a valid recipe", path.display()))?,
        None => Recipe::default(),
    };
    let imported = import
        .map(|path| {
            ExportedClassifier::from_bytes(&name(path), &read(path)?).map_err(anyhow::Error::from)
        })
        .transpose()?;
    let dataset = load(
        data,
        idx_labels,
        label,
        no_header,
        imported.as_ref().map(|i| i.classes.as_slice()),
    )?;
    let counts = dataset.class_counts();
    println!(
        "{}: {} rows, {} features, {} classes ({})",
        dataset.source_name,
        dataset.len(),
        dataset.n_features,
        dataset.n_classes(),
        dataset
            .class_names
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Splits {
        mut train,
        mut validation,
        mut test,
    } = dataset.split(&recipe.split)?;
    let normalizer = match &imported {
        Some(i) => i.normalizer.clone(),
        None => recipe.normalize.then(|| Normalizer::fit(&train)),
    };
    if let Some(n) = &normalizer {
        for part in [&mut train, &mut validation, &mut test] {
            n.apply(part)?;
        }
    }
    println!(
        "split: {} train, {} validation, {} test",
        train.len(),
        validation.len(),
        test.len()
    );
    let shape = match &imported {
        Some(i) => i.config.clone(),
        None => MlpConfig::new(dataset.n_features, dataset.n_classes())
            .with_hidden(recipe.model.hidden.clone())
            .with_dropout(recipe.model.dropout),
    };
    let start = imported.as_ref().map(|i| i.to_model(device)).transpose()?;
    let splits = Splits {
        train,
        validation,
        test,
    };
    let outcome = pollster::block_on(fit(
        &shape,
        start,
        recipe.train.clone(),
        &recipe.fit,
        &splits,
        device,
        &Control::default(),
        host,
    ))?;
    println!(
        "\nbest epoch {} of {}{}; report on {} held-out rows:\n\n{}",
        outcome.best_epoch,
        outcome.epochs_run,
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        outcome.test.report.total,
        outcome.test.report.to_text()
    );
    println!("test accuracy: {:.4}", outcome.test.report.accuracy);
    let export = pollster::block_on(ExportedClassifier::from_model(
        &outcome.model,
        &shape,
        dataset.class_names.clone(),
        normalizer,
    ))?;
    std::fs::write(out, export.to_bytes()?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("model written to {}", out.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // A sentence for the user (with its causes), not a backtrace.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            data,
            idx_labels,
            label,
            no_header,
            recipe,
            import,
            out,
            device: backend,
            json,
        } => {
            let device = device(backend)?;
            let host = Terminal::new(json);
            train(
                &data,
                idx_labels.as_ref(),
                label.as_deref(),
                no_header,
                recipe.as_ref(),
                import.as_ref(),
                &out,
                &device,
                &host,
            )?;
        }
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
            let host = Terminal::new(json);
            pollster::block_on(run_demo(&request, &device, &Control::default(), &host))?;
            if host.done.borrow().is_none() {
                bail!("the run ended without a result");
            }
        }
    }
    Ok(())
}
