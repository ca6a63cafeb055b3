// GELU, forward pass, one thread per value:
//   exact (TANH false):  y = x Φ(x) = x (1 + erf(x / √2)) / 2           (transformers' `gelu`)
//   TANH true:           y = x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2  (`gelu_new`)
// erf (WGSL has none) and the tanh form's argument come from gelu_math.wgsl. tanh's argument is
// clamped to ±TANH_LIMIT as model/activation.rs does (SwiftShader's tanh is NaN from |x| = 89
// on). burn's composed exact GELU is five element-wise kernels, the tanh form ten, each a pass
// over the [rows, intermediate] activations.
//
// Template items (filled by crates/burnish-core/src/kernels/gelu.rs):
//   uniform         the `GeluUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   tanh            true for the tanh approximation, false for the exact form
//   tanh_limit      the clamp of tanh's argument (model::activation::TANH_LIMIT)
//   gelu_math       SCALE, erf and tanh_argument (shaders/gelu_math.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const TANH: bool = {{ tanh }};
const TANH_LIMIT: f32 = {{ tanh_limit }};

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: GeluUniform;

{{ gelu_math }}

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
        let inner = clamp(tanh_argument(v), -TANH_LIMIT, TANH_LIMIT);
        y[i] = v * (tanh(inner) + 1.0) * 0.5;
    } else {
        y[i] = v * (erf(v * 0.7071067811865476) + 1.0) * 0.5;
    }
}
