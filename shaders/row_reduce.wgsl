// Row reductions shared by the kernels that give each row of a [rows, cols] tensor THREADS
// threads (layer_norm.wgsl, attention_softmax.wgsl, attention_softmax_grad.wgsl,
// cross_entropy.wgsl): pasted in as the `row_reduce` template item by
// crates/burnish-core/src/kernels/registry.rs. The kernel declares WORKGROUP, THREADS and
//   var<workgroup> scratch: array<f32, WORKGROUP>;
// each thread puts its partial value in scratch[local] and then calls one of these; `lane` is
// its index within the row's threads and `segment` the row's first slot. Every thread of the
// workgroup must call (they hold barriers), and each gets the row's result.

// The maximum of the row's slots.
fn row_max(local: u32, lane: u32, segment: u32) -> f32 {
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            scratch[local] = max(scratch[local], scratch[local + stride]);
        }
        workgroupBarrier();
    }
    let total = scratch[segment];
    workgroupBarrier();
    return total;
}

// The sum of the row's slots.
fn row_sum(local: u32, lane: u32, segment: u32) -> f32 {
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            scratch[local] += scratch[local + stride];
        }
        workgroupBarrier();
    }
    let total = scratch[segment];
    workgroupBarrier();
    return total;
}
