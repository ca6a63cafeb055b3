//! The fused Adam / AdamW step (`shaders/adam.wgsl`): one dispatch for a group of parameters
//! instead of burn's dozen element-wise kernels per parameter, each a full pass over its memory.

use burn::prelude::*;

/// The settings every parameter of a step shares.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) struct AdamShared {
    /// AdamW (decoupled decay) or Adam (L2 penalty).
    pub decoupled: bool,
    /// Learning rate of this step.
    pub lr: f32,
    pub beta_1: f32,
    pub one_minus_beta_1: f32,
    pub beta_2: f32,
    pub one_minus_beta_2: f32,
}

/// One parameter's settings in a group (its decay and its own step count's corrections).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) struct AdamSlot {
    /// AdamW's decoupled decay as a factor, `1 - lr * wd`.
    pub decay_factor: f32,
    /// Adam's L2 penalty, added to the gradient.
    pub weight_decay: f32,
    /// AdamW: `1 - beta_1^t`, dividing the first moment.
    pub correction_1: f32,
    /// AdamW: `1 - beta_2^t`, dividing the second moment.
    pub correction_2: f32,
    /// Adam: `sqrt(1 - beta_2^t) / (1 - beta_1^t)`, multiplying the first moment.
    pub moment_factor: f32,
    /// The denominator's epsilon (Adam: scaled by `sqrt(1 - beta_2^t)`).
    pub epsilon: f32,
}

/// One fused step of a group of parameters: each of `values` (made writable with
/// [`super::writable`]; the caller keeps its clones where they belong) is updated in place with
/// the gradient of the same index, scaled first by `scale` (a device scalar `[1]`, as global-norm
/// clipping leaves it) where given. `state` holds the group's moments, `[2 * total]`: the first
/// moments of all slots in order, then the second; it is updated in place where nothing else
/// holds it (else on a copy) and returned. At most [`super::group_slots`] parameters. Call only
/// where [`super::applies`] said yes for every tensor.
pub(crate) fn step_group(
    shared: &AdamShared,
    slots: &[AdamSlot],
    values: &[Tensor<1>],
    grads: Vec<Tensor<1>>,
    state: Tensor<1>,
    scale: Option<Tensor<1>>,
) -> Tensor<1> {
    assert!(
        slots.len() == values.len() && values.len() == grads.len() && !slots.is_empty(),
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
        let state = owned(state);
        let scale = scale.map(input);
        let total: usize = lens.iter().sum();
        assert_eq!(
            state.meta.shape.num_elements(),
            2 * total,
            "the group's state holds two moments per value"
        );
        let kernel = grouped(
            WgslKernel::new("adam.wgsl", include_str!("../../../../shaders/adam.wgsl"))
                .item("decoupled", shared.decoupled.to_string())
                .item("scaled", scale.is_some().to_string()),
            slots.len(),
        );
        let u32_of = |n: usize| u32::try_from(n).expect("a group of fewer than 2^32 values");
        let mut bytes = Vec::new();
        bytes.extend(u32_of(total).to_le_bytes());
        for f in [
            shared.lr,
            shared.beta_1,
            shared.one_minus_beta_1,
            shared.beta_2,
            shared.one_minus_beta_2,
        ] {
            bytes.extend(f.to_le_bytes());
        }
        bytes.extend([0u8; 8]);
        let (starts, threads) = slot_starts(&lens);
        let mut offset = 0;
        for ((slot, len), start) in slots.iter().zip(&lens).zip(starts) {
            for n in [start, *len, offset] {
                bytes.extend(u32_of(n).to_le_bytes());
            }
            for f in [
                slot.decay_factor,
                slot.weight_decay,
                slot.correction_1,
                slot.correction_2,
                slot.moment_factor,
                slot.epsilon,
            ] {
                bytes.extend(f.to_le_bytes());
            }
            bytes.extend([0u8; 12]);
            offset += len;
        }
        let mut launch = Launch::new(kernel, threads);
        for (value, grad) in values.iter().zip(&grads) {
            launch = launch.buffer(value).buffer(grad);
        }
        launch
            .buffer(&state)
            // Without a scale that binding is never touched: a stand-in fills it (not
            // a gradient again: WebGPU rejects one buffer range bound twice as writable).
            .buffer(&scale.unwrap_or_else(|| stand_ins::<1>(&state)[0].clone()))
            .run_bytes(bytes);
        burn_tensor(state)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (shared, grads, state, scale);
        unreachable!("the fused Adam step needs the wgpu feature; `applies` said no: {values:?}")
    }
}
