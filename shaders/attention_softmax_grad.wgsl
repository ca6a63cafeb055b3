// Attention softmax, backward pass for the raw scores. With p the probabilities the forward
// pass wrote and dp their gradient, each row's gradient is
//   dscores[r, j] = scale * p[r, j] * (dp[r, j] - sum_k(dp[r, k] * p[r, k]))
// (the mask is a constant and has none). Rows are shared among THREADS threads as in the
// forward pass. burn's composed backward is about ten kernels (the divide's two sides, the sum's
// broadcast, exp, subtract, the scale).
//
// Template items (filled by crates/burnish-core/src/kernels/attention.rs):
//   uniform         the `AttentionUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size
//   row_reduce      row_max and row_sum over a row's threads (shaders/row_reduce.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;

@group(0) @binding(0) var<storage, read_write> probs: array<f32>;
@group(0) @binding(1) var<storage, read_write> dprobs: array<f32>;
@group(0) @binding(2) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(3) var<uniform> params: AttentionUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ row_reduce }}

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

    var d = 0.0;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            d += dprobs[base + j] * probs[base + j];
        }
    }
    scratch[local] = d;
    let dot = row_sum(local, lane, segment);

    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            dscores[base + j] = params.scale * probs[base + j] * (dprobs[base + j] - dot);
        }
    }
}
