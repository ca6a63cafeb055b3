// Softmax cross-entropy, forward pass. Each row of `logits` ([rows, classes], row-major) is
// handled by THREADS (a power of two, 1 to the workgroup size) threads, so a workgroup holds
// WORKGROUP / THREADS rows: a few classes per thread for small class counts (no barrier does any
// work then), a whole workgroup striding over a large vocabulary. The row's threads find its
// maximum and the sum of exp(x - max) (the max shift keeps exp finite for any logits), reducing
// across themselves in workgroup memory, then the row's first thread writes
//   stats[2r], stats[2r + 1] = max, log(sum)   kept for the backward pass
//   loss[r] = w[r] ((max - x[r, t[r]]) + log(sum))   0 where w[r] = 0; NaN where t[r] is not
//                                                     a class
// (max - x first, as log-softmax does: adding log(sum) to a large max first would round away
// the small difference that the loss is).
// burn's composed path (log_softmax, gather, weighting) is seven kernels or more and writes a
// [rows, classes] log-probability tensor; this reads the logits twice and writes 3 x rows floats.
//
// Template items (filled by crates/burnish-core/src/kernels/cross_entropy.rs):
//   uniform         the `CrossEntropyUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size
//   row_reduce      row_max and row_sum over a row's threads (shaders/row_reduce.wgsl)
//   index           the element type of `targets` (i32 or u32)
//   weighted        false: `weights` is not read and every row weighs 1

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;
const WEIGHTED: bool = {{ weighted }};

// Only read, but declared read_write: CubeCL's memory pool may place two tensors in one wgpu
// buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> targets: array<{{ index }}>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> params: CrossEntropyUniform;

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
    let base = row * params.classes;

    // The lowest finite f32 rather than -inf (WGSL has no infinity literal), written in hex so
    // it is exact: Chromium's compiler rejects -3.4028235e38, which is just past it.
    var m = -0x1.fffffep+127f;
    if (valid) {
        for (var j = lane; j < params.classes; j += THREADS) {
            m = max(m, logits[base + j]);
        }
    }
    scratch[local] = m;
    let top = row_max(local, lane, segment);

    var s = 0.0;
    if (valid) {
        for (var j = lane; j < params.classes; j += THREADS) {
            s += exp(logits[base + j] - top);
        }
    }
    scratch[local] = s;
    let total = row_sum(local, lane, segment);

    if (valid && lane == 0u) {
        let log_sum = log(total);
        stats[2u * row] = top;
        stats[2u * row + 1u] = log_sum;
        var w = 1.0;
        if (WEIGHTED) {
            w = weights[row];
        }
        let t = i32(targets[row]);
        if (w == 0.0) {
            loss[row] = 0.0;
        } else if (t < 0 || t >= i32(params.classes)) {
            // No class to pick: make the loss NaN (which the trainer reports) rather than
            // read another row's logit. 0 / 0 is NaN at run time; WGSL rejects it as a constant.
            loss[row] = (w - w) / (w - w);
        } else {
            loss[row] = w * ((top - logits[base + u32(t)]) + log_sum);
        }
    }
}
