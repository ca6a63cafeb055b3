//! How much GPU memory fine-tuning an encoder takes, estimated before anything is allocated, and
//! whether it fits the adapter's limits (WebGPU's defaults are 128 MiB per storage binding and
//! 256 MiB per buffer; adapters often allow more, and the worker asks for what they allow).
//!
//! The estimate counts f32 values: weights, their gradients, the optimizer's state (two moments
//! for Adam/AdamW, one for SGD with momentum) and the activations autodiff keeps for the
//! backward pass, per encoder layer: the layer's inputs, Q, K, V, attention context and output,
//! two LayerNorm outputs and the feed-forward's input, pre-activation and activation, plus the
//! attention scores, probabilities and dropout mask (`batch x heads x length x length` each).
//! It is an upper bound of what burn keeps alive at the peak (fused kernels keep less).

use serde::{Deserialize, Serialize};

use crate::model::bert::BertConfig;
use crate::train::optimizer::OptimizerKind;

/// What the adapter allows (from `GPUAdapter.limits`, or wgpu's `Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceLimits {
    /// `maxStorageBufferBindingSize`, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// `maxBufferSize`, bytes.
    pub max_buffer_size: u64,
}

impl Default for DeviceLimits {
    /// WebGPU's default limits.
    fn default() -> Self {
        Self {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
        }
    }
}

/// The estimate, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Trainable parameters.
    pub parameters: usize,
    /// The weights.
    pub weights: u64,
    /// Their gradients.
    pub gradients: u64,
    /// The optimizer's state.
    pub optimizer: u64,
    /// Activations kept for the backward pass, at the given batch and length.
    pub activations: u64,
    /// All of the above.
    pub total: u64,
    /// The largest single buffer and what it holds.
    pub largest: (String, u64),
    /// The batch size and sequence length the estimate is for.
    pub batch_size: usize,
    /// Tokens per sequence (the longest a batch can have).
    pub max_length: usize,
}

const F32: u64 = 4;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl MemoryEstimate {
    /// The estimate for fine-tuning all of `config`'s encoder plus a head of `n_classes`.
    pub fn for_bert(
        config: &BertConfig,
        n_classes: usize,
        batch_size: usize,
        max_length: usize,
        optimizer: OptimizerKind,
    ) -> Self {
        let (h, i, l) = (
            config.hidden_size as u64,
            config.intermediate_size as u64,
            config.num_hidden_layers as u64,
        );
        let parameters: u64 = config
            .tensor_layout()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum::<u64>()
            + (h + 1) * n_classes as u64;
        let (b, s, a) = (
            batch_size as u64,
            max_length as u64,
            config.num_attention_heads as u64,
        );
        let tokens = b * s;
        let per_layer = tokens * (9 * h + 3 * i) + 3 * b * a * s * s;
        let embeddings = tokens * 4 * h;
        let head = tokens * n_classes as u64 * 2;
        let activations = (l * per_layer + embeddings + head) * F32;
        let moments = match optimizer {
            OptimizerKind::Adam | OptimizerKind::Adamw => 2,
            OptimizerKind::Sgd => 1,
        };
        let weights = parameters * F32;
        let candidates = [
            (
                "the word embedding".to_string(),
                config.vocab_size as u64 * h * F32,
            ),
            (
                "the attention scores of one layer".to_string(),
                b * a * s * s * F32,
            ),
            (
                "the feed-forward activations of one layer".to_string(),
                tokens * i * F32,
            ),
        ];
        let largest = candidates
            .into_iter()
            .max_by_key(|(_, bytes)| *bytes)
            .unwrap_or_default();
        Self {
            parameters: parameters as usize,
            weights,
            gradients: weights,
            optimizer: weights * moments,
            activations,
            total: weights * (2 + moments) + activations,
            largest,
            batch_size,
            max_length,
        }
    }

    /// `None` when every buffer fits `limits`; otherwise what is too large and what to lower.
    pub fn problem(&self, limits: &DeviceLimits, config: &BertConfig) -> Option<String> {
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let (what, bytes) = &self.largest;
        if *bytes <= limit {
            return None;
        }
        let mut message = format!(
            "{what} needs {} in one buffer, but this GPU allows {} per buffer",
            mib(*bytes),
            mib(limit)
        );
        if what.starts_with("the word embedding") {
            message += "; this adapter cannot hold this model";
            return Some(message);
        }
        // Both activation buffers grow linearly with the batch size.
        let fits = |batch: usize| {
            Self::for_bert(config, 2, batch, self.max_length, OptimizerKind::Sgd)
                .largest
                .1
                <= limit
        };
        let batch = (1..self.batch_size).rev().find(|&b| fits(b));
        let length = (2..self.max_length).rev().find(|&s| {
            Self::for_bert(config, 2, self.batch_size, s, OptimizerKind::Sgd)
                .largest
                .1
                <= limit
        });
        match (batch, length) {
            (Some(b), Some(s)) => {
                message += &format!(
                    "; lower the batch size to {b} or less, or the max length to {s} or less"
                );
            }
            (Some(b), None) => message += &format!("; lower the batch size to {b} or less"),
            (None, Some(s)) => message += &format!("; lower the max length to {s} or less"),
            (None, None) => message += "; lower the batch size and the max length",
        }
        Some(message)
    }

    /// One line for logs and the CLI.
    pub fn summary(&self) -> String {
        format!(
            "estimated GPU memory at batch {} x {} tokens: {} total = weights {} + gradients {} + optimizer {} + activations {}; largest buffer: {} ({})",
            self.batch_size,
            self.max_length,
            mib(self.total),
            mib(self.weights),
            mib(self.gradients),
            mib(self.optimizer),
            mib(self.activations),
            self.largest.0,
            mib(self.largest.1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> BertConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536,
            "max_position_embeddings": 512
        }))
        .expect("config")
    }

    #[test]
    fn minilm_counts_and_limits() {
        let c = minilm();
        let e = MemoryEstimate::for_bert(&c, 2, 16, 128, OptimizerKind::Adamw);
        // 22,713,216 encoder parameters with the pooler (sentence-transformers reports 22.7M)
        // plus a 2-class head.
        assert_eq!(e.parameters, 22_713_216 + 385 * 2);
        assert_eq!(e.weights, e.parameters as u64 * 4);
        assert_eq!(e.optimizer, 2 * e.weights);
        assert_eq!(e.largest.0, "the word embedding");
        assert_eq!(e.problem(&DeviceLimits::default(), &c), None);
        // At batch 64 x 512 the attention scores (64*12*512*512*4 = 768 MiB) are too large.
        let big = MemoryEstimate::for_bert(&c, 2, 64, 512, OptimizerKind::Adamw);
        assert_eq!(big.largest.1, 64 * 12 * 512 * 512 * 4);
        let message = big.problem(&DeviceLimits::default(), &c).expect("too big");
        assert!(
            message.contains("attention scores")
                && message.contains("lower the batch size to 10 or less")
                && message.contains("max length to 209 or less"),
            "{message}"
        );
        let tiny = DeviceLimits {
            max_storage_buffer_binding_size: 1 << 20,
            max_buffer_size: 1 << 20,
        };
        let message = e.problem(&tiny, &c).expect("embedding too big");
        assert!(message.contains("cannot hold this model"), "{message}");
        assert!(e.summary().contains("batch 16 x 128 tokens"));
    }
}
