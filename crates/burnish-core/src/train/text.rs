//! Fine-tuning a [`BertClassifier`] on tokenized texts, one optimizer step per call, with the
//! recipe of [`TrainConfig`] (optimizer, schedule, accumulation, clipping) and transformers'
//! weight-decay rule (matrices and embeddings only; biases and LayerNorm are not decayed).
//!
//! Sequence and token tasks share one loss: cross-entropy over the labelled rows of the logits,
//! averaged over them (for tokens, only the first sub-token of each word carries a label, as
//! transformers' `-100` convention does).

use super::optim::Optimizer;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use super::batches::BatchOrder;
use super::loss::cross_entropy;
use super::optim::DecayScope;
use super::optimizer::{build, clip_factor, dynamic_factor};
use super::trainer::{add_loss, step_report};
use super::{Evaluation, StepReport, TrainConfig};
use crate::eval::{ClassificationReport, EntityReport};
use crate::model::Masks;
use crate::model::bert_classifier::BertClassifier;
use crate::rng::Rng;
use crate::text::{Encoding, pad_batch};
use crate::{Error, Result};

/// The labels of tokenized rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// One class per row.
    Sequence(Vec<u32>),
    /// Tags of words.
    Tokens {
        /// Per row and token: the tag of the word the token starts, or `-1` for special tokens
        /// and later sub-tokens (left out of the loss).
        aligned: Vec<Vec<i32>>,
        /// Per row: the true tag of every word, also of words cut off by truncation (they count
        /// as predicted `O` in the report, so truncation cannot flatter the scores).
        words: Vec<Vec<u32>>,
    },
}

impl Labels {
    /// Token labels for `rows` from each word's tag: the first sub-token of a word gets its
    /// tag, the rest `-1`.
    pub fn align(rows: &[Encoding], words: Vec<Vec<u32>>) -> Self {
        let aligned = rows
            .iter()
            .zip(&words)
            .map(|(row, tags)| {
                let mut previous = None;
                row.words
                    .iter()
                    .map(|&w| {
                        let first = w.is_some() && w != previous;
                        previous = w;
                        match w {
                            Some(w) if first => tags.get(w as usize).map_or(-1, |&t| t as i32),
                            _ => -1,
                        }
                    })
                    .collect()
            })
            .collect();
        Self::Tokens { aligned, words }
    }
}

/// Tokenized rows and their labels.
#[derive(Debug, Clone)]
pub struct TokenizedSet {
    /// One encoding per row.
    pub rows: Vec<Encoding>,
    /// Labels of the rows.
    pub labels: Labels,
    /// Class (or tag) names.
    pub classes: Vec<String>,
    /// Padding id of the tokenizer.
    pub pad_id: u32,
}

impl TokenizedSet {
    /// The rows at `indices`.
    pub fn subset(&self, indices: &[usize]) -> Self {
        fn pick<T: Clone>(v: &[T], indices: &[usize]) -> Vec<T> {
            indices.iter().map(|&i| v[i].clone()).collect()
        }
        let labels = match &self.labels {
            Labels::Sequence(l) => Labels::Sequence(indices.iter().map(|&i| l[i]).collect()),
            Labels::Tokens { aligned, words } => Labels::Tokens {
                aligned: pick(aligned, indices),
                words: pick(words, indices),
            },
        };
        Self {
            rows: pick(&self.rows, indices),
            labels,
            classes: self.classes.clone(),
            pad_id: self.pad_id,
        }
    }

    /// Targets and weights of rows `indices` for the padded batch layout of
    /// [`BertClassifier::forward`]: `[rows]` for sequences, `[rows * longest]` for tokens.
    fn targets(&self, indices: &[usize], device: &Device) -> (Tensor<1, Int>, Tensor<1>) {
        let (targets, weights): (Vec<i64>, Vec<f32>) = match &self.labels {
            Labels::Sequence(l) => indices.iter().map(|&i| (i64::from(l[i]), 1.0)).unzip(),
            Labels::Tokens { aligned, .. } => {
                let len = indices
                    .iter()
                    .map(|&i| self.rows[i].ids.len())
                    .max()
                    .unwrap_or(1)
                    .max(1);
                indices
                    .iter()
                    .flat_map(|&i| (0..len).map(move |j| aligned[i].get(j).copied().unwrap_or(-1)))
                    .map(|t| if t < 0 { (0, 0.0) } else { (i64::from(t), 1.0) })
                    .unzip()
            }
        };
        let n = targets.len();
        (
            Tensor::from_data(TensorData::new(targets, [n]), device),
            Tensor::from_data(TensorData::new(weights, [n]), device),
        )
    }
}

/// Steps a text classifier; see the module documentation.
pub struct TextTrainer {
    model: Option<BertClassifier>,
    optim: Optimizer,
    config: TrainConfig,
    data: TokenizedSet,
    device: Device,
    batches: BatchOrder,
    dropout_rng: Rng,
    step: usize,
    /// Loss scaling where the matrix products are half precision.
    scaler: Option<LossScaler>,
}

impl std::fmt::Debug for TextTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTrainer")
            .field("rows", &self.data.rows.len())
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl TextTrainer {
    /// A trainer for `model` (built on the plain `device`; autodiff is switched on here).
    ///
    /// # Errors
    /// An invalid config or an empty data set.
    pub fn new(
        model: BertClassifier,
        config: TrainConfig,
        data: TokenizedSet,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if data.rows.is_empty() {
            return Err(Error::data("text", "expected at least one row, found none"));
        }
        let device = device.clone().autodiff();
        let model = model.fork(&device).train();
        let optim = build(&config, DecayScope::Matrices);
        let mut rng = Rng::new(config.seed);
        let _ = rng.next_u64();
        let scaler = config
            .half_products(&device)
            .map(|scale| LossScaler::new(scale, &device));
        Ok(Self {
            model: Some(model),
            optim,
            scaler,
            batches: BatchOrder::new(rng),
            dropout_rng: Rng::new(config.seed ^ 0x0064_726f_706f_7574),
            step: 0,
            config,
            data,
            device,
        })
    }

    /// The model as it is now.
    pub fn model(&self) -> &BertClassifier {
        self.model
            .as_ref()
            .expect("the model is only absent inside step()")
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Tensors of optimizer state (two moments per trained tensor for Adam/AdamW; frozen ones
    /// have none).
    pub fn optimizer_state_tensors(&self) -> usize {
        self.optim.state_tensors()
    }

    /// The device it trains on (with autodiff).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimizer step; reads the loss back asynchronously.
    ///
    /// # Errors
    /// [`Error::Readback`], or [`Error::Diverged`] when the loss is not finite.
    pub async fn step(&mut self) -> Result<StepReport> {
        let (loss, learning_rate) = self.step_unread()?;
        step_report(Some(loss), self.step, learning_rate).await
    }

    /// One optimizer step without reading its loss back: the mean loss stays on the device,
    /// with the learning rate used (the run loop reads several steps' losses at once).
    ///
    /// # Errors
    /// [`Error::Config`] when the config has no micro-batch.
    pub fn step_unread(&mut self) -> Result<(Tensor<1>, f64)> {
        let model = self
            .model
            .take()
            .expect("the model is only absent inside step()");
        let (data, device, batches, dropout) = (
            &self.data,
            &self.device,
            &mut self.batches,
            &mut self.dropout_rng,
        );
        let batch_size = self.config.batch_size;
        let fused = self.config.fuse_loss();
        let fused_kernels = self.config.fused_kernels;
        let half = self.scaler.is_some();
        let (model, loss, learning_rate) = decoupled_step(
            model,
            &mut self.optim,
            &self.config,
            self.step,
            self.scaler.as_mut(),
            |model: &BertClassifier, micro: usize| {
                let indices = batches.next(data.rows.len(), batch_size);
                let rows: Vec<&Encoding> = indices.iter().map(|&i| &data.rows[i]).collect();
                let input = pad_batch(&rows, data.pad_id, device);
                let (targets, weights) = data.targets(&indices, device);
                let mut masks = Masks::from(dropout)
                    .with_fused_kernels(fused_kernels)
                    .with_half_products(half);
                let logits = model.forward(&input, &mut masks);
                cross_entropy(logits, targets, Some(weights), fused) / micro as f32
            },
        );
        self.model = Some(model);
        self.step += 1;
        Ok((queued_loss(loss)?, learning_rate))
    }
}

/// Loss scaling of a half-precision run: the scale the run started with and, where the fused
/// kernels run, the dynamic scaler's state `[scale, good steps]` on the device (read by each
/// step's loss and updated after it, never read back to the host).
#[derive(Debug, Clone)]
pub(crate) struct LossScaler {
    initial: f32,
    state: Tensor<1>,
}

impl LossScaler {
    /// Good steps in a row before the scale doubles.
    pub(crate) const GROWTH_INTERVAL: u32 = 500;

    /// A scaler starting at `scale`, for a model on `device` (autodiff or not).
    pub(crate) fn new(scale: f32, device: &Device) -> Self {
        Self {
            initial: scale,
            state: Tensor::from_floats([scale, 0.0], &device.clone().without_autodiff()),
        }
    }

    /// The state `[scale, good steps]`.
    #[cfg(all(test, feature = "wgpu"))]
    pub(crate) fn state(&self) -> &Tensor<1> {
        &self.state
    }
}

/// One optimizer step of `model`, shared by the trainers of pretrained and generative models:
/// `grad_accumulation` micro-batches (`loss_of(model, micro)` gives each one's loss, already
/// divided by `micro`), global-norm clipping, the scheduled learning rate and the update (whose
/// weight decay the trainers scope to matrices). With a loss `scaler` (half-precision products),
/// each loss is multiplied by the scale before its backward pass and the gradients divided by
/// it again as the optimizer reads them (`clip factor / scale`, or `1 / scale`), so the update
/// is the unscaled one without a launch per gradient. Where the fused kernels run the scaling is
/// dynamic (`kernels::clip::dynamic_factor`: a step whose gradients are not finite is skipped
/// and the scale halved, the scale doubles after [`LossScaler::GROWTH_INTERVAL`] good steps),
/// all on the device; elsewhere it is static (clipping compares the norm with
/// `max_norm * scale`). Returns the model, the mean loss (unscaled) still on the device (`None`
/// without micro-batches) and the learning rate used.
pub(crate) fn decoupled_step<M>(
    model: M,
    optim: &mut Optimizer,
    config: &TrainConfig,
    step: usize,
    mut scaler: Option<&mut LossScaler>,
    mut loss_of: impl FnMut(&M, usize) -> Tensor<1>,
) -> (M, Option<Tensor<1>>, f64)
where
    M: burn::module::Module,
{
    let micro = config.grad_accumulation;
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut total: Option<Tensor<1>> = None;
    let dynamic = scaler.is_some() && config.fused_kernels;
    let mut inner = None;
    for _ in 0..micro {
        let loss = loss_of(&model, micro);
        let backward = match &scaler {
            // The scale as a constant of the graph (it has no autodiff).
            Some(s) if dynamic => loss.clone() * s.state.clone().slice(0..1),
            Some(s) => loss.clone() * s.initial,
            None => loss.clone(),
        };
        inner.get_or_insert_with(|| loss.device().without_autodiff());
        accumulator.accumulate(
            &model,
            GradientsParams::from_grads(backward.backward(), &model),
        );
        total = add_loss(total, loss.detach());
    }
    let grads = accumulator.grads();
    let learning_rate = config.learning_rate_at(step);
    if let Some(s) = scaler.as_deref_mut().filter(|_| dynamic)
        && let Some((factor, state)) = dynamic_factor(
            &model,
            &grads,
            config.clip_grad_norm,
            s.state.clone(),
            LossScaler::GROWTH_INTERVAL,
        )
    {
        s.state = state;
        let model = optim.step_or_skip(learning_rate, model, grads, &factor);
        return (model, total, learning_rate);
    }
    let loss_scale = scaler.map(|s| s.initial);
    let unscale = loss_scale.unwrap_or(1.0);
    let clip = config
        .clip_grad_norm
        .and_then(|max_norm| clip_factor(&model, &grads, max_norm * unscale, config.fused_kernels));
    let factor = match (clip.map(|c| c.factor), loss_scale, inner) {
        (Some(factor), Some(scale), _) => Some(factor / scale),
        (None, Some(scale), Some(device)) => Some(Tensor::<1>::from_floats([1.0 / scale], &device)),
        (factor, _, _) => factor,
    };
    let model = optim.step(learning_rate, model, grads, factor.as_ref());
    (model, total, learning_rate)
}

/// The loss a step left on the device, or the error of a step without micro-batches.
pub(crate) fn queued_loss(total: Option<Tensor<1>>) -> Result<Tensor<1>> {
    total.ok_or_else(|| Error::config("grad_accumulation", "expected at least 1 micro-batch"))
}

/// Loss and report of `model` on `data`, in batches of `batch` rows. For sequences the report
/// is per class; for tokens it is per tag over words (its accuracy is the token accuracy), with
/// the entity-level report beside it.
///
/// # Errors
/// Read-back failures; an empty set.
pub async fn evaluate_text(
    model: &BertClassifier,
    data: &TokenizedSet,
    batch: usize,
    device: &Device,
) -> Result<Evaluation> {
    if data.rows.is_empty() {
        return Err(Error::data(
            "text",
            "expected at least one row to evaluate, found none",
        ));
    }
    let device = device.clone().without_autodiff();
    let model = model.valid().fork(&device);
    let mut predicted: Vec<u32> = Vec::with_capacity(data.rows.len());
    let mut word_predictions: Vec<Vec<u32>> = Vec::new();
    let (mut loss_sum, mut weight_sum) = (0.0f64, 0.0f64);
    for start in (0..data.rows.len()).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(data.rows.len());
        let indices: Vec<usize> = (start..end).collect();
        let rows: Vec<&Encoding> = data.rows[start..end].iter().collect();
        let input = pad_batch(&rows, data.pad_id, &device);
        let (targets, weights) = data.targets(&indices, &device);
        let logits = model.forward(&input, &mut Masks::none());
        let count: f32 = weights
            .clone()
            .sum()
            .into_scalar_async()
            .await
            .map_err(Error::readback("evaluation weights"))?;
        let loss: f32 = cross_entropy(logits.clone(), targets, Some(weights), true)
            .into_scalar_async()
            .await
            .map_err(Error::readback("evaluation loss"))?;
        loss_sum += f64::from(loss) * f64::from(count);
        weight_sum += f64::from(count);
        let best = logits
            .argmax(1)
            .into_data_async()
            .await
            .map_err(Error::readback("predictions"))?;
        let best: Vec<i64> =
            best.convert::<i64>()
                .try_to_vec::<i64>()
                .map_err(|e| Error::Readback {
                    what: "predictions",
                    reason: format!("{e:?}"),
                })?;
        match &data.labels {
            Labels::Sequence(_) => predicted.extend(best.into_iter().map(|b| b as u32)),
            Labels::Tokens { words, .. } => {
                let len = best.len() / rows.len().max(1);
                for (k, row) in rows.iter().enumerate() {
                    word_predictions.push(word_tags(
                        row,
                        &best[k * len..(k + 1) * len],
                        words[start + k].len(),
                    ));
                }
            }
        }
    }
    let loss = if weight_sum > 0.0 {
        loss_sum / weight_sum
    } else {
        0.0
    };
    match &data.labels {
        Labels::Sequence(labels) => Ok(Evaluation {
            loss,
            report: ClassificationReport::new(&data.classes, labels, &predicted)?,
            entities: None,
        }),
        Labels::Tokens { words, .. } => {
            let truth: Vec<u32> = words.iter().flatten().copied().collect();
            let guess: Vec<u32> = word_predictions.iter().flatten().copied().collect();
            let names = |seqs: &[Vec<u32>]| -> Vec<Vec<&str>> {
                seqs.iter()
                    .map(|s| {
                        s.iter()
                            .map(|&t| data.classes[t as usize].as_str())
                            .collect()
                    })
                    .collect()
            };
            Ok(Evaluation {
                loss,
                report: ClassificationReport::new(&data.classes, &truth, &guess)?,
                entities: EntityReport::new(&names(words), &names(&word_predictions)),
            })
        }
    }
}

/// Each word's predicted tag: the prediction at its first sub-token; `0` (`O`) for words the
/// truncation cut off.
pub fn word_tags(row: &Encoding, predictions: &[i64], words: usize) -> Vec<u32> {
    let mut tags = vec![0u32; words];
    let mut previous = None;
    for (j, &w) in row.words.iter().enumerate() {
        if let Some(w) = w
            && (w as usize) < words
            && previous != Some(w)
        {
            tags[w as usize] = predictions.get(j).map_or(0, |&p| p as u32);
        }
        previous = w;
    }
    tags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::bert::tests::tiny_config;
    use crate::model::bert::{Bert, BertWeights};
    use crate::model::bert_classifier::Pooling;
    use crate::text::TextTokenizer;
    use crate::train::optimizer::OptimizerKind;

    /// A word-level tokenizer.json over a 12-word vocabulary, with BERT's [CLS] ... [SEP]
    /// (`tests/fixtures/tiny-tokenizer.json`, shared with the CLI tests).
    pub(crate) const TINY_TOKENIZER: &str =
        include_str!("../../../../tests/fixtures/tiny-tokenizer.json");

    #[test]
    fn a_tiny_encoder_learns_to_classify_words() {
        let device = Device::flex();
        let tok = TextTokenizer::from_json("tokenizer.json", TINY_TOKENIZER.as_bytes(), 8)
            .expect("tokenizer");
        let e = tok.encode("The GOOD film", None).expect("encode");
        assert_eq!(e.ids, [1, 11, 4, 10, 2]);
        assert_eq!(tok.encode("zebra", None).expect("unk").ids, [1, 3, 2]);
        let long = tok
            .encode("good good good good good good good good good", None)
            .expect("long");
        assert_eq!(long.ids.len(), 8, "truncated to max_len with [SEP] kept");
        assert_eq!(long.ids.last(), Some(&2));
        let texts = [
            ("good film", 1),
            ("the great film", 1),
            ("fine", 1),
            ("bad film", 0),
            ("the awful film", 0),
            ("poor", 0),
            ("great great", 1),
            ("awful poor film", 0),
        ];
        let data = TokenizedSet {
            rows: texts
                .iter()
                .map(|(t, _)| tok.encode(t, None).expect("encode"))
                .collect(),
            labels: Labels::Sequence(texts.iter().map(|(_, l)| *l).collect()),
            classes: vec!["neg".into(), "pos".into()],
            pad_id: tok.pad_id(),
        };
        let config = tiny_config();
        let bert =
            Bert::from_weights(&config, BertWeights::random(&config, 5), &device).expect("bert");
        let model = BertClassifier::new(bert, 2, Pooling::Mean, 0.0, 1, &device);
        let train = TrainConfig {
            learning_rate: 0.01,
            batch_size: 4,
            steps: 60,
            weight_decay: 0.01,
            ..TrainConfig::default()
        };
        let mut trainer = TextTrainer::new(model, train, data.clone(), &device).expect("trainer");
        let losses: Vec<f32> = (0..60)
            .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
            .collect();
        let head: f32 = losses[..5].iter().sum::<f32>() / 5.0;
        let tail: f32 = losses[55..].iter().sum::<f32>() / 5.0;
        assert!(tail < head * 0.5, "loss {head} -> {tail}");
        let eval =
            pollster::block_on(evaluate_text(trainer.model(), &data, 3, &device)).expect("eval");
        assert_eq!(eval.report.accuracy, 1.0, "{}", eval.report.to_text());

        // Export as a Hugging Face folder and load it back: same logits.
        let config_json = serde_json::to_vec(&config).expect("json");
        let folder = pollster::block_on(trainer.model().export_hf(
            &config_json,
            TINY_TOKENIZER.as_bytes(),
            &data.classes,
            8,
        ))
        .expect("export");
        let file = |name: &str| {
            folder
                .file(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .to_vec()
        };
        let hf: serde_json::Value = serde_json::from_slice(&file("config.json")).expect("config");
        assert_eq!(hf["architectures"][0], "BertForSequenceClassification");
        assert_eq!(hf["id2label"]["1"], "pos");
        assert_eq!(hf["label2id"]["neg"], 0);
        assert_eq!(hf["model_type"], "bert");
        assert_eq!(hf["burnish"]["pooling"], "mean");
        assert_eq!(file("tokenizer.json"), TINY_TOKENIZER.as_bytes());
        let weights_bytes = file("model.safetensors");
        let st = safetensors::SafeTensors::deserialize(&weights_bytes).expect("safetensors");
        assert_eq!(
            st.tensor("classifier.weight").expect("head").shape(),
            [2, 8]
        );
        assert_eq!(
            st.tensor("bert.encoder.layer.1.attention.self.query.weight")
                .expect("q")
                .shape(),
            [8, 8]
        );
        let reloaded_config =
            crate::model::bert::BertConfig::from_json("config.json", &file("config.json"))
                .expect("config");
        let weights =
            BertWeights::from_safetensors("model.safetensors", &weights_bytes, &reloaded_config)
                .expect("weights");
        assert_eq!(weights.notes.prefix, "bert.");
        assert_eq!(
            weights.notes.ignored,
            ["classifier.bias", "classifier.weight"]
        );
        let bert = Bert::from_weights(&reloaded_config, weights, &device).expect("bert");
        let reloaded = BertClassifier::new(bert, 2, Pooling::Mean, 0.0, 9, &device)
            .with_head_from("model.safetensors", &weights_bytes, &device)
            .expect("head");
        let rows: Vec<&Encoding> = data.rows.iter().collect();
        let input = pad_batch(&rows, data.pad_id, &device);
        let a = trainer
            .model()
            .valid()
            .forward(&input, &mut Masks::none())
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let b = reloaded
            .forward(&input, &mut Masks::none())
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "reloaded logits differ by {worst}");
    }

    /// The 8 texts of the sentiment test, tokenized.
    fn sentiment(tok: &TextTokenizer) -> TokenizedSet {
        let texts = [
            ("good film", 1),
            ("the great film", 1),
            ("fine", 1),
            ("bad film", 0),
            ("the awful film", 0),
            ("poor", 0),
            ("great great", 1),
            ("awful poor film", 0),
        ];
        TokenizedSet {
            rows: texts
                .iter()
                .map(|(t, _)| tok.encode(t, None).expect("encode"))
                .collect(),
            labels: Labels::Sequence(texts.iter().map(|(_, l)| *l).collect()),
            classes: vec!["neg".into(), "pos".into()],
            pad_id: tok.pad_id(),
        }
    }

    async fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data_async()
            .await
            .expect("read")
            .try_to_vec::<f32>()
            .expect("f32")
    }

    #[test]
    fn frozen_weights_stay_put_and_carry_no_optimizer_state() {
        use crate::model::lora::{LoraTarget, Strategy, Tuning, trainable_parameters};
        use crate::session::memory::MemoryEstimate;
        let device = Device::flex();
        let tok = TextTokenizer::from_json("tokenizer.json", TINY_TOKENIZER.as_bytes(), 8)
            .expect("tokenizer");
        let data = sentiment(&tok);
        let config = tiny_config();
        let train = TrainConfig {
            learning_rate: 0.01,
            batch_size: 4,
            steps: 20,
            weight_decay: 0.01,
            ..TrainConfig::default()
        };
        let query = |m: &BertClassifier, layer: usize| {
            pollster::block_on(values(
                m.bert.layers()[layer]
                    .target(LoraTarget::Query)
                    .linear
                    .weight
                    .val(),
            ))
        };
        for (strategy, top) in [
            (Strategy::Full, 0),
            (Strategy::Head, 0),
            (Strategy::Top, 1),
            (Strategy::Lora, 0),
        ] {
            let mut tuning = Tuning {
                strategy,
                top_layers: top.max(1),
                ..Tuning::default()
            };
            tuning.lora.targets = LoraTarget::ALL.to_vec();
            tuning.lora.rank = 2;
            let bert = Bert::from_weights(&config, BertWeights::random(&config, 5), &device)
                .expect("bert");
            let model = BertClassifier::new(bert, 2, Pooling::Mean, 0.1, 1, &device)
                .tuned(&tuning, 7)
                .expect("tuned");
            let before = [query(&model, 0), query(&model, 1)];
            let (head_before, _) = pollster::block_on(model.head_values()).expect("head");
            let mut trainer =
                TextTrainer::new(model, train.clone(), data.clone(), &device).expect("trainer");
            let trainable = trainable_parameters(trainer.model());
            let estimate =
                MemoryEstimate::for_bert(&config, 2, 4, 8, OptimizerKind::Adamw, &tuning, true);
            assert_eq!(
                trainable, estimate.trainable,
                "{strategy:?}: counted vs estimated"
            );
            let losses: Vec<f32> = (0..20)
                .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
                .collect();
            assert!(losses[19] < losses[0], "{strategy:?}: loss {losses:?}");
            let m = trainer.model();
            let after = [query(m, 0), query(m, 1)];
            let (head_after, _) = pollster::block_on(m.head_values()).expect("head");
            assert_ne!(head_before, head_after, "{strategy:?}: the head trains");
            let changed = [before[0] != after[0], before[1] != after[1]];
            let expected = match strategy {
                Strategy::Full => [true, true],
                Strategy::Top => [false, true],
                Strategy::Head | Strategy::Lora => [false, false],
            };
            assert_eq!(changed, expected, "{strategy:?}: which layers moved");
            // AdamW keeps two moments per trained tensor and nothing for frozen ones.
            let trained_tensors = match strategy {
                // 2 layers x (6 linears x 2 + 2 norms x 2) + 3 embeddings + norm 2 + pooler 0
                // (mean pooling: unused, so no gradient) + head 2.
                Strategy::Full => 2 * 16 + 3 + 2 + 2,
                Strategy::Head => 2,
                Strategy::Top => 16 + 2,
                Strategy::Lora => 2 * 6 * 2 + 2,
            };
            assert_eq!(
                trainer.optimizer_state_tensors(),
                2 * trained_tensors,
                "{strategy:?}: optimizer state"
            );
            if strategy == Strategy::Lora {
                let moved = m.adapters().iter().all(|(_, _, f)| {
                    pollster::block_on(values(f.b.val()))
                        .iter()
                        .any(|v| *v != 0.0)
                });
                assert!(moved, "every adapter's B left zero");
            }
        }
    }

    /// The loss-scaling tests' model: one 3 -> 2 linear layer from seeded weights, five seeded
    /// inputs, the mean of the squared outputs as the loss.
    struct OneLayer {
        x: Tensor<2>,
        initial: Vec<f32>,
        device: Device,
    }

    impl OneLayer {
        fn new(seed: u64, device: &Device) -> Self {
            let mut rng = Rng::new(seed);
            let x: Vec<f32> = (0..15).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [5, 3]), device);
            let initial = (0..8).map(|_| rng.next_f32() - 0.5).collect();
            Self {
                x,
                initial,
                device: device.clone(),
            }
        }

        /// A fresh layer with the initial weights.
        fn layer(&self) -> burn::nn::Linear {
            use burn::module::Param;
            let data = |values: &[f32], shape: Vec<usize>| TensorData::new(values.to_vec(), shape);
            burn::nn::Linear {
                weight: Param::from_tensor(Tensor::from_data(
                    data(&self.initial[..6], vec![3, 2]),
                    &self.device,
                )),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    data(&self.initial[6..], vec![2]),
                    &self.device,
                ))),
            }
        }

        fn loss(&self, m: &burn::nn::Linear) -> Tensor<1> {
            m.forward(self.x.clone()).powf_scalar(2.0).mean()
        }

        /// The weight's values, then the bias's.
        fn values(m: &burn::nn::Linear) -> Vec<f32> {
            let w = m.weight.val().into_data().try_to_vec::<f32>().expect("f32");
            let b = m.bias.as_ref().expect("bias").val().into_data();
            [w, b.try_to_vec::<f32>().expect("f32")].concat()
        }
    }

    /// Loss scaling undoes itself: with a loss scale, the loss's backward pass runs scaled and
    /// the update reads the gradients divided again (through clipping's factor or a factor of
    /// its own), so the weights move as without one: Adam, AdamW and SGD (whose step is
    /// proportional to the gradient), with clipping that bites and without; static through
    /// burn's composed operations (flex, and wgpu without the fused kernels), dynamic through
    /// the fused kernels on wgpu; two micro-batches.
    #[test]
    fn loss_scaling_gives_the_unscaled_update() {
        use burn::nn::Linear;
        // Extended with the wgpu device where the feature is on.
        #[cfg_attr(not(feature = "wgpu"), allow(unused_mut))]
        let mut devices = vec![(Device::flex().autodiff(), true)];
        #[cfg(feature = "wgpu")]
        devices.extend([
            (crate::kernels::test_device().autodiff(), true),
            (crate::kernels::test_device().autodiff(), false),
        ]);
        for (device, fused_kernels) in devices {
            let fixture = OneLayer::new(3, &device);
            for (optimizer, clip) in [
                (OptimizerKind::Adamw, None),
                (OptimizerKind::Adam, Some(0.05)),
                (OptimizerKind::Sgd, None),
                (OptimizerKind::Sgd, Some(0.05)),
            ] {
                let config = TrainConfig {
                    optimizer,
                    clip_grad_norm: clip,
                    grad_accumulation: 2,
                    learning_rate: 0.1,
                    fused_kernels,
                    ..TrainConfig::default()
                };
                let run = |loss_scale: Option<f32>| {
                    let mut model = fixture.layer();
                    let mut optim = build(&config, DecayScope::Matrices);
                    let mut scaler = loss_scale.map(|s| LossScaler::new(s, &device));
                    let mut values = Vec::new();
                    for step in 0..3 {
                        let (next, loss, _) = decoupled_step(
                            model,
                            &mut optim,
                            &config,
                            step,
                            scaler.as_mut(),
                            |m: &Linear, micro| fixture.loss(m) / micro as f32,
                        );
                        model = next;
                        // The reported loss: the unscaled one on both runs.
                        values.push(loss.expect("loss").into_scalar());
                    }
                    [values, OneLayer::values(&model)].concat()
                };
                let (plain, scaled) = (run(None), run(Some(1024.0)));
                assert!(
                    plain[3..]
                        .iter()
                        .zip(&fixture.initial)
                        .any(|(a, b)| (a - b).abs() > 1e-3),
                    "{optimizer:?}: the weights moved"
                );
                for (i, (a, b)) in plain.iter().zip(&scaled).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "{device:?} fused {fused_kernels} {optimizer:?} clip {clip:?}: value {i} \
                         {a} unscaled, {b} scaled"
                    );
                }
            }
        }
    }

    /// Half-precision products train the tiny encoder as f32 does, on an adapter with
    /// `shader-f16` (lavapipe, which the tests run on): the same losses to half precision's
    /// rounding, not bit for bit (so the half path ran), and the same final accuracy.
    #[cfg(feature = "wgpu")]
    #[test]
    fn half_precision_products_train_the_encoder_as_f32_does() {
        use crate::train::Precision;
        let device = crate::kernels::test_device();
        assert!(
            crate::kernels::has_f16(&device),
            "the test adapter (lavapipe) offers shader-f16"
        );
        let tok = TextTokenizer::from_json("tokenizer.json", TINY_TOKENIZER.as_bytes(), 8)
            .expect("tokenizer");
        let data = sentiment(&tok);
        let config = tiny_config();
        let run = |precision: Precision| {
            let bert = Bert::from_weights(&config, BertWeights::random(&config, 5), &device)
                .expect("bert");
            let model = BertClassifier::new(bert, 2, Pooling::Mean, 0.1, 1, &device);
            let train = TrainConfig {
                learning_rate: 0.01,
                batch_size: 4,
                steps: 40,
                clip_grad_norm: Some(1.0),
                precision,
                ..TrainConfig::default()
            };
            assert_eq!(
                train.precision_on(&device, true),
                match precision {
                    Precision::F32 => "f32",
                    Precision::F16 => "f16 products, dynamic loss scale from 1024",
                }
            );
            let mut trainer =
                TextTrainer::new(model, train, data.clone(), &device).expect("trainer");
            let losses: Vec<f32> = (0..40)
                .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
                .collect();
            let eval = pollster::block_on(evaluate_text(trainer.model(), &data, 3, &device))
                .expect("eval");
            (losses, eval.report.accuracy)
        };
        let (single, single_accuracy) = run(Precision::F32);
        let (half, half_accuracy) = run(Precision::F16);
        assert!(single[35..].iter().sum::<f32>() < single[..5].iter().sum::<f32>() * 0.5);
        let worst = single
            .iter()
            .zip(&half)
            .map(|(a, b)| (a - b).abs() / a.abs().max(0.1))
            .fold(0.0f32, f32::max);
        assert!(worst < 0.05, "f16 losses {half:?} against f32 {single:?}");
        assert!(single != half, "the half-precision path ran");
        assert_eq!((single_accuracy, half_accuracy), (1.0, 1.0));
    }

    /// `f16` asked for where it cannot run: the run is f32 and says so.
    #[test]
    fn half_precision_falls_back_to_f32_off_shader_f16() {
        let config = TrainConfig {
            precision: crate::train::Precision::F16,
            ..TrainConfig::default()
        };
        let flex = Device::flex();
        assert_eq!(config.half_products(&flex), None);
        assert_eq!(
            config.precision_on(&flex, true),
            "f32 (f16 asked for; the device has no shader-f16)"
        );
        assert_eq!(
            config.precision_on(&flex, false),
            "f32 (f16 products are for the transformers, BERT and the GPT)"
        );
        let json: TrainConfig =
            serde_json::from_str(r#"{"precision": "f16", "loss_scale": 256}"#).expect("json");
        assert_eq!(json.loss_scale, 256.0);
        let err = serde_json::from_str::<TrainConfig>(r#"{"precision": "bf16"}"#)
            .expect_err("unknown precision");
        assert!(err.to_string().contains("unknown variant `bf16`"), "{err}");
        let err = TrainConfig {
            loss_scale: 0.5,
            ..TrainConfig::default()
        }
        .validate()
        .expect_err("loss scale below 1");
        assert!(err.to_string().contains("loss_scale"), "{err}");
    }

    /// Dynamic loss scaling (the fused kernels on wgpu) skips a step whose gradients overflow
    /// and halves the scale: a loss scaled by 2^70 gives gradients whose squares pass f32's
    /// range, so the weights stay exactly as they were (Adam, AdamW, SGD), the reported loss is
    /// the unscaled one and the scale is 2^69 after; with SGD and momentum a skipped step then
    /// a normal one move the weights exactly as the normal one alone (the velocity was left as
    /// it was); a normal step counts one good step.
    #[cfg(feature = "wgpu")]
    #[test]
    fn dynamic_loss_scaling_skips_an_overflowing_step() {
        use burn::nn::Linear;
        let device = crate::kernels::test_device().autodiff();
        let fixture = OneLayer::new(5, &device);
        let (layer, weights, initial) = (
            || fixture.layer(),
            OneLayer::values,
            fixture.initial.clone(),
        );
        let state = |s: &LossScaler| {
            s.state()
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let step = |model: Linear, optim: &mut Optimizer, config: &TrainConfig, scale: f32| {
            let mut scaler = LossScaler::new(scale, &device);
            let (model, loss, _) = decoupled_step(
                model,
                optim,
                config,
                0,
                Some(&mut scaler),
                |m: &Linear, _| fixture.loss(m),
            );
            let loss: f32 = loss.expect("loss").into_scalar();
            (model, loss, state(&scaler))
        };
        let overflow = 2f32.powi(70);
        for optimizer in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            let config = TrainConfig {
                optimizer,
                learning_rate: 0.1,
                ..TrainConfig::default()
            };
            let mut optim = build(&config, DecayScope::Matrices);
            let (model, loss, after) = step(layer(), &mut optim, &config, overflow);
            assert_eq!(
                weights(&model),
                initial,
                "{optimizer:?}: the step was skipped"
            );
            assert!(
                loss.is_finite() && loss > 0.0 && loss < 100.0,
                "the unscaled loss: {loss}"
            );
            assert_eq!(
                after,
                [2f32.powi(69), 0.0],
                "{optimizer:?}: the scale halved"
            );
            let (model, _, after) = step(model, &mut optim, &config, 1024.0);
            assert_ne!(
                weights(&model),
                initial,
                "{optimizer:?}: a normal step moves"
            );
            assert_eq!(after, [1024.0, 1.0], "{optimizer:?}: one good step");
        }
        let config = TrainConfig {
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            learning_rate: 0.1,
            ..TrainConfig::default()
        };
        let mut optim = build(&config, DecayScope::Matrices);
        let (model, _, _) = step(layer(), &mut optim, &config, overflow);
        let (model, _, _) = step(model, &mut optim, &config, 1024.0);
        let (model, _, _) = step(model, &mut optim, &config, 1024.0);
        let skipped_first = weights(&model);
        let mut optim = build(&config, DecayScope::Matrices);
        let (model, _, _) = step(layer(), &mut optim, &config, 1024.0);
        let (model, _, _) = step(model, &mut optim, &config, 1024.0);
        assert_eq!(
            skipped_first,
            weights(&model),
            "the skip left the velocity as it was"
        );
    }
}
