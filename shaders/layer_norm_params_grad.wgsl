// Layer normalisation, backward pass for the scale and shift:
//   dgamma[c] = sum_r dy[r, c] * x_hat[r, c]      dbeta[c] = sum_r dy[r, c]
// with x_hat from the row statistics that layer_norm.wgsl kept. A workgroup takes COLS adjacent
// columns (neighbouring threads read neighbouring values) and splits the rows among
// WORKGROUP / COLS lanes, then reduces across the lanes in workgroup memory.
//
// With RESIDUAL (the residual join of layer_norm.wgsl), also the join's bias's gradient,
//   dbias[c] = sum_r dh[r, c]
// from the gradient of h that layer_norm_grad.wgsl wrote (dx itself without dropout); else dh
// and dbias are stand-ins that are never touched.
//
// Template items (filled by crates/burnish-core/src/kernels/layer_norm.rs):
//   uniform         the `LayerNormUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two of at least 16
//   residual        whether to sum dbias

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const COLS: u32 = 16u;
const LANES: u32 = WORKGROUP / COLS;
const RESIDUAL: bool = {{ residual }};

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(7) var<uniform> params: LayerNormUniform;

var<workgroup> sum_g: array<f32, WORKGROUP>;
var<workgroup> sum_b: array<f32, WORKGROUP>;
var<workgroup> sum_h: array<f32, WORKGROUP>;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let first_col = (group.y * groups.x + group.x) * COLS;
    if (first_col >= params.cols) {
        return;
    }
    let lane = local / COLS;
    let col = first_col + local % COLS;
    var g = 0.0;
    var b = 0.0;
    var c = 0.0;
    if (col < params.cols) {
        for (var r = lane; r < params.rows; r += LANES) {
            let d = dy[r * params.cols + col];
            g += d * (x[r * params.cols + col] - stats[2u * r]) * stats[2u * r + 1u];
            b += d;
            if (RESIDUAL) {
                c += dh[r * params.cols + col];
            }
        }
    }
    sum_g[local] = g;
    sum_b[local] = b;
    sum_h[local] = c;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            sum_g[local] += sum_g[local + stride * COLS];
            sum_b[local] += sum_b[local + stride * COLS];
            if (RESIDUAL) {
                sum_h[local] += sum_h[local + stride * COLS];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < params.cols) {
        dgamma[col] = sum_g[local];
        dbeta[col] = sum_b[local];
        if (RESIDUAL) {
            dbias[col] = sum_h[local];
        }
    }
}
