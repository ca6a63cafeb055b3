// What gelu.wgsl and gelu_grad.wgsl share, pasted into both as the `gelu_math` template item
// by crates/burnish-core/src/kernels/registry.rs (WGSL has no includes).

// √(2/π)
const SCALE: f32 = 0.7978845608028654;

// erf by Abramowitz and Stegun 7.1.26 (error below 1.5e-7), the polynomial CubeCL's own erf
// uses; WGSL has none.
fn erf(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.0614054 * t - 1.453152) * t + 1.4214137) * t - 0.28449674) * t + 0.2548296) * t;
    let e = 1.0 - poly * exp(-a * a);
    return select(e, -e, v < 0.0);
}

// The tanh form's argument √(2/π) (x + 0.044715 x³), before the clamp (±inf once x³
// overflows).
fn tanh_argument(v: f32) -> f32 {
    return SCALE * (v + 0.044715 * v * v * v);
}
