//! Fine-tuning a pretrained encoder, as the page and the CLI drive it: a Hugging Face model
//! folder, labelled texts (a table) or tagged sentences (CoNLL), a planned run, predictions on
//! typed text, and the export as a Hugging Face folder.

use std::collections::BTreeSet;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::fit::{FitConfig, Metric};
use super::memory::{DeviceLimits, MemoryEstimate};
use super::protocol::Event;
use super::recipe::Recipe;
use super::runner::{Control, Host};
use super::text_fit::{TextSplits, fit_text};
use super::workspace::{FinalReport, Prediction, Role};
use crate::data::conll::TokenDataset;
use crate::data::images::FolderFile;
use crate::data::table::{Table, TableFormat};
use crate::data::text::TextDataset;
use crate::model::bert::{Bert, BertConfig, BertWeights, LoadNotes};
use crate::model::bert_classifier::{BertClassifier, HfFolder, Pooling, TextTask};
use crate::model::lora::{LoraConfig, Strategy, Tuning};
use crate::text::{Encoding, TextTokenizer};
use crate::train::text::{Labels, TokenizedSet};
use crate::{Error, Result};

/// The classification head a folder already has (a model fine-tuned here or with transformers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderHead {
    /// Sequence or token classification (from `architectures`).
    pub task: TextTask,
    /// Class or tag names (from `id2label`).
    pub labels: Vec<String>,
    /// Pooling recorded by burnish (`cls` otherwise).
    pub pooling: Pooling,
    /// Max length recorded by burnish, if any.
    pub max_length: Option<usize>,
}

/// A Hugging Face model folder, checked.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    /// The folder's name, for messages.
    pub name: String,
    /// `config.json` as given.
    pub config_json: Vec<u8>,
    /// `tokenizer.json` as given.
    pub tokenizer_json: Vec<u8>,
    /// `model.safetensors` as given.
    pub weights: Vec<u8>,
    /// The encoder's config.
    pub config: BertConfig,
    /// What the checkpoint held besides the encoder.
    pub notes: LoadNotes,
    /// Its classification head, when it has one that matches `id2label`.
    pub head: Option<FolderHead>,
}

/// A model folder as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderInfo {
    /// The folder's name.
    pub name: String,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Attention heads.
    pub heads: usize,
    /// Vocabulary of the tokenizer.
    pub vocab_size: usize,
    /// Longest sequence the position embedding covers.
    pub max_positions: usize,
    /// Encoder parameters.
    pub parameters: usize,
    /// Name prefix of the checkpoint (`""` or `"bert."`).
    pub prefix: String,
    /// Whether it has a pooler.
    pub has_pooler: bool,
    /// Tensors that were left out (MLM head, ...).
    pub ignored: Vec<String>,
    /// The head it already has, if any.
    pub head: Option<FolderHead>,
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ModelFolder {
    /// Find and check `config.json`, `tokenizer.json` and `model.safetensors` among `files`
    /// (paths may include the folder's name). The config is checked against every tensor's
    /// shape before anything is decoded.
    ///
    /// # Errors
    /// [`Error::Data`] naming the missing file (and what to do), or the file and field that is
    /// wrong.
    pub fn from_files(files: &[FolderFile]) -> Result<Self> {
        let name = files
            .first()
            .and_then(|f| f.path.split_once('/').map(|(dir, _)| dir.to_string()))
            .unwrap_or_else(|| "the model folder".into());
        let find = |wanted: &str| {
            files
                .iter()
                .filter(|f| base_name(&f.path) == wanted)
                .min_by_key(|f| f.path.len())
        };
        let has = |wanted: &str| find(wanted).is_some();
        let config = find("config.json").ok_or_else(|| {
            Error::data(
                &name,
                "the folder has no config.json; a Hugging Face model folder holds config.json, tokenizer.json and model.safetensors",
            )
        })?;
        let tokenizer = find("tokenizer.json").ok_or_else(|| {
            Error::data(
                &name,
                format!(
                    "the folder has no tokenizer.json{}; burnish reads the fast-tokenizer file that transformers writes with `tokenizer.save_pretrained(folder)`",
                    if has("vocab.txt") {
                        " (vocab.txt alone is not enough)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        let weights = find("model.safetensors").ok_or_else(|| {
            Error::data(
                &name,
                if has("pytorch_model.bin") {
                    "the folder has pytorch_model.bin but no model.safetensors; burnish reads safetensors only (in Python: `model.save_pretrained(folder, safe_serialization=True)`)"
                } else {
                    "the folder has no model.safetensors"
                },
            )
        })?;
        let parsed = BertConfig::from_json("config.json", &config.bytes)?;
        // Checks names, dtypes and every shape against the config before decoding any values.
        let loaded = BertWeights::from_safetensors("model.safetensors", &weights.bytes, &parsed)?;
        let tok = TextTokenizer::from_json("tokenizer.json", &tokenizer.bytes, 8)?;
        if tok.vocab_size() > parsed.vocab_size {
            return Err(Error::data(
                "tokenizer.json",
                format!(
                    "has {} tokens but config.json's vocab_size is {}; the tokenizer is not this model's",
                    tok.vocab_size(),
                    parsed.vocab_size
                ),
            ));
        }
        let head = folder_head(&config.bytes, &weights.bytes, parsed.hidden_size);
        Ok(Self {
            name,
            config_json: config.bytes.clone(),
            tokenizer_json: tokenizer.bytes.clone(),
            weights: weights.bytes.clone(),
            config: parsed,
            notes: loaded.notes,
            head,
        })
    }

    /// What the page shows.
    pub fn info(&self) -> FolderInfo {
        let parameters = self
            .config
            .tensor_layout()
            .iter()
            .filter(|(n, _)| self.notes.has_pooler || !n.starts_with("pooler."))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        FolderInfo {
            name: self.name.clone(),
            layers: self.config.num_hidden_layers,
            hidden_size: self.config.hidden_size,
            heads: self.config.num_attention_heads,
            vocab_size: self.config.vocab_size,
            max_positions: self.config.max_position_embeddings,
            parameters,
            prefix: self.notes.prefix.clone(),
            has_pooler: self.notes.has_pooler,
            ignored: self.notes.ignored.clone(),
            head: self.head.clone(),
        }
    }

    /// The longest sequence this model takes when `wanted` is asked for: at most its position
    /// embedding's length (as transformers' tokenizers cap at `model_max_length`).
    pub fn max_length(&self, wanted: usize) -> usize {
        wanted.min(self.config.max_position_embeddings)
    }

    /// The tokenizer, cutting at [`ModelFolder::max_length`] of `max_length`.
    ///
    /// # Errors
    /// A `max_length` below 2.
    pub fn tokenizer(&self, max_length: usize) -> Result<TextTokenizer> {
        TextTokenizer::from_json(
            "tokenizer.json",
            &self.tokenizer_json,
            self.max_length(max_length),
        )
    }

    /// The encoder on `device` with a head for `task` and `classes`: the folder's own head when
    /// it has one for the same task and classes, else a fresh one drawn from `seed`.
    ///
    /// # Errors
    /// Weights that do not load.
    pub fn build(
        &self,
        task: TextTask,
        classes: &[String],
        pooling: Pooling,
        dropout: f64,
        seed: u64,
        device: &Device,
    ) -> Result<BertClassifier> {
        let weights =
            BertWeights::from_safetensors("model.safetensors", &self.weights, &self.config)?;
        let bert = Bert::from_weights(&self.config, weights, device)?;
        let model =
            BertClassifier::with_task(bert, task, classes.len(), pooling, dropout, seed, device);
        match &self.head {
            Some(h) if h.task == task && h.labels == classes => {
                model.with_head_from("model.safetensors", &self.weights, device)
            }
            _ => Ok(model),
        }
    }
}

/// The head recorded in a folder's `config.json` (`architectures`, `id2label`, burnish's own
/// entry), when `classifier.weight` in the weights has the matching shape.
fn folder_head(config_json: &[u8], weights: &[u8], hidden: usize) -> Option<FolderHead> {
    let config: serde_json::Value = serde_json::from_slice(config_json).ok()?;
    let task = match config.get("architectures")?.get(0)?.as_str()? {
        "BertForSequenceClassification" => TextTask::Sequence,
        "BertForTokenClassification" => TextTask::Tokens,
        _ => return None,
    };
    let map = config.get("id2label")?.as_object()?;
    let labels: Vec<String> = (0..map.len())
        .map(|i| map.get(&i.to_string())?.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    let st = safetensors::SafeTensors::deserialize(weights).ok()?;
    if st.tensor("classifier.weight").ok()?.shape() != [labels.len(), hidden] {
        return None;
    }
    let burnish = config.get("burnish");
    Some(FolderHead {
        task,
        labels,
        pooling: burnish
            .and_then(|b| serde_json::from_value(b.get("pooling")?.clone()).ok())
            .unwrap_or_default(),
        max_length: burnish
            .and_then(|b| b.get("max_length")?.as_u64())
            .map(|m| m as usize),
    })
}

/// Which columns of a table hold the text(s) and the label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextColumns {
    /// The text column.
    pub text: String,
    /// A second text column, for sentence pairs.
    #[serde(default)]
    pub pair: Option<String>,
    /// The label column.
    pub label: String,
}

/// Labelled texts or tagged sentences.
#[derive(Debug, Clone)]
pub enum TextData {
    /// Texts with a class each.
    Sequences(TextDataset),
    /// Sentences with a tag per word.
    Tokens(TokenDataset),
}

impl TextData {
    /// The task this data trains.
    pub fn task(&self) -> TextTask {
        match self {
            Self::Sequences(_) => TextTask::Sequence,
            Self::Tokens(_) => TextTask::Tokens,
        }
    }

    /// Class or tag names.
    pub fn classes(&self) -> &[String] {
        match self {
            Self::Sequences(d) => &d.class_names,
            Self::Tokens(d) => &d.tag_names,
        }
    }

    /// Rows (texts or sentences).
    pub fn len(&self) -> usize {
        match self {
            Self::Sequences(d) => d.len(),
            Self::Tokens(d) => d.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn source(&self) -> &str {
        match self {
            Self::Sequences(d) => &d.source_name,
            Self::Tokens(d) => &d.source_name,
        }
    }

    /// Tokenize every row with `tok`, labels aligned to the tokens.
    ///
    /// # Errors
    /// Tokenizer failures.
    pub fn tokenize(&self, tok: &TextTokenizer) -> Result<TokenizedSet> {
        match self {
            Self::Sequences(d) => Ok(TokenizedSet {
                rows: d
                    .texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| tok.encode(t, d.pairs.as_ref().map(|p| p[i].as_str())))
                    .collect::<Result<_>>()?,
                labels: Labels::Sequence(d.labels.clone()),
                classes: d.class_names.clone(),
                pad_id: tok.pad_id(),
            }),
            Self::Tokens(d) => {
                let rows: Vec<Encoding> = d
                    .sentences
                    .iter()
                    .map(|s| tok.encode_words(&s.iter().map(String::as_str).collect::<Vec<_>>()))
                    .collect::<Result<_>>()?;
                Ok(TokenizedSet {
                    labels: Labels::align(&rows, d.tags.clone()),
                    rows,
                    classes: d.tag_names.clone(),
                    pad_id: tok.pad_id(),
                })
            }
        }
    }

    /// Labels to stratify a split by, and their count.
    fn strata(&self) -> (Vec<u32>, usize) {
        match self {
            Self::Sequences(d) => (d.labels.clone(), d.class_names.len()),
            Self::Tokens(d) => d.strata(),
        }
    }
}

/// One row of a preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSample {
    /// The text (for sentences, the words joined by spaces).
    pub text: String,
    /// The second text of a pair.
    pub pair: Option<String>,
    /// The class (sequences).
    pub label: Option<String>,
    /// The words (sentences).
    pub words: Vec<String>,
    /// Their tags (sentences).
    pub tags: Vec<String>,
}

/// Token counts of the loaded texts under the loaded model's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    /// Mean tokens per row, special tokens included.
    pub mean: f64,
    /// 95th percentile.
    pub p95: usize,
    /// Longest.
    pub max: usize,
}

/// What the page shows after a text file is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPreview {
    /// Which part of the data.
    pub role: Role,
    /// The file name.
    pub source: String,
    /// Sequence or token classification.
    pub task: TextTask,
    /// Rows (texts or sentences).
    pub rows: usize,
    /// Words (sentences only).
    pub words: usize,
    /// Class or tag names.
    pub classes: Vec<String>,
    /// Rows per class, or words per tag.
    pub counts: Vec<usize>,
    /// All columns of a table.
    pub columns: Vec<String>,
    /// The columns in use (tables).
    pub chosen: Option<TextColumns>,
    /// The first few rows.
    pub samples: Vec<TextSample>,
    /// Token counts, when a model folder is loaded.
    pub tokens: Option<TokenStats>,
}

#[derive(Debug, Clone)]
struct TextLoaded {
    data: TextData,
    table: Option<(Table, TextColumns)>,
}

/// A fine-tuned (or imported) text model, ready to predict and export.
#[derive(Debug, Clone)]
pub struct TrainedText {
    /// The encoder and head (on the device).
    pub model: BertClassifier,
    /// Class or tag names.
    pub classes: Vec<String>,
    /// The tokenizer, cutting at `max_length`.
    pub tokenizer: TextTokenizer,
    /// Longest sequence.
    pub max_length: usize,
    /// The folder's `config.json` and `tokenizer.json`, for the export.
    pub config_json: Vec<u8>,
    /// See `config_json`.
    pub tokenizer_json: Vec<u8>,
    /// `trained` here, `imported` from a folder with a head, or `adapter` (a LoRA adapter
    /// loaded onto the folder's model).
    pub origin: String,
    /// The model folder's name (PEFT's `base_model_name_or_path` in an adapter export).
    pub base_name: String,
    /// Whether a run changed the encoder's own weights (full or top-layer tuning), so that an
    /// adapter alone no longer reproduces the model.
    pub encoder_changed: bool,
}

/// A text model as the page describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextModelInfo {
    /// `trained` or `imported`.
    pub origin: String,
    /// Sequence or token classification.
    pub task: TextTask,
    /// Class or tag names.
    pub classes: Vec<String>,
    /// Parameters.
    pub parameters: usize,
    /// Longest sequence.
    pub max_length: usize,
    /// Pooling (sequences).
    pub pooling: Pooling,
    /// Its LoRA adapters, described (`LoRA r=8 alpha=16 on query, value`), if any.
    pub adapter: Option<String>,
    /// Whether the adapter can be exported alone (it has one, and the encoder under it is the
    /// folder's own).
    pub adapter_exportable: bool,
}

impl TrainedText {
    /// What the page shows.
    pub fn info(&self) -> TextModelInfo {
        TextModelInfo {
            origin: self.origin.clone(),
            task: self.model.task(),
            classes: self.classes.clone(),
            parameters: burn::module::Module::num_params(&self.model),
            max_length: self.max_length,
            pooling: self.model.pooling(),
            adapter: self.model.lora_shape().map(|(rank, targets)| {
                let scale = self.model.adapters()[0].2.scale;
                Tuning {
                    strategy: Strategy::Lora,
                    lora: LoraConfig {
                        rank,
                        alpha: scale * rank as f64,
                        targets,
                        ..LoraConfig::default()
                    },
                    ..Tuning::default()
                }
                .describe()
            }),
            adapter_exportable: self.model.lora_shape().is_some() && !self.encoder_changed,
        }
    }

    /// The LoRA adapter alone as a PEFT folder (with the head as `modules_to_save`).
    ///
    /// # Errors
    /// A model without adapters, or whose encoder a full or top-layer run changed; read-back
    /// failures.
    pub async fn export_adapter(&self) -> Result<HfFolder> {
        if self.encoder_changed && self.model.lora_shape().is_some() {
            return Err(Error::data(
                "adapter",
                "an earlier full or top-layer run changed the encoder itself, so the adapter alone would not reproduce this model on the original base; export the full model instead",
            ));
        }
        crate::model::peft::export_adapter(
            &self.model,
            &self.classes,
            self.max_length,
            &self.base_name,
        )
        .await
    }

    /// The model as a Hugging Face folder (weights read back asynchronously).
    ///
    /// # Errors
    /// Read-back failures.
    pub async fn export(&self) -> Result<HfFolder> {
        self.model
            .export_hf(
                &self.config_json,
                &self.tokenizer_json,
                &self.classes,
                self.max_length,
            )
            .await
    }
}

/// One word of a tagged sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaggedWord {
    /// The word as typed.
    pub word: String,
    /// Its byte range in the text.
    pub start: usize,
    /// See `start`.
    pub end: usize,
    /// The predicted tag.
    pub tag: String,
    /// Its probability.
    pub probability: f32,
}

/// An entity found in a typed sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaggedEntity {
    /// Its type (`PER`, ...).
    pub label: String,
    /// Its text.
    pub text: String,
    /// First word.
    pub first: usize,
    /// Last word.
    pub last: usize,
}

/// A prediction on typed text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPrediction {
    /// Sequence or token classification.
    pub task: TextTask,
    /// Class probabilities (sequences).
    pub classes: Option<Prediction>,
    /// Words and their tags (tokens).
    pub words: Vec<TaggedWord>,
    /// Entities (tokens).
    pub entities: Vec<TaggedEntity>,
}

/// The session's text side: the model folder, the data and the current text model.
#[derive(Debug, Default)]
pub struct TextSession {
    folder: Option<ModelFolder>,
    train: Option<TextLoaded>,
    validation: Option<TextLoaded>,
    test: Option<TextLoaded>,
    model: Option<TrainedText>,
}

/// A planned text run.
#[derive(Debug)]
pub struct TextJob {
    model: BertClassifier,
    recipe: Recipe,
    splits: TextSplits,
    classes: Vec<String>,
    tokenizer: TextTokenizer,
    config_json: Vec<u8>,
    tokenizer_json: Vec<u8>,
    base_name: String,
    encoder_changed: bool,
    /// The memory estimate the plan was checked against.
    pub memory: MemoryEstimate,
}

const TEXT_NAMES: [&str; 8] = [
    "text", "sentence", "review", "content", "document", "comment", "body", "message",
];
const LABEL_NAMES: [&str; 7] = [
    "label",
    "labels",
    "class",
    "category",
    "sentiment",
    "target",
    "intent",
];

/// The columns to use when the user has not chosen: a column with a usual name, else the label
/// is the last column and the text the column with the longest cells.
fn default_columns(table: &Table) -> TextColumns {
    let find = |names: &[&str]| {
        table
            .header
            .iter()
            .find(|h| names.contains(&h.to_ascii_lowercase().as_str()))
            .cloned()
    };
    let label = find(&LABEL_NAMES)
        .or_else(|| table.header.last().cloned())
        .unwrap_or_default();
    let text = find(&TEXT_NAMES).unwrap_or_else(|| {
        let mean_len = |c: usize| {
            table.rows.iter().map(|r| r[c].len()).sum::<usize>() / table.rows.len().max(1)
        };
        (0..table.header.len())
            .filter(|&c| table.header[c] != label)
            .max_by_key(|&c| mean_len(c))
            .map(|c| table.header[c].clone())
            .unwrap_or_default()
    });
    TextColumns {
        text,
        pair: None,
        label,
    }
}

impl TextSession {
    /// An empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load a model folder from its files. A folder with a head (fine-tuned here or with
    /// transformers) also becomes the current model, for predictions.
    ///
    /// # Errors
    /// As [`ModelFolder::from_files`].
    pub fn load_model(&mut self, files: &[FolderFile]) -> Result<FolderInfo> {
        let folder = ModelFolder::from_files(files)?;
        let info = folder.info();
        self.folder = Some(folder);
        self.model = None;
        Ok(info)
    }

    /// The loaded model folder.
    pub fn folder(&self) -> Option<&ModelFolder> {
        self.folder.as_ref()
    }

    /// Whether training data is loaded.
    pub fn has_data(&self) -> bool {
        self.train.is_some()
    }

    fn slot(&mut self, role: Role) -> &mut Option<TextLoaded> {
        match role {
            Role::Train => &mut self.train,
            Role::Validation => &mut self.validation,
            Role::Test => &mut self.test,
        }
    }

    /// Load a table of texts (`columns` or the default ones) or, with `columns` absent and a
    /// CoNLL file, tagged sentences. Validation and test files take the training file's classes.
    ///
    /// # Errors
    /// Parse errors naming file and line; a validation/test file before the training file or
    /// of another task.
    pub fn load(
        &mut self,
        role: Role,
        conll: bool,
        columns: Option<TextColumns>,
        files: &[FolderFile],
    ) -> Result<TextPreview> {
        let [file] = files else {
            return Err(Error::data(
                "texts",
                format!("expected one file, found {}", files.len()),
            ));
        };
        let train_classes = match role {
            Role::Train => None,
            _ => {
                let train = self.train.as_ref().ok_or_else(|| {
                    Error::data(
                        &file.path,
                        "load the training file before a validation or test file",
                    )
                })?;
                if train.data.task()
                    != if conll {
                        TextTask::Tokens
                    } else {
                        TextTask::Sequence
                    }
                {
                    return Err(Error::data(
                        &file.path,
                        "is not the same kind of data as the training file (texts vs tagged sentences)",
                    ));
                }
                Some(train.data.classes().to_vec())
            }
        };
        let loaded = if conll {
            TextLoaded {
                data: TextData::Tokens(TokenDataset::parse(
                    &file.path,
                    &file.bytes,
                    train_classes.as_deref(),
                )?),
                table: None,
            }
        } else {
            let format = TableFormat::from_name(&file.path).ok_or_else(|| {
                Error::data(
                    &file.path,
                    "expected .csv, .tsv or .jsonl (optionally .gz) for texts, or .conll/.txt for tagged sentences",
                )
            })?;
            let table = Table::parse(&file.path, &file.bytes, format)?;
            let columns = match (columns, role, &self.train) {
                (Some(c), _, _) => c,
                (
                    None,
                    Role::Validation | Role::Test,
                    Some(TextLoaded {
                        table: Some((_, c)),
                        ..
                    }),
                ) => c.clone(),
                _ => default_columns(&table),
            };
            let data = table.to_text_dataset(
                &columns.text,
                columns.pair.as_deref(),
                &columns.label,
                train_classes.as_deref(),
            )?;
            TextLoaded {
                data: TextData::Sequences(data),
                table: Some((table, columns)),
            }
        };
        if role == Role::Train {
            self.validation = None;
            self.test = None;
        }
        let preview = self.preview(&loaded, role);
        *self.slot(role) = Some(loaded);
        Ok(preview)
    }

    /// Use other columns of the loaded tables; previews of every loaded table follow.
    ///
    /// # Errors
    /// Columns that do not exist; labels of a validation/test file outside the training classes.
    pub fn set_columns(&mut self, columns: &TextColumns) -> Result<Vec<TextPreview>> {
        let mut previews = Vec::new();
        let mut classes: Option<Vec<String>> = None;
        for role in [Role::Train, Role::Validation, Role::Test] {
            let Some(loaded) = self.slot(role).clone() else {
                continue;
            };
            let Some((table, _)) = &loaded.table else {
                return Err(Error::data(
                    loaded.data.source(),
                    "tagged sentences have no columns to choose",
                ));
            };
            let data = table.to_text_dataset(
                &columns.text,
                columns.pair.as_deref(),
                &columns.label,
                classes.as_deref(),
            )?;
            if role == Role::Train {
                classes = Some(data.class_names.clone());
            }
            let updated = TextLoaded {
                data: TextData::Sequences(data),
                table: Some((table.clone(), columns.clone())),
            };
            previews.push(self.preview(&updated, role));
            *self.slot(role) = Some(updated);
        }
        Ok(previews)
    }

    fn preview(&self, loaded: &TextLoaded, role: Role) -> TextPreview {
        let data = &loaded.data;
        let (counts, words, samples) = match data {
            TextData::Sequences(d) => {
                let mut counts = vec![0; d.class_names.len()];
                for &l in &d.labels {
                    counts[l as usize] += 1;
                }
                let samples = (0..d.len().min(6))
                    .map(|i| TextSample {
                        text: d.texts[i].clone(),
                        pair: d.pairs.as_ref().map(|p| p[i].clone()),
                        label: Some(d.class_names[d.labels[i] as usize].clone()),
                        words: Vec::new(),
                        tags: Vec::new(),
                    })
                    .collect();
                (counts, 0, samples)
            }
            TextData::Tokens(d) => {
                let samples = (0..d.len().min(4))
                    .map(|i| TextSample {
                        text: d.sentences[i].join(" "),
                        pair: None,
                        label: None,
                        words: d.sentences[i].clone(),
                        tags: d.tags[i]
                            .iter()
                            .map(|&t| d.tag_names[t as usize].clone())
                            .collect(),
                    })
                    .collect();
                (
                    d.tag_counts(),
                    d.sentences.iter().map(Vec::len).sum(),
                    samples,
                )
            }
        };
        let tokens = self.folder.as_ref().and_then(|f| {
            let tok = f.tokenizer(f.config.max_position_embeddings).ok()?;
            let set = data.tokenize(&tok).ok()?;
            let mut lengths: Vec<usize> = set.rows.iter().map(|r| r.ids.len()).collect();
            lengths.sort_unstable();
            let n = lengths.len().max(1);
            Some(TokenStats {
                mean: lengths.iter().sum::<usize>() as f64 / n as f64,
                p95: lengths.get((n * 95 / 100).min(n - 1)).copied().unwrap_or(0),
                max: lengths.last().copied().unwrap_or(0),
            })
        });
        TextPreview {
            role,
            source: data.source().to_string(),
            task: data.task(),
            rows: data.len(),
            words,
            classes: data.classes().to_vec(),
            counts,
            columns: loaded
                .table
                .as_ref()
                .map(|(t, _)| t.header.clone())
                .unwrap_or_default(),
            chosen: loaded.table.as_ref().map(|(_, c)| c.clone()),
            samples,
            tokens,
        }
    }

    /// The memory the recipe's run would take with the loaded folder and data.
    ///
    /// # Errors
    /// No folder loaded.
    pub fn estimate(&self, recipe: &Recipe) -> Result<MemoryEstimate> {
        let folder = self.folder.as_ref().ok_or_else(|| {
            Error::data(
                "model",
                "load a model folder (or the built-in text demo) first",
            )
        })?;
        let classes = self.train.as_ref().map_or(2, |t| t.data.classes().len());
        Ok(MemoryEstimate::for_bert(
            &folder.config,
            classes,
            recipe.train.batch_size,
            folder.max_length(recipe.text.max_length),
            recipe.train.optimizer,
            &recipe.text.tuning,
            recipe.train.fused_kernels,
        ))
    }

    /// Plan a run: tokenize, split (or use the given validation/test files), build the model
    /// (the current one with `continue_training`), and check the memory estimate against
    /// `limits`.
    ///
    /// # Errors
    /// Missing folder or data; a recipe the model cannot take; a run too large for `limits`.
    pub fn plan(
        &self,
        recipe: &Recipe,
        continue_training: bool,
        limits: Option<&DeviceLimits>,
        device: &Device,
    ) -> Result<TextJob> {
        let folder = self.folder.as_ref().ok_or_else(|| {
            Error::data(
                "model",
                "load a model folder (or the built-in text demo) before training",
            )
        })?;
        let train = self.train.as_ref().ok_or_else(|| {
            Error::data(
                "data",
                "load texts (a table) or tagged sentences (CoNLL) before training",
            )
        })?;
        let memory = self.estimate(recipe)?;
        if let Some(problem) = limits.and_then(|l| memory.problem(l, &folder.config)) {
            return Err(Error::config("train.batch_size", problem));
        }
        let task = train.data.task();
        let classes = train.data.classes().to_vec();
        let tokenizer = folder.tokenizer(recipe.text.max_length)?;
        let all = train.data.tokenize(&tokenizer)?;
        let (strata, n) = train.data.strata();
        let mut split = recipe.split.clone();
        if self.validation.is_some() {
            split.validation = 0.0;
        }
        if self.test.is_some() {
            split.test = 0.0;
        }
        let [tr, va, te] = split.indices(&strata, n)?;
        let given = |slot: &Option<TextLoaded>| slot.as_ref().map(|l| l.data.tokenize(&tokenizer));
        let validation = given(&self.validation)
            .transpose()?
            .unwrap_or_else(|| all.subset(&va));
        let test = given(&self.test)
            .transpose()?
            .unwrap_or_else(|| all.subset(&te));
        let dropout = recipe
            .text
            .dropout
            .unwrap_or(folder.config.hidden_dropout_prob);
        let (model, was_changed) = match (&self.model, continue_training) {
            (Some(m), true) => {
                if m.model.task() != task || m.classes != classes {
                    return Err(Error::data(
                        train.data.source(),
                        format!(
                            "the current model classifies into {}, this data into {}; train a new model instead",
                            m.classes.join(", "),
                            classes.join(", ")
                        ),
                    ));
                }
                (m.model.clone(), m.encoder_changed)
            }
            (None, true) => {
                return Err(Error::config(
                    "continue_training",
                    "there is no trained or imported text model to continue from",
                ));
            }
            _ => (
                folder.build(
                    task,
                    &classes,
                    recipe.text.pooling,
                    dropout,
                    recipe.train.seed,
                    device,
                )?,
                false,
            ),
        };
        let tuning = &recipe.text.tuning;
        let model = model.tuned(tuning, recipe.train.seed)?;
        let encoder_changed =
            was_changed || matches!(tuning.strategy, Strategy::Full | Strategy::Top);
        let mut recipe = recipe.clone();
        recipe.text.max_length = tokenizer.max_len();
        if task == TextTask::Tokens && recipe.fit.metric == Metric::Accuracy {
            recipe.fit.metric = Metric::EntityF1;
        }
        Ok(TextJob {
            model,
            splits: TextSplits {
                train: all.subset(&tr),
                validation,
                test,
            },
            classes,
            tokenizer,
            config_json: folder.config_json.clone(),
            tokenizer_json: folder.tokenizer_json.clone(),
            base_name: folder.name.clone(),
            encoder_changed,
            memory,
            recipe,
        })
    }

    /// Load a PEFT LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`,
    /// optionally `burnish_adapter.json`) onto the loaded model folder; the result becomes the
    /// current text model, to predict with, export or continue training (with LoRA of the same
    /// rank and targets). Label names come from `burnish_adapter.json`, else the folder's own
    /// head, else the loaded training data when the class count matches, else `LABEL_i`.
    ///
    /// # Errors
    /// No model folder loaded; missing files; an adapter that does not fit the model (named).
    pub fn load_adapter(&mut self, files: &[FolderFile], device: &Device) -> Result<TextModelInfo> {
        use crate::model::peft::{ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS, read_adapter};
        let folder = self.folder.as_ref().ok_or_else(|| {
            Error::data(
                "adapter",
                "load the base model folder (the model the adapter was trained on) first, then the adapter",
            )
        })?;
        let name = files
            .first()
            .and_then(|f| f.path.split_once('/').map(|(dir, _)| dir.to_string()))
            .unwrap_or_else(|| "the adapter folder".into());
        let find = |wanted: &str| {
            files
                .iter()
                .filter(|f| base_name(&f.path) == wanted)
                .min_by_key(|f| f.path.len())
        };
        let config = find(ADAPTER_CONFIG).ok_or_else(|| {
            Error::data(
                &name,
                "the folder has no adapter_config.json; a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors",
            )
        })?;
        let weights = find(ADAPTER_WEIGHTS).ok_or_else(|| {
            Error::data(
                &name,
                if find("adapter_model.bin").is_some() {
                    "the folder has adapter_model.bin but no adapter_model.safetensors; burnish reads safetensors only (in Python: `model.save_pretrained(folder, safe_serialization=True)`)"
                } else {
                    "the folder has no adapter_model.safetensors"
                },
            )
        })?;
        let adapter = read_adapter(
            &config.bytes,
            &weights.bytes,
            find(ADAPTER_META).map(|m| m.bytes.as_slice()),
            &folder.config,
        )?;
        let meta = adapter.meta.clone();
        let task = match (&meta, adapter.task_type.as_deref()) {
            (Some(m), _) => m.task,
            (None, Some("TOKEN_CLS")) => TextTask::Tokens,
            _ => TextTask::Sequence,
        };
        let n = adapter.head_classes();
        let fits = |labels: &[String]| n.is_none_or(|n| n == labels.len());
        let folder_head = folder
            .head
            .as_ref()
            .filter(|h| h.task == task && fits(&h.labels));
        let data_classes = self
            .train
            .as_ref()
            .filter(|t| t.data.task() == task && fits(t.data.classes()))
            .map(|t| t.data.classes().to_vec());
        let labels = match (&meta, folder_head, data_classes, n) {
            (Some(m), _, _, _) => m.labels.clone(),
            (None, Some(h), _, _) => h.labels.clone(),
            (None, None, Some(c), _) => c,
            (None, None, None, Some(n)) => (0..n).map(|i| format!("LABEL_{i}")).collect(),
            (None, None, None, None) => {
                return Err(Error::data(
                    &name,
                    "the adapter has no classifier weights (PEFT's `modules_to_save`) and the model folder has no head for it; load a folder with a head, or train the adapter here first",
                ));
            }
        };
        let pooling = meta
            .as_ref()
            .map(|m| m.pooling)
            .or(folder_head.map(|h| h.pooling))
            .unwrap_or_default();
        let max_length = folder.max_length(
            meta.as_ref()
                .map(|m| m.max_length)
                .or(folder_head.and_then(|h| h.max_length))
                .unwrap_or(128),
        );
        let model = folder.build(
            task,
            &labels,
            pooling,
            folder.config.hidden_dropout_prob,
            0,
            device,
        )?;
        let model = adapter.apply(model, device)?;
        let trained = TrainedText {
            model,
            classes: labels,
            tokenizer: folder.tokenizer(max_length)?,
            max_length,
            config_json: folder.config_json.clone(),
            tokenizer_json: folder.tokenizer_json.clone(),
            origin: "adapter".into(),
            base_name: folder.name.clone(),
            encoder_changed: false,
        };
        Ok(self.set_model(trained))
    }

    /// Make `model` the current text model.
    pub fn set_model(&mut self, model: TrainedText) -> TextModelInfo {
        let info = model.info();
        self.model = Some(model);
        info
    }

    /// The current text model: the trained one, or the loaded folder's own head (built on
    /// `device` on first use).
    ///
    /// # Errors
    /// No model; weights that do not load.
    pub fn current(&mut self, device: &Device) -> Result<TrainedText> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let folder = self.folder.as_ref().ok_or_else(|| {
            Error::data("model", "load a model folder or train a text model first")
        })?;
        let head = folder.head.as_ref().ok_or_else(|| {
            Error::data(
                &folder.name,
                "the folder has no classification head yet (no `id2label` with a matching `classifier.weight`); train it first",
            )
        })?;
        let max_length = head
            .max_length
            .unwrap_or(128)
            .min(folder.config.max_position_embeddings);
        let model = folder.build(head.task, &head.labels, head.pooling, 0.0, 0, device)?;
        let trained = TrainedText {
            model,
            classes: head.labels.clone(),
            tokenizer: folder.tokenizer(max_length)?,
            max_length,
            config_json: folder.config_json.clone(),
            tokenizer_json: folder.tokenizer_json.clone(),
            origin: "imported".into(),
            base_name: folder.name.clone(),
            encoder_changed: false,
        };
        self.model = Some(trained.clone());
        Ok(trained)
    }
}

/// The final report of a text run.
fn final_report(split: &str, outcome: &super::text_fit::TextFitOutcome) -> FinalReport {
    let test = &outcome.test;
    let text = match &test.entities {
        Some(entities) => format!(
            "{}\nper tag, over words:\n\n{}",
            entities.to_text(),
            test.report.to_text()
        ),
        None => test.report.to_text(),
    };
    FinalReport {
        split: split.into(),
        loss: test.loss,
        report: test.report.clone(),
        entities: test.entities.clone(),
        text,
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.epochs_run,
        stopped_early: outcome.stopped_early,
        cancelled: outcome.cancelled,
        peak_memory: outcome.peak_memory,
    }
}

impl TextJob {
    /// Rows of each split.
    pub fn split_sizes(&self) -> [usize; 3] {
        [
            self.splits.train.rows.len(),
            self.splits.validation.rows.len(),
            self.splits.test.rows.len(),
        ]
    }

    /// Run it: epochs with progress events, then a `report` event.
    ///
    /// # Errors
    /// As [`fit_text`].
    pub async fn run(
        self,
        device: &Device,
        control: &Control,
        host: &impl Host,
    ) -> Result<(TrainedText, FinalReport, f64)> {
        let split = if self.splits.test.rows.is_empty() {
            "validation"
        } else {
            "test"
        };
        let fit: &FitConfig = &self.recipe.fit;
        let outcome = fit_text(
            self.model,
            self.recipe.train.clone(),
            fit,
            &self.splits,
            device,
            control,
            host,
        )
        .await?;
        let report = final_report(split, &outcome);
        host.post(Event::Report {
            report: Box::new(report.clone()),
        });
        let trained = TrainedText {
            model: outcome.model,
            classes: self.classes,
            tokenizer: self.tokenizer,
            max_length: self.recipe.text.max_length,
            config_json: self.config_json,
            tokenizer_json: self.tokenizer_json,
            origin: "trained".into(),
            base_name: self.base_name,
            encoder_changed: self.encoder_changed,
        };
        Ok((trained, report, outcome.tokens_per_second))
    }
}

/// Class probabilities of a typed text (and pair), or the tags of its words.
///
/// # Errors
/// Empty text; read-back failures.
pub async fn predict_text(
    model: &TrainedText,
    text: &str,
    pair: Option<&str>,
    device: &Device,
) -> Result<TextPrediction> {
    use burn::prelude::*;
    if text.trim().is_empty() {
        return Err(Error::data("text", "type a sentence first"));
    }
    let device = device.clone().without_autodiff();
    let net = model.model.valid().fork(&device);
    let encoding = model.tokenizer.encode(text, pair)?;
    let input = model.tokenizer.batch(&[&encoding], &device);
    let logits = net.forward(&input, &mut crate::model::Masks::none());
    let probabilities = burn::tensor::activation::softmax(logits, 1)
        .into_data_async()
        .await
        .map_err(Error::readback("probabilities"))?
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback {
            what: "probabilities",
            reason: format!("{e:?}"),
        })?;
    let c = model.classes.len();
    let best_of = |p: &[f32]| {
        p.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    };
    match net.task() {
        TextTask::Sequence => Ok(TextPrediction {
            task: TextTask::Sequence,
            classes: Some(Prediction {
                classes: model.classes.clone(),
                best: best_of(&probabilities),
                probabilities,
            }),
            words: Vec::new(),
            entities: Vec::new(),
        }),
        TextTask::Tokens => {
            let spans = encoding.word_spans(text);
            let mut words: Vec<TaggedWord> = spans
                .iter()
                .map(|&(start, end)| TaggedWord {
                    word: text[start..end].to_string(),
                    start,
                    end,
                    tag: "O".into(),
                    probability: 0.0,
                })
                .collect();
            let mut seen = BTreeSet::new();
            for (j, w) in encoding.words.iter().enumerate() {
                let Some(w) = w.map(|w| w as usize) else {
                    continue;
                };
                if w < words.len() && seen.insert(w) {
                    let p = &probabilities[j * c..(j + 1) * c];
                    let best = best_of(p);
                    words[w].tag = model.classes[best].clone();
                    words[w].probability = p[best];
                }
            }
            let tags: Vec<&str> = words.iter().map(|w| w.tag.as_str()).collect();
            let entities = crate::eval::entities(&tags)
                .into_iter()
                .map(|(label, first, last)| TaggedEntity {
                    text: text[words[first].start..words[last].end].to_string(),
                    label,
                    first,
                    last,
                })
                .collect();
            Ok(TextPrediction {
                task: TextTask::Tokens,
                classes: None,
                words,
                entities,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::Device;

    use super::*;
    use crate::model::bert::tests::tiny_config;
    use crate::session::testing::Recorder;
    use crate::train::text::tests::TINY_TOKENIZER;

    /// transformers' state-dict names for a BERT of `layers` layers with a classification head,
    /// written out from its module tree (not from burnish's own layout).
    fn transformers_names(layers: usize, pooler: bool) -> BTreeSet<String> {
        let mut names: Vec<String> = [
            "word_embeddings.weight",
            "position_embeddings.weight",
            "token_type_embeddings.weight",
            "LayerNorm.weight",
            "LayerNorm.bias",
        ]
        .iter()
        .map(|n| format!("bert.embeddings.{n}"))
        .collect();
        for i in 0..layers {
            for part in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ] {
                for p in ["weight", "bias"] {
                    names.push(format!("bert.encoder.layer.{i}.{part}.{p}"));
                }
            }
        }
        if pooler {
            names.extend([
                "bert.pooler.dense.weight".into(),
                "bert.pooler.dense.bias".into(),
            ]);
        }
        names.extend(["classifier.weight".into(), "classifier.bias".into()]);
        names.into_iter().collect()
    }

    /// A base folder as a user would drop it: no `bert.` prefix, a pooler, an MLM head (ignored).
    fn base_folder(device: &Device) -> Vec<FolderFile> {
        let config = tiny_config();
        let bert =
            Bert::from_weights(&config, BertWeights::random(&config, 3), device).expect("bert");
        let model = BertClassifier::new(bert, 2, Pooling::Cls, 0.0, 1, device);
        let folder = pollster::block_on(model.export_hf(
            &serde_json::to_vec(&config).expect("json"),
            TINY_TOKENIZER.as_bytes(),
            &["a".into(), "b".into()],
            16,
        ))
        .expect("export");
        folder
            .files
            .into_iter()
            .map(|(name, bytes)| FolderFile {
                path: format!("tiny-bert/{name}"),
                bytes,
            })
            .collect()
    }

    #[test]
    fn a_session_tags_words_predicts_and_exports_a_transformers_folder() {
        let device = Device::flex();
        let mut session = TextSession::new();
        let err = session
            .plan(&Recipe::transformer(), false, None, &device)
            .expect_err("no folder")
            .to_string();
        assert!(err.contains("load a model folder"), "{err}");
        let info = session.load_model(&base_folder(&device)).expect("folder");
        assert_eq!(
            (info.name.as_str(), info.layers, info.hidden_size),
            ("tiny-bert", 2, 8)
        );
        assert_eq!(info.head.as_ref().map(|h| h.labels.len()), Some(2));

        let mut conll = String::new();
        for i in 0..32 {
            conll += match i % 2 {
                0 => "the\tO\ngood\tB-POS\nfilm\tO\n\n",
                _ => "awful\tB-NEG\npoor\tI-NEG\nfilm\tO\n\n",
            };
        }
        let file = |name: &str, text: &str| {
            vec![FolderFile {
                path: name.into(),
                bytes: text.as_bytes().to_vec(),
            }]
        };
        let preview = session
            .load(Role::Train, true, None, &file("train.conll", &conll))
            .expect("conll");
        assert_eq!(
            (preview.task, preview.rows, preview.words),
            (TextTask::Tokens, 32, 96)
        );
        assert_eq!(preview.classes, ["O", "B-NEG", "B-POS", "I-NEG"]);
        assert_eq!(preview.samples[1].tags, ["B-NEG", "I-NEG", "O"]);
        assert_eq!(preview.tokens.as_ref().map(|t| t.max), Some(5));
        let err = session
            .load(
                Role::Test,
                false,
                None,
                &file("test.csv", "text,label\na,b\n"),
            )
            .expect_err("other kind")
            .to_string();
        assert!(err.contains("not the same kind of data"), "{err}");

        let mut recipe = Recipe::transformer();
        recipe.train.learning_rate = 0.01;
        recipe.train.batch_size = 8;
        recipe.train.schedule.warmup_fraction = 0.0;
        recipe.fit.epochs = 10;
        recipe.text.dropout = Some(0.0);
        let limits = DeviceLimits {
            max_storage_buffer_binding_size: 64,
            max_buffer_size: 64,
        };
        let err = session
            .plan(&recipe, false, Some(&limits), &device)
            .expect_err("too small a GPU")
            .to_string();
        assert!(err.contains("per buffer"), "{err}");
        let job = session
            .plan(&recipe, false, Some(&DeviceLimits::default()), &device)
            .expect("plan");
        assert_eq!(job.split_sizes(), [24, 4, 4]);
        let host = Recorder::default();
        let (trained, report, _) =
            pollster::block_on(job.run(&device, &Control::default(), &host)).expect("run");
        let entities = report.entities.as_ref().expect("entity report");
        assert_eq!(entities.micro.f1, 1.0, "{}", report.text);
        assert!(report.text.contains("micro avg") && report.text.contains("per tag, over words"));
        assert!(host.0.borrow().iter().any(|e| matches!(
            e,
            Event::Epoch {
                validation_entity_f1: Some(_),
                ..
            }
        )));
        let info = session.set_model(trained);
        assert_eq!(
            (info.task, info.origin.as_str()),
            (TextTask::Tokens, "trained")
        );

        let model = session.current(&device).expect("model");
        let p = pollster::block_on(predict_text(
            &model,
            "The good film, awful poor film",
            None,
            &device,
        ))
        .expect("predict");
        let tags: Vec<&str> = p.words.iter().map(|w| w.tag.as_str()).collect();
        assert_eq!(p.words[4].word, "awful");
        assert_eq!(tags, ["O", "B-POS", "O", "O", "B-NEG", "I-NEG", "O"]);
        assert_eq!(
            p.entities
                .iter()
                .map(|e| (e.label.as_str(), e.text.as_str()))
                .collect::<Vec<_>>(),
            [("POS", "good"), ("NEG", "awful poor")]
        );

        // The export is a transformers BertForTokenClassification folder: exactly its names
        // (no pooler), its config fields, the tokenizer as given.
        let folder = pollster::block_on(model.export()).expect("export");
        let get = |name: &str| {
            folder
                .file(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .to_vec()
        };
        let weights = get("model.safetensors");
        let st = safetensors::SafeTensors::deserialize(&weights).expect("safetensors");
        let names: BTreeSet<String> = st.names().into_iter().map(str::to_string).collect();
        assert_eq!(names, transformers_names(2, false));
        assert_eq!(
            st.tensor("classifier.weight").expect("head").shape(),
            [4, 8]
        );
        let config: serde_json::Value = serde_json::from_slice(&get("config.json")).expect("json");
        assert_eq!(
            config["architectures"],
            serde_json::json!(["BertForTokenClassification"])
        );
        assert_eq!(config["model_type"], "bert");
        assert_eq!(
            config["id2label"],
            serde_json::json!({"0": "O", "1": "B-NEG", "2": "B-POS", "3": "I-NEG"})
        );
        assert_eq!(config["label2id"]["I-NEG"], 3);
        for field in [
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "hidden_act",
        ] {
            assert!(config.get(field).is_some(), "config.json lacks {field}");
        }
        assert_eq!(get("tokenizer.json"), TINY_TOKENIZER.as_bytes());

        // Loaded back as a folder, it carries its head and predicts the same.
        let files: Vec<FolderFile> = folder
            .files
            .iter()
            .map(|(n, b)| FolderFile {
                path: format!("tagger/{n}"),
                bytes: b.clone(),
            })
            .collect();
        let mut again = TextSession::new();
        let info = again.load_model(&files).expect("exported folder");
        assert_eq!(info.head.as_ref().map(|h| h.task), Some(TextTask::Tokens));
        let reloaded = again.current(&device).expect("imported");
        let q = pollster::block_on(predict_text(
            &reloaded,
            "The good film, awful poor film",
            None,
            &device,
        ))
        .expect("predict");
        for (a, b) in p.words.iter().zip(&q.words) {
            assert_eq!(a.tag, b.tag);
            assert!((a.probability - b.probability).abs() < 1e-5);
        }
    }

    #[test]
    fn sequence_folders_have_transformers_names_and_missing_files_are_named() {
        let device = Device::flex();
        let files = base_folder(&device);
        let weights = &files
            .iter()
            .find(|f| f.path.ends_with(".safetensors"))
            .expect("weights")
            .bytes;
        let st = safetensors::SafeTensors::deserialize(weights).expect("safetensors");
        let names: BTreeSet<String> = st.names().into_iter().map(str::to_string).collect();
        assert_eq!(names, transformers_names(2, true));

        let without = |name: &str| -> Vec<FolderFile> {
            files
                .iter()
                .filter(|f| !f.path.ends_with(name))
                .cloned()
                .collect()
        };
        let mut session = TextSession::new();
        for (missing, says) in [
            ("tokenizer.json", "the folder has no tokenizer.json"),
            ("config.json", "the folder has no config.json"),
            ("model.safetensors", "the folder has no model.safetensors"),
        ] {
            let err = session
                .load_model(&without(missing))
                .expect_err(missing)
                .to_string();
            assert!(err.contains("tiny-bert") && err.contains(says), "{err}");
        }
        let mut with_bin = without("model.safetensors");
        with_bin.push(FolderFile {
            path: "tiny-bert/pytorch_model.bin".into(),
            bytes: Vec::new(),
        });
        let err = session.load_model(&with_bin).expect_err("bin").to_string();
        assert!(err.contains("safe_serialization=True"), "{err}");
        let mut bad_config = files.clone();
        for f in &mut bad_config {
            if f.path.ends_with("config.json") {
                f.bytes = br#"{"vocab_size": 12, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 16}"#.to_vec();
            }
        }
        let err = session
            .load_model(&bad_config)
            .expect_err("shape")
            .to_string();
        assert!(err.contains("config.json implies"), "{err}");

        // A table of texts: default columns found by name, then changed.
        session.load_model(&files).expect("folder");
        let csv = "id,review,stars\n1,good film,pos\n2,awful film,neg\n3,great,pos\n4,poor,neg\n";
        let p = session
            .load(
                Role::Train,
                false,
                None,
                &[FolderFile {
                    path: "r.csv".into(),
                    bytes: csv.as_bytes().to_vec(),
                }],
            )
            .expect("table");
        assert_eq!(
            p.chosen
                .as_ref()
                .map(|c| (c.text.as_str(), c.label.as_str())),
            Some(("review", "stars"))
        );
        let err = session
            .set_columns(&TextColumns {
                text: "review".into(),
                pair: None,
                label: "nope".into(),
            })
            .expect_err("no column")
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let p = session
            .set_columns(&TextColumns {
                text: "review".into(),
                pair: Some("id".into()),
                label: "stars".into(),
            })
            .expect("pair");
        assert_eq!(p[0].samples[0].pair.as_deref(), Some("1"));
        let e = session.estimate(&Recipe::transformer()).expect("estimate");
        assert!(e.total > e.weights);
    }
}
