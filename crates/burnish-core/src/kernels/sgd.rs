//! The fused SGD step (`shaders/sgd.wgsl`): L2 penalty, momentum and update in one dispatch for
//! a group of parameters.

use burn::prelude::*;

/// The settings every parameter of a step shares.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) struct SgdShared {
    /// Learning rate of this step.
    pub lr: f32,
    /// Momentum (0 with no velocity).
    pub momentum: f32,
}

/// One fused step of a group of parameters: each of `values` (made writable with
/// [`super::writable`]; the caller keeps its clones where they belong) is updated in place with
/// the gradient of the same index and its L2 penalty `weight_decays[s]` (0: none), the gradient
/// first multiplied by `scale` (a device scalar `[1]`) where given. With momentum, `velocity`
/// holds the group's velocities (`[total]`, slots in order), updated in place where nothing
/// else holds it (else on a copy) and returned. At most [`super::group_slots`] parameters. Call
/// only where [`super::applies`] said yes for every tensor.
pub(crate) fn step_group(
    shared: SgdShared,
    weight_decays: &[f32],
    values: &[Tensor<1>],
    grads: Vec<Tensor<1>>,
    velocity: Option<Tensor<1>>,
    scale: Option<Tensor<1>>,
) -> Option<Tensor<1>> {
    assert!(
        weight_decays.len() == values.len() && values.len() == grads.len() && !values.is_empty(),
        "one slot per parameter and gradient"
    );
    #[cfg(feature = "wgpu")]
    {
        use super::registry::{
            Launch, WgslKernel, burn_tensor, cube_tensor, grouped, input, owned, slot_starts,
            stand_ins,
        };

        let lens: Vec<usize> = values.iter().map(|v| v.shape().num_elements()).collect();
        let values: Vec<_> = values.iter().map(|v| cube_tensor(v.clone())).collect();
        let grads: Vec<_> = grads.into_iter().map(input).collect();
        let velocity = velocity.map(owned);
        let scale = scale.map(input);
        let total: usize = lens.iter().sum();
        if let Some(v) = &velocity {
            assert_eq!(v.meta.shape.num_elements(), total, "one velocity per value");
        }
        let kernel = grouped(
            WgslKernel::new("sgd.wgsl", include_str!("../../../../shaders/sgd.wgsl"))
                .item("momentum", velocity.is_some().to_string())
                .item("scaled", scale.is_some().to_string()),
            values.len(),
        );
        let u32_of = |n: usize| u32::try_from(n).expect("a group of fewer than 2^32 values");
        let mut bytes = Vec::new();
        bytes.extend(u32_of(total).to_le_bytes());
        bytes.extend(shared.lr.to_le_bytes());
        bytes.extend(shared.momentum.to_le_bytes());
        bytes.extend([0u8; 4]);
        let (starts, threads) = slot_starts(&lens);
        let mut offset = 0;
        for ((decay, len), start) in weight_decays.iter().zip(&lens).zip(starts) {
            for n in [start, *len, offset] {
                bytes.extend(u32_of(n).to_le_bytes());
            }
            bytes.extend(decay.to_le_bytes());
            offset += len;
        }
        let mut launch = Launch::new(kernel, threads);
        for (value, grad) in values.iter().zip(&grads) {
            launch = launch.buffer(value).buffer(grad);
        }
        // Bindings never touched (no momentum, no scale) get stand-ins of their own:
        // WebGPU rejects one buffer range bound twice as writable, so not a gradient again.
        let [unused_velocity, unused_scale] = stand_ins(&grads[0]);
        launch
            .buffer(velocity.as_ref().unwrap_or(&unused_velocity))
            .buffer(&scale.unwrap_or(unused_scale))
            .run_bytes(bytes);
        velocity.map(burn_tensor)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (shared, grads, velocity, scale);
        unreachable!("the fused SGD step needs the wgpu feature; `applies` said no: {values:?}")
    }
}
