// The dense layer of linear.wgsl on vec4s, where d_in and d_out are multiples of 4 (the
// transformers' layers: `kernels/linear.rs` picks it):
//   y[r, j] = b[j] + sum_k x[r, k] w[k, j]      (w is [d_in, d_out])
// then ReLU when RELU is set; without BIAS the product alone (b is not read). Each thread
// computes a 4 x 4 block of outputs (rows r0 ..= r0 + 3, columns j0 ..= j0 + 3) in registers:
// per four steps of k, four rows' vec4s of x and four rows' vec4s of w, eight loads for 64
// multiply-adds (linear.wgsl's scalar loads, with clamped indices, are 32). A block past the
// last row reads the last row again and writes only the rows that exist.
//
// Template items (filled by crates/burnish-core/src/kernels/linear.rs):
//   uniform         the `LinearUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   relu            true to apply ReLU
//   bias            false for the product alone

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const RELU: bool = {{ relu }};
const BIAS: bool = {{ bias }};

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: LinearUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let col_blocks = params.d_out / 4u;
    if (i >= (params.rows + 3u) / 4u * col_blocks) {
        return;
    }
    let in_units = params.d_in / 4u;
    let r0 = i / col_blocks * 4u;
    let jb = i % col_blocks;
    let last_row = params.rows - 1u;
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_row)) * in_units;
    var bias = vec4<f32>(0.0);
    if (BIAS) {
        bias = b[jb];
    }
    var acc = array<vec4<f32>, 4>(bias, bias, bias, bias);
    for (var kb = 0u; kb < in_units; kb++) {
        let wk = kb * 4u * col_blocks + jb;
        let w0 = w[wk];
        let w1 = w[wk + col_blocks];
        let w2 = w[wk + 2u * col_blocks];
        let w3 = w[wk + 3u * col_blocks];
        let xa = x[rows.x + kb];
        let xb = x[rows.y + kb];
        let xc = x[rows.z + kb];
        let xd = x[rows.w + kb];
        acc[0] += xa.x * w0 + xa.y * w1 + xa.z * w2 + xa.w * w3;
        acc[1] += xb.x * w0 + xb.y * w1 + xb.z * w2 + xb.w * w3;
        acc[2] += xc.x * w0 + xc.y * w1 + xc.z * w2 + xc.w * w3;
        acc[3] += xd.x * w0 + xd.y * w1 + xd.z * w2 + xd.w * w3;
    }
    for (var a = 0u; a < 4u; a++) {
        let r = r0 + a;
        if (r < params.rows) {
            var v = acc[a];
            if (RELU) {
                v = max(v, vec4<f32>(0.0));
            }
            y[r * col_blocks + jb] = v;
        }
    }
}
