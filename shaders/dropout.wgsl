// Dropout, forward and backward alike: y[i] = x[i] * mask[i], with the mask computed from its seed
// in place (`dropout_mask`, shaders/dropout_mask.wgsl) instead of drawn value by value on the
// host and uploaded as a tensor as big as x. The backward pass is the same kernel on the
// upstream gradient (the same mask multiplies it). One thread per value.
//
// Template items (filled by crates/burnish-core/src/kernels/dropout.rs):
//   uniform         the `DropoutUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

// Only read, except y, but declared read_write: CubeCL's memory pool may place two tensors in
// one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: DropoutUniform;

{{ dropout_mask }}

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
    y[i] = x[i] * dropout_mask(params.seed, i, params.keep, params.scale);
}
