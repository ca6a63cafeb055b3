// Layer normalisation, backward pass for the input. With x_hat = (x - mean) * rstd (the row's
// statistics kept by layer_norm.wgsl) and g = dy * gamma, each row's gradient is
//   dx[r, c] = rstd * (g[c] - mean_c(g) - x_hat[c] * mean_c(g * x_hat))
// Rows are shared among THREADS threads as in the forward pass; both means are reduced
// together. burn's composed backward is a dozen kernels or more with [rows, cols] intermediates.
//
// With HAS_DROP (the residual join of layer_norm.wgsl, with dropout), it also writes the
// gradient of the join's h, dh = dx * mask (the mask recomputed from its seed); else dh is a
// stand-in that is never touched (without dropout, h's gradient is dx itself).
//
// Template items (filled by crates/burnish-core/src/kernels/layer_norm.rs):
//   uniform         the `LayerNormUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size
//   has_drop        whether to write dh
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;
const HAS_DROP: bool = {{ has_drop }};

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;
@group(0) @binding(6) var<uniform> params: LayerNormUniform;

var<workgroup> sum_g: array<f32, WORKGROUP>;
var<workgroup> sum_gx: array<f32, WORKGROUP>;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let first_row = (group.y * groups.x + group.x) * (WORKGROUP / THREADS);
    if (first_row >= params.rows) {
        return;
    }
    let lane = local % THREADS;
    let segment = local - lane;
    let row = first_row + local / THREADS;
    let valid = row < params.rows;
    let base = row * params.cols;
    var mean = 0.0;
    var rstd = 0.0;
    if (valid) {
        mean = stats[2u * row];
        rstd = stats[2u * row + 1u];
    }

    var a = 0.0;
    var b = 0.0;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            let g = dy[base + j] * gamma[j];
            a += g;
            b += g * (x[base + j] - mean) * rstd;
        }
    }
    sum_g[local] = a;
    sum_gx[local] = b;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            sum_g[local] += sum_g[local + stride];
            sum_gx[local] += sum_gx[local + stride];
        }
        workgroupBarrier();
    }

    if (valid) {
        let n = f32(params.cols);
        let mean_g = sum_g[segment] / n;
        let mean_gx = sum_gx[segment] / n;
        for (var j = lane; j < params.cols; j += THREADS) {
            let x_hat = (x[base + j] - mean) * rstd;
            let d = rstd * (dy[base + j] * gamma[j] - mean_g - x_hat * mean_gx);
            dx[base + j] = d;
            if (HAS_DROP) {
                dh[base + j] = d * dropout_mask(params.seed, base + j, params.keep, params.drop_scale);
            }
        }
    }
}
