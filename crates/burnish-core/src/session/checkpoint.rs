//! Autosaves of classifier runs: everything needed to continue a run exactly where it stopped
//! (weights, optimizer moments, step and so the schedule's position, every random stream, the
//! epoch and early-stopping state with the best epoch's weights, the recipe) and a fingerprint
//! of the data it trains on, in one safetensors file.
//!
//! Layout: the classifier's tensors as in an export under `model.`, the best epoch's under
//! `best.`, each parameter's optimizer state as `optim.{i}.first` / `optim.{i}.second` (`[n]`, in
//! the module's visit order); metadata `format` = `burnish.checkpoint.v1`, the export's entries
//! (`model`, `classes`, `normalizer`, `image_shape`, `features`) and `state` (JSON: recipe,
//! fingerprint, positions). The page keeps these in IndexedDB; the CLI writes them to a file.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::recipe::Recipe;
use crate::data::ClassificationDataset;
use crate::data::split::Splits;
use crate::export::{ExportedClassifier, classifier_metadata, read_layout, write_safetensors};
use crate::train::optim::SavedMoments;
use crate::train::{BatchPosition, TrainerState};
use crate::{Error, Result};

/// The `format` metadata value of an autosave.
pub const FORMAT: &str = "burnish.checkpoint.v1";

/// Where the epoch loop stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitPosition {
    /// The epoch in progress (1-based).
    pub epoch: usize,
    /// Steps of it already taken.
    pub step_in_epoch: usize,
    /// Sum of those steps' losses (for the epoch's mean training loss).
    pub loss_sum: f64,
    /// Epochs finished.
    pub epochs_run: usize,
    /// Epochs since the best one.
    pub since_best: usize,
    /// The best validation metric so far and its epoch.
    pub best: Option<(f64, usize)>,
}

/// A short description of an autosave, for the page's list of stored runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// Steps done when it was taken.
    pub step: usize,
    /// Steps of the whole run.
    pub steps: usize,
    /// The epoch in progress.
    pub epoch: usize,
    /// Epochs planned.
    pub epochs: usize,
    /// The training data's name.
    pub source: String,
    /// The data's fingerprint.
    pub fingerprint: String,
    /// Why it was taken: `autosave` (every N steps) or `pause`.
    pub reason: String,
}

/// A run's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The run's recipe.
    pub recipe: Recipe,
    /// [`fingerprint`] of the run's splits.
    pub fingerprint: String,
    /// The training data's name (for messages).
    pub source: String,
    /// Steps of the whole run.
    pub steps: usize,
    /// The model as it is (its weights are the trainer's) with what is needed to use it.
    pub model: ExportedClassifier,
    /// The trainer's state (its `weights` are `model.tensors`).
    pub trainer: TrainerState,
    /// The epoch loop's state.
    pub fit: FitPosition,
    /// The best epoch's weights, when there is one.
    pub best: Option<Vec<Vec<f32>>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    recipe: Recipe,
    fingerprint: String,
    source: String,
    steps: usize,
    step: usize,
    fit: FitPosition,
    /// Per parameter: `None`, or its step count and whether it has a second moment.
    optimizer: Vec<Option<(usize, bool)>>,
    batches: BatchPosition,
    augment_rng: Option<u64>,
    dropout_rng: u64,
}

impl Checkpoint {
    /// The description of this autosave.
    pub fn info(&self, reason: &str) -> CheckpointInfo {
        CheckpointInfo {
            step: self.trainer.step,
            steps: self.steps,
            epoch: self.fit.epoch,
            epochs: self.recipe.fit.epochs,
            source: self.source.clone(),
            fingerprint: self.fingerprint.clone(),
            reason: reason.into(),
        }
    }

    /// Serialise to safetensors bytes.
    ///
    /// # Errors
    /// [`Error::Config`] when the weights do not match the model's layout.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layout = self.model.config.tensor_layout();
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut tensors = Vec::new();
        for (prefix, weights) in [
            ("model.", Some(&self.trainer.weights)),
            ("best.", self.best.as_ref()),
        ] {
            let Some(weights) = weights else { continue };
            if weights.len() != layout.len() {
                return Err(Error::config(
                    "checkpoint",
                    format!("{} tensors for a model of {}", weights.len(), layout.len()),
                ));
            }
            for ((name, shape), values) in layout.iter().zip(weights) {
                tensors.push((format!("{prefix}{name}"), f32s(values), shape.clone()));
            }
        }
        for (i, state) in self.trainer.optimizer.iter().enumerate() {
            if let Some(m) = state {
                tensors.push((
                    format!("optim.{i}.first"),
                    f32s(&m.first),
                    vec![m.first.len()],
                ));
                if let Some(v) = &m.second {
                    tensors.push((format!("optim.{i}.second"), f32s(v), vec![v.len()]));
                }
            }
        }
        let state = State {
            recipe: self.recipe.clone(),
            fingerprint: self.fingerprint.clone(),
            source: self.source.clone(),
            steps: self.steps,
            step: self.trainer.step,
            fit: self.fit.clone(),
            optimizer: self
                .trainer
                .optimizer
                .iter()
                .map(|m| m.as_ref().map(|m| (m.time, m.second.is_some())))
                .collect(),
            batches: self.trainer.batches.clone(),
            augment_rng: self.trainer.augment_rng,
            dropout_rng: self.trainer.dropout_rng,
        };
        let mut metadata: BTreeMap<&str, String> = BTreeMap::from([
            ("format", FORMAT.to_string()),
            (
                "state",
                serde_json::to_string(&state)
                    .map_err(|e| Error::config("checkpoint", e.to_string()))?,
            ),
        ]);
        metadata.extend(classifier_metadata(&self.model));
        Ok(write_safetensors(&tensors, &metadata))
    }

    /// Parse an autosave written by [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` and what is wrong: not safetensors, another format, bad
    /// state JSON, a missing or misshapen tensor.
    pub fn from_bytes(source: &str, bytes: &[u8]) -> Result<Self> {
        let fail = |reason: String| Error::data(source, reason);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let mut meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(fail(format!(
                    "metadata `format` is `{other}`, expected `{FORMAT}` (a burnish autosave)"
                )));
            }
            None => {
                return Err(fail(
                    "metadata has no `format` entry; this is not a burnish autosave".into(),
                ));
            }
        }
        let state: State = serde_json::from_str(
            meta.get("state")
                .ok_or_else(|| fail("metadata has no `state` entry".into()))?,
        )
        .map_err(|e| fail(format!("metadata `state`: {e}")))?;
        meta.insert("format".into(), crate::export::FORMAT.into());
        let only_model: HashMap<String, String> = meta;
        let model = ExportedClassifier::from_parts(source, &only_model, &tensors, "model.")?;
        let layout = model.config.tensor_layout();
        let has_best = tensors.names().iter().any(|n| n.starts_with("best."));
        let best = has_best
            .then(|| read_layout(source, &tensors, &layout, "best."))
            .transpose()?;
        if best.is_some() != state.fit.best.is_some() {
            return Err(fail(
                "the best epoch's weights and the recorded best epoch disagree".into(),
            ));
        }
        let mut optimizer = Vec::with_capacity(state.optimizer.len());
        for (i, entry) in state.optimizer.iter().enumerate() {
            optimizer.push(match entry {
                None => None,
                Some((time, second)) => {
                    let read = |leaf: &str| -> Result<Vec<f32>> {
                        let name = format!("optim.{i}.{leaf}");
                        let view = tensors
                            .tensor(&name)
                            .map_err(|_| fail(format!("tensor `{name}` is missing")))?;
                        if view.dtype() != safetensors::tensor::Dtype::F32
                            || view.shape().len() != 1
                        {
                            return Err(fail(format!(
                                "tensor `{name}` is {:?} {:?}, expected F32 [n]",
                                view.dtype(),
                                view.shape()
                            )));
                        }
                        crate::export::decode_f32(source, &name, view.data())
                    };
                    Some(SavedMoments {
                        time: *time,
                        first: read("first")?,
                        second: second.then(|| read("second")).transpose()?,
                    })
                }
            });
        }
        if state.fit.epoch == 0 || state.fit.epoch > state.recipe.fit.epochs.max(1) {
            return Err(fail(format!(
                "epoch {} is outside the run's {} epochs",
                state.fit.epoch, state.recipe.fit.epochs
            )));
        }
        Ok(Self {
            recipe: state.recipe,
            fingerprint: state.fingerprint,
            source: state.source,
            steps: state.steps,
            trainer: TrainerState {
                step: state.step,
                weights: model.tensors.clone(),
                optimizer,
                batches: state.batches,
                augment_rng: state.augment_rng,
                dropout_rng: state.dropout_rng,
            },
            model,
            fit: state.fit,
            best,
        })
    }
}

/// A fingerprint of a run's data (FNV-1a over every split's features, labels and class names),
/// so a resumed run can check it trains on what the saved one did.
pub fn fingerprint(splits: &Splits) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut part = |d: &ClassificationDataset| {
        feed(&(d.len() as u64).to_le_bytes());
        for v in &d.features {
            feed(&v.to_bits().to_le_bytes());
        }
        for l in &d.labels {
            feed(&l.to_le_bytes());
        }
        for c in &d.class_names {
            feed(c.as_bytes());
            feed(&[0]);
        }
    };
    part(&splits.train);
    part(&splits.validation);
    part(&splits.test);
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use burn::prelude::Device;

    use super::*;
    use crate::data::augment::AugmentConfig;
    use crate::data::images::FolderFile;
    use crate::session::fit::FitConfig;
    use crate::session::runner::Control;
    use crate::session::workspace::{LoadRequest, Role, TableImage, Workspace};
    use crate::session::{Event, Host};
    use crate::train::TrainConfig;

    /// A host that keeps every autosave and every event, and can pause the run at a step.
    #[derive(Default)]
    struct Keeper {
        events: RefCell<Vec<Event>>,
        saves: RefCell<Vec<(CheckpointInfo, Vec<u8>)>>,
        pause_at: Option<(usize, Control)>,
    }

    impl Host for Keeper {
        fn now_ms(&self) -> f64 {
            0.0
        }
        fn post(&self, event: Event) {
            if let (Event::Progress { step, .. }, Some((at, control))) = (&event, &self.pause_at)
                && step == at
            {
                control.pause();
            }
            if let Event::Paused { .. } = event
                && let Some((_, control)) = &self.pause_at
            {
                control.cancel();
            }
            self.events.borrow_mut().push(event);
        }
        async fn sleep(&self, _ms: u32) {}
        fn autosaves(&self) -> bool {
            true
        }
        fn autosave(&self, info: CheckpointInfo, bytes: Vec<u8>) {
            self.saves.borrow_mut().push((info, bytes));
        }
    }

    impl Keeper {
        fn losses(&self) -> Vec<(usize, f32)> {
            self.events
                .borrow()
                .iter()
                .filter_map(|e| match e {
                    Event::Progress { step, loss, .. } => Some((*step, *loss)),
                    _ => None,
                })
                .collect()
        }
        fn epochs(&self) -> Vec<(usize, f64, bool)> {
            self.events
                .borrow()
                .iter()
                .filter_map(|e| match e {
                    Event::Epoch {
                        epoch,
                        validation_loss,
                        improved,
                        ..
                    } => Some((*epoch, *validation_loss, *improved)),
                    _ => None,
                })
                .collect()
        }
    }

    /// 4x4 one-channel images of two noisy classes (a bright left or right half), as a table.
    fn images() -> String {
        let mut rng = crate::rng::Rng::new(7);
        let mut text = (0..16).map(|i| format!("p{i},")).collect::<String>() + "label\n";
        for i in 0..90 {
            let class = i % 2;
            for p in 0..16 {
                let bright = (p % 4 < 2) == (class == 0);
                let v = if bright { 12.0 } else { 3.0 } + rng.uniform(-3.0, 3.0);
                text += &format!("{v:.2},");
            }
            text += if class == 0 { "left\n" } else { "right\n" };
        }
        text
    }

    fn workspace() -> Workspace {
        let mut ws = Workspace::new();
        ws.load(
            Role::Train,
            &LoadRequest::Table {
                label: None,
                has_header: true,
                image: Some(TableImage {
                    shape: [1, 4, 4],
                    max_value: 16.0,
                }),
            },
            &[FolderFile {
                path: "halves.csv".into(),
                bytes: images().into_bytes(),
            }],
        )
        .expect("load");
        ws
    }

    /// Dropout, augmentation, AdamW with warm-up and cosine decay, clipping, early stopping:
    /// every piece of state an autosave must carry.
    fn recipe() -> Recipe {
        let mut recipe = Recipe {
            train: TrainConfig {
                batch_size: 16,
                learning_rate: 0.01,
                schedule: crate::train::schedule::ScheduleConfig {
                    decay: crate::train::schedule::Decay::Cosine,
                    warmup_fraction: 0.1,
                },
                clip_grad_norm: Some(1.0),
                weight_decay: 0.01,
                ..TrainConfig::default()
            },
            fit: FitConfig {
                epochs: 4,
                patience: Some(3),
                autosave_steps: 7,
                ..FitConfig::default()
            },
            augment: AugmentConfig {
                enabled: true,
                pad: 1,
                horizontal_flip: false,
            },
            ..Recipe::default()
        };
        recipe.model.filters = vec![4];
        recipe.model.hidden = vec![8];
        recipe.model.dropout = 0.2;
        recipe
    }

    /// A run resumed from an autosave (taken mid-epoch, after a validation) continues the same
    /// loss curve as the run that was never interrupted, bit for bit on one backend, and ends
    /// with the same model and report.
    #[test]
    fn a_resumed_run_continues_the_uninterrupted_loss_curve_exactly() {
        let device = Device::flex();
        let ws = workspace();
        let whole = Keeper::default();
        let job = ws.plan(&recipe(), false, &device).expect("plan");
        let steps = job.plan_steps_for_tests();
        let (model, report) =
            pollster::block_on(job.run(&device, &Control::default(), &whole)).expect("run");
        let saves = whole.saves.borrow();
        let steps_saved: Vec<usize> = saves.iter().map(|(i, _)| i.step).collect();
        assert_eq!(
            steps_saved,
            (1..steps).filter(|s| s % 7 == 0).collect::<Vec<_>>(),
            "every 7 steps"
        );
        // Resume from one taken in the second epoch (after a validation).
        let (info, bytes) = saves
            .iter()
            .find(|(i, _)| i.epoch == 2 && i.step % 9 != 0)
            .expect("a mid-epoch autosave");
        assert!(
            bytes.len() > 4 * model.parameters(),
            "{} bytes",
            bytes.len()
        );
        let resumed = Keeper::default();
        let job = ws
            .plan_resume("autosave", bytes, &device)
            .expect("resume plan");
        let (model2, report2) =
            pollster::block_on(job.run(&device, &Control::default(), &resumed)).expect("resumed");
        let tail: Vec<(usize, f32)> = whole
            .losses()
            .into_iter()
            .filter(|(s, _)| *s > info.step)
            .collect();
        assert_eq!(
            resumed.losses(),
            tail,
            "the same curve after step {}",
            info.step
        );
        assert!(
            resumed
                .events
                .borrow()
                .iter()
                .any(|e| matches!(e, Event::Restored { step, epoch: 2 } if *step == info.step))
        );
        let later_epochs: Vec<_> = whole.epochs().into_iter().filter(|e| e.0 >= 2).collect();
        assert_eq!(resumed.epochs(), later_epochs);
        assert_eq!(model2, model, "the same final weights");
        assert_eq!(report2.report, report.report);
        assert_eq!(report2.best_epoch, report.best_epoch);
    }

    /// Pausing saves at once; a checkpoint refuses other data, and damaged bytes are named
    /// errors.
    #[test]
    fn pause_saves_and_other_data_or_damage_is_refused() {
        let device = Device::flex();
        let ws = workspace();
        let control = Control::default();
        let host = Keeper {
            pause_at: Some((5, control.clone())),
            ..Keeper::default()
        };
        let mut recipe = recipe();
        recipe.fit.autosave_steps = 0;
        let job = ws.plan(&recipe, false, &device).expect("plan");
        let (_, report) = pollster::block_on(job.run(&device, &control, &host)).expect("run");
        assert!(report.cancelled);
        let saves = host.saves.borrow();
        assert_eq!(saves.len(), 1, "saved once, on pause");
        assert_eq!((saves[0].0.step, saves[0].0.reason.as_str()), (5, "pause"));
        let bytes = &saves[0].1;
        // Other data: the same file with one value changed.
        let mut other = Workspace::new();
        let mut lines: Vec<String> = images().lines().map(str::to_string).collect();
        let rest = lines[1].split_once(',').expect("cells").1.to_string();
        lines[1] = format!("15.00,{rest}");
        let text = lines.join("\n") + "\n";
        other
            .load(
                Role::Train,
                &LoadRequest::Table {
                    label: None,
                    has_header: true,
                    image: Some(TableImage {
                        shape: [1, 4, 4],
                        max_value: 16.0,
                    }),
                },
                &[FolderFile {
                    path: "other.csv".into(),
                    bytes: text.into_bytes(),
                }],
            )
            .expect("load");
        let err = other
            .plan_resume("run-1", bytes, &device)
            .expect_err("other data")
            .to_string();
        assert!(
            err.contains("run-1") && err.contains("other data") && err.contains("halves.csv"),
            "{err}"
        );
        for (damaged, expect) in [
            (bytes[..bytes.len() / 2].to_vec(), "not a valid safetensors"),
            (b"{}".to_vec(), "not a valid safetensors"),
        ] {
            let err = ws
                .plan_resume("run-1", &damaged, &device)
                .expect_err("damaged")
                .to_string();
            assert!(err.contains("run-1") && err.contains(expect), "{err}");
        }
        let model = ExportedClassifier::from_bytes("m", &{
            let c = Checkpoint::from_bytes("c", bytes).expect("parse");
            c.model.to_bytes().expect("bytes")
        })
        .expect("an export");
        let err = Checkpoint::from_bytes("model.safetensors", &model.to_bytes().expect("bytes"))
            .expect_err("an export is not an autosave")
            .to_string();
        assert!(err.contains("burnish autosave"), "{err}");
    }
}
