// The sum of one value a thread over the whole workgroup, shared by the kernels that reduce
// into one value a workgroup (sum_squares.wgsl, clip_factor.wgsl, loss_scale.wgsl): pasted in
// as the `workgroup_sum` template item by crates/burnish-core/src/kernels/registry.rs. The
// kernel declares WORKGROUP (a power of two) and
//   var<workgroup> scratch: array<f32, WORKGROUP>;
// Every thread of the workgroup must call it (it holds barriers), and each gets the sum.
fn workgroup_sum(local: u32, value: f32) -> f32 {
    scratch[local] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            scratch[local] += scratch[local + stride];
        }
        workgroupBarrier();
    }
    return scratch[0];
}
