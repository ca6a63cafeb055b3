// The query, key and value projections' weights ([d_in, d_out] each, burn's layout) and biases
// ([d_out] each) side by side in one [d_in, 3 * d_out] matrix and one [3 * d_out] bias, so that
// one matrix product projects all three (forward); or, with UNPACK, the packed gradients cut
// back into the six parameters' own (backward). One thread per packed weight (a T of them);
// the first 3 * units threads also move the bias.
//
// Template items (filled by crates/burnish-core/src/kernels/qkv.rs):
//   uniform         the `QkvUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   t               f32, or vec4<f32> where d_out is a multiple of 4 (`params.units` is d_out
//                   in values of T, and every index counts Ts)
//   unpack          false: the six parameters -> packed; true: packed -> the six

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
alias T = {{ t }};
const UNPACK: bool = {{ unpack }};

// Read one way, written the other, all declared read_write: CubeCL's memory pool may place two
// tensors in one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> w0: array<T>;
@group(0) @binding(1) var<storage, read_write> w1: array<T>;
@group(0) @binding(2) var<storage, read_write> w2: array<T>;
@group(0) @binding(3) var<storage, read_write> b0: array<T>;
@group(0) @binding(4) var<storage, read_write> b1: array<T>;
@group(0) @binding(5) var<storage, read_write> b2: array<T>;
@group(0) @binding(6) var<storage, read_write> packed_w: array<T>;
@group(0) @binding(7) var<storage, read_write> packed_b: array<T>;
@group(0) @binding(8) var<uniform> params: QkvUniform;

// Weight j of part p <-> packed weight k (WebGPU cannot index bindings at run time).
fn move_weight(p: u32, j: u32, k: u32) {
    if (UNPACK) {
        switch p {
            case 0u: { w0[j] = packed_w[k]; }
            case 1u: { w1[j] = packed_w[k]; }
            default: { w2[j] = packed_w[k]; }
        }
    } else {
        switch p {
            case 0u: { packed_w[k] = w0[j]; }
            case 1u: { packed_w[k] = w1[j]; }
            default: { packed_w[k] = w2[j]; }
        }
    }
}

// Bias j of part p <-> packed bias k.
fn move_bias(p: u32, j: u32, k: u32) {
    if (UNPACK) {
        switch p {
            case 0u: { b0[j] = packed_b[k]; }
            case 1u: { b1[j] = packed_b[k]; }
            default: { b2[j] = packed_b[k]; }
        }
    } else {
        switch p {
            case 0u: { packed_b[k] = b0[j]; }
            case 1u: { packed_b[k] = b1[j]; }
            default: { packed_b[k] = b2[j]; }
        }
    }
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let width = 3u * params.units;
    if (i >= params.d_in * width) {
        return;
    }
    let row = i / width;
    let col = i % width;
    let p = col / params.units;
    let j = col % params.units;
    move_weight(p, row * params.units + j, i);
    if (i < width) {
        move_bias(p, j, i);
    }
}
