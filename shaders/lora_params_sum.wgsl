// The second pass of lora_params_grad.wgsl where the rows came in several chunks: each factor
// value's partial sums added up in chunk order (crates/burnish-core/src/kernels/lora.rs).
//
// Template items (filled by crates/burnish-core/src/kernels/lora.rs):
//   uniform         the `LoraGradUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> da: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
@group(0) @binding(3) var<uniform> params: LoraGradUniform;

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let o = (group.y * groups.x + group.x) * WORKGROUP + local;
    let a_len = params.d_in * params.rank;
    let total = a_len + params.rank * params.d_out;
    if (o >= total) {
        return;
    }
    var acc = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        acc += partials[c * total + o];
    }
    if (o < a_len) {
        da[o] = acc;
    } else {
        db[o - a_len] = acc;
    }
}
