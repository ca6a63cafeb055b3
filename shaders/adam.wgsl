// One fused Adam / AdamW step over a group of up to SLOTS parameters in one dispatch, in place:
// each value's weight, gradient and both moments are read once and the weight and moments
// written once (burn's composed update is about a dozen element-wise kernels per parameter,
// each a full pass over memory; one dispatch per parameter was still 103 launches a step for
// MiniLM).
//
// The group's threads are laid out slot after slot, each slot's starting on a workgroup
// boundary, so that every workgroup updates one parameter: which binding a workgroup reads is
// then uniform (on CPU renderers, which run a workgroup's threads as SIMD lanes, a branch per
// slot that differed between lanes would run every slot's arithmetic masked: 6x slower on
// lavapipe). Thread `start + l` of a slot updates element l of that slot's weight (binding 2 s)
// with its gradient (2 s + 1). The moments of the whole group live in one buffer: the first
// moment of the slot's element l at state[offset + l], the second at state[total + offset + l].
// The entry point, shared with sgd.wgsl, is group_main.wgsl: a `switch` over the slots reads
// and writes the weight and gradient (WebGPU cannot index bindings at run time) and `update`
// below runs once per thread.
//
// The arithmetic is burnish's composed update (train/optim.rs) operation for operation, so the
// two agree to rounding:
//   AdamW: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;
//          w = w (1 - lr wd) - lr (m / c1) / (sqrt(v / c2) + eps)
//   Adam:  g = wd w + g (L2), the same moments, w = w - lr (m f) / (sqrt(v) + eps'), with the
//          bias corrections folded into f and eps' as burn does
// First step: the caller passes zeroed moments (0 b + x = x exactly).
// With SCALED the gradient is first multiplied by scale[0], a factor left on the device by
// global-norm clipping (clip_factor.wgsl): the same f32 product as scaling the gradient on its
// own, without a pass over it; a factor of exactly 0 (dynamic loss scaling after an overflow,
// loss_scale.wgsl; clipping's factor is never 0) skips the step. The decay settings and bias corrections come per slot (the text
// trainers decay matrices only; a parameter first trained later has its own step count).
//
// Template items (filled by crates/burnish-core/src/kernels/adam.rs):
//   workgroup_size  threads per workgroup
//   slots           parameters in the group (bindings 0 .. 2 slots - 1)
//   state_binding, scale_binding, uniform_binding  the bindings after the slots'
//   bindings        the weight and gradient bindings of each slot
//   main            the entry point (group_main.wgsl) with the per-slot reads and writes
//   decoupled       true for AdamW, false for Adam's L2 penalty
//   scaled          whether the scale binding holds a gradient scale (else it is not touched)

const DECOUPLED: bool = {{ decoupled }};
const SCALED: bool = {{ scaled }};
const WORKGROUP: u32 = {{ workgroup_size }}u;
const SLOTS: u32 = {{ slots }}u;

struct Slot {
    // The slot's first thread (a multiple of the workgroup size), its values, and where its
    // moments start in each of the state's two blocks.
    start: u32,
    len: u32,
    offset: u32,
    // AdamW's decay factor 1 - lr wd, Adam's L2 penalty wd, and the corrections 1 - b1^t,
    // 1 - b2^t.
    decay_factor: f32,
    weight_decay: f32,
    correction_1: f32,
    correction_2: f32,
    // Adam: sqrt(1 - b2^t) / (1 - b1^t); the denominator's epsilon (Adam: scaled).
    moment_factor: f32,
    epsilon: f32,
    // A uniform array's stride is a multiple of 16 bytes.
    pad_0: u32,
    pad_1: u32,
    pad_2: u32,
}

struct AdamGroup {
    // Values in the group (the size of each moment block).
    total: u32,
    lr: f32,
    beta_1: f32,
    one_minus_beta_1: f32,
    beta_2: f32,
    one_minus_beta_2: f32,
    pad_0: u32,
    pad_1: u32,
    slots: array<Slot, SLOTS>,
}

// Every binding read_write: CubeCL's memory pool may place several tensors in one wgpu buffer,
// and one dispatch cannot use a buffer both read-only and writable.
{{ bindings }}
@group(0) @binding({{ state_binding }}) var<storage, read_write> state: array<f32>;
@group(0) @binding({{ scale_binding }}) var<storage, read_write> scale: array<f32>;
@group(0) @binding({{ uniform_binding }}) var<uniform> params: AdamGroup;

// The new weight of the value whose moments are at i (slot s), from its weight w and gradient;
// updates the moments.
fn update(i: u32, s: u32, w: f32, gradient: f32) -> f32 {
    let slot = params.slots[s];
    var g = gradient;
    if (SCALED) {
        // A factor of 0 is dynamic loss scaling's "skip": a gradient overflowed
        // (loss_scale.wgsl); the weight and the moments stay as they are.
        let factor = scale[0];
        if (factor == 0.0) {
            return w;
        }
        g = g * factor;
    }
    if (!DECOUPLED) {
        g = w * slot.weight_decay + g;
    }
    let m = state[i] * params.beta_1 + g * params.one_minus_beta_1;
    let v = state[params.total + i] * params.beta_2 + (g * g) * params.one_minus_beta_2;
    state[i] = m;
    state[params.total + i] = v;
    if (DECOUPLED) {
        let m_hat = m / slot.correction_1;
        let v_hat = v / slot.correction_2;
        let delta = m_hat / (sqrt(v_hat) + slot.epsilon);
        return w * slot.decay_factor - delta * params.lr;
    }
    let delta = (m * slot.moment_factor) / (sqrt(v) + slot.epsilon);
    return w - delta * params.lr;
}

{{ main }}
