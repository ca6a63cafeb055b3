use super::optim::Optimizer;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::batches::{BatchOrder, BatchPosition};
use super::loss::cross_entropy;
use super::optim::DecayScope;
use super::optim::SavedMoments;
use super::optimizer::{build, clip_factor};
use crate::data::ClassificationDataset;
use crate::data::augment::AugmentConfig;
use crate::eval::ClassificationReport;
use crate::model::{Classifier, Masks, ModelConfig};
use crate::rng::Rng;
use crate::{Error, Result};

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based index of the step just taken.
    pub step: usize,
    /// Mean cross-entropy of the step's batch (all its micro-batches), before the update.
    pub loss: f32,
    /// Learning rate used for the step.
    pub learning_rate: f64,
}

/// Everything a [`Trainer`] needs to continue exactly where it was (an autosave): the weights,
/// the optimizer's moments, the step (which fixes the schedule's position) and every random
/// stream's position.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The weights, in the model's export layout.
    pub weights: Vec<Vec<f32>>,
    /// The optimizer's state per parameter, in visit order.
    pub optimizer: Vec<Option<SavedMoments>>,
    /// Where the batch order stands.
    pub batches: BatchPosition,
    /// The augmentation generator's state (when augmenting).
    pub augment_rng: Option<u64>,
    /// The dropout generator's state.
    pub dropout_rng: u64,
}

/// Loss and report of a model on a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy over the rows.
    pub loss: f64,
    /// Accuracy, per-class metrics and confusion matrix (for token tasks: per tag, over words).
    pub report: ClassificationReport,
    /// Entity-level scores, for token tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<crate::eval::EntityReport>,
}

/// Rows per forward pass when evaluating, to bound device memory on large data sets.
const EVAL_BATCH: usize = 1024;

/// Bytes an evaluation batch may put in its largest buffer (under WebGPU's default 128 MiB per
/// storage binding, with room to spare).
const EVAL_BUFFER_BYTES: usize = 32 << 20;

/// Rows per evaluation batch for `config`: up to [`EVAL_BATCH`], fewer when a row's widest
/// activation is large (big images).
pub fn eval_rows(widest_per_row: usize) -> usize {
    (EVAL_BUFFER_BYTES / (4 * widest_per_row.max(1))).clamp(1, EVAL_BATCH)
}

/// Trains a [`Classifier`], one optimizer step per call, with the optimizer, schedule,
/// gradient accumulation and clipping of its [`TrainConfig`].
///
/// Batches are drawn without replacement from a per-epoch shuffle made by the portable
/// [`Rng`], so a seed repeats a run exactly on one backend and closely across backends.
pub struct Trainer {
    /// `None` only inside [`Trainer::step`], which moves the model through the optimizer.
    model: Option<Classifier>,
    optim: Optimizer,
    config: TrainConfig,
    data: ClassificationDataset,
    device: Device,
    batches: BatchOrder,
    step: usize,
    /// Augmentation of image rows, with its own random stream (so switching it on does not
    /// change which rows each batch holds).
    augment: Option<(AugmentConfig, [usize; 3], Rng)>,
    /// Draws the dropout masks (host-side, so a seed repeats a run on every backend).
    dropout_rng: Rng,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("rows", &self.data.len())
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer for `data` on `device` (autodiff is switched on here; pass a plain device).
    ///
    /// # Errors
    /// When either config is invalid, the data set is empty, or its feature or class count does
    /// not match the model.
    pub fn new(
        model: &ModelConfig,
        config: TrainConfig,
        data: ClassificationDataset,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if data.is_empty() {
            return Err(Error::data(
                &data.source_name,
                "expected at least one row, found none",
            ));
        }
        if data.n_features != model.d_input() {
            return Err(Error::data(
                &data.source_name,
                format!(
                    "the model expects {} features per row, the data has {}",
                    model.d_input(),
                    data.n_features
                ),
            ));
        }
        if data.n_classes() != model.n_classes() {
            return Err(Error::data(
                &data.source_name,
                format!(
                    "the model has {} classes, the data has {}",
                    model.n_classes(),
                    data.n_classes()
                ),
            ));
        }
        let device = device.clone().autodiff();
        let mut rng = Rng::new(config.seed);
        let init_seed = rng.next_u64();
        let model = model.init(init_seed, &device)?;
        let optim = build(&config, DecayScope::All);
        Ok(Self {
            model: Some(model),
            optim,
            batches: BatchOrder::new(rng),
            step: 0,
            augment: None,
            dropout_rng: Rng::new(config.seed ^ 0x0064_726f_706f_7574),
            config,
            data,
            device,
        })
    }

    /// A trainer that continues from an existing model (continual learning on new data).
    ///
    /// # Errors
    /// As [`Trainer::new`].
    pub fn from_model(
        model: Classifier,
        shape: &ModelConfig,
        config: TrainConfig,
        data: ClassificationDataset,
        device: &Device,
    ) -> Result<Self> {
        let mut trainer = Self::new(shape, config, data, device)?;
        trainer.model = Some(model.train());
        Ok(trainer)
    }

    /// Augment training batches (image data sets only; a no-op for tables or when disabled).
    ///
    /// # Errors
    /// [`Error::Config`] when the padding does not fit the images.
    pub fn with_augment(mut self, augment: &AugmentConfig) -> Result<Self> {
        if let (true, Some(shape)) = (augment.enabled, self.data.image_shape) {
            augment.validate(shape)?;
            let rng = Rng::new(self.config.seed ^ 0x0061_7567_6d65_6e74);
            self.augment = Some((augment.clone(), shape, rng));
        }
        Ok(self)
    }

    /// Loss and classification report of the current model on `data`, in batches.
    ///
    /// # Errors
    /// [`Error::Data`] when the data does not fit the model; [`Error::Readback`] when the device
    /// fails to return results.
    pub async fn evaluate(&self, data: &ClassificationDataset) -> Result<Evaluation> {
        evaluate(self.model(), &self.device, data).await
    }

    /// Number of steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The training config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model as it is now.
    pub fn model(&self) -> &Classifier {
        self.model
            .as_ref()
            .expect("the model is only absent inside step()")
    }

    /// Read the whole training state back (asynchronously) for an autosave.
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn save_state(&self) -> Result<TrainerState> {
        Ok(TrainerState {
            step: self.step,
            weights: self.model().tensors().await?,
            optimizer: self.optim.save(self.model()).await?,
            batches: self.batches.position(),
            augment_rng: self.augment.as_ref().map(|(_, _, rng)| rng.state()),
            dropout_rng: self.dropout_rng.state(),
        })
    }

    /// Continue from a saved state of a trainer of the same model, config and data.
    ///
    /// # Errors
    /// [`Error::Config`] when the state does not fit this model or data.
    pub fn restore_state(&mut self, shape: &ModelConfig, state: TrainerState) -> Result<()> {
        let plain = self.device.clone().without_autodiff();
        let model = shape.from_tensors(state.weights, &plain)?.train();
        self.optim.restore(&model, state.optimizer, &self.device)?;
        self.batches = BatchOrder::restore(state.batches, self.data.len()).ok_or_else(|| {
            Error::config(
                "checkpoint",
                format!(
                    "its batch order does not fit the {} training rows",
                    self.data.len()
                ),
            )
        })?;
        match (&mut self.augment, state.augment_rng) {
            (Some((_, _, rng)), Some(saved)) => *rng = Rng::new(saved),
            (None, None) => {}
            _ => {
                return Err(Error::config(
                    "checkpoint",
                    "it was saved with a different augmentation setting",
                ));
            }
        }
        self.dropout_rng = Rng::new(state.dropout_rng);
        self.step = state.step;
        self.model = Some(model);
        Ok(())
    }

    fn next_batch(&mut self) -> Vec<usize> {
        self.batches.next(self.data.len(), self.config.batch_size)
    }

    /// Take one optimizer step: `grad_accumulation` micro-batches, clipping, the scheduled
    /// learning rate; then read the step's loss back (asynchronously, once).
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return the loss, [`Error::Diverged`] when it
    /// is not finite (the model is then left as it was after the update).
    pub async fn step(&mut self) -> Result<StepReport> {
        let (loss, learning_rate) = self.step_unread()?;
        step_report(Some(loss), self.step, learning_rate).await
    }

    /// Take one optimizer step as [`Self::step`] does, without reading its loss back: the mean
    /// loss stays on the device (so several steps can be queued before one read) with the
    /// learning rate used.
    ///
    /// # Errors
    /// [`Error::Config`] when the config has no micro-batch.
    pub fn step_unread(&mut self) -> Result<(Tensor<1>, f64)> {
        let micro = self.config.grad_accumulation;
        let model = self
            .model
            .take()
            .expect("the model is only absent inside step()");
        let fused = self.config.fuse_loss();
        let mut accumulator = GradientsAccumulator::<Classifier>::new();
        let mut total_loss: Option<Tensor<1>> = None;
        for _ in 0..micro {
            let indices = self.next_batch();
            let (mut features, labels) = self.data.gather(&indices);
            if let Some((augment, shape, rng)) = &mut self.augment {
                augment.apply(&mut features, *shape, rng);
            }
            let rows = indices.len();
            let x = Tensor::<2>::from_data(
                TensorData::new(features, [rows, self.data.n_features]),
                &self.device,
            );
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [rows]), &self.device);
            // Each micro-batch's loss is divided by their count, so the summed gradients are
            // those of the mean over the whole effective batch (as in PyTorch).
            let masks = &mut Masks::from(&mut self.dropout_rng)
                .with_fused_kernels(self.config.fused_kernels);
            let logits = model.forward_with(x, masks);
            let loss = cross_entropy(logits, y, None, fused) / micro as f32;
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            total_loss = add_loss(total_loss, loss.detach());
        }
        let grads = accumulator.grads();
        let clip = self
            .config
            .clip_grad_norm
            .and_then(|max_norm| clip_factor(&model, &grads, max_norm, self.config.fused_kernels));
        let learning_rate = self.config.learning_rate_at(self.step);
        let factor = clip.map(|c| c.factor);
        self.model = Some(
            self.optim
                .step(learning_rate, model, grads, factor.as_ref()),
        );
        self.step += 1;
        let loss = total_loss
            .ok_or_else(|| Error::config("grad_accumulation", "expected at least 1 micro-batch"))?;
        Ok((loss, learning_rate))
    }
}

/// The sum of the micro-batches' detached losses so far.
pub(crate) fn add_loss(total: Option<Tensor<1>>, loss: Tensor<1>) -> Option<Tensor<1>> {
    Some(match total {
        Some(t) => t + loss,
        None => loss,
    })
}

/// Read a step's loss back (once, asynchronously) and report the step.
///
/// # Errors
/// [`Error::Readback`]; [`Error::Diverged`] when the loss is not finite.
pub(crate) async fn step_report(
    total: Option<Tensor<1>>,
    step: usize,
    learning_rate: f64,
) -> Result<StepReport> {
    let loss: f32 = total
        .ok_or_else(|| Error::config("grad_accumulation", "expected at least 1 micro-batch"))?
        .into_scalar_async()
        .await
        .map_err(Error::readback("training loss"))?;
    if !loss.is_finite() {
        return Err(Error::Diverged {
            step,
            loss,
            half: false,
        });
    }
    Ok(StepReport {
        step,
        loss,
        learning_rate,
    })
}

/// Loss and classification report of `model` on `data`, in batches of [`EVAL_BATCH`] rows.
///
/// # Errors
/// [`Error::Data`] when the data is empty or its rows do not fit the model; [`Error::Readback`]
/// when the device fails to return results.
pub async fn evaluate(
    model: &Classifier,
    device: &Device,
    data: &ClassificationDataset,
) -> Result<Evaluation> {
    let d_input = model.d_input();
    if data.n_features != d_input {
        return Err(Error::data(
            &data.source_name,
            format!(
                "expected {d_input} features per row, found {}",
                data.n_features
            ),
        ));
    }
    if data.is_empty() {
        return Err(Error::data(
            &data.source_name,
            "expected at least one row, found none",
        ));
    }
    let rows_per_batch = eval_rows(model.widest_per_row());
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut predicted = Vec::with_capacity(data.len());
    let mut loss_sum: Option<Tensor<1>> = None;
    for start in (0..data.len()).step_by(rows_per_batch) {
        let indices: Vec<usize> = (start..(start + rows_per_batch).min(data.len())).collect();
        let (features, labels) = data.gather(&indices);
        let rows = indices.len();
        let x = Tensor::<2>::from_data(TensorData::new(features, [rows, data.n_features]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [rows]), &device);
        let logits = model.forward(x);
        let loss = cross_entropy(logits.clone(), y, None, true) * rows as f32;
        loss_sum = Some(match loss_sum {
            Some(sum) => sum + loss,
            None => loss,
        });
        let values = logits
            .argmax(1)
            .reshape([rows])
            .into_data_async()
            .await
            .map_err(Error::readback("predictions"))?;
        let values = values
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| Error::Readback {
                what: "predictions",
                reason: format!("{e:?}"),
            })?;
        predicted.extend(values.into_iter().map(|v| v as u32));
    }
    // One read of the summed loss, after the predictions of every batch.
    let loss_sum: f32 = loss_sum
        .expect("the data has at least one row")
        .try_into_scalar_async()
        .await
        .map_err(Error::readback("evaluation loss"))?;
    let report = ClassificationReport::new(&data.class_names, &data.labels, &predicted)?;
    Ok(Evaluation {
        loss: f64::from(loss_sum) / data.len() as f64,
        report,
        entities: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::demo::spirals;
    use crate::model::MlpConfig;

    fn demo() -> (ModelConfig, ClassificationDataset) {
        (
            ModelConfig::Mlp(MlpConfig::new(2, 3).with_hidden(vec![32, 32])),
            spirals(60, 3, 0.1, 3).expect("valid"),
        )
    }

    #[test]
    fn loss_falls_and_accuracy_rises_on_flex() {
        let (model, data) = demo();
        let config = TrainConfig {
            learning_rate: 0.02,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let mut trainer =
            Trainer::new(&model, config, data.clone(), &Device::flex()).expect("valid");
        let first = pollster::block_on(trainer.step()).expect("step").loss;
        let mut last = first;
        for _ in 0..299 {
            last = pollster::block_on(trainer.step()).expect("step").loss;
        }
        assert_eq!(trainer.steps_done(), 300);
        assert!(last < first * 0.5, "loss went from {first} to {last}");
        let evaluation = pollster::block_on(trainer.evaluate(&data)).expect("evaluate");
        let accuracy = evaluation.report.accuracy;
        assert!(accuracy > 0.85, "accuracy {accuracy}");
        assert!(evaluation.loss < f64::from(first), "{evaluation:?}");
        // The loss is the mean cross-entropy over all rows, summed across evaluation batches.
        let big = {
            let rows: Vec<usize> = (0..EVAL_BATCH + 10).map(|i| i % data.len()).collect();
            data.subset(&rows)
        };
        let batched = pollster::block_on(trainer.evaluate(&big)).expect("evaluate");
        assert!(
            (batched.loss - evaluation.loss).abs() < 0.05,
            "{} vs {}",
            batched.loss,
            evaluation.loss
        );
        assert_eq!(batched.report.total, EVAL_BATCH + 10);
        assert_eq!(evaluation.report.total, data.len());
    }

    #[test]
    fn same_seed_repeats_exactly_on_one_backend() {
        let (model, data) = demo();
        let run = |seed| {
            let config = TrainConfig {
                seed,
                batch_size: 16,
                ..TrainConfig::default()
            };
            let mut t = Trainer::new(&model, config, data.clone(), &Device::flex()).expect("valid");
            (0..5)
                .map(|_| pollster::block_on(t.step()).expect("step").loss)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn every_optimizer_learns_with_schedule_accumulation_and_clipping() {
        use crate::train::optimizer::OptimizerKind;
        use crate::train::schedule::{Decay, ScheduleConfig};
        let (model, data) = demo();
        for (optimizer, learning_rate) in [
            (OptimizerKind::Adamw, 0.02),
            (OptimizerKind::Adam, 0.02),
            (OptimizerKind::Sgd, 0.1),
        ] {
            let config = TrainConfig {
                optimizer,
                learning_rate,
                schedule: ScheduleConfig {
                    decay: Decay::Cosine,
                    warmup_fraction: 0.1,
                },
                grad_accumulation: 2,
                clip_grad_norm: Some(1.0),
                batch_size: 16,
                steps: 150,
                ..TrainConfig::default()
            };
            let mut trainer =
                Trainer::new(&model, config, data.clone(), &Device::flex()).expect("valid");
            let reports: Vec<StepReport> = (0..150)
                .map(|_| pollster::block_on(trainer.step()).expect("step"))
                .collect();
            assert_eq!(reports[0].learning_rate, 0.0, "warm-up starts at 0");
            assert!(
                (reports[15].learning_rate - learning_rate).abs() < 1e-9,
                "{optimizer:?}: peak after warm-up"
            );
            assert!(
                reports[149].learning_rate < learning_rate * 0.01,
                "{optimizer:?}: decayed"
            );
            let head: f32 = reports[..10].iter().map(|r| r.loss).sum::<f32>() / 10.0;
            let tail: f32 = reports[140..].iter().map(|r| r.loss).sum::<f32>() / 10.0;
            assert!(tail < head * 0.8, "{optimizer:?}: loss {head} -> {tail}");
        }
    }

    #[test]
    fn a_seed_repeats_a_run_with_dropout() {
        let (_, data) = demo();
        let model = ModelConfig::Mlp(MlpConfig::new(2, 3).with_hidden(vec![16]).with_dropout(0.5));
        let run = |seed| {
            let config = TrainConfig {
                seed,
                ..TrainConfig::default()
            };
            let mut t = Trainer::new(&model, config, data.clone(), &Device::flex()).expect("valid");
            (0..5)
                .map(|_| pollster::block_on(t.step()).expect("step").loss)
                .collect::<Vec<_>>()
        };
        let a = run(7);
        // Something else draws from the backend's generator in between.
        let _ = Tensor::<1>::random([100], burn::tensor::Distribution::Default, &Device::flex())
            .into_data();
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
    }

    #[test]
    fn accumulating_two_half_batches_equals_one_full_batch_with_sgd() {
        let (model, data) = demo();
        let run = |batch_size, grad_accumulation| {
            let config = TrainConfig {
                optimizer: crate::train::optimizer::OptimizerKind::Sgd,
                momentum: 0.0,
                weight_decay: 0.0,
                learning_rate: 0.1,
                batch_size,
                grad_accumulation,
                ..TrainConfig::default()
            };
            let mut t = Trainer::new(&model, config, data.clone(), &Device::flex()).expect("valid");
            (0..3)
                .map(|_| pollster::block_on(t.step()).expect("step").loss)
                .collect::<Vec<_>>()
        };
        let whole = run(60, 1);
        let halves = run(30, 2);
        for (a, b) in whole.iter().zip(&halves) {
            assert!((a - b).abs() < 1e-5, "{whole:?} vs {halves:?}");
        }
    }

    #[test]
    fn mismatched_data_is_reported_before_training() {
        let (_, data) = demo();
        let err = Trainer::new(
            &ModelConfig::Mlp(MlpConfig::new(5, 3)),
            TrainConfig {
                ..TrainConfig::default()
            },
            data.clone(),
            &Device::flex(),
        )
        .expect_err("feature mismatch")
        .to_string();
        assert!(
            err.contains("expects 5 features per row, the data has 2"),
            "{err}"
        );
        let err = Trainer::new(
            &ModelConfig::Mlp(MlpConfig::new(2, 4)),
            TrainConfig {
                ..TrainConfig::default()
            },
            data,
            &Device::flex(),
        )
        .expect_err("class mismatch")
        .to_string();
        assert!(err.contains("4 classes, the data has 3"), "{err}");
    }

    #[test]
    fn batches_cover_every_row_once_per_epoch() {
        let (model, data) = demo();
        let n = data.len();
        let config = TrainConfig {
            batch_size: 48,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(&model, config, data, &Device::flex()).expect("valid");
        let mut seen: Vec<usize> = (0..n.div_ceil(48))
            .flat_map(|_| t.next_batch())
            .take(n)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}
