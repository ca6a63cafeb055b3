//! Fitting a classifier the way users expect: epochs over the training split, validation after
//! each, early stopping on a chosen metric with patience, the best checkpoint restored at the
//! end, and a final report on the test split.

use burn::prelude::Tensor;
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, FitPosition};
use super::protocol::Event;
use super::recipe::Recipe;
use super::runner::{Control, Host, RunState};
use crate::data::augment::AugmentConfig;
use crate::data::split::Splits;
use crate::export::ExportedClassifier;
use crate::model::{Classifier, ModelConfig};
use crate::train::TrainerState;
use crate::train::{Evaluation, TrainConfig, Trainer, evaluate};
use crate::{Error, Result};

/// The validation metric that picks the best epoch and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction correct (higher is better).
    #[default]
    Accuracy,
    /// Unweighted mean F1 over classes (higher is better).
    MacroF1,
    /// Mean cross-entropy (lower is better).
    Loss,
    /// Entity-level micro F1 for token tasks (macro F1 for others; higher is better).
    EntityF1,
}

impl Metric {
    pub(crate) fn value(self, e: &Evaluation) -> f64 {
        match self {
            Self::Accuracy => e.report.accuracy,
            Self::MacroF1 => e.report.macro_avg[2],
            Self::Loss => e.loss,
            Self::EntityF1 => e
                .entities
                .as_ref()
                .map_or(e.report.macro_avg[2], |r| r.micro.f1),
        }
    }

    pub(crate) fn improves(self, new: f64, best: f64, min_delta: f64) -> bool {
        match self {
            Self::Loss => new < best - min_delta,
            _ => new > best + min_delta,
        }
    }
}

/// Epochs and early stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// Passes over the training split (default 20).
    pub epochs: usize,
    /// The validation metric that picks the best epoch (default accuracy).
    pub metric: Metric,
    /// Stop after this many epochs without improvement; `null` never stops early (default 5).
    pub patience: Option<usize>,
    /// Smallest change that counts as an improvement (default 0).
    pub min_delta: f64,
    /// Put back the weights of the best validation epoch at the end (default true).
    pub restore_best: bool,
    /// Autosave the run every this many steps, and when it is paused, where the host keeps
    /// autosaves (the page: IndexedDB; the CLI: `--autosave FILE`); 0 saves only on pause
    /// (default 50). Classifier runs (tables, images) only.
    pub autosave_steps: usize,
    /// Read training losses back about this often, in milliseconds (default 100): fast steps
    /// are queued on the device, up to 32 at a time, and their losses read together in one
    /// read-back, so the host does not wait for the device after every step. 0 reads after
    /// every step. Progress events still come one per step, in order.
    pub loss_read_ms: f64,
}

/// Most steps queued before their losses are read.
const MAX_QUEUED_STEPS: usize = 32;

/// Check a `loss_read_ms` (`field` names it in the error).
///
/// # Errors
/// [`Error::Config`] unless it is a number >= 0.
pub(crate) fn check_loss_read_ms(field: &'static str, ms: f64) -> Result<()> {
    if ms.is_finite() && ms >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("expected milliseconds >= 0 (0: read after every step), found {ms}"),
        ))
    }
}

impl FitConfig {
    /// Check the fields a run needs.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", "expected at least 1, found 0"));
        }
        check_loss_read_ms("loss_read_ms", self.loss_read_ms)
    }
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            metric: Metric::Accuracy,
            patience: Some(5),
            min_delta: 0.0,
            restore_best: true,
            autosave_steps: 50,
            loss_read_ms: 100.0,
        }
    }
}

/// What a fit produced.
#[derive(Debug)]
pub struct FitOutcome {
    /// The final model (the best epoch's when `restore_best`).
    pub model: Classifier,
    /// 1-based epoch whose weights the model holds.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the user cancelled it.
    pub cancelled: bool,
    /// The report on the test split (or on validation when the test split is empty).
    pub test: Evaluation,
}

/// Mean time of a training step for the progress events: the first step (shader compilation)
/// is left out once there are others; evaluation time is never counted.
#[derive(Debug, Default)]
pub(crate) struct StepTimer {
    first_ms: f64,
    rest_ms: f64,
    rest: usize,
}

impl StepTimer {
    /// Record step `step` (1-based) that took `ms`; returns the mean to report.
    pub(crate) fn record(&mut self, step: usize, ms: f64) -> f64 {
        if step == 1 {
            self.first_ms = ms;
        } else {
            self.rest_ms += ms;
            self.rest += 1;
        }
        self.mean()
    }

    /// The mean so far.
    pub(crate) fn mean(&self) -> f64 {
        if self.rest > 0 {
            self.rest_ms / self.rest as f64
        } else {
            self.first_ms
        }
    }

    /// Steps timed in the mean, and their total milliseconds.
    pub(crate) fn timed(&self) -> (usize, f64) {
        if self.rest > 0 {
            (self.rest, self.rest_ms)
        } else {
            (usize::from(self.first_ms > 0.0), self.first_ms)
        }
    }
}

/// Early stopping on the validation metric, keeping the best epoch's model: shared by every fit.
#[derive(Debug)]
pub(crate) struct EarlyStopping<'a, M> {
    fit: &'a FitConfig,
    best: Option<(f64, usize, M)>,
    since_best: usize,
    epochs_run: usize,
}

impl<'a, M: Clone> EarlyStopping<'a, M> {
    pub(crate) fn new(fit: &'a FitConfig) -> Self {
        Self {
            fit,
            best: None,
            since_best: 0,
            epochs_run: 0,
        }
    }

    /// Record an epoch: post its `epoch` event, keep `model` when it is the best so far. Returns
    /// `true` when patience has run out and training must stop.
    pub(crate) fn epoch(
        &mut self,
        epoch: usize,
        train_loss: f64,
        eval: &Evaluation,
        model: &M,
        host: &impl Host,
    ) -> bool {
        self.epochs_run = epoch;
        let metric = self.fit.metric;
        let value = metric.value(eval);
        let improved = self
            .best
            .as_ref()
            .is_none_or(|(b, _, _)| metric.improves(value, *b, self.fit.min_delta));
        host.post(Event::Epoch {
            epoch,
            epochs: self.fit.epochs,
            train_loss,
            validation_loss: eval.loss,
            validation_accuracy: eval.report.accuracy,
            validation_macro_f1: eval.report.macro_avg[2],
            validation_entity_f1: eval.entities.as_ref().map(|r| r.micro.f1),
            improved,
        });
        if improved {
            self.best = Some((value, epoch, model.clone()));
            self.since_best = 0;
            false
        } else {
            self.since_best += 1;
            self.fit.patience.is_some_and(|p| self.since_best >= p)
        }
    }

    /// Continue from a saved position, with the best epoch's model.
    pub(crate) fn restore(&mut self, position: &FitPosition, best: Option<M>) {
        self.epochs_run = position.epochs_run;
        self.since_best = position.since_best;
        self.best = position
            .best
            .zip(best)
            .map(|((value, epoch), model)| (value, epoch, model));
    }

    /// The best metric and epoch so far, and the best model.
    pub(crate) fn best(&self) -> Option<(f64, usize, &M)> {
        self.best.as_ref().map(|(v, e, m)| (*v, *e, m))
    }

    /// Epochs since the best.
    pub(crate) fn since_best(&self) -> usize {
        self.since_best
    }

    /// Epochs recorded.
    pub(crate) fn epochs_run(&self) -> usize {
        self.epochs_run
    }

    /// The model to keep and its epoch: the best when `restore_best`, else `last`.
    pub(crate) fn finish(self, last: M) -> (M, usize) {
        match self.best {
            Some((_, epoch, model)) if self.fit.restore_best => (model, epoch),
            _ => (last, self.epochs_run),
        }
    }
}

/// What a run of epochs needs from a trainer; the classifier and text trainers both have it.
pub(crate) trait EpochTrainer {
    /// The model it trains.
    type Model: Clone;
    /// The data it evaluates on.
    type Data;
    /// One optimizer step without reading its loss back: the loss stays on the device with the
    /// learning rate used (the run loop reads several steps' losses at once).
    fn step_unread(&mut self) -> Result<(Tensor<1>, f64)>;
    /// Steps taken.
    fn steps_done(&self) -> usize;
    /// The model as it is now.
    fn model(&self) -> &Self::Model;
    /// Loss and report of the current model on `data`.
    async fn evaluate(&self, data: &Self::Data) -> Result<Evaluation>;
    /// The state to autosave, or `None` for a trainer that does not autosave.
    async fn save_state(&self) -> Result<Option<TrainerState>> {
        Ok(None)
    }
    /// A model's weights for an autosave (only called when [`Self::save_state`] gives one).
    async fn model_weights(_model: &Self::Model) -> Result<Vec<Vec<f32>>> {
        Ok(Vec::new())
    }
}

impl EpochTrainer for Trainer {
    type Model = Classifier;
    type Data = crate::data::ClassificationDataset;
    fn step_unread(&mut self) -> Result<(Tensor<1>, f64)> {
        Trainer::step_unread(self)
    }
    fn steps_done(&self) -> usize {
        Trainer::steps_done(self)
    }
    fn model(&self) -> &Classifier {
        Trainer::model(self)
    }
    async fn evaluate(&self, data: &Self::Data) -> Result<Evaluation> {
        Trainer::evaluate(self, data).await
    }
    async fn save_state(&self) -> Result<Option<TrainerState>> {
        Ok(Some(Trainer::save_state(self).await?))
    }
    async fn model_weights(model: &Classifier) -> Result<Vec<Vec<f32>>> {
        model.tensors().await
    }
}

/// What an autosave records besides the trainer's state.
#[derive(Debug, Clone)]
pub(crate) struct Autosave {
    /// The run's recipe.
    pub(crate) recipe: Recipe,
    /// The data's fingerprint.
    pub(crate) fingerprint: String,
    /// The training data's name.
    pub(crate) source: String,
    /// The model's config, classes, normaliser and inputs (its tensors are filled in).
    pub(crate) model: ExportedClassifier,
}

/// Where a resumed run of epochs starts.
#[derive(Debug)]
pub(crate) struct EpochStart<M> {
    pub(crate) position: FitPosition,
    pub(crate) best: Option<M>,
}

/// Save the run's state and hand it to the host.
#[allow(clippy::too_many_arguments)]
async fn autosave<T: EpochTrainer>(
    trainer: &T,
    saver: &Autosave,
    position: FitPosition,
    stopping: &EarlyStopping<'_, T::Model>,
    steps: usize,
    reason: &str,
    best_read: &mut Option<(usize, Vec<Vec<f32>>)>,
    host: &impl Host,
) -> Result<()> {
    let Some(state) = trainer.save_state().await? else {
        return Ok(());
    };
    // The best epoch's weights change only when a better epoch comes: read them once per best.
    let best = match stopping.best() {
        Some((_, epoch, model)) => {
            if best_read.as_ref().is_none_or(|(e, _)| *e != epoch) {
                *best_read = Some((epoch, T::model_weights(model).await?));
            }
            best_read.as_ref().map(|(_, w)| w.clone())
        }
        None => None,
    };
    let mut model = saver.model.clone();
    model.tensors = state.weights.clone();
    let checkpoint = Checkpoint {
        recipe: saver.recipe.clone(),
        fingerprint: saver.fingerprint.clone(),
        source: saver.source.clone(),
        steps,
        model,
        trainer: state,
        fit: position,
        best,
    };
    let bytes = checkpoint.to_bytes()?;
    host.autosave(checkpoint.info(reason), bytes);
    Ok(())
}

/// Steps taken whose losses are still on the device.
#[derive(Default)]
pub(crate) struct LossQueue {
    /// Loss, 1-based step, learning rate and host time (ms) of each queued step.
    steps: Vec<(Tensor<1>, usize, f64, f64)>,
    /// When the first queued step started (host clock, ms).
    since_ms: f64,
}

impl LossQueue {
    pub(crate) fn push(
        &mut self,
        loss: Tensor<1>,
        step: usize,
        learning_rate: f64,
        started_ms: f64,
        host_ms: f64,
    ) {
        if self.steps.is_empty() {
            self.since_ms = started_ms;
        }
        self.steps.push((loss, step, learning_rate, host_ms));
    }

    /// Steps queued.
    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether to read now: as many steps as take about `loss_read_ms` at the mean step time
    /// so far (1 until a step has been timed), at most [`MAX_QUEUED_STEPS`].
    pub(crate) fn full(&self, loss_read_ms: f64, timer: &StepTimer) -> bool {
        let mean = timer.mean();
        let batch = if loss_read_ms > 0.0 && mean > 0.0 && timer.rest > 0 {
            ((loss_read_ms / mean) as usize).clamp(1, MAX_QUEUED_STEPS)
        } else {
            1
        };
        self.steps.len() >= batch
    }

    /// Read every queued loss in one read-back, time the steps (the span split evenly) and post
    /// a `progress` event for each, in order. Returns the sum of the losses.
    ///
    /// # Errors
    /// [`Error::Readback`]; [`Error::Diverged`] naming the first step whose loss is not finite.
    pub(crate) async fn read(
        &mut self,
        timer: &mut StepTimer,
        steps: usize,
        host: &impl Host,
    ) -> Result<f64> {
        if self.steps.is_empty() {
            return Ok(0.0);
        }
        let queued = std::mem::take(&mut self.steps);
        let losses: Vec<f32> = Tensor::cat(queued.iter().map(|(l, ..)| l.clone()).collect(), 0)
            .into_data_async()
            .await
            .map_err(Error::readback("training loss"))?
            .try_to_vec()
            .map_err(|e| Error::Readback {
                what: "training loss",
                reason: format!("{e:?}"),
            })?;
        let ms = (host.now_ms() - self.since_ms) / queued.len() as f64;
        let mut sum = 0.0;
        for ((_, step, learning_rate, host_ms), loss) in queued.into_iter().zip(losses) {
            if !loss.is_finite() {
                return Err(Error::Diverged {
                    step,
                    loss,
                    half: false,
                });
            }
            let ms_per_step = timer.record(step, ms);
            sum += f64::from(loss);
            host.post(Event::Progress {
                step,
                steps,
                loss,
                learning_rate,
                ms_per_step,
                host_ms,
            });
        }
        Ok(sum)
    }
}

/// How a run of epochs ended.
#[derive(Debug)]
pub(crate) struct Epochs<M> {
    /// The best epoch's model (or the last, without `restore_best`).
    pub(crate) model: M,
    /// 1-based epoch whose weights `model` holds.
    pub(crate) best_epoch: usize,
    /// Epochs run.
    pub(crate) epochs_run: usize,
    /// Whether early stopping ended the run.
    pub(crate) stopped_early: bool,
    /// Whether the user cancelled it.
    pub(crate) cancelled: bool,
    /// Step times.
    pub(crate) timer: StepTimer,
}

/// Epochs of `steps_per_epoch` steps with a `progress` event per step, validation on
/// `validation` after each epoch, early stopping and the best model kept; pause and cancel are
/// obeyed between steps. Shared by every fit.
///
/// # Errors
/// Step and evaluation failures.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_epochs<T: EpochTrainer>(
    trainer: &mut T,
    fit: &FitConfig,
    steps_per_epoch: usize,
    validation: &T::Data,
    control: &Control,
    host: &impl Host,
    start: Option<EpochStart<T::Model>>,
    saver: Option<&Autosave>,
) -> Result<Epochs<T::Model>> {
    let steps = steps_per_epoch * fit.epochs;
    let mut timer = StepTimer::default();
    let mut stopping = EarlyStopping::new(fit);
    let (first_epoch, mut first_step, mut first_loss) = match start {
        Some(start) => {
            stopping.restore(&start.position, start.best);
            (
                start.position.epoch,
                start.position.step_in_epoch,
                start.position.loss_sum,
            )
        }
        None => (1, 0, 0.0),
    };
    let saver = saver.filter(|_| host.autosaves());
    let mut saved_at = trainer.steps_done();
    let mut best_read = None;
    let mut queue = LossQueue::default();
    let (mut stopped_early, mut cancelled) = (false, false);
    'epochs: for epoch in first_epoch..=fit.epochs {
        let mut loss_sum = std::mem::take(&mut first_loss);
        for in_epoch in std::mem::take(&mut first_step)..steps_per_epoch {
            let done = trainer.steps_done();
            let reason = if control.get() == RunState::Paused {
                Some("pause")
            } else if fit.autosave_steps > 0 && done.is_multiple_of(fit.autosave_steps) {
                Some("autosave")
            } else {
                None
            };
            if let (Some(saver), Some(reason)) = (saver, reason)
                && done != saved_at
            {
                let position = FitPosition {
                    epoch,
                    step_in_epoch: in_epoch,
                    loss_sum,
                    epochs_run: stopping.epochs_run(),
                    since_best: stopping.since_best(),
                    best: stopping.best().map(|(v, e, _)| (v, e)),
                };
                autosave(
                    trainer,
                    saver,
                    position,
                    &stopping,
                    steps,
                    reason,
                    &mut best_read,
                    host,
                )
                .await?;
                saved_at = done;
            }
            if !control.checkpoint(host, trainer.steps_done()).await {
                cancelled = true;
                break 'epochs;
            }
            let before = host.now_ms();
            let (loss, learning_rate) = trainer.step_unread()?;
            let host_ms = host.now_ms() - before;
            queue.push(loss, trainer.steps_done(), learning_rate, before, host_ms);
            let last = in_epoch + 1 == steps_per_epoch;
            let pausing = control.get() != RunState::Running;
            let upcoming = trainer.steps_done();
            let saving = fit.autosave_steps > 0 && upcoming.is_multiple_of(fit.autosave_steps);
            if last || pausing || saving || queue.full(fit.loss_read_ms, &timer) {
                loss_sum += queue.read(&mut timer, steps, host).await?;
            }
        }
        let eval = trainer.evaluate(validation).await?;
        let train_loss = loss_sum / steps_per_epoch as f64;
        if stopping.epoch(epoch, train_loss, &eval, trainer.model(), host) {
            stopped_early = true;
            break;
        }
    }
    let epochs_run = stopping.epochs_run();
    let (model, best_epoch) = stopping.finish(trainer.model().clone());
    Ok(Epochs {
        model,
        best_epoch,
        epochs_run,
        stopped_early,
        cancelled,
        timer,
    })
}

/// Everything a fit needs besides where it runs.
#[derive(Debug)]
pub struct FitPlan {
    /// The model's shape.
    pub shape: ModelConfig,
    /// A model to continue from (an import), or `None` to start from seeded weights.
    pub start: Option<Classifier>,
    /// Optimizer, schedule, batch, seed (`steps` is set from the epochs).
    pub train: TrainConfig,
    /// Epochs and early stopping.
    pub fit: FitConfig,
    /// Augmentation of training images.
    pub augment: AugmentConfig,
    /// The data, already normalised.
    pub splits: Splits,
    /// What autosaves record besides the trainer (none: no autosaves).
    pub(crate) autosave: Option<Autosave>,
    /// An autosave to continue from.
    pub(crate) resume: Option<Box<Checkpoint>>,
}

/// Train the plan's model (fresh from `shape`, or `start` to continue) on `splits.train`,
/// validating on `splits.validation` each epoch, and report on `splits.test`.
///
/// # Errors
/// Invalid configs, data that does not fit the model, read-back failures, divergence.
pub async fn fit(
    plan: FitPlan,
    device: &burn::prelude::Device,
    control: &Control,
    host: &impl Host,
) -> Result<FitOutcome> {
    let FitPlan {
        shape,
        start,
        train: mut config,
        fit,
        augment,
        splits,
        autosave: saver,
        resume,
    } = plan;
    let shape = &shape;
    fit.validate()?;
    if splits.train.is_empty() {
        return Err(Error::data(
            &splits.train.source_name,
            "the training split is empty",
        ));
    }
    let per_step = config.batch_size.max(1) * config.grad_accumulation.max(1);
    let steps_per_epoch = splits.train.len().div_ceil(per_step);
    config.steps = steps_per_epoch * fit.epochs;
    let steps = config.steps;
    let precision = config.precision_on(device, false);
    let mut trainer = match start {
        Some(model) => Trainer::from_model(model, shape, config, splits.train.clone(), device)?,
        None => Trainer::new(shape, config, splits.train.clone(), device)?,
    }
    .with_augment(&augment)?;
    let validation = if splits.validation.is_empty() {
        &splits.train
    } else {
        &splits.validation
    };
    host.post(Event::Started {
        rows: splits.train.len(),
        steps,
        epochs: fit.epochs,
        steps_per_epoch,
        parameters: burn::module::Module::num_params(trainer.model()),
        total_parameters: burn::module::Module::num_params(trainer.model()),
        device: format!("{device:?}"),
        adapter: super::adapter_name(device),
        precision,
    });
    let start = match resume {
        Some(checkpoint) => {
            let checkpoint = *checkpoint;
            let plain = device.clone().without_autodiff();
            let best = match checkpoint.best {
                Some(weights) => Some(burn::module::Module::train(
                    shape.from_tensors(weights, &plain)?,
                )),
                None => None,
            };
            let step = checkpoint.trainer.step;
            trainer.restore_state(shape, checkpoint.trainer)?;
            host.post(Event::Restored {
                step,
                epoch: checkpoint.fit.epoch,
            });
            Some(EpochStart {
                position: checkpoint.fit,
                best,
            })
        }
        None => None,
    };
    let epochs = run_epochs(
        &mut trainer,
        &fit,
        steps_per_epoch,
        validation,
        control,
        host,
        start,
        saver.as_ref(),
    )
    .await?;
    let Epochs {
        model,
        best_epoch,
        epochs_run,
        stopped_early,
        cancelled,
        ..
    } = epochs;
    let final_split = if splits.test.is_empty() {
        validation
    } else {
        &splits.test
    };
    let test = evaluate(&model, device, final_split).await?;
    Ok(FitOutcome {
        model,
        best_epoch,
        epochs_run,
        stopped_early,
        cancelled,
        test,
    })
}

#[cfg(test)]
mod tests {

    use burn::prelude::Device;

    use super::*;
    use crate::data::demo::SpiralsConfig;
    use crate::data::split::SplitConfig;
    use crate::model::MlpConfig;
    use crate::session::testing::{Recorder, Ticking};

    fn splits() -> Splits {
        SpiralsConfig::default()
            .generate()
            .expect("data")
            .split(&SplitConfig::default())
            .expect("split")
    }

    #[test]
    fn fit_learns_reports_epochs_and_restores_the_best() {
        let splits = splits();
        let shape = ModelConfig::Mlp(MlpConfig::new(2, 3).with_hidden(vec![32, 32]));
        let config = TrainConfig {
            learning_rate: 0.02,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let fit_config = FitConfig {
            epochs: 30,
            patience: None,
            ..FitConfig::default()
        };
        let host = Recorder::default();
        let outcome = pollster::block_on(fit(
            FitPlan {
                shape,
                start: None,
                train: config,
                fit: fit_config,
                augment: AugmentConfig::default(),
                splits: splits.clone(),
                autosave: None,
                resume: None,
            },
            &Device::flex(),
            &Control::default(),
            &host,
        ))
        .expect("fit");
        assert_eq!(outcome.epochs_run, 30);
        assert!(!outcome.stopped_early);
        assert!(
            outcome.test.report.accuracy > 0.8,
            "{}",
            outcome.test.report.to_text()
        );
        let epochs: Vec<(usize, f64, bool)> = host
            .0
            .borrow()
            .iter()
            .filter_map(|e| match e {
                Event::Epoch {
                    epoch,
                    validation_accuracy,
                    improved,
                    ..
                } => Some((*epoch, *validation_accuracy, *improved)),
                _ => None,
            })
            .collect();
        assert_eq!(epochs.len(), 30);
        let best = epochs.iter().map(|e| e.1).fold(0.0, f64::max);
        let best_epoch = epochs.iter().find(|e| e.1 == best).expect("best").0;
        assert_eq!(
            outcome.best_epoch, best_epoch,
            "the first epoch reaching the best accuracy"
        );
        let restored = pollster::block_on(evaluate(
            &outcome.model,
            &Device::flex(),
            &splits.validation,
        ))
        .expect("eval");
        assert_eq!(
            restored.report.accuracy, best,
            "the restored model scores the best validation accuracy"
        );
    }

    /// Losses read in batches give the same progress events, one per step and in order, as
    /// losses read after every step, with fewer waits on the device.
    #[test]
    fn losses_read_in_batches_match_losses_read_every_step() {
        let run = |loss_read_ms: f64| {
            let host = Ticking::default();
            let outcome = pollster::block_on(fit(
                FitPlan {
                    shape: ModelConfig::Mlp(MlpConfig::new(2, 3).with_hidden(vec![16])),
                    start: None,
                    train: TrainConfig {
                        batch_size: 32,
                        ..TrainConfig::default()
                    },
                    fit: FitConfig {
                        epochs: 3,
                        patience: None,
                        loss_read_ms,
                        ..FitConfig::default()
                    },
                    augment: AugmentConfig::default(),
                    splits: splits(),
                    autosave: None,
                    resume: None,
                },
                &Device::flex(),
                &Control::default(),
                &host,
            ))
            .expect("fit");
            let progress: Vec<(usize, f32)> = host
                .0
                .0
                .borrow()
                .iter()
                .filter_map(|e| match e {
                    Event::Progress {
                        step,
                        loss,
                        host_ms,
                        ..
                    } => {
                        // The clock ticks once per reading: the host time spans the step alone
                        // (not the read-back, however many steps a read covers).
                        assert_eq!(*host_ms, 1.0, "step {step}");
                        Some((*step, *loss))
                    }
                    _ => None,
                })
                .collect();
            (progress, host.1.get(), outcome.test.report.accuracy)
        };
        let (each, each_reads, each_accuracy) = run(0.0);
        let (batched, batched_reads, batched_accuracy) = run(10.0);
        assert_eq!(each.len(), 3 * splits().train.len().div_ceil(32));
        assert!(
            each.iter().enumerate().all(|(i, p)| p.0 == i + 1),
            "{each:?}"
        );
        assert_eq!(batched, each, "same steps, same losses, same order");
        assert_eq!(batched_accuracy, each_accuracy);
        // Every step reads the clock twice to time its host work; reads of the losses read it
        // too, and those are what batching saves.
        let timing = 2 * each.len() as u32;
        let (batched_reads, each_reads) = (batched_reads - timing, each_reads - timing);
        assert!(
            f64::from(batched_reads) < 0.75 * f64::from(each_reads),
            "batched reads should consult the clock less: {batched_reads} vs {each_reads}"
        );
    }

    #[test]
    fn fit_configs_out_of_range_are_named() {
        assert!(FitConfig::default().validate().is_ok());
        let e = FitConfig {
            loss_read_ms: -1.0,
            ..FitConfig::default()
        }
        .validate()
        .expect_err("negative");
        assert!(e.to_string().contains("loss_read_ms"), "{e}");
        let e = FitConfig {
            epochs: 0,
            ..FitConfig::default()
        }
        .validate()
        .expect_err("no epochs");
        assert!(e.to_string().contains("epochs"), "{e}");
    }

    #[test]
    fn early_stopping_ends_after_patience_epochs_without_improvement() {
        let splits = splits();
        let shape = ModelConfig::Mlp(MlpConfig::new(2, 3).with_hidden(vec![4]));
        // A learning rate so small that nothing improves after the first epoch.
        let config = TrainConfig {
            learning_rate: 1e-9,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let fit_config = FitConfig {
            epochs: 50,
            patience: Some(2),
            min_delta: 0.01,
            ..FitConfig::default()
        };
        let outcome = pollster::block_on(fit(
            FitPlan {
                shape,
                start: None,
                train: config,
                fit: fit_config,
                augment: AugmentConfig::default(),
                splits,
                autosave: None,
                resume: None,
            },
            &Device::flex(),
            &Control::default(),
            &Recorder::default(),
        ))
        .expect("fit");
        assert!(outcome.stopped_early);
        assert_eq!(outcome.epochs_run, 3);
        assert_eq!(outcome.best_epoch, 1);
    }

    #[test]
    fn metric_direction() {
        assert!(Metric::Loss.improves(0.5, 0.6, 0.0));
        assert!(!Metric::Loss.improves(0.7, 0.6, 0.0));
        assert!(Metric::Accuracy.improves(0.7, 0.6, 0.05));
        assert!(!Metric::MacroF1.improves(0.62, 0.6, 0.05));
    }
}
