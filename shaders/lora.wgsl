// A LoRA adapter's products (crates/burnish-core/src/kernels/lora.rs), forward and backward
// alike: one thread per output value,
//   out[r, j] = factor * post(r, j) * sum_k pre(r, k) lhs[r, k] rhs[k * stride_k + j * stride_j]
// for rows r and columns j, where pre and post are the adapter's dropout mask (computed from its
// seed in place, shaders/dropout_mask.wgsl) on lhs (mode 1) or on the output (mode 2), or
// neither (mode 0). Four uses, all rank-r products whose arithmetic is small:
//   down   t  = dropout(x) A             lhs x,  rhs A [d_in, r], mode 1
//   up     y  = scale t B                lhs t,  rhs B [r, d_out]
//   dt        = scale g B^T              lhs g,  rhs B read by rows
//   dx        = dropout'(dt A^T)         lhs dt, rhs A read by rows, mode 2
// in place of burn's tiled matrix products (each a kernel choice and argument views built on the
// host at every launch: three times a launch of ours in the browser worker's time) and the
// separate dropout kernel, whose output the composed backward also had to keep.
//
// Template items (filled by crates/burnish-core/src/kernels/lora.rs):
//   uniform         the `LoraUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

// Only read, except out, but declared read_write: CubeCL's memory pool may place two tensors in
// one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> lhs: array<f32>;
@group(0) @binding(1) var<storage, read_write> rhs: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: LoraUniform;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.rows * params.cols) {
        return;
    }
    let row = i / params.cols;
    let j = i % params.cols;
    let start = row * params.inner;
    var acc = 0.0;
    if (params.mode == 1u) {
        for (var k = 0u; k < params.inner; k++) {
            let at = start + k;
            let kept = lhs[at] * dropout_mask(params.seed, at, params.keep, params.drop_scale);
            acc += kept * rhs[k * params.stride_k + j * params.stride_j];
        }
    } else {
        for (var k = 0u; k < params.inner; k++) {
            acc += lhs[start + k] * rhs[k * params.stride_k + j * params.stride_j];
        }
    }
    var v = acc * params.factor;
    if (params.mode == 2u) {
        // The output is [rows, d_in]: its flat index is the input's, where the mask was drawn.
        v *= dropout_mask(params.seed, i, params.keep, params.drop_scale);
    }
    out[i] = v;
}
