// Attention softmax, forward pass: for each row of raw scores `q . k` ([rows, cols], row-major,
// rows = batch * heads * queries, cols = keys)
//   p[r, j] = softmax_j(scores[r, j] * scale + bias[b, i, j])
// with the additive mask `bias` broadcast over heads (and over the batch or the queries where
// its stride is 0: BERT's padding mask is [batch, 1, 1, keys], the GPT's causal one
// [1, 1, queries, keys]). As in layer_norm.wgsl, each row is shared by THREADS threads (a power
// of two), WORKGROUP / THREADS rows a workgroup; the row's maximum, then the sum of
// exponentials, are reduced in workgroup memory and the row is written in a third pass.
// burn's composed path is five kernels for the softmax (max, subtract, exp, sum, divide) plus
// one each for the scale and the mask, with four [rows, cols] intermediates.
//
// Template items (filled by crates/burnish-core/src/kernels/attention.rs):
//   uniform         the `AttentionUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size
//   row_reduce      row_max and row_sum over a row's threads (shaders/row_reduce.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;

// Only read, except probs, but declared read_write: CubeCL's memory pool may place two tensors
// in one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> scores: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<uniform> params: AttentionUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ row_reduce }}

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
    // row = (b * heads + h) * queries + i
    let mask = (row / params.batch_rows) * params.bias_batch_stride
        + (row % params.queries) * params.bias_query_stride;

    // The lowest finite f32, in hex as in cross_entropy.wgsl (Chromium's compiler rejects
    // -3.4028235e38, just past it).
    var m = -0x1.fffffep+127f;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            m = max(m, scores[base + j] * params.scale + bias[mask + j]);
        }
    }
    scratch[local] = m;
    let top = row_max(local, lane, segment);

    var s = 0.0;
    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            s += exp(scores[base + j] * params.scale + bias[mask + j] - top);
        }
    }
    scratch[local] = s;
    let total = row_sum(local, lane, segment);

    if (valid) {
        for (var j = lane; j < params.cols; j += THREADS) {
            probs[base + j] = exp(scores[base + j] * params.scale + bias[mask + j] - top) / total;
        }
    }
}
