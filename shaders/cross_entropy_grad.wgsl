// Softmax cross-entropy, backward pass, one thread per logit:
//   d x[r, j] = g[r] w[r] (exp((x[r, j] - max[r]) - log_sum[r]) - [j == t[r]])
// where g is the gradient arriving at the per-row losses and max, log_sum the forward pass's
// row statistics (so softmax is recomputed in one exp, as log-softmax's backward does, with no
// [rows, classes] tensor kept from the forward pass but the logits themselves). Rows of weight 0 get 0. burn's composed backward runs one
// kernel or more per forward operation (broadcast sums, the exp product, the gather's scatter).
//
// Template items (filled by crates/burnish-core/src/kernels/cross_entropy.rs):
//   uniform         the `CrossEntropyUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   index           the element type of `targets` (i32 or u32)
//   weighted        false: `weights` is not read and every row weighs 1

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const WEIGHTED: bool = {{ weighted }};

// Only read, but declared read_write (see cross_entropy.wgsl).
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> targets: array<{{ index }}>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_logits: array<f32>;
@group(0) @binding(6) var<uniform> params: CrossEntropyUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.rows * params.classes) {
        return;
    }
    let row = i / params.classes;
    let col = i32(i % params.classes);
    var w = 1.0;
    if (WEIGHTED) {
        w = weights[row];
    }
    if (w == 0.0) {
        grad_logits[i] = 0.0;
        return;
    }
    var d = exp((logits[i] - stats[2u * row]) - stats[2u * row + 1u]);
    if (col == i32(targets[row])) {
        d -= 1.0;
    }
    grad_logits[i] = (grad[row] * w) * d;
}
