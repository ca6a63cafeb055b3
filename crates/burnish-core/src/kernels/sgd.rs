//! The fused SGD step (`shaders/sgd.wgsl`): L2 penalty, momentum and update in one dispatch per
//! parameter.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of `shaders/sgd.wgsl`.
    SgdUniform {
        /// Elements of the parameter.
        len: u32,
        /// Learning rate of this step.
        lr: f32,
        /// L2 penalty added to the gradient (0: none).
        weight_decay: f32,
        /// Momentum (0 with no velocity).
        momentum: f32,
    }
);

/// The fused step: `value` (and `velocity`, with momentum) updated in place where nothing else
/// holds them (else on a copy), the gradient first multiplied by `scale` (a device scalar `[1]`)
/// where given. Returns the new weights and velocity. Call only where [`super::applies`] said
/// yes.
pub(crate) fn step(
    uniform: SgdUniform,
    value: Tensor<1>,
    grad: Tensor<1>,
    scale: Option<Tensor<1>>,
    velocity: Option<Tensor<1>>,
) -> (Tensor<1>, Option<Tensor<1>>) {
    #[cfg(feature = "wgpu")]
    {
        use super::registry::{Launch, WgslKernel, burn_tensor, empty_like, input, owned};

        let len = value.shape().num_elements();
        let value = owned(value);
        let grad = input(grad);
        let velocity = velocity.map(owned);
        let scale = scale.map(input);
        let kernel = WgslKernel::new("sgd.wgsl", include_str!("../../../../shaders/sgd.wgsl"))
            .uniform::<SgdUniform>()
            .item("momentum", velocity.is_some().to_string())
            .item("scaled", scale.is_some().to_string());
        let uniform = SgdUniform {
            len: u32::try_from(len).expect("a parameter of fewer than 2^32 elements"),
            ..uniform
        };
        // Bindings never touched (no momentum, no scale) get one-value stand-ins of their own:
        // WebGPU rejects one buffer range bound twice as writable, so not the gradient again.
        let unused = || empty_like(&grad, [1]);
        Launch::new(kernel, len)
            .buffer(&value)
            .buffer(&grad)
            .buffer(velocity.as_ref().unwrap_or(&unused()))
            .buffer(&scale.unwrap_or_else(unused))
            .run(&uniform);
        (burn_tensor(value), velocity.map(burn_tensor))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (uniform, grad, scale, velocity);
        unreachable!("the fused SGD step needs the wgpu feature; `applies` said no: {value:?}")
    }
}
