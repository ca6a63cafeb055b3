//! A small convolutional network for images.
//!
//! Each block is a 3x3 convolution (padding 1) with ReLU, then 2x2 max pooling (stride 2); the
//! last block's output is flattened (channel, row, column order, as `torch.flatten`), then dropout
//! and a small MLP head give the logits. In PyTorch terms:
//! `[Conv2d(c, f, 3, padding=1), ReLU(), MaxPool2d(2)] * blocks, Flatten(), Dropout(p),
//! [Linear, ReLU(), Dropout(p)] * hidden, Linear`.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Masks;
use crate::rng::Rng;
use crate::{Error, Result};

/// Shape of a [`Cnn`]. In JSON, `filters`, `hidden` and `dropout` may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Input `[channels, height, width]`; rows are stored channel-major.
    pub image_shape: [usize; 3],
    /// Number of output classes.
    pub n_classes: usize,
    /// Output channels of each convolution block (default `[16, 32]`); each block halves the
    /// height and width.
    #[serde(default = "default_filters")]
    pub filters: Vec<usize>,
    /// Widths of the hidden layers of the head (default `[64]`).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Dropout probability before each layer of the head, in `[0, 1)` (default 0).
    #[serde(default)]
    pub dropout: f64,
}

fn default_filters() -> Vec<usize> {
    vec![16, 32]
}

fn default_hidden() -> Vec<usize> {
    vec![64]
}

impl CnnConfig {
    /// A config with the default blocks and head, no dropout.
    pub fn new(image_shape: [usize; 3], n_classes: usize) -> Self {
        Self {
            image_shape,
            n_classes,
            filters: default_filters(),
            hidden: default_hidden(),
            dropout: 0.0,
        }
    }

    /// Inputs per row.
    pub fn d_input(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// Height and width after every block.
    fn pooled(&self) -> [usize; 2] {
        let [_, mut h, mut w] = self.image_shape;
        for _ in &self.filters {
            h /= 2;
            w /= 2;
        }
        [h, w]
    }

    /// Widths of the head's linear layers, from the flattened features to the classes.
    pub fn head_widths(&self) -> Vec<usize> {
        let [h, w] = self.pooled();
        let channels = self.filters.last().copied().unwrap_or(self.image_shape[0]);
        let mut widths = vec![channels * h * w];
        widths.extend(&self.hidden);
        widths.push(self.n_classes);
        widths
    }

    /// `[out, in]` channels of each convolution.
    pub fn conv_channels(&self) -> Vec<[usize; 2]> {
        let mut c_in = self.image_shape[0];
        self.filters
            .iter()
            .map(|&c_out| {
                let pair = [c_out, c_in];
                c_in = c_out;
                pair
            })
            .collect()
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range, including an image too small for
    /// the number of blocks (each halves it).
    pub fn validate(&self) -> Result<()> {
        if self.image_shape.contains(&0) {
            return Err(Error::config(
                "image_shape",
                format!(
                    "expected [channels, height, width] of at least 1 each, found {:?}",
                    self.image_shape
                ),
            ));
        }
        if self.n_classes < 2 {
            return Err(Error::config(
                "n_classes",
                format!("expected at least 2 classes, found {}", self.n_classes),
            ));
        }
        if let Some(i) = self.filters.iter().position(|&f| f == 0) {
            return Err(Error::config("filters", format!("block {i} has 0 filters")));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(Error::config("hidden", format!("layer {i} has width 0")));
        }
        if self.pooled().contains(&0) {
            return Err(Error::config(
                "filters",
                format!(
                    "{} blocks halve a {}x{} image to nothing; use at most {} blocks",
                    self.filters.len(),
                    self.image_shape[1],
                    self.image_shape[2],
                    self.image_shape[1].min(self.image_shape[2]).ilog2()
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(
                "dropout",
                format!("expected a probability in [0, 1), found {}", self.dropout),
            ));
        }
        Ok(())
    }

    /// Build the model on `device`, weights drawn from `seed` (PyTorch's default ranges).
    ///
    /// # Errors
    /// When the config does not [`validate`](Self::validate).
    pub fn init(&self, seed: u64, device: &Device) -> Result<Cnn> {
        self.validate()?;
        let mut rng = Rng::new(seed);
        let convs = self
            .conv_channels()
            .into_iter()
            .map(|[c_out, c_in]| {
                let k = 1.0 / ((c_in * 9) as f32).sqrt();
                let w = (0..c_out * c_in * 9).map(|_| rng.uniform(-k, k)).collect();
                let b = (0..c_out).map(|_| rng.uniform(-k, k)).collect();
                conv(w, b, c_out, c_in, device)
            })
            .collect();
        let head = self
            .head_widths()
            .windows(2)
            .map(|w| super::init::linear(w[0], w[1], &mut rng, device))
            .collect();
        Ok(self.assemble(convs, head))
    }

    fn assemble(&self, convs: Vec<Conv2d>, head: Vec<Linear>) -> Cnn {
        Cnn {
            convs,
            head,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            activation: Relu::new(),
            dropout: self.dropout,
            image_shape: self.image_shape,
        }
    }

    /// A model of this shape from weights: per convolution `[out, in, 3, 3]` and bias, per head
    /// layer burn's `[d_input, d_output]` and bias.
    ///
    /// # Errors
    /// [`Error::Config`] when the config is invalid or a tensor does not fit its shape.
    pub fn from_weights(
        &self,
        convs: Vec<(Vec<f32>, Vec<f32>)>,
        head: Vec<(Vec<f32>, Vec<f32>)>,
        device: &Device,
    ) -> Result<Cnn> {
        self.validate()?;
        let channels = self.conv_channels();
        if convs.len() != channels.len() {
            return Err(Error::config(
                "filters",
                format!("{} convolutions for {} blocks", convs.len(), channels.len()),
            ));
        }
        let mut built = Vec::with_capacity(convs.len());
        for (i, ((w, b), [c_out, c_in])) in convs.into_iter().zip(channels).enumerate() {
            if w.len() != c_out * c_in * 9 || b.len() != c_out {
                return Err(Error::config(
                    "filters",
                    format!(
                        "block {i}: expected {c_out}x{c_in}x3x3 weights and {c_out} biases, found {} and {}",
                        w.len(),
                        b.len()
                    ),
                ));
            }
            built.push(conv(w, b, c_out, c_in, device));
        }
        let head = super::mlp::linears(&self.head_widths(), head, device)?;
        Ok(self.assemble(built, head))
    }
}

fn conv(w: Vec<f32>, b: Vec<f32>, c_out: usize, c_in: usize, device: &Device) -> Conv2d {
    Conv2d {
        weight: Param::from_data(TensorData::new(w, [c_out, c_in, 3, 3]), device),
        bias: Some(Param::from_data(TensorData::new(b, [c_out]), device)),
        stride: [1, 1],
        kernel_size: [3, 3],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
    }
}

/// Convolution blocks and an MLP head; see the module documentation.
#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    head: Vec<Linear>,
    pool: MaxPool2d,
    activation: Relu,
    /// Dropout probability before each head layer (applied by [`Masks`] in training).
    dropout: f64,
    image_shape: [usize; 3],
}

impl Cnn {
    /// Inputs per row.
    pub fn d_input(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// `[channels, height, width]` of an input.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image_shape
    }

    /// The convolutions, input side first.
    pub fn convs(&self) -> &[Conv2d] {
        &self.convs
    }

    /// The head's linear layers, input side first.
    pub fn head(&self) -> &[Linear] {
        &self.head
    }

    /// Logits `[batch, n_classes]` for channel-major rows `[batch, channels * height * width]`,
    /// without dropout.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        self.forward_with(input, &mut Masks::none())
    }

    /// Logits with dropout masks drawn from `masks` (training).
    pub fn forward_with(&self, input: Tensor<2>, masks: &mut Masks<'_>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let [c, h, w] = self.image_shape;
        let mut x: Tensor<4> = input.reshape([batch, c, h, w]);
        for conv in &self.convs {
            x = masks.conv_block(conv, &self.pool, &self.activation, x);
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        let last = self.head.len() - 1;
        for (i, layer) in self.head.iter().enumerate() {
            let dropped = masks.apply(x, self.dropout);
            x = masks.linear(layer, dropped, i < last);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let ok = CnnConfig::new([1, 8, 8], 10);
        ok.validate().expect("valid");
        let bad = [
            (
                CnnConfig {
                    image_shape: [1, 0, 8],
                    ..ok.clone()
                },
                "image_shape",
            ),
            (
                CnnConfig {
                    n_classes: 1,
                    ..ok.clone()
                },
                "n_classes",
            ),
            (
                CnnConfig {
                    filters: vec![8, 8, 8, 8],
                    ..ok.clone()
                },
                "at most 3 blocks",
            ),
            (
                CnnConfig {
                    hidden: vec![0],
                    ..ok.clone()
                },
                "hidden",
            ),
            (
                CnnConfig {
                    dropout: -0.1,
                    ..ok.clone()
                },
                "dropout",
            ),
        ];
        for (config, field) in bad {
            let err = config.validate().expect_err(field).to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn shapes_follow_the_blocks() {
        let c = CnnConfig::new([3, 9, 7], 4);
        assert_eq!(c.conv_channels(), vec![[16, 3], [32, 16]]);
        // 9x7 -> 4x3 -> 2x1
        assert_eq!(c.head_widths(), vec![32 * 2, 64, 4]);
        let device = Device::flex();
        let model = c.init(3, &device).expect("valid");
        let y = model.forward(Tensor::<2>::ones([5, 3 * 9 * 7], &device));
        assert_eq!(y.dims(), [5, 4]);
    }

    #[test]
    fn a_known_convolution_gives_the_hand_computed_logits() {
        // One 1->1 block on a 2x2 image whose kernel only passes the centre: conv = input + 0.5,
        // max-pool takes the largest; the head multiplies by [1, -1] and adds [0, 1].
        let config = CnnConfig {
            image_shape: [1, 2, 2],
            n_classes: 2,
            filters: vec![1],
            hidden: vec![],
            dropout: 0.0,
        };
        let mut kernel = vec![0.0; 9];
        kernel[4] = 1.0;
        let device = Device::flex();
        let model = config
            .from_weights(
                vec![(kernel, vec![0.5])],
                vec![(vec![1.0, -1.0], vec![0.0, 1.0])],
                &device,
            )
            .expect("valid");
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0, -3.0, 2.0, 0.0], [1, 4]), &device);
        let y = model
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(y, vec![2.5, -1.5]);
    }
}
