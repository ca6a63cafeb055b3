//! The fused Adam / AdamW step (`shaders/adam.wgsl`): one dispatch per parameter instead of
//! burn's dozen element-wise kernels, each a full pass over the parameter's memory.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of `shaders/adam.wgsl`.
    AdamUniform {
        /// Elements of the parameter.
        len: u32,
        /// Learning rate of this step.
        lr: f32,
        /// AdamW's decoupled decay as a factor, `1 - lr * wd`.
        decay_factor: f32,
        /// Adam's L2 penalty, added to the gradient.
        weight_decay: f32,
        beta_1: f32,
        one_minus_beta_1: f32,
        beta_2: f32,
        one_minus_beta_2: f32,
        /// AdamW: `1 - beta_1^t`, dividing the first moment.
        correction_1: f32,
        /// AdamW: `1 - beta_2^t`, dividing the second moment.
        correction_2: f32,
        /// Adam: `sqrt(1 - beta_2^t) / (1 - beta_1^t)`, multiplying the first moment.
        moment_factor: f32,
        /// The denominator's epsilon (Adam: scaled by `sqrt(1 - beta_2^t)`).
        epsilon: f32,
    }
);

/// One step's settings, shared by every parameter of the step.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) struct AdamStep {
    /// AdamW (decoupled decay) or Adam (L2 penalty).
    pub decoupled: bool,
    pub uniform: AdamUniform,
}

/// The fused step: `value`, `first` and `second` updated in place where nothing else holds
/// them (else on a copy), the gradient first multiplied by `scale` (a device scalar `[1]`, as
/// global-norm clipping leaves it) where given. Call only where [`super::applies`] said yes.
pub(crate) fn step(
    step: &AdamStep,
    value: Tensor<1>,
    grad: Tensor<1>,
    scale: Option<Tensor<1>>,
    first: Tensor<1>,
    second: Tensor<1>,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "wgpu")]
    {
        use super::registry::{Launch, WgslKernel, burn_tensor, empty_like, input, owned};

        let len = value.shape().num_elements();
        let value = owned(value);
        let first = owned(first);
        let second = owned(second);
        let grad = input(grad);
        let scale = scale.map(input);
        let kernel = WgslKernel::new("adam.wgsl", include_str!("../../../../shaders/adam.wgsl"))
            .uniform::<AdamUniform>()
            .item("decoupled", step.decoupled.to_string())
            .item("scaled", scale.is_some().to_string());
        let mut uniform = step.uniform;
        uniform.len = u32::try_from(len).expect("a parameter of fewer than 2^32 elements");
        Launch::new(kernel, len)
            .buffer(&value)
            .buffer(&grad)
            .buffer(&first)
            .buffer(&second)
            // Without a scale that binding is never touched: a one-value stand-in fills it (not
            // the gradient again: WebGPU rejects one buffer range bound twice as writable).
            .buffer(&scale.unwrap_or_else(|| empty_like(&grad, [1])))
            .run(&uniform);
        (burn_tensor(value), burn_tensor(first), burn_tensor(second))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (step, grad, scale, first, second);
        unreachable!("the fused Adam step needs the wgpu feature; `applies` said no: {value:?}")
    }
}
