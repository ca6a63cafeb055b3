// The dense layer of linear4.wgsl, backward pass for the weights and bias
// (linear_params_grad.wgsl on vec4s, d_in and d_out multiples of 4):
//   dw[k, j] = sum_r x[r, k] dz[r, j]      db[j] = sum_r dz[r, j]
// with dz as in linear4_input_grad.wgsl. Each thread computes a 4 x 4 block of dw (inputs k0..,
// columns j0..): per row one vec4 of x and one of dz, sixteen multiply-adds; the threads after
// those take a vec4 of bias values each.
//
// Template items (filled by crates/burnish-core/src/kernels/linear.rs): as linear4.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const RELU: bool = {{ relu }};

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dw: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> db: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: LinearUniform;

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
    let out_units = params.d_out / 4u;
    let weight_blocks = in_units * out_units;
    if (i >= weight_blocks + out_units) {
        return;
    }
    if (i >= weight_blocks) {
        let jb = i - weight_blocks;
        var sum = vec4<f32>(0.0);
        for (var r = 0u; r < params.rows; r++) {
            sum += dz(r * out_units + jb);
        }
        db[jb] = sum;
        return;
    }
    let kb = i / out_units;
    let jb = i % out_units;
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var r = 0u; r < params.rows; r++) {
        let g = dz(r * out_units + jb);
        let xv = x[r * in_units + kb];
        acc[0] += xv.x * g;
        acc[1] += xv.y * g;
        acc[2] += xv.z * g;
        acc[3] += xv.w * g;
    }
    for (var a = 0u; a < 4u; a++) {
        dw[(kb * 4u + a) * out_units + jb] = acc[a];
    }
}
