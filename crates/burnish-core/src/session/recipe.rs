//! The recipe: one JSON document with every choice of a classifier run, shared by the page, the
//! CLI and (later) the JS API. Every field may be left out and takes its documented default;
//! unknown fields are errors that name them.

use serde::{Deserialize, Serialize};

use super::fit::FitConfig;
use crate::data::split::SplitConfig;
use crate::train::TrainConfig;

/// The model part of a recipe (inputs and classes come from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRecipe {
    /// Hidden layer widths (default `[128, 64]`).
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer (default 0.1).
    pub dropout: f64,
}

impl Default for ModelRecipe {
    fn default() -> Self {
        Self {
            hidden: vec![128, 64],
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
}

impl Default for Recipe {
    fn default() -> Self {
        Self {
            model: ModelRecipe::default(),
            train: TrainConfig::default(),
            fit: FitConfig::default(),
            split: SplitConfig::default(),
            normalize: true,
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
