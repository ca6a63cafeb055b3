//! The classifier families behind one type, so that training, evaluation, export and import are
//! written once: [`ModelConfig`] (serde, tagged by `kind`) and [`Classifier`] (a burn module).
//!
//! Every model lists its tensors in PyTorch's layout ([`ModelConfig::tensor_layout`]); export
//! writes them under those names and import checks them against it.

use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Cnn, CnnConfig, Masks, Mlp, MlpConfig};
use crate::{Error, Result};

/// The shape of a classifier, e.g. `{"kind": "cnn", "image_shape": [1, 8, 8], "n_classes": 10}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// A multi-layer perceptron on flat features.
    Mlp(MlpConfig),
    /// A small convolutional network on images.
    Cnn(CnnConfig),
}

/// A tensor's name and shape in the export, PyTorch's layout.
pub type TensorSpec = (String, Vec<usize>);

/// Floats per row of the widest buffer: the image and each convolution's unfolded input
/// (`c_in x 9` per pixel) and output (each block halves height and width), and `widths`.
fn widest(image: Option<[usize; 3]>, filters: &[usize], widths: &[&[usize]]) -> usize {
    let mut most = widths
        .iter()
        .flat_map(|w| w.iter().copied())
        .max()
        .unwrap_or(1);
    if let Some([mut channels, mut h, mut w]) = image {
        most = most.max(channels * h * w);
        for &f in filters {
            most = most.max(channels * 9 * h * w).max(f * h * w);
            channels = f;
            h /= 2;
            w /= 2;
        }
        most = most.max(channels * h * w);
    }
    most.max(1)
}

impl ModelConfig {
    /// Inputs per row.
    pub fn d_input(&self) -> usize {
        match self {
            Self::Mlp(c) => c.d_input,
            Self::Cnn(c) => c.d_input(),
        }
    }

    /// Output classes.
    pub fn n_classes(&self) -> usize {
        match self {
            Self::Mlp(c) => c.n_classes,
            Self::Cnn(c) => c.n_classes,
        }
    }

    /// Floats per row of the largest single buffer a forward or backward pass holds: the input,
    /// each convolution's unfolded input (`c_in x 9` per pixel) or output, each layer's output.
    /// Times the rows of a batch and 4 bytes, it is what must fit one storage buffer.
    pub fn widest_per_row(&self) -> usize {
        match self {
            Self::Mlp(c) => widest(None, &[], &[&[c.d_input, c.n_classes], &c.hidden]),
            Self::Cnn(c) => widest(
                Some(c.image_shape),
                &c.filters,
                &[&c.hidden, &[c.n_classes]],
            ),
        }
    }

    /// Values of the largest weight tensor.
    pub fn largest_weight(&self) -> usize {
        self.tensor_layout()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .max()
            .unwrap_or(0)
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Mlp(c) => c.validate(),
            Self::Cnn(c) => c.validate(),
        }
    }

    /// Build the model on `device` with weights drawn from `seed`.
    ///
    /// # Errors
    /// When the config is invalid.
    pub fn init(&self, seed: u64, device: &Device) -> Result<Classifier> {
        Ok(match self {
            Self::Mlp(c) => Classifier::Mlp(c.init(seed, device)?),
            Self::Cnn(c) => Classifier::Cnn(c.init(seed, device)?),
        })
    }

    /// Every tensor of the model, in export order, with PyTorch's shapes: MLP
    /// `layers.{i}.weight [out, in]`, `layers.{i}.bias [out]`; CNN `convs.{i}.weight
    /// [out, in, 3, 3]`, `convs.{i}.bias [out]`, then `head.{i}.weight [out, in]`,
    /// `head.{i}.bias [out]`.
    pub fn tensor_layout(&self) -> Vec<TensorSpec> {
        let linear = |prefix: &str, widths: &[usize]| -> Vec<TensorSpec> {
            widths
                .windows(2)
                .enumerate()
                .flat_map(|(i, w)| {
                    [
                        (format!("{prefix}.{i}.weight"), vec![w[1], w[0]]),
                        (format!("{prefix}.{i}.bias"), vec![w[1]]),
                    ]
                })
                .collect()
        };
        match self {
            Self::Mlp(c) => linear("layers", &c.widths()),
            Self::Cnn(c) => {
                let mut specs: Vec<TensorSpec> = c
                    .conv_channels()
                    .iter()
                    .enumerate()
                    .flat_map(|(i, &[o, n])| {
                        [
                            (format!("convs.{i}.weight"), vec![o, n, 3, 3]),
                            (format!("convs.{i}.bias"), vec![o]),
                        ]
                    })
                    .collect();
                specs.extend(linear("head", &c.head_widths()));
                specs
            }
        }
    }

    /// Build the model from values in [`tensor_layout`](Self::tensor_layout)'s order and shapes.
    ///
    /// # Errors
    /// [`Error::Config`] when the count or a size does not match the layout.
    pub fn from_tensors(&self, values: Vec<Vec<f32>>, device: &Device) -> Result<Classifier> {
        let layout = self.tensor_layout();
        if values.len() != layout.len() {
            return Err(Error::config(
                "model",
                format!("{} tensors for a model of {}", values.len(), layout.len()),
            ));
        }
        for ((name, shape), v) in layout.iter().zip(&values) {
            if v.len() != shape.iter().product::<usize>() {
                return Err(Error::config(
                    "model",
                    format!("tensor `{name}` has {} values, expected {shape:?}", v.len()),
                ));
            }
        }
        let mut values = values.into_iter();
        // Linear weights arrive as PyTorch's [out, in] and become burn's [in, out].
        let mut pairs = |n: usize, widths: &[usize]| -> Vec<(Vec<f32>, Vec<f32>)> {
            (0..n)
                .map(|i| {
                    let w = values.next().unwrap_or_default();
                    let b = values.next().unwrap_or_default();
                    match widths.get(i..i + 2) {
                        Some(&[d_in, d_out]) => (transpose(&w, d_out, d_in), b),
                        _ => (w, b),
                    }
                })
                .collect()
        };
        Ok(match self {
            Self::Mlp(c) => {
                let widths = c.widths();
                let weights = pairs(widths.len() - 1, &widths);
                Classifier::Mlp(Mlp::from_weights(c, weights, device)?)
            }
            Self::Cnn(c) => {
                let convs = pairs(c.filters.len(), &[]);
                let widths = c.head_widths();
                let head = pairs(widths.len() - 1, &widths);
                Classifier::Cnn(c.from_weights(convs, head, device)?)
            }
        })
    }
}

/// Transpose a row-major `rows x cols` matrix.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// A classifier of any family.
#[derive(Module, Debug)]
pub enum Classifier {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`Cnn`].
    Cnn(Cnn),
}

async fn read<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(Error::readback("weights"))?;
    data.try_to_vec::<f32>().map_err(|e| Error::Readback {
        what: "weights",
        reason: format!("{e:?}"),
    })
}

/// Read a linear layer back as PyTorch's `[out, in]` weight and its bias, appended to `out`.
pub(crate) async fn read_linear(layer: &Linear, out: &mut Vec<Vec<f32>>) -> Result<()> {
    let [d_in, d_out] = layer.weight.val().dims();
    out.push(transpose(&read(layer.weight.val()).await?, d_in, d_out));
    out.push(match &layer.bias {
        Some(b) => read(b.val()).await?,
        None => vec![0.0; d_out],
    });
    Ok(())
}

impl Classifier {
    /// Logits `[batch, n_classes]` for rows `[batch, d_input]`, without dropout.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        self.forward_with(input, &mut Masks::none())
    }

    /// Logits with dropout masks drawn from `masks` (training).
    pub fn forward_with(&self, input: Tensor<2>, masks: &mut Masks<'_>) -> Tensor<2> {
        match self {
            Self::Mlp(m) => m.forward_with(input, masks),
            Self::Cnn(m) => m.forward_with(input, masks),
        }
    }

    /// As [`ModelConfig::widest_per_row`], from the model itself.
    pub fn widest_per_row(&self) -> usize {
        let dims = |l: &burn::nn::Linear| l.weight.val().dims();
        match self {
            Self::Mlp(m) => {
                let widths: Vec<usize> = m.layers().iter().flat_map(dims).collect();
                widest(None, &[], &[&widths])
            }
            Self::Cnn(m) => {
                let filters: Vec<usize> =
                    m.convs().iter().map(|c| c.weight.val().dims()[0]).collect();
                let widths: Vec<usize> = m.head().iter().flat_map(dims).collect();
                widest(Some(m.image_shape()), &filters, &[&widths])
            }
        }
    }

    /// Inputs per row the model expects.
    pub fn d_input(&self) -> usize {
        match self {
            Self::Mlp(m) => m.layers().first().map_or(0, |l| l.weight.val().dims()[0]),
            Self::Cnn(m) => m.d_input(),
        }
    }

    /// Every tensor's values in the order and PyTorch layout of
    /// [`ModelConfig::tensor_layout`], read back asynchronously (so it works in the browser).
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn tensors(&self) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        match self {
            Self::Mlp(m) => {
                for layer in m.layers() {
                    read_linear(layer, &mut out).await?;
                }
            }
            Self::Cnn(m) => {
                for conv in m.convs() {
                    out.push(read(conv.weight.val()).await?);
                    out.push(match &conv.bias {
                        Some(b) => read(b.val()).await?,
                        None => vec![0.0; conv.weight.val().dims()[0]],
                    });
                }
                for layer in m.head() {
                    read_linear(layer, &mut out).await?;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_is_tagged_and_typos_are_named() {
        let c: ModelConfig =
            serde_json::from_str(r#"{"kind":"cnn","image_shape":[1,8,8],"n_classes":10}"#)
                .expect("parse");
        assert_eq!(c, ModelConfig::Cnn(CnnConfig::new([1, 8, 8], 10)));
        let back: ModelConfig =
            serde_json::from_str(&serde_json::to_string(&c).expect("json")).expect("parse");
        assert_eq!(back, c);
        let err = serde_json::from_str::<ModelConfig>(
            r#"{"kind":"mlp","d_input":4,"n_classes":2,"hiden":[3]}"#,
        )
        .expect_err("typo")
        .to_string();
        assert!(err.contains("hiden"), "{err}");
    }

    #[test]
    fn tensors_round_trip_through_the_layout_for_both_families() {
        let device = Device::flex();
        for config in [
            ModelConfig::Mlp(MlpConfig::new(6, 3).with_hidden(vec![5])),
            ModelConfig::Cnn(CnnConfig {
                hidden: vec![7],
                ..CnnConfig::new([2, 4, 6], 3)
            }),
        ] {
            let model = config.init(11, &device).expect("valid");
            let values = pollster::block_on(model.tensors()).expect("read");
            let layout = config.tensor_layout();
            assert_eq!(values.len(), layout.len());
            for ((name, shape), v) in layout.iter().zip(&values) {
                assert_eq!(v.len(), shape.iter().product::<usize>(), "{name}");
            }
            let copy = config
                .from_tensors(values.clone(), &device)
                .expect("rebuild");
            assert_eq!(pollster::block_on(copy.tensors()).expect("read"), values);
            let x = Tensor::<2>::ones([2, config.d_input()], &device);
            model
                .forward(x.clone())
                .into_data()
                .assert_eq(&copy.forward(x).into_data(), true);
        }
    }
}
