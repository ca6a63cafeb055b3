// A small dense layer (linear.wgsl), backward pass for the input:
//   dx[r, k] = sum_j dz[r, j] w[k, j],   dz = dy, or with RELU dy where y > 0 and 0 elsewhere
// (ReLU's gradient read from the kept output, as burn's ReLU does). Each thread computes a
// 4 x 4 block of dx (rows r0.., inputs k0..) as linear.wgsl does its outputs. burn's composed
// backward is ReLU's compare and mask fill and a tiled matrix product.
//
// Template items (filled by crates/burnish-core/src/kernels/linear.rs): as linear.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const RELU: bool = {{ relu }};

@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> params: LinearUniform;

// The upstream gradient at [r, j], through ReLU's mask when RELU is set.
fn dz(at: u32) -> f32 {
    if (RELU) {
        return select(0.0, dy[at], y[at] > 0.0);
    }
    return dy[at];
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let col_blocks = (params.d_in + 3u) / 4u;
    if (i >= (params.rows + 3u) / 4u * col_blocks) {
        return;
    }
    let r0 = i / col_blocks * 4u;
    let k0 = i % col_blocks * 4u;
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u))
        * params.d_out;
    let ins = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.d_in - 1u))
        * params.d_out;
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var j = 0u; j < params.d_out; j++) {
        let wv = vec4<f32>(w[ins.x + j], w[ins.y + j], w[ins.z + j], w[ins.w + j]);
        acc[0] += dz(rows.x + j) * wv;
        acc[1] += dz(rows.y + j) * wv;
        acc[2] += dz(rows.z + j) * wv;
        acc[3] += dz(rows.w + j) * wv;
    }
    for (var a = 0u; a < 4u; a++) {
        let r = r0 + a;
        for (var c = 0u; c < 4u; c++) {
            if (r < params.rows && k0 + c < params.d_in) {
                dx[r * params.d_in + k0 + c] = acc[a][c];
            }
        }
    }
}
