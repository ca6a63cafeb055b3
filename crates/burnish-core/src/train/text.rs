//! Fine-tuning a [`BertClassifier`] on tokenized texts, one optimizer step per call, with the
//! recipe of [`TrainConfig`] (optimizer, schedule, accumulation, clipping) and transformers'
//! weight-decay rule for AdamW (matrices only; biases and LayerNorm are not decayed).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::batches::BatchOrder;
use super::optimizer::{OptimizerKind, build, clip_global_norm};
use super::trainer::{add_loss, step_report};
use super::{Evaluation, StepReport, TrainConfig};
use crate::eval::ClassificationReport;
use crate::model::Masks;
use crate::model::bert_classifier::BertClassifier;
use crate::rng::Rng;
use crate::text::{Encoding, pad_batch};
use crate::{Error, Result};

/// Tokenized rows and their labels.
#[derive(Debug, Clone)]
pub struct TokenizedSet {
    /// One encoding per row.
    pub rows: Vec<Encoding>,
    /// One label per row.
    pub labels: Vec<u32>,
    /// Class names.
    pub classes: Vec<String>,
    /// Padding id of the tokenizer.
    pub pad_id: u32,
}

/// Steps a text classifier; see the module documentation.
pub struct TextTrainer {
    model: Option<BertClassifier>,
    optim: ModuleOptimizer,
    config: TrainConfig,
    data: TokenizedSet,
    device: Device,
    batches: BatchOrder,
    dropout_rng: Rng,
    step: usize,
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
        // AdamW's decay is applied by hand to the matrices only (see `step`).
        let decay = if config.optimizer == OptimizerKind::Adamw {
            0.0
        } else {
            config.weight_decay
        };
        let optim = build(config.optimizer, decay, config.momentum);
        let mut rng = Rng::new(config.seed);
        let _ = rng.next_u64();
        Ok(Self {
            model: Some(model),
            optim,
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

    /// One optimizer step; reads the loss back asynchronously.
    ///
    /// # Errors
    /// [`Error::Readback`], or [`Error::Diverged`] when the loss is not finite.
    pub async fn step(&mut self) -> Result<StepReport> {
        let micro = self.config.grad_accumulation;
        let mut model = self
            .model
            .take()
            .expect("the model is only absent inside step()");
        let loss_fn = CrossEntropyLossConfig::new().init(&self.device);
        let mut accumulator = GradientsAccumulator::<BertClassifier>::new();
        let mut total: Option<Tensor<1>> = None;
        for _ in 0..micro {
            let indices = self
                .batches
                .next(self.data.rows.len(), self.config.batch_size);
            let rows: Vec<&Encoding> = indices.iter().map(|&i| &self.data.rows[i]).collect();
            let input = pad_batch(&rows, self.data.pad_id, &self.device);
            let labels: Vec<i64> = indices
                .iter()
                .map(|&i| i64::from(self.data.labels[i]))
                .collect();
            let y =
                Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), &self.device);
            let logits = model.forward(&input, &mut Masks::from(&mut self.dropout_rng));
            let loss = loss_fn.forward(logits, y) / micro as f32;
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            total = add_loss(total, loss.detach());
        }
        let mut grads = accumulator.grads();
        if let Some(max_norm) = self.config.clip_grad_norm {
            clip_global_norm(&model, &mut grads, max_norm);
        }
        let learning_rate = self.config.learning_rate_at(self.step);
        if self.config.optimizer == OptimizerKind::Adamw && self.config.weight_decay > 0.0 {
            model = model.decay((1.0 - learning_rate * f64::from(self.config.weight_decay)) as f32);
        }
        self.model = Some(self.optim.step(learning_rate, model, grads));
        self.step += 1;
        step_report(total, self.step, learning_rate).await
    }
}

/// Loss and classification report of `model` on `data`, in batches of `batch` rows.
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
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut predicted = Vec::with_capacity(data.rows.len());
    let mut loss_sum = 0.0f64;
    for start in (0..data.rows.len()).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(data.rows.len());
        let rows: Vec<&Encoding> = data.rows[start..end].iter().collect();
        let input = pad_batch(&rows, data.pad_id, &device);
        let labels: Vec<i64> = data.labels[start..end]
            .iter()
            .map(|&l| i64::from(l))
            .collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [end - start]), &device);
        let logits = model.forward(&input, &mut Masks::none());
        let loss: f32 = loss_fn
            .forward(logits.clone(), y)
            .into_scalar_async()
            .await
            .map_err(Error::readback("evaluation loss"))?;
        loss_sum += f64::from(loss) * (end - start) as f64;
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
        predicted.extend(best.into_iter().map(|b| b as u32));
    }
    Ok(Evaluation {
        loss: loss_sum / data.rows.len() as f64,
        report: ClassificationReport::new(&data.classes, &data.labels, &predicted)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::bert::tests::tiny_config;
    use crate::model::bert::{Bert, BertWeights};
    use crate::model::bert_classifier::Pooling;
    use crate::text::TextTokenizer;

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
            labels: texts.iter().map(|(_, l)| *l).collect(),
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
                .files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| panic!("no {name}"))
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
}
