// Gradient clipping by the global norm, second pass: one workgroup adds every partial sum of
// squares (sum_squares.wgsl) and writes
//   norm = sqrt(total),   factor = min(1, max_norm / (norm + 1e-6))
// (PyTorch's clip_grad_norm_ factor, as train/optimizer.rs's composed path computes it), both
// left on the device, each a one-value buffer of its own (no slicing launches after): the
// optimizer's kernels scale the gradients by the factor, the norm is there to report.
//
// Template items (filled by crates/burnish-core/src/kernels/clip.rs):
//   uniform         the `ClipUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   workgroup_sum   the sum over the workgroup's threads (shaders/workgroup_sum.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> factor_out: array<f32>;
@group(0) @binding(3) var<uniform> params: ClipUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ workgroup_sum }}

@compute @workgroup_size({{ workgroup_size }})
fn main(@builtin(local_invocation_index) local: u32) {
    var s = 0.0;
    for (var i = local; i < params.count; i += WORKGROUP) {
        s += partials[i];
    }
    let total = workgroup_sum(local, s);
    if (local == 0u) {
        let norm = sqrt(total);
        norm_out[0] = norm;
        factor_out[0] = min(params.max_norm / (norm + 1e-6), 1.0);
    }
}
