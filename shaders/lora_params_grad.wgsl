// A LoRA adapter's factors' gradients (crates/burnish-core/src/kernels/lora.rs), sums over rows:
//   dA[a, j] = sum_r dropout(x)[r, a] dt[r, j]          dB[j, c] = scale sum_r t[r, j] g[r, c]
// with t = dropout(x) A the forward pass's down product (kept), g the upstream gradient and dt
// its product with B^T (lora.wgsl). One thread per factor value and chunk of `chunk_rows` rows:
// a single chunk writes dA and dB itself; several write partial sums side by side (`partials`,
// [chunks, d_in r + r d_out]) and lora_params_sum.wgsl adds them up, so that a long batch
// (32 x 128 tokens) still spreads over enough threads for a GPU. No workgroup memory: WebGPU
// zero-fills it for every workgroup, which CPU renderers pay for.
//
// Template items (filled by crates/burnish-core/src/kernels/lora.rs):
//   uniform         the `LoraGradUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dt: array<f32>;
@group(0) @binding(2) var<storage, read_write> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> da: array<f32>;
@group(0) @binding(5) var<storage, read_write> db: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<uniform> params: LoraGradUniform;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let i = (group.y * groups.x + group.x) * WORKGROUP + local;
    let a_len = params.d_in * params.rank;
    let total = a_len + params.rank * params.d_out;
    if (i >= total * params.chunks) {
        return;
    }
    let chunk = i / total;
    let o = i % total;
    let first = chunk * params.chunk_rows;
    let end = min(first + params.chunk_rows, params.rows);
    var acc = 0.0;
    if (o < a_len) {
        let a = o / params.rank;
        let j = o % params.rank;
        for (var r = first; r < end; r++) {
            let at = r * params.d_in + a;
            var xv = x[at];
            if (params.masked == 1u) {
                xv *= dropout_mask(params.seed, at, params.keep, params.drop_scale);
            }
            acc += xv * dt[r * params.rank + j];
        }
    } else {
        let j = (o - a_len) / params.d_out;
        let c = (o - a_len) % params.d_out;
        for (var r = first; r < end; r++) {
            acc += t[r * params.rank + j] * g[r * params.d_out + c];
        }
        acc *= params.factor;
    }
    if (params.chunks > 1u) {
        partials[i] = acc;
    } else if (o < a_len) {
        da[o] = acc;
    } else {
        db[o - a_len] = acc;
    }
}
