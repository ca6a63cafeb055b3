// Gradient clipping by the global norm, first pass: the sum of squares of one tensor, in
// partial sums. Each of the GROUPS workgroups strides over the tensor and writes its sum into
// its own slot, partials[offset + workgroup], so one partials buffer holds every parameter's
// slots (one launch per parameter, nothing to zero first, no atomics: WGSL has none for f32).
// clip_factor.wgsl then adds them all. burn's composed path is four kernels a parameter
// (square, sum into a zeroed output, add to the running total).
//
// Template items (filled by crates/burnish-core/src/kernels/clip.rs):
//   uniform         the `SumSquaresUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> params: SumSquaresUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // At most 64 workgroups: a one-dimensional grid.
    var s = 0.0;
    for (var i = group.x * WORKGROUP + local; i < params.len; i += params.groups * WORKGROUP) {
        let v = values[i];
        s += v * v;
    }
    scratch[local] = s;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            scratch[local] += scratch[local + stride];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        partials[params.offset + group.x] = scratch[0];
    }
}
