// The dense layer of linear4.wgsl, backward pass for the input (linear_input_grad.wgsl on
// vec4s, d_in and d_out multiples of 4):
//   dx[r, k] = sum_j dz[r, j] w[k, j],   dz = dy, or with RELU dy where y > 0 and 0 elsewhere
// Each thread computes a 4 x 4 block of dx (rows r0.., inputs k0..): per four steps of j, four
// rows' vec4s of dz and four rows' vec4s of w, sixteen dot products; the block's rows are
// written as vec4s.
//
// Template items (filled by crates/burnish-core/src/kernels/linear.rs): as linear4.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const RELU: bool = {{ relu }};

@group(0) @binding(0) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: LinearUniform;

// The upstream gradient's vec4 at `at`, through ReLU's mask when RELU is set.
fn dz(at: u32) -> vec4<f32> {
    if (RELU) {
        return select(vec4<f32>(0.0), dy[at], y[at] > vec4<f32>(0.0));
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
    let in_units = params.d_in / 4u;
    if (i >= (params.rows + 3u) / 4u * in_units) {
        return;
    }
    let out_units = params.d_out / 4u;
    let r0 = i / in_units * 4u;
    let kb = i % in_units;
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u))
        * out_units;
    let ins = (vec4<u32>(kb * 4u) + vec4<u32>(0u, 1u, 2u, 3u)) * out_units;
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var jb = 0u; jb < out_units; jb++) {
        let w0 = w[ins.x + jb];
        let w1 = w[ins.y + jb];
        let w2 = w[ins.z + jb];
        let w3 = w[ins.w + jb];
        let ga = dz(rows.x + jb);
        let gb = dz(rows.y + jb);
        let gc = dz(rows.z + jb);
        let gd = dz(rows.w + jb);
        acc[0] += vec4<f32>(dot(ga, w0), dot(ga, w1), dot(ga, w2), dot(ga, w3));
        acc[1] += vec4<f32>(dot(gb, w0), dot(gb, w1), dot(gb, w2), dot(gb, w3));
        acc[2] += vec4<f32>(dot(gc, w0), dot(gc, w1), dot(gc, w2), dot(gc, w3));
        acc[3] += vec4<f32>(dot(gd, w0), dot(gd, w1), dot(gd, w2), dot(gd, w3));
    }
    for (var a = 0u; a < 4u; a++) {
        let r = r0 + a;
        if (r < params.rows) {
            dx[r * in_units + kb] = acc[a];
        }
    }
}
