//! Parameter-efficient fine-tuning: which weights train ([`Tuning`]), and LoRA (Hu et al., 2021)
//! as PEFT computes it: `y = x W + b + (alpha / r) * dropout(x) A B`, with `A` `[d_in, r]` drawn
//! like PEFT's `lora_A` (Kaiming-uniform, bound `1 / sqrt(d_in)`) and `B` `[r, d_out]` zero, so
//! that an adapter starts as the identity.
//!
//! burn 0.22's own `Module::apply_lora` reparameterises the weight (`W + scale * A B`): it cannot
//! drop the adapter's input (PEFT's `lora_dropout`), it builds a dense `d_in x d_out` delta and
//! its gradient every step, and it draws `A` from the backend's generator (so backends would start
//! differently). [`AdaptedLinear`] adds the low-rank path on the activations instead; the frozen
//! weights still use burn's gradient switch (`set_require_grad(false)`), so they get no gradients
//! and no optimizer state.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Masks;
use crate::kernels;
use crate::rng::Rng;

/// The linear layers of an encoder layer that LoRA can adapt (PEFT `target_modules` names in
/// brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// Attention query (`query`).
    Query,
    /// Attention key (`key`).
    Key,
    /// Attention value (`value`).
    Value,
    /// Attention output projection (`attention.output.dense`).
    AttentionOutput,
    /// Feed-forward up projection (`intermediate.dense`).
    Intermediate,
    /// Feed-forward down projection (the layer's `output.dense`).
    Output,
}

impl LoraTarget {
    /// All of them, in layer order.
    pub const ALL: [Self; 6] = [
        Self::Query,
        Self::Key,
        Self::Value,
        Self::AttentionOutput,
        Self::Intermediate,
        Self::Output,
    ];

    /// The module's path inside `encoder.layer.{i}` (transformers' names).
    pub fn module_path(self) -> &'static str {
        match self {
            Self::Query => "attention.self.query",
            Self::Key => "attention.self.key",
            Self::Value => "attention.self.value",
            Self::AttentionOutput => "attention.output.dense",
            Self::Intermediate => "intermediate.dense",
            Self::Output => "output.dense",
        }
    }

    /// The target whose module path is `path`.
    pub fn from_module_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.module_path() == path)
    }

    /// The recipe's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Key => "key",
            Self::Value => "value",
            Self::AttentionOutput => "attention_output",
            Self::Intermediate => "intermediate",
            Self::Output => "output",
        }
    }
}

/// LoRA settings (PEFT's `LoraConfig` names in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update (`r`). Default 8.
    pub rank: usize,
    /// Scale numerator (`lora_alpha`): the update is scaled by `alpha / rank`. Default 16.
    pub alpha: f64,
    /// Dropout on the adapter's input during training (`lora_dropout`). Default 0.1.
    pub dropout: f64,
    /// Which linear layers of every encoder layer get an adapter (`target_modules`). Default
    /// query and value, as in the LoRA paper and PEFT's default for BERT.
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
            targets: vec![LoraTarget::Query, LoraTarget::Value],
        }
    }
}

impl LoraConfig {
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// # Errors
    /// A field out of range, named.
    pub fn validate(&self) -> crate::Result<()> {
        if self.rank == 0 {
            return Err(crate::Error::config(
                "text.tuning.lora.rank",
                "must be at least 1",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(crate::Error::config(
                "text.tuning.lora.alpha",
                "must be a positive number",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::config(
                "text.tuning.lora.dropout",
                "must be in [0, 1)",
            ));
        }
        if self.targets.is_empty() {
            return Err(crate::Error::config(
                "text.tuning.lora.targets",
                "name at least one of query, key, value, attention_output, intermediate, output",
            ));
        }
        Ok(())
    }
}

/// Which weights a fine-tuning run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Everything (default).
    #[default]
    Full,
    /// The classification head only; the encoder is frozen.
    Head,
    /// The top `top_layers` encoder layers (and the pooler) plus the head.
    Top,
    /// LoRA adapters on the chosen layers plus the head; the encoder is frozen.
    Lora,
}

/// How to fine-tune: a strategy and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// What trains. Default `full`.
    pub strategy: Strategy,
    /// Encoder layers trained with `top` (counted from the last). Default 2.
    pub top_layers: usize,
    /// LoRA settings, with `lora`.
    pub lora: LoraConfig,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            strategy: Strategy::Full,
            top_layers: 2,
            lora: LoraConfig::default(),
        }
    }
}

impl Tuning {
    /// # Errors
    /// A field out of range, named.
    pub fn validate(&self, layers: usize) -> crate::Result<()> {
        match self.strategy {
            Strategy::Top if self.top_layers == 0 || self.top_layers > layers => {
                Err(crate::Error::config(
                    "text.tuning.top_layers",
                    format!("must be between 1 and the model's {layers} layers"),
                ))
            }
            Strategy::Lora => self.lora.validate(),
            _ => Ok(()),
        }
    }

    /// A short description, e.g. `LoRA r=8 on query, value`.
    pub fn describe(&self) -> String {
        match self.strategy {
            Strategy::Full => "full fine-tuning".into(),
            Strategy::Head => "head only".into(),
            Strategy::Top => format!("top {} layers + head", self.top_layers),
            Strategy::Lora => format!(
                "LoRA r={} alpha={} on {}",
                self.lora.rank,
                self.lora.alpha,
                self.lora
                    .targets
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The trainable low-rank factors of one adapted layer.
#[derive(Module, Debug)]
pub struct LoraFactors {
    /// `[d_in, rank]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<2>>,
    /// `[rank, d_out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<2>>,
    /// `alpha / rank`.
    pub scale: f64,
    /// Dropout on the adapter's input.
    pub dropout: f64,
}

impl LoraFactors {
    /// Fresh factors as PEFT draws them: `A` Kaiming-uniform (bound `1 / sqrt(d_in)`) from
    /// `rng`, `B` zero.
    pub fn init(
        d_in: usize,
        d_out: usize,
        config: &LoraConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (d_in as f32).sqrt();
        let a: Vec<f32> = (0..d_in * config.rank)
            .map(|_| rng.uniform(-bound, bound))
            .collect();
        Self::from_values(
            a,
            vec![0.0; config.rank * d_out],
            [d_in, config.rank, d_out],
            config.scale(),
            config.dropout,
            device,
        )
    }

    /// Factors from values: `a` `[d_in, rank]` and `b` `[rank, d_out]`, row-major.
    pub fn from_values(
        a: Vec<f32>,
        b: Vec<f32>,
        [d_in, rank, d_out]: [usize; 3],
        scale: f64,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            a: Param::from_data(TensorData::new(a, [d_in, rank]), device),
            b: Param::from_data(TensorData::new(b, [rank, d_out]), device),
            scale,
            dropout,
        }
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.a.val().dims()[1]
    }

    /// `scale * A B`, `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// A linear layer with an optional LoRA adapter beside it.
#[derive(Module, Debug)]
pub struct AdaptedLinear {
    /// The (possibly frozen) layer.
    pub linear: Linear,
    /// The adapter, if any.
    pub lora: Option<LoraFactors>,
}

impl From<Linear> for AdaptedLinear {
    fn from(linear: Linear) -> Self {
        Self { linear, lora: None }
    }
}

impl AdaptedLinear {
    /// `x W + b`, plus `scale * dropout(x) A B` when adapted.
    pub fn forward<const D: usize>(&self, x: Tensor<D>, masks: &mut Masks<'_>) -> Tensor<D> {
        let y = if masks.half() {
            let y = masks.product(x.clone(), self.linear.weight.val());
            match &self.linear.bias {
                Some(bias) => y + bias.val().unsqueeze(),
                None => y,
            }
        } else if self.lora.is_none() {
            return masks.linear(&self.linear, x, false);
        } else {
            masks.linear(&self.linear, x.clone(), false)
        };
        match self.low_rank(x, masks) {
            Some((low, scale)) => add_scaled(y, low, scale),
            None => y,
        }
    }

    /// The adapter's low-rank product `dropout(x) A B` and the scale still to apply to it:
    /// `alpha / r` on burn's composed operations, 1 where the fused kernels (`kernels::lora`,
    /// where they apply and are allowed) applied it already; `None` (and no dropout mask drawn)
    /// when not adapted. One mask is drawn either way.
    pub fn low_rank<const D: usize>(
        &self,
        x: Tensor<D>,
        masks: &mut Masks<'_>,
    ) -> Option<(Tensor<D>, f64)> {
        let lora = self.lora.as_ref()?;
        if masks.fused() {
            let (a, b) = (lora.a.val(), lora.b.val());
            let flat = super::dropout::rows(&x);
            if kernels::lora::applies(&flat, &a, &b) {
                let mask = masks.draw(lora.dropout);
                let low = kernels::lora::low_rank(flat, a, b, mask, lora.scale as f32);
                return Some((super::dropout::unrows(low, x.dims()), 1.0));
            }
        }
        let x = masks.apply(x, lora.dropout);
        let low = x
            .matmul(lora.a.val().unsqueeze())
            .matmul(lora.b.val().unsqueeze());
        Some((low, lora.scale))
    }

    /// `[d_in, d_out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.linear.weight.val().dims()
    }

    /// The adapter folded into the weight (`W + scale * A B`), as a plain layer.
    pub fn merged(self) -> Linear {
        match self.lora {
            None => self.linear,
            Some(lora) => {
                let (id, w, _) = self.linear.weight.consume();
                let merged = w.detach() + lora.delta().detach();
                Linear {
                    weight: Param::initialized(id, merged),
                    bias: self.linear.bias,
                }
            }
        }
    }
}

/// `y + scale * low` (no multiply where the scale is 1: an adapter's product from the fused
/// kernels, scaled already).
pub(crate) fn add_scaled<const D: usize>(y: Tensor<D>, low: Tensor<D>, scale: f64) -> Tensor<D> {
    if scale == 1.0 {
        y + low
    } else {
        y + low * scale
    }
}

/// Counts parameters whose values track gradients (on an autodiff device).
struct Trainable {
    count: usize,
}

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.count += value.shape().num_elements();
        }
    }
}

/// Parameters of `module` that train (meaningful on an autodiff device).
pub fn trainable_parameters<M: Module>(module: &M) -> usize {
    let mut visitor = Trainable { count: 0 };
    module.visit(&mut visitor);
    visitor.count
}
