//! Sequence classification on a BERT encoder: pool, dropout, linear (transformers'
//! `BertForSequenceClassification` when pooling is `cls` and the checkpoint has a pooler).

use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Masks;
use super::bert::{Bert, EncoderInput};
use crate::rng::Rng;

/// How a sequence becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The `[CLS]` state through the checkpoint's pooler (dense + tanh), or as it is when the
    /// checkpoint has none (default; what transformers does).
    #[default]
    Cls,
    /// The mean of the states of the real tokens (what sentence-transformers models such as
    /// MiniLM were trained with).
    Mean,
}

/// An encoder with a classification head.
#[derive(Module, Debug)]
pub struct BertClassifier {
    /// The pretrained encoder.
    pub bert: Bert,
    head: Linear,
    dropout: f64,
    mean: bool,
}

impl BertClassifier {
    /// A fresh head of `n_classes` on `bert`, drawn from `seed` (transformers' init: normal, std
    /// 0.02, zero bias).
    pub fn new(
        bert: Bert,
        n_classes: usize,
        pooling: Pooling,
        dropout: f64,
        seed: u64,
        device: &Device,
    ) -> Self {
        let h = bert.hidden_size();
        let mut rng = Rng::new(seed);
        let w: Vec<f32> = (0..h * n_classes).map(|_| 0.02 * rng.normal()).collect();
        let head = Linear {
            weight: burn::module::Param::from_data(TensorData::new(w, [h, n_classes]), device),
            bias: Some(burn::module::Param::from_data(
                TensorData::new(vec![0.0f32; n_classes], [n_classes]),
                device,
            )),
        };
        Self {
            bert,
            head,
            dropout,
            mean: pooling == Pooling::Mean,
        }
    }

    /// Logits `[batch, n_classes]`.
    pub fn forward(&self, input: &EncoderInput, masks: &mut Masks<'_>) -> Tensor<2> {
        let hidden = self.bert.forward(input, masks);
        let pooled = if self.mean {
            Bert::pool_mean(hidden, &input.mask)
        } else {
            let [batch, _, h] = hidden.dims();
            let raw: Tensor<2> = hidden.clone().narrow(1, 0, 1).reshape([batch, h]);
            self.bert.pool_cls(hidden).unwrap_or(raw)
        };
        self.head.forward(masks.apply(pooled, self.dropout))
    }

    /// Decoupled weight decay on the encoder's and the head's matrices (see [`Bert::decay`]).
    pub fn decay(self, factor: f32) -> Self {
        Self {
            bert: self.bert.decay(factor),
            head: Linear {
                weight: super::bert::decay_param(self.head.weight, factor),
                bias: self.head.bias,
            },
            ..self
        }
    }
}
