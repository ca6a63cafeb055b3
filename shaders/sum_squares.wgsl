// Gradient clipping by the global norm, first pass: the sums of squares of up to SLOTS tensors
// in one launch, in partial sums. Each tensor gets its own run of workgroups (at most 64); each
// of them strides over the tensor and writes its sum into its own place, partials[base + workgroup],
// so one partials buffer holds every tensor's sums (nothing to zero first, no atomics: WGSL has
// none for f32). clip_factor.wgsl then adds them all. burn's composed path is four kernels a
// tensor (square, sum into a zeroed output, add to the running total); one launch a tensor was
// still 103 launches a step for MiniLM.
//
// A workgroup's tensor is uniform across it, so the `switch` over the slots (WebGPU cannot index
// bindings at run time) sends whole workgroups; a thread's loop over another slot's tensor is
// masked off and runs no iterations.
//
// Template items (filled by crates/burnish-core/src/kernels/clip.rs):
//   workgroup_size  threads per workgroup, a power of two
//   workgroup_sum   the sum over the workgroup's threads (shaders/workgroup_sum.wgsl)
//   slots           tensors in the launch (bindings 0 .. slots - 1; partials at `slots`)
//   bindings        the tensors' bindings
//   sums            the per-slot loops

const WORKGROUP: u32 = {{ workgroup_size }}u;
const SLOTS: u32 = {{ slots }}u;

struct Slot {
    // The tensor's values, its first workgroup in the launch, its workgroups.
    len: u32,
    first: u32,
    groups: u32,
    pad: u32,
}

struct SumSquares {
    // This launch's first place in partials (earlier launches filled those before it).
    base: u32,
    pad_0: u32,
    pad_1: u32,
    pad_2: u32,
    slots: array<Slot, SLOTS>,
}

// Every binding read_write: CubeCL's memory pool may place several tensors in one wgpu buffer,
// and one dispatch cannot use a buffer both read-only and writable.
{{ bindings }}
@group(0) @binding({{ slots }}) var<storage, read_write> partials: array<f32>;
@group(0) @binding({{ uniform_binding }}) var<uniform> params: SumSquares;

var<workgroup> scratch: array<f32, WORKGROUP>;

{{ workgroup_sum }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // At most 64 workgroups a tensor: a one-dimensional grid.
    var slot = 0u;
    for (var k = 1u; k < SLOTS; k++) {
        if (group.x >= params.slots[k].first) {
            slot = k;
        }
    }
    let len = params.slots[slot].len;
    let stride = params.slots[slot].groups * WORKGROUP;
    let start = (group.x - params.slots[slot].first) * WORKGROUP + local;
    var s = 0.0;
{{ sums }}
    let total = workgroup_sum(local, s);
    if (local == 0u) {
        partials[params.base + group.x] = total;
    }
}
