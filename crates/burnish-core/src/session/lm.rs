//! Language modelling as a run, shared by the worker and the CLI: a text file becomes a token
//! stream (a character-level `tokenizer.json` built from it, or one given), the tail of which is
//! held out; a [`Gpt`] trains on it for a number of steps with progress events, the held-out
//! loss and perplexity every `eval_every` steps, and a sample every `sample_every` steps so the
//! user watches it learn. Trained models export as a Hugging Face `GPT2LMHeadModel` folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`) and load back from one.

use burn::module::Module;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::fit::{LossQueue, StepTimer, check_loss_read_ms};
use super::protocol::Event;
use super::runner::{Control, Host, RunState};
use crate::data::images::FolderFile;
use crate::export::{decode_float, write_safetensors};
use crate::generate::{Sampling, generate};
use crate::model::gpt::{Gpt, GptConfig, GptTuning, tensor_layout};
use crate::model::lora::trainable_parameters;
use crate::model::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, export_gpt_adapter, read_gpt_adapter};
use crate::text::LmTokenizer;
use crate::train::TrainConfig;
use crate::train::lm::{LmEvaluation, LmTrainer, evaluate_lm};
use crate::train::schedule::Decay;
use crate::{Error, Result};

/// Every choice of a language-model run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmRecipe {
    /// The model's size (`vocab_size` comes from the tokenizer).
    pub model: GptConfig,
    /// Optimizer, schedule, batch (windows per step), seed; `steps` is the run's length.
    pub train: TrainConfig,
    /// Share of the text, at its end, held out for the loss and perplexity. Default 0.1.
    pub validation: f64,
    /// Evaluate the held-out text every this many steps (and at the end). Default 100.
    pub eval_every: usize,
    /// At most this many held-out tokens are evaluated during training (all at the end).
    /// Default 8192.
    pub eval_tokens: usize,
    /// Generate a sample every this many steps (0: never). Default 200.
    pub sample_every: usize,
    /// The samples' prompt. Default a newline.
    pub prompt: String,
    /// How samples are drawn.
    pub sample: Sampling,
    /// What trains: everything (default), or LoRA adapters on a frozen model.
    pub tuning: GptTuning,
    /// Read training losses back about this often, in milliseconds (default 100; 0: after
    /// every step), as `fit.loss_read_ms` does for classifiers.
    pub loss_read_ms: f64,
}

impl Default for LmRecipe {
    fn default() -> Self {
        let mut train = TrainConfig {
            learning_rate: 3e-3,
            batch_size: 32,
            steps: 1000,
            weight_decay: 0.1,
            clip_grad_norm: Some(1.0),
            ..TrainConfig::default()
        };
        train.schedule.decay = Decay::Cosine;
        train.schedule.warmup_fraction = 0.05;
        Self {
            model: GptConfig::default(),
            train,
            validation: 0.1,
            eval_every: 100,
            eval_tokens: 8192,
            sample_every: 200,
            prompt: "\n".into(),
            sample: Sampling {
                max_tokens: 200,
                ..Sampling::default()
            },
            tuning: GptTuning::default(),
            loss_read_ms: 100.0,
        }
    }
}

/// A text as a token stream.
#[derive(Debug, Clone)]
pub struct LmData {
    /// The file's name.
    pub source: String,
    /// Its tokenizer.
    pub tokenizer: LmTokenizer,
    /// The text's tokens.
    pub tokens: Vec<u32>,
    /// The first characters, for a preview.
    pub head: String,
    /// Characters in the text.
    pub characters: usize,
}

/// What the page shows of a loaded text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmPreview {
    /// The file's name.
    pub source: String,
    /// Characters.
    pub characters: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Tokens in the text.
    pub tokens: usize,
    /// The first characters.
    pub head: String,
}

impl LmData {
    /// Read `bytes` (UTF-8 text, named `source` in errors) and tokenize it with
    /// `tokenizer_json` or a character-level tokenizer built from it.
    ///
    /// # Errors
    /// Not UTF-8 (the line and column are named), too short, an invalid tokenizer.
    pub fn load(source: &str, bytes: &[u8], tokenizer_json: Option<&[u8]>) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            Error::data(
                source,
                format!("line {line}, column {column}: not UTF-8 text (save the file as UTF-8)"),
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let tokenizer = match tokenizer_json {
            Some(json) => LmTokenizer::from_json("tokenizer.json", json)?,
            None => LmTokenizer::char_level(source, text)?,
        };
        let tokens = tokenizer.encode(text)?;
        if tokens.len() < 64 {
            return Err(Error::data(
                source,
                format!(
                    "{} tokens is too short to train a language model on; expected at least 64",
                    tokens.len()
                ),
            ));
        }
        Ok(Self {
            source: source.to_string(),
            head: text.chars().take(300).collect(),
            characters: text.chars().count(),
            tokens,
            tokenizer,
        })
    }

    /// The tokens to train on and the held-out tail (the last `validation` share).
    ///
    /// # Errors
    /// A share outside [0, 0.9).
    pub fn split(&self, validation: f64) -> Result<(&[u32], &[u32])> {
        if !(0.0..0.9).contains(&validation) {
            return Err(Error::config("validation", "must be in [0, 0.9)"));
        }
        let held = (self.tokens.len() as f64 * validation) as usize;
        let held = if validation > 0.0 { held.max(2) } else { 0 };
        Ok(self.tokens.split_at(self.tokens.len() - held))
    }

    /// What the page shows.
    pub fn preview(&self) -> LmPreview {
        LmPreview {
            source: self.source.clone(),
            characters: self.characters,
            vocab_size: self.tokenizer.vocab_size(),
            tokens: self.tokens.len(),
            head: self.head.clone(),
        }
    }
}

/// A trained (or loaded) language model.
#[derive(Debug, Clone)]
pub struct TrainedLm {
    /// The model (on the device).
    pub model: Gpt,
    /// Its size.
    pub config: GptConfig,
    /// Its tokenizer.
    pub tokenizer: LmTokenizer,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmReport {
    /// Steps taken.
    pub steps: usize,
    /// Loss and perplexity on the whole held-out text.
    pub validation: Option<LmEvaluation>,
    /// Training tokens per second of step time.
    pub tokens_per_second: f64,
    /// Whether the user cancelled the run.
    pub cancelled: bool,
    /// A sample from the final model.
    pub sample: String,
    /// The most GPU memory the run's device held, in bytes, when the backend reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
}

/// Generate `sampling.max_tokens` after `prompt` and return the text.
///
/// # Errors
/// As [`generate`].
pub async fn sample_text(
    lm: &TrainedLm,
    prompt: &str,
    sampling: &Sampling,
    device: &Device,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<String> {
    let ids = lm.tokenizer.encode(prompt)?;
    let tokenizer = &lm.tokenizer;
    let out = generate(&lm.model, &ids, sampling, device, |t| {
        let piece = tokenizer.decode(&[t]).unwrap_or_default();
        on_text(&piece)
    })
    .await?;
    lm.tokenizer.decode(&out)
}

/// Train a model (fresh from `recipe.model`, or `start` to continue) on `data`.
///
/// # Errors
/// Invalid recipes, read-back failures, divergence.
pub async fn train_lm(
    data: &LmData,
    recipe: &LmRecipe,
    start: Option<TrainedLm>,
    device: &Device,
    control: &Control,
    host: &impl Host,
) -> Result<(TrainedLm, LmReport)> {
    check_loss_read_ms("loss_read_ms", recipe.loss_read_ms)?;
    let (model, config) = match start {
        Some(lm) => {
            if lm.tokenizer.vocab_size() != data.tokenizer.vocab_size() {
                return Err(Error::data(
                    &data.source,
                    "the current model's tokenizer differs from this text's; train a new model",
                ));
            }
            (lm.model, lm.config)
        }
        None if recipe.tuning.strategy == crate::model::gpt::GptStrategy::Lora => {
            return Err(Error::config(
                "tuning.strategy",
                "LoRA adapts an existing model: train or load a language model first, then train LoRA adapters on it",
            ));
        }
        None => {
            let mut config = recipe.model.clone();
            config.vocab_size = data.tokenizer.vocab_size();
            (config.init(recipe.train.seed, device)?, config)
        }
    };
    let model = model.tuned(&recipe.tuning, recipe.train.seed)?;
    let (train, held_out) = data.split(recipe.validation)?;
    let steps = recipe.train.steps;
    let total_parameters = burn::module::Module::num_params(&model);
    let mut trainer = LmTrainer::new(model, recipe.train.clone(), train.to_vec(), device)?;
    let half = recipe.train.half_products(device).is_some();
    let window = trainer.window();
    host.post(Event::Started {
        rows: train.len(),
        steps,
        epochs: 1,
        steps_per_epoch: steps,
        parameters: trainable_parameters(trainer.model()),
        total_parameters,
        device: format!("{device:?}"),
        adapter: super::adapter_name(device),
        precision: recipe.train.precision_on(device, true),
    });
    let lm = |model: &Gpt| TrainedLm {
        model: model.valid(),
        config: config.clone(),
        tokenizer: data.tokenizer.clone(),
    };
    let held = &held_out[..held_out.len().min(recipe.eval_tokens.max(2))];
    // Samples need a prompt of at least one token: an empty one, or one the tokenizer makes no
    // token of (the default newline under a WordPiece tokenizer, which drops whitespace), starts
    // from the text's first token. Checked before training, so no run ends in this error.
    let prompt = if data.tokenizer.encode(&recipe.prompt)?.is_empty() {
        data.tokenizer.decode(&data.tokens[..1])?
    } else {
        recipe.prompt.clone()
    };
    if data.tokenizer.encode(&prompt)?.is_empty() {
        return Err(Error::config(
            "prompt",
            format!(
                "expected a prompt the tokenizer makes at least one token of, found {prompt:?}"
            ),
        ));
    }
    let (mut timer, mut queue, mut cancelled) = (StepTimer::default(), LossQueue::default(), false);
    let mut loss_sum = 0.0f64;
    let mut loss_n = 0usize;
    for step in 1..=steps {
        if !control.checkpoint(host, trainer.steps_done()).await {
            cancelled = true;
            break;
        }
        let before = host.now_ms();
        let (loss, learning_rate) = trainer.step_unread()?;
        let host_ms = host.now_ms() - before;
        queue.push(loss, step, learning_rate, before, host_ms);
        let evaluating = held.len() >= 2 && (step % recipe.eval_every.max(1) == 0 || step == steps);
        let sampling = recipe.sample_every > 0 && step % recipe.sample_every == 0 && step < steps;
        // Losses are read together (progress events in order) until an evaluation, a sample, the
        // end or a pause needs them.
        let queued = queue.len();
        if evaluating
            || sampling
            || step == steps
            || control.get() != RunState::Running
            || queue.full(recipe.loss_read_ms, &timer)
        {
            loss_sum += queue
                .read(&mut timer, steps, host)
                .await
                .map_err(|e| e.in_precision(half))?;
            loss_n += queued;
        }
        if evaluating {
            let e = evaluate_lm(trainer.model(), held, 8, device).await?;
            host.post(Event::LmEval {
                step,
                train_loss: loss_sum / loss_n.max(1) as f64,
                validation_loss: e.loss,
                perplexity: e.perplexity,
            });
            (loss_sum, loss_n) = (0.0, 0);
        }
        if sampling {
            let text = sample_text(
                &lm(trainer.model()),
                &prompt,
                &recipe.sample,
                device,
                |_| true,
            )
            .await?;
            host.post(Event::LmSample { step, text });
        }
    }
    let trained = lm(trainer.model());
    let validation = if held_out.len() >= 2 {
        Some(evaluate_lm(&trained.model, held_out, 8, device).await?)
    } else {
        None
    };
    let sample = sample_text(&trained, &prompt, &recipe.sample, device, |_| true).await?;
    let report = LmReport {
        steps: trainer.steps_done(),
        validation,
        tokens_per_second: if timer.mean() > 0.0 {
            (window * recipe.train.batch_size * recipe.train.grad_accumulation) as f64
                / (timer.mean() / 1e3)
        } else {
            0.0
        },
        cancelled,
        sample,
        peak_memory: super::text_fit::peak_memory(device),
    };
    host.post(Event::LmReport {
        report: Box::new(report.clone()),
    });
    Ok((trained, report))
}

/// The model as a Hugging Face `GPT2LMHeadModel` folder: `config.json` (GPT-2's fields, tied
/// embeddings, `gelu_new`, and a `burnish` entry), `model.safetensors` (GPT-2's names; LoRA
/// adapters folded in), `tokenizer.json`.
///
/// # Errors
/// Read-back failures.
pub async fn export_lm(lm: &TrainedLm) -> Result<Vec<(String, Vec<u8>)>> {
    let c = &lm.config;
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.context,
        "n_ctx": c.context,
        "n_embd": c.hidden,
        "n_layer": c.layers,
        "n_head": c.heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        "bos_token_id": null,
        "eos_token_id": null,
        "burnish": {"kind": "gpt", "format": 1},
    });
    let values = lm.model.tensors().await?;
    let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = tensor_layout(c)
        .into_iter()
        .zip(values)
        .map(|((name, shape), v)| {
            (
                name,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                shape,
            )
        })
        .collect();
    let metadata = std::collections::BTreeMap::from([("format", "pt".to_string())]);
    Ok(vec![
        (
            "config.json".into(),
            serde_json::to_vec_pretty(&config)
                .map_err(|e| Error::data("config.json", e.to_string()))?,
        ),
        (
            "model.safetensors".into(),
            write_safetensors(&tensors, &metadata),
        ),
        ("tokenizer.json".into(), lm.tokenizer.to_json().to_vec()),
    ])
}

/// A model from a `GPT2LMHeadModel` folder's files (as [`export_lm`] writes them): every tensor's
/// name, dtype and shape checked against config.json before anything reaches the device.
///
/// # Errors
/// Missing files or fields, tensors that do not match (named).
pub fn import_lm(
    config_json: &[u8],
    weights: &[u8],
    tokenizer_json: &[u8],
    device: &Device,
) -> Result<TrainedLm> {
    let v: serde_json::Value = serde_json::from_slice(config_json)
        .map_err(|e| Error::data("config.json", format!("not valid JSON ({e})")))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| {
                Error::data(
                    "config.json",
                    format!("`{name}` is missing; expected a GPT-2 config"),
                )
            })
    };
    if v.get("model_type").and_then(|m| m.as_str()) != Some("gpt2") {
        return Err(Error::data(
            "config.json",
            "`model_type` is not `gpt2`; burnish loads GPT-2-style language models",
        ));
    }
    let config = GptConfig {
        vocab_size: field("vocab_size")?,
        context: field("n_positions")?,
        layers: field("n_layer")?,
        heads: field("n_head")?,
        hidden: field("n_embd")?,
        dropout: v
            .get("resid_pdrop")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.1),
    };
    config.validate().map_err(|e| {
        Error::data(
            "config.json",
            format!(
                "{e} (n_embd {}, n_head {}, n_layer {}, n_positions {})",
                config.hidden, config.heads, config.layers, config.context
            ),
        )
    })?;
    if v.get("n_inner").is_some_and(|n| !n.is_null()) {
        return Err(Error::data(
            "config.json",
            "`n_inner` must be null (4 x n_embd)",
        ));
    }
    let tokenizer = LmTokenizer::from_json("tokenizer.json", tokenizer_json)?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::data(
            "tokenizer.json",
            format!(
                "has {} tokens but config.json's vocab_size is {}",
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(weights).map_err(|e| {
        Error::data(
            "model.safetensors",
            format!("not a valid safetensors file ({e})"),
        )
    })?;
    let mut values = Vec::new();
    for (name, shape) in tensor_layout(&config) {
        let view = st
            .tensor(&name)
            .or_else(|_| st.tensor(name.trim_start_matches("transformer.")))
            .map_err(|_| Error::data("model.safetensors", format!("tensor `{name}` is missing")))?;
        if view.shape() != shape.as_slice() {
            return Err(Error::data(
                "model.safetensors",
                format!(
                    "tensor `{name}` has shape {:?}, but config.json implies {shape:?}",
                    view.shape()
                ),
            ));
        }
        values.push(decode_float(
            "model.safetensors",
            &name,
            view.dtype(),
            view.data(),
        )?);
    }
    Ok(TrainedLm {
        model: Gpt::from_tensors(&config, values, device),
        config,
        tokenizer,
    })
}

/// A language model as the page describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmModelInfo {
    /// `trained` or `imported`.
    pub origin: String,
    /// Its size.
    pub config: GptConfig,
    /// Parameters (adapters included).
    pub parameters: usize,
    /// Its LoRA adapters (`LoRA r=8 on c_attn`), if any.
    pub adapter: Option<String>,
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether dropped files are a language-model folder (`config.json` with `model_type: gpt2`).
pub fn is_lm_folder(files: &[FolderFile]) -> bool {
    files
        .iter()
        .filter(|f| base_name(&f.path) == "config.json")
        .any(|f| {
            serde_json::from_slice::<serde_json::Value>(&f.bytes)
                .ok()
                .and_then(|v| v.get("model_type")?.as_str().map(|t| t == "gpt2"))
                .unwrap_or(false)
        })
}

/// Whether dropped files are a PEFT adapter for a language model (`adapter_config.json` with
/// `task_type: CAUSAL_LM`).
pub fn is_lm_adapter(files: &[FolderFile]) -> bool {
    files
        .iter()
        .filter(|f| base_name(&f.path) == ADAPTER_CONFIG)
        .any(|f| {
            serde_json::from_slice::<serde_json::Value>(&f.bytes)
                .ok()
                .and_then(|v| v.get("task_type")?.as_str().map(|t| t == "CAUSAL_LM"))
                .unwrap_or(false)
        })
}

/// The language-model side of a session: the text and the current model.
#[derive(Debug)]
pub struct LmSession {
    data: Option<LmData>,
    model: Option<TrainedLm>,
    origin: String,
    /// The name adapters record as their base (`base_model_name_or_path`).
    base: String,
}

impl Default for LmSession {
    fn default() -> Self {
        Self {
            data: None,
            model: None,
            origin: String::new(),
            base: "burnish-gpt".into(),
        }
    }
}

impl LmSession {
    /// Load a text file (and an optional `tokenizer.json` among `files`).
    ///
    /// # Errors
    /// No text file; as [`LmData::load`].
    pub fn load_text(&mut self, files: &[FolderFile]) -> Result<LmPreview> {
        let tokenizer = files
            .iter()
            .find(|f| base_name(&f.path) == "tokenizer.json");
        let text = files
            .iter()
            .find(|f| base_name(&f.path) != "tokenizer.json")
            .ok_or_else(|| {
                Error::data(
                    "text",
                    "drop a UTF-8 text file to train a language model on",
                )
            })?;
        let data = LmData::load(
            base_name(&text.path),
            &text.bytes,
            tokenizer.map(|t| t.bytes.as_slice()),
        )?;
        let preview = data.preview();
        self.data = Some(data);
        Ok(preview)
    }

    /// Load a model folder (as [`export_lm`] writes it) on `device`.
    ///
    /// # Errors
    /// Missing files; as [`import_lm`].
    pub fn load_model(&mut self, files: &[FolderFile], device: &Device) -> Result<LmModelInfo> {
        let find = |name: &str| {
            files
                .iter()
                .find(|f| base_name(&f.path) == name)
                .map(|f| f.bytes.as_slice())
                .ok_or_else(|| {
                    Error::data(
                        "model folder",
                        format!("the folder has no {name}; a language model folder holds config.json, model.safetensors and tokenizer.json"),
                    )
                })
        };
        let lm = import_lm(
            find("config.json")?,
            find("model.safetensors")?,
            find("tokenizer.json")?,
            device,
        )?;
        if let Some(folder) = files
            .iter()
            .find(|f| base_name(&f.path) == "config.json")
            .and_then(|f| f.path.rsplit('/').nth(1))
        {
            self.base = folder.to_string();
        }
        Ok(self.set_model(lm, "imported"))
    }

    /// Make `lm` the current model.
    pub fn set_model(&mut self, lm: TrainedLm, origin: &str) -> LmModelInfo {
        self.model = Some(lm);
        self.origin = origin.into();
        self.info().expect("a model was just set")
    }

    /// What the page shows of the current model.
    pub fn info(&self) -> Option<LmModelInfo> {
        let lm = self.model.as_ref()?;
        Some(LmModelInfo {
            origin: self.origin.clone(),
            config: lm.config.clone(),
            parameters: burn::module::Module::num_params(&lm.model),
            adapter: lm.model.lora_shape().map(|(rank, targets)| {
                let alpha = lm.model.adapters()[0].2.scale * rank as f64;
                format!(
                    "LoRA r={rank} alpha={alpha} on {}",
                    targets
                        .iter()
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        })
    }

    /// Put a PEFT LoRA adapter folder's adapters (`adapter_config.json`,
    /// `adapter_model.safetensors`) on the current model.
    ///
    /// # Errors
    /// No model; missing files; as [`read_gpt_adapter`].
    pub fn load_adapter(&mut self, files: &[FolderFile], device: &Device) -> Result<LmModelInfo> {
        let find = |name: &str| {
            files
                .iter()
                .find(|f| base_name(&f.path) == name)
                .map(|f| f.bytes.as_slice())
                .ok_or_else(|| {
                    Error::data(
                        "adapter folder",
                        format!("the folder has no {name}; a PEFT adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"),
                    )
                })
        };
        let lm = self.model.as_ref().ok_or_else(|| {
            Error::data(
                "adapter folder",
                "load or train the base language model before its adapter",
            )
        })?;
        let adapter = read_gpt_adapter(find(ADAPTER_CONFIG)?, find(ADAPTER_WEIGHTS)?, &lm.config)?;
        let model = adapter.apply(lm.model.clone().merged(), device);
        self.model = Some(TrainedLm {
            model,
            ..lm.clone()
        });
        self.origin = "imported".into();
        Ok(self.info().expect("a model is loaded"))
    }

    /// The name adapters record as their base model.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The current model's adapters as a PEFT folder.
    ///
    /// # Errors
    /// No model, or one without adapters; read-back failures.
    pub async fn export_adapter(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let lm = self
            .model
            .as_ref()
            .ok_or_else(|| Error::data("adapter", "train or load a language model first"))?;
        export_gpt_adapter(&lm.model, &self.base).await
    }

    /// The loaded text.
    pub fn data(&self) -> Option<&LmData> {
        self.data.as_ref()
    }

    /// The current model.
    pub fn model(&self) -> Option<&TrainedLm> {
        self.model.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use super::*;
    use crate::model::Masks;
    use crate::session::testing::Recorder;

    /// A one-layer GPT small enough for tests on flex.
    fn tiny_gpt() -> GptConfig {
        GptConfig {
            context: 12,
            layers: 1,
            heads: 2,
            hidden: 16,
            dropout: 0.0,
            ..GptConfig::default()
        }
    }

    #[test]
    fn a_run_reports_as_it_learns_and_its_export_loads_back_exactly() {
        let device = Device::flex();
        let text = "abcd abcd abcd\n".repeat(20);
        let data = LmData::load("abc.txt", text.as_bytes(), None).expect("data");
        assert_eq!(data.tokens.len(), 300);
        let recipe = LmRecipe {
            model: tiny_gpt(),
            train: TrainConfig {
                learning_rate: 0.02,
                batch_size: 8,
                steps: 30,
                ..TrainConfig::default()
            },
            eval_every: 10,
            sample_every: 15,
            prompt: String::new(),
            sample: Sampling {
                max_tokens: 10,
                temperature: 0.0,
                ..Sampling::default()
            },
            ..LmRecipe::default()
        };
        let host = Recorder::default();
        let (lm, report) = pollster::block_on(train_lm(
            &data,
            &recipe,
            None,
            &device,
            &Control::default(),
            &host,
        ))
        .expect("train");
        let events = host.0.borrow();
        let evals: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                Event::LmEval { step, .. } => Some(*step),
                _ => None,
            })
            .collect();
        assert_eq!(evals, [10, 20, 30]);
        assert!(events.iter().any(
            |e| matches!(e, Event::LmSample { step: 15, text } if text.chars().count() == 10)
        ));
        assert!(matches!(events.last(), Some(Event::LmReport { .. })));
        let v = report.validation.expect("held out");
        assert_eq!(
            v.tokens, 29,
            "10% of 300 tokens held out, each after the first predicted"
        );
        assert!(v.perplexity < 2.0, "{v:?}");
        // An empty prompt starts from the text's first character.
        assert!(report.sample.starts_with("bcd"), "{:?}", report.sample);

        // A prompt the tokenizer makes no token of (whitespace under WordPiece) does the same,
        // instead of failing after training.
        let tokenizer = include_bytes!("../../../../tests/fixtures/tiny-tokenizer.json");
        let words = LmData::load(
            "words.txt",
            "the movie was good\n".repeat(40).as_bytes(),
            Some(tokenizer),
        )
        .expect("data");
        let recipe = LmRecipe {
            prompt: "\n".into(),
            train: TrainConfig {
                batch_size: 4,
                steps: 2,
                ..TrainConfig::default()
            },
            ..recipe
        };
        let (_, report) = pollster::block_on(train_lm(
            &words,
            &recipe,
            None,
            &device,
            &Control::default(),
            &Recorder::default(),
        ))
        .expect("a whitespace prompt under WordPiece still samples");
        assert!(!report.sample.is_empty());

        let files = pollster::block_on(export_lm(&lm)).expect("export");
        let file = |n: &str| {
            files
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, b)| b.clone())
                .expect(n)
        };
        let back = import_lm(
            &file("config.json"),
            &file("model.safetensors"),
            &file("tokenizer.json"),
            &device,
        )
        .expect("import");
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 4, 0, 1], [1, 6]),
            &device,
        );
        let a = lm
            .model
            .forward(ids.clone(), None, &mut Masks::none())
            .into_data();
        let b = back
            .model
            .forward(ids, None, &mut Masks::none())
            .into_data();
        assert_eq!(a, b);
        assert_eq!(
            back.tokenizer.encode("abcd").expect("encode"),
            lm.tokenizer.encode("abcd").expect("encode")
        );

        // A config that does not match the weights is named.
        let mut config: serde_json::Value =
            serde_json::from_slice(&file("config.json")).expect("json");
        config["n_embd"] = 32.into();
        let err = import_lm(
            &serde_json::to_vec(&config).expect("json"),
            &file("model.safetensors"),
            &file("tokenizer.json"),
            &device,
        )
        .expect_err("mismatch")
        .to_string();
        assert!(
            err.contains(
                "`transformer.wte.weight` has shape [7, 16], but config.json implies [7, 32]"
            ),
            "{err}"
        );
    }

    /// Losses read in batches give the same progress and evaluation events as losses read
    /// after every step.
    #[test]
    fn batched_loss_reads_give_the_same_events() {
        let text = "abcd abcd abcd\n".repeat(20);
        let data = LmData::load("abc.txt", text.as_bytes(), None).expect("data");
        let run = |loss_read_ms: f64| {
            let recipe = LmRecipe {
                model: tiny_gpt(),
                train: TrainConfig {
                    batch_size: 8,
                    steps: 30,
                    ..TrainConfig::default()
                },
                eval_every: 10,
                sample_every: 15,
                sample: Sampling {
                    max_tokens: 4,
                    temperature: 0.0,
                    ..Sampling::default()
                },
                loss_read_ms,
                ..LmRecipe::default()
            };
            let host = crate::session::testing::Ticking::default();
            pollster::block_on(train_lm(
                &data,
                &recipe,
                None,
                &Device::flex(),
                &Control::default(),
                &host,
            ))
            .expect("train");
            let events: Vec<String> = host
                .0
                .0
                .borrow()
                .iter()
                .filter_map(|e| match e {
                    Event::Progress { step, loss, .. } => Some(format!("progress {step} {loss}")),
                    Event::LmEval {
                        step, train_loss, ..
                    } => Some(format!("eval {step} {train_loss}")),
                    Event::LmSample { step, text } => Some(format!("sample {step} {text}")),
                    _ => None,
                })
                .collect();
            (events, host.1.get())
        };
        let (each, each_reads) = run(0.0);
        let (batched, batched_reads) = run(20.0);
        assert_eq!(
            each.iter().filter(|e| e.starts_with("progress")).count(),
            30
        );
        assert_eq!(batched, each);
        assert!(
            batched_reads < each_reads,
            "fewer clock reads when batched: {batched_reads} vs {each_reads}"
        );
    }

    #[test]
    fn lora_continues_a_model_and_its_adapter_loads_onto_the_base() {
        use crate::model::gpt::{GptStrategy, GptTarget};
        let device = Device::flex();
        let data =
            LmData::load("abc.txt", "abcd abcd abcd\n".repeat(20).as_bytes(), None).expect("data");
        let mut recipe = LmRecipe {
            model: tiny_gpt(),
            train: TrainConfig {
                learning_rate: 0.02,
                batch_size: 8,
                steps: 10,
                ..TrainConfig::default()
            },
            sample_every: 0,
            sample: Sampling {
                max_tokens: 4,
                ..Sampling::default()
            },
            ..LmRecipe::default()
        };
        let run = |recipe: &LmRecipe, start: Option<TrainedLm>, host: &Recorder| {
            pollster::block_on(train_lm(
                &data,
                recipe,
                start,
                &device,
                &Control::default(),
                host,
            ))
            .expect("train")
            .0
        };
        let base = run(&recipe, None, &Recorder::default());
        let mut session = LmSession::default();
        let files = pollster::block_on(export_lm(&base)).expect("export");
        let folder: Vec<FolderFile> = files
            .iter()
            .map(|(n, b)| FolderFile {
                path: format!("tiny-gpt/{n}"),
                bytes: b.clone(),
            })
            .collect();
        assert!(is_lm_folder(&folder) && !is_lm_adapter(&folder));
        session.load_model(&folder, &device).expect("base");
        assert_eq!(session.base(), "tiny-gpt");
        recipe.tuning.strategy = GptStrategy::Lora;
        recipe.tuning.lora.targets = vec![GptTarget::Attn, GptTarget::Fc];
        let host = Recorder::default();
        let tuned = run(&recipe, session.model().cloned(), &host);
        let trainable = host
            .0
            .borrow()
            .iter()
            .find_map(|e| match e {
                Event::Started { parameters, .. } => Some(*parameters),
                _ => None,
            })
            .expect("started");
        assert_eq!(trainable, 16 * 8 + 8 * 48 + 16 * 8 + 8 * 64);
        let info = session.set_model(tuned.clone(), "trained");
        assert_eq!(
            info.adapter.as_deref(),
            Some("LoRA r=8 alpha=16 on c_attn, c_fc")
        );
        let adapter = pollster::block_on(session.export_adapter()).expect("adapter");
        let adapter: Vec<FolderFile> = adapter
            .into_iter()
            .map(|(n, bytes)| FolderFile {
                path: format!("burnish-gpt-lora/{n}"),
                bytes,
            })
            .collect();
        assert!(is_lm_adapter(&adapter));
        let config: serde_json::Value =
            serde_json::from_slice(&adapter[0].bytes).expect("adapter_config.json");
        assert_eq!(config["base_model_name_or_path"], "tiny-gpt");

        let mut fresh = LmSession::default();
        let err = fresh
            .load_adapter(&adapter, &device)
            .expect_err("no base")
            .to_string();
        assert!(
            err.contains("load or train the base language model"),
            "{err}"
        );
        fresh.load_model(&folder, &device).expect("base");
        let info = fresh.load_adapter(&adapter, &device).expect("adapter");
        assert!(info.adapter.is_some());
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 4, 0, 1], [1, 6]),
            &device,
        );
        let logits = |lm: &TrainedLm| {
            lm.model
                .forward(ids.clone(), None, &mut Masks::none())
                .into_data()
        };
        assert_eq!(logits(fresh.model().expect("model")), logits(&tuned));
        // The merged export gives the same logits within float error.
        let merged = pollster::block_on(export_lm(&tuned)).expect("export");
        let file = |n: &str| {
            merged
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, b)| b.clone())
                .expect(n)
        };
        let back = import_lm(
            &file("config.json"),
            &file("model.safetensors"),
            &file("tokenizer.json"),
            &device,
        )
        .expect("import");
        let a = logits(&back).try_to_vec::<f32>().expect("f32");
        let b = logits(&tuned).try_to_vec::<f32>().expect("f32");
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn bad_texts_are_named() {
        let err = LmData::load("notes.txt", b"ok\nbad \xc3( here", None)
            .expect_err("utf-8")
            .to_string();
        assert!(
            err.contains("notes.txt") && err.contains("line 2, column 5: not UTF-8"),
            "{err}"
        );
        let err = LmData::load("short.txt", b"hello", None)
            .expect_err("short")
            .to_string();
        assert!(err.contains("5 tokens is too short"), "{err}");
        let data = LmData::load("ok.txt", "x".repeat(100).as_bytes(), None).expect("data");
        assert!(data.split(0.95).is_err());
    }
}
