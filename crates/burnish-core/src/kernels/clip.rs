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

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::prelude::*;

    use super::{ClipUniform, SLOTS};
    use crate::kernels::registry::{Launch, WORKGROUP, WgslKernel, burn_tensor, empty_like, input};

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

    /// The norm and the factor, each `[1]`.
    pub(super) fn norm_and_factor(grads: &[Tensor<1>], max_norm: f32) -> (Tensor<1>, Tensor<1>) {
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
        let norm = empty_like(&cubes[0], [1]);
        let factor = empty_like(&cubes[0], [1]);
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
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{SLOTS, norm_and_factor};
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
}
