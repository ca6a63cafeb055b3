//! How much GPU memory fine-tuning an encoder takes, estimated before anything is allocated, and
//! whether it fits the adapter's limits (WebGPU's defaults are 128 MiB per storage binding and
//! 256 MiB per buffer; adapters often allow more, and the worker asks for what they allow).
//!
//! The estimate counts f32 values: weights, their gradients, the optimizer's state (two moments
//! for Adam/AdamW, one for SGD with momentum) and the activations autodiff keeps for the
//! backward pass, per encoder layer: the layer's inputs, Q, K, V, attention context and output,
//! two LayerNorm outputs and the feed-forward's input, pre-activation and activation, plus, where
//! the attention runs composed, its scores, probabilities and dropout mask
//! (`batch x heads x length x length` each; the fused self-attention keeps none of them, only
//! three numbers a query and head). It is an upper bound of what burn keeps alive at the peak
//! (the other fused kernels keep less).

use serde::{Deserialize, Serialize};

use crate::model::bert::BertConfig;
use crate::model::lora::{LoraTarget, Strategy, Tuning};
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
    /// All parameters (encoder, head and any LoRA factors).
    pub parameters: usize,
    /// Those that train (get gradients and optimizer state).
    pub trainable: usize,
    /// The tuning strategy, described.
    pub tuning: String,
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
    /// Whether the estimate is for the fused self-attention (no `[batch, heads, length,
    /// length]` buffers).
    pub fused_attention: bool,
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
    /// The estimate for fine-tuning `config`'s encoder plus a head of `n_classes` as `tuning`
    /// says. Frozen layers keep no activations for the backward pass when nothing below them
    /// trains (head only, the lower layers with `top`); LoRA keeps every layer's activations
    /// (gradients flow down to the first adapter) plus each adapter's dropped-out input and
    /// rank-wide intermediate: it saves gradients and optimizer state, not activations.
    pub fn for_bert(
        config: &BertConfig,
        n_classes: usize,
        batch_size: usize,
        max_length: usize,
        optimizer: OptimizerKind,
        tuning: &Tuning,
        fused_kernels: bool,
    ) -> Self {
        let fused_attention = fused_kernels
            && config.num_attention_heads > 0
            && crate::kernels::self_attention::head_fits(
                config.hidden_size / config.num_attention_heads,
            );
        let (h, i, l) = (
            config.hidden_size as u64,
            config.intermediate_size as u64,
            config.num_hidden_layers as u64,
        );
        let layout = config.tensor_layout();
        let count = |prefix: &str| -> u64 {
            layout
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, s)| s.iter().product::<usize>() as u64)
                .sum()
        };
        let head_params = (h + 1) * n_classes as u64;
        let encoder = count("");
        let lora_dims = |t: LoraTarget| -> (u64, u64) {
            match t {
                LoraTarget::Intermediate => (h, i),
                LoraTarget::Output => (i, h),
                _ => (h, h),
            }
        };
        let mut targets = tuning.lora.targets.clone();
        targets.sort();
        targets.dedup();
        let rank = tuning.lora.rank as u64;
        let lora_params: u64 = if tuning.strategy == Strategy::Lora {
            l * targets
                .iter()
                .map(|&t| {
                    let (a, b) = lora_dims(t);
                    rank * (a + b)
                })
                .sum::<u64>()
        } else {
            0
        };
        let parameters = encoder + head_params + lora_params;
        let top = tuning.top_layers.min(config.num_hidden_layers) as u64;
        let trainable = match tuning.strategy {
            Strategy::Full => encoder + head_params,
            Strategy::Head => head_params,
            Strategy::Top => top * count("encoder.layer.0.") + count("pooler.") + head_params,
            Strategy::Lora => lora_params + head_params,
        };
        let (b, s, a) = (
            batch_size as u64,
            max_length as u64,
            config.num_attention_heads as u64,
        );
        let tokens = b * s;
        // Q, K and V count once either way (the fused attention keeps them joined).
        let attention = if fused_attention {
            3 * b * a * s
        } else {
            3 * b * a * s * s
        };
        let per_layer = tokens * (9 * h + 3 * i) + attention;
        let embeddings = tokens * 4 * h;
        let head = tokens * (h + 2 * n_classes as u64);
        let kept = match tuning.strategy {
            Strategy::Full => l * per_layer + embeddings,
            Strategy::Head => 0,
            Strategy::Top => top * per_layer,
            // The adapters' input is the layer's own (kept anyway) unless dropout makes a new
            // one (and its mask); `x A` is kept for `B`'s gradient.
            Strategy::Lora => {
                let dropped = u64::from(tuning.lora.dropout > 0.0) * 2;
                let adapters: u64 = targets
                    .iter()
                    .map(|&t| dropped * lora_dims(t).0 + rank)
                    .sum();
                l * (per_layer + tokens * adapters)
            }
        };
        let activations = (kept + head) * F32;
        let moments = match optimizer {
            OptimizerKind::Adam | OptimizerKind::Adamw => 2,
            OptimizerKind::Sgd => 1,
        };
        let weights = parameters * F32;
        let gradients = trainable * F32;
        let candidates = [
            (
                "the word embedding".to_string(),
                config.vocab_size as u64 * h * F32,
            ),
            if fused_attention {
                (
                    "the query, key and value projections of one layer".to_string(),
                    tokens * 3 * h * F32,
                )
            } else {
                (
                    "the attention scores of one layer".to_string(),
                    b * a * s * s * F32,
                )
            },
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
            trainable: trainable as usize,
            tuning: tuning.describe(),
            weights,
            gradients,
            optimizer: gradients * moments,
            activations,
            total: weights + gradients * (1 + moments) + activations,
            largest,
            fused_attention,
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
            Self::for_bert(
                config,
                2,
                batch,
                self.max_length,
                OptimizerKind::Sgd,
                &Tuning::default(),
                self.fused_attention,
            )
            .largest
            .1 <= limit
        };
        let batch = (1..self.batch_size).rev().find(|&b| fits(b));
        let length = (2..self.max_length).rev().find(|&s| {
            Self::for_bert(
                config,
                2,
                self.batch_size,
                s,
                OptimizerKind::Sgd,
                &Tuning::default(),
                self.fused_attention,
            )
            .largest
            .1 <= limit
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
            "{}: {} of {} parameters train; estimated GPU memory at batch {} x {} tokens: {} total = weights {} + gradients {} + optimizer {} + activations {}; largest buffer: {} ({})",
            self.tuning,
            self.trainable,
            self.parameters,
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
        let e = MemoryEstimate::for_bert(
            &c,
            2,
            16,
            128,
            OptimizerKind::Adamw,
            &Tuning::default(),
            true,
        );
        // 22,713,216 encoder parameters with the pooler (sentence-transformers reports 22.7M)
        // plus a 2-class head.
        assert_eq!(e.parameters, 22_713_216 + 385 * 2);
        assert_eq!(e.weights, e.parameters as u64 * 4);
        assert_eq!(e.optimizer, 2 * e.weights);
        assert_eq!(e.largest.0, "the word embedding");
        assert_eq!(e.problem(&DeviceLimits::default(), &c), None);
        // At batch 64 x 512 the composed attention's scores (64*12*512*512*4 = 768 MiB) are too
        // large.
        let at = |batch, fused| {
            MemoryEstimate::for_bert(
                &c,
                2,
                batch,
                512,
                OptimizerKind::Adamw,
                &Tuning::default(),
                fused,
            )
        };
        let big = at(64, false);
        assert_eq!(big.largest.1, 64 * 12 * 512 * 512 * 4);
        let message = big.problem(&DeviceLimits::default(), &c).expect("too big");
        assert!(
            message.contains("attention scores")
                && message.contains("lower the batch size to 10 or less")
                && message.contains("max length to 209 or less"),
            "{message}"
        );
        // The fused self-attention keeps no scores: at batch 16 x 512 (scores of 192 MiB) the
        // largest buffer is a layer's feed-forward activations, 48 MiB; at 64 x 512 those are
        // 192 MiB and the limits follow from them.
        assert!(
            at(16, false)
                .problem(&DeviceLimits::default(), &c)
                .is_some()
        );
        let fused = at(16, true);
        assert_eq!(fused.largest.1, 16 * 512 * 1536 * 4);
        assert_eq!(fused.problem(&DeviceLimits::default(), &c), None);
        assert!(fused.activations < at(16, false).activations);
        let message = at(64, true)
            .problem(&DeviceLimits::default(), &c)
            .expect("too big");
        assert!(
            message.contains("feed-forward")
                && message.contains("lower the batch size to 42 or less")
                && message.contains("max length to 341 or less"),
            "{message}"
        );
        let tiny = DeviceLimits {
            max_storage_buffer_binding_size: 1 << 20,
            max_buffer_size: 1 << 20,
        };
        let message = e.problem(&tiny, &c).expect("embedding too big");
        assert!(message.contains("cannot hold this model"), "{message}");
        assert!(e.summary().contains("batch 16 x 128 tokens"));
        assert_eq!(e.trainable, e.parameters);
    }

    #[test]
    fn strategies_count_what_trains() {
        let c = minilm();
        let at = |tuning: &Tuning| {
            MemoryEstimate::for_bert(&c, 2, 16, 64, OptimizerKind::Adamw, tuning, true)
        };
        let full = at(&Tuning::default());
        let head = at(&Tuning {
            strategy: Strategy::Head,
            ..Tuning::default()
        });
        let top = at(&Tuning {
            strategy: Strategy::Top,
            ..Tuning::default()
        });
        let lora = at(&Tuning {
            strategy: Strategy::Lora,
            ..Tuning::default()
        });
        assert_eq!(head.trainable, 770);
        // One layer: 4 x (384^2 + 384) + 2 x 768 (LayerNorms) + 384 x 1536 + 1536 + 1536 x 384
        // + 384 = 1,774,464; the pooler 147,840.
        assert_eq!(top.trainable, 2 * 1_774_464 + 147_840 + 770);
        // Rank 8 on query and value of 6 layers: 6 x 2 x 8 x (384 + 384).
        assert_eq!(lora.trainable, 73_728 + 770);
        assert_eq!(lora.parameters, full.parameters + 73_728);
        assert_eq!(lora.optimizer, lora.trainable as u64 * 8);
        assert!(lora.optimizer * 100 < full.optimizer);
        assert!(head.activations < top.activations && top.activations < full.activations);
        assert!(lora.activations > top.activations);
        assert!(lora.total < full.total && head.total < top.total);
        assert!(
            lora.summary()
                .starts_with("LoRA r=8 alpha=16 on query, value: 74498 of")
        );
    }
}
