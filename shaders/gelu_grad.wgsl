// GELU, backward pass, one thread per value: dx = dy * GELU'(x), with
//   exact:  GELU'(x) = Φ(x) + x φ(x),   φ(x) = exp(-x² / 2) / √(2π)
//   tanh:   GELU'(x) = (1 + t) / 2 + x (1 - t²) √(2/π) (1 + 3 · 0.044715 x²) / 2,
//           t = tanh(u), u = √(2/π) (x + 0.044715 x³); the second term is 0 where u is clamped
//           (as the composed clamp's gradient is), which also keeps x² from overflowing into it
// (erf and the clamp as in gelu.wgsl). burn's composed backward is about a dozen kernels for the
// exact form and twenty for the tanh form.
//
// Template items (filled by crates/burnish-core/src/kernels/gelu.rs): as gelu.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const TANH: bool = {{ tanh }};
const TANH_LIMIT: f32 = {{ tanh_limit }};

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: GeluUniform;

{{ gelu_math }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (i >= params.len) {
        return;
    }
    let v = x[i];
    var slope = 0.0;
    if (TANH) {
        let u = tanh_argument(v);
        let t = tanh(clamp(u, -TANH_LIMIT, TANH_LIMIT));
        var inner = 0.0;
        if (abs(u) < TANH_LIMIT) {
            inner = (1.0 - t * t) * SCALE * (1.0 + 0.134145 * v * v);
        }
        slope = (1.0 + t) * 0.5 + v * inner * 0.5;
    } else {
        let pdf = exp(-0.5 * v * v) * 0.3989422804014327;
        slope = (erf(v * 0.7071067811865476) + 1.0) * 0.5 + v * pdf;
    }
    dx[i] = dy[i] * slope;
}
