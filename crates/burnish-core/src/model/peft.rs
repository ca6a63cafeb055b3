//! LoRA adapters in PEFT's folder layout, written and read without PEFT.
//!
//! A PEFT LoRA folder is `adapter_config.json` (a `LoraConfig`) and `adapter_model.safetensors`
//! holding, for a `BertForSequenceClassification` / `BertForTokenClassification` base,
//! `base_model.model.bert.encoder.layer.{i}.{module}.lora_A.weight` `[r, d_in]` and
//! `...lora_B.weight` `[d_out, r]` (PyTorch's `[out, in]` layout; the adapter name `default` is
//! not stored), plus the head PEFT saves beside them (`modules_to_save`):
//! `base_model.model.classifier.weight` / `.bias`. The update is `(lora_alpha / r) * B A`
//! (`lora_alpha / sqrt(r)` with `use_rslora`). burnish adds `burnish_adapter.json` (task, label
//! names, pooling, max length), which PEFT ignores; adapters from elsewhere load without it.
//!
//! For a GPT ([`export_gpt_adapter`], [`read_gpt_adapter`]) the base is a `GPT2LMHeadModel`: the
//! factors are `base_model.model.transformer.h.{i}.{attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj}
//! .lora_{A,B}.weight` in the same layout (PEFT keeps `lora_A` `[r, in]` for GPT-2's `Conv1D`
//! too), `task_type` is `CAUSAL_LM`, and nothing else is saved.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::bert::BertConfig;
use super::bert_classifier::{BertClassifier, HfFolder, Pooling, TextTask};
use super::classifier::transpose;
use super::gpt::{Gpt, GptConfig, GptTarget};
use super::lora::{LoraFactors, LoraTarget};
use crate::export::{decode_float, write_safetensors};
use crate::{Error, Result};

/// The adapter's weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's config.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// burnish's own entry: what PEFT's config does not record.
pub const ADAPTER_META: &str = "burnish_adapter.json";

const PREFIX: &str = "base_model.model.";

/// What `burnish_adapter.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterMeta {
    /// Sequence or token classification.
    pub task: TextTask,
    /// Class or tag names, in the head's order.
    pub labels: Vec<String>,
    /// Pooling of a sequence head.
    pub pooling: Pooling,
    /// Longest sequence it was trained with.
    pub max_length: usize,
    /// The base model's folder name.
    pub base_model: String,
}

/// An adapter read from a folder and checked against a base model's config.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Per adapted layer: layer index, target, `A` `[d_in, r]` and `B` `[r, d_out]` (row-major,
    /// burnish's layout), scale.
    pub factors: Vec<(usize, LoraTarget, Vec<f32>, Vec<f32>, [usize; 3], f64)>,
    /// The saved head: weight `[classes, hidden]` (PyTorch layout) and bias.
    pub head: Option<(Vec<f32>, Vec<f32>)>,
    /// `lora_dropout`.
    pub dropout: f64,
    /// `burnish_adapter.json`, when present.
    pub meta: Option<AdapterMeta>,
    /// PEFT's `task_type` (`SEQ_CLS`, `TOKEN_CLS`, ...), when given.
    pub task_type: Option<String>,
}

impl Adapter {
    /// Classes of the saved head.
    pub fn head_classes(&self) -> Option<usize> {
        self.head.as_ref().map(|(_, b)| b.len())
    }

    /// Attach the factors (and the saved head, if any) to `model`, on `device`.
    ///
    /// # Errors
    /// A saved head whose classes differ from the model's.
    pub fn apply(&self, mut model: BertClassifier, device: &Device) -> Result<BertClassifier> {
        for (layer, target, a, b, dims, scale) in &self.factors {
            let f =
                LoraFactors::from_values(a.clone(), b.clone(), *dims, *scale, self.dropout, device);
            model.set_adapter(*layer, *target, f);
        }
        if let Some((w, bias)) = &self.head {
            model = model.with_head(ADAPTER_WEIGHTS, w, bias, device)?;
        }
        Ok(model)
    }
}

fn fail(file: &str, reason: impl Into<String>) -> Error {
    Error::data(file, reason)
}

/// The target modules as PEFT's `target_modules`: the short suffixes when they are unambiguous
/// (`query`, `value`, `attention.output.dense`, ...); PEFT matches a name by its last
/// components, so the layer's `output.dense` would also catch `attention.output.dense`, and
/// then every module is listed by its full name.
fn target_modules(targets: &[LoraTarget], layers: usize) -> Vec<String> {
    let ambiguous =
        targets.contains(&LoraTarget::Output) && !targets.contains(&LoraTarget::AttentionOutput);
    if !ambiguous {
        return targets
            .iter()
            .map(|t| match t {
                LoraTarget::Query => "query".to_string(),
                LoraTarget::Key => "key".to_string(),
                LoraTarget::Value => "value".to_string(),
                other => other.module_path().to_string(),
            })
            .collect();
    }
    (0..layers)
        .flat_map(|i| {
            targets
                .iter()
                .map(move |t| format!("encoder.layer.{i}.{}", t.module_path()))
        })
        .collect()
}

/// The model's adapters and head as a PEFT folder (weights read back asynchronously).
///
/// # Errors
/// A model without adapters; read-back failures.
pub async fn export_adapter(
    model: &BertClassifier,
    classes: &[String],
    max_length: usize,
    base_model: &str,
) -> Result<HfFolder> {
    let adapters = model.adapters();
    let Some((rank, targets)) = model.lora_shape() else {
        return Err(Error::data(
            "adapter",
            "this model has no LoRA adapter (it was not trained with LoRA); export the full model instead",
        ));
    };
    let first = adapters[0].2;
    let alpha = first.scale * rank as f64;
    let mut tensors = Vec::new();
    for (layer, target, f) in &adapters {
        let a = read(f.a.val()).await?;
        let b = read(f.b.val()).await?;
        let [d_in, r] = f.a.val().dims();
        let [_, d_out] = f.b.val().dims();
        let name = format!(
            "{PREFIX}bert.encoder.layer.{layer}.{}",
            target.module_path()
        );
        tensors.push((
            format!("{name}.lora_A.weight"),
            bytes(&transpose(&a, d_in, r)),
            vec![r, d_in],
        ));
        tensors.push((
            format!("{name}.lora_B.weight"),
            bytes(&transpose(&b, r, d_out)),
            vec![d_out, r],
        ));
    }
    let (w, bias) = model.head_values().await?;
    let [c, h] = [bias.len(), w.len() / bias.len().max(1)];
    tensors.push((format!("{PREFIX}classifier.weight"), bytes(&w), vec![c, h]));
    tensors.push((format!("{PREFIX}classifier.bias"), bytes(&bias), vec![c]));
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    let metadata = std::collections::BTreeMap::from([("format", "pt".to_string())]);
    let layers = model.bert.layers().len();
    let config = serde_json::json!({
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": alpha,
        "lora_dropout": first.dropout,
        "modules_to_save": ["classifier"],
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": target_modules(&targets, layers),
        "task_type": match model.task() {
            TextTask::Sequence => "SEQ_CLS",
            TextTask::Tokens => "TOKEN_CLS",
        },
        "use_dora": false,
        "use_rslora": false,
    });
    let meta = AdapterMeta {
        task: model.task(),
        labels: classes.to_vec(),
        pooling: model.pooling(),
        max_length,
        base_model: base_model.to_string(),
    };
    let json = |v: &serde_json::Value| {
        serde_json::to_vec_pretty(v).map_err(|e| Error::data("adapter", e.to_string()))
    };
    let meta = serde_json::to_value(&meta).map_err(|e| Error::data("adapter", e.to_string()))?;
    Ok(HfFolder {
        files: vec![
            (ADAPTER_CONFIG.into(), json(&config)?),
            (
                ADAPTER_WEIGHTS.into(),
                write_safetensors(&tensors, &metadata),
            ),
            (ADAPTER_META.into(), json(&meta)?),
        ],
    })
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

async fn read(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(Error::readback("adapter"))?
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback {
            what: "adapter",
            reason: format!("{e:?}"),
        })
}

/// The settings of `adapter_config.json` that change what the adapter computes.
struct PeftSettings {
    alpha: f64,
    dropout: f64,
    rslora: bool,
    task_type: Option<String>,
}

/// `conv1d`: the base's layers are GPT-2 `Conv1D`s, for which PEFT sets `fan_in_fan_out` (it
/// changes only how PEFT merges, not the factors' layout).
fn settings(bytes: &[u8], conv1d: bool) -> Result<PeftSettings> {
    let f = |reason: String| fail(ADAPTER_CONFIG, reason);
    let config: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| f(format!("not valid JSON ({e})")))?;
    let object = config
        .as_object()
        .ok_or_else(|| f("expected a JSON object".into()))?;
    let peft_type = object.get("peft_type").and_then(|v| v.as_str());
    if peft_type != Some("LORA") {
        return Err(f(format!(
            "`peft_type` is {}; burnish reads LoRA adapters (`\"LORA\"`)",
            peft_type.map_or("missing".to_string(), |t| format!("`{t}`"))
        )));
    }
    let number = |key: &str| object.get(key).and_then(serde_json::Value::as_f64);
    let flag = |key: &str| {
        object
            .get(key)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let alpha = number("lora_alpha").ok_or_else(|| f("`lora_alpha` is missing".into()))?;
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(f(format!(
            "`lora_alpha` is {alpha}; expected a positive number"
        )));
    }
    let dropout = number("lora_dropout").unwrap_or(0.0);
    if !(0.0..1.0).contains(&dropout) {
        return Err(f(format!(
            "`lora_dropout` is {dropout}; expected a value in [0, 1)"
        )));
    }
    for (key, what) in [
        ("use_dora", "DoRA (`use_dora`)"),
        (
            "fan_in_fan_out",
            "`fan_in_fan_out` (GPT-2's Conv1D layout) on an encoder",
        ),
        ("lora_bias", "LoRA biases (`lora_bias`)"),
    ] {
        if flag(key) && !(conv1d && key == "fan_in_fan_out") {
            return Err(f(format!(
                "{what} is not supported; burnish applies plain LoRA"
            )));
        }
    }
    if let Some(bias) = object.get("bias").and_then(|v| v.as_str())
        && bias != "none"
    {
        return Err(f(format!(
            "`bias` is `{bias}`; burnish applies adapters trained with `bias=\"none\"`"
        )));
    }
    if object
        .get("alpha_pattern")
        .and_then(|v| v.as_object())
        .is_some_and(|m| !m.is_empty())
    {
        return Err(f(
            "per-module alphas (`alpha_pattern`) are not supported; use one `lora_alpha`".into(),
        ));
    }
    Ok(PeftSettings {
        alpha,
        dropout,
        rslora: flag("use_rslora"),
        task_type: object
            .get("task_type")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

/// Where an adapter tensor goes: a layer's factor, or the head.
enum Slot {
    Factor(usize, LoraTarget, bool),
    Head(bool),
}

fn slot(name: &str, layers: usize) -> std::result::Result<Slot, String> {
    let unprefixed = name.strip_prefix(PREFIX).unwrap_or(name);
    let unprefixed = unprefixed.strip_prefix("bert.").unwrap_or(unprefixed);
    match unprefixed {
        "classifier.weight" => return Ok(Slot::Head(true)),
        "classifier.bias" => return Ok(Slot::Head(false)),
        _ => {}
    }
    let cannot = || {
        format!(
            "tensor `{name}` is not a LoRA factor (`lora_A`/`lora_B`) of an encoder layer's query, key, value, attention output, intermediate or output, nor the classifier; burnish cannot apply it"
        )
    };
    let rest = unprefixed
        .strip_prefix("encoder.layer.")
        .ok_or_else(cannot)?;
    let (index, rest) = rest.split_once('.').ok_or_else(cannot)?;
    let layer: usize = index.parse().map_err(|_| cannot())?;
    let rest = rest
        .strip_suffix(".weight")
        .ok_or_else(cannot)?
        .replace(".default", "");
    let (module, is_a) = if let Some(m) = rest.strip_suffix(".lora_A") {
        (m, true)
    } else if let Some(m) = rest.strip_suffix(".lora_B") {
        (m, false)
    } else {
        return Err(cannot());
    };
    let target = LoraTarget::from_module_path(module).ok_or_else(cannot)?;
    if layer >= layers {
        return Err(format!(
            "tensor `{name}` adapts layer {layer}, but the model has {layers} layers"
        ));
    }
    Ok(Slot::Factor(layer, target, is_a))
}

/// One factor's values and shape, before pairing.
type Half = Option<(Vec<f32>, Vec<usize>)>;

/// LoRA factors gathered by module (any key: BERT's layer and target, GPT's block and target),
/// each checked against its layer's `(d_in, d_out)` as it comes, then paired.
struct Pairs<K>(std::collections::BTreeMap<K, (Half, Half)>);

impl<K: Ord + Copy> Pairs<K> {
    fn new() -> Self {
        Self(std::collections::BTreeMap::new())
    }

    /// Keep tensor `name` as `key`'s `lora_A` (`is_a`) or `lora_B`, if its shape fits.
    fn add(
        &mut self,
        key: K,
        is_a: bool,
        name: &str,
        view: &safetensors::tensor::TensorView<'_>,
        (d_in, d_out): (usize, usize),
    ) -> Result<()> {
        let shape = view.shape().to_vec();
        let ok = shape.len() == 2
            && shape[0] > 0
            && shape[1] > 0
            && if is_a {
                shape[1] == d_in
            } else {
                shape[0] == d_out
            };
        if !ok {
            let expected = if is_a {
                format!("[r, {d_in}]")
            } else {
                format!("[{d_out}, r]")
            };
            return Err(fail(
                ADAPTER_WEIGHTS,
                format!("`{name}` is {shape:?}; expected {expected}"),
            ));
        }
        let value = Some((
            decode_float(ADAPTER_WEIGHTS, name, view.dtype(), view.data())?,
            shape,
        ));
        let entry = self.0.entry(key).or_default();
        if is_a {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
        Ok(())
    }

    /// Every module's `A` `[d_in, r]` and `B` `[r, d_out]` (burnish's layout), dims and scale;
    /// `module` names a key in errors.
    ///
    /// # Errors
    /// A factor without its pair, ranks that disagree, no factors at all.
    #[allow(clippy::type_complexity)]
    fn factors(
        self,
        settings: &PeftSettings,
        module: impl Fn(K) -> String,
    ) -> Result<Vec<(K, Vec<f32>, Vec<f32>, [usize; 3], f64)>> {
        let mut out = Vec::new();
        for (key, pair) in self.0 {
            let module = module(key);
            let (Some((a, a_shape)), Some((b, b_shape))) = pair else {
                return Err(fail(
                    ADAPTER_WEIGHTS,
                    format!("`{module}` has only one of `lora_A` and `lora_B`; expected both"),
                ));
            };
            let (r, d_in, d_out) = (a_shape[0], a_shape[1], b_shape[0]);
            if b_shape[1] != r {
                return Err(fail(
                    ADAPTER_WEIGHTS,
                    format!(
                        "`{module}`: `lora_A` has rank {r} but `lora_B` is {b_shape:?}; expected [{d_out}, {r}]"
                    ),
                ));
            }
            let scale = if settings.rslora {
                settings.alpha / (r as f64).sqrt()
            } else {
                settings.alpha / r as f64
            };
            out.push((
                key,
                transpose(&a, r, d_in),
                transpose(&b, d_out, r),
                [d_in, r, d_out],
                scale,
            ));
        }
        if out.is_empty() {
            return Err(fail(
                ADAPTER_WEIGHTS,
                "holds no LoRA factors (`...lora_A.weight` / `...lora_B.weight`)",
            ));
        }
        Ok(out)
    }
}

/// Read a PEFT LoRA folder's files (`adapter_config.json`, `adapter_model.safetensors`,
/// optionally `burnish_adapter.json`) and check every tensor against `config` before anything
/// reaches a device.
///
/// # Errors
/// [`Error::Data`] naming the file and what is wrong: not LoRA, unsupported options, unknown
/// or misshapen tensors, a factor without its pair, non-finite values.
pub fn read_adapter(
    config_json: &[u8],
    weights: &[u8],
    meta: Option<&[u8]>,
    config: &BertConfig,
) -> Result<Adapter> {
    let settings = settings(config_json, false)?;
    let meta = meta
        .map(|m| {
            serde_json::from_slice::<AdapterMeta>(m)
                .map_err(|e| fail(ADAPTER_META, format!("not a burnish adapter entry ({e})")))
        })
        .transpose()?;
    let st = safetensors::SafeTensors::deserialize(weights).map_err(|e| {
        fail(
            ADAPTER_WEIGHTS,
            format!("not a valid safetensors file ({e})"),
        )
    })?;
    let layers = config.num_hidden_layers;
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let dims = |t: LoraTarget| match t {
        LoraTarget::Intermediate => (h, i),
        LoraTarget::Output => (i, h),
        _ => (h, h),
    };
    let mut pairs = Pairs::new();
    let mut head_w = None;
    let mut head_b = None;
    let mut names = st.names();
    names.sort();
    for name in names {
        let view = st
            .tensor(name)
            .map_err(|e| fail(ADAPTER_WEIGHTS, format!("tensor `{name}`: {e}")))?;
        let slot = slot(name, layers).map_err(|r| fail(ADAPTER_WEIGHTS, r))?;
        let shape = view.shape().to_vec();
        let values = || decode_float(ADAPTER_WEIGHTS, name, view.dtype(), view.data());
        match slot {
            Slot::Head(true) => {
                if shape.len() != 2 || shape[1] != h || shape[0] == 0 {
                    return Err(fail(
                        ADAPTER_WEIGHTS,
                        format!("`{name}` is {shape:?}; expected [classes, {h}]"),
                    ));
                }
                head_w = Some(values()?);
            }
            Slot::Head(false) => {
                if shape.len() != 1 {
                    return Err(fail(
                        ADAPTER_WEIGHTS,
                        format!("`{name}` is {shape:?}; expected [classes]"),
                    ));
                }
                head_b = Some(values()?);
            }
            Slot::Factor(layer, target, is_a) => {
                pairs.add((layer, target), is_a, name, &view, dims(target))?;
            }
        }
    }
    let factors = pairs
        .factors(&settings, |(layer, target)| {
            format!("encoder.layer.{layer}.{}", target.module_path())
        })?
        .into_iter()
        .map(|((layer, target), a, b, dims, scale)| (layer, target, a, b, dims, scale))
        .collect();
    let head = match (head_w, head_b) {
        (Some(w), Some(b)) if w.len() == b.len() * h => Some((w, b)),
        (Some(w), Some(b)) => {
            return Err(fail(
                ADAPTER_WEIGHTS,
                format!(
                    "the classifier's weight has {} rows but its bias {} values",
                    w.len() / h,
                    b.len()
                ),
            ));
        }
        (None, None) => None,
        _ => {
            return Err(fail(
                ADAPTER_WEIGHTS,
                "has only one of `classifier.weight` and `classifier.bias`",
            ));
        }
    };
    if let (Some(m), Some((_, b))) = (&meta, &head)
        && m.labels.len() != b.len()
    {
        return Err(fail(
            ADAPTER_META,
            format!(
                "names {} labels but the saved classifier has {} classes",
                m.labels.len(),
                b.len()
            ),
        ));
    }
    Ok(Adapter {
        factors,
        head,
        dropout: settings.dropout,
        meta,
        task_type: settings.task_type,
    })
}

/// A GPT's adapter read from a PEFT folder: per adapted layer, block, target, `A` `[d_in, r]`
/// and `B` `[r, d_out]` (burnish's layout), dims and scale.
#[derive(Debug, Clone)]
pub struct GptAdapter {
    /// The factors.
    pub factors: Vec<(usize, GptTarget, Vec<f32>, Vec<f32>, [usize; 3], f64)>,
    /// `lora_dropout`.
    pub dropout: f64,
}

impl GptAdapter {
    /// The model with these adapters attached (replacing any on the same layers).
    pub fn apply(&self, mut model: Gpt, device: &Device) -> Gpt {
        for (block, target, a, b, dims, scale) in &self.factors {
            let f =
                LoraFactors::from_values(a.clone(), b.clone(), *dims, *scale, self.dropout, device);
            model.set_adapter(*block, *target, f);
        }
        model
    }
}

/// A GPT's adapters as a PEFT folder for a `GPT2LMHeadModel` base (`task_type` `CAUSAL_LM`,
/// `fan_in_fan_out` as PEFT sets it for GPT-2's `Conv1D`), read back asynchronously.
///
/// # Errors
/// A model without adapters; read-back failures.
pub async fn export_gpt_adapter(model: &Gpt, base_model: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let adapters = model.adapters();
    let Some((rank, targets)) = model.lora_shape() else {
        return Err(Error::data(
            "adapter",
            "this model has no LoRA adapter (it was not trained with LoRA); export the full model instead",
        ));
    };
    let first = adapters[0].2;
    let mut tensors = Vec::new();
    for (block, target, f) in &adapters {
        let a = read(f.a.val()).await?;
        let b = read(f.b.val()).await?;
        let [d_in, r] = f.a.val().dims();
        let [_, d_out] = f.b.val().dims();
        let name = format!("{PREFIX}transformer.h.{block}.{}", target.module_path());
        tensors.push((
            format!("{name}.lora_A.weight"),
            bytes(&transpose(&a, d_in, r)),
            vec![r, d_in],
        ));
        tensors.push((
            format!("{name}.lora_B.weight"),
            bytes(&transpose(&b, r, d_out)),
            vec![d_out, r],
        ));
    }
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    let metadata = std::collections::BTreeMap::from([("format", "pt".to_string())]);
    let config = serde_json::json!({
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": true,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": first.scale * rank as f64,
        "lora_dropout": first.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false,
    });
    Ok(vec![
        (
            ADAPTER_CONFIG.into(),
            serde_json::to_vec_pretty(&config)
                .map_err(|e| Error::data("adapter", e.to_string()))?,
        ),
        (
            ADAPTER_WEIGHTS.into(),
            write_safetensors(&tensors, &metadata),
        ),
    ])
}

fn gpt_slot(name: &str, layers: usize) -> std::result::Result<(usize, GptTarget, bool), String> {
    let cannot = || {
        format!(
            "tensor `{name}` is not a LoRA factor (`lora_A`/`lora_B`) of a GPT-2 block's c_attn, attn.c_proj, c_fc or mlp.c_proj; burnish cannot apply it"
        )
    };
    let unprefixed = name.strip_prefix(PREFIX).unwrap_or(name);
    let rest = unprefixed
        .strip_prefix("transformer.h.")
        .ok_or_else(cannot)?;
    let (index, rest) = rest.split_once('.').ok_or_else(cannot)?;
    let block: usize = index.parse().map_err(|_| cannot())?;
    let rest = rest
        .strip_suffix(".weight")
        .ok_or_else(cannot)?
        .replace(".default", "");
    let (module, is_a) = if let Some(m) = rest.strip_suffix(".lora_A") {
        (m, true)
    } else if let Some(m) = rest.strip_suffix(".lora_B") {
        (m, false)
    } else {
        return Err(cannot());
    };
    let target = GptTarget::from_module_path(module).ok_or_else(cannot)?;
    if block >= layers {
        return Err(format!(
            "tensor `{name}` adapts block {block}, but the model has {layers} blocks"
        ));
    }
    Ok((block, target, is_a))
}

/// Read a PEFT LoRA folder's files written for a GPT-2 base and check every tensor against
/// `config` before anything reaches a device.
///
/// # Errors
/// [`Error::Data`] naming the file and what is wrong.
pub fn read_gpt_adapter(
    config_json: &[u8],
    weights: &[u8],
    config: &GptConfig,
) -> Result<GptAdapter> {
    let settings = settings(config_json, true)?;
    if let Some(task) = &settings.task_type
        && task != "CAUSAL_LM"
    {
        return Err(fail(
            ADAPTER_CONFIG,
            format!("`task_type` is `{task}`; a language model takes `CAUSAL_LM` adapters"),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(weights).map_err(|e| {
        fail(
            ADAPTER_WEIGHTS,
            format!("not a valid safetensors file ({e})"),
        )
    })?;
    let h = config.hidden;
    let dims = |t: GptTarget| match t {
        GptTarget::Attn => (h, 3 * h),
        GptTarget::AttnProj => (h, h),
        GptTarget::Fc => (h, 4 * h),
        GptTarget::MlpProj => (4 * h, h),
    };
    let mut pairs = Pairs::new();
    let mut names = st.names();
    names.sort();
    for name in names {
        let view = st
            .tensor(name)
            .map_err(|e| fail(ADAPTER_WEIGHTS, format!("tensor `{name}`: {e}")))?;
        let (block, target, is_a) =
            gpt_slot(name, config.layers).map_err(|r| fail(ADAPTER_WEIGHTS, r))?;
        pairs.add((block, target), is_a, name, &view, dims(target))?;
    }
    let factors = pairs
        .factors(&settings, |(block, target)| {
            format!("transformer.h.{block}.{}", target.module_path())
        })?
        .into_iter()
        .map(|((block, target), a, b, dims, scale)| (block, target, a, b, dims, scale))
        .collect();
    Ok(GptAdapter {
        factors,
        dropout: settings.dropout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Masks;
    use crate::model::bert::tests::tiny_config;
    use crate::model::bert::{Bert, BertWeights};
    use crate::model::lora::{LoraConfig, Strategy, Tuning};
    use crate::rng::Rng;
    use crate::text::{Encoding, TextTokenizer, pad_batch};
    use crate::train::text::tests::TINY_TOKENIZER;

    fn base(device: &Device) -> BertClassifier {
        let config = tiny_config();
        let bert =
            Bert::from_weights(&config, BertWeights::random(&config, 3), device).expect("bert");
        BertClassifier::new(bert, 3, Pooling::Cls, 0.0, 1, device)
    }

    /// A LoRA model whose `B` factors are random too (fresh adapters are the identity).
    fn adapted(device: &Device, targets: Vec<LoraTarget>) -> BertClassifier {
        let tuning = Tuning {
            strategy: Strategy::Lora,
            lora: LoraConfig {
                rank: 2,
                alpha: 6.0,
                dropout: 0.0,
                targets,
            },
            ..Tuning::default()
        };
        let mut model = base(device).tuned(&tuning, 1).expect("tuned");
        let mut rng = Rng::new(11);
        let layers: Vec<_> = model
            .adapters()
            .iter()
            .map(|(l, t, f)| (*l, *t, f.a.val().dims()[0], f.b.val().dims()[1]))
            .collect();
        for (layer, target, d_in, d_out) in layers {
            let mut draw = |n: usize| (0..n).map(|_| 0.3 * rng.normal()).collect::<Vec<f32>>();
            let (a, b) = (draw(d_in * 2), draw(2 * d_out));
            model.set_adapter(
                layer,
                target,
                LoraFactors::from_values(a, b, [d_in, 2, d_out], 3.0, 0.0, device),
            );
        }
        model
    }

    fn logits(model: &BertClassifier, device: &Device) -> Vec<f32> {
        let tok = TextTokenizer::from_json("tokenizer.json", TINY_TOKENIZER.as_bytes(), 8)
            .expect("tokenizer");
        let rows: Vec<Encoding> = ["good film", "the awful film", "poor"]
            .iter()
            .map(|t| tok.encode(t, None).expect("encode"))
            .collect();
        let refs: Vec<&Encoding> = rows.iter().collect();
        let input = pad_batch(&refs, tok.pad_id(), device);
        model
            .forward(&input, &mut Masks::none())
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn fresh_adapters_start_as_the_identity_and_merging_keeps_the_logits() {
        let device = Device::flex();
        let plain = logits(&base(&device), &device);
        let fresh = base(&device)
            .tuned(
                &Tuning {
                    strategy: Strategy::Lora,
                    ..Tuning::default()
                },
                1,
            )
            .expect("tuned");
        assert_eq!(fresh.adapters().len(), 2 * 2, "query and value of 2 layers");
        assert_eq!(logits(&fresh, &device), plain, "B = 0: the identity");

        let model = adapted(&device, LoraTarget::ALL.to_vec());
        let with_adapters = logits(&model, &device);
        assert!(
            worst(&with_adapters, &plain) > 1e-3,
            "the adapters change the logits"
        );
        // Folded into the weights (as the full-model export does): same logits.
        let merged = Tuning::default();
        let folded = model.clone().tuned(&merged, 1).expect("merged");
        assert!(folded.adapters().is_empty());
        let d = worst(&logits(&folded, &device), &with_adapters);
        assert!(d < 1e-5, "merged logits differ by {d}");
        // And through the Hugging Face export: reload the folder, no adapters, same logits.
        let config = tiny_config();
        let folder = pollster::block_on(model.export_hf(
            &serde_json::to_vec(&config).expect("json"),
            TINY_TOKENIZER.as_bytes(),
            &["a".into(), "b".into(), "c".into()],
            8,
        ))
        .expect("export");
        let bytes = folder.file("model.safetensors").expect("weights");
        let weights =
            BertWeights::from_safetensors("model.safetensors", bytes, &config).expect("weights");
        let bert = Bert::from_weights(&config, weights, &device).expect("bert");
        let reloaded = BertClassifier::new(bert, 3, Pooling::Cls, 0.0, 5, &device)
            .with_head_from("model.safetensors", bytes, &device)
            .expect("head");
        let d = worst(&logits(&reloaded, &device), &with_adapters);
        assert!(d < 1e-5, "reloaded merged export differs by {d}");
    }

    #[test]
    fn adapter_export_and_import_round_trip_exactly() {
        let device = Device::flex();
        let targets = vec![LoraTarget::Query, LoraTarget::Value, LoraTarget::Output];
        let model = adapted(&device, targets);
        let classes: Vec<String> = ["neg", "neutral", "pos"].map(String::from).to_vec();
        let folder =
            pollster::block_on(export_adapter(&model, &classes, 8, "tiny-bert")).expect("export");
        let config: serde_json::Value =
            serde_json::from_slice(folder.file(ADAPTER_CONFIG).expect("config")).expect("json");
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 2);
        assert_eq!(config["lora_alpha"], 6.0);
        assert_eq!(config["task_type"], "SEQ_CLS");
        assert_eq!(config["modules_to_save"][0], "classifier");
        assert_eq!(config["base_model_name_or_path"], "tiny-bert");
        // `output.dense` alone would also match `attention.output.dense` in PEFT: full names.
        assert_eq!(
            config["target_modules"][0],
            "encoder.layer.0.attention.self.query"
        );
        assert_eq!(config["target_modules"].as_array().map(Vec::len), Some(6));
        let weights = folder.file(ADAPTER_WEIGHTS).expect("weights");
        let st = safetensors::SafeTensors::deserialize(weights).expect("safetensors");
        let mut names = st.names();
        names.sort();
        assert_eq!(names.len(), 2 * 3 * 2 + 2);
        assert_eq!(
            names[0],
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
        );
        assert_eq!(
            st.tensor("base_model.model.bert.encoder.layer.1.output.dense.lora_A.weight")
                .expect("A")
                .shape(),
            [2, 16]
        );
        assert_eq!(
            st.tensor("base_model.model.bert.encoder.layer.1.output.dense.lora_B.weight")
                .expect("B")
                .shape(),
            [8, 2]
        );
        assert_eq!(
            st.tensor("base_model.model.classifier.weight")
                .expect("head")
                .shape(),
            [3, 8]
        );

        let adapter = read_adapter(
            folder.file(ADAPTER_CONFIG).expect("config"),
            weights,
            folder.file(ADAPTER_META),
            &tiny_config(),
        )
        .expect("read");
        assert_eq!(
            adapter.meta.as_ref().map(|m| m.labels.clone()),
            Some(classes)
        );
        let imported = adapter.apply(base(&device), &device).expect("apply");
        for ((l1, t1, f1), (l2, t2, f2)) in model.adapters().iter().zip(imported.adapters()) {
            assert_eq!((l1, t1), (&l2, &t2));
            assert_eq!(f1.scale, f2.scale);
            for (x, y) in [(f1.a.val(), f2.a.val()), (f1.b.val(), f2.b.val())] {
                assert_eq!(
                    x.into_data().try_to_vec::<f32>().expect("f32"),
                    y.into_data().try_to_vec::<f32>().expect("f32"),
                    "factors of layer {l1} {t1:?}"
                );
            }
        }
        assert_eq!(logits(&imported, &device), logits(&model, &device));
        // Exported again: the same bytes.
        let again = pollster::block_on(export_adapter(
            &imported,
            &adapter.meta.expect("meta").labels,
            8,
            "tiny-bert",
        ))
        .expect("export");
        assert_eq!(again.files, folder.files);
    }

    #[test]
    fn bad_adapters_are_named() {
        let device = Device::flex();
        let model = adapted(&device, vec![LoraTarget::Query]);
        let folder = pollster::block_on(export_adapter(
            &model,
            &["a".into(), "b".into(), "c".into()],
            8,
            "t",
        ))
        .expect("export");
        let config = folder.file(ADAPTER_CONFIG).expect("config").to_vec();
        let weights = folder.file(ADAPTER_WEIGHTS).expect("weights").to_vec();
        let tiny = tiny_config();
        let edit_config = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_slice(&config).expect("json");
            edit(&mut v);
            let bytes = serde_json::to_vec(&v).expect("json");
            read_adapter(&bytes, &weights, None, &tiny)
                .expect_err("bad config")
                .to_string()
        };
        let err = edit_config(&|v| v["peft_type"] = "IA3".into());
        assert!(
            err.contains("`peft_type` is `IA3`; burnish reads LoRA"),
            "{err}"
        );
        let err = edit_config(&|v| v["use_dora"] = true.into());
        assert!(err.contains("DoRA"), "{err}");
        let err = edit_config(&|v| v["bias"] = "all".into());
        assert!(err.contains("`bias` is `all`"), "{err}");
        let err = edit_config(&|v| {
            v.as_object_mut().expect("object").remove("lora_alpha");
        });
        assert!(err.contains("`lora_alpha` is missing"), "{err}");
        let err = read_adapter(b"{", &weights, None, &tiny)
            .expect_err("json")
            .to_string();
        assert!(
            err.contains("adapter_config.json") && err.contains("not valid JSON"),
            "{err}"
        );

        // Tensors: rebuild the file with one change.
        let st = safetensors::SafeTensors::deserialize(&weights).expect("st");
        let tensors = |edit: &dyn Fn(&str, Vec<usize>) -> Option<(String, Vec<usize>)>| {
            let list: Vec<(String, Vec<u8>, Vec<usize>)> = st
                .names()
                .into_iter()
                .filter_map(|n| {
                    let (name, shape) = edit(n, st.tensor(n).expect("t").shape().to_vec())?;
                    let count: usize = shape.iter().product();
                    Some((name, vec![0u8; 4 * count], shape))
                })
                .collect();
            let bytes = write_safetensors(&list, &Default::default());
            read_adapter(&config, &bytes, None, &tiny)
                .expect_err("bad tensors")
                .to_string()
        };
        let err = tensors(&|n, s| {
            (!n.contains("layer.1.attention.self.query.lora_B")).then(|| (n.into(), s))
        });
        assert!(
            err.contains(
                "`encoder.layer.1.attention.self.query` has only one of `lora_A` and `lora_B`"
            ),
            "{err}"
        );
        let err = tensors(&|n, s| {
            Some(if n.contains("layer.0.attention.self.query.lora_A") {
                (n.into(), vec![2, 9])
            } else {
                (n.into(), s)
            })
        });
        assert!(err.contains("is [2, 9]; expected [r, 8]"), "{err}");
        let err = tensors(&|n, s| Some((n.replace("layer.1.", "layer.7."), s)));
        assert!(
            err.contains("adapts layer 7, but the model has 2 layers"),
            "{err}"
        );
        let err = tensors(&|n, s| Some((n.replace("attention.self.query", "pooler.dense"), s)));
        assert!(err.contains("burnish cannot apply it"), "{err}");
        let err = tensors(&|n, s| {
            Some(if n.contains("layer.0.attention.self.query.lora_B") {
                (n.into(), vec![8, 3])
            } else {
                (n.into(), s)
            })
        });
        assert!(
            err.contains("`lora_A` has rank 2 but `lora_B` is [8, 3]"),
            "{err}"
        );
        let err = tensors(&|n, s| n.contains("classifier").then(|| (n.into(), s)));
        assert!(err.contains("holds no LoRA factors"), "{err}");
        let err = read_adapter(&config, b"12345678", None, &tiny)
            .expect_err("not safetensors")
            .to_string();
        assert!(
            err.contains("adapter_model.safetensors") && err.contains("not a valid safetensors"),
            "{err}"
        );
    }
}
