//! Training a [`Gpt`] on a token stream: next-token cross-entropy on windows of `context + 1`
//! tokens drawn at random offsets (from the trainer's seeded generator), with the recipe of
//! [`TrainConfig`] (optimizer, schedule, accumulation, clipping, decoupled weight decay on
//! matrices). [`evaluate_lm`] gives the loss and perplexity of a held-out stream, every token
//! predicted once.

use super::optim::Optimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::loss::cross_entropy;
use super::optim::DecayScope;
use super::optimizer::build;
use super::text::{LossScaler, decoupled_step, queued_loss};
use super::trainer::step_report;
use super::{StepReport, TrainConfig};
use crate::model::Masks;
use crate::model::gpt::Gpt;
use crate::rng::Rng;
use crate::{Error, Result};

/// Inputs `[rows, len]` and next-token targets `[rows * len]` of the windows of `tokens` that
/// start at `starts`.
fn windows(
    tokens: &[u32],
    starts: &[usize],
    len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let mut ids = Vec::with_capacity(starts.len() * len);
    let mut next = Vec::with_capacity(starts.len() * len);
    for &s in starts {
        ids.extend(tokens[s..s + len].iter().map(|&t| i64::from(t)));
        next.extend(tokens[s + 1..s + len + 1].iter().map(|&t| i64::from(t)));
    }
    let rows = starts.len();
    (
        Tensor::from_data(TensorData::new(ids, [rows, len]), device),
        Tensor::from_data(TensorData::new(next, [rows * len]), device),
    )
}

/// Steps a language model; see the module documentation.
pub struct LmTrainer {
    model: Option<Gpt>,
    optim: Optimizer,
    config: TrainConfig,
    tokens: Vec<u32>,
    window: usize,
    device: Device,
    rng: Rng,
    dropout_rng: Rng,
    step: usize,
    /// Loss scaling where the matrix products are half precision.
    scaler: Option<LossScaler>,
}

impl std::fmt::Debug for LmTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmTrainer")
            .field("tokens", &self.tokens.len())
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl LmTrainer {
    /// A trainer for `model` on `tokens` with windows of the model's context (shorter when the
    /// text is short), on `device` (autodiff is switched on here).
    ///
    /// # Errors
    /// An invalid config; fewer than 3 tokens.
    pub fn new(model: Gpt, config: TrainConfig, tokens: Vec<u32>, device: &Device) -> Result<Self> {
        config.validate()?;
        if tokens.len() < 3 {
            return Err(Error::data(
                "text",
                format!(
                    "expected at least 3 tokens to train on, found {}",
                    tokens.len()
                ),
            ));
        }
        let window = model.context().min(tokens.len() - 1);
        let device = device.clone().autodiff();
        let model = model.fork(&device).train();
        let optim = build(&config, DecayScope::Matrices);
        let scaler = config
            .half_products(&device)
            .map(|scale| LossScaler::new(scale, &device));
        Ok(Self {
            model: Some(model),
            optim,
            scaler,
            rng: Rng::new(config.seed),
            dropout_rng: Rng::new(config.seed ^ 0x0064_726f_706f_7574),
            step: 0,
            config,
            tokens,
            window,
            device,
        })
    }

    /// The model as it is now.
    pub fn model(&self) -> &Gpt {
        self.model
            .as_ref()
            .expect("the model is only absent inside step()")
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Tokens per window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The device it trains on (with autodiff).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimizer step over `batch_size` random windows (per micro-batch); reads the loss
    /// back asynchronously.
    ///
    /// # Errors
    /// [`Error::Readback`], or [`Error::Diverged`] when the loss is not finite.
    pub async fn step(&mut self) -> Result<StepReport> {
        let (loss, learning_rate) = self.step_unread()?;
        step_report(Some(loss), self.step, learning_rate).await
    }

    /// One optimizer step without reading its loss back: the mean loss stays on the device,
    /// with the learning rate used.
    ///
    /// # Errors
    /// [`Error::Config`] when the config has no micro-batch.
    pub fn step_unread(&mut self) -> Result<(Tensor<1>, f64)> {
        let model = self
            .model
            .take()
            .expect("the model is only absent inside step()");
        let (tokens, device, rng, dropout) = (
            &self.tokens,
            &self.device,
            &mut self.rng,
            &mut self.dropout_rng,
        );
        let (window, rows) = (self.window, self.config.batch_size);
        let fused = self.config.fuse_loss();
        let fused_kernels = self.config.fused_kernels;
        let half = self.scaler.is_some();
        let (model, loss, learning_rate) = decoupled_step(
            model,
            &mut self.optim,
            &self.config,
            self.step,
            self.scaler.as_mut(),
            |model: &Gpt, micro: usize| {
                let starts: Vec<usize> = (0..rows)
                    .map(|_| rng.below(tokens.len() - window))
                    .collect();
                let (ids, targets) = windows(tokens, &starts, window, device);
                let mut masks = Masks::from(dropout)
                    .with_fused_kernels(fused_kernels)
                    .with_half_products(half);
                let logits = model.forward(ids, None, &mut masks);
                let vocab = logits.dims()[2];
                cross_entropy(logits.reshape([rows * window, vocab]), targets, None, fused)
                    / micro as f32
            },
        );
        self.model = Some(model);
        self.step += 1;
        Ok((queued_loss(loss)?, learning_rate))
    }
}

/// Loss and perplexity of a language model on held-out text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LmEvaluation {
    /// Mean next-token cross-entropy (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

/// Loss and perplexity of `model` on `tokens`: consecutive windows of the model's context, each
/// token after the first predicted once, `rows` windows per forward pass.
///
/// # Errors
/// Fewer than 2 tokens; read-back failures.
pub async fn evaluate_lm(
    model: &Gpt,
    tokens: &[u32],
    rows: usize,
    device: &Device,
) -> Result<LmEvaluation> {
    if tokens.len() < 2 {
        return Err(Error::data(
            "validation text",
            "expected at least 2 tokens to evaluate",
        ));
    }
    let device = device.clone().without_autodiff();
    let net = model.valid().fork(&device);
    let window = model.context().min(tokens.len() - 1);
    let full = (tokens.len() - 1) / window;
    let starts: Vec<usize> = (0..full).map(|i| i * window).collect();
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for chunk in starts.chunks(rows.max(1)) {
        let (s, n) = summed_loss(&net, tokens, chunk, window, &device).await?;
        sum += s;
        count += n;
    }
    // The tail that does not fill a window.
    let done = full * window;
    let rest = tokens.len() - 1 - done;
    if rest > 0 {
        let (s, n) = summed_loss(&net, tokens, &[done], rest, &device).await?;
        sum += s;
        count += n;
    }
    let loss = sum / count as f64;
    Ok(LmEvaluation {
        loss,
        perplexity: loss.exp(),
        tokens: count,
    })
}

/// The summed next-token loss over the windows at `starts`, and how many tokens it covers.
async fn summed_loss(
    net: &Gpt,
    tokens: &[u32],
    starts: &[usize],
    len: usize,
    device: &Device,
) -> Result<(f64, usize)> {
    let (ids, targets) = windows(tokens, starts, len, device);
    let n = starts.len() * len;
    let logits = net.forward(ids, None, &mut Masks::none());
    let vocab = logits.dims()[2];
    let loss: f32 = cross_entropy(logits.reshape([n, vocab]), targets, None, true)
        .into_scalar_async()
        .await
        .map_err(Error::readback("validation loss"))?;
    Ok((f64::from(loss) * n as f64, n))
}
