//! Fused global-norm clipping factor (`shaders/sum_squares.wgsl`, one launch per gradient, and
//! `shaders/clip_factor.wgsl`, one launch in all): the joint L2 norm of a set of gradients and
//! PyTorch's `clip_grad_norm_` factor `min(1, max_norm / (norm + 1e-6))`, on the device, in
//! place of burn's composed square, sum, zero-fill and add per gradient (four launches each:
//! for MiniLM's 103 parameter tensors, 412 launches a step).

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of `sum_squares.wgsl`.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    SumSquaresUniform {
        len: u32,
        /// The first of this tensor's slots in the partial sums.
        offset: u32,
        /// Workgroups (and slots) for this tensor.
        groups: u32,
    }
);

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

    use super::{ClipUniform, SumSquaresUniform};
    use crate::kernels::registry::{Launch, WORKGROUP, WgslKernel, burn_tensor, empty_like, input};

    /// Workgroups for a tensor of `len` values: about 2,048 values each, at most 64.
    fn groups(len: usize) -> u32 {
        len.div_ceil(WORKGROUP as usize * 8).clamp(1, 64) as u32
    }

    /// The norm and the factor, each `[1]`.
    pub(super) fn norm_and_factor(grads: &[Tensor<1>], max_norm: f32) -> (Tensor<1>, Tensor<1>) {
        let cubes: Vec<_> = grads.iter().map(|g| input(g.clone())).collect();
        let count: u32 = grads.iter().map(|g| groups(g.dims()[0])).sum();
        let partials = empty_like(&cubes[0], [count as usize]);
        let mut offset = 0;
        for (grad, cube) in grads.iter().zip(&cubes) {
            let len = grad.dims()[0];
            let uniform = SumSquaresUniform {
                len: u32::try_from(len).expect("`applies` checked the size"),
                offset,
                groups: groups(len),
            };
            let kernel = WgslKernel::new(
                "sum_squares.wgsl",
                include_str!("../../../../shaders/sum_squares.wgsl"),
            )
            .uniform::<SumSquaresUniform>();
            Launch::new(kernel, uniform.groups as usize * WORKGROUP as usize)
                .buffer(cube)
                .buffer(&partials)
                .run(&uniform);
            offset += uniform.groups;
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
