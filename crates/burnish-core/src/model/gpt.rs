//! A GPT-style decoder, laid out as GPT-2 (so that an export is a `GPT2LMHeadModel` folder):
//! token and learned position embeddings, pre-norm blocks of causal self-attention (one fused
//! `c_attn` projection to query, key and value) and a GELU (tanh) MLP, a final LayerNorm, and the
//! language-model head tied to the token embedding. Weights are drawn on the host (normal, std
//! 0.02; the residual projections scaled by `1 / sqrt(2 * layers)` as GPT-2 does).
//!
//! [`Gpt::forward`] runs a whole window; with a [`KvCache`] it runs only the new positions and
//! appends their keys and values, so generating a token costs one position, not a re-run.
//! Its linear layers are [`AdaptedLinear`]s, so LoRA applies to it as to the encoders.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::lora::{AdaptedLinear, LoraFactors};
use super::{Masks, Projections};
use crate::rng::Rng;
use crate::{Error, Result};

/// The decoder's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptConfig {
    /// Tokens in the vocabulary (set from the tokenizer).
    pub vocab_size: usize,
    /// Longest window, in tokens (GPT-2's `n_positions`). Default 128.
    pub context: usize,
    /// Blocks. Default 4.
    pub layers: usize,
    /// Attention heads per block. Default 4.
    pub heads: usize,
    /// Width. Default 128.
    pub hidden: usize,
    /// Dropout on embeddings, attention probabilities and residual branches. Default 0.1.
    pub dropout: f64,
}

impl Default for GptConfig {
    fn default() -> Self {
        Self {
            vocab_size: 0,
            context: 128,
            layers: 4,
            heads: 4,
            hidden: 128,
            dropout: 0.1,
        }
    }
}

impl GptConfig {
    /// # Errors
    /// A field out of range, named.
    pub fn validate(&self) -> Result<()> {
        let field = |name: &'static str, ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(name, what.to_string()))
            }
        };
        field("gpt.vocab_size", self.vocab_size > 0, "must be at least 1")?;
        field("gpt.context", self.context >= 2, "must be at least 2")?;
        field("gpt.layers", self.layers >= 1, "must be at least 1")?;
        field("gpt.heads", self.heads >= 1, "must be at least 1")?;
        field(
            "gpt.hidden",
            self.hidden >= self.heads && self.hidden.is_multiple_of(self.heads),
            "must be a multiple of `heads`",
        )?;
        field(
            "gpt.dropout",
            (0.0..1.0).contains(&self.dropout),
            "must be in [0, 1)",
        )
    }

    /// Parameters of the model.
    pub fn parameters(&self) -> usize {
        let (v, t, h, l) = (self.vocab_size, self.context, self.hidden, self.layers);
        let block =
            2 * 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h);
        v * h + t * h + l * block + 2 * h
    }

    /// Draw the weights from `seed` and build the model on `device`.
    ///
    /// # Errors
    /// An invalid config.
    pub fn init(&self, seed: u64, device: &Device) -> Result<Gpt> {
        self.validate()?;
        let mut rng = Rng::new(seed);
        let h = self.hidden;
        let residual = 0.02 / ((2 * self.layers) as f32).sqrt();
        let mut normal = |rows: usize, cols: usize, std: f32| {
            let values: Vec<f32> = (0..rows * cols).map(|_| std * rng.normal()).collect();
            Param::from_data(TensorData::new(values, [rows, cols]), device)
        };
        let mut linear = |d_in: usize, d_out: usize, std: f32| -> AdaptedLinear {
            Linear {
                weight: normal(d_in, d_out, std),
                bias: Some(Param::from_data(
                    TensorData::new(vec![0.0f32; d_out], [d_out]),
                    device,
                )),
            }
            .into()
        };
        let blocks = (0..self.layers)
            .map(|_| GptBlock {
                ln1: LayerNormConfig::new(h).with_epsilon(NORM_EPS).init(device),
                attn: linear(h, 3 * h, 0.02),
                proj: linear(h, h, residual),
                ln2: LayerNormConfig::new(h).with_epsilon(NORM_EPS).init(device),
                fc: linear(h, 4 * h, 0.02),
                out: linear(4 * h, h, residual),
            })
            .collect();
        let mut rng = Rng::new(seed ^ 0x7774_6500);
        let mut embedding = |rows: usize, std: f32| Embedding {
            weight: {
                let values: Vec<f32> = (0..rows * h).map(|_| std * rng.normal()).collect();
                Param::from_data(TensorData::new(values, [rows, h]), device)
            },
        };
        Ok(Gpt {
            wte: embedding(self.vocab_size, 0.02),
            wpe: embedding(self.context, 0.01),
            blocks,
            ln_f: LayerNormConfig::new(h).with_epsilon(NORM_EPS).init(device),
            heads: self.heads,
            dropout: self.dropout,
        })
    }
}

/// The LayerNorms' epsilon (GPT-2's).
const NORM_EPS: f64 = 1e-5;

/// One pre-norm block.
#[derive(Module, Debug)]
pub struct GptBlock {
    ln1: LayerNorm,
    /// Query, key and value in one projection `[hidden, 3 * hidden]` (GPT-2's `c_attn`).
    pub attn: AdaptedLinear,
    /// The attention output projection (`attn.c_proj`).
    pub proj: AdaptedLinear,
    ln2: LayerNorm,
    /// The MLP's up projection (`mlp.c_fc`).
    pub fc: AdaptedLinear,
    /// The MLP's down projection (`mlp.c_proj`).
    pub out: AdaptedLinear,
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Gpt {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<GptBlock>,
    ln_f: LayerNorm,
    heads: usize,
    dropout: f64,
}

/// The packed query/key/value projections of the positions seen so far, per block
/// (`[batch, seen, 3 * hidden]`: the keys and values the next positions attend to).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Tensor<3>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gpt {
    /// Longest window.
    pub fn context(&self) -> usize {
        self.wpe.weight.val().dims()[0]
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.wte.weight.val().dims()[0]
    }

    /// The blocks.
    pub fn blocks(&self) -> &[GptBlock] {
        &self.blocks
    }

    /// Logits `[batch, len, vocab]` of the next token after every position of `ids`
    /// (`[batch, len]`). With `cache`, `ids` continue the cached positions and their keys and
    /// values are appended; without, they start at position 0. Dropout from `masks`.
    ///
    /// # Panics
    /// When the positions would pass [`Gpt::context`] (callers keep windows within it).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        masks: &mut Masks<'_>,
    ) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let total = start + len;
        assert!(total <= self.context(), "window past the context");
        let positions = Tensor::<1, Int>::arange(start as i64..total as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let x = self.wte.forward(ids) + self.wpe.forward(positions);
        let mut x = masks.apply(x, self.dropout);
        // Query `i` (at position start + i) sees keys 0..=start + i.
        let bias: Vec<f32> = (0..len)
            .flat_map(|i| (0..total).map(move |j| if j > start + i { -1e9 } else { 0.0 }))
            .collect();
        let bias = Tensor::<2>::from_data(TensorData::new(bias, [len, total]), &device)
            .reshape([1, 1, len, total]);
        let h = x.dims()[2];
        let dh = h / self.heads;
        for (i, block) in self.blocks.iter().enumerate() {
            let qkv = block
                .attn
                .forward(masks.layer_norm(&block.ln1, NORM_EPS, x.clone()), masks);
            let scale = 1.0 / (dh as f64).sqrt();
            let context = match cache.as_deref_mut() {
                None => masks.self_attention(
                    Projections::Packed(qkv),
                    self.heads,
                    scale,
                    bias.clone(),
                    self.dropout,
                ),
                // Generation: the projections of every position so far, the cache's and the
                // new ones.
                Some(cache) => {
                    let all = match cache.layers.get(i) {
                        Some(previous) => Tensor::cat(vec![previous.clone(), qkv], 1),
                        None => qkv,
                    };
                    if i < cache.layers.len() {
                        cache.layers[i] = all.clone();
                    } else {
                        cache.layers.push(all.clone());
                    }
                    masks.decode_attention(all, len, self.heads, scale, bias.clone())
                }
            };
            let attended = block.proj.forward(context, masks);
            x = x + masks.apply(attended, self.dropout);
            let inner = block
                .fc
                .forward(masks.layer_norm(&block.ln2, NORM_EPS, x.clone()), masks);
            let inner = masks.gelu(inner, true);
            let out = block.out.forward(inner, masks);
            x = x + masks.apply(out, self.dropout);
        }
        if let Some(cache) = cache {
            cache.len = total;
        }
        let x = masks.layer_norm(&self.ln_f, NORM_EPS, x);
        let vocab = self.vocab_size();
        masks
            .product(
                x.reshape([batch * len, h]),
                self.wte.weight.val().transpose(),
            )
            .reshape([batch, len, vocab])
    }
}

/// The linear layers of a block that LoRA can adapt, by GPT-2's module names (PEFT's
/// `target_modules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GptTarget {
    /// Query, key and value in one projection (`attn.c_attn`).
    #[serde(rename = "c_attn")]
    Attn,
    /// The attention output projection (`attn.c_proj`).
    #[serde(rename = "attn.c_proj")]
    AttnProj,
    /// The MLP's up projection (`mlp.c_fc`).
    #[serde(rename = "c_fc")]
    Fc,
    /// The MLP's down projection (`mlp.c_proj`).
    #[serde(rename = "mlp.c_proj")]
    MlpProj,
}

impl GptTarget {
    /// All of them, in block order.
    pub const ALL: [Self; 4] = [Self::Attn, Self::AttnProj, Self::Fc, Self::MlpProj];

    /// The module's path inside `transformer.h.{i}`.
    pub fn module_path(self) -> &'static str {
        match self {
            Self::Attn => "attn.c_attn",
            Self::AttnProj => "attn.c_proj",
            Self::Fc => "mlp.c_fc",
            Self::MlpProj => "mlp.c_proj",
        }
    }

    /// The recipe's (and PEFT's `target_modules`) name: unambiguous as a suffix, as PEFT
    /// matches them (`c_proj` alone would catch both projections).
    pub fn name(self) -> &'static str {
        match self {
            Self::Attn => "c_attn",
            Self::AttnProj => "attn.c_proj",
            Self::Fc => "c_fc",
            Self::MlpProj => "mlp.c_proj",
        }
    }

    /// The target whose module path is `path`.
    pub fn from_module_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.module_path() == path)
    }
}

/// What trains in a language-model run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GptStrategy {
    /// Every weight (default).
    #[default]
    Full,
    /// LoRA adapters on the chosen layers; everything else is frozen.
    Lora,
}

/// LoRA on a GPT (PEFT's `LoraConfig` names in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptLora {
    /// Rank (`r`). Default 8.
    pub rank: usize,
    /// Scale numerator (`lora_alpha`). Default 16.
    pub alpha: f64,
    /// Dropout on the adapter's input (`lora_dropout`). Default 0.05.
    pub dropout: f64,
    /// Adapted layers of every block (`target_modules`). Default `c_attn`, PEFT's default for
    /// GPT-2.
    pub targets: Vec<GptTarget>,
}

impl Default for GptLora {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec![GptTarget::Attn],
        }
    }
}

/// How a language-model run tunes the model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptTuning {
    /// What trains. Default `full`.
    pub strategy: GptStrategy,
    /// LoRA settings, with `lora`.
    pub lora: GptLora,
}

impl GptTuning {
    /// # Errors
    /// A field out of range, named.
    pub fn validate(&self) -> Result<()> {
        if self.strategy == GptStrategy::Full {
            return Ok(());
        }
        let l = &self.lora;
        if l.rank == 0 {
            return Err(Error::config("tuning.lora.rank", "must be at least 1"));
        }
        if !(l.alpha.is_finite() && l.alpha > 0.0) {
            return Err(Error::config(
                "tuning.lora.alpha",
                "must be a positive number",
            ));
        }
        if !(0.0..1.0).contains(&l.dropout) {
            return Err(Error::config("tuning.lora.dropout", "must be in [0, 1)"));
        }
        if l.targets.is_empty() {
            return Err(Error::config(
                "tuning.lora.targets",
                "name at least one of c_attn, attn.c_proj, c_fc, mlp.c_proj",
            ));
        }
        Ok(())
    }

    /// A short description, e.g. `LoRA r=8 on c_attn`.
    pub fn describe(&self) -> String {
        match self.strategy {
            GptStrategy::Full => "full training".into(),
            GptStrategy::Lora => format!(
                "LoRA r={} alpha={} on {}",
                self.lora.rank,
                self.lora.alpha,
                target_names(&self.lora.targets)
            ),
        }
    }
}

fn target_names(targets: &[GptTarget]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl GptBlock {
    /// The layer `target` names.
    pub fn target(&self, target: GptTarget) -> &AdaptedLinear {
        match target {
            GptTarget::Attn => &self.attn,
            GptTarget::AttnProj => &self.proj,
            GptTarget::Fc => &self.fc,
            GptTarget::MlpProj => &self.out,
        }
    }

    fn target_mut(&mut self, target: GptTarget) -> &mut AdaptedLinear {
        match target {
            GptTarget::Attn => &mut self.attn,
            GptTarget::AttnProj => &mut self.proj,
            GptTarget::Fc => &mut self.fc,
            GptTarget::MlpProj => &mut self.out,
        }
    }
}

impl Gpt {
    /// Every adapter: block, target, factors.
    pub fn adapters(&self) -> Vec<(usize, GptTarget, &LoraFactors)> {
        self.blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                GptTarget::ALL
                    .into_iter()
                    .filter_map(move |t| b.target(t).lora.as_ref().map(|f| (i, t, f)))
            })
            .collect()
    }

    /// The adapters' rank and targets, if it has any.
    pub fn lora_shape(&self) -> Option<(usize, Vec<GptTarget>)> {
        let adapters = self.adapters();
        let rank = adapters.first()?.2.rank();
        let mut targets: Vec<GptTarget> = adapters.iter().map(|(_, t, _)| *t).collect();
        targets.sort();
        targets.dedup();
        Some((rank, targets))
    }

    /// Put `factors` on block `block`'s `target` (replacing any there).
    ///
    /// # Panics
    /// A block past the model's.
    pub fn set_adapter(&mut self, block: usize, target: GptTarget, factors: LoraFactors) {
        self.blocks[block].target_mut(target).lora = Some(factors);
    }

    /// The adapters folded into their weights.
    pub fn merged(self) -> Self {
        Self {
            blocks: self
                .blocks
                .into_iter()
                .map(|b| GptBlock {
                    attn: b.attn.merged().into(),
                    proj: b.proj.merged().into(),
                    fc: b.fc.merged().into(),
                    out: b.out.merged().into(),
                    ..b
                })
                .collect(),
            ..self
        }
    }

    /// The model ready for `tuning`: with `lora`, fresh adapters (drawn from `seed`) unless it
    /// has some of the same shape, and every other weight frozen (no gradients, no optimizer
    /// state); with `full`, any adapters merged and everything trainable.
    ///
    /// # Errors
    /// Invalid settings; adapters of another rank or targets than asked for.
    pub fn tuned(self, tuning: &GptTuning, seed: u64) -> Result<Self> {
        tuning.validate()?;
        let mut model = self;
        let existing = model.lora_shape();
        if tuning.strategy == GptStrategy::Full {
            let model = if existing.is_some() {
                model.merged()
            } else {
                model
            };
            return Ok(model.set_require_grad(true));
        }
        let lora = &tuning.lora;
        let mut wanted = lora.targets.clone();
        wanted.sort();
        wanted.dedup();
        match existing {
            Some((rank, targets)) if rank != lora.rank || targets != wanted => {
                return Err(Error::config(
                    "tuning.lora",
                    format!(
                        "the current model's adapters have rank {rank} on {}; continue with those settings, or start from a model without adapters for rank {} on {}",
                        target_names(&targets),
                        lora.rank,
                        target_names(&wanted)
                    ),
                ));
            }
            Some(_) => {}
            None => {
                let device = model.wte.weight.val().device();
                let mut rng = Rng::new(seed ^ 0x6770_746c);
                let config = super::lora::LoraConfig {
                    rank: lora.rank,
                    alpha: lora.alpha,
                    dropout: lora.dropout,
                    targets: Vec::new(),
                };
                for i in 0..model.blocks.len() {
                    for t in &wanted {
                        let [d_in, d_out] = model.blocks[i].target(*t).dims();
                        let f = LoraFactors::init(d_in, d_out, &config, &mut rng, &device);
                        model.set_adapter(i, *t, f);
                    }
                }
            }
        }
        let mut model = model.no_grad();
        for block in &mut model.blocks {
            for t in GptTarget::ALL {
                let slot = block.target_mut(t);
                slot.lora = slot.lora.take().map(|mut f| {
                    f.dropout = lora.dropout;
                    f.set_require_grad(true)
                });
            }
        }
        Ok(model)
    }
}

/// The tensor names of GPT-2's state dict (`transformer.` prefix; the head is tied to `wte`) and
/// their shapes, in order. Conv1D weights are `[in, out]`, as burn's linear layers hold them.
pub fn tensor_layout(config: &GptConfig) -> Vec<(String, Vec<usize>)> {
    let (v, t, h) = (config.vocab_size, config.context, config.hidden);
    let mut out = vec![
        ("transformer.wte.weight".to_string(), vec![v, h]),
        ("transformer.wpe.weight".to_string(), vec![t, h]),
    ];
    for i in 0..config.layers {
        let p = format!("transformer.h.{i}");
        for (name, shape) in [
            ("ln_1.weight", vec![h]),
            ("ln_1.bias", vec![h]),
            ("attn.c_attn.weight", vec![h, 3 * h]),
            ("attn.c_attn.bias", vec![3 * h]),
            ("attn.c_proj.weight", vec![h, h]),
            ("attn.c_proj.bias", vec![h]),
            ("ln_2.weight", vec![h]),
            ("ln_2.bias", vec![h]),
            ("mlp.c_fc.weight", vec![h, 4 * h]),
            ("mlp.c_fc.bias", vec![4 * h]),
            ("mlp.c_proj.weight", vec![4 * h, h]),
            ("mlp.c_proj.bias", vec![h]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out.push(("transformer.ln_f.weight".to_string(), vec![h]));
    out.push(("transformer.ln_f.bias".to_string(), vec![h]));
    out
}

impl Gpt {
    /// Every tensor under GPT-2's names ([`tensor_layout`] order), LoRA adapters folded in, read
    /// back asynchronously.
    ///
    /// # Errors
    /// Read-back failures.
    pub async fn tensors(&self) -> Result<Vec<Vec<f32>>> {
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
        async fn norm(n: &LayerNorm, out: &mut Vec<Vec<f32>>) -> Result<()> {
            out.push(read(n.gamma.val()).await?);
            out.push(match &n.beta {
                Some(b) => read(b.val()).await?,
                None => vec![0.0; n.gamma.val().dims()[0]],
            });
            Ok(())
        }
        async fn linear(l: &AdaptedLinear, out: &mut Vec<Vec<f32>>) -> Result<()> {
            let w = match &l.lora {
                Some(f) => l.linear.weight.val() + f.delta(),
                None => l.linear.weight.val(),
            };
            out.push(read(w).await?);
            out.push(match &l.linear.bias {
                Some(b) => read(b.val()).await?,
                None => vec![0.0; l.dims()[1]],
            });
            Ok(())
        }
        let mut out = vec![
            read(self.wte.weight.val()).await?,
            read(self.wpe.weight.val()).await?,
        ];
        for b in &self.blocks {
            norm(&b.ln1, &mut out).await?;
            linear(&b.attn, &mut out).await?;
            linear(&b.proj, &mut out).await?;
            norm(&b.ln2, &mut out).await?;
            linear(&b.fc, &mut out).await?;
            linear(&b.out, &mut out).await?;
        }
        norm(&self.ln_f, &mut out).await?;
        Ok(out)
    }

    /// The model from values in [`tensor_layout`] order (checked by the caller).
    pub fn from_tensors(config: &GptConfig, values: Vec<Vec<f32>>, device: &Device) -> Self {
        let layout = tensor_layout(config);
        let mut it = values.into_iter().zip(layout);
        let mut next = || {
            let (v, (_, shape)) = it.next().expect("values follow the layout");
            TensorData::new(v, shape)
        };
        let param1 = |d: TensorData| Param::<Tensor<1>>::from_data(d, device);
        let param2 = |d: TensorData| Param::<Tensor<2>>::from_data(d, device);
        let h = config.hidden;
        let norm = |next: &mut dyn FnMut() -> TensorData| {
            let mut n = LayerNormConfig::new(h).with_epsilon(NORM_EPS).init(device);
            n.gamma = param1(next());
            n.beta = Some(param1(next()));
            n
        };
        let linear = |next: &mut dyn FnMut() -> TensorData| -> AdaptedLinear {
            Linear {
                weight: param2(next()),
                bias: Some(param1(next())),
            }
            .into()
        };
        let wte = Embedding {
            weight: param2(next()),
        };
        let wpe = Embedding {
            weight: param2(next()),
        };
        let blocks = (0..config.layers)
            .map(|_| GptBlock {
                ln1: norm(&mut next),
                attn: linear(&mut next),
                proj: linear(&mut next),
                ln2: norm(&mut next),
                fc: linear(&mut next),
                out: linear(&mut next),
            })
            .collect();
        let ln_f = norm(&mut next);
        Self {
            wte,
            wpe,
            blocks,
            ln_f,
            heads: config.heads,
            dropout: config.dropout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Sampling, generate, pick};
    use crate::model::Masks;
    use crate::train::TrainConfig;
    use crate::train::lm::{LmTrainer, evaluate_lm};

    fn tiny_config() -> GptConfig {
        GptConfig {
            vocab_size: 7,
            context: 16,
            layers: 2,
            heads: 2,
            hidden: 16,
            dropout: 0.0,
        }
    }

    fn tiny(device: &Device) -> Gpt {
        tiny_config().init(3, device).expect("gpt")
    }

    fn ids(tokens: &[i64], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(tokens.to_vec(), [1, tokens.len()]), device)
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    /// With the fused kernels (layer norm, self-attention, GELU) on wgpu the GPT gives the
    /// logits and every parameter's gradient that burn's composed operations give on the same
    /// device, through the kernels; and a cached decoding step (fewer queries than keys) the
    /// logits of recomputing the window.
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_fused_kernels_give_the_composed_logits_and_gradients() {
        use burn::optim::GradientsParams;

        use crate::kernels::test_util::{assert_close, launched, param_grads, read};
        let device = crate::kernels::test_device().autodiff();
        let model = tiny(&device);
        let tokens = [3, 1, 4, 1, 5, 2, 6, 5, 0, 2];
        let upstream: Vec<f32> = (0..tokens.len() * 7).map(|i| (i as f32).sin()).collect();
        let run = |fused: bool| {
            let before = launched();
            let masks = &mut Masks::none().with_fused_kernels(fused);
            let logits = model.forward(ids(&tokens, &device), None, masks);
            let weights = Tensor::<3>::from_data(
                TensorData::new(upstream.clone(), [1, tokens.len(), 7]),
                &device,
            );
            let grads =
                GradientsParams::from_grads((logits.clone() * weights).sum().backward(), &model);
            (
                read(logits),
                param_grads(&model, &grads),
                launched() - before,
            )
        };
        let (fused, fused_grads, fused_launches) = run(true);
        let (composed, composed_grads, composed_launches) = run(false);
        assert_close("logits", &fused, &composed, 1e-4, 1e-2);
        assert_eq!(fused_grads.len(), composed_grads.len());
        assert!(
            composed_grads.iter().all(|g| !g.is_empty()),
            "every parameter has a gradient"
        );
        // All gradients as one list: some (the key bias's) are rounding noise around 0, judged
        // against the model's largest gradients.
        assert_close(
            "gradients",
            &fused_grads.concat(),
            &composed_grads.concat(),
            1e-3,
            1e-2,
        );
        // Forward: five layer norms (two a block, the last), two self-attentions, two GELUs,
        // four dense layers a block and the tied head (`kernels::linear`); as many backward,
        // with two kernels a layer norm, a self-attention, a dense layer and the head.
        assert_eq!(
            (fused_launches, composed_launches),
            (9 + 2 * 4 + 1 + 16 + 2 * (2 * 4 + 1), 0)
        );

        let inference = crate::kernels::test_device();
        let model = model.valid();
        let full = values(model.forward(ids(&tokens, &inference), None, &mut Masks::none()));
        let mut cache = KvCache::default();
        let mut cached = values(model.forward(
            ids(&tokens[..6], &inference),
            Some(&mut cache),
            &mut Masks::none(),
        ));
        cached.extend(values(model.forward(
            ids(&tokens[6..], &inference),
            Some(&mut cache),
            &mut Masks::none(),
        )));
        assert_close("cached logits", &cached, &full, 1e-4, 1e-2);
    }

    /// Training with dropout (0.2 everywhere) through the kernels (the masks computed in place:
    /// the fused dropout and the self-attention's) gives the logits and gradients of the
    /// composed path, which multiplies by the same masks computed on the host, for the same seed;
    /// another seed drops other values.
    #[cfg(feature = "wgpu")]
    #[test]
    fn dropout_through_the_kernels_drops_what_the_composed_path_drops() {
        use burn::optim::GradientsParams;

        use crate::kernels::test_util::{assert_close, launched, param_grads, read};
        let device = crate::kernels::test_device().autodiff();
        let model = GptConfig {
            dropout: 0.2,
            ..tiny_config()
        }
        .init(3, &device)
        .expect("gpt");
        let tokens = [3, 1, 4, 1, 5, 2, 6, 5, 0, 2];
        let run = |fused: bool, seed: u64| {
            let mut rng = Rng::new(seed);
            let before = launched();
            let masks = &mut Masks::from(&mut rng).with_fused_kernels(fused);
            let logits = model.forward(ids(&tokens, &device), None, masks);
            let grads = GradientsParams::from_grads(logits.clone().sum().backward(), &model);
            (
                read(logits),
                param_grads(&model, &grads),
                launched() - before,
            )
        };
        let (fused, fused_grads, launches) = run(true, 9);
        let (composed, composed_grads, _) = run(false, 9);
        assert_close("logits", &fused, &composed, 1e-4, 1e-2);
        assert_close(
            "gradients",
            &fused_grads.concat(),
            &composed_grads.concat(),
            1e-3,
            1e-2,
        );
        // The kernels of the test above and five dropouts (the embeddings', two a block), each
        // one launch forward and one backward.
        assert_eq!(launches, 9 + 2 * 4 + 1 + 16 + 2 * (2 * 4 + 1) + 2 * 5);
        let (other, _, _) = run(true, 10);
        assert_ne!(fused, other, "another seed, other masks");
    }

    #[test]
    fn no_position_sees_the_future() {
        let device = Device::flex();
        let model = tiny(&device);
        let a = values(model.forward(ids(&[1, 2, 3, 4, 5, 6], &device), None, &mut Masks::none()));
        let b = values(model.forward(ids(&[1, 2, 3, 0, 0, 1], &device), None, &mut Masks::none()));
        // Positions 0..3 saw the same tokens: same logits; position 3 saw a different token.
        assert_eq!(a[..3 * 7], b[..3 * 7]);
        assert_ne!(a[3 * 7..4 * 7], b[3 * 7..4 * 7]);
    }

    #[test]
    fn the_kv_cache_equals_recomputing_the_window() {
        let device = Device::flex();
        let model = tiny(&device);
        let tokens = [3, 1, 4, 1, 5, 2, 6, 5];
        let full = values(model.forward(ids(&tokens, &device), None, &mut Masks::none()));
        let mut cache = KvCache::default();
        let mut cached = values(model.forward(
            ids(&tokens[..5], &device),
            Some(&mut cache),
            &mut Masks::none(),
        ));
        for t in &tokens[5..] {
            cached.extend(values(model.forward(
                ids(&[*t], &device),
                Some(&mut cache),
                &mut Masks::none(),
            )));
        }
        assert_eq!(cache.len(), 8);
        let worst = full
            .iter()
            .zip(&cached)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "cached logits differ by {worst}");
    }

    #[test]
    fn greedy_generation_is_deterministic_and_matches_full_recomputation() {
        let device = Device::flex();
        let model = tiny(&device);
        let greedy = Sampling {
            max_tokens: 24,
            temperature: 0.0,
            ..Sampling::default()
        };
        let prompt = [1u32, 2, 3];
        let mut streamed = Vec::new();
        let a = pollster::block_on(generate(&model, &prompt, &greedy, &device, |t| {
            streamed.push(t);
            true
        }))
        .expect("generate");
        let b = pollster::block_on(generate(&model, &prompt, &greedy, &device, |_| true))
            .expect("again");
        assert_eq!(a, b);
        assert_eq!(a, streamed, "every token is streamed as it is picked");
        assert_eq!(a.len(), 24, "past the 16-token context: the window slides");
        // The same tokens by re-running the whole (sliding) window for every token.
        let mut all: Vec<u32> = prompt.to_vec();
        let mut rng = crate::rng::Rng::new(0);
        for _ in 0..8 {
            let window: Vec<i64> = all.iter().map(|&t| i64::from(t)).collect();
            let logits = values(model.forward(ids(&window, &device), None, &mut Masks::none()));
            let last = &logits[logits.len() - 7..];
            all.push(pick(last, &greedy, &mut rng));
        }
        assert_eq!(a[..8], all[3..]);
        // Stopping: `on_token` returning false ends the run.
        let mut n = 0;
        let stopped = pollster::block_on(generate(&model, &prompt, &greedy, &device, |_| {
            n += 1;
            n < 5
        }))
        .expect("stopped");
        assert_eq!(stopped.len(), 5);
    }

    #[test]
    fn sampling_filters_and_repeats_with_the_seed() {
        let logits = [2.0f32, 1.0, 0.5, -1.0, 3.0];
        let draw = |s: &Sampling, seed| {
            let mut rng = crate::rng::Rng::new(seed);
            (0..400)
                .map(|_| pick(&logits, s, &mut rng))
                .collect::<Vec<_>>()
        };
        let top2 = Sampling {
            top_k: Some(2),
            temperature: 1.0,
            ..Sampling::default()
        };
        let got = draw(&top2, 1);
        assert!(
            got.iter().all(|&t| t == 4 || t == 0),
            "top-2 keeps tokens 4 and 0"
        );
        assert_eq!(got, draw(&top2, 1));
        assert_ne!(got, draw(&top2, 2));
        // softmax(3, 2) = (0.73, 0.27): token 4 about three times in four.
        let fours = got.iter().filter(|&&t| t == 4).count();
        assert!((250..330).contains(&fours), "{fours} of 400");
        // top-p 0.5: token 4 alone (p = 0.61) passes 0.5.
        let nucleus = Sampling {
            top_p: Some(0.5),
            temperature: 1.0,
            ..Sampling::default()
        };
        assert!(draw(&nucleus, 3).iter().all(|&t| t == 4));
        assert!(
            Sampling {
                top_p: Some(1.5),
                ..Sampling::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn perplexity_is_the_exponent_of_the_mean_token_loss() {
        let device = Device::flex();
        let model = tiny(&device);
        // 40 tokens: two full windows of 16 and a tail of 7, every token after the first once.
        let tokens: Vec<u32> = (0..40).map(|i| (i * 3 % 7) as u32).collect();
        let e = pollster::block_on(evaluate_lm(&model, &tokens, 2, &device)).expect("eval");
        assert_eq!(e.tokens, 39);
        let mut sum = 0.0f64;
        for (start, len) in [(0usize, 16usize), (16, 16), (32, 7)] {
            let window: Vec<i64> = tokens[start..start + len]
                .iter()
                .map(|&t| i64::from(t))
                .collect();
            let logits = values(model.forward(ids(&window, &device), None, &mut Masks::none()));
            for p in 0..len {
                let row = &logits[p * 7..(p + 1) * 7];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_z = f64::from(max)
                    + row
                        .iter()
                        .map(|&l| f64::from(l - max).exp())
                        .sum::<f64>()
                        .ln();
                sum += log_z - f64::from(row[tokens[start + p + 1] as usize]);
            }
        }
        let want = sum / 39.0;
        assert!((e.loss - want).abs() < 1e-5, "{} vs {want}", e.loss);
        assert!((e.perplexity - want.exp()).abs() < 1e-4);
        // An untrained model is close to uniform: perplexity near the vocabulary size.
        assert!((e.perplexity - 7.0).abs() < 1.0, "{}", e.perplexity);
    }

    #[test]
    fn loss_falls_on_a_tiny_corpus() {
        let device = Device::flex();
        let model = tiny(&device);
        let tokens: Vec<u32> = (0..400).map(|i| [1, 2, 3, 4, 5][i % 5]).collect();
        let config = TrainConfig {
            learning_rate: 0.01,
            batch_size: 8,
            steps: 60,
            ..TrainConfig::default()
        };
        let mut trainer = LmTrainer::new(model, config, tokens.clone(), &device).expect("trainer");
        let losses: Vec<f32> = (0..60)
            .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
            .collect();
        assert!(losses[59] < 0.2 * losses[0], "{losses:?}");
        let e = pollster::block_on(evaluate_lm(trainer.model(), &tokens[..100], 4, &device))
            .expect("eval");
        assert!(
            e.perplexity < 1.5,
            "a cycle of 5 is predictable: {}",
            e.perplexity
        );
    }

    /// Half-precision products (the blocks' dense layers and the tied head, whose weight is the
    /// transposed embedding) train the GPT as f32 does on an adapter with `shader-f16`: the
    /// same losses to half precision's rounding (not bit for bit: the half path ran), full
    /// fine-tuning and LoRA.
    #[cfg(feature = "wgpu")]
    #[test]
    fn half_precision_products_train_as_f32_does() {
        use crate::train::Precision;
        let device = crate::kernels::test_device();
        let tokens: Vec<u32> = (0..400).map(|i| [1, 2, 3, 4, 5][i % 5]).collect();
        for tuning in [None, Some(lora(GptTarget::ALL.to_vec()))] {
            let run = |precision: Precision| {
                let model = match &tuning {
                    None => tiny(&device),
                    Some(t) => tiny(&device).tuned(t, 4).expect("lora"),
                };
                let config = TrainConfig {
                    learning_rate: 0.01,
                    batch_size: 8,
                    steps: 30,
                    precision,
                    ..TrainConfig::default()
                };
                let mut trainer =
                    LmTrainer::new(model, config, tokens.clone(), &device).expect("trainer");
                (0..30)
                    .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
                    .collect::<Vec<f32>>()
            };
            let (single, half) = (run(Precision::F32), run(Precision::F16));
            assert!(single[29] < 0.9 * single[0], "{tuning:?}: {single:?}");
            let worst = single
                .iter()
                .zip(&half)
                .map(|(a, b)| (a - b).abs() / a.abs().max(0.1))
                .fold(0.0f32, f32::max);
            assert!(
                worst < 0.05,
                "{tuning:?}: f16 {half:?} against f32 {single:?}"
            );
            assert!(single != half, "the half-precision path ran");
        }
    }

    fn logits(model: &Gpt, device: &Device) -> Vec<f32> {
        values(model.forward(
            ids(&[1, 2, 3, 4, 5, 6, 0, 1], device),
            None,
            &mut Masks::none(),
        ))
    }

    fn lora(targets: Vec<GptTarget>) -> GptTuning {
        GptTuning {
            strategy: GptStrategy::Lora,
            lora: GptLora {
                rank: 4,
                alpha: 8.0,
                dropout: 0.0,
                targets,
            },
        }
    }

    #[test]
    fn lora_trains_only_the_adapters_and_merges_to_the_same_logits() {
        let device = Device::flex();
        // A base that learned one cycle; the adapters learn the reverse.
        let cycle = |order: [u32; 5]| -> Vec<u32> { (0..400).map(|i| order[i % 5]).collect() };
        let config = TrainConfig {
            learning_rate: 0.01,
            batch_size: 8,
            steps: 60,
            ..TrainConfig::default()
        };
        let mut trainer =
            LmTrainer::new(tiny(&device), config, cycle([1, 2, 3, 4, 5]), &device).expect("base");
        for _ in 0..60 {
            pollster::block_on(trainer.step()).expect("step");
        }
        let base = trainer.model().valid();
        let before = pollster::block_on(base.tensors()).expect("tensors");
        let model = base
            .clone()
            .tuned(&lora(vec![GptTarget::Attn, GptTarget::MlpProj]), 7)
            .expect("tuned");
        // Fresh adapters are the identity (B is zero).
        assert_eq!(
            pollster::block_on(model.tensors()).expect("tensors"),
            before
        );
        let tokens = cycle([5, 4, 3, 2, 1]);
        let config = TrainConfig {
            learning_rate: 0.02,
            batch_size: 8,
            steps: 40,
            weight_decay: 0.1,
            ..TrainConfig::default()
        };
        let mut trainer = LmTrainer::new(model, config, tokens, &device).expect("trainer");
        // 2 blocks x (c_attn 16x4 + 4x48, mlp.c_proj 64x4 + 4x16).
        assert_eq!(
            super::super::lora::trainable_parameters(trainer.model()),
            2 * (16 * 4 + 4 * 48 + 64 * 4 + 4 * 16)
        );
        let losses: Vec<f32> = (0..40)
            .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
            .collect();
        assert!(losses[39] < 0.25 * losses[0], "{losses:?}");
        let trained = trainer.model().valid();
        // The frozen weights did not move (no gradient, no decay), the adapters did.
        let bases = |m: &Gpt| {
            let mut out = vec![
                values(m.wte.weight.val().unsqueeze()),
                values(m.wpe.weight.val().unsqueeze()),
            ];
            for b in &m.blocks {
                for t in GptTarget::ALL {
                    out.push(values(b.target(t).linear.weight.val().unsqueeze()));
                }
                out.push(values(b.ln1.gamma.val().unsqueeze_dims(&[0, 1])));
            }
            out
        };
        assert_eq!(bases(&trained), bases(&base));
        assert_eq!(
            trained.lora_shape(),
            Some((4, vec![GptTarget::Attn, GptTarget::MlpProj]))
        );
        assert!(
            trained
                .adapters()
                .iter()
                .all(|(_, _, f)| f.b.val().abs().max().into_scalar::<f32>() > 0.0),
            "every adapter learned"
        );
        // Merged weights give the same logits as base plus adapters.
        let adapted = logits(&trained, &device);
        let merged = logits(&trained.clone().merged(), &device);
        let worst = adapted
            .iter()
            .zip(&merged)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        assert!(trained.clone().merged().lora_shape().is_none());
        // Continuing with other settings is refused by name; with the same, it keeps them.
        let err = trained
            .clone()
            .tuned(&lora(vec![GptTarget::Fc]), 7)
            .expect_err("other targets")
            .to_string();
        assert!(
            err.contains("rank 4 on c_attn, mlp.c_proj") && err.contains("rank 4 on c_fc"),
            "{err}"
        );
        let again = trained
            .clone()
            .tuned(&lora(vec![GptTarget::MlpProj, GptTarget::Attn]), 9)
            .expect("same settings");
        assert_eq!(logits(&again, &device), adapted);
        // Full training merges the adapters.
        let full = trained.tuned(&GptTuning::default(), 7).expect("full");
        assert!(full.lora_shape().is_none());
        let worst = logits(&full, &device)
            .iter()
            .zip(&adapted)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn a_gpt_adapter_round_trips_through_a_peft_folder() {
        use crate::model::peft::{export_gpt_adapter, read_gpt_adapter};
        let device = Device::flex();
        let config = GptConfig {
            vocab_size: 7,
            context: 16,
            layers: 2,
            heads: 2,
            hidden: 16,
            dropout: 0.0,
        };
        let mut model = tiny(&device)
            .tuned(&lora(GptTarget::ALL.to_vec()), 1)
            .expect("tuned");
        // Give every B values so the adapters change the output.
        let mut rng = Rng::new(5);
        let shapes: Vec<(usize, GptTarget, Vec<f32>, [usize; 2])> = model
            .adapters()
            .into_iter()
            .map(|(i, t, f)| {
                let a = f.a.val().into_data().try_to_vec::<f32>().expect("a");
                (i, t, a, f.b.val().dims())
            })
            .collect();
        for (i, t, a, [r, d_out]) in shapes {
            let d_in = a.len() / r;
            let b: Vec<f32> = (0..r * d_out).map(|_| 0.1 * rng.normal()).collect();
            let f = LoraFactors::from_values(a, b, [d_in, r, d_out], 2.0, 0.0, &device);
            model.set_adapter(i, t, f);
        }
        let files = pollster::block_on(export_gpt_adapter(&model, "tiny-gpt")).expect("export");
        let file = |n: &str| {
            files
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, b)| b.clone())
                .expect(n)
        };
        let cfg: serde_json::Value =
            serde_json::from_slice(&file("adapter_config.json")).expect("json");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["fan_in_fan_out"], true);
        assert_eq!(cfg["r"], 4);
        assert_eq!(cfg["lora_alpha"], 8.0);
        assert_eq!(
            cfg["target_modules"],
            serde_json::json!(["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"])
        );
        let weights = file("adapter_model.safetensors");
        let st = safetensors::SafeTensors::deserialize(&weights).expect("safetensors");
        let a = st
            .tensor("base_model.model.transformer.h.1.attn.c_attn.lora_A.weight")
            .expect("PEFT's name");
        assert_eq!(a.shape(), [4, 16]);
        let b = st
            .tensor("base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight")
            .expect("PEFT's name");
        assert_eq!(b.shape(), [64, 4]);
        assert_eq!(st.names().len(), 2 * 4 * 2);

        let adapter =
            read_gpt_adapter(&file("adapter_config.json"), &weights, &config).expect("read");
        let back = adapter.apply(tiny(&device), &device);
        assert_eq!(logits(&back, &device), logits(&model, &device));
        assert_ne!(logits(&back, &device), logits(&tiny(&device), &device));

        // Bad adapters are named.
        let err = |config_json: &[u8], weights: &[u8], c: &GptConfig| {
            read_gpt_adapter(config_json, weights, c)
                .expect_err("bad")
                .to_string()
        };
        let mut seq = cfg.clone();
        seq["task_type"] = "SEQ_CLS".into();
        let e = err(&serde_json::to_vec(&seq).expect("json"), &weights, &config);
        assert!(e.contains("`task_type` is `SEQ_CLS`"), "{e}");
        let wider = GptConfig {
            hidden: 32,
            ..config.clone()
        };
        let e = err(&file("adapter_config.json"), &weights, &wider);
        assert!(
            e.contains("adapter_model.safetensors") && e.contains("expected [r, 32]"),
            "{e}"
        );
        let shallower = GptConfig {
            layers: 1,
            ..config.clone()
        };
        let e = err(&file("adapter_config.json"), &weights, &shallower);
        assert!(
            e.contains("adapts block 1, but the model has 1 blocks"),
            "{e}"
        );
        let stray = crate::export::write_safetensors(
            &[(
                "base_model.model.transformer.h.0.attn.c_attn.weight".to_string(),
                vec![0u8; 4],
                vec![1],
            )],
            &Default::default(),
        );
        let e = err(&file("adapter_config.json"), &stray, &config);
        assert!(e.contains("is not a LoRA factor"), "{e}");
    }
}
