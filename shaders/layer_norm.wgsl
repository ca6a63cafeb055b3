// Layer normalisation, forward pass. Each row of `x` ([rows, cols], row-major) is handled by
// THREADS threads (a power of two, 1 to the workgroup size), so a workgroup holds
// WORKGROUP / THREADS rows. The row's threads sum it (tree reduction in workgroup memory) for the
// mean, then sum the squared deviations for the (biased) variance, two passes as burn's
// composed `layer_norm` does, and write
//   y[r, c] = (x[r, c] - mean) * rstd * gamma[c] + beta[c],   rstd = 1 / sqrt(var + epsilon)
//   stats[2r], stats[2r + 1] = mean, rstd                     kept for the backward pass
// burn's composed path is about ten kernels (two mean reductions, subtract, square, add,
// sqrt, divide, scale, shift) with three [rows, cols] intermediates; this reads x twice.
//
//
// With RESIDUAL, the post-norm transformer's residual join comes first, in the same pass as the
// mean: x[r, c] = res[r, c] + dropout(h[r, c] + bias[c]) (a linear layer's product h before its
// bias, the dropout mask computed in place from its seed), written to x for the backward pass,
// then normalised as above: one launch in place of the bias add, dropout, add and layer norm.
// Without it, h, bias and res are stand-ins that are never touched.
//
// Template items (filled by crates/burnish-core/src/kernels/layer_norm.rs):
//   uniform         the `LayerNormUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size
//   row_reduce      row_max and row_sum over a row's threads (shaders/row_reduce.wgsl)
//   residual        whether x is the residual join of h, bias and res (written here)
//   has_drop        whether that join has dropout (params.seed, keep, drop_scale)
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;
const RESIDUAL: bool = {{ residual }};
const HAS_DROP: bool = {{ has_drop }};

// Only read, except y, stats and (RESIDUAL) x, but declared read_write: CubeCL's memory pool may place two
// tensors in one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<uniform> params: LayerNormUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ row_reduce }}

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Two-dimensional grid: there may be more than 65,535 workgroups. A workgroup past the last
    // row leaves as a whole (uniformly); inside the last one, threads of rows past the end take
    // part in the barriers but read and write nothing.
    let first_row = (group.y * groups.x + group.x) * (WORKGROUP / THREADS);
    if (first_row >= params.rows) {
        return;
    }
    let lane = local % THREADS;
    let segment = local - lane;
    let row = first_row + local / THREADS;
    let valid = row < params.rows;
    let base = row * params.cols;
    let n = f32(params.cols);

    var s = 0.0;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            if (RESIDUAL) {
                var t = h[base + j] + bias[j];
                if (HAS_DROP) {
                    t *= dropout_mask(params.seed, base + j, params.keep, params.drop_scale);
                }
                x[base + j] = res[base + j] + t;
            }
            s += x[base + j];
        }
    }
    scratch[local] = s;
    let mean = row_sum(local, lane, segment) / n;

    var q = 0.0;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            let d = x[base + j] - mean;
            q += d * d;
        }
    }
    scratch[local] = q;
    let rstd = 1.0 / sqrt(row_sum(local, lane, segment) / n + params.epsilon);

    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            y[base + j] = (x[base + j] - mean) * rstd * gamma[j] + beta[j];
        }
        if (lane == 0u) {
            stats[2u * row] = mean;
            stats[2u * row + 1u] = rstd;
        }
    }
}
