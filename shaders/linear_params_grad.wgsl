// A small dense layer (linear.wgsl), backward pass for the weights and bias:
//   dw[k, j] = sum_r x[r, k] dz[r, j]      db[j] = sum_r dz[r, j]
// with dz as in linear_input_grad.wgsl. Each thread computes a 4 x 4 block of dw (inputs k0..,
// columns j0..) as linear.wgsl does its outputs; the threads after those take four bias values
// each. burn's composed backward is ReLU's compare and mask fill, a tiled matrix product and a
// reduction for the bias.
//
// Template items (filled by crates/burnish-core/src/kernels/linear.rs): as linear.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const RELU: bool = {{ relu }};

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(4) var<storage, read_write> db: array<f32>;
@group(0) @binding(5) var<uniform> params: LinearUniform;

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
    let col_blocks = (params.d_out + 3u) / 4u;
    let weight_blocks = (params.d_in + 3u) / 4u * col_blocks;
    if (i >= weight_blocks + col_blocks) {
        return;
    }
    let bias = i >= weight_blocks;
    let block = select(i, i - weight_blocks, bias);
    let k0 = select(block / col_blocks * 4u, 0u, bias);
    let j0 = block % col_blocks * 4u;
    let ins = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.d_in - 1u));
    let cols = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.d_out - 1u));
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var r = 0u; r < params.rows; r++) {
        let out_row = r * params.d_out;
        let g = vec4<f32>(
            dz(out_row + cols.x), dz(out_row + cols.y), dz(out_row + cols.z), dz(out_row + cols.w));
        let in_row = r * params.d_in;
        // A bias block's "input" is 1 (only its first row is written).
        let xv = select(
            vec4<f32>(x[in_row + ins.x], x[in_row + ins.y], x[in_row + ins.z], x[in_row + ins.w]),
            vec4<f32>(1.0),
            bias,
        );
        acc[0] += xv.x * g;
        acc[1] += xv.y * g;
        acc[2] += xv.z * g;
        acc[3] += xv.w * g;
    }
    if (bias) {
        for (var c = 0u; c < 4u; c++) {
            if (j0 + c < params.d_out) {
                db[j0 + c] = acc[0][c];
            }
        }
        return;
    }
    for (var a = 0u; a < 4u; a++) {
        let k = k0 + a;
        for (var c = 0u; c < 4u; c++) {
            if (k < params.d_in && j0 + c < params.d_out) {
                dw[k * params.d_out + j0 + c] = acc[a][c];
            }
        }
    }
}
