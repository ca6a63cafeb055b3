//! Multi-layer perceptron for tabular features.

use burn::nn::Linear;
use burn::prelude::*;

use serde::{Deserialize, Serialize};

use super::Masks;
use crate::rng::Rng;
use crate::{Error, Result};

/// Shape of an [`Mlp`]. In JSON, `hidden` and `dropout` may be left out (defaults below).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Number of input features.
    pub d_input: usize,
    /// Number of output classes (logits).
    pub n_classes: usize,
    /// Width of each hidden layer, input side first (default `[64, 64]`). Empty means a linear
    /// model.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden activation, in `[0, 1)` (default 0).
    #[serde(default)]
    pub dropout: f64,
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64]
}

impl MlpConfig {
    /// A config with the default hidden layers and no dropout.
    pub fn new(d_input: usize, n_classes: usize) -> Self {
        Self {
            d_input,
            n_classes,
            hidden: default_hidden(),
            dropout: 0.0,
        }
    }

    /// The same config with other hidden widths.
    pub fn with_hidden(self, hidden: Vec<usize>) -> Self {
        Self { hidden, ..self }
    }

    /// The same config with another dropout probability.
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.d_input == 0 {
            return Err(Error::config(
                "d_input",
                "expected at least 1 input feature, found 0",
            ));
        }
        if self.n_classes < 2 {
            return Err(Error::config(
                "n_classes",
                format!("expected at least 2 classes, found {}", self.n_classes),
            ));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(Error::config("hidden", format!("layer {i} has width 0")));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(
                "dropout",
                format!("expected a probability in [0, 1), found {}", self.dropout),
            ));
        }
        Ok(())
    }

    /// Layer widths from input to output.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths = vec![self.d_input];
        widths.extend(&self.hidden);
        widths.push(self.n_classes);
        widths
    }

    /// Build the model on `device`, weights drawn from `seed`.
    ///
    /// # Errors
    /// When the config does not [`validate`](Self::validate).
    pub fn init(&self, seed: u64, device: &Device) -> Result<Mlp> {
        self.validate()?;
        let mut rng = Rng::new(seed);
        let layers = self
            .widths()
            .windows(2)
            .map(|w| super::init::linear(w[0], w[1], &mut rng, device))
            .collect();
        Ok(Mlp {
            layers,
            dropout: self.dropout,
        })
    }
}

/// Linear layers with ReLU (and dropout) between them; the last layer gives logits. Each layer
/// and its ReLU run through [`Masks::linear`] (one fused kernel on wgpu).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    /// Dropout probability after each hidden activation (applied by [`Masks`] in training).
    dropout: f64,
}

/// Linear layers for consecutive `widths` from per-layer weights in burn's `[d_input, d_output]`
/// layout (row-major) and biases.
pub(super) fn linears(
    widths: &[usize],
    weights: Vec<(Vec<f32>, Vec<f32>)>,
    device: &Device,
) -> Result<Vec<Linear>> {
    if weights.len() != widths.len() - 1 {
        return Err(Error::config(
            "hidden",
            format!(
                "{} layers of weights for {} layers",
                weights.len(),
                widths.len() - 1
            ),
        ));
    }
    let mut layers = Vec::with_capacity(weights.len());
    for (i, ((w, b), pair)) in weights.into_iter().zip(widths.windows(2)).enumerate() {
        let (d_in, d_out) = (pair[0], pair[1]);
        if w.len() != d_in * d_out || b.len() != d_out {
            return Err(Error::config(
                "hidden",
                format!(
                    "layer {i}: expected {d_in}x{d_out} weights and {d_out} biases, found {} and {}",
                    w.len(),
                    b.len()
                ),
            ));
        }
        layers.push(Linear {
            weight: burn::module::Param::from_data(TensorData::new(w, [d_in, d_out]), device),
            bias: Some(burn::module::Param::from_data(
                TensorData::new(b, [d_out]),
                device,
            )),
        });
    }
    Ok(layers)
}

impl Mlp {
    /// The linear layers, input side first.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// A model of `config`'s shape with the given weights: per layer, the weight in burn's
    /// `[d_input, d_output]` layout (row-major) and the bias.
    ///
    /// # Errors
    /// [`Error::Config`] when the config is invalid or a layer's values do not fit its shape.
    pub fn from_weights(
        config: &MlpConfig,
        weights: Vec<(Vec<f32>, Vec<f32>)>,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let layers = linears(&config.widths(), weights, device)?;
        Ok(Self {
            layers,
            dropout: config.dropout,
        })
    }

    /// Logits `[batch, n_classes]` for features `[batch, d_input]`, without dropout.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        self.forward_with(input, &mut Masks::none())
    }

    /// Logits with dropout masks drawn from `masks` (training).
    pub fn forward_with(&self, input: Tensor<2>, masks: &mut Masks<'_>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut x = input;
        for (i, layer) in self.layers.iter().enumerate() {
            x = masks.linear(layer, x, i < last);
            if i < last {
                x = masks.apply(x, self.dropout);
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let bad = [
            (MlpConfig::new(0, 3), "d_input"),
            (MlpConfig::new(2, 1), "n_classes"),
            (MlpConfig::new(2, 3).with_hidden(vec![4, 0]), "hidden"),
            (MlpConfig::new(2, 3).with_dropout(1.0), "dropout"),
        ];
        for (config, field) in bad {
            let err = config.validate().expect_err(field).to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn forward_shape_and_seeded_init_on_flex() {
        let device = Device::flex();
        let config = MlpConfig::new(3, 4).with_hidden(vec![8]);
        let model = config.init(1, &device).expect("valid");
        let x = Tensor::<2>::ones([5, 3], &device);
        let a = model.forward(x.clone()).into_data();
        assert_eq!(a.shape().as_slice(), &[5, 4]);
        let b = config
            .init(1, &device)
            .expect("valid")
            .forward(x.clone())
            .into_data();
        a.assert_eq(&b, true);
        let c = config
            .init(2, &device)
            .expect("valid")
            .forward(x)
            .into_data();
        assert_ne!(a.try_to_vec::<f32>().ok(), c.try_to_vec::<f32>().ok());
    }
}
