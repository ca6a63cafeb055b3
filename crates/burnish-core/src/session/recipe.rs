//! The recipe: one JSON document with every choice of a classifier run, shared by the page, the
//! CLI and (later) the JS API. Every field may be left out and takes its documented default;
//! unknown fields are errors that name them.

use serde::{Deserialize, Serialize};

use super::fit::FitConfig;
use crate::data::augment::AugmentConfig;
use crate::data::split::SplitConfig;
use crate::model::bert_classifier::Pooling;
use crate::model::lora::Tuning;
use crate::train::TrainConfig;
use crate::train::schedule::Decay;

/// The text part of a recipe (used when fine-tuning an encoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextRecipe {
    /// Longest sequence in tokens; longer texts are cut (default 128).
    pub max_length: usize,
    /// `cls` (the pooler, as transformers) or `mean` (as sentence-transformers) (default `cls`).
    pub pooling: Pooling,
    /// Dropout before the head; `null` takes the config's `hidden_dropout_prob` (default).
    pub dropout: Option<f64>,
    /// What trains: everything (default), the head, the top layers, or LoRA adapters.
    pub tuning: Tuning,
}

impl Default for TextRecipe {
    fn default() -> Self {
        Self {
            max_length: 128,
            pooling: Pooling::Cls,
            dropout: None,
            tuning: Tuning::default(),
        }
    }
}

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A CNN for images, an MLP for tables (default).
    #[default]
    Auto,
    /// A multi-layer perceptron (any data; images are flattened).
    Mlp,
    /// A small CNN (images only).
    Cnn,
}

/// The model part of a recipe (inputs and classes come from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRecipe {
    /// `auto`, `mlp` or `cnn` (default `auto`).
    pub kind: ModelKind,
    /// Hidden layer widths of the MLP, or of the CNN's head (default `[128, 64]`).
    pub hidden: Vec<usize>,
    /// Output channels of each CNN block; each block halves the image (default `[16, 32]`).
    pub filters: Vec<usize>,
    /// Dropout before each hidden layer (default 0.1).
    pub dropout: f64,
}

impl Default for ModelRecipe {
    fn default() -> Self {
        Self {
            kind: ModelKind::Auto,
            hidden: vec![128, 64],
            filters: vec![16, 32],
            dropout: 0.1,
        }
    }
}

/// Everything about a classifier run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    /// The network.
    pub model: ModelRecipe,
    /// Optimizer, learning rate and schedule, batch, accumulation, clipping, seed.
    pub train: TrainConfig,
    /// Epochs and early stopping.
    pub fit: FitConfig,
    /// Train / validation / test split.
    pub split: SplitConfig,
    /// Standardise features with statistics of the training split (default true).
    pub normalize: bool,
    /// Image augmentation of training batches (default off).
    pub augment: AugmentConfig,
    /// Tokenization and head of a text model.
    pub text: TextRecipe,
}

impl Recipe {
    /// What transformers' Trainer uses for fine-tuning an encoder: AdamW at 3e-5 with weight
    /// decay 0.01, linear decay after a 10% warm-up, batch 16, 3 epochs, no early stopping.
    pub fn transformer() -> Self {
        let mut recipe = Self::default();
        recipe.train.learning_rate = 3e-5;
        recipe.train.weight_decay = 0.01;
        recipe.train.batch_size = 16;
        recipe.train.schedule.decay = Decay::Linear;
        recipe.train.schedule.warmup_fraction = 0.1;
        recipe.fit.epochs = 3;
        recipe.fit.patience = None;
        recipe
    }
}

impl Default for Recipe {
    fn default() -> Self {
        Self {
            model: ModelRecipe::default(),
            train: TrainConfig::default(),
            fit: FitConfig::default(),
            split: SplitConfig::default(),
            normalize: true,
            augment: AugmentConfig::default(),
            text: TextRecipe::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_fills_defaults_and_typos_are_named() {
        let r: Recipe = serde_json::from_str(r#"{"train":{"optimizer":"sgd"},"fit":{"epochs":3}}"#)
            .expect("parse");
        assert_eq!(r.fit.epochs, 3);
        assert_eq!(r.fit.patience, Some(5));
        assert_eq!(r.model.hidden, [128, 64]);
        assert!(r.normalize);
        assert_eq!(
            Recipe::default(),
            serde_json::from_str("{}").expect("parse")
        );
        let err = serde_json::from_str::<Recipe>(r#"{"fit":{"epoch":3}}"#)
            .expect_err("typo")
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
        let back: Recipe =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
    }
}
