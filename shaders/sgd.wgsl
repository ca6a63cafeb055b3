// One fused SGD step over a group of up to SLOTS parameters in one dispatch, in place: L2
// penalty, momentum (no dampening) and the update in one pass (burn's composed update is up to
// six element-wise kernels per parameter).
//
// The group's layout is adam.wgsl's: each slot's threads start on a workgroup boundary, thread
// start + l of a slot updates element l of its weight (binding 2 s) with its gradient (2 s + 1);
// with momentum the group's velocities live in one buffer, that element's at state[offset + l].
//
// The arithmetic is burnish's composed update (train/optim.rs) operation for operation:
//   g = g s (with a scale: s = scale[0], global-norm clipping's factor left on the device;
//   s = 0, dynamic loss scaling after an overflow, skips the step);
//   g = wd w + g (when wd > 0);  v = g + momentum v (with momentum; the caller passes a zeroed
//   velocity on the first step, 0 m + g = g exactly);  w = w - lr v (or w - lr g without).
//
// Template items (filled by crates/burnish-core/src/kernels/sgd.rs):
//   workgroup_size  threads per workgroup
//   slots           parameters in the group (bindings 0 .. 2 slots - 1)
//   state_binding, scale_binding, uniform_binding  the bindings after the slots'
//   bindings        the weight and gradient bindings of each slot
//   main            the entry point (group_main.wgsl) with the per-slot reads and writes
//   momentum        whether there is a velocity (without, the state binding is not touched)
//   scaled          whether the scale binding holds a gradient scale (else it is not touched)

const MOMENTUM: bool = {{ momentum }};
const SCALED: bool = {{ scaled }};
const WORKGROUP: u32 = {{ workgroup_size }}u;
const SLOTS: u32 = {{ slots }}u;

struct Slot {
    // The slot's first thread (a multiple of the workgroup size), its values, where its
    // velocities start, and its L2 penalty (0: none).
    start: u32,
    len: u32,
    offset: u32,
    weight_decay: f32,
}

struct SgdGroup {
    // Values in the group.
    total: u32,
    lr: f32,
    momentum: f32,
    pad: u32,
    slots: array<Slot, SLOTS>,
}

// Every binding read_write: CubeCL's memory pool may place several tensors in one wgpu buffer,
// and one dispatch cannot use a buffer both read-only and writable.
{{ bindings }}
@group(0) @binding({{ state_binding }}) var<storage, read_write> state: array<f32>;
@group(0) @binding({{ scale_binding }}) var<storage, read_write> scale: array<f32>;
@group(0) @binding({{ uniform_binding }}) var<uniform> params: SgdGroup;

// The new weight of the value whose velocity is at i (slot s), from its weight w and gradient;
// updates the velocity.
fn update(i: u32, s: u32, w: f32, gradient: f32) -> f32 {
    let weight_decay = params.slots[s].weight_decay;
    var g = gradient;
    if (SCALED) {
        // A factor of 0 is dynamic loss scaling's "skip": a gradient overflowed
        // (loss_scale.wgsl); the weight and the velocity stay as they are.
        let factor = scale[0];
        if (factor == 0.0) {
            return w;
        }
        g = g * factor;
    }
    if (weight_decay > 0.0) {
        g = w * weight_decay + g;
    }
    if (MOMENTUM) {
        let v = g + state[i] * params.momentum;
        state[i] = v;
        return w - v * params.lr;
    }
    return w - g * params.lr;
}

{{ main }}
