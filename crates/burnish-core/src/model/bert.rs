//! BERT-family encoders (BERT, MiniLM, and other BERT-shaped checkpoints) loaded from a Hugging
//! Face model folder: `config.json` and `model.safetensors`.
//!
//! Tensor names follow transformers' `BertModel`, with or without the `bert.` prefix:
//! `embeddings.{word,position,token_type}_embeddings.weight`, `embeddings.LayerNorm.{weight,bias}`,
//! `encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}`,
//! `encoder.layer.{i}.attention.output.{dense,LayerNorm}.*`,
//! `encoder.layer.{i}.intermediate.dense.*`, `encoder.layer.{i}.output.{dense,LayerNorm}.*`, and an
//! optional `pooler.dense.*`. Every name, dtype and shape is checked against the config before
//! anything is allocated on the device; tensors the encoder does not use (an MLM head,
//! `position_ids`) are listed, not loaded.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};

use super::activation::tanh;
use super::lora::{AdaptedLinear, LoraTarget};
use burn::prelude::*;
use burn::tensor::activation::relu;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use super::Masks;
use crate::{Error, Result};

/// The fields of a Hugging Face BERT `config.json` the encoder uses (others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Rows of the word embedding.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`hidden_size` must divide by it).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// `gelu` (exact, erf), `gelu_new` / `gelu_pytorch_tanh` (tanh approximation) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence the position embedding covers.
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) embedding.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (default 1e-12).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Dropout on hidden states in training (default 0.1).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities in training (default 0.1).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}

/// The activation of the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Gelu,
    GeluTanh,
    Relu,
}

impl BertConfig {
    /// Parse a `config.json`.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` and the missing or malformed field.
    pub fn from_json(source: &str, bytes: &[u8]) -> Result<Self> {
        // An architecture burnish does not have is named as such, not as a missing field.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
            && let Some(kind) = value.get("model_type").and_then(|m| m.as_str())
            && kind != "bert"
        {
            return Err(Error::data(
                source,
                format!(
                    "`model_type` is `{}`; burnish loads BERT-style encoders (`bert`) and GPT-2 language models (`gpt2`)",
                    crate::data::excerpt(kind)
                ),
            ));
        }
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::data(source, format!("not a BERT config.json: {e}")))?;
        config
            .validate()
            .map_err(|e| Error::data(source, e.to_string()))?;
        Ok(config)
    }

    fn act(&self) -> Option<Act> {
        match self.hidden_act.as_str() {
            "gelu" => Some(Act::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Act::GeluTanh),
            "relu" => Some(Act::Relu),
            _ => None,
        }
    }

    /// Check the fields against each other.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(Error::config(field, "expected at least 1, found 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "num_attention_heads",
                format!(
                    "hidden_size {} does not divide into {} heads",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.act().is_none() {
            return Err(Error::config(
                "hidden_act",
                format!(
                    "`{}` is not supported; expected gelu, gelu_new, gelu_pytorch_tanh or relu",
                    self.hidden_act
                ),
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(
                    field,
                    format!("expected a probability in [0, 1), found {p}"),
                ));
            }
        }
        Ok(())
    }

    /// Every tensor of the encoder (without prefix), with its Hugging Face shape; the pooler
    /// last.
    pub fn tensor_layout(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let mut specs = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![self.vocab_size, h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_position_embeddings, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab_size, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        let linear = |name: String, out: usize, inp: usize| {
            [
                (format!("{name}.weight"), vec![out, inp]),
                (format!("{name}.bias"), vec![out]),
            ]
        };
        let norm = |name: String| {
            [
                (format!("{name}.weight"), vec![h]),
                (format!("{name}.bias"), vec![h]),
            ]
        };
        for i in 0..self.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            for part in ["query", "key", "value"] {
                specs.extend(linear(format!("{p}.attention.self.{part}"), h, h));
            }
            specs.extend(linear(format!("{p}.attention.output.dense"), h, h));
            specs.extend(norm(format!("{p}.attention.output.LayerNorm")));
            specs.extend(linear(
                format!("{p}.intermediate.dense"),
                self.intermediate_size,
                h,
            ));
            specs.extend(linear(
                format!("{p}.output.dense"),
                h,
                self.intermediate_size,
            ));
            specs.extend(norm(format!("{p}.output.LayerNorm")));
        }
        specs.extend(linear("pooler.dense".into(), h, h));
        specs
    }
}

/// What loading a checkpoint found besides the encoder's tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadNotes {
    /// The name prefix the checkpoint uses (`""` or `"bert."`).
    pub prefix: String,
    /// Whether it has a pooler (`pooler.dense`).
    pub has_pooler: bool,
    /// Tensors that are not part of the encoder, not loaded (e.g. an MLM head).
    pub ignored: Vec<String>,
}

/// Values of a checkpoint's encoder tensors, checked, on the host, by unprefixed name.
#[derive(Debug, Clone)]
pub struct BertWeights {
    /// By the names of [`BertConfig::tensor_layout`], PyTorch layout.
    pub tensors: BTreeMap<String, Vec<f32>>,
    /// What else the file held.
    pub notes: LoadNotes,
}

impl BertWeights {
    /// Freshly initialised weights of `config`'s shape (transformers' init: normal with std
    /// 0.02, LayerNorm 1 and 0, biases 0), with a pooler; for tests and training from scratch.
    pub fn random(config: &BertConfig, seed: u64) -> Self {
        let mut rng = crate::rng::Rng::new(seed);
        let tensors = config
            .tensor_layout()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values = if name.ends_with("LayerNorm.weight") {
                    vec![1.0; n]
                } else if name.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    (0..n).map(|_| 0.02 * rng.normal()).collect()
                };
                (name, values)
            })
            .collect();
        Self {
            tensors,
            notes: LoadNotes {
                prefix: String::new(),
                has_pooler: true,
                ignored: Vec::new(),
            },
        }
    }

    /// Read and check the encoder's tensors from safetensors bytes: every name present (with or
    /// without `bert.`), F32, with the config's shape. Nothing is copied until all are checked.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` and the missing tensors, or the first with a wrong dtype or
    /// shape; a file that is not safetensors.
    pub fn from_safetensors(source: &str, bytes: &[u8], config: &BertConfig) -> Result<Self> {
        let fail = |reason: String| Error::data(source, reason);
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        let prefix = if names
            .iter()
            .any(|n| n == "bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let layout = config.tensor_layout();
        let pooler: Vec<&str> = ["pooler.dense.weight", "pooler.dense.bias"].into();
        let has_pooler = pooler
            .iter()
            .all(|p| names.iter().any(|n| *n == format!("{prefix}{p}")));
        let wanted: Vec<&(String, Vec<usize>)> = layout
            .iter()
            .filter(|(n, _)| has_pooler || !pooler.contains(&n.as_str()))
            .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(n, _)| !names.iter().any(|m| *m == format!("{prefix}{n}")))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(6).copied().collect();
            return Err(fail(format!(
                "{} tensors of a {}-layer BERT are missing: {}{}",
                missing.len(),
                config.num_hidden_layers,
                shown.join(", "),
                if missing.len() > 6 { ", ..." } else { "" }
            )));
        }
        for (name, shape) in &wanted {
            let view = st
                .tensor(&format!("{prefix}{name}"))
                .map_err(|e| fail(format!("tensor `{prefix}{name}`: {e}")))?;
            if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(fail(format!(
                    "tensor `{prefix}{name}` is {:?}; expected F32, F16 or BF16",
                    view.dtype()
                )));
            }
            if view.shape() != shape.as_slice() {
                return Err(fail(format!(
                    "tensor `{prefix}{name}` has shape {:?}, but config.json implies {shape:?}",
                    view.shape()
                )));
            }
        }
        let mut tensors = BTreeMap::new();
        for (name, _) in &wanted {
            let view = st
                .tensor(&format!("{prefix}{name}"))
                .map_err(|e| fail(format!("tensor `{prefix}{name}`: {e}")))?;
            let values = crate::export::decode_float(
                source,
                &format!("{prefix}{name}"),
                view.dtype(),
                view.data(),
            )?;
            tensors.insert(name.clone(), values);
        }
        let mut ignored: Vec<String> = names
            .into_iter()
            .filter(|n| {
                n.strip_prefix(prefix)
                    .is_none_or(|bare| !wanted.iter().any(|(w, _)| w == bare))
            })
            .collect();
        ignored.sort();
        Ok(Self {
            tensors,
            notes: LoadNotes {
                prefix: prefix.into(),
                has_pooler,
                ignored,
            },
        })
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    query: AdaptedLinear,
    key: AdaptedLinear,
    value: AdaptedLinear,
    attention_out: AdaptedLinear,
    attention_norm: LayerNorm,
    intermediate: AdaptedLinear,
    output: AdaptedLinear,
    output_norm: LayerNorm,
}

impl BertLayer {
    /// The linear layer LoRA calls `target`.
    pub fn target(&self, target: LoraTarget) -> &AdaptedLinear {
        match target {
            LoraTarget::Query => &self.query,
            LoraTarget::Key => &self.key,
            LoraTarget::Value => &self.value,
            LoraTarget::AttentionOutput => &self.attention_out,
            LoraTarget::Intermediate => &self.intermediate,
            LoraTarget::Output => &self.output,
        }
    }

    /// See [`BertLayer::target`].
    pub fn target_mut(&mut self, target: LoraTarget) -> &mut AdaptedLinear {
        match target {
            LoraTarget::Query => &mut self.query,
            LoraTarget::Key => &mut self.key,
            LoraTarget::Value => &mut self.value,
            LoraTarget::AttentionOutput => &mut self.attention_out,
            LoraTarget::Intermediate => &mut self.intermediate,
            LoraTarget::Output => &mut self.output,
        }
    }
}

/// A BERT encoder: embeddings, `num_hidden_layers` post-norm layers, an optional pooler.
#[derive(Module, Debug)]
pub struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    pooler: Option<Linear>,
    heads: usize,
    /// 0 gelu (erf), 1 gelu (tanh), 2 relu.
    act: usize,
    hidden_dropout: f64,
    attention_dropout: f64,
    /// The LayerNorms' epsilon (burn's `LayerNorm` does not say it).
    norm_eps: f64,
}

/// The inputs of a batch of sequences, padded to one length.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Token ids `[batch, len]`.
    pub ids: Tensor<2, Int>,
    /// Segment ids `[batch, len]`.
    pub type_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding, `[batch, len]`.
    pub mask: Tensor<2>,
}

fn take(weights: &mut BertWeights, name: &str) -> Vec<f32> {
    weights.tensors.remove(name).unwrap_or_default()
}

fn linear_from(
    weights: &mut BertWeights,
    name: &str,
    out: usize,
    inp: usize,
    device: &Device,
) -> Linear {
    let w = take(weights, &format!("{name}.weight"));
    let b = take(weights, &format!("{name}.bias"));
    Linear {
        weight: Param::from_data(
            TensorData::new(super::classifier::transpose(&w, out, inp), [inp, out]),
            device,
        ),
        bias: Some(Param::from_data(TensorData::new(b, [out]), device)),
    }
}

fn norm_from(
    weights: &mut BertWeights,
    name: &str,
    h: usize,
    eps: f64,
    device: &Device,
) -> LayerNorm {
    let mut norm = LayerNormConfig::new(h).with_epsilon(eps).init(device);
    norm.gamma = Param::from_data(
        TensorData::new(take(weights, &format!("{name}.weight")), [h]),
        device,
    );
    norm.beta = Some(Param::from_data(
        TensorData::new(take(weights, &format!("{name}.bias")), [h]),
        device,
    ));
    norm
}

fn embedding_from(
    weights: &mut BertWeights,
    name: &str,
    rows: usize,
    h: usize,
    device: &Device,
) -> Embedding {
    Embedding {
        weight: Param::from_data(TensorData::new(take(weights, name), [rows, h]), device),
    }
}

impl Bert {
    /// Build the encoder on `device` from checked weights.
    ///
    /// # Errors
    /// When the config is invalid.
    pub fn from_weights(
        config: &BertConfig,
        mut weights: BertWeights,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let w = &mut weights;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                BertLayer {
                    query: linear_from(w, &format!("{p}.attention.self.query"), h, h, device)
                        .into(),
                    key: linear_from(w, &format!("{p}.attention.self.key"), h, h, device).into(),
                    value: linear_from(w, &format!("{p}.attention.self.value"), h, h, device)
                        .into(),
                    attention_out: linear_from(
                        w,
                        &format!("{p}.attention.output.dense"),
                        h,
                        h,
                        device,
                    )
                    .into(),
                    attention_norm: norm_from(
                        w,
                        &format!("{p}.attention.output.LayerNorm"),
                        h,
                        eps,
                        device,
                    ),
                    intermediate: linear_from(
                        w,
                        &format!("{p}.intermediate.dense"),
                        config.intermediate_size,
                        h,
                        device,
                    )
                    .into(),
                    output: linear_from(
                        w,
                        &format!("{p}.output.dense"),
                        h,
                        config.intermediate_size,
                        device,
                    )
                    .into(),
                    output_norm: norm_from(w, &format!("{p}.output.LayerNorm"), h, eps, device),
                }
            })
            .collect();
        let pooler = w
            .notes
            .has_pooler
            .then(|| linear_from(w, "pooler.dense", h, h, device));
        Ok(Self {
            word_embeddings: embedding_from(
                w,
                "embeddings.word_embeddings.weight",
                config.vocab_size,
                h,
                device,
            ),
            position_embeddings: embedding_from(
                w,
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
                h,
                device,
            ),
            token_type_embeddings: embedding_from(
                w,
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                h,
                device,
            ),
            embeddings_norm: norm_from(w, "embeddings.LayerNorm", h, eps, device),
            layers,
            pooler,
            heads: config.num_attention_heads,
            act: match config.act() {
                Some(Act::GeluTanh) => 1,
                Some(Act::Relu) => 2,
                _ => 0,
            },
            hidden_dropout: config.hidden_dropout_prob,
            attention_dropout: config.attention_probs_dropout_prob,
            norm_eps: eps,
        })
    }

    /// Hidden states `[batch, len, hidden]` (the last layer's), dropout from `masks`.
    pub fn forward(&self, input: &EncoderInput, masks: &mut Masks<'_>) -> Tensor<3> {
        let [batch, len] = input.ids.dims();
        let device = input.ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let x = self.word_embeddings.forward(input.ids.clone())
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(input.type_ids.clone());
        let x = masks.layer_norm(&self.embeddings_norm, self.norm_eps, x);
        let mut x = masks.apply(x, self.hidden_dropout);
        // 0 where attended, a large negative number at padding: added to the scores.
        let bias: Tensor<4> = ((input.mask.clone() - 1.0) * 1e9).reshape([batch, 1, 1, len]);
        for layer in &self.layers {
            x = self.layer(layer, x, bias.clone(), masks);
        }
        x
    }

    fn layer(
        &self,
        l: &BertLayer,
        x: Tensor<3>,
        bias: Tensor<4>,
        masks: &mut Masks<'_>,
    ) -> Tensor<3> {
        let dh = x.dims()[2] / self.heads;
        let projections = masks.projections([&l.query, &l.key, &l.value], x.clone());
        let context = masks.self_attention(
            projections,
            self.heads,
            1.0 / (dh as f64).sqrt(),
            bias,
            self.attention_dropout,
        );
        let x = masks.residual_norm(
            &l.attention_out,
            context,
            x,
            self.hidden_dropout,
            &l.attention_norm,
            self.norm_eps,
        );
        let inner = l.intermediate.forward(x.clone(), masks);
        let inner = match self.act {
            1 => masks.gelu(inner, true),
            2 => relu(inner),
            _ => masks.gelu(inner, false),
        };
        masks.residual_norm(
            &l.output,
            inner,
            x,
            self.hidden_dropout,
            &l.output_norm,
            self.norm_eps,
        )
    }

    /// The encoder layers.
    pub fn layers(&self) -> &[BertLayer] {
        &self.layers
    }

    /// See [`Bert::layers`].
    pub fn layers_mut(&mut self) -> &mut [BertLayer] {
        &mut self.layers
    }

    /// Freeze (or unfreeze) everything below the top `top` layers: the embeddings and the lower
    /// layers. The pooler and the top layers keep their setting.
    pub fn freeze_below(self, top: usize) -> Self {
        let n = self.layers.len();
        let cut = n.saturating_sub(top);
        Self {
            word_embeddings: self.word_embeddings.no_grad(),
            position_embeddings: self.position_embeddings.no_grad(),
            token_type_embeddings: self.token_type_embeddings.no_grad(),
            embeddings_norm: self.embeddings_norm.no_grad(),
            layers: self
                .layers
                .into_iter()
                .enumerate()
                .map(|(i, l)| if i < cut { l.no_grad() } else { l })
                .collect(),
            ..self
        }
    }

    /// Every LoRA adapter folded into its weight.
    pub fn merged(self) -> Self {
        Self {
            layers: self
                .layers
                .into_iter()
                .map(|l| BertLayer {
                    query: l.query.merged().into(),
                    key: l.key.merged().into(),
                    value: l.value.merged().into(),
                    attention_out: l.attention_out.merged().into(),
                    attention_norm: l.attention_norm,
                    intermediate: l.intermediate.merged().into(),
                    output: l.output.merged().into(),
                    output_norm: l.output_norm,
                })
                .collect(),
            ..self
        }
    }

    /// Every tensor under transformers' names (no prefix) with PyTorch's shapes, read back
    /// asynchronously (so it works in the browser), in [`BertConfig::tensor_layout`] order; the
    /// pooler only when the model has one.
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn named_tensors(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        let mut out = Vec::new();
        async fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
            t.into_data_async()
                .await
                .map_err(Error::readback("weights"))?
                .try_to_vec::<f32>()
                .map_err(|e| Error::Readback {
                    what: "weights",
                    reason: format!("{e:?}"),
                })
        }
        async fn linear(
            name: String,
            l: &Linear,
            out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
        ) -> Result<()> {
            adapted(name, l, None, out).await
        }
        // The weight as it acts: LoRA adapters folded in.
        async fn adapted(
            name: String,
            l: &Linear,
            lora: Option<&super::lora::LoraFactors>,
            out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
        ) -> Result<()> {
            let [d_in, d_out] = l.weight.val().dims();
            let weight = match lora {
                Some(lora) => l.weight.val() + lora.delta(),
                None => l.weight.val(),
            };
            let w = read(weight).await?;
            out.push((
                format!("{name}.weight"),
                vec![d_out, d_in],
                super::classifier::transpose(&w, d_in, d_out),
            ));
            let b = match &l.bias {
                Some(b) => read(b.val()).await?,
                None => vec![0.0; d_out],
            };
            out.push((format!("{name}.bias"), vec![d_out], b));
            Ok(())
        }
        async fn norm(
            name: String,
            n: &LayerNorm,
            out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
        ) -> Result<()> {
            let [h] = n.gamma.val().dims();
            out.push((
                format!("{name}.weight"),
                vec![h],
                read(n.gamma.val()).await?,
            ));
            let b = match &n.beta {
                Some(b) => read(b.val()).await?,
                None => vec![0.0; h],
            };
            out.push((format!("{name}.bias"), vec![h], b));
            Ok(())
        }
        for (name, e) in [
            ("embeddings.word_embeddings.weight", &self.word_embeddings),
            (
                "embeddings.position_embeddings.weight",
                &self.position_embeddings,
            ),
            (
                "embeddings.token_type_embeddings.weight",
                &self.token_type_embeddings,
            ),
        ] {
            let dims = e.weight.val().dims();
            out.push((name.to_string(), dims.to_vec(), read(e.weight.val()).await?));
        }
        norm(
            "embeddings.LayerNorm".into(),
            &self.embeddings_norm,
            &mut out,
        )
        .await?;
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            adapted(
                format!("{p}.attention.self.query"),
                &l.query.linear,
                l.query.lora.as_ref(),
                &mut out,
            )
            .await?;
            adapted(
                format!("{p}.attention.self.key"),
                &l.key.linear,
                l.key.lora.as_ref(),
                &mut out,
            )
            .await?;
            adapted(
                format!("{p}.attention.self.value"),
                &l.value.linear,
                l.value.lora.as_ref(),
                &mut out,
            )
            .await?;
            adapted(
                format!("{p}.attention.output.dense"),
                &l.attention_out.linear,
                l.attention_out.lora.as_ref(),
                &mut out,
            )
            .await?;
            norm(
                format!("{p}.attention.output.LayerNorm"),
                &l.attention_norm,
                &mut out,
            )
            .await?;
            adapted(
                format!("{p}.intermediate.dense"),
                &l.intermediate.linear,
                l.intermediate.lora.as_ref(),
                &mut out,
            )
            .await?;
            adapted(
                format!("{p}.output.dense"),
                &l.output.linear,
                l.output.lora.as_ref(),
                &mut out,
            )
            .await?;
            norm(format!("{p}.output.LayerNorm"), &l.output_norm, &mut out).await?;
        }
        if let Some(p) = &self.pooler {
            linear("pooler.dense".into(), p, &mut out).await?;
        }
        Ok(out)
    }

    /// Hidden width.
    pub fn hidden_size(&self) -> usize {
        self.word_embeddings.weight.val().dims()[1]
    }

    /// The pooled `[CLS]` state `[batch, hidden]` (`tanh(dense(h[:, 0]))`), when the checkpoint
    /// has a pooler.
    pub fn pool_cls(&self, hidden: Tensor<3>) -> Option<Tensor<2>> {
        let [batch, _, h] = hidden.dims();
        let cls: Tensor<2> = hidden.narrow(1, 0, 1).reshape([batch, h]);
        self.pooler.as_ref().map(|p| tanh(p.forward(cls)))
    }

    /// The mean of the hidden states over the real tokens, `[batch, hidden]`.
    pub fn pool_mean(hidden: Tensor<3>, mask: &Tensor<2>) -> Tensor<2> {
        let [batch, len, h] = hidden.dims();
        let m: Tensor<3> = mask.clone().reshape([batch, len, 1]);
        let summed: Tensor<2> = (hidden * m.clone()).sum_dim(1).reshape([batch, h]);
        let counts: Tensor<2> = m.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
        summed / counts
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny_config() -> BertConfig {
        BertConfig {
            vocab_size: 12,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            hidden_act: "gelu".into(),
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
        }
    }

    /// The tiny model as safetensors bytes, with `prefix` on every name, and `edit` applied.
    fn file(prefix: &str, edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
        let config = tiny_config();
        let w = BertWeights::random(&config, 1);
        let mut entries: Vec<(String, Vec<usize>, Vec<f32>)> = config
            .tensor_layout()
            .into_iter()
            .map(|(n, shape)| (format!("{prefix}{n}"), shape, w.tensors[&n].clone()))
            .collect();
        edit(&mut entries);
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = entries
            .into_iter()
            .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
                )
            })
            .collect();
        safetensors::serialize(views, None).expect("serialise")
    }

    #[test]
    fn checkpoints_load_with_or_without_prefix_and_errors_name_tensors() {
        let config = tiny_config();
        let plain = BertWeights::from_safetensors("m", &file("", |_| {}), &config).expect("plain");
        assert_eq!(plain.notes.prefix, "");
        let prefixed = BertWeights::from_safetensors(
            "m",
            &file("bert.", |e| {
                e.push(("cls.predictions.bias".into(), vec![12], vec![0.0; 12]));
            }),
            &config,
        )
        .expect("prefixed");
        assert_eq!(prefixed.notes.prefix, "bert.");
        assert_eq!(prefixed.notes.ignored, ["cls.predictions.bias"]);
        assert_eq!(prefixed.tensors, plain.tensors);
        let no_pooler = BertWeights::from_safetensors(
            "m",
            &file("", |e| e.retain(|(n, _, _)| !n.starts_with("pooler"))),
            &config,
        )
        .expect("no pooler");
        assert!(!no_pooler.notes.has_pooler);
        let err = BertWeights::from_safetensors(
            "m.safetensors",
            &file("", |e| e.retain(|(n, _, _)| !n.contains("layer.1.output"))),
            &config,
        )
        .expect_err("missing")
        .to_string();
        assert!(
            err.contains("m.safetensors")
                && err.contains(
                    "4 tensors of a 2-layer BERT are missing: encoder.layer.1.output.dense.weight"
                ),
            "{err}"
        );
        let err = BertWeights::from_safetensors(
            "m",
            &file("", |e| {
                e[0].1 = vec![13, 8];
                e[0].2.extend([0.0; 8]);
            }),
            &config,
        )
        .expect_err("shape")
        .to_string();
        assert!(
            err.contains("`embeddings.word_embeddings.weight` has shape [13, 8], but config.json implies [12, 8]"),
            "{err}"
        );
        let err = BertConfig::from_json("config.json", br#"{"vocab_size": 3}"#)
            .expect_err("fields")
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("hidden_size"),
            "{err}"
        );
    }

    /// With the fused kernels (the packed query/key/value projection, self-attention with the
    /// padding mask, the residual joins and layer norms, GELU in both forms, dropout) on wgpu
    /// the encoder gives the hidden states and every parameter's gradient that burn's composed
    /// operations give on the same device with the same dropout masks, through the kernels:
    /// full fine-tuning, and LoRA on two and on all three projections.
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_fused_kernels_give_the_composed_states_and_gradients() {
        use burn::optim::GradientsParams;

        use crate::kernels::test_util::{assert_close, launched, param_grads, read};
        use crate::model::lora::LoraFactors;
        use crate::rng::Rng;
        let device = crate::kernels::test_device().autodiff();
        for act in ["gelu", "gelu_new"] {
            // Dropout everywhere: the fused paths must draw and apply the same masks.
            let config = BertConfig {
                hidden_act: act.into(),
                hidden_dropout_prob: 0.2,
                attention_probs_dropout_prob: 0.2,
                ..tiny_config()
            };
            let plain = Bert::from_weights(&config, BertWeights::random(&config, 5), &device)
                .expect("bert");
            // LoRA on the query and value (frozen weights, PEFT's default) with dropout on the
            // adapters' input, and on all three.
            let adapted = |targets: &[LoraTarget]| {
                let mut bert = plain.clone().no_grad();
                let mut rng = Rng::new(13);
                for layer in bert.layers_mut() {
                    for &t in targets {
                        let draw = |n: usize, rng: &mut Rng| -> Vec<f32> {
                            (0..n).map(|_| 0.5 * rng.normal()).collect()
                        };
                        let (a, b) = (draw(8 * 2, &mut rng), draw(2 * 8, &mut rng));
                        let f = LoraFactors::from_values(a, b, [8, 2, 8], 1.5, 0.25, &device);
                        layer.target_mut(t).lora = Some(f.set_require_grad(true));
                    }
                }
                bert
            };
            let models = [
                ("full", plain.clone()),
                ("lora", adapted(&[LoraTarget::Query, LoraTarget::Value])),
                (
                    "lora qkv",
                    adapted(&[LoraTarget::Query, LoraTarget::Key, LoraTarget::Value]),
                ),
            ];
            for (tuning, bert) in models {
                let input = EncoderInput {
                    ids: Tensor::from_data(
                        TensorData::new(vec![1i64, 5, 6, 2, 0, 0, 3, 4, 7, 8, 9, 2], [2, 6]),
                        &device,
                    ),
                    type_ids: Tensor::from_data(TensorData::new(vec![0i64; 12], [2, 6]), &device),
                    mask: Tensor::from_data(
                        TensorData::new(
                            vec![1.0f32, 1., 1., 1., 0., 0., 1., 1., 1., 1., 1., 1.],
                            [2, 6],
                        ),
                        &device,
                    ),
                };
                let upstream: Vec<f32> = (0..2 * 6 * 8).map(|i| (i as f32).cos()).collect();
                let run = |fused: bool| {
                    let before = launched();
                    let mut rng = Rng::new(7);
                    let masks = &mut Masks::from(&mut rng).with_fused_kernels(fused);
                    let states = bert.forward(&input, masks);
                    let weights = Tensor::<3>::from_data(
                        TensorData::new(upstream.clone(), [2, 6, 8]),
                        &device,
                    );
                    let grads = GradientsParams::from_grads(
                        (states.clone() * weights).sum().backward(),
                        &bert,
                    );
                    (
                        read(states),
                        param_grads(&bert, &grads),
                        launched() - before,
                    )
                };
                let what = format!("{act}, {tuning}");
                let (fused, fused_grads, fused_launches) = run(true);
                let (composed, composed_grads, composed_launches) = run(false);
                assert_close(&format!("{what}: states"), &fused, &composed, 1e-4, 1e-2);
                // All gradients as one list: some (the key biases') are rounding noise around 0,
                // judged against the model's largest gradients.
                assert_close(
                    &format!("{what}: gradients"),
                    &fused_grads.concat(),
                    &composed_grads.concat(),
                    1e-3,
                    1e-2,
                );
                // Full, forward: five layer norms (the embeddings', and two a layer with the
                // residual join, its bias and dropout), the embeddings' dropout, two packed
                // projections (pack, product with the bias), two self-attentions (their dropout
                // inside), two GELUs, and three products a layer (`kernels::linear`: the
                // attention's output, the feed-forward layers'); backward: two kernels a layer
                // norm, a self-attention and a product, one a GELU and the dropout, three a
                // projection (the input's and weights' gradients, the unpack).
                // LoRA: each adapter adds its two products forward (`kernels::lora`, the
                // dropout inside), and the projections their parts' pass (the bias and the
                // adapters' products added after the product); backward, the frozen layer
                // norms skip their parameters' kernel, the embeddings' norm and dropout
                // everything (nothing below trains), the frozen products and projections their
                // weights' gradients (the first projection's input's too: its input is the
                // embeddings'), the adapters' cut in each projection, and each adapter's two
                // (`dt`, the factors' gradients) plus its input's in the second layer.
                let full = (14 + 2 * 3) + (10 + 4 + 2 * 2 * 3 + 2 + 1 + 2 * 3);
                let adapters = |per_layer: usize| {
                    (14 + 2 * 3 + 2 + 2 * 2 * per_layer)
                        + (4 + 4 + 2 * 3 + 1 + 2 + 2 + 2 * 2 * per_layer + per_layer)
                };
                let want = match tuning {
                    "full" => full,
                    "lora" => adapters(2),
                    _ => adapters(3),
                };
                assert_eq!((fused_launches, composed_launches), (want, 0), "{what}");
            }
        }
    }

    #[test]
    fn padding_does_not_change_the_real_tokens_states() {
        let device = Device::flex();
        let config = tiny_config();
        let bert =
            Bert::from_weights(&config, BertWeights::random(&config, 3), &device).expect("bert");
        let input = |ids: Vec<i64>, mask: Vec<f32>| {
            let n = ids.len();
            EncoderInput {
                ids: Tensor::from_data(TensorData::new(ids, [1, n]), &device),
                type_ids: Tensor::from_data(TensorData::new(vec![0i64; n], [1, n]), &device),
                mask: Tensor::from_data(TensorData::new(mask, [1, n]), &device),
            }
        };
        let short = bert.forward(&input(vec![1, 5, 6, 2], vec![1.0; 4]), &mut Masks::none());
        let padded = bert.forward(
            &input(vec![1, 5, 6, 2, 0, 0], vec![1., 1., 1., 1., 0., 0.]),
            &mut Masks::none(),
        );
        let a = short.into_data().try_to_vec::<f32>().expect("f32");
        let b: Vec<f32> = padded
            .narrow(1, 0, 4)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }
}
