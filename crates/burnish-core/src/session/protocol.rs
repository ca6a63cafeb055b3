//! Messages between the page and the training worker.
//!
//! Both directions are JSON-shaped objects with a `type` tag, converted with serde-wasm-bindgen
//! on the wasm side; `web/app.js` is the other end. Changing a variant here means changing it
//! there.

use super::memory::{DeviceLimits, MemoryEstimate};
use super::recipe::Recipe;
use super::text_session::{FolderInfo, TextColumns, TextModelInfo, TextPrediction, TextPreview};
use super::workspace::{FinalReport, LoadRequest, ModelInfo, Prediction, Preview, Role};
use crate::data::demo::SpiralsConfig;
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};

/// What the page asks the worker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Train the built-in demo model on the built-in demo data.
    StartDemo {
        /// Model, data and recipe; every field may be left out.
        #[serde(default)]
        request: DemoRequest,
    },
    /// Load the attached files as training, validation or test data; a `loaded` event follows.
    Load {
        /// Which part of the data (default `train`).
        #[serde(default)]
        role: Role,
        /// How to read the files.
        request: LoadRequest,
    },
    /// Use another column of the loaded table as the label; `loaded` events follow.
    SetLabel {
        /// The column's name.
        label: String,
    },
    /// Train on the loaded data; progress, `epoch`, `report` and `model` events follow.
    Train {
        /// Every choice of the run; fields may be left out.
        #[serde(default)]
        recipe: Recipe,
        /// Continue from the current (trained or imported) model instead of a fresh one.
        #[serde(default)]
        continue_training: bool,
        /// The adapter's limits; a run that would not fit is refused with what to lower.
        #[serde(default)]
        limits: Option<DeviceLimits>,
    },
    /// Continue the autosaved run attached as the one file, on the loaded data (the data it
    /// was trained on, checked by fingerprint); a `restored` event, then as `train`.
    ResumeRun {
        /// The adapter's limits, as for `train`.
        #[serde(default)]
        limits: Option<DeviceLimits>,
    },
    /// Evaluate the current model on the loaded test file (else validation, else training
    /// data); an `evaluated` event follows.
    Evaluate,
    /// Forget this session's data and models (an embedded trainer that is gone).
    Close,
    /// Class probabilities for a row of `values`, or for the attached image; a `prediction`
    /// event follows.
    Predict {
        /// The row's raw feature values (absent when an image is attached).
        #[serde(default)]
        values: Option<Vec<f32>>,
    },
    /// Serialise the current model; an `exported` event with the bytes follows.
    Export,
    /// Make the attached safetensors file the current model; a `model` event follows.
    Import,
    /// Make the attached files (a Hugging Face folder: config.json, tokenizer.json,
    /// model.safetensors) the text model to fine-tune; a `folder` event follows.
    LoadModel,
    /// Load the attached file as labelled texts (a table) or tagged sentences (CoNLL); a
    /// `text_loaded` event follows.
    LoadText {
        /// Which part of the data (default `train`).
        #[serde(default)]
        role: Role,
        /// Tagged sentences (`token<TAB>tag`) rather than a table.
        #[serde(default)]
        conll: bool,
        /// The table's columns (default: found by name, see the README).
        #[serde(default)]
        columns: Option<TextColumns>,
    },
    /// Use other columns of the loaded text tables; `text_loaded` events follow.
    SetTextColumns {
        /// The columns.
        columns: TextColumns,
    },
    /// Estimate the memory of fine-tuning with `recipe`; a `memory` event follows.
    Estimate {
        /// The run's recipe.
        #[serde(default)]
        recipe: Recipe,
        /// The adapter's limits to check against.
        #[serde(default)]
        limits: Option<DeviceLimits>,
    },
    /// Fine-tune the text model on the loaded texts; progress, `epoch`, `report` and
    /// `text_model` events follow.
    TrainText {
        /// Every choice of the run; fields may be left out.
        #[serde(default)]
        recipe: Recipe,
        /// Continue from the current text model instead of the folder's weights.
        #[serde(default)]
        continue_training: bool,
        /// The adapter's limits; a run that would not fit is refused with what to lower.
        #[serde(default)]
        limits: Option<DeviceLimits>,
    },
    /// Classify a typed text (or tag its words); a `text_prediction` event follows.
    PredictText {
        /// The text.
        text: String,
        /// A second text, for models trained on pairs.
        #[serde(default)]
        pair: Option<String>,
    },
    /// Load the attached files (a PEFT LoRA adapter folder: adapter_config.json,
    /// adapter_model.safetensors) onto the loaded model folder (a `text_model` event follows),
    /// or, for a `CAUSAL_LM` adapter, onto the current language model (an `lm_model` event
    /// follows).
    LoadAdapter,
    /// Export the current text model as a Hugging Face folder (merged full weights), or with
    /// `adapter` its LoRA adapter alone as a PEFT folder; an `exported_folder` event with the
    /// files attached follows.
    ExportText {
        /// The adapter alone (default: the full model).
        #[serde(default)]
        adapter: bool,
    },
    /// Load the attached text file (and an optional `tokenizer.json`) to train a language model
    /// on; an `lm_loaded` event follows.
    LoadLmText,
    /// Train a language model on the loaded text (a new one, or the current one with
    /// `continue_training`); `started`, `progress`, `lm_eval`, `lm_sample`, `lm_report` and
    /// `lm_model` events follow.
    TrainLm {
        /// The recipe (every field may be left out).
        #[serde(default)]
        recipe: Box<super::lm::LmRecipe>,
        /// Go on training the current model.
        #[serde(default)]
        continue_training: bool,
    },
    /// Generate text with the current language model: an `lm_token` event per token, then
    /// `generated`. `cancel` stops it.
    Generate {
        /// The prompt.
        prompt: String,
        /// How to pick tokens.
        #[serde(default)]
        sampling: crate::generate::Sampling,
    },
    /// Export the current language model as a GPT-2 folder (adapters merged), or with `adapter`
    /// its LoRA adapters alone as a PEFT folder; an `exported_folder` event follows.
    ExportLm {
        /// The adapter alone (default: the full model).
        #[serde(default)]
        adapter: bool,
    },
    /// Stop between two steps and wait for `resume` or `cancel`.
    Pause,
    /// Go on after `pause`.
    Resume,
    /// Stop the run; a `done` event with `cancelled: true` follows.
    Cancel,
    /// Panic inside the worker on purpose, so that tests exercise the page's recovery from a
    /// worker fault (a `crashed` event follows, and the worker is gone).
    DebugPanic,
    /// Destroy the worker's GPU device on purpose (WebGPU's `GPUDevice.destroy()`), so that
    /// tests exercise the recovery from a lost device (a `crashed` event naming the loss
    /// follows). Where no device was created yet, nothing happens.
    DebugLoseDevice,
}

/// The demo run: a small MLP on interleaved spirals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoRequest {
    /// The data set.
    pub data: SpiralsConfig,
    /// Hidden layer widths of the MLP (default `[32, 32]`).
    pub hidden: Vec<usize>,
    /// The training recipe.
    pub train: TrainConfig,
    /// Evaluate accuracy on the whole data set every this many steps (default 25; 0 = only at the
    /// end).
    pub eval_every: usize,
}

impl Default for DemoRequest {
    fn default() -> Self {
        Self {
            data: SpiralsConfig::default(),
            hidden: vec![32, 32],
            train: TrainConfig {
                learning_rate: 0.02,
                batch_size: 64,
                steps: 300,
                ..TrainConfig::default()
            },
            eval_every: 25,
        }
    }
}

/// What the worker tells the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker's message handler is installed; commands can be sent.
    Ready {
        /// The default recipe, so the page's form starts from the documented defaults.
        defaults: Box<Recipe>,
        /// The default recipe for fine-tuning a text model.
        text_defaults: Box<Recipe>,
        /// The default recipe for training a language model.
        lm_defaults: Box<super::lm::LmRecipe>,
    },
    /// The GPU device is up and a run has started.
    Started {
        /// Rows in the training data.
        rows: usize,
        /// Steps the run will take.
        steps: usize,
        /// Epochs planned (1 for step-count runs).
        epochs: usize,
        /// Optimizer steps per epoch.
        steps_per_epoch: usize,
        /// Trainable parameters of the model.
        parameters: usize,
        /// All its parameters (more than `parameters` when some are frozen).
        total_parameters: usize,
        /// The burn device the run is on, as burn describes it.
        device: String,
        /// The wgpu adapter under it ("SwiftShader Device (Subzero), CPU renderer on Vulkan,
        /// driver ..."); absent on the CPU backend.
        #[serde(skip_serializing_if = "Option::is_none")]
        adapter: Option<String>,
        /// How the run computes: "f32", or "f16 products, dynamic loss scale from 1024" (the
        /// recipe's `precision`, where the device allows it).
        precision: String,
    },
    /// A run continues from an autosave: `step` steps are done, epoch `epoch` is in progress
    /// (the page redraws the charts it stored with the autosave).
    Restored {
        /// Steps already done.
        step: usize,
        /// The epoch in progress.
        epoch: usize,
    },
    /// An autosave of the run in progress; the worker attaches its bytes as `data`.
    Autosaved {
        /// What it holds.
        info: super::checkpoint::CheckpointInfo,
        /// Its size in bytes.
        size: usize,
    },
    /// One optimizer step is done.
    Progress {
        /// Steps done so far.
        step: usize,
        /// Steps in the run.
        steps: usize,
        /// Loss of this step's batch.
        loss: f32,
        /// Learning rate of this step.
        learning_rate: f64,
        /// Mean wall time per step since the run started, in milliseconds.
        ms_per_step: f64,
        /// Milliseconds this step's host code took to record its work: the batch's upload,
        /// building the graph, generating kernels on first use and dispatching them. In the
        /// browser nothing in it waits for the GPU (WebGPU cannot block), so it is the step
        /// time's floor on a GPU fast enough to keep up; natively, wgpu may block inside it when
        /// the GPU falls far behind (CubeCL throttles its submissions).
        host_ms: f64,
    },
    /// A validation metric was computed.
    Metrics {
        /// Steps done when it was measured.
        step: usize,
        /// Fraction of rows classified correctly.
        accuracy: f32,
    },
    /// An epoch of a fit ended and the validation split was evaluated.
    Epoch {
        /// 1-based epoch.
        epoch: usize,
        /// Epochs planned.
        epochs: usize,
        /// Mean training loss over the epoch's steps.
        train_loss: f64,
        /// Validation loss.
        validation_loss: f64,
        /// Validation accuracy.
        validation_accuracy: f64,
        /// Validation macro-averaged F1.
        validation_macro_f1: f64,
        /// Validation entity-level micro F1 (token tasks only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validation_entity_f1: Option<f64>,
        /// Whether this epoch is the best so far (its weights are kept).
        improved: bool,
    },
    /// A text to train a language model on is loaded.
    LmLoaded {
        /// What it holds.
        preview: Box<super::lm::LmPreview>,
    },
    /// There is a current language model (trained or imported).
    LmModel {
        /// What it is.
        info: Box<super::lm::LmModelInfo>,
    },
    /// One generated token's text.
    LmToken {
        /// The text.
        text: String,
    },
    /// Generation ended.
    Generated {
        /// All the generated text (after the prompt).
        text: String,
        /// Tokens generated.
        tokens: usize,
        /// Tokens per second, prompt included in the time.
        tokens_per_second: f64,
        /// Whether `cancel` stopped it.
        stopped: bool,
    },
    /// A language model's held-out loss was measured.
    LmEval {
        /// Steps done.
        step: usize,
        /// Mean training loss since the last evaluation.
        train_loss: f64,
        /// Held-out loss (nats per token).
        validation_loss: f64,
        /// `exp(validation_loss)`.
        perplexity: f64,
    },
    /// A sample from a language model during training.
    LmSample {
        /// Steps done.
        step: usize,
        /// The generated text (after the prompt).
        text: String,
    },
    /// A language-model run ended.
    LmReport {
        /// Its figures and final sample.
        report: Box<super::lm::LmReport>,
    },
    /// The run is paused.
    Paused {
        /// Steps done so far.
        step: usize,
    },
    /// The run goes on after a pause.
    Resumed {
        /// Steps done so far.
        step: usize,
    },
    /// The run ended, completed or cancelled.
    Done {
        /// Steps taken.
        steps: usize,
        /// Whether it was cancelled before its last step.
        cancelled: bool,
        /// Loss of the last step.
        loss: f32,
        /// Final accuracy on the data set.
        accuracy: f32,
        /// Mean wall time per step, in milliseconds, excluding the first step (shader
        /// compilation) when there is more than one.
        ms_per_step: f64,
    },
    /// Data was loaded (or its label changed).
    Loaded {
        /// Counts, classes, samples.
        preview: Box<Preview>,
    },
    /// Training ended; the final evaluation.
    Report {
        /// The held-out report.
        report: Box<FinalReport>,
    },
    /// The current model's report on data (`evaluate`).
    Evaluated {
        /// The report.
        report: Box<FinalReport>,
    },
    /// There is a current model (trained or imported).
    Model {
        /// What it is.
        info: Box<ModelInfo>,
    },
    /// Class probabilities of one input.
    Prediction {
        /// Probabilities and classes.
        prediction: Prediction,
    },
    /// The current model as safetensors; the worker attaches the bytes as `data`.
    Exported {
        /// A file name to save it under.
        name: String,
        /// Size in bytes.
        size: usize,
    },
    /// A model folder was loaded.
    Folder {
        /// What it holds.
        info: Box<FolderInfo>,
    },
    /// Texts or tagged sentences were loaded.
    TextLoaded {
        /// What the page shows.
        preview: Box<TextPreview>,
    },
    /// The memory a run would take.
    Memory {
        /// The estimate.
        estimate: Box<MemoryEstimate>,
        /// What does not fit the given limits, and what to lower; `null` when it fits.
        problem: Option<String>,
    },
    /// There is a current text model (fine-tuned, or a folder with a head).
    TextModel {
        /// What it is.
        info: Box<TextModelInfo>,
    },
    /// A prediction on typed text.
    TextPrediction {
        /// Classes or tagged words.
        prediction: Box<TextPrediction>,
    },
    /// The current text model as a Hugging Face folder; the worker attaches the files' bytes
    /// as `data` (an array in the order of `files`).
    ExportedFolder {
        /// A folder name to save under.
        name: String,
        /// File names and sizes.
        files: Vec<(String, usize)>,
    },
    /// Something went wrong; `message` says what and what to do. The worker stays usable.
    Error {
        /// A sentence for the user.
        message: String,
    },
    /// The worker panicked: its state (data, models, the run) is gone and it answers nothing
    /// more; the page starts a fresh one. Posted from the panic hook, before the wasm traps.
    Crashed {
        /// The panic's message and place.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_from_the_page_json() {
        let start: Command = serde_json::from_str(
            r#"{"type":"start_demo","request":{"train":{"steps":5},"hidden":[8]}}"#,
        )
        .expect("parse");
        let Command::StartDemo { request } = start else {
            panic!("expected start_demo, got {start:?}")
        };
        assert_eq!(request.train.steps, 5);
        assert_eq!(request.train.batch_size, 64);
        assert_eq!(request.hidden, vec![8]);
        assert_eq!(
            serde_json::from_str::<Command>(r#"{"type":"cancel"}"#).expect("parse"),
            Command::Cancel
        );
        let err =
            serde_json::from_str::<Command>(r#"{"type":"start_demo","request":{"trian":{}}}"#)
                .expect_err("typo")
                .to_string();
        assert!(err.contains("unknown field `trian`"), "{err}");
    }

    #[test]
    fn events_have_the_tag_the_page_switches_on() {
        let json = serde_json::to_value(Event::Progress {
            step: 1,
            steps: 2,
            loss: 0.5,
            learning_rate: 0.1,
            ms_per_step: 3.0,
            host_ms: 1.0,
        })
        .expect("serialise");
        assert_eq!(json["type"], "progress");
        assert_eq!(json["loss"], 0.5);
        assert_eq!(
            serde_json::to_value(Event::Ready {
                defaults: Box::default(),
                text_defaults: Box::new(Recipe::transformer()),
                lm_defaults: Box::default(),
            })
            .expect("serialise")["type"],
            "ready"
        );
    }
}
