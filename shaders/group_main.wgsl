// The entry point of the grouped optimizer kernels (adam.wgsl, sgd.wgsl), pasted into each as
// its `main` item by crates/burnish-core/src/kernels/registry.rs `grouped`, with `load` and
// `store` filled there: a `switch` over the slots that reads a thread's weight and gradient
// from its slot's bindings and writes the new weight back (WebGPU cannot index bindings at run
// time). Each slot's threads start on a workgroup boundary, so a workgroup's slot is uniform and
// the kernel's `update(i, s, w, g)` (the arithmetic, and the state at i) runs once per thread.

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Two-dimensional grid: a group may need more than 65,535 workgroups.
    let first = (group.y * groups.x + group.x) * WORKGROUP;
    // The workgroup's slot: the last whose first thread is at or before the workgroup's.
    var s = 0u;
    for (var k = 1u; k < SLOTS; k++) {
        if (first >= params.slots[k].start) {
            s = k;
        }
    }
    let slot = params.slots[s];
    let l = first + local - slot.start;
    if (l >= slot.len) {
        return;
    }
    var w = 0.0;
    var g = 0.0;
{{ load }}
    let updated = update(slot.offset + l, s, w, g);
{{ store }}
}
