//! Activations whose forward and backward stay finite on every WebGPU implementation.
//!
//! WGSL's `tanh` returns NaN for |x| >= 89 on SwiftShader, Chromium's software adapter (measured:
//! `tanh(88) = 1`, `tanh(89) = NaN`, `tanh(-100) = NaN`); CubeCL guards it on macOS only, and only
//! for positive x. burn's `gelu` is differentiated with the tanh approximation's derivative,
//! which takes `tanh(0.0357 x³ + 0.798 x)`: NaN once a pre-activation passes about ±12.9. The
//! feed-forward layers of pretrained encoders have such values (all-MiniLM-L6-v2's fourth layer
//! does), so fine-tuning any layer below one of them turned every gradient beneath it into NaN in
//! the browser while native runs were fine.
//!
//! The functions here are built from ops whose derivatives cannot overflow: exact GELU through
//! `erf` (whose derivative, `exp(-x²)`, underflows cleanly to 0; this is also GELU's true
//! derivative, where burn's backward uses the approximation's), and `tanh` of an argument
//! clamped to ±[`TANH_LIMIT`], past which `tanh` is ±1 in `f32` and its derivative below 1e-16.

use burn::prelude::*;

/// |x| beyond which `tanh(x)` rounds to ±1 in `f32` (it does from 9.02 on), well below the 89
/// where SwiftShader's `tanh` breaks.
pub const TANH_LIMIT: f64 = 20.0;

/// `tanh(x)`, finite for every finite `x` on every adapter.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp(-TANH_LIMIT, TANH_LIMIT).tanh()
}

/// Exact GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2` (transformers' `gelu`).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let cdf = (x.clone() * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0;
    x * cdf * 0.5
}

/// The tanh approximation of GELU,
/// `x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2` (transformers' `gelu_new`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    // √(2/π)
    const SCALE: f64 = std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SCALE;
    x * (tanh(inner) + 1.0) * 0.5
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    /// Φ(x) + x φ(x): exact GELU's derivative, in f64.
    fn gelu_derivative(x: f64) -> f64 {
        let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        0.5 * (1.0 + libm_erf(x / std::f64::consts::SQRT_2)) + x * pdf
    }

    /// erf to ~1e-12 (a series near 0, the continued fraction's complement beyond); std has none.
    fn libm_erf(x: f64) -> f64 {
        let (sign, x) = if x < 0.0 { (-1.0, -x) } else { (1.0, x) };
        let value = if x < 3.0 {
            // Maclaurin series.
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * std::f64::consts::FRAC_2_SQRT_PI
        } else {
            // erfc by Lentz's continued fraction.
            let mut f = x;
            for k in (1..60).rev() {
                f = x + (k as f64 / 2.0) / f;
            }
            1.0 - (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
        };
        sign * value
    }

    const POINTS: [f32; 14] = [
        -1000.0, -100.0, -89.0, -20.0, -13.0, -3.0, -0.5, 0.0, 0.5, 3.0, 13.0, 20.0, 100.0, 1000.0,
    ];

    /// Values and gradients of `f` at [`POINTS`] (the gradient of `f(x).sum()`).
    fn values_and_grads(f: impl Fn(Tensor<1>) -> Tensor<1>) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::from(POINTS), &device).require_grad();
        let y = f(x.clone());
        let grads = y.clone().sum().backward();
        let grad = x.grad(&grads).expect("x requires a gradient");
        (
            y.into_data().try_to_vec::<f32>().expect("f32 values"),
            grad.into_data().try_to_vec::<f32>().expect("f32 gradient"),
        )
    }

    /// `f`'s values and gradients at [`POINTS`] are finite and match the f64 reference `value`
    /// (relative to max(|value|, 1)) and `derivative` (absolute) within `tolerance`.
    fn check(
        name: &str,
        f: impl Fn(Tensor<1>) -> Tensor<1>,
        value: impl Fn(f64) -> f64,
        derivative: impl Fn(f64) -> f64,
        tolerance: f64,
    ) {
        let (values, grads) = values_and_grads(f);
        for ((&x, v), g) in POINTS.iter().zip(values).zip(grads) {
            let x = f64::from(x);
            assert!(
                v.is_finite() && g.is_finite(),
                "{name}({x}) = {v}, {name}'({x}) = {g}"
            );
            let want = value(x);
            assert!(
                (f64::from(v) - want).abs() <= tolerance * want.abs().max(1.0),
                "{name}({x}) = {v}, want {want}"
            );
            let want = derivative(x);
            assert!(
                (f64::from(g) - want).abs() <= tolerance,
                "{name}'({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_its_definition_and_its_exact_derivative_everywhere() {
        check(
            "gelu",
            gelu,
            |x| x * 0.5 * (1.0 + libm_erf(x / std::f64::consts::SQRT_2)),
            gelu_derivative,
            1e-5,
        );
    }

    #[test]
    fn gelu_tanh_and_tanh_match_their_definitions_with_finite_gradients() {
        let u = |x: f64| (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        check(
            "gelu_tanh",
            gelu_tanh,
            |x| 0.5 * x * (1.0 + u(x).tanh()),
            |x| {
                let du = (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + u(x).tanh()) + 0.5 * x * (1.0 - u(x).tanh().powi(2)) * du
            },
            1e-5,
        );
        assert_eq!(
            (TANH_LIMIT as f32).tanh(),
            1.0,
            "tanh must have saturated at the limit"
        );
        check("tanh", tanh, f64::tanh, |x| 1.0 - x.tanh().powi(2), 1e-6);
    }
}
