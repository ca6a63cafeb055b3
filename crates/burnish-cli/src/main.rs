//! `burnish`: the native command line. It runs the same core engine as the page, on the CPU
//! (flex) or a GPU through wgpu (Vulkan, Metal, DX12), with a terminal progress bar.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use burnish_core::data::images::{FolderFile, ImageFolderConfig};
use burnish_core::session::recipe::Recipe;
use burnish_core::session::workspace::{LoadRequest, Preview, Role, TableImage};
use burnish_core::session::{Control, DemoRequest, Event, Host, Workspace, run_demo};
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
    /// Train a classifier from a CSV/TSV/JSONL table, IDX files or an image folder, print the
    /// classification report on the test split, and export the model as safetensors.
    Train {
        /// A table with a header row (.csv, .tsv, .jsonl; .gz accepted), an IDX images file, or a
        /// folder of PNG/JPEG images with one sub-folder per class (resized to 28x28 grayscale).
        data: PathBuf,
        /// IDX labels file, when `data` is an IDX images file.
        #[arg(long)]
        idx_labels: Option<PathBuf>,
        /// Your own validation data, in the same form as `data` (instead of a share of it).
        #[arg(long)]
        validation: Option<PathBuf>,
        /// Your own test data, in the same form as `data` (instead of a share of it).
        #[arg(long)]
        test: Option<PathBuf>,
        /// The label column (default: the last column).
        #[arg(long)]
        label: Option<String>,
        /// The table has no header row; columns are then named 1, 2, ...
        #[arg(long)]
        no_header: bool,
        /// Table rows are images of this shape, e.g. `1,8,8` (enables the CNN).
        #[arg(long, value_parser = parse_shape)]
        image_shape: Option<[usize; 3]>,
        /// With --image-shape: the value of full intensity (e.g. 16 for the digits, 255 for
        /// MNIST as CSV).
        #[arg(long, default_value_t = 255.0)]
        max_value: f32,
        /// Recipe JSON (model, train, fit, split, normalize; any may be left out).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Continue training from an exported model (its classes and normalisation are kept).
        #[arg(long)]
        import: Option<PathBuf>,
        /// Where to write the trained model.
        #[arg(long, default_value = "model.safetensors")]
        out: PathBuf,
        /// Keep an autosave of the run in this file (every `fit.autosave_steps` steps of the
        /// recipe, default 50; replaced each time, never left half-written).
        #[arg(long)]
        autosave: Option<PathBuf>,
        /// Continue the run autosaved in this file, on the same data (its recipe is used).
        #[arg(long, conflicts_with_all = ["recipe", "import"])]
        resume: Option<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// Print every event as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Fine-tune a BERT-family encoder (a Hugging Face folder: config.json, tokenizer.json,
    /// model.safetensors) to classify the texts of a CSV/TSV/JSONL table, or to tag the words of
    /// a CoNLL file (`token<TAB>tag` lines, blank lines between sentences; .conll/.txt/.bio/.iob);
    /// print the report (entity-level F1 for tagging).
    Text {
        /// The table of texts and labels, or the CoNLL file of tagged sentences.
        data: PathBuf,
        /// The model folder.
        #[arg(long)]
        model: PathBuf,
        /// The text column (default: `text`, `sentence`, `review`, ... or the longest column).
        #[arg(long)]
        text: Option<String>,
        /// A second text column, for sentence pairs.
        #[arg(long)]
        pair: Option<String>,
        /// The label column (default: `label`, `class`, `sentiment`, ... or the last column).
        #[arg(long)]
        label: Option<String>,
        /// Your own validation file, in the same form as `data`.
        #[arg(long)]
        validation: Option<PathBuf>,
        /// Your own test file, in the same form as `data`.
        #[arg(long)]
        test: Option<PathBuf>,
        /// Longest sequence in tokens (longer texts are cut; default 128 or the recipe's).
        #[arg(long)]
        max_length: Option<usize>,
        /// `cls` (the pooler, as transformers) or `mean` (as sentence-transformers).
        #[arg(long)]
        pooling: Option<String>,
        /// Write the fine-tuned model here as a Hugging Face folder (config.json with id2label,
        /// model.safetensors with transformers' names, tokenizer.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Recipe JSON (`train`, `fit`, `split`, `text`; transformer defaults otherwise:
        /// AdamW 3e-5, linear decay after 10% warm-up, weight decay 0.01, batch 16, 3 epochs).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// What trains: `full` (default), `head` (the classifier only), `top` (the top
        /// --top-layers layers and the head) or `lora` (LoRA adapters and the head).
        #[arg(long, value_enum)]
        tuning: Option<TuningArg>,
        /// Layers trained with `--tuning top` (default 2).
        #[arg(long)]
        top_layers: Option<usize>,
        /// LoRA rank (default 8).
        #[arg(long)]
        lora_rank: Option<usize>,
        /// LoRA alpha: the update is scaled by alpha / rank (default 16).
        #[arg(long)]
        lora_alpha: Option<f64>,
        /// Dropout on the adapters' input (default 0.1).
        #[arg(long)]
        lora_dropout: Option<f64>,
        /// Layers to adapt, comma-separated: query, key, value, attention_output, intermediate,
        /// output (default query,value).
        #[arg(long, value_delimiter = ',')]
        lora_targets: Option<Vec<String>>,
        /// Start from this PEFT LoRA adapter folder on top of --model (and go on training it).
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Write the LoRA adapter alone here as a PEFT folder (adapter_config.json,
        /// adapter_model.safetensors).
        #[arg(long)]
        adapter_out: Option<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// Print every event as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Predict with a fine-tuned text model folder (as `text --out` writes it, or one fine-tuned
    /// with transformers): one JSON line per text with class probabilities, or tagged words and
    /// entities.
    Predict {
        /// The model folder.
        #[arg(long)]
        model: PathBuf,
        /// The texts.
        #[arg(required = true)]
        texts: Vec<String>,
        /// A second text for every text (models trained on pairs).
        #[arg(long)]
        pair: Option<String>,
        /// A PEFT LoRA adapter folder to apply on top of --model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
    },
    /// Train a GPT-style language model from scratch on a text file (a character-level
    /// tokenizer is built from the text unless --tokenizer gives one), with the held-out loss,
    /// perplexity and a sample as it learns; write a Hugging Face GPT-2 folder.
    Lm {
        /// The text (UTF-8), e.g. .assets/tinyshakespeare.txt.
        data: PathBuf,
        /// Recipe JSON (`model`, `train`, `validation`, `eval_every`, `eval_tokens`,
        /// `sample_every`, `prompt`, `sample`; any may be left out).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Override the number of steps.
        #[arg(long)]
        steps: Option<usize>,
        /// A tokenizer.json to use instead of a character-level one.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Continue training this model folder (as --out writes it).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write the trained model here (config.json, model.safetensors, tokenizer.json;
        /// LoRA adapters merged).
        #[arg(long)]
        out: Option<PathBuf>,
        /// `lora`: train LoRA adapters on the frozen --model instead of every weight.
        #[arg(long = "tuning", value_enum)]
        lm_tuning: Option<LmTuningArg>,
        /// LoRA rank (default 8).
        #[arg(long = "lora-rank")]
        lm_lora_rank: Option<usize>,
        /// LoRA alpha: the update is scaled by alpha / rank (default 16).
        #[arg(long = "lora-alpha")]
        lm_lora_alpha: Option<f64>,
        /// Blocks' layers to adapt, comma-separated: c_attn, attn.c_proj, c_fc, mlp.c_proj
        /// (default c_attn).
        #[arg(long = "lora-targets", value_delimiter = ',')]
        lm_lora_targets: Option<Vec<String>>,
        /// A PEFT LoRA adapter folder to put on --model first (and go on training).
        #[arg(long = "adapter")]
        lm_adapter: Option<PathBuf>,
        /// Write the LoRA adapters alone here as a PEFT folder.
        #[arg(long = "adapter-out")]
        lm_adapter_out: Option<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// Print every event as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Generate text with a language model folder (as `lm --out` writes it), streaming tokens
    /// as they are produced.
    Generate {
        /// The model folder.
        #[arg(long)]
        model: PathBuf,
        /// A PEFT LoRA adapter folder to put on the model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// The prompt.
        #[arg(long, default_value = "\n")]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Temperature (0: greedy).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Keep the k most likely tokens.
        #[arg(long)]
        top_k: Option<usize>,
        /// Keep the most likely tokens up to this probability mass.
        #[arg(long)]
        top_p: Option<f64>,
        /// Sampler seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
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

/// `--tuning`.
/// What a language-model run trains.
#[derive(Clone, Copy, ValueEnum)]
enum LmTuningArg {
    /// Every weight.
    Full,
    /// LoRA adapters on a frozen model.
    Lora,
}

#[derive(Clone, Copy, ValueEnum)]
enum TuningArg {
    /// Everything trains.
    Full,
    /// The classifier only.
    Head,
    /// The top --top-layers layers and the classifier.
    Top,
    /// LoRA adapters and the classifier.
    Lora,
}

/// The backends the CLI can run on.
#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// burn's pure-Rust CPU backend.
    Flex,
    /// burn's wgpu backend on the best GPU adapter found (or a software one such as lavapipe).
    Wgpu,
}

fn parse_shape(text: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split([',', 'x'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("expected channels,height,width such as 1,28,28 ({e})"))?;
    parts.try_into().map_err(|p: Vec<usize>| {
        format!(
            "expected 3 numbers (channels,height,width), found {}",
            p.len()
        )
    })
}

fn device(backend: Backend) -> Result<Device> {
    Ok(match backend {
        Backend::Flex => Device::flex(),
        Backend::Wgpu => {
            let device = burnish_core::gpu::init().context("no wgpu adapter could be started (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)")?;
            // How large a product burnish's dense-layer kernels take before burn's tiled one
            // (`tests/benches/products.rs` measures where it should be on an adapter).
            if let Ok(limit) = std::env::var(PRODUCT_LIMIT_VAR)
                && !limit.trim().is_empty()
            {
                let multiply_adds = limit.trim().parse::<u64>().with_context(|| {
                    format!("{PRODUCT_LIMIT_VAR}={limit:?}: expected a number of multiply-adds such as 134217728")
                })?;
                burnish_core::gpu::set_product_kernel_limit(multiply_adds);
            }
            device
        }
    })
}

/// The environment variable that sets `burnish_core::gpu::set_product_kernel_limit` for a wgpu
/// run.
const PRODUCT_LIMIT_VAR: &str = "BURNISH_PRODUCT_KERNEL_LIMIT";

/// Prints events to the terminal: a progress bar on a TTY, a line per tenth otherwise.
struct Terminal {
    /// Where autosaves go (`train --autosave`).
    autosave: Option<PathBuf>,
    start: Instant,
    json: bool,
    tty: bool,
    last_tenth: Cell<usize>,
    done: RefCell<Option<Event>>,
}

impl Terminal {
    fn new(json: bool) -> Self {
        Self {
            autosave: None,
            start: Instant::now(),
            json,
            tty: std::io::stdout().is_terminal(),
            last_tenth: Cell::new(0),
            done: RefCell::new(None),
        }
    }

    /// The run's peak memory: the device allocator's (`device`, from the run's report: burn's
    /// pools on wgpu; `None` on flex) and the process's resident peak (Linux). In JSON mode one
    /// `memory` event, else a line.
    fn memory(&self, device: Option<u64>) {
        let process = process_peak_rss();
        if self.json {
            println!(
                "{}",
                serde_json::json!({"type": "memory", "device_peak_bytes": device, "process_peak_rss_bytes": process})
            );
            return;
        }
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20));
        let parts: Vec<String> = [
            device.map(|b| format!("device allocator {}", mib(b))),
            process.map(|b| format!("process resident {}", mib(b))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            println!("peak memory: {}", parts.join(", "));
        }
    }
}

/// The process's peak resident memory in bytes (`VmHWM`), where the OS says (Linux).
fn process_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl Host for Terminal {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }

    fn autosaves(&self) -> bool {
        self.autosave.is_some()
    }

    fn autosave(&self, info: burnish_core::session::checkpoint::CheckpointInfo, bytes: Vec<u8>) {
        let Some(path) = &self.autosave else { return };
        // Written beside and renamed over, so a crash mid-write leaves the last good one.
        let partial = path.with_extension("partial");
        let written =
            std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, path));
        match written {
            Ok(()) if self.json => println!(
                "{}",
                serde_json::json!({"type": "autosaved", "info": info, "size": bytes.len(), "path": path})
            ),
            Ok(()) => {}
            Err(e) => eprintln!("warning: could not autosave to {}: {e}", path.display()),
        }
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
                    adapter,
                    ..
                } => {
                    let on = adapter.as_ref().unwrap_or(device);
                    println!(
                        "training {parameters} parameters on {rows} rows for {steps} steps ({on})"
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
                    validation_entity_f1,
                    improved,
                    ..
                } => {
                    if self.tty {
                        println!();
                    }
                    println!(
                        "epoch {epoch}/{epochs}: train loss {train_loss:.4}, validation loss {validation_loss:.4}, accuracy {:.1}%{}{}",
                        validation_accuracy * 100.0,
                        validation_entity_f1
                            .map(|f| format!(", entity F1 {:.1}%", f * 100.0))
                            .unwrap_or_default(),
                        if *improved { " (best so far)" } else { "" }
                    );
                }
                Event::LmEval {
                    step,
                    train_loss,
                    validation_loss,
                    perplexity,
                } => {
                    if self.tty {
                        println!();
                    }
                    println!(
                        "step {step}: train loss {train_loss:.4}, held-out loss {validation_loss:.4}, perplexity {perplexity:.2}"
                    );
                }
                Event::LmSample { step, text } => {
                    println!("--- sample at step {step} ---\n{text}\n---");
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

/// How to read the data files, and the files, for one role.
struct DataArgs<'a> {
    idx_labels: Option<&'a PathBuf>,
    label: Option<&'a str>,
    no_header: bool,
    image: Option<TableImage>,
}

/// Read `data` (a folder of images, a table, or an IDX pair with `idx_labels`) into the
/// workspace as `role`.
fn load(
    workspace: &mut Workspace,
    role: Role,
    data: &PathBuf,
    args: &DataArgs<'_>,
) -> Result<Preview> {
    let (request, files) = if data.is_dir() {
        let mut files = Vec::new();
        collect(data, data, &mut files)?;
        // Paths start with the folder's own name, as the browser's folder picker gives them.
        let root = name(data);
        for f in &mut files {
            f.path = format!("{root}/{}", f.path);
        }
        (
            LoadRequest::Images {
                config: ImageFolderConfig::default(),
            },
            files,
        )
    } else if let Some(labels) = args.idx_labels {
        (
            LoadRequest::Idx,
            vec![
                FolderFile {
                    path: name(data),
                    bytes: read(data)?,
                },
                FolderFile {
                    path: name(labels),
                    bytes: read(labels)?,
                },
            ],
        )
    } else {
        (
            LoadRequest::Table {
                label: args.label.map(str::to_string),
                has_header: !args.no_header,
                image: args.image,
            },
            vec![FolderFile {
                path: name(data),
                bytes: read(data)?,
            }],
        )
    };
    let preview = workspace.load(role, &request, &files)?;
    if !preview.skipped.is_empty() {
        println!(
            "skipped {} files that are not PNG or JPEG: {}",
            preview.skipped.len(),
            preview.skipped.join(", ")
        );
    }
    Ok(preview)
}

#[allow(clippy::too_many_arguments)]
fn train(
    data: &PathBuf,
    validation: Option<&PathBuf>,
    test: Option<&PathBuf>,
    args: &DataArgs<'_>,
    recipe: Option<&PathBuf>,
    import: Option<&PathBuf>,
    resume: Option<&PathBuf>,
    out: &PathBuf,
    device: &Device,
    host: &Terminal,
) -> Result<()> {
    let recipe: Recipe = match recipe {
        Some(path) => serde_json::from_slice(&read(path)?)
            .with_context(|| format!("{} is not a valid recipe", path.display()))?,
        None => Recipe::default(),
    };
    let mut workspace = Workspace::new();
    if let Some(path) = import {
        workspace.import(&name(path), &read(path)?)?;
    }
    let preview = load(&mut workspace, Role::Train, data, args)?;
    println!(
        "{}: {} rows, {} features, {} classes ({})",
        preview.source,
        preview.rows,
        preview.features,
        preview.classes.len(),
        preview
            .classes
            .iter()
            .zip(&preview.counts)
            .map(|(c, n)| format!("{c}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (role, path) in [(Role::Validation, validation), (Role::Test, test)] {
        if let Some(path) = path {
            let idx_labels = None;
            let p = load(
                &mut workspace,
                role,
                path,
                &DataArgs {
                    idx_labels,
                    ..*args
                },
            )?;
            println!("{}: {} rows for {role:?}", p.source, p.rows);
        }
    }
    let job = match resume {
        Some(path) => workspace.plan_resume(&path.display().to_string(), &read(path)?, device)?,
        None => workspace.plan(&recipe, import.is_some(), device)?,
    };
    let [n_train, n_validation, n_test] = job.split_sizes();
    println!("split: {n_train} train, {n_validation} validation, {n_test} test");
    let (export, report) = pollster::block_on(job.run(device, &Control::default(), host))?;
    println!(
        "\nbest epoch {} of {}{}; report on {} held-out rows:\n\n{}",
        report.best_epoch,
        report.epochs_run,
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        report.report.total,
        report.text
    );
    println!("test accuracy: {:.4}", report.report.accuracy);
    host.memory(report.peak_memory);
    workspace.set_model(export, "trained");
    std::fs::write(out, workspace.export()?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("model written to {}", out.display());
    Ok(())
}

/// Transformer defaults ([`Recipe::transformer`]) with the recipe file's fields on top.
fn text_recipe(path: Option<&PathBuf>) -> Result<Recipe> {
    let mut recipe = Recipe::transformer();
    let Some(path) = path else {
        return Ok(recipe);
    };
    let mut json = serde_json::to_value(&recipe)?;
    let given: serde_json::Value = serde_json::from_slice(&read(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    merge(&mut json, given);
    recipe = serde_json::from_value(json)
        .with_context(|| format!("{} is not a valid recipe", path.display()))?;
    Ok(recipe)
}

/// Overlay `given` on `base`, object by object.
fn merge(base: &mut serde_json::Value, given: serde_json::Value) {
    match (base, given) {
        (serde_json::Value::Object(b), serde_json::Value::Object(g)) => {
            for (k, v) in g {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The files of a Hugging Face model folder that burnish reads (and, to name them in errors,
/// the ones it does not: `vocab.txt`, `pytorch_model.bin`, passed empty).
fn model_files(model_dir: &std::path::Path) -> Result<Vec<FolderFile>> {
    folder_files(
        model_dir,
        "--model takes a Hugging Face model folder",
        &["config.json", "tokenizer.json", "model.safetensors"],
        &["vocab.txt", "pytorch_model.bin"],
    )
}

/// The files of a PEFT adapter folder.
fn adapter_files(dir: &std::path::Path) -> Result<Vec<FolderFile>> {
    use burnish_core::model::peft::{ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS};
    folder_files(
        dir,
        "--adapter takes a PEFT LoRA adapter folder",
        &[ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_META],
        &["adapter_model.bin"],
    )
}

/// The `wanted` files of `model_dir` (and the `named_only` ones, empty, so that messages can
/// name them).
fn folder_files(
    model_dir: &std::path::Path,
    what: &str,
    wanted: &[&str],
    named_only: &[&str],
) -> Result<Vec<FolderFile>> {
    if !model_dir.is_dir() {
        bail!("{} is not a folder; {what}", model_dir.display());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(model_dir)
        .with_context(|| format!("cannot list {}", model_dir.display()))?
    {
        let path = entry?.path();
        let file_name = name(&path);
        if path.is_file()
            && (wanted.contains(&file_name.as_str()) || named_only.contains(&file_name.as_str()))
        {
            let bytes = if named_only.contains(&file_name.as_str()) {
                Vec::new()
            } else {
                read(&path)?
            };
            files.push(FolderFile {
                path: format!("{}/{file_name}", name(model_dir)),
                bytes,
            });
        }
    }
    Ok(files)
}

/// Whether a data file holds tagged sentences (CoNLL) rather than a table.
fn is_conll(path: &std::path::Path) -> bool {
    let name = name(path).to_ascii_lowercase();
    [".conll", ".conllu", ".txt", ".bio", ".iob", ".iob2", ".ner"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The options of `burnish text`.
struct TextArgs<'a> {
    columns: (Option<&'a str>, Option<&'a str>, Option<&'a str>),
    validation: Option<&'a PathBuf>,
    test: Option<&'a PathBuf>,
    max_length: Option<usize>,
    pooling: Option<&'a str>,
    recipe: Option<&'a PathBuf>,
    out: Option<&'a PathBuf>,
    tuning: TuningArgs,
    adapter: Option<&'a PathBuf>,
    adapter_out: Option<&'a PathBuf>,
}

/// The tuning flags of `burnish text`.
struct TuningArgs {
    strategy: Option<TuningArg>,
    top_layers: Option<usize>,
    rank: Option<usize>,
    alpha: Option<f64>,
    dropout: Option<f64>,
    targets: Option<Vec<String>>,
}

impl TuningArgs {
    /// Overlay the flags on the recipe's tuning.
    fn apply(&self, tuning: &mut burnish_core::model::lora::Tuning) -> Result<()> {
        use burnish_core::model::lora::{LoraTarget, Strategy};
        if let Some(s) = self.strategy {
            tuning.strategy = match s {
                TuningArg::Full => Strategy::Full,
                TuningArg::Head => Strategy::Head,
                TuningArg::Top => Strategy::Top,
                TuningArg::Lora => Strategy::Lora,
            };
        }
        if let Some(k) = self.top_layers {
            tuning.top_layers = k;
        }
        if let Some(r) = self.rank {
            tuning.lora.rank = r;
        }
        if let Some(a) = self.alpha {
            tuning.lora.alpha = a;
        }
        if let Some(d) = self.dropout {
            tuning.lora.dropout = d;
        }
        if let Some(targets) = &self.targets {
            tuning.lora.targets = targets
                .iter()
                .map(|t| {
                    LoraTarget::ALL
                        .into_iter()
                        .find(|x| x.name() == t.trim())
                        .with_context(|| {
                            format!(
                                "--lora-targets: `{t}` is not one of query, key, value, attention_output, intermediate, output"
                            )
                        })
                })
                .collect::<Result<_>>()?;
        }
        Ok(())
    }
}

fn text(
    data: &PathBuf,
    model_dir: &std::path::Path,
    args: &TextArgs<'_>,
    device: &Device,
    host: &Terminal,
) -> Result<()> {
    use burnish_core::model::bert_classifier::Pooling;
    use burnish_core::session::text_session::{TextColumns, TextSession};

    let mut recipe = text_recipe(args.recipe)?;
    if let Some(m) = args.max_length {
        recipe.text.max_length = m;
    }
    match args.pooling {
        None => {}
        Some("cls") => recipe.text.pooling = Pooling::Cls,
        Some("mean") => recipe.text.pooling = Pooling::Mean,
        Some(other) => bail!("--pooling: expected cls or mean, found `{other}`"),
    }
    args.tuning.apply(&mut recipe.text.tuning)?;
    let files = model_files(model_dir)?;
    let mut session = TextSession::new();
    let info = session.load_model(&files)?;
    println!(
        "{}: {}-layer encoder, hidden {}, {} heads, {} parameters{}",
        info.name,
        info.layers,
        info.hidden_size,
        info.heads,
        info.parameters,
        if info.has_pooler { ", with pooler" } else { "" }
    );
    if !info.ignored.is_empty() {
        println!(
            "not part of the encoder, left out: {}",
            info.ignored.join(", ")
        );
    }
    let conll = is_conll(data);
    let (text_col, pair_col, label_col) = args.columns;
    let columns = match (text_col, label_col) {
        (None, None) if pair_col.is_none() => None,
        _ if conll => bail!(
            "--text, --pair and --label are for tables; {} holds tagged sentences",
            data.display()
        ),
        _ => {
            let table_default = TextColumns {
                text: text_col.unwrap_or("text").into(),
                pair: pair_col.map(str::to_string),
                label: label_col.unwrap_or("label").into(),
            };
            Some(table_default)
        }
    };
    let start = Instant::now();
    let file = |path: &PathBuf| -> Result<Vec<FolderFile>> {
        Ok(vec![FolderFile {
            path: name(path),
            bytes: read(path)?,
        }])
    };
    let preview = session.load(Role::Train, conll, columns.clone(), &file(data)?)?;
    for (role, path) in [(Role::Validation, args.validation), (Role::Test, args.test)] {
        if let Some(path) = path {
            let p = session.load(role, conll, columns.clone(), &file(path)?)?;
            println!("{}: {} rows for {role:?}", p.source, p.rows);
        }
    }
    let what = if conll { "sentences" } else { "texts" };
    println!(
        "{}: {} {what}{}, {} classes ({}){}; read in {:.2} s",
        preview.source,
        preview.rows,
        if conll {
            format!(" ({} words)", preview.words)
        } else {
            String::new()
        },
        preview.classes.len(),
        preview.classes.join(", "),
        preview
            .tokens
            .as_ref()
            .map(|t| format!(
                "; tokens per row: mean {:.1}, 95% {}, max {}",
                t.mean, t.p95, t.max
            ))
            .unwrap_or_default(),
        start.elapsed().as_secs_f64()
    );
    if let Some(chosen) = &preview.chosen {
        println!(
            "columns: text `{}`{}, label `{}`",
            chosen.text,
            chosen
                .pair
                .as_ref()
                .map(|p| format!(", pair `{p}`"))
                .unwrap_or_default(),
            chosen.label
        );
    }
    if let Some(dir) = args.adapter {
        let info = session.load_adapter(&adapter_files(dir)?, device)?;
        println!(
            "adapter {}: {} onto {}",
            dir.display(),
            info.adapter.unwrap_or_default(),
            model_dir.display()
        );
        if recipe.text.tuning.strategy != burnish_core::model::lora::Strategy::Lora {
            println!(
                "note: training with {} folds the adapter into the weights",
                recipe.text.tuning.describe()
            );
        }
    }
    let job = session.plan(&recipe, args.adapter.is_some(), None, device)?;
    println!("{}", job.memory.summary());
    let [train, validation, test] = job.split_sizes();
    println!("split: {train} train, {validation} validation, {test} test");
    if session
        .folder()
        .and_then(|f| f.head.as_ref())
        .is_some_and(|h| h.labels == preview.classes)
    {
        println!("continuing with the folder's classification head");
    }
    let (trained, report, tokens_per_second) =
        pollster::block_on(job.run(device, &Control::default(), host))?;
    println!(
        "\nbest epoch {} of {}; report on the {} {}:\n\n{}",
        report.best_epoch, report.epochs_run, report.split, what, report.text
    );
    match &report.entities {
        Some(e) => {
            println!("entity F1: {:.4}", e.micro.f1);
            println!("token accuracy: {:.4}", e.token_accuracy);
        }
        None => println!("test accuracy: {:.4}", report.report.accuracy),
    }
    println!("training throughput: {tokens_per_second:.0} tokens/s");
    host.memory(report.peak_memory);
    if let Some(out) = args.adapter_out {
        let folder = pollster::block_on(trained.export_adapter())?;
        write_folder(out, &folder.files)?;
        println!("LoRA adapter (PEFT layout) written to {}", out.display());
    }
    if let Some(out) = args.out {
        let folder = pollster::block_on(trained.export())?;
        write_folder(out, &folder.files)?;
        println!("model folder written to {}", out.display());
        if trained.model.task() == burnish_core::model::bert_classifier::TextTask::Sequence
            && trained.model.pooling() == Pooling::Mean
        {
            println!(
                "note: this model pools by the mean of its tokens; transformers' BertForSequenceClassification pools [CLS] through the pooler, so it loads the folder but predicts differently (`burnish predict` and the page use the recorded pooling)"
            );
        }
    }
    Ok(())
}

/// A language model folder (config.json, model.safetensors, tokenizer.json).
/// A language-model folder, with a PEFT LoRA adapter folder on top if given.
fn load_lm(
    dir: &std::path::Path,
    adapter: Option<&std::path::Path>,
    device: &Device,
) -> Result<burnish_core::session::lm::TrainedLm> {
    use burnish_core::model::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_gpt_adapter};
    let file = |n: &str| {
        std::fs::read(dir.join(n))
            .with_context(|| format!("{}: cannot read {n}; a language model folder holds config.json, model.safetensors and tokenizer.json", dir.display()))
    };
    let mut lm = burnish_core::session::lm::import_lm(
        &file("config.json")?,
        &file("model.safetensors")?,
        &file("tokenizer.json")?,
        device,
    )?;
    if let Some(adapter) = adapter {
        let file = |n: &str| {
            std::fs::read(adapter.join(n)).with_context(|| {
                format!(
                    "{}: cannot read {n}; a PEFT adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}",
                    adapter.display()
                )
            })
        };
        let a = read_gpt_adapter(&file(ADAPTER_CONFIG)?, &file(ADAPTER_WEIGHTS)?, &lm.config)
            .with_context(|| format!("{}", adapter.display()))?;
        lm.model = a.apply(lm.model, device);
    }
    Ok(lm)
}

fn write_folder(out: &std::path::Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, bytes) in files {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
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
            validation,
            test,
            label,
            no_header,
            image_shape,
            max_value,
            recipe,
            import,
            out,
            autosave,
            resume,
            device: backend,
            json,
        } => {
            let device = device(backend)?;
            let mut host = Terminal::new(json);
            host.autosave = autosave;
            let args = DataArgs {
                idx_labels: idx_labels.as_ref(),
                label: label.as_deref(),
                no_header,
                image: image_shape.map(|shape| TableImage { shape, max_value }),
            };
            train(
                &data,
                validation.as_ref(),
                test.as_ref(),
                &args,
                recipe.as_ref(),
                import.as_ref(),
                resume.as_ref(),
                &out,
                &device,
                &host,
            )?;
        }
        Command::Text {
            data,
            model,
            text: text_col,
            pair,
            label,
            validation,
            test,
            max_length,
            pooling,
            out,
            recipe,
            tuning,
            top_layers,
            lora_rank,
            lora_alpha,
            lora_dropout,
            lora_targets,
            adapter,
            adapter_out,
            device: backend,
            json,
        } => {
            let device = device(backend)?;
            let host = Terminal::new(json);
            let args = TextArgs {
                tuning: TuningArgs {
                    strategy: tuning,
                    top_layers,
                    rank: lora_rank,
                    alpha: lora_alpha,
                    dropout: lora_dropout,
                    targets: lora_targets,
                },
                adapter: adapter.as_ref(),
                adapter_out: adapter_out.as_ref(),
                columns: (text_col.as_deref(), pair.as_deref(), label.as_deref()),
                validation: validation.as_ref(),
                test: test.as_ref(),
                max_length,
                pooling: pooling.as_deref(),
                recipe: recipe.as_ref(),
                out: out.as_ref(),
            };
            text(&data, &model, &args, &device, &host)?;
        }
        Command::Predict {
            model,
            texts,
            pair,
            adapter,
            device: backend,
        } => {
            use burnish_core::session::text_session::{TextSession, predict_text};
            let device = device(backend)?;
            let mut session = TextSession::new();
            session.load_model(&model_files(&model)?)?;
            if let Some(dir) = &adapter {
                session.load_adapter(&adapter_files(dir)?, &device)?;
            }
            let trained = session.current(&device)?;
            for text in &texts {
                let prediction =
                    pollster::block_on(predict_text(&trained, text, pair.as_deref(), &device))?;
                println!("{}", serde_json::to_string(&prediction)?);
            }
        }
        Command::Lm {
            data,
            recipe,
            steps,
            tokenizer,
            model,
            out,
            lm_tuning,
            lm_lora_rank,
            lm_lora_alpha,
            lm_lora_targets,
            lm_adapter,
            lm_adapter_out,
            device: backend,
            json,
        } => {
            use burnish_core::model::gpt::{GptStrategy, GptTarget};
            use burnish_core::session::lm::{LmData, LmRecipe, export_lm, train_lm};
            let device = device(backend)?;
            let host = Terminal::new(json);
            // The given fields over the language-model defaults (a partial `train` keeps the
            // defaults of the fields it leaves out).
            let mut recipe: LmRecipe = match &recipe {
                Some(path) => {
                    let mut json = serde_json::to_value(LmRecipe::default())?;
                    let given: serde_json::Value = serde_json::from_slice(&read(path)?)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    merge(&mut json, given);
                    serde_json::from_value(json).with_context(|| {
                        format!("{} is not a valid language-model recipe", path.display())
                    })?
                }
                None => LmRecipe::default(),
            };
            if let Some(steps) = steps {
                recipe.train.steps = steps;
            }
            let tuning = &mut recipe.tuning;
            match lm_tuning {
                Some(LmTuningArg::Full) => tuning.strategy = GptStrategy::Full,
                Some(LmTuningArg::Lora) => tuning.strategy = GptStrategy::Lora,
                None => {}
            }
            if let Some(r) = lm_lora_rank {
                tuning.lora.rank = r;
            }
            if let Some(a) = lm_lora_alpha {
                tuning.lora.alpha = a;
            }
            if let Some(targets) = &lm_lora_targets {
                tuning.lora.targets = targets
                    .iter()
                    .map(|t| {
                        GptTarget::ALL
                            .into_iter()
                            .find(|x| x.name() == t.trim())
                            .with_context(|| {
                                format!(
                                    "--lora-targets: `{t}` is not one of c_attn, attn.c_proj, c_fc, mlp.c_proj"
                                )
                            })
                    })
                    .collect::<Result<_>>()?;
            }
            if lm_adapter.is_some() && model.is_none() {
                bail!("--adapter goes on a base model: give it with --model");
            }
            let start = model
                .as_ref()
                .map(|dir| load_lm(dir, lm_adapter.as_deref(), &device))
                .transpose()?;
            let tokenizer_json = match (&tokenizer, &start) {
                (Some(path), _) => Some(read(path)?),
                (None, Some(lm)) => Some(lm.tokenizer.to_json().to_vec()),
                (None, None) => None,
            };
            let data = LmData::load(&name(&data), &read(&data)?, tokenizer_json.as_deref())?;
            let p = data.preview();
            let (train, held) = data.split(recipe.validation)?;
            println!(
                "{}: {} characters, {} tokens in the vocabulary; {} tokens to train on, {} held out",
                p.source,
                p.characters,
                p.vocab_size,
                train.len(),
                held.len()
            );
            let (trained, report) = pollster::block_on(train_lm(
                &data,
                &recipe,
                start,
                &device,
                &Control::default(),
                &host,
            ))?;
            if let Some(v) = &report.validation {
                println!(
                    "held-out loss {:.4}, perplexity {:.2} over {} tokens",
                    v.loss, v.perplexity, v.tokens
                );
            }
            println!(
                "training throughput: {:.0} tokens/s",
                report.tokens_per_second
            );
            host.memory(report.peak_memory);
            println!("--- sample ---\n{}{}\n---", recipe.prompt, report.sample);
            if let Some(out) = out {
                write_folder(&out, &pollster::block_on(export_lm(&trained))?)?;
                println!("model folder written to {}", out.display());
            }
            if let Some(dir) = lm_adapter_out {
                let base = model.as_deref().map_or("burnish-gpt".to_string(), name);
                let files = pollster::block_on(burnish_core::model::peft::export_gpt_adapter(
                    &trained.model,
                    &base,
                ))?;
                write_folder(&dir, &files)?;
                println!("LoRA adapter written to {}", dir.display());
            }
        }
        Command::Generate {
            model,
            adapter,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            device: backend,
        } => {
            use burnish_core::generate::Sampling;
            use burnish_core::session::lm::sample_text;
            let device = device(backend)?;
            let lm = load_lm(&model, adapter.as_deref(), &device)?;
            let sampling = Sampling {
                max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
            };
            print!("{prompt}");
            let start = Instant::now();
            let text =
                pollster::block_on(sample_text(&lm, &prompt, &sampling, &device, |piece| {
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                    true
                }))?;
            println!();
            eprintln!(
                "{} tokens in {:.2} s ({:.1} tokens/s)",
                lm.tokenizer.encode(&text)?.len(),
                start.elapsed().as_secs_f64(),
                lm.tokenizer.encode(&text)?.len() as f64 / start.elapsed().as_secs_f64()
            );
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
