// A convolution block (conv_pool.wgsl), backward pass for the weights and bias:
//   dw[o, c, ky, kx] = sum_{b, windows} g[b, o, window] x[b, c, y + ky - 1, x + kx - 1]
//   dbias[o]         = sum_{b, windows} g[b, o, window]
// over the windows whose `arg` is below 4, (y, x) being the position it names: the
// pre-activations' gradient is non-zero only there, so each sum has batch x windows terms, a
// quarter of the dense convolution's. Each (o, c) pair is a row whose batch x windows terms are
// split among THREADS threads (a power of two, so each takes about 32); a term reads its
// window's gradient and position once and the 3x3 input patch around that position, adding to
// the pair's nine taps (and, for c = 0, the bias). The threads' partial sums are then added in
// workgroup memory, all ten together: ten values a thread, so the kernel runs small workgroups
// (64 threads; WebGPU zero-fills workgroup memory as every workgroup starts, which SwiftShader
// pays for in proportion to the memory times the threads). Loads are clamped and terms selected rather than branched
// around, so neighbouring threads (SIMD lanes on CPU renderers) never diverge. burn's composed
// backward is a convolution for the weights, a reduction for the bias and layout copies around
// them, over dense gradients.
//
// Template items (filled by crates/burnish-core/src/kernels/conv_pool.rs):
//   uniform         the `ConvPoolUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup, a power of two
//   threads         threads per row, a power of two dividing workgroup_size

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const THREADS: u32 = {{ threads }}u;
// Nine taps and the bias.
const SUMS: u32 = 10u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> arg: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(5) var<uniform> params: ConvPoolUniform;

// Sum v of thread t at scratch[v * WORKGROUP + t].
var<workgroup> scratch: array<f32, SUMS * WORKGROUP>;

fn input_at(plane: u32, iy: i32, ix: i32) -> f32 {
    let rows = i32(params.height);
    let cols = i32(params.width);
    let inside = (iy >= 0) & (iy < rows) & (ix >= 0) & (ix < cols);
    let v = x[plane + u32(clamp(iy, 0, rows - 1) * cols + clamp(ix, 0, cols - 1))];
    return select(0.0, v, inside);
}

// Columns x0 - 1 ..= x0 + 1 of row iy.
fn patch_row(plane: u32, iy: i32, x0: i32) -> vec3<f32> {
    return vec3<f32>(
        input_at(plane, iy, x0 - 1),
        input_at(plane, iy, x0),
        input_at(plane, iy, x0 + 1),
    );
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let rows = params.c_out * params.c_in;
    // A workgroup past the last row leaves as a whole (uniformly); inside the last one, threads
    // of rows past the end take part in the barriers but read and write nothing.
    let first_row = (group.y * groups.x + group.x) * (WORKGROUP / THREADS);
    if (first_row >= rows) {
        return;
    }
    let lane = local % THREADS;
    let row = first_row + local / THREADS;
    let valid = row < rows;
    let o = min(row, rows - 1u) / params.c_in;
    let c = min(row, rows - 1u) % params.c_in;
    let windows = params.pooled_h * params.pooled_w;
    let terms = select(0u, params.batch * windows, valid);

    // The taps' sums by kernel row.
    var t0 = vec3<f32>(0.0);
    var t1 = vec3<f32>(0.0);
    var t2 = vec3<f32>(0.0);
    var bias = 0.0;
    for (var t = lane; t < terms; t += THREADS) {
        let b = t / windows;
        let window = t % windows;
        let cell = (b * params.c_out + o) * windows + window;
        let at = u32(arg[cell]);
        let grad = select(0.0, g[cell], at < 4u);
        let a = min(at, 3u);
        let y = i32(2u * (window / params.pooled_w) + a / 2u);
        let x0 = i32(2u * (window % params.pooled_w) + a % 2u);
        let plane = (b * params.c_in + c) * params.height * params.width;
        t0 += grad * patch_row(plane, y - 1, x0);
        t1 += grad * patch_row(plane, y, x0);
        t2 += grad * patch_row(plane, y + 1, x0);
        bias += grad;
    }
    let sums = array<f32, SUMS>(t0.x, t0.y, t0.z, t1.x, t1.y, t1.z, t2.x, t2.y, t2.z, bias);
    for (var v = 0u; v < SUMS; v++) {
        scratch[v * WORKGROUP + local] = sums[v];
    }
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if (lane < stride) {
            for (var v = 0u; v < SUMS; v++) {
                scratch[v * WORKGROUP + local] += scratch[v * WORKGROUP + local + stride];
            }
        }
    }
    workgroupBarrier();
    if (lane == 0u && valid) {
        for (var k = 0u; k < 9u; k++) {
            dw[row * 9u + k] = scratch[k * WORKGROUP + local];
        }
        if (c == 0u) {
            dbias[o] = scratch[9u * WORKGROUP + local];
        }
    }
}
