// Snippet (pasted into kernels as the `dropout_mask` item; WGSL has no includes): the value of a
// dropout mask at flat index `index`, `scale` (1 / keep) with probability `keep`, else 0, from a
// counter-based hash of the index and the mask's seed. `DropMask::value` in
// crates/burnish-core/src/model/dropout.rs computes the very same bits on the host (the composed
// path, and the reference the kernels are tested against), so a mask is identical on every
// backend and never has to be drawn value by value on the host or uploaded.
fn dropout_mask(seed: u32, index: u32, keep: f32, scale: f32) -> f32 {
    // "lowbias32" (C. Wellons' integer hash), a bijection of u32 with full avalanche.
    var x = index ^ seed;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    // The top 24 bits as a float in [0, 1), exact in f32.
    let u = f32(x >> 8u) * (1.0 / 16777216.0);
    return select(0.0, scale, u < keep);
}
