//! The state of one user's session, the same in the browser worker, the CLI and tests: the
//! loaded data (training file and optional validation and test files), and the current model
//! (trained here or imported). Each page command maps to one method; the worker only moves bytes
//! and events.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, fingerprint};
use super::fit::{Autosave, FitPlan, fit};
use super::memory::DeviceLimits;
use super::protocol::Event;
use super::recipe::{ModelKind, Recipe};
use super::runner::{Control, Host};
use crate::data::ClassificationDataset;
use crate::data::idx::{gunzip_if_needed, idx_dataset};
use crate::data::images::{FolderFile, ImageFolderConfig, decode_image, image_folder};
use crate::data::split::{Normalizer, Splits};
use crate::data::table::{Table, TableFormat};
use crate::eval::ClassificationReport;
use crate::export::ExportedClassifier;
use crate::model::{CnnConfig, MlpConfig, ModelConfig};
use crate::{Error, Result};

/// Which part of the data a loaded file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The data to train on (split by ratio unless validation and test files are given).
    #[default]
    Train,
    /// A user-supplied validation file (replaces the validation share of the split).
    Validation,
    /// A user-supplied test file (replaces the test share of the split).
    Test,
}

/// Rows of a table that are really images (e.g. the 8x8 digits, or MNIST as CSV).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableImage {
    /// `[channels, height, width]`; rows are channel-major.
    pub shape: [usize; 3],
    /// The value of full intensity (e.g. 16 for the digits, 255 for MNIST); values are divided
    /// by it, so they lie in `[0, 1]` like decoded images.
    pub max_value: f32,
}

/// How to read the files of a `load` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadRequest {
    /// One CSV, TSV or JSON Lines file (optionally gzipped); the format comes from its name.
    Table {
        /// The label column (default: the last).
        #[serde(default)]
        label: Option<String>,
        /// Whether the first line names the columns (default true; without, columns are `1`..).
        #[serde(default = "yes")]
        has_header: bool,
        /// Treat rows as images.
        #[serde(default)]
        image: Option<TableImage>,
    },
    /// PNG/JPEG files, one sub-folder per class, paths relative to the dropped folder.
    Images {
        /// Size, colour.
        #[serde(default)]
        config: ImageFolderConfig,
    },
    /// Two IDX files (images and labels, in either order), raw or gzipped.
    Idx,
}

fn yes() -> bool {
    true
}

/// One row shown in the preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The row's class name.
    pub label: String,
    /// Its features (for images, channel-major values in `[0, 1]`).
    pub values: Vec<f32>,
}

/// What the page shows after a file is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// Which part of the data this is.
    pub role: Role,
    /// The file or folder name.
    pub source: String,
    /// Rows.
    pub rows: usize,
    /// Features per row.
    pub features: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Rows per class.
    pub counts: Vec<usize>,
    /// `[channels, height, width]` for images.
    pub image_shape: Option<[usize; 3]>,
    /// All columns of a table (empty for images), so the user can pick the label.
    pub columns: Vec<String>,
    /// The label column of a table.
    pub label: Option<String>,
    /// Names of the feature columns of a table, in row order.
    pub feature_names: Vec<String>,
    /// A few rows: for images up to two per class, for tables the first five.
    pub samples: Vec<Sample>,
    /// Files of a folder that were not images and were left out.
    pub skipped: Vec<String>,
}

/// The current model, as the page describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `trained` here, or `imported` from a file.
    pub origin: String,
    /// The architecture.
    pub config: ModelConfig,
    /// Class names.
    pub classes: Vec<String>,
    /// Trainable parameters.
    pub parameters: usize,
    /// `[channels, height, width]` when it reads images.
    pub image_shape: Option<[usize; 3]>,
    /// Names of the input features (tables), for the predict form; may be empty.
    pub feature_names: Vec<String>,
}

/// The final evaluation of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// `test`, or `validation` when there is no test split.
    pub split: String,
    /// Mean cross-entropy on it.
    pub loss: f64,
    /// Accuracy, per-class metrics, confusion matrix (for tagging: per tag, over words).
    pub report: ClassificationReport,
    /// Entity-level scores (tagging only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<crate::eval::EntityReport>,
    /// The report as text, in scikit-learn's (and for entities seqeval's) layout.
    pub text: String,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the user cancelled it.
    pub cancelled: bool,
    /// The most GPU memory the run's device held, in bytes, when the backend reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
}

/// Class probabilities for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Class names.
    pub classes: Vec<String>,
    /// Softmax probability of each class.
    pub probabilities: Vec<f32>,
    /// Index of the most probable class.
    pub best: usize,
}

#[derive(Debug, Clone)]
struct TableSource {
    table: Table,
    label: String,
    image: Option<TableImage>,
}

#[derive(Debug, Clone)]
struct Loaded {
    dataset: ClassificationDataset,
    table: Option<TableSource>,
    skipped: Vec<String>,
}

/// The session's data and model.
#[derive(Debug, Default)]
pub struct Workspace {
    train: Option<Loaded>,
    validation: Option<Loaded>,
    test: Option<Loaded>,
    model: Option<(ExportedClassifier, String)>,
    /// The text side: model folder, texts, text model.
    pub text: super::text_session::TextSession,
    /// The language-model side: text and model.
    pub lm: super::lm::LmSession,
}

/// A training run, detached from the workspace so it can run while the workspace answers other
/// commands (pause, cancel); its result goes back with [`Workspace::set_model`].
#[derive(Debug)]
pub struct TrainingJob {
    plan: FitPlan,
    classes: Vec<String>,
    normalizer: Option<Normalizer>,
    image_shape: Option<[usize; 3]>,
    feature_names: Vec<String>,
}

fn table_dataset(
    table: &Table,
    label: &str,
    image: Option<TableImage>,
    classes: Option<&[String]>,
) -> Result<ClassificationDataset> {
    let mut dataset = table.to_dataset(label, classes)?;
    if let Some(image) = image {
        if !(image.max_value.is_finite() && image.max_value > 0.0) {
            return Err(Error::config(
                "image.max_value",
                format!("expected a positive intensity, found {}", image.max_value),
            ));
        }
        dataset = dataset.with_image_shape(image.shape)?;
        for v in &mut dataset.features {
            *v /= image.max_value;
        }
    }
    Ok(dataset)
}

/// The label column when the user has not picked one: the last column holding text (features
/// must be numbers, so a text column can only be the label), else the last column.
fn default_label(table: &Table) -> String {
    let numeric = |c: usize| {
        table
            .rows
            .iter()
            .filter_map(|r| r.get(c))
            .all(|v| v.trim().is_empty() || v.trim().parse::<f64>().is_ok())
    };
    (0..table.header.len())
        .rev()
        .find(|&c| !numeric(c))
        .or(table.header.len().checked_sub(1))
        .map(|c| table.header[c].clone())
        .unwrap_or_default()
}

fn is_idx_labels(name: &str, bytes: &[u8]) -> Result<bool> {
    let raw = gunzip_if_needed(name, bytes)?;
    Ok(raw.len() >= 4 && raw[3] == 1)
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, role: Role) -> &mut Option<Loaded> {
        match role {
            Role::Train => &mut self.train,
            Role::Validation => &mut self.validation,
            Role::Test => &mut self.test,
        }
    }

    /// The training data, if loaded.
    pub fn train_data(&self) -> Option<&ClassificationDataset> {
        self.train.as_ref().map(|l| &l.dataset)
    }

    /// Load files as one part of the data. Loading training data drops the validation and test
    /// files (they belonged to the old data). Validation and test files must match the training
    /// data's features and classes, which they take.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file, line or record for anything malformed; an error when
    /// validation or test data is loaded before training data, or does not fit it.
    pub fn load(
        &mut self,
        role: Role,
        request: &LoadRequest,
        files: &[FolderFile],
    ) -> Result<Preview> {
        let classes = match role {
            Role::Train => None,
            _ => Some(
                self.train_data()
                    .ok_or_else(|| {
                        Error::data(
                            files.first().map_or("the file", |f| f.path.as_str()),
                            "load the training data before a validation or test file",
                        )
                    })?
                    .class_names
                    .clone(),
            ),
        };
        let loaded = match request {
            LoadRequest::Table {
                label,
                has_header,
                image,
            } => {
                let [file] = files else {
                    return Err(Error::data(
                        "table",
                        format!("expected one table file, found {}", files.len()),
                    ));
                };
                let format = TableFormat::from_name(&file.path).ok_or_else(|| {
                    Error::data(
                        &file.path,
                        "cannot tell the format from the name; expected .csv, .tsv or .jsonl (optionally .gz)",
                    )
                })?;
                let table = Table::parse_with(&file.path, &file.bytes, format, *has_header)?;
                let label = match (label, &self.train, role) {
                    (Some(l), _, _) => l.clone(),
                    (None, Some(train), Role::Validation | Role::Test) => {
                        train.table_label().unwrap_or_default()
                    }
                    _ => default_label(&table),
                };
                let dataset = table_dataset(&table, &label, *image, classes.as_deref())?;
                Loaded {
                    dataset,
                    table: Some(TableSource {
                        table,
                        label,
                        image: *image,
                    }),
                    skipped: Vec::new(),
                }
            }
            LoadRequest::Images { config } => {
                let root = files
                    .first()
                    .and_then(|f| f.path.trim_start_matches('/').split_once('/'))
                    .map(|(root, _)| root)
                    .unwrap_or("images")
                    .to_string();
                let folder = image_folder(&root, files, config)?;
                let dataset = match &classes {
                    Some(c) => folder.dataset.with_classes(c)?,
                    None => folder.dataset,
                };
                Loaded {
                    dataset,
                    table: None,
                    skipped: folder.skipped,
                }
            }
            LoadRequest::Idx => {
                let [a, b] = files else {
                    return Err(Error::data(
                        "IDX",
                        format!(
                            "expected two IDX files (images and labels), found {}",
                            files.len()
                        ),
                    ));
                };
                let (images, labels) = if is_idx_labels(&a.path, &a.bytes)? {
                    (b, a)
                } else {
                    (a, b)
                };
                let mut dataset =
                    idx_dataset(&images.path, &images.bytes, &labels.path, &labels.bytes)?;
                if let Some(c) = &classes {
                    dataset = dataset.with_classes(c)?;
                }
                Loaded {
                    dataset,
                    table: None,
                    skipped: Vec::new(),
                }
            }
        };
        if role != Role::Train {
            self.check_fits(&loaded.dataset)?;
        }
        let preview = loaded.preview(role);
        if role == Role::Train {
            self.validation = None;
            self.test = None;
        }
        *self.slot(role) = Some(loaded);
        Ok(preview)
    }

    fn check_fits(&self, data: &ClassificationDataset) -> Result<()> {
        if let Some(train) = self.train_data()
            && (train.n_features != data.n_features || train.image_shape != data.image_shape)
        {
            return Err(Error::data(
                &data.source_name,
                format!(
                    "rows have {} features{}, the training data has {}{}",
                    data.n_features,
                    shape_text(data.image_shape),
                    train.n_features,
                    shape_text(train.image_shape)
                ),
            ));
        }
        Ok(())
    }

    /// Pick another label column of a loaded table (the validation and test tables follow).
    ///
    /// # Errors
    /// When no table is loaded as `role`, the column does not exist, or the other columns are not
    /// all numeric.
    pub fn set_label(&mut self, label: &str) -> Result<Vec<Preview>> {
        let Some(train) = &self.train else {
            return Err(Error::data("table", "no table is loaded"));
        };
        let Some(source) = &train.table else {
            return Err(Error::data(
                &train.dataset.source_name,
                "only tables have a label column to choose",
            ));
        };
        let dataset = table_dataset(&source.table, label, source.image, None)?;
        let classes = dataset.class_names.clone();
        let mut others = Vec::new();
        for role in [Role::Validation, Role::Test] {
            if let Some(Loaded { table: Some(t), .. }) = self.slot(role).as_ref() {
                others.push((
                    role,
                    table_dataset(&t.table, label, t.image, Some(&classes))?,
                ));
            }
        }
        let mut previews = Vec::new();
        for (role, dataset) in [(Role::Train, dataset)].into_iter().chain(others) {
            if let Some(loaded) = self.slot(role) {
                loaded.dataset = dataset;
                if let Some(t) = &mut loaded.table {
                    t.label = label.to_string();
                }
                previews.push(loaded.preview(role));
            }
        }
        Ok(previews)
    }

    /// Prepare a training run of `recipe` on the loaded data: split (or take the user's files),
    /// fit the normaliser on the training rows only, pick the model. With `continue_training`,
    /// the current model (imported or trained) is trained further on the new data, keeping its
    /// architecture, classes and normalisation.
    ///
    /// # Errors
    /// No data; invalid recipe fields; data that does not fit the model to continue.
    pub fn plan(
        &self,
        recipe: &Recipe,
        continue_training: bool,
        device: &Device,
    ) -> Result<TrainingJob> {
        self.train_loaded()?;
        let start = if continue_training {
            Some(
                &self
                    .model
                    .as_ref()
                    .ok_or_else(|| {
                        Error::config(
                            "continue_training",
                            "there is no trained or imported model to continue from",
                        )
                    })?
                    .0,
            )
        } else {
            None
        };
        self.plan_from(recipe, start, device)
    }

    /// Prepare to continue an autosaved run (`bytes`, named `name`) on the loaded data, which
    /// must be the data it was trained on (checked by fingerprint).
    ///
    /// # Errors
    /// A malformed autosave; no data, or other data than the run's.
    pub fn plan_resume(&self, name: &str, bytes: &[u8], device: &Device) -> Result<TrainingJob> {
        let checkpoint = Checkpoint::from_bytes(name, bytes)?;
        let mut job = self.plan_from(&checkpoint.recipe, Some(&checkpoint.model), device)?;
        let found = job.plan.autosave.as_ref().map(|a| a.fingerprint.clone());
        if found.as_deref() != Some(checkpoint.fingerprint.as_str()) {
            return Err(Error::data(
                name,
                format!(
                    "this run was trained on other data ({}, fingerprint {}); the loaded data \
                     has fingerprint {}. Load the same file(s) with the same label column to resume",
                    checkpoint.source,
                    checkpoint.fingerprint,
                    found.unwrap_or_default()
                ),
            ));
        }
        if checkpoint.steps != job.plan_steps() {
            return Err(Error::data(
                name,
                format!(
                    "the run had {} steps, its recipe on this data gives {}",
                    checkpoint.steps,
                    job.plan_steps()
                ),
            ));
        }
        job.plan.start = None;
        job.plan.resume = Some(Box::new(checkpoint));
        Ok(job)
    }

    fn train_loaded(&self) -> Result<&Loaded> {
        self.train.as_ref().ok_or_else(|| {
            Error::data(
                "data",
                "load a training file (or the built-in demo) before training",
            )
        })
    }

    fn plan_from(
        &self,
        recipe: &Recipe,
        start: Option<&ExportedClassifier>,
        device: &Device,
    ) -> Result<TrainingJob> {
        let train = self.train_loaded()?;
        let mut data = train.dataset.clone();
        let mut extra = [
            self.validation.as_ref().map(|l| l.dataset.clone()),
            self.test.as_ref().map(|l| l.dataset.clone()),
        ];
        if let Some(model) = start {
            model_fits(model, &data)?;
            data = data.with_classes(&model.classes)?;
            for d in extra.iter_mut().flatten() {
                *d = d.clone().with_classes(&model.classes)?;
            }
        }
        let [validation, test] = extra;
        let mut split = recipe.split.clone();
        if validation.is_some() {
            split.validation = 0.0;
        }
        if test.is_some() {
            split.test = 0.0;
        }
        let Splits {
            mut train,
            validation: split_validation,
            test: split_test,
        } = data.split(&split)?;
        let mut validation = validation.unwrap_or(split_validation);
        let mut test = test.unwrap_or(split_test);
        let normalizer = match start {
            Some(model) => model.normalizer.clone(),
            None => recipe.normalize.then(|| Normalizer::fit(&train)),
        };
        if let Some(n) = &normalizer {
            for part in [&mut train, &mut validation, &mut test] {
                n.apply(part)?;
            }
        }
        let shape = match start {
            Some(model) => model.config.clone(),
            None => recipe.model.build(&data)?,
        };
        let feature_names = match start {
            Some(model) => model.feature_names.clone(),
            None => train_feature_names(self.train.as_ref()),
        };
        let start = start.map(|m| m.to_model(device)).transpose()?;
        let splits = Splits {
            train,
            validation,
            test,
        };
        let autosave = Autosave {
            recipe: recipe.clone(),
            fingerprint: fingerprint(&splits),
            source: splits.train.source_name.clone(),
            model: ExportedClassifier {
                config: shape.clone(),
                classes: data.class_names.clone(),
                normalizer: normalizer.clone(),
                image_shape: data.image_shape,
                feature_names: feature_names.clone(),
                tensors: Vec::new(),
            },
        };
        Ok(TrainingJob {
            plan: FitPlan {
                shape,
                start,
                train: recipe.train.clone(),
                fit: recipe.fit.clone(),
                augment: recipe.augment.clone(),
                splits,
                autosave: Some(autosave),
                resume: None,
            },
            classes: data.class_names.clone(),
            normalizer,
            image_shape: data.image_shape,
            feature_names,
        })
    }

    /// The current model and the data to evaluate it on: the loaded test file, else the
    /// validation file, else the training data, in the model's classes and normalisation.
    ///
    /// # Errors
    /// No model; no data; data that does not fit the model.
    pub fn evaluation(&self) -> Result<(ExportedClassifier, ClassificationDataset, String)> {
        let model = self.model().ok_or_else(|| {
            Error::config("evaluate", "there is no trained or imported model yet")
        })?;
        let (loaded, split) = [
            (&self.test, "test"),
            (&self.validation, "validation"),
            (&self.train, "train"),
        ]
        .into_iter()
        .find_map(|(slot, name)| slot.as_ref().map(|l| (l, name)))
        .ok_or_else(|| Error::data("data", "load data to evaluate the model on"))?;
        let mut data = loaded.dataset.clone();
        model_fits(model, &data)?;
        data = data.with_classes(&model.classes)?;
        if let Some(n) = &model.normalizer {
            n.apply(&mut data)?;
        }
        Ok((model.clone(), data, split.to_string()))
    }

    /// Make `model` the current one (after training or import) and describe it.
    pub fn set_model(&mut self, model: ExportedClassifier, origin: &str) -> ModelInfo {
        let info = ModelInfo {
            origin: origin.into(),
            config: model.config.clone(),
            classes: model.classes.clone(),
            parameters: model.parameters(),
            image_shape: model.image_shape,
            feature_names: model.feature_names.clone(),
        };
        self.model = Some((model, origin.into()));
        info
    }

    /// Import an exported model (to predict, or to continue training with new data).
    ///
    /// # Errors
    /// As [`ExportedClassifier::from_bytes`].
    pub fn import(&mut self, name: &str, bytes: &[u8]) -> Result<ModelInfo> {
        let model = ExportedClassifier::from_bytes(name, bytes)?;
        Ok(self.set_model(model, "imported"))
    }

    /// The current model.
    pub fn model(&self) -> Option<&ExportedClassifier> {
        self.model.as_ref().map(|(m, _)| m)
    }

    /// The current model as safetensors bytes.
    ///
    /// # Errors
    /// When there is no model.
    pub fn export(&self) -> Result<Vec<u8>> {
        self.model()
            .ok_or_else(|| Error::config("export", "there is no trained or imported model yet"))?
            .to_bytes()
    }

    /// The raw features of an input for the current model: a row of numbers as given, or an
    /// image file decoded to the model's image shape.
    ///
    /// # Errors
    /// No model; a row of the wrong length; an image for a model that reads tables; an image
    /// that does not decode.
    pub fn input(&self, values: Option<Vec<f32>>, image: Option<&FolderFile>) -> Result<Vec<f32>> {
        let model = self
            .model()
            .ok_or_else(|| Error::config("predict", "there is no trained or imported model yet"))?;
        let d = model.config.d_input();
        let row = match (values, image) {
            (_, Some(file)) => {
                let shape = model.image_shape.ok_or_else(|| {
                    Error::data(
                        &file.path,
                        "this model reads table rows, not images; enter the row's values",
                    )
                })?;
                decode_image(&file.path, &file.bytes, shape)?
            }
            (Some(values), None) => values,
            (None, None) => {
                return Err(Error::config(
                    "predict",
                    "expected a row of values or an image",
                ));
            }
        };
        if row.len() != d {
            return Err(Error::data(
                "input",
                format!("expected {d} values, found {}", row.len()),
            ));
        }
        if let Some(i) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::data(
                "input",
                format!("value {} is not a finite number", i + 1),
            ));
        }
        Ok(row)
    }
}

/// The report of `model` on `data` (already in its classes and normalisation) as a
/// [`FinalReport`] of `split`.
///
/// # Errors
/// Read-back failures.
pub async fn evaluate_model(
    model: &ExportedClassifier,
    data: &ClassificationDataset,
    split: &str,
    device: &Device,
) -> Result<FinalReport> {
    let device = device.clone().without_autodiff();
    let net = model.to_model(&device)?;
    let e = crate::train::evaluate(&net, &device, data).await?;
    Ok(FinalReport {
        split: split.into(),
        loss: e.loss,
        text: e.report.to_text(),
        report: e.report,
        entities: None,
        best_epoch: 0,
        epochs_run: 0,
        stopped_early: false,
        cancelled: false,
        peak_memory: None,
    })
}

/// Class probabilities of `model` for one raw row (normalised here as in training).
///
/// # Errors
/// A row of the wrong length; read-back failure.
pub async fn predict(
    model: &ExportedClassifier,
    mut row: Vec<f32>,
    device: &Device,
) -> Result<Prediction> {
    let d = model.config.d_input();
    if row.len() != d {
        return Err(Error::data(
            "input",
            format!("expected {d} values, found {}", row.len()),
        ));
    }
    if let Some(n) = &model.normalizer {
        n.apply_row(&mut row);
    }
    let device = device.clone().without_autodiff();
    let net = model.to_model(&device)?;
    let x = Tensor::<2>::from_data(TensorData::new(row, [1, d]), &device);
    let probabilities = burn::tensor::activation::softmax(net.forward(x), 1)
        .into_data_async()
        .await
        .map_err(Error::readback("probabilities"))?
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback {
            what: "probabilities",
            reason: format!("{e:?}"),
        })?;
    let best = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    Ok(Prediction {
        classes: model.classes.clone(),
        probabilities,
        best,
    })
}

/// Whether `data`'s rows are what `model` reads.
fn model_fits(model: &ExportedClassifier, data: &ClassificationDataset) -> Result<()> {
    if model.image_shape != data.image_shape || model.config.d_input() != data.n_features {
        return Err(Error::data(
            &data.source_name,
            format!(
                "the model reads {} inputs{}, this data has {} features{}",
                model.config.d_input(),
                shape_text(model.image_shape),
                data.n_features,
                shape_text(data.image_shape)
            ),
        ));
    }
    Ok(())
}

fn shape_text(shape: Option<[usize; 3]>) -> String {
    shape.map_or_else(String::new, |[c, h, w]| format!(" ({c}x{h}x{w} images)"))
}

fn train_feature_names(train: Option<&Loaded>) -> Vec<String> {
    train.map(Loaded::feature_names).unwrap_or_default()
}

impl Loaded {
    fn table_label(&self) -> Option<String> {
        self.table.as_ref().map(|t| t.label.clone())
    }

    /// The feature columns of a table of numbers (not of image rows), in row order.
    fn feature_names(&self) -> Vec<String> {
        match &self.table {
            Some(t) if t.image.is_none() => t
                .table
                .header
                .iter()
                .filter(|h| **h != t.label)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    fn preview(&self, role: Role) -> Preview {
        let d = &self.dataset;
        let mut samples = Vec::new();
        if d.image_shape.is_some() {
            for class in 0..d.n_classes() {
                samples.extend(
                    d.labels
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| **l as usize == class)
                        .take(2)
                        .map(|(i, _)| Sample {
                            label: d.class_names[class].clone(),
                            values: d.row(i).to_vec(),
                        }),
                );
                if samples.len() >= 24 {
                    break;
                }
            }
        } else {
            samples.extend((0..d.len().min(5)).map(|i| Sample {
                label: d.class_names[d.labels[i] as usize].clone(),
                values: d.row(i).to_vec(),
            }));
        }
        let label = self.table_label();
        Preview {
            role,
            source: d.source_name.clone(),
            rows: d.len(),
            features: d.n_features,
            classes: d.class_names.clone(),
            counts: d.class_counts(),
            image_shape: d.image_shape,
            columns: self
                .table
                .as_ref()
                .map(|t| t.table.header.clone())
                .unwrap_or_default(),
            feature_names: self.feature_names(),
            label,
            samples,
            skipped: self.skipped.clone(),
        }
    }
}

impl TrainingJob {
    /// Steps the run takes.
    fn plan_steps(&self) -> usize {
        let c = &self.plan.train;
        let per_step = c.batch_size.max(1) * c.grad_accumulation.max(1);
        self.plan.splits.train.len().div_ceil(per_step) * self.plan.fit.epochs
    }

    #[cfg(test)]
    pub(crate) fn plan_steps_for_tests(&self) -> usize {
        self.plan_steps()
    }

    /// Refuse, before anything is allocated, a run whose largest buffer would exceed what the
    /// adapter allows, saying what to lower.
    ///
    /// # Errors
    /// [`Error::Config`] naming `train.batch_size` or the model's widths.
    pub fn check_limits(&self, limits: &DeviceLimits) -> Result<()> {
        let cap = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .max(1);
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let shape = &self.plan.shape;
        let per_row = 4 * shape.widest_per_row() as u64;
        let batch = self.plan.train.batch_size as u64;
        if batch * per_row > cap {
            let images = matches!(shape, ModelConfig::Cnn(_));
            return Err(Error::config(
                "train.batch_size",
                format!(
                    "a batch of {batch} rows needs a {:.0} MiB buffer for its widest activation \
                     ({} floats per row), and this GPU allows {:.0} MiB per buffer: lower the \
                     batch size to at most {}{} (gradient accumulation keeps the effective batch)",
                    mib(batch * per_row),
                    per_row / 4,
                    mib(cap),
                    cap / per_row,
                    if images {
                        ", or use smaller images or fewer filters in the first block"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let weight = 4 * shape.largest_weight() as u64;
        if weight > cap {
            return Err(Error::config(
                "model.hidden",
                format!(
                    "the largest weight matrix needs {:.0} MiB and this GPU allows {:.0} MiB per \
                     buffer: use narrower hidden layers{}",
                    mib(weight),
                    mib(cap),
                    if shape.d_input() > 4096 {
                        " (with this many inputs, the first layer is the large one)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Rows of each split, for the page.
    pub fn split_sizes(&self) -> [usize; 3] {
        let s = &self.plan.splits;
        [s.train.len(), s.validation.len(), s.test.len()]
    }

    /// Run it: epochs with progress events, then a `report` event; returns the trained model,
    /// read back for export (asynchronously).
    ///
    /// # Errors
    /// As [`fit`](super::fit::fit); read-back failures.
    pub async fn run(
        self,
        device: &Device,
        control: &Control,
        host: &impl Host,
    ) -> Result<(ExportedClassifier, FinalReport)> {
        let shape = self.plan.shape.clone();
        let final_split = if self.plan.splits.test.is_empty() {
            "validation"
        } else {
            "test"
        };
        let outcome = fit(self.plan, device, control, host).await?;
        let report = FinalReport {
            split: final_split.into(),
            loss: outcome.test.loss,
            text: outcome.test.report.to_text(),
            report: outcome.test.report,
            entities: None,
            best_epoch: outcome.best_epoch,
            epochs_run: outcome.epochs_run,
            stopped_early: outcome.stopped_early,
            cancelled: outcome.cancelled,
            peak_memory: super::text_fit::peak_memory(device),
        };
        host.post(Event::Report {
            report: Box::new(report.clone()),
        });
        let mut export = ExportedClassifier::from_model(
            &outcome.model,
            &shape,
            self.classes,
            self.normalizer,
            self.image_shape,
        )
        .await?;
        export.feature_names = self.feature_names;
        Ok((export, report))
    }
}

impl super::recipe::ModelRecipe {
    /// The model for `data`: a CNN for images unless `kind` says MLP.
    ///
    /// # Errors
    /// [`Error::Config`] for a CNN on data that is not images, or invalid widths.
    pub fn build(&self, data: &ClassificationDataset) -> Result<ModelConfig> {
        let config = match (self.kind, data.image_shape) {
            (ModelKind::Cnn | ModelKind::Auto, Some(shape)) => ModelConfig::Cnn(CnnConfig {
                image_shape: shape,
                n_classes: data.n_classes(),
                filters: self.filters.clone(),
                hidden: self.hidden.clone(),
                dropout: self.dropout,
            }),
            (ModelKind::Cnn, None) => {
                return Err(Error::config(
                    "model.kind",
                    format!(
                        "a CNN needs images; {} is a table (choose `mlp`, or load it with an image shape)",
                        data.source_name
                    ),
                ));
            }
            _ => ModelConfig::Mlp(
                MlpConfig::new(data.n_features, data.n_classes())
                    .with_hidden(self.hidden.clone())
                    .with_dropout(self.dropout),
            ),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::data::idx::tests::idx_u8;
    use crate::session::fit::FitConfig;
    use crate::session::testing::Recorder;

    fn file(path: &str, bytes: impl Into<Vec<u8>>) -> FolderFile {
        FolderFile {
            path: path.into(),
            bytes: bytes.into(),
        }
    }

    fn table(label: Option<&str>) -> LoadRequest {
        LoadRequest::Table {
            label: label.map(str::to_string),
            has_header: true,
            image: None,
        }
    }

    /// Two well-separated blobs: `x` near -2 is `neg`, near 2 is `pos`; `noise` is unrelated.
    fn blobs(n: usize, flip: bool) -> String {
        let mut text = String::from("x,noise,kind\n");
        for i in 0..n {
            let (x, class) = if (i % 2 == 0) != flip {
                (-2.0 - (i % 5) as f32 * 0.1, "neg")
            } else {
                (2.0 + (i % 7) as f32 * 0.1, "pos")
            };
            text += &format!("{x},{},{class}\n", (i % 3) as f32);
        }
        text
    }

    fn quick(epochs: usize) -> Recipe {
        Recipe {
            fit: FitConfig {
                epochs,
                patience: None,
                ..FitConfig::default()
            },
            ..Recipe::default()
        }
    }

    #[test]
    fn a_table_previews_and_its_label_can_change() {
        let mut ws = Workspace::new();
        let p = ws
            .load(
                Role::Train,
                &table(None),
                &[file("b.csv", blobs(40, false))],
            )
            .expect("load");
        assert_eq!((p.rows, p.features), (40, 2));
        assert_eq!(p.label.as_deref(), Some("kind"));
        assert_eq!(p.classes, ["neg", "pos"]);
        assert_eq!(p.counts, [20, 20]);
        assert_eq!(p.columns, ["x", "noise", "kind"]);
        assert_eq!(p.feature_names, ["x", "noise"]);
        assert_eq!(p.samples.len(), 5);
        assert_eq!(p.samples[0].label, "neg");
        assert_eq!(p.samples[0].values, [-2.0, 0.0]);
        let err = ws.set_label("x").expect_err("text features").to_string();
        assert!(
            err.contains("b.csv") && err.contains("`neg` is not a number"),
            "{err}"
        );
        let err = ws.set_label("noise").expect_err("kind is text").to_string();
        assert!(err.contains("column `kind`"), "{err}");
        let p = ws
            .load(
                Role::Train,
                &table(None),
                &[file("mid.csv", "name,a,b\nx,1,2\ny,3,4\n")],
            )
            .expect("the text column is the default label");
        assert_eq!(p.label.as_deref(), Some("name"));
        let mut numeric = Workspace::new();
        numeric
            .load(
                Role::Train,
                &table(None),
                &[file("n.csv", "a,b,c\n1,2,0\n3,4,1\n5,6,1\n")],
            )
            .expect("load");
        let p = numeric.set_label("a").expect("numeric label");
        assert_eq!(p[0].classes, ["1", "3", "5"]);
        assert_eq!(p[0].feature_names, ["b", "c"]);
        assert_eq!(p[0].label.as_deref(), Some("a"));
    }

    #[test]
    fn split_files_must_follow_the_training_data() {
        let mut ws = Workspace::new();
        let err = ws
            .load(
                Role::Validation,
                &table(None),
                &[file("v.csv", blobs(4, false))],
            )
            .expect_err("no training data yet")
            .to_string();
        assert!(
            err.contains("v.csv") && err.contains("training data"),
            "{err}"
        );
        ws.load(
            Role::Train,
            &table(None),
            &[file("b.csv", blobs(40, false))],
        )
        .expect("load");
        let err = ws
            .load(
                Role::Test,
                &table(Some("kind")),
                &[file("t.csv", "x,kind\n1,pos\n")],
            )
            .expect_err("one feature")
            .to_string();
        assert!(err.contains("t.csv") && err.contains("1 features"), "{err}");
        let err = ws
            .load(
                Role::Test,
                &table(None),
                &[file("t.csv", "x,noise,kind\n1,2,cat\n")],
            )
            .expect_err("unknown class")
            .to_string();
        assert!(err.contains("line 2") && err.contains("`cat`"), "{err}");
        let p = ws
            .load(Role::Test, &table(None), &[file("t.csv", blobs(10, true))])
            .expect("test file");
        assert_eq!(p.role, Role::Test);
        let job = ws.plan(&quick(1), false, &Device::flex()).expect("plan");
        let [train, validation, test] = job.split_sizes();
        assert_eq!(test, 10, "the test file replaces the test share");
        assert_eq!(train + validation, 40);
        assert_eq!(validation, 4);
    }

    #[test]
    fn images_and_idx_pairs_load() {
        let png = |v: u8| {
            let img = image::GrayImage::from_pixel(6, 6, image::Luma([v]));
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png)
                .expect("png");
            out.into_inner()
        };
        let mut files = vec![file("shapes/readme.txt", "hi")];
        for i in 0..3 {
            files.push(file(&format!("shapes/dark/{i}.png"), png(10)));
            files.push(file(&format!("shapes/light/{i}.png"), png(250)));
        }
        let mut ws = Workspace::new();
        let p = ws
            .load(
                Role::Train,
                &LoadRequest::Images {
                    config: ImageFolderConfig {
                        size: [4, 4],
                        grayscale: true,
                    },
                },
                &files,
            )
            .expect("folder");
        assert_eq!(p.source, "shapes");
        assert_eq!(p.image_shape, Some([1, 4, 4]));
        assert_eq!(p.classes, ["dark", "light"]);
        assert_eq!(p.samples.len(), 4, "two per class");
        assert_eq!(p.skipped, ["shapes/readme.txt"]);
        assert_eq!(
            ws.plan(&quick(1), false, &Device::flex())
                .expect("plan")
                .plan
                .shape
                .n_classes(),
            2
        );
        let job = ws.plan(&quick(1), false, &Device::flex()).expect("plan");
        assert!(
            matches!(job.plan.shape, ModelConfig::Cnn(_)),
            "auto picks a CNN for images"
        );

        let images = idx_u8(&[4, 2, 2], &[0; 16]);
        let labels = idx_u8(&[4], &[0, 1, 0, 1]);
        for files in [
            [
                file("imgs.idx", images.clone()),
                file("lbls.idx", labels.clone()),
            ],
            [
                file("lbls.idx", labels.clone()),
                file("imgs.idx", images.clone()),
            ],
        ] {
            let p = ws
                .load(Role::Train, &LoadRequest::Idx, &files)
                .expect("idx");
            assert_eq!((p.source.as_str(), p.rows, p.features), ("imgs.idx", 4, 4));
        }
        let err = ws
            .load(Role::Train, &LoadRequest::Idx, &[file("imgs.idx", images)])
            .expect_err("one file")
            .to_string();
        assert!(err.contains("expected two IDX files"), "{err}");
    }

    #[test]
    fn train_export_import_predict_and_continue() {
        let device = Device::flex();
        let mut ws = Workspace::new();
        ws.load(
            Role::Train,
            &table(None),
            &[file("b.csv", blobs(60, false))],
        )
        .expect("load");
        let host = Recorder::default();
        let job = ws.plan(&quick(3), false, &device).expect("plan");
        let (export, report) =
            pollster::block_on(job.run(&device, &Control::default(), &host)).expect("train");
        assert_eq!(report.epochs_run, 3);
        assert_eq!(report.split, "test");
        assert!(report.report.accuracy > 0.99, "{}", report.text);
        assert!(
            host.0
                .borrow()
                .iter()
                .any(|e| matches!(e, Event::Report { .. })),
            "a report event"
        );
        let info = ws.set_model(export, "trained");
        assert_eq!(info.feature_names, ["x", "noise"]);
        assert_eq!(info.classes, ["neg", "pos"]);
        let row = ws.input(Some(vec![2.3, 1.0]), None).expect("row");
        let before = pollster::block_on(predict(ws.model().expect("model"), row.clone(), &device))
            .expect("predict");
        assert_eq!(before.classes[before.best], "pos");
        assert!((before.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);

        let bytes = ws.export().expect("export");
        let mut other = Workspace::new();
        let info = other.import("m.safetensors", &bytes).expect("import");
        assert_eq!(info.origin, "imported");
        assert_eq!(
            info.feature_names,
            ["x", "noise"],
            "column names travel in the export"
        );
        let after = pollster::block_on(predict(other.model().expect("model"), row, &device))
            .expect("predict");
        assert_eq!(before, after, "an import predicts exactly as the original");

        let err = other
            .input(Some(vec![1.0]), None)
            .expect_err("short row")
            .to_string();
        assert!(err.contains("expected 2 values, found 1"), "{err}");
        let err = other
            .input(None, Some(&file("d.png", vec![1, 2])))
            .expect_err("table model")
            .to_string();
        assert!(err.contains("d.png") && err.contains("table rows"), "{err}");

        // Continue on new data whose classes are in the other order in the file.
        let flipped = format!("x,noise,kind\n{}", "2.2,0,pos\n-2.1,1,neg\n".repeat(20));
        other
            .load(Role::Train, &table(None), &[file("new.csv", flipped)])
            .expect("new data");
        let job = other.plan(&quick(1), true, &device).expect("continue");
        assert!(job.plan.start.is_some());
        let (export, report) =
            pollster::block_on(job.run(&device, &Control::default(), &Recorder::default()))
                .expect("continue");
        assert_eq!(export.classes, ["neg", "pos"]);
        assert!(report.report.accuracy > 0.99, "{}", report.text);
        let err = Workspace::new()
            .plan(&quick(1), true, &device)
            .expect_err("nothing loaded")
            .to_string();
        assert!(err.contains("load a training file"), "{err}");
    }

    #[test]
    fn the_current_model_evaluates_on_the_loaded_test_file() {
        let device = Device::flex();
        let mut ws = Workspace::new();
        assert!(ws.evaluation().is_err(), "no model");
        ws.load(
            Role::Train,
            &table(None),
            &[file("b.csv", blobs(60, false))],
        )
        .expect("load");
        let job = ws.plan(&quick(3), false, &device).expect("plan");
        let (model, _) =
            pollster::block_on(job.run(&device, &Control::default(), &Recorder::default()))
                .expect("run");
        ws.set_model(model, "trained");
        ws.load(Role::Test, &table(None), &[file("t.csv", blobs(20, true))])
            .expect("test file");
        let (model, data, split) = ws.evaluation().expect("evaluation");
        assert_eq!((split.as_str(), data.len()), ("test", 20));
        let report =
            pollster::block_on(evaluate_model(&model, &data, &split, &device)).expect("report");
        assert_eq!(report.report.total, 20);
        assert!(report.report.accuracy > 0.9, "{}", report.text);
    }

    #[test]
    fn runs_that_exceed_the_adapters_buffers_are_refused_with_what_to_lower() {
        let mut ws = Workspace::new();
        // 64x64 RGB images as table rows: 12,288 features.
        let mut text = (0..12_288).map(|i| format!("p{i},")).collect::<String>() + "kind\n";
        for r in 0..6 {
            text += &"1,".repeat(12_288);
            text += if r % 2 == 0 { "a\n" } else { "b\n" };
        }
        ws.load(
            Role::Train,
            &LoadRequest::Table {
                label: None,
                has_header: true,
                image: Some(TableImage {
                    shape: [3, 64, 64],
                    max_value: 1.0,
                }),
            },
            &[file("big.csv", text)],
        )
        .expect("load");
        let mut recipe = quick(1);
        recipe.train.batch_size = 512;
        let job = ws.plan(&recipe, false, &Device::flex()).expect("plan");
        // The second block unfolds 16 x 9 x 32 x 32 = 147,456 floats per row: 288 MiB for 512.
        let err = job
            .check_limits(&DeviceLimits::default())
            .expect_err("too big")
            .to_string();
        assert!(
            err.contains("train.batch_size")
                && err.contains("288 MiB")
                && err.contains("at most 227")
                && err.contains("smaller images"),
            "{err}"
        );
        recipe.train.batch_size = 200;
        let job = ws.plan(&recipe, false, &Device::flex()).expect("plan");
        job.check_limits(&DeviceLimits::default()).expect("fits");
        recipe.model.kind = ModelKind::Mlp;
        recipe.model.hidden = vec![4096];
        let job = ws.plan(&recipe, false, &Device::flex()).expect("plan");
        let err = job
            .check_limits(&DeviceLimits::default())
            .expect_err("a 192 MiB matrix")
            .to_string();
        assert!(
            err.contains("model.hidden") && err.contains("192 MiB"),
            "{err}"
        );
    }

    #[test]
    fn table_rows_can_be_images() {
        let mut text = String::new();
        for i in 0..8u8 {
            let v = if i % 2 == 0 { 0 } else { 16 };
            text += &format!("{v},{v},{v},{v},{}\n", i % 2);
        }
        let mut ws = Workspace::new();
        let request = LoadRequest::Table {
            label: None,
            has_header: false,
            image: Some(TableImage {
                shape: [1, 2, 2],
                max_value: 16.0,
            }),
        };
        let p = ws
            .load(Role::Train, &request, &[file("tiny.csv", text.clone())])
            .expect("load");
        assert_eq!(p.image_shape, Some([1, 2, 2]));
        assert_eq!(p.samples[2].values, [1.0; 4], "scaled to [0, 1]");
        let bad = LoadRequest::Table {
            label: None,
            has_header: false,
            image: Some(TableImage {
                shape: [1, 3, 3],
                max_value: 16.0,
            }),
        };
        let err = ws
            .load(Role::Train, &bad, &[file("tiny.csv", text)])
            .expect_err("shape")
            .to_string();
        assert!(
            err.contains("tiny.csv") && err.contains("[1, 3, 3]"),
            "{err}"
        );
    }
}
