use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use crate::rng::Rng;

/// A linear layer initialised like PyTorch's default (and burn's): weight and bias uniform in
/// `[-k, k]` with `k = 1/sqrt(d_input)`, drawn on the host so every backend starts identical.
/// burn's layout: the weight is `[d_input, d_output]`.
pub(crate) fn linear(d_input: usize, d_output: usize, rng: &mut Rng, device: &Device) -> Linear {
    let k = 1.0 / (d_input as f32).sqrt();
    let weight: Vec<f32> = (0..d_input * d_output)
        .map(|_| rng.uniform(-k, k))
        .collect();
    let bias: Vec<f32> = (0..d_output).map(|_| rng.uniform(-k, k)).collect();
    Linear {
        weight: Param::from_data(TensorData::new(weight, [d_input, d_output]), device),
        bias: Some(Param::from_data(TensorData::new(bias, [d_output]), device)),
    }
}
