// A convolution block (conv_pool.wgsl), backward pass for the input, one thread per input
// position in four channels:
//   dx[b, c, y, x] = sum_{o, ky, kx} dz[b, o, y - ky + 1, x - kx + 1] w[o, c, ky, kx]
// where dz, the gradient of the pre-activations, is the pooled output's gradient g at the one
// position of each 2x2 window that conv_pool.wgsl's `arg` names, and 0 elsewhere (and in
// windows where ReLU cut it). It is never formed: for each output channel the thread visits
// the (at most 2x2) pooling windows whose positions lie within one step of (y, x), and adds
// g w for a window whose chosen position does. burn's composed backward is about eight launches
// (pooling's and ReLU's backward, layout copies, a transposed convolution) over dense
// [batch, out, height, width] gradients.
//
// Template items (filled by crates/burnish-core/src/kernels/conv_pool.rs):
//   uniform         the `ConvPoolUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> arg: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> params: ConvPoolUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // A thread takes one position in four input channels (c0 ..= c0 + 3, the last block's
    // clamped to the last channel and written only where they exist): each window's gradient
    // and position are read once for the four.
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let plane_size = params.height * params.width;
    let blocks = (params.c_in + 3u) / 4u;
    if (i >= params.batch * blocks * plane_size) {
        return;
    }
    let x = i32(i % params.width);
    let y = i32((i / params.width) % params.height);
    let c0 = (i / plane_size) % blocks * 4u;
    let b = i / (plane_size * blocks);
    let cs = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.c_in - 1u)) * 9u;
    // The windows whose positions (rows 2 r, 2 r + 1) can be within one row of y: rows
    // floor((y - 1) / 2) and the next; likewise columns. Always these four (order 00, 01, 10,
    // 11), each masked when outside the pooled grid, its position not next to (y, x) or its
    // gradient cut by ReLU: loads clamped and terms selected, so neighbouring threads (SIMD
    // lanes on CPU renderers) never diverge.
    let r0 = (y - 1) >> 1u;
    let s0 = (x - 1) >> 1u;
    let windows = params.pooled_h * params.pooled_w;
    let ph = i32(params.pooled_h);
    let pw = i32(params.pooled_w);
    let ra = clamp(r0, 0, ph - 1);
    let rb = clamp(r0 + 1, 0, ph - 1);
    let sa = clamp(s0, 0, pw - 1);
    let sb = clamp(s0 + 1, 0, pw - 1);
    let offset = vec4<u32>(
        u32(ra * pw + sa), u32(ra * pw + sb), u32(rb * pw + sa), u32(rb * pw + sb));
    let row_ok = vec2<bool>((r0 >= 0) & (r0 < ph), (r0 + 1 >= 0) & (r0 + 1 < ph));
    let col_ok = vec2<bool>((s0 >= 0) & (s0 < pw), (s0 + 1 >= 0) & (s0 + 1 < pw));
    let on_grid = vec4<bool>(
        row_ok.x & col_ok.x, row_ok.x & col_ok.y, row_ok.y & col_ok.x, row_ok.y & col_ok.y);
    // The tap a window's position 0 would be; a position `at` is at / 2 rows and at % 2
    // columns further on, so its tap is that much less.
    let ky0 = vec4<i32>(y + 1 - 2 * r0, y + 1 - 2 * r0, y - 1 - 2 * r0, y - 1 - 2 * r0);
    let kx0 = vec4<i32>(x + 1 - 2 * s0, x - 1 - 2 * s0, x + 1 - 2 * s0, x - 1 - 2 * s0);

    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < params.c_out; o++) {
        let cells = vec4<u32>((b * params.c_out + o) * windows) + offset;
        let at = vec4<i32>(
            i32(arg[cells.x]), i32(arg[cells.y]), i32(arg[cells.z]), i32(arg[cells.w]));
        let ky = ky0 - (at >> vec4<u32>(1u));
        let kx = kx0 - (at & vec4<i32>(1));
        let use_it = on_grid & (at < vec4<i32>(4)) & (ky >= vec4<i32>(0)) & (ky < vec4<i32>(3))
            & (kx >= vec4<i32>(0)) & (kx < vec4<i32>(3));
        let grad = select(
            vec4<f32>(0.0), vec4<f32>(g[cells.x], g[cells.y], g[cells.z], g[cells.w]), use_it);
        let taps = vec4<u32>(clamp(3 * ky + kx, vec4<i32>(0), vec4<i32>(8)));
        let ws = vec4<u32>(o * params.c_in * 9u) + cs;
        // Window by window, the four channels' weights at its tap.
        acc += grad.x * vec4<f32>(w[ws.x + taps.x], w[ws.y + taps.x], w[ws.z + taps.x], w[ws.w + taps.x]);
        acc += grad.y * vec4<f32>(w[ws.x + taps.y], w[ws.y + taps.y], w[ws.z + taps.y], w[ws.w + taps.y]);
        acc += grad.z * vec4<f32>(w[ws.x + taps.z], w[ws.y + taps.z], w[ws.z + taps.z], w[ws.w + taps.z]);
        acc += grad.w * vec4<f32>(w[ws.x + taps.w], w[ws.y + taps.w], w[ws.z + taps.w], w[ws.w + taps.w]);
    }
    let first = (b * params.c_in + c0) * plane_size + u32(y) * params.width + u32(x);
    for (var q = 0u; q < 4u; q++) {
        if (c0 + q < params.c_in) {
            dx[first + q * plane_size] = acc[q];
        }
    }
}
