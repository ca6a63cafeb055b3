//! Fused dropout (`shaders/dropout.wgsl`): `x * mask` with the mask computed from its seed in
//! the kernel (`shaders/dropout_mask.wgsl`, the same bits as [`DropMask::value`] on the host),
//! forward, and the same kernel on the upstream gradient backward. It replaces drawing the mask
//! value by value on the host, uploading it (as big as `x`: every hidden state of every layer
//! of a transformer) and multiplying by it.

use burn::prelude::*;

use super::uniform;
use crate::model::DropMask;

uniform!(
    /// The uniform block of the dropout kernel.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    DropoutUniform {
        /// values
        len: u32,
        seed: u32,
        keep: f32,
        scale: f32,
    }
);

/// Whether the kernel can take `x`: `f32` on a wgpu device, fewer than 2^32 values.
pub(crate) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        super::applies(&[x]) && u32::try_from(x.shape().num_elements()).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = x;
        false
    }
}

/// `x * mask` for `mask`'s values over `x`'s flat (row-major) indices, differentiable with
/// respect to `x`. Call only where [`applies`] said yes.
pub(crate) fn dropout<const D: usize>(x: Tensor<D>, mask: &DropMask) -> Tensor<D> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::dropout(x, mask)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = mask;
        unreachable!("the fused dropout needs the wgpu feature; `applies` said no: {x:?}")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, unary};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::DropoutUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record, tracked,
    };
    use crate::model::DropMask;

    /// `x * mask`, a new tensor of `x`'s shape.
    fn run(x: &CubeTensor, uniform: &DropoutUniform) -> CubeTensor {
        let y = empty_like(x, x.meta.shape.clone());
        let kernel = WgslKernel::new(
            "dropout.wgsl",
            include_str!("../../../../shaders/dropout.wgsl"),
        )
        .uniform::<DropoutUniform>();
        Launch::new(kernel, uniform.len as usize)
            .buffer(x)
            .buffer(&y)
            .run(uniform);
        y
    }

    /// burn-autodiff's backward step of [`dropout`]: one parent, `x`; the upstream gradient
    /// times the same mask.
    #[derive(Debug)]
    struct DropoutBackward;

    impl Backward<CubeBackend, 1> for DropoutBackward {
        type State = DropoutUniform;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Ops {
                parents,
                node,
                state,
            } = ops;
            unary::<CubeBackend, _>(parents, node, grads, |dy| run(&contiguous(dy), &state));
        }
    }

    pub(super) fn dropout<const D: usize>(x: Tensor<D>, mask: &DropMask) -> Tensor<D> {
        let uniform = DropoutUniform {
            len: u32::try_from(x.shape().num_elements()).expect("`applies` checked the size"),
            seed: mask.seed,
            keep: mask.keep,
            scale: mask.scale,
        };
        if !x.is_autodiff() {
            return burn_tensor(run(&contiguous(cube_tensor(x)), &uniform));
        }
        let (x, node) = tracked(x);
        let y = run(&x, &uniform);
        record(DropoutBackward, [node], |_| uniform, y)
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, dropout};
    use crate::kernels;
    use crate::kernels::test_util::{launched, read};
    use crate::model::DropMask;

    /// On wgpu the kernel gives exactly the values and gradient of multiplying by the mask the
    /// host computes (the composed path) on flex: one dispatch each way, sizes around a
    /// workgroup, the share kept near `keep`.
    #[test]
    fn fused_dropout_is_the_hosts_mask_exactly() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for (n, p, seed) in [
            (1, 0.5, 7),
            (255, 0.1, 1),
            (257, 0.3, 0xdead_beef),
            (10_000, 0.2, 42),
        ] {
            let mask = DropMask::new(seed, p);
            let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() + 0.5).collect();
            let upstream: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let run = |device: &Device, fused: bool| {
                let x = Tensor::<2>::from_data(TensorData::new(values.clone(), [1, n]), device)
                    .require_grad();
                let before = launched();
                let y = if fused {
                    assert!(applies(&x));
                    dropout(x.clone(), &mask)
                } else {
                    x.clone() * mask.tensor([1, n], device)
                };
                let forward = launched() - before;
                let up = Tensor::<2>::from_data(TensorData::new(upstream.clone(), [1, n]), device);
                let grads = (y.clone() * up).sum().backward();
                let dx = read(x.grad(&grads).expect("x has a gradient"));
                (read(y), dx, forward, launched() - before)
            };
            let (y, dx, forward, launches) = run(&wgpu, true);
            assert_eq!((forward, launches), (1, 2), "{n} values");
            let (want_y, want_dx, _, _) = run(&flex, false);
            assert_eq!(y, want_y, "{n} values, p {p}");
            assert_eq!(dx, want_dx, "{n} values, p {p}: gradient");
            if n >= 10_000 {
                let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
                assert!((kept - (1.0 - p)).abs() < 0.02, "kept {kept}");
            }
        }
    }

    #[test]
    fn the_kernel_is_not_used_off_wgpu() {
        assert!(!applies(&Tensor::<2>::zeros([2, 3], &Device::flex())));
        assert!(applies(&Tensor::<2>::zeros(
            [2, 3],
            &kernels::test_device()
        )));
    }
}
