// GELU, forward pass, one thread per value:
//   exact (TANH false):  y = x Φ(x) = x (1 + erf(x / √2)) / 2           (transformers' `gelu`)
//   TANH true:           y = x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2  (`gelu_new`)
// WGSL has no erf: it is Abramowitz and Stegun 7.1.26 (error below 1.5e-7), the polynomial
// CubeCL's own erf uses. tanh's argument is clamped to ±TANH_LIMIT as model/activation.rs does
// (SwiftShader's tanh is NaN from |x| = 89 on). burn's composed exact GELU is five element-wise
// kernels, the tanh form ten, each a pass over the [rows, intermediate] activations.
//
// Template items (filled by crates/burnish-core/src/kernels/gelu.rs):
//   uniform         the `GeluUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   tanh            true for the tanh approximation, false for the exact form
//   tanh_limit      the clamp of tanh's argument (model::activation::TANH_LIMIT)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const TANH: bool = {{ tanh }};
const TANH_LIMIT: f32 = {{ tanh_limit }};
// √(2/π)
const SCALE: f32 = 0.7978845608028654;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: GeluUniform;

fn erf(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.0614054 * t - 1.453152) * t + 1.4214137) * t - 0.28449674) * t + 0.2548296) * t;
    let e = 1.0 - poly * exp(-a * a);
    return select(e, -e, v < 0.0);
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Two-dimensional grid: there may be more than 65,535 workgroups.
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.len) {
        return;
    }
    let v = x[i];
    if (TANH) {
        let inner = clamp(SCALE * (v + 0.044715 * v * v * v), -TANH_LIMIT, TANH_LIMIT);
        y[i] = v * (tanh(inner) + 1.0) * 0.5;
    } else {
        y[i] = v * (erf(v * 0.7071067811865476) + 1.0) * 0.5;
    }
}
