// The packed projection's element-wise end. Forward (SPLIT false): the bias and each part's
// scaled extra (a LoRA adapter's low-rank product, `scale * dropout(x) A B`, [rows, d_out])
// added in place to the packed matrix product y ([rows, 3 * d_out]). Backward (SPLIT true): the
// extras' gradients cut from the packed upstream gradient y, each times its scale. One thread
// per packed value (a T of them); a part is in use where its bit of `params.extras` is set,
// else its binding is a four-value stand-in that is never touched.
//
// Template items (filled by crates/burnish-core/src/kernels/qkv.rs):
//   uniform         the `QkvUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   t               f32, or vec4<f32> where d_out is a multiple of 4 (`params.units` is d_out
//                   in values of T, and every index counts Ts)
//   split           false: forward (y += bias + extras); true: backward (extras' gradients)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
alias T = {{ t }};
const SPLIT: bool = {{ split }};

// Only read, except y forward and the extras backward, but declared read_write: CubeCL's memory
// pool may place two tensors in one wgpu buffer, and one dispatch cannot bind a buffer both
// read-only and writable.
@group(0) @binding(0) var<storage, read_write> y: array<T>;
@group(0) @binding(1) var<storage, read_write> packed_b: array<T>;
@group(0) @binding(2) var<storage, read_write> e0: array<T>;
@group(0) @binding(3) var<storage, read_write> e1: array<T>;
@group(0) @binding(4) var<storage, read_write> e2: array<T>;
@group(0) @binding(5) var<uniform> params: QkvUniform;

fn scale(p: u32) -> f32 {
    switch p {
        case 0u: { return params.s0; }
        case 1u: { return params.s1; }
        default: { return params.s2; }
    }
}

fn extra(p: u32, j: u32) -> T {
    switch p {
        case 0u: { return e0[j]; }
        case 1u: { return e1[j]; }
        default: { return e2[j]; }
    }
}

fn set_extra(p: u32, j: u32, v: T) {
    switch p {
        case 0u: { e0[j] = v; }
        case 1u: { e1[j] = v; }
        default: { e2[j] = v; }
    }
}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let width = 3u * params.units;
    if (i >= params.rows * width) {
        return;
    }
    let row = i / width;
    let col = i % width;
    let p = col / params.units;
    let j = row * params.units + col % params.units;
    let used = ((params.extras >> p) & 1u) == 1u;
    if (SPLIT) {
        if (used) {
            set_extra(p, j, scale(p) * y[i]);
        }
    } else {
        var v = y[i] + packed_b[col];
        if (used) {
            v += scale(p) * extra(p, j);
        }
        y[i] = v;
    }
}
