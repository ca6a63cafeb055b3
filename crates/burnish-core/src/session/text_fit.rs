//! Fine-tuning a text classifier the way `fit` trains a classifier: epochs over the training
//! split, validation after each, early stopping with patience, the best epoch restored, a final
//! report on the test split; events to the host.

use burn::prelude::Device;
use burn::prelude::Tensor;

use super::fit::{EpochTrainer, Epochs, FitConfig, run_epochs};
use super::protocol::Event;
use super::runner::{Control, Host};
use crate::Result;
use crate::model::bert_classifier::BertClassifier;
use crate::model::lora::trainable_parameters;
use crate::train::text::{TextTrainer, TokenizedSet, evaluate_text};
use crate::train::{Evaluation, TrainConfig};

/// Rows per forward pass when evaluating texts.
const EVAL_BATCH: usize = 32;

impl EpochTrainer for TextTrainer {
    type Model = BertClassifier;
    type Data = TokenizedSet;
    fn step_unread(&mut self) -> Result<(Tensor<1>, f64)> {
        TextTrainer::step_unread(self)
    }
    fn steps_done(&self) -> usize {
        TextTrainer::steps_done(self)
    }
    fn model(&self) -> &BertClassifier {
        TextTrainer::model(self)
    }
    async fn evaluate(&self, data: &TokenizedSet) -> Result<Evaluation> {
        evaluate_text(self.model(), data, EVAL_BATCH, self.device()).await
    }
}

/// The three tokenized splits.
#[derive(Debug, Clone)]
pub struct TextSplits {
    /// Rows to train on.
    pub train: TokenizedSet,
    /// Rows for early stopping (may be empty: then the training rows are used).
    pub validation: TokenizedSet,
    /// Rows for the final report (may be empty: then validation is used).
    pub test: TokenizedSet,
}

/// What a text fit produced.
#[derive(Debug)]
pub struct TextFitOutcome {
    /// The model of the best epoch (or the last).
    pub model: BertClassifier,
    /// 1-based epoch whose weights the model holds.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the user cancelled it.
    pub cancelled: bool,
    /// The final report.
    pub test: Evaluation,
    /// Tokens (padding excluded) trained on per second of step time.
    pub tokens_per_second: f64,
    /// Parameters that trained.
    pub trainable: usize,
    /// The most memory the device's allocator held during the run, when the backend reports it.
    pub peak_memory: Option<u64>,
}

/// The most bytes the device's allocator has held: its sliced pools' pages at their peak, or
/// the bytes it reserves now (it keeps the pages a run needed, for reuse), whichever is larger;
/// `None` when the backend does not report its pools (the CPU backend) or reports nothing.
pub fn peak_memory(device: &Device) -> Option<u64> {
    let pages = device.memory_pool_report().map(|pools| {
        pools
            .iter()
            .map(|p| p.pages_peak * p.page_size)
            .sum::<u64>()
    });
    let reserved = device.memory_pool_usage().map(|u| u.bytes_reserved);
    let peak = pages.unwrap_or(0).max(reserved.unwrap_or(0));
    (peak > 0).then_some(peak)
}

/// Fine-tune `model` on `splits`.
///
/// # Errors
/// Invalid configs, read-back failures, divergence.
pub async fn fit_text(
    model: BertClassifier,
    mut config: TrainConfig,
    fit: &FitConfig,
    splits: &TextSplits,
    device: &Device,
    control: &Control,
    host: &impl Host,
) -> Result<TextFitOutcome> {
    fit.validate()?;
    let per_step = config.batch_size.max(1) * config.grad_accumulation.max(1);
    let steps_per_epoch = splits.train.rows.len().div_ceil(per_step);
    config.steps = steps_per_epoch * fit.epochs;
    let steps = config.steps;
    let total_parameters = burn::module::Module::num_params(&model);
    let precision = config.precision_on(device, true);
    let half = config.half_products(device).is_some();
    let mut trainer = TextTrainer::new(model, config, splits.train.clone(), device)?;
    let parameters = trainable_parameters(trainer.model());
    let validation = if splits.validation.rows.is_empty() {
        &splits.train
    } else {
        &splits.validation
    };
    host.post(Event::Started {
        rows: splits.train.rows.len(),
        steps,
        epochs: fit.epochs,
        steps_per_epoch,
        parameters,
        total_parameters,
        device: format!("{device:?}"),
        adapter: super::adapter_name(device),
        precision,
    });
    let mean_tokens = splits.train.rows.iter().map(|r| r.ids.len()).sum::<usize>() as f64
        / splits.train.rows.len() as f64;
    let Epochs {
        model,
        best_epoch,
        epochs_run,
        stopped_early,
        cancelled,
        timer,
    } = run_epochs(
        &mut trainer,
        fit,
        steps_per_epoch,
        validation,
        control,
        host,
        None,
        None,
    )
    .await
    .map_err(|e| e.in_precision(half))?;
    let final_split = if splits.test.rows.is_empty() {
        validation
    } else {
        &splits.test
    };
    let test = evaluate_text(&model, final_split, EVAL_BATCH, device).await?;
    let batch_tokens = mean_tokens * per_step as f64;
    let (timed_steps, step_ms) = timer.timed();
    Ok(TextFitOutcome {
        model,
        best_epoch,
        epochs_run,
        stopped_early,
        cancelled,
        test,
        trainable: parameters,
        peak_memory: peak_memory(device),
        tokens_per_second: if step_ms > 0.0 {
            batch_tokens * timed_steps as f64 / (step_ms / 1e3)
        } else {
            0.0
        },
    })
}
