//! Classification heads on a BERT encoder. Sequences: pool, dropout, linear (transformers'
//! `BertForSequenceClassification` when pooling is `cls` and the checkpoint has a pooler).
//! Tokens: dropout and a linear layer on every token's state (`BertForTokenClassification`).

use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Masks;
use super::bert::{Bert, EncoderInput};
use super::lora::{LoraFactors, LoraTarget, Strategy, Tuning};
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

/// What the head classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextTask {
    /// One class per text (or pair of texts).
    #[default]
    Sequence,
    /// One tag per word (named-entity recognition).
    Tokens,
}

/// An encoder with a classification head.
#[derive(Module, Debug)]
pub struct BertClassifier {
    /// The pretrained encoder.
    pub bert: Bert,
    head: Linear,
    dropout: f64,
    mean: bool,
    tokens: bool,
}

impl BertClassifier {
    /// A fresh sequence head of `n_classes` on `bert`, drawn from `seed` (transformers' init:
    /// normal, std 0.02, zero bias).
    pub fn new(
        bert: Bert,
        n_classes: usize,
        pooling: Pooling,
        dropout: f64,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self::with_task(
            bert,
            TextTask::Sequence,
            n_classes,
            pooling,
            dropout,
            seed,
            device,
        )
    }

    /// A fresh head for `task` (the pooling only matters for sequences).
    pub fn with_task(
        bert: Bert,
        task: TextTask,
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
            tokens: task == TextTask::Tokens,
        }
    }

    /// What the head classifies.
    pub fn task(&self) -> TextTask {
        if self.tokens {
            TextTask::Tokens
        } else {
            TextTask::Sequence
        }
    }

    /// Classes (or tags) of the head.
    pub fn n_classes(&self) -> usize {
        self.head.weight.val().dims()[1]
    }

    /// Logits: `[batch, n_classes]` for sequences, `[batch * length, n_classes]` (row-major over
    /// the padded batch) for tokens.
    pub fn forward(&self, input: &EncoderInput, masks: &mut Masks<'_>) -> Tensor<2> {
        let hidden = self.bert.forward(input, masks);
        if self.tokens {
            let [batch, len, h] = hidden.dims();
            let states: Tensor<2> = hidden.reshape([batch * len, h]);
            let states = masks.apply(states, self.dropout);
            return masks.linear(&self.head, states, false);
        }
        let pooled = if self.mean {
            Bert::pool_mean(hidden, &input.mask)
        } else {
            let [batch, _, h] = hidden.dims();
            let raw: Tensor<2> = hidden.clone().narrow(1, 0, 1).reshape([batch, h]);
            self.bert.pool_cls(hidden).unwrap_or(raw)
        };
        let pooled = masks.apply(pooled, self.dropout);
        masks.linear(&self.head, pooled, false)
    }

    /// Every LoRA adapter: layer index, target, factors.
    pub fn adapters(&self) -> Vec<(usize, LoraTarget, &LoraFactors)> {
        self.bert
            .layers()
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                LoraTarget::ALL
                    .into_iter()
                    .filter_map(move |t| l.target(t).lora.as_ref().map(|f| (i, t, f)))
            })
            .collect()
    }

    /// The rank and targets of the model's adapters, when it has any.
    pub fn lora_shape(&self) -> Option<(usize, Vec<LoraTarget>)> {
        let adapters = self.adapters();
        let rank = adapters.first()?.2.rank();
        let mut targets: Vec<LoraTarget> = adapters.iter().map(|a| a.1).collect();
        targets.sort();
        targets.dedup();
        Some((rank, targets))
    }

    /// Attach `factors` to `target` of layer `layer` (replacing what was there).
    pub fn set_adapter(&mut self, layer: usize, target: LoraTarget, factors: LoraFactors) {
        self.bert.layers_mut()[layer].target_mut(target).lora = Some(factors);
    }

    /// The model set up for `tuning`: what trains and what is frozen (frozen weights get no
    /// gradients and no optimizer state), with LoRA adapters attached (`A` drawn from `seed`)
    /// or, for another strategy, folded into the weights. A model that already has adapters
    /// keeps them for LoRA with the same rank and targets (to continue training them).
    ///
    /// # Errors
    /// An invalid tuning; LoRA settings that differ from the model's own adapters.
    pub fn tuned(self, tuning: &Tuning, seed: u64) -> crate::Result<Self> {
        let layers = self.bert.layers().len();
        tuning.validate(layers)?;
        let mut model = self;
        let existing = model.lora_shape();
        if tuning.strategy == Strategy::Lora {
            let lora = &tuning.lora;
            let mut wanted = lora.targets.clone();
            wanted.sort();
            wanted.dedup();
            match existing {
                Some((rank, targets)) if rank != lora.rank || targets != wanted => {
                    return Err(crate::Error::config(
                        "text.tuning.lora",
                        format!(
                            "the current model's adapters have rank {rank} on {}; continue with those settings, or train from the base model for rank {} on {}",
                            names(&targets),
                            lora.rank,
                            names(&wanted)
                        ),
                    ));
                }
                Some(_) => {
                    for layer in model.bert.layers_mut() {
                        for t in &wanted {
                            if let Some(f) = &mut layer.target_mut(*t).lora {
                                f.dropout = lora.dropout;
                            }
                        }
                    }
                }
                None => {
                    let device = model.head.weight.val().device();
                    let mut rng = Rng::new(seed ^ 0x6c6f_7261);
                    for i in 0..layers {
                        for t in &wanted {
                            let [d_in, d_out] = model.bert.layers()[i].target(*t).dims();
                            let f = LoraFactors::init(d_in, d_out, lora, &mut rng, &device);
                            model.set_adapter(i, *t, f);
                        }
                    }
                }
            }
        } else if existing.is_some() {
            model.bert = model.bert.merged();
        }
        let model = model.set_require_grad(true);
        Ok(match tuning.strategy {
            Strategy::Full => model,
            Strategy::Head => Self {
                bert: model.bert.no_grad(),
                ..model
            },
            Strategy::Top => Self {
                bert: model.bert.freeze_below(tuning.top_layers),
                ..model
            },
            Strategy::Lora => {
                let mut bert = model.bert.no_grad();
                for layer in bert.layers_mut() {
                    for t in LoraTarget::ALL {
                        let slot = layer.target_mut(t);
                        slot.lora = slot.lora.take().map(|f| f.set_require_grad(true));
                    }
                }
                Self { bert, ..model }
            }
        })
    }
}

fn names(targets: &[LoraTarget]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fine-tuned text classifier as a Hugging Face model folder: `model.safetensors` (transformers'
/// `BertForSequenceClassification` / `BertForTokenClassification` names: `bert.*` and
/// `classifier.*`), `config.json` (the original config with `architectures`, `id2label`,
/// `label2id`, `problem_type` for sequences, and a `burnish` entry recording the task, pooling
/// and max length) and `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct HfFolder {
    /// File name and bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

impl HfFolder {
    /// The bytes of the file called `name`, if the folder has it.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

impl BertClassifier {
    /// Pooling of this head.
    pub fn pooling(&self) -> Pooling {
        if self.mean {
            Pooling::Mean
        } else {
            Pooling::Cls
        }
    }

    /// The head's weight (`[n_classes, hidden]`, PyTorch's layout) and bias, read back.
    ///
    /// # Errors
    /// Read-back failures.
    pub async fn head_values(&self) -> crate::Result<(Vec<f32>, Vec<f32>)> {
        let mut values = Vec::new();
        super::classifier::read_linear(&self.head, &mut values).await?;
        let bias = values.pop().unwrap_or_default();
        let weight = values.pop().unwrap_or_default();
        Ok((weight, bias))
    }

    /// Export as a Hugging Face folder (weights read back asynchronously).
    ///
    /// # Errors
    /// Read-back failures; `config_json` that is not a JSON object.
    pub async fn export_hf(
        &self,
        config_json: &[u8],
        tokenizer_json: &[u8],
        classes: &[String],
        max_length: usize,
    ) -> crate::Result<HfFolder> {
        let mut config: serde_json::Value = serde_json::from_slice(config_json)
            .map_err(|e| crate::Error::data("config.json", format!("not JSON ({e})")))?;
        let object = config
            .as_object_mut()
            .ok_or_else(|| crate::Error::data("config.json", "expected a JSON object"))?;
        let id2label: serde_json::Map<String, serde_json::Value> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c.clone().into()))
            .collect();
        let label2id: serde_json::Map<String, serde_json::Value> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i.into()))
            .collect();
        let architecture = if self.tokens {
            object.remove("problem_type");
            "BertForTokenClassification"
        } else {
            object.insert("problem_type".into(), "single_label_classification".into());
            "BertForSequenceClassification"
        };
        object.insert("architectures".into(), serde_json::json!([architecture]));
        object.insert("id2label".into(), id2label.into());
        object.insert("label2id".into(), label2id.into());
        object.entry("model_type").or_insert_with(|| "bert".into());
        object.insert(
            "burnish".into(),
            serde_json::json!({
                "task": self.task(),
                "pooling": self.pooling(),
                "max_length": max_length,
                "classifier_dropout": self.dropout,
            }),
        );
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .bert
            .named_tensors()
            .await?
            .into_iter()
            // transformers' token classifier has no pooler: leaving it out avoids its warning
            // about unused weights.
            .filter(|(n, _, _)| !(self.tokens && n.starts_with("pooler.")))
            .map(|(n, shape, v)| {
                (
                    format!("bert.{n}"),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    shape,
                )
            })
            .collect();
        let (weight, bias) = self.head_values().await?;
        let [d_in, d_out] = self.head.weight.val().dims();
        tensors.push((
            "classifier.weight".into(),
            weight.iter().flat_map(|x| x.to_le_bytes()).collect(),
            vec![d_out, d_in],
        ));
        tensors.push((
            "classifier.bias".into(),
            bias.iter().flat_map(|x| x.to_le_bytes()).collect(),
            vec![d_out],
        ));
        let metadata = std::collections::BTreeMap::from([("format", "pt".to_string())]);
        let weights = crate::export::write_safetensors(&tensors, &metadata);
        let config = serde_json::to_vec_pretty(&config)
            .map_err(|e| crate::Error::data("config.json", e.to_string()))?;
        Ok(HfFolder {
            files: vec![
                ("config.json".into(), config),
                ("model.safetensors".into(), weights),
                ("tokenizer.json".into(), tokenizer_json.to_vec()),
            ],
        })
    }

    /// The head of an exported (or transformers-trained) `BertForSequenceClassification`:
    /// `classifier.weight` `[n_classes, hidden]` and `classifier.bias`, when present.
    ///
    /// # Errors
    /// [`crate::Error::Data`] naming `source` for a head of the wrong shape or dtype.
    pub fn with_head_from(
        self,
        source: &str,
        bytes: &[u8],
        device: &Device,
    ) -> crate::Result<Self> {
        let fail = |r: String| crate::Error::data(source, r);
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let (Ok(w), Ok(b)) = (st.tensor("classifier.weight"), st.tensor("classifier.bias")) else {
            return Ok(self);
        };
        let [d_in, d_out] = self.head.weight.val().dims();
        if w.shape() != [d_out, d_in] || b.shape() != [d_out] {
            return Err(fail(format!(
                "`classifier.weight` is {:?}, expected [{d_out}, {d_in}] for {d_out} classes",
                w.shape()
            )));
        }
        let weight = crate::export::decode_float(source, "classifier.weight", w.dtype(), w.data())?;
        let bias = crate::export::decode_float(source, "classifier.bias", b.dtype(), b.data())?;
        self.with_head(source, &weight, &bias, device)
    }

    /// The head set to `weight` (`[n_classes, hidden]`, PyTorch's layout) and `bias`.
    ///
    /// # Errors
    /// [`crate::Error::Data`] naming `source` when the sizes do not match this head.
    pub fn with_head(
        self,
        source: &str,
        weight: &[f32],
        bias: &[f32],
        device: &Device,
    ) -> crate::Result<Self> {
        let [d_in, d_out] = self.head.weight.val().dims();
        if weight.len() != d_in * d_out || bias.len() != d_out {
            return Err(crate::Error::data(
                source,
                format!(
                    "the classifier has {} classes; expected {d_out} (x {d_in} inputs)",
                    bias.len()
                ),
            ));
        }
        let weight = super::classifier::transpose(weight, d_out, d_in);
        Ok(Self {
            head: Linear {
                weight: burn::module::Param::from_data(
                    TensorData::new(weight, [d_in, d_out]),
                    device,
                ),
                bias: Some(burn::module::Param::from_data(
                    TensorData::new(bias.to_vec(), [d_out]),
                    device,
                )),
            },
            ..self
        })
    }
}
