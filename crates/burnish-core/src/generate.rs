//! Text generation with a [`Gpt`]: the prompt runs once through the model filling a
//! [`KvCache`], then every new token costs one position. The next token is picked on the host
//! from the last position's logits (read back asynchronously, so the browser stays responsive
//! and a stop request gets in between tokens): greedy at temperature 0, else sampled after
//! temperature, top-k and top-p (nucleus) filtering, from a seeded generator.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::Masks;
use crate::model::gpt::{Gpt, KvCache};
use crate::rng::Rng;
use crate::{Error, Result};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Tokens to generate. Default 200.
    pub max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy). Default 0.8.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens. Default none.
    pub top_k: Option<usize>,
    /// Keep the most likely tokens whose probabilities sum to `p`. Default none.
    pub top_p: Option<f64>,
    /// Seed of the sampler. Default 42.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            temperature: 0.8,
            top_k: None,
            top_p: None,
            seed: 42,
        }
    }
}

impl Sampling {
    /// # Errors
    /// A field out of range, named.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::config("temperature", "must be 0 or more"));
        }
        if self.top_k == Some(0) {
            return Err(Error::config("top_k", "must be at least 1"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::config("top_p", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// The next token from `logits` (one per vocabulary entry).
pub fn pick(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0 as u32
    };
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = sampling.top_k {
        order.truncate(k.max(1));
    }
    let top = f64::from(logits[order[0]]);
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - top) / sampling.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if let Some(p) = sampling.top_p {
        let mut cumulative = 0.0;
        let keep = weights
            .iter()
            .position(|w| {
                cumulative += w / total;
                cumulative >= p
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let mut r = f64::from(rng.next_f32()) * total;
    for (w, &i) in weights.iter().zip(&order) {
        if r < *w {
            return i as u32;
        }
        r -= w;
    }
    order[weights.len() - 1] as u32
}

async fn last_logits(logits: Tensor<3>) -> Result<Vec<f32>> {
    let [_, len, vocab] = logits.dims();
    logits
        .narrow(1, len - 1, 1)
        .reshape([vocab])
        .into_data_async()
        .await
        .map_err(Error::readback("logits"))?
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback {
            what: "logits",
            reason: format!("{e:?}"),
        })
}

/// Generate up to `sampling.max_tokens` tokens after `prompt`, calling `on_token` with each as
/// it is picked (return `false` to stop). Positions past the model's context slide: the cache
/// is rebuilt from the last half-context of tokens.
///
/// # Errors
/// An empty prompt; invalid sampling; read-back failures.
pub async fn generate(
    model: &Gpt,
    prompt: &[u32],
    sampling: &Sampling,
    device: &Device,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::data(
            "prompt",
            "type a prompt of at least one character",
        ));
    }
    let device = device.clone().without_autodiff();
    let net = model.valid().fork(&device);
    let context = net.context();
    let mut rng = Rng::new(sampling.seed);
    let ids = |tokens: &[u32]| {
        let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        Tensor::<2, Int>::from_data(TensorData::new(data, [1, tokens.len()]), &device)
    };
    let mut all: Vec<u32> = prompt.to_vec();
    let start = all.len().saturating_sub(context);
    let mut cache = KvCache::default();
    let mut logits =
        last_logits(net.forward(ids(&all[start..]), Some(&mut cache), &mut Masks::none())).await?;
    let mut out = Vec::new();
    while out.len() < sampling.max_tokens {
        let next = pick(&logits, sampling, &mut rng);
        out.push(next);
        all.push(next);
        if !on_token(next) || out.len() == sampling.max_tokens {
            break;
        }
        let step = if cache.len() < context {
            net.forward(ids(&[next]), Some(&mut cache), &mut Masks::none())
        } else {
            cache = KvCache::default();
            let keep = (context / 2).max(1);
            net.forward(
                ids(&all[all.len() - keep..]),
                Some(&mut cache),
                &mut Masks::none(),
            )
        };
        logits = last_logits(step).await?;
    }
    Ok(out)
}
