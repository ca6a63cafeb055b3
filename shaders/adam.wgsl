// One fused Adam / AdamW step over one parameter, in place: reads the weight, its gradient and
// both moments once and writes the weight and moments once (burn's composed update is about a
// dozen element-wise kernels, each a full pass over memory).
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
// own, without a pass over it. The decay settings come per parameter (the text trainers decay
// matrices only), so a parameter without decay has decay_factor 1 and weight_decay 0.
//
// Template items (filled by crates/burnish-core/src/kernels/mod.rs):
//   uniform         the `AdamUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   decoupled       true for AdamW, false for Adam's L2 penalty
//   scaled          whether binding 4 holds a gradient scale (else it is not touched)

{{ uniform }}

const DECOUPLED: bool = {{ decoupled }};
const SCALED: bool = {{ scaled }};
const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> weight: array<f32>;
// Only read, but declared read_write: CubeCL's memory pool may place the gradient in the same
// wgpu buffer as a written tensor, and one dispatch cannot use a buffer both read-only and
// writable.
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> first: array<f32>;
@group(0) @binding(3) var<storage, read_write> second: array<f32>;
@group(0) @binding(4) var<storage, read_write> scale: array<f32>;
@group(0) @binding(5) var<uniform> params: AdamUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Two-dimensional grid: a parameter may need more than 65,535 workgroups.
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.len) {
        return;
    }
    let w = weight[i];
    var g = grad[i];
    if (SCALED) {
        g = g * scale[0];
    }
    if (!DECOUPLED) {
        g = w * params.weight_decay + g;
    }
    let m = first[i] * params.beta_1 + g * params.one_minus_beta_1;
    let v = second[i] * params.beta_2 + (g * g) * params.one_minus_beta_2;
    first[i] = m;
    second[i] = v;
    if (DECOUPLED) {
        let m_hat = m / params.correction_1;
        let v_hat = v / params.correction_2;
        let delta = m_hat / (sqrt(v_hat) + params.epsilon);
        weight[i] = w * params.decay_factor - delta * params.lr;
    } else {
        let delta = (m * params.moment_factor) / (sqrt(v) + params.epsilon);
        weight[i] = w - delta * params.lr;
    }
}
