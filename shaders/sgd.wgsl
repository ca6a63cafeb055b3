// One fused SGD step over one parameter, in place: L2 penalty, momentum (no dampening) and the
// update in one pass (burn's composed update is up to six element-wise kernels).
//
// The arithmetic is burnish's composed update (train/optim.rs) operation for operation:
//   g = g s (with a scale: s = scale[0], global-norm clipping's factor left on the device);
//   g = wd w + g (when wd > 0);  v = g + momentum v (with momentum; the caller passes a zeroed
//   velocity on the first step, 0 m + g = g exactly);  w = w - lr v (or w - lr g without).
//
// Template items (filled by crates/burnish-core/src/kernels/mod.rs):
//   uniform         the `SgdUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   momentum        whether there is a velocity (without, binding 2 is not touched)
//   scaled          whether binding 3 holds a gradient scale (else it is not touched)

{{ uniform }}

const MOMENTUM: bool = {{ momentum }};
const SCALED: bool = {{ scaled }};
const WORKGROUP: u32 = {{ workgroup_size }}u;

// Every binding read_write: CubeCL's memory pool may place several tensors in one wgpu buffer,
// and one dispatch cannot use a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<storage, read_write> scale: array<f32>;
@group(0) @binding(4) var<uniform> params: SgdUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.len) {
        return;
    }
    let w = weight[i];
    var g = grad[i];
    if (SCALED) {
        g = g * scale[0];
    }
    if (params.weight_decay > 0.0) {
        g = w * params.weight_decay + g;
    }
    if (MOMENTUM) {
        let v = g + velocity[i] * params.momentum;
        velocity[i] = v;
        weight[i] = w - v * params.lr;
    } else {
        weight[i] = w - g * params.lr;
    }
}
