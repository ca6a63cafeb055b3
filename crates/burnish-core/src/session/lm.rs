//! Language modelling as a run, shared by the worker and the CLI: a text file becomes a token
//! stream (a character-level `tokenizer.json` built from it, or one given), the tail of which is
//! held out; a [`Gpt`] trains on it for a number of steps with progress events, the held-out
//! loss and perplexity every `eval_every` steps, and a sample every `sample_every` steps so the
//! user watches it learn. Trained models export as a Hugging Face `GPT2LMHeadModel` folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`) and load back from one.

use burn::module::Module;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::protocol::Event;
use super::runner::{Control, Host};
use crate::export::{decode_float, write_safetensors};
use crate::generate::{Sampling, generate};
use crate::model::gpt::{Gpt, GptConfig, tensor_layout};
use crate::model::lora::trainable_parameters;
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
        }
    }
}

/// A text as a token stream, split into training and held-out parts.
#[derive(Debug, Clone)]
pub struct LmData {
    /// The file's name.
    pub source: String,
    /// Its tokenizer.
    pub tokenizer: LmTokenizer,
    /// Tokens to train on.
    pub train: Vec<u32>,
    /// The held-out tail.
    pub validation: Vec<u32>,
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
    /// Tokens to train on and held out.
    pub train_tokens: usize,
    /// See `train_tokens`.
    pub validation_tokens: usize,
    /// The first characters.
    pub head: String,
}

impl LmData {
    /// Read `bytes` (UTF-8 text, named `source` in errors), tokenize it with `tokenizer_json`
    /// or a character-level tokenizer built from it, and hold out the last `validation` share.
    ///
    /// # Errors
    /// Not UTF-8 (the line and column are named), too short, an invalid tokenizer or share.
    pub fn load(
        source: &str,
        bytes: &[u8],
        tokenizer_json: Option<&[u8]>,
        validation: f64,
    ) -> Result<Self> {
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
        if !(0.0..0.9).contains(&validation) {
            return Err(Error::config("validation", "must be in [0, 0.9)"));
        }
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
        let held =
            ((tokens.len() as f64 * validation) as usize).max(usize::from(validation > 0.0) * 2);
        let cut = tokens.len() - held;
        Ok(Self {
            source: source.to_string(),
            head: text.chars().take(300).collect(),
            characters: text.chars().count(),
            validation: tokens[cut..].to_vec(),
            train: tokens[..cut].to_vec(),
            tokenizer,
        })
    }

    /// What the page shows.
    pub fn preview(&self) -> LmPreview {
        LmPreview {
            source: self.source.clone(),
            characters: self.characters,
            vocab_size: self.tokenizer.vocab_size(),
            train_tokens: self.train.len(),
            validation_tokens: self.validation.len(),
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
        None => {
            let mut config = recipe.model.clone();
            config.vocab_size = data.tokenizer.vocab_size();
            (config.init(recipe.train.seed, device)?, config)
        }
    };
    let steps = recipe.train.steps;
    let total_parameters = burn::module::Module::num_params(&model);
    let mut trainer = LmTrainer::new(model, recipe.train.clone(), data.train.clone(), device)?;
    let window = trainer.window();
    host.post(Event::Started {
        rows: data.train.len(),
        steps,
        epochs: 1,
        steps_per_epoch: steps,
        parameters: trainable_parameters(trainer.model()),
        total_parameters,
        device: format!("{device:?}"),
    });
    let lm = |model: &Gpt| TrainedLm {
        model: model.valid(),
        config: config.clone(),
        tokenizer: data.tokenizer.clone(),
    };
    let held = &data.validation[..data.validation.len().min(recipe.eval_tokens.max(2))];
    let (mut step_ms, mut timed, mut cancelled) = (0.0, 0usize, false);
    let mut loss_sum = 0.0f64;
    let mut loss_n = 0usize;
    for step in 1..=steps {
        if !control.checkpoint(host, trainer.steps_done()).await {
            cancelled = true;
            break;
        }
        let before = host.now_ms();
        let report = trainer.step().await?;
        let ms = host.now_ms() - before;
        if step > 1 {
            step_ms += ms;
            timed += 1;
        }
        loss_sum += f64::from(report.loss);
        loss_n += 1;
        host.post(Event::Progress {
            step,
            steps,
            loss: report.loss,
            learning_rate: report.learning_rate,
            ms_per_step: if timed > 0 {
                step_ms / timed as f64
            } else {
                ms
            },
        });
        if held.len() >= 2 && (step % recipe.eval_every.max(1) == 0 || step == steps) {
            let e = evaluate_lm(trainer.model(), held, 8, device).await?;
            host.post(Event::LmEval {
                step,
                train_loss: loss_sum / loss_n.max(1) as f64,
                validation_loss: e.loss,
                perplexity: e.perplexity,
            });
            (loss_sum, loss_n) = (0.0, 0);
        }
        if recipe.sample_every > 0 && step % recipe.sample_every == 0 && step < steps {
            let text = sample_text(
                &lm(trainer.model()),
                &recipe.prompt,
                &recipe.sample,
                device,
                |_| true,
            )
            .await?;
            host.post(Event::LmSample { step, text });
        }
    }
    let trained = lm(trainer.model());
    let validation = if data.validation.len() >= 2 {
        Some(evaluate_lm(&trained.model, &data.validation, 8, device).await?)
    } else {
        None
    };
    let sample = sample_text(&trained, &recipe.prompt, &recipe.sample, device, |_| true).await?;
    let report = LmReport {
        steps: trainer.steps_done(),
        validation,
        tokens_per_second: if step_ms > 0.0 {
            (window * recipe.train.batch_size * recipe.train.grad_accumulation * timed) as f64
                / (step_ms / 1e3)
        } else {
            0.0
        },
        cancelled,
        sample,
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
    config.validate()?;
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
