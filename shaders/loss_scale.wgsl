// Dynamic loss scaling of half-precision runs, after the sums of squares of every gradient
// (sum_squares.wgsl, the first pass of global-norm clipping): one workgroup adds the partial
// sums and, from the scaler's state [scale, good steps] (the gradients were computed from the
// loss times `scale`), writes the factor the optimizer's kernels scale the gradients by:
//   finite:  factor = clip / scale, where clip = min(1, max_norm / (norm / scale + 1e-6)) when
//            clipping (else 1); a good step more, and the scale doubled (at most 2^24) after
//            `interval` good steps in a row;
//   not:     factor = 0, which the optimizer's kernels take as "skip this step" (weights and
//            moments left as they are); the scale halved (at least 1), the count reset.
// A gradient past f16's range arrives as inf (or NaN), and so does the total; a finite total
// past f32's range counts as an overflow too. Finiteness is read from the bits (an exponent of
// all ones), which no compiler may assume away as it may `x != x`.
//
// Template items (filled by crates/burnish-core/src/kernels/clip.rs):
//   uniform         the `LossScaleUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   workgroup_sum   the sum over the workgroup's threads (shaders/workgroup_sum.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const MAX_SCALE: f32 = 16777216.0;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> scaler: array<f32>;
@group(0) @binding(2) var<storage, read_write> factor_out: array<f32>;
@group(0) @binding(3) var<uniform> params: LossScaleUniform;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ workgroup_sum }}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size({{ workgroup_size }})
fn main(@builtin(local_invocation_index) local: u32) {
    var s = 0.0;
    for (var i = local; i < params.count; i += WORKGROUP) {
        s += partials[i];
    }
    let total = workgroup_sum(local, s);
    if (local == 0u) {
        let scale = scaler[0];
        if (finite(total)) {
            var clip = 1.0;
            if (params.clip != 0u) {
                let norm = sqrt(total) / scale;
                clip = min(params.max_norm / (norm + 1e-6), 1.0);
            }
            factor_out[0] = clip / scale;
            let good = scaler[1] + 1.0;
            if (good >= f32(params.interval)) {
                scaler[0] = min(scale * 2.0, MAX_SCALE);
                scaler[1] = 0.0;
            } else {
                scaler[1] = good;
            }
        } else {
            factor_out[0] = 0.0;
            scaler[0] = max(scale * 0.5, 1.0);
            scaler[1] = 0.0;
        }
    }
}
