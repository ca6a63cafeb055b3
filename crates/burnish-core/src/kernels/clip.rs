//! Fused global-norm clipping factor (`shaders/sum_squares.wgsl`, one launch per seven
//! gradients, and `shaders/clip_factor.wgsl`, one launch in all): the joint L2 norm of a set of gradients and
//! PyTorch's `clip_grad_norm_` factor `min(1, max_norm / (norm + 1e-6))`, on the device, in
//! place of burn's composed square, sum, zero-fill and add per gradient (four launches each:
//! for MiniLM's 103 parameter tensors, 412 launches a step).

use burn::prelude::*;

use super::uniform;

/// Gradients one `sum_squares.wgsl` launch takes: seven bindings and the partial sums' fill the
/// 8 storage bindings WebGPU guarantees.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
const SLOTS: usize = 7;

uniform!(
    /// The uniform block of `clip_factor.wgsl`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    ClipUniform {
        /// Partial sums in all.
        count: u32,
        max_norm: f32,
    }
);

uniform!(
    /// The uniform block of `loss_scale.wgsl`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    LossScaleUniform {
        /// Partial sums in all.
        count: u32,
        /// 1: clip to `max_norm` too.
        clip: u32,
        max_norm: f32,
        /// Good steps in a row before the scale doubles.
        interval: u32,
    }
);

/// Whether the kernels can take `grads` (flattened): at least one, all `f32` on a wgpu device,
/// none empty, each under 2^32 values.
pub(crate) fn applies(grads: &[Tensor<1>]) -> bool {
    !grads.is_empty()
        && grads
            .iter()
            .all(|g| super::applies(&[g]) && g.dims()[0] > 0 && u32::try_from(g.dims()[0]).is_ok())
}

/// The joint norm of `grads` and the factor that scales them to at most `max_norm`, each a
/// device tensor `[1]`. Call only where [`applies`] said yes.
pub(crate) fn norm_and_factor(grads: &[Tensor<1>], max_norm: f32) -> (Tensor<1>, Tensor<1>) {
    #[cfg(feature = "wgpu")]
    {
        wgpu::norm_and_factor(grads, max_norm)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = max_norm;
        unreachable!("the fused clipping needs the wgpu feature; `applies` said no: {grads:?}")
    }
}

/// Dynamic loss scaling's step: from the gradients of a loss scaled by `scaler[0]` (`scaler`:
/// `[scale, good steps]`, on the plain device), the factor the optimizer scales them by (`clip /
/// scale`, with clipping to `max_norm` where given, or 0 where any gradient is not finite: the
/// fused optimizer kernels then skip the step), and the scaler's next state (halved after an
/// overflow, doubled after `interval` good steps). Call only where [`applies`] said yes.
pub(crate) fn dynamic_factor(
    grads: &[Tensor<1>],
    max_norm: Option<f32>,
    scaler: Tensor<1>,
    interval: u32,
) -> (Tensor<1>, Tensor<1>) {
    #[cfg(feature = "wgpu")]
    {
        wgpu::dynamic_factor(grads, max_norm, scaler, interval)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (max_norm, scaler, interval);
        unreachable!("dynamic loss scaling needs the wgpu feature; `applies` said no: {grads:?}")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::prelude::*;
    use burn_wgpu::CubeTensor;

    use super::{ClipUniform, LossScaleUniform, SLOTS};
    use crate::kernels::registry::{
        Launch, WORKGROUP, WgslKernel, burn_tensor, empty_like, input, owned,
    };

    /// Workgroups for a tensor of `len` values: about 2,048 values each, at most 64.
    fn groups(len: usize) -> u32 {
        len.div_ceil(WORKGROUP as usize * 8).clamp(1, 64) as u32
    }

    /// `sum_squares.wgsl` for `slots` tensors: their bindings and one loop each.
    fn sum_squares(slots: usize) -> WgslKernel {
        use std::fmt::Write;
        let mut bindings = String::new();
        let mut sums = String::from("    switch slot {\n");
        for s in 0..slots {
            let _ = writeln!(
                bindings,
                "@group(0) @binding({s}) var<storage, read_write> values_{s}: array<f32>;"
            );
            let case = if s + 1 == slots {
                "default".to_string()
            } else {
                format!("case {s}u")
            };
            let _ = writeln!(
                sums,
                "        {case}: {{\n\
                 \x20           for (var i = start; i < len; i += stride) {{\n\
                 \x20               let v = values_{s}[i];\n\
                 \x20               s += v * v;\n\
                 \x20           }}\n\
                 \x20       }}"
            );
        }
        sums.push_str("    }");
        WgslKernel::new(
            "sum_squares.wgsl",
            include_str!("../../../../shaders/sum_squares.wgsl"),
        )
        .item("slots", slots.to_string())
        .item("bindings", bindings)
        .item("sums", sums)
        .item("uniform_binding", (slots + 1).to_string())
    }

    /// The partial sums of squares of `grads` (the first pass), and their count.
    fn partials(grads: &[Tensor<1>]) -> (CubeTensor, u32) {
        let cubes: Vec<_> = grads.iter().map(|g| input(g.clone())).collect();
        let count: u32 = grads.iter().map(|g| groups(g.dims()[0])).sum();
        let partials = empty_like(&cubes[0], [count as usize]);
        let mut first = 0u32;
        for (grads, cubes) in grads.chunks(SLOTS).zip(cubes.chunks(SLOTS)) {
            let mut bytes = Vec::new();
            bytes.extend(first.to_le_bytes());
            bytes.extend([0u8; 12]);
            let mut launch_groups = 0;
            for grad in grads {
                let len = grad.dims()[0];
                let groups = groups(len);
                let len = u32::try_from(len).expect("`applies` checked the size");
                for n in [len, launch_groups, groups, 0] {
                    bytes.extend(n.to_le_bytes());
                }
                launch_groups += groups;
            }
            let mut launch = Launch::new(
                sum_squares(grads.len()),
                launch_groups as usize * WORKGROUP as usize,
            );
            for cube in cubes {
                launch = launch.buffer(cube);
            }
            launch.buffer(&partials).run_bytes(bytes);
            first += launch_groups;
        }
        (partials, count)
    }

    /// The norm and the factor, each `[1]`.
    pub(super) fn norm_and_factor(grads: &[Tensor<1>], max_norm: f32) -> (Tensor<1>, Tensor<1>) {
        let (partials, count) = partials(grads);
        let norm = empty_like(&partials, [1]);
        let factor = empty_like(&partials, [1]);
        let kernel = WgslKernel::new(
            "clip_factor.wgsl",
            include_str!("../../../../shaders/clip_factor.wgsl"),
        )
        .uniform::<ClipUniform>();
        Launch::new(kernel, WORKGROUP as usize)
            .buffer(&partials)
            .buffer(&norm)
            .buffer(&factor)
            .run(&ClipUniform { count, max_norm });
        (burn_tensor(norm), burn_tensor(factor))
    }

    /// The factor `[1]` and the scaler's next state `[2]` (updated in place where nothing else
    /// holds it, else in a copy).
    pub(super) fn dynamic_factor(
        grads: &[Tensor<1>],
        max_norm: Option<f32>,
        scaler: Tensor<1>,
        interval: u32,
    ) -> (Tensor<1>, Tensor<1>) {
        let (partials, count) = partials(grads);
        let scaler = owned(scaler);
        let factor = empty_like(&partials, [1]);
        let kernel = WgslKernel::new(
            "loss_scale.wgsl",
            include_str!("../../../../shaders/loss_scale.wgsl"),
        )
        .uniform::<LossScaleUniform>();
        Launch::new(kernel, WORKGROUP as usize)
            .buffer(&partials)
            .buffer(&scaler)
            .buffer(&factor)
            .run(&LossScaleUniform {
                count,
                clip: u32::from(max_norm.is_some()),
                max_norm: max_norm.unwrap_or(0.0),
                interval,
            });
        (burn_tensor(factor), burn_tensor(scaler))
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{SLOTS, dynamic_factor, norm_and_factor};
    use crate::kernels::test_util::{launched, read};

    /// Ten tensors (two launches: seven, then three) from 1 value to past 64 workgroups' worth,
    /// each contributing a different, sizeable share of the squared norm, so a tensor summed
    /// twice, missed or written over another's partial sums changes the norm well past the
    /// tolerance.
    #[test]
    fn grouped_sums_cover_every_tensor() {
        let device = crate::kernels::test_device();
        let lens = [1usize, 3, 300, 5_000, 200_000, 2, 7, 2_049, 9, 1];
        let grads: Vec<Tensor<1>> = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let v = (i + 1) as f32 / (len as f32).sqrt();
                Tensor::<1>::full([len], v, &device)
            })
            .collect();
        let want: f64 = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let v = f64::from((i + 1) as f32 / (len as f32).sqrt());
                len as f64 * v * v
            })
            .sum::<f64>()
            .sqrt();
        let before = launched();
        let (norm, factor) = norm_and_factor(&grads, 1.0);
        assert_eq!(launched() - before, lens.len().div_ceil(SLOTS) + 1);
        let norm = read(norm)[0];
        assert!(
            (f64::from(norm) - want).abs() <= 1e-5 * want,
            "norm {norm}, expected {want}"
        );
        let factor = read(factor)[0];
        let expected = (1.0 / (want + 1e-6)) as f32;
        assert!(
            (factor - expected).abs() <= 1e-5 * expected,
            "{factor} vs {expected}"
        );
    }

    /// Dynamic loss scaling's step, state by state (growth after 2 good steps here): finite
    /// gradients give `1 / scale` (times clipping's factor where it bites, from the unscaled
    /// norm) and count a good step, the second doubling the scale; an infinite or NaN gradient
    /// gives 0 and halves the scale (not below 1); the scale stops doubling at 2^24.
    #[test]
    fn dynamic_loss_scaling_backs_off_and_grows() {
        let device = crate::kernels::test_device();
        let finite = || {
            vec![
                Tensor::<1>::full([3], 2.0, &device),
                Tensor::<1>::full([5], 1.0, &device),
            ]
        };
        let with = |v: f32| {
            let mut grads = finite();
            grads.push(Tensor::<1>::from_floats([0.5, v, 1.0], &device));
            grads
        };
        let step = |grads: &[Tensor<1>], clip: Option<f32>, state: [f32; 2]| {
            let scaler = Tensor::<1>::from_floats(state, &device);
            let before = launched();
            let (factor, scaler) = dynamic_factor(grads, clip, scaler, 2);
            assert_eq!(launched() - before, 2, "the sums of squares and the scaler");
            (read(factor)[0], read(scaler))
        };
        assert_eq!(step(&finite(), None, [8.0, 0.0]), (0.125, vec![8.0, 1.0]));
        assert_eq!(step(&finite(), None, [8.0, 1.0]), (0.125, vec![16.0, 0.0]));
        // Total 17 at scale 16: the unscaled norm is sqrt(17) / 16.
        let norm = 17f32.sqrt() / 16.0;
        let (factor, state) = step(&finite(), Some(0.1), [16.0, 0.0]);
        let want = 0.1 / (norm + 1e-6) / 16.0;
        assert!((factor - want).abs() <= 1e-6 * want, "{factor} vs {want}");
        assert_eq!(state, [16.0, 1.0]);
        assert_eq!(
            step(&finite(), Some(1.0), [16.0, 0.0]).0,
            1.0 / 16.0,
            "no clipping"
        );
        assert_eq!(
            step(&with(f32::INFINITY), None, [16.0, 1.0]),
            (0.0, vec![8.0, 0.0])
        );
        assert_eq!(
            step(&with(f32::NAN), Some(1.0), [8.0, 0.0]),
            (0.0, vec![4.0, 0.0])
        );
        assert_eq!(
            step(&with(f32::NEG_INFINITY), None, [1.0, 0.0]),
            (0.0, vec![1.0, 0.0])
        );
        let big = 2f32.powi(24);
        assert_eq!(
            step(&finite(), None, [big, 1.0]),
            (1.0 / big, vec![big, 0.0])
        );
        // Squares past f32's range are an overflow too.
        assert_eq!(step(&with(1e20), None, [4.0, 0.0]), (0.0, vec![2.0, 0.0]));
    }
}
