// A small dense layer, forward pass:
//   y[r, j] = b[j] + sum_k x[r, k] w[k, j]      (burn's `Linear`: w is [d_in, d_out])
// then ReLU when RELU is set; without BIAS the product alone (b is not read). For the image and
// table classifiers' layers (at most 65,536 weights) and for the transformers' dense layers and
// packed projections at small batches (at most 2^27 multiply-adds; `kernels/linear.rs`
// decides): there burn's tiled matrix product, a bias add and ReLU's compare and mask fill are
// up to four launches, burn's product costs several of our launches in host time (it selects
// and configures a kernel at every call), and on CPU renderers the tiled product's workgroup
// barriers cost more than its arithmetic. Each thread computes a 4 x 4 block of
// outputs (rows r0 ..= r0 + 3, columns j0 ..= j0 + 3) in registers, four x values and four
// weights a step for sixteen products; a block past the last row or column reads clamped
// indices and writes only what exists.
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

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: LinearUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let col_blocks = (params.d_out + 3u) / 4u;
    if (i >= (params.rows + 3u) / 4u * col_blocks) {
        return;
    }
    let r0 = i / col_blocks * 4u;
    let j0 = i % col_blocks * 4u;
    let last_row = params.rows - 1u;
    let last_col = params.d_out - 1u;
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_row)) * params.d_in;
    let cols = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_col));
    var bias = vec4<f32>(0.0);
    if (BIAS) {
        bias = vec4<f32>(b[cols.x], b[cols.y], b[cols.z], b[cols.w]);
    }
    var acc = array<vec4<f32>, 4>(bias, bias, bias, bias);
    for (var k = 0u; k < params.d_in; k++) {
        let wk = k * params.d_out;
        let wv = vec4<f32>(w[wk + cols.x], w[wk + cols.y], w[wk + cols.z], w[wk + cols.w]);
        acc[0] += x[rows.x + k] * wv;
        acc[1] += x[rows.y + k] * wv;
        acc[2] += x[rows.z + k] * wv;
        acc[3] += x[rows.w + k] * wv;
    }
    for (var a = 0u; a < 4u; a++) {
        let r = r0 + a;
        var v = acc[a];
        if (RELU) {
            v = max(v, vec4<f32>(0.0));
        }
        for (var c = 0u; c < 4u; c++) {
            if (r < params.rows && j0 + c < params.d_out) {
                y[r * params.d_out + j0 + c] = v[c];
            }
        }
    }
}
