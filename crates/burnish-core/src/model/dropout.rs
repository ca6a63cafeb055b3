//! Dropout with masks drawn on the host from the trainer's portable [`Rng`], instead of the
//! backend's global generator: a seed then repeats a run with dropout exactly, on every backend
//! alike, whatever else uses the device. The masks are small (rows x width of the layers that
//! drop), so uploading them costs little next to the step.

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::prelude::*;

use crate::kernels;
use crate::rng::Rng;

/// Where a forward pass draws dropout masks from: nowhere (evaluation, prediction) or a
/// generator (training); and whether its layers may use burnish's fused kernels (on by default;
/// a trainer passes its `fused_kernels`).
pub struct Masks<'a> {
    rng: Option<&'a mut Rng>,
    fused_kernels: bool,
}

impl<'a> Masks<'a> {
    /// No dropout: the layers pass values through.
    pub fn none() -> Self {
        Self {
            rng: None,
            fused_kernels: true,
        }
    }

    /// Dropout with masks from `rng`.
    pub fn from(rng: &'a mut Rng) -> Self {
        Self {
            rng: Some(rng),
            fused_kernels: true,
        }
    }

    /// Whether layers may use the fused kernels where they apply (`false`: burn's composed
    /// operations only, the reference the kernels are measured against).
    #[must_use]
    pub fn with_fused_kernels(mut self, on: bool) -> Self {
        self.fused_kernels = on;
        self
    }

    /// A CNN block: `conv` (3x3, padding 1, with bias), ReLU and 2x2 max pooling of `x`,
    /// through the fused kernel (`kernels::conv_pool`) where it applies and is allowed, else
    /// burn's operations (`pool` and `activation` are the model's own modules).
    pub fn conv_block(
        &self,
        conv: &burn::nn::conv::Conv2d,
        pool: &burn::nn::pool::MaxPool2d,
        activation: &burn::nn::Relu,
        x: Tensor<4>,
    ) -> Tensor<4> {
        if self.fused_kernels
            && let Some(bias) = &conv.bias
        {
            let (w, b) = (conv.weight.val(), bias.val());
            if kernels::conv_pool::applies(&x, &w, &b) {
                return kernels::conv_pool::conv_relu_pool(x, w, b);
            }
        }
        pool.forward(activation.forward(conv.forward(x)))
    }

    /// A dense layer `layer` of `x`, through ReLU when `relu`, by the fused kernel
    /// (`kernels::linear`, small layers only) where it applies and is allowed, else burn's
    /// operations.
    pub fn linear(&self, layer: &burn::nn::Linear, x: Tensor<2>, relu: bool) -> Tensor<2> {
        if self.fused_kernels
            && let Some(bias) = &layer.bias
        {
            let (w, b) = (layer.weight.val(), bias.val());
            if kernels::linear::applies(&x, &w, &b) {
                return kernels::linear::linear(x, w, b, relu);
            }
        }
        let y = layer.forward(x);
        if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    }

    /// Layer normalisation of `x` over its last dimension by `ln`, through the fused kernel
    /// (`kernels::layer_norm`) where it applies and is allowed, else burn's own. burn's
    /// `LayerNorm` keeps its epsilon private, so the caller passes the one it built it with.
    pub fn layer_norm<const D: usize>(
        &self,
        ln: &LayerNorm,
        epsilon: f64,
        x: Tensor<D>,
    ) -> Tensor<D> {
        if self.fused_kernels {
            let dims = x.dims();
            let cols = dims[D - 1];
            let rows = dims[..D - 1].iter().product::<usize>();
            let gamma = ln.gamma.val();
            let beta = ln.beta.as_ref().map(Param::val);
            let flat: Tensor<2> = x.clone().reshape([rows, cols]);
            if kernels::layer_norm::applies(&flat, &gamma, beta.as_ref()) {
                return kernels::layer_norm::layer_norm(flat, gamma, beta, epsilon).reshape(dims);
            }
        }
        ln.forward(x)
    }

    /// Exact GELU (`tanh` false) or its tanh approximation of every value of `x`, through the
    /// fused kernel (`kernels::gelu`) where it applies and is allowed, else the composed forms
    /// of [`super::activation`].
    pub fn gelu<const D: usize>(&self, x: Tensor<D>, tanh: bool) -> Tensor<D> {
        if self.fused_kernels && kernels::gelu::applies(&x) {
            return kernels::gelu::gelu(x, tanh);
        }
        if tanh {
            super::activation::gelu_tanh(x)
        } else {
            super::activation::gelu(x)
        }
    }

    /// Attention probabilities `softmax(scores * scale + mask)` over the keys (`scores`
    /// `[batch, heads, queries, keys]`, the additive `mask` `[batch or 1, 1, queries or 1,
    /// keys]`, a constant), through the fused kernel (`kernels::attention`) where it applies
    /// and is allowed, else burn's composed operations.
    pub fn attention_softmax(&self, scores: Tensor<4>, scale: f64, mask: Tensor<4>) -> Tensor<4> {
        if self.fused_kernels && kernels::attention::applies(&scores, &mask) {
            return kernels::attention::attention_softmax(scores, scale, mask);
        }
        kernels::attention::composed(scores, scale, mask)
    }

    /// Zero each value with probability `p` and scale the rest by `1 / (1 - p)` (inverted
    /// dropout, as PyTorch), or pass `x` through when there is no generator or `p` is 0.
    pub fn apply<const D: usize>(&mut self, x: Tensor<D>, p: f64) -> Tensor<D> {
        let Some(rng) = self.rng.as_deref_mut() else {
            return x;
        };
        if p <= 0.0 {
            return x;
        }
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        let dims = x.dims();
        let mask: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| {
                if f64::from(rng.next_f32()) < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_expected_share_scaled_and_repeat_with_the_seed() {
        let device = Device::flex();
        let x = Tensor::<2>::ones([100, 50], &device);
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            Masks::from(&mut rng)
                .apply(x.clone(), 0.2)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        let kept = a.iter().filter(|&&v| v != 0.0).count();
        assert!((3800..4200).contains(&kept), "{kept} of 5000 kept");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let same = Masks::none().apply(x.clone(), 0.5);
        same.into_data().assert_eq(&x.into_data(), true);
    }
}
