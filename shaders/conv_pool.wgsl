// A convolution block, forward pass: 3x3 convolution (stride 1, zero padding 1) with bias, ReLU,
// then 2x2 max pooling (stride 2, the last row or column of an odd size dropped), in one
// dispatch, one thread per pooled position in four output channels:
//   z[b, o, y, x]   = bias[o] + sum_{c, ky, kx} w[o, c, ky, kx] x[b, c, y + ky - 1, x + kx - 1]
//   out[b, o, i, j] = max(0, max_{dy, dx in 0..2} z[b, o, 2i + dy, 2j + dx])
//   arg[b, o, i, j] = 2 dy + dx of the first largest z in the window (row-major), or 4 when
//                     that largest z is <= 0 (ReLU passes no gradient)
// arg is what the backward kernels (conv_pool_input_grad.wgsl, conv_pool_params_grad.wgsl)
// route the gradient by; the pre-activations z are never stored. burn's composed block is five
// to six launches forward (the convolution, ReLU's compare and mask fill, layout copies, the
// pooling with its indices) with two [batch, out, height, width] intermediates.
//
// Each thread reads, per input channel, the 4x4 input patch under its 2x2 window (rows
// 2i - 1 ..= 2i + 2, zero outside the image) as four vec4 rows, and forms the window's four
// pre-activations in four output channels as dot products with the kernels' rows.
//
// Template items (filled by crates/burnish-core/src/kernels/conv_pool.rs):
//   uniform         the `ConvPoolUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

// Only read, except out and arg, but declared read_write: CubeCL's memory pool may place two
// tensors in one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> arg: array<f32>;
@group(0) @binding(5) var<uniform> params: ConvPoolUniform;

// The input value at (iy, ix) of the plane starting at `plane`, 0 outside the image: the load is
// clamped and the value selected, so neighbouring threads never diverge (CPU renderers run them
// as SIMD lanes).
fn input_at(plane: u32, iy: i32, ix: i32) -> f32 {
    let rows = i32(params.height);
    let cols = i32(params.width);
    let inside = (iy >= 0) & (iy < rows) & (ix >= 0) & (ix < cols);
    let v = x[plane + u32(clamp(iy, 0, rows - 1) * cols + clamp(ix, 0, cols - 1))];
    return select(0.0, v, inside);
}

// Columns ix0 ..= ix0 + 3 of row iy.
fn patch_row(plane: u32, iy: i32, ix0: i32) -> vec4<f32> {
    return vec4<f32>(
        input_at(plane, iy, ix0),
        input_at(plane, iy, ix0 + 1),
        input_at(plane, iy, ix0 + 2),
        input_at(plane, iy, ix0 + 3),
    );
}

// The four pre-activations of a 2x2 window ((0, 0), (0, 1), (1, 0), (1, 1)) that one input
// channel's 4x4 patch (rows p0 ..= p3) adds through the 3x3 kernel starting at w[k].
fn window(p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>, k: u32) -> vec4<f32> {
    let w0 = vec3<f32>(w[k], w[k + 1u], w[k + 2u]);
    let w1 = vec3<f32>(w[k + 3u], w[k + 4u], w[k + 5u]);
    let w2 = vec3<f32>(w[k + 6u], w[k + 7u], w[k + 8u]);
    return vec4<f32>(
        dot(p0.xyz, w0) + dot(p1.xyz, w1) + dot(p2.xyz, w2),
        dot(p0.yzw, w0) + dot(p1.yzw, w1) + dot(p2.yzw, w2),
        dot(p1.xyz, w0) + dot(p2.xyz, w1) + dot(p3.xyz, w2),
        dot(p1.yzw, w0) + dot(p2.yzw, w1) + dot(p3.yzw, w2),
    );
}

// Max-pool and ReLU one window's pre-activations z into out[at] and arg[at]: the first largest,
// without branches.
fn pool(z: vec4<f32>, at: u32) {
    var best = z.x;
    var which = 0.0;
    which = select(which, 1.0, z.y > best);
    best = max(best, z.y);
    which = select(which, 2.0, z.z > best);
    best = max(best, z.z);
    which = select(which, 3.0, z.w > best);
    best = max(best, z.w);
    out[at] = max(best, 0.0);
    arg[at] = select(4.0, which, best > 0.0);
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Two-dimensional grid: there may be more than 65,535 workgroups. A thread takes one window
    // position in four output channels (o0 ..= o0 + 3, the last block's clamped to the last
    // channel and written only where they exist), so each input patch is read once for four.
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let windows = params.pooled_h * params.pooled_w;
    let blocks = (params.c_out + 3u) / 4u;
    if (i >= params.batch * blocks * windows) {
        return;
    }
    let window_at = i % windows;
    let pj = window_at % params.pooled_w;
    let pi = window_at / params.pooled_w;
    let o0 = (i / windows) % blocks * 4u;
    let b = i / (windows * blocks);
    let iy0 = i32(2u * pi) - 1;
    let ix0 = i32(2u * pj) - 1;
    let plane_size = params.height * params.width;
    let last = params.c_out - 1u;
    let os = min(vec4<u32>(o0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));

    var z0 = vec4<f32>(bias[os.x]);
    var z1 = vec4<f32>(bias[os.y]);
    var z2 = vec4<f32>(bias[os.z]);
    var z3 = vec4<f32>(bias[os.w]);
    let stride = params.c_in * 9u;
    for (var c = 0u; c < params.c_in; c++) {
        let plane = (b * params.c_in + c) * plane_size;
        let p0 = patch_row(plane, iy0, ix0);
        let p1 = patch_row(plane, iy0 + 1, ix0);
        let p2 = patch_row(plane, iy0 + 2, ix0);
        let p3 = patch_row(plane, iy0 + 3, ix0);
        let k = c * 9u;
        z0 += window(p0, p1, p2, p3, os.x * stride + k);
        z1 += window(p0, p1, p2, p3, os.y * stride + k);
        z2 += window(p0, p1, p2, p3, os.z * stride + k);
        z3 += window(p0, p1, p2, p3, os.w * stride + k);
    }
    let first = (b * params.c_out + o0) * windows + window_at;
    pool(z0, first);
    if (o0 + 1u <= last) {
        pool(z1, first + windows);
    }
    if (o0 + 2u <= last) {
        pool(z2, first + 2u * windows);
    }
    if (o0 + 3u <= last) {
        pool(z3, first + 3u * windows);
    }
}
