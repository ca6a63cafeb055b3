//! Fused GELU (`shaders/gelu.wgsl` forward, `gelu_grad.wgsl` backward), exact (erf) or the tanh
//! approximation, in one dispatch each way, in place of [`crate::model::activation`]'s
//! composed forms (five or ten element-wise kernels forward, about twice that backward, on the
//! largest activations of a transformer layer).
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph,
//! keeping the input.

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the two GELU kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    GeluUniform {
        len: u32,
    }
);

/// Whether the kernels can take `x`: `f32` on a wgpu device, 1 to 2^32 - 1 values.
pub(crate) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    let len = x.shape().num_elements();
    super::applies(&[x]) && len > 0 && u32::try_from(len).is_ok()
}

/// GELU of every value of `x` (`tanh`: the tanh approximation, else the exact form),
/// differentiable. Call only where [`applies`] said yes.
pub(crate) fn gelu<const D: usize>(x: Tensor<D>, tanh: bool) -> Tensor<D> {
    #[cfg(feature = "wgpu")]
    {
        let dims = x.dims();
        let flat: Tensor<1> = x.reshape([dims.iter().product::<usize>()]);
        wgpu::gelu(flat, tanh).reshape(dims)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = tanh;
        unreachable!("the fused GELU needs the wgpu feature; `applies` said no: {x:?}")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, unary};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::GeluUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record, tracked,
    };
    use crate::model::activation::TANH_LIMIT;

    fn launch(name: &'static str, source: &'static str, tanh: bool, len: u32) -> Launch {
        let kernel = WgslKernel::new(name, source)
            .uniform::<GeluUniform>()
            .item("tanh", tanh.to_string())
            .item("tanh_limit", format!("{TANH_LIMIT:?}"));
        Launch::new(kernel, len as usize)
    }

    fn forward(x: &CubeTensor, tanh: bool, len: u32) -> CubeTensor {
        let y = empty_like(x, [len as usize]);
        launch(
            "gelu.wgsl",
            include_str!("../../../../shaders/gelu.wgsl"),
            tanh,
            len,
        )
        .buffer(x)
        .buffer(&y)
        .run(&GeluUniform { len });
        y
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        x: CubeTensor,
        tanh: bool,
        len: u32,
    }

    /// burn-autodiff's backward step of [`gelu`]: one parent, the input.
    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<CubeBackend, 1> for GeluBackward {
        type State = State;

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
            unary::<CubeBackend, _>(parents, node, grads, |dy| {
                let dx = empty_like(&state.x, [state.len as usize]);
                launch(
                    "gelu_grad.wgsl",
                    include_str!("../../../../shaders/gelu_grad.wgsl"),
                    state.tanh,
                    state.len,
                )
                .buffer(&state.x)
                .buffer(&contiguous(dy))
                .buffer(&dx)
                .run(&GeluUniform { len: state.len });
                dx
            });
        }
    }

    pub(super) fn gelu(x: Tensor<1>, tanh: bool) -> Tensor<1> {
        let len = u32::try_from(x.dims()[0]).expect("`applies` checked the size");
        if !x.is_autodiff() {
            return burn_tensor(forward(&contiguous(cube_tensor(x)), tanh, len));
        }
        let (x, node) = tracked(x);
        let y = forward(&x, tanh, len);
        record(GeluBackward, [node], |_| State { x, tanh, len }, y)
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, gelu};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::model::activation;
    use crate::rng::Rng;

    /// Values where GELU is interesting (around 0, in the tails, past the tanh clamp and far
    /// past SwiftShader's tanh NaN at 89) and seeded ones in ±6, `len` in all.
    fn values(len: usize) -> Vec<f32> {
        const POINTS: [f32; 14] = [
            -1000.0, -100.0, -89.0, -20.0, -13.0, -3.0, -0.5, 0.0, 0.5, 3.0, 13.0, 20.0, 100.0,
            1000.0,
        ];
        let mut rng = Rng::new(len as u64);
        (0..len)
            .map(|i| {
                POINTS
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| (rng.next_f32() * 2.0 - 1.0) * 6.0)
            })
            .collect()
    }

    /// Output and input gradient of `sum(gelu(x) * upstream)` with the upstream gradient
    /// `cos(i)`, and the kernels launched for the forward pass and in all.
    fn run(
        device: &Device,
        fused: bool,
        tanh: bool,
        x: &[f32],
    ) -> (Vec<f32>, Vec<f32>, usize, usize) {
        let n = x.len();
        let shape = [n / 2, 2];
        let x: Tensor<2> =
            Tensor::from_data(TensorData::new(x.to_vec(), shape), device).require_grad();
        let upstream: Vec<f32> = (0..n).map(|i| (i as f32).cos()).collect();
        let upstream = Tensor::<2>::from_data(TensorData::new(upstream, shape), device);
        let before = launched();
        let y = match (fused, tanh) {
            (true, _) => {
                assert!(applies(&x), "the kernel applies");
                gelu(x.clone(), tanh)
            }
            (false, true) => activation::gelu_tanh(x.clone()),
            (false, false) => activation::gelu(x.clone()),
        };
        let forward = launched() - before;
        let grads = (y.clone() * upstream).sum().backward();
        (
            read(y),
            read(x.grad(&grads).expect("x has a gradient")),
            forward,
            launched() - before,
        )
    }

    /// Both forms, output and gradient, through the kernels on wgpu against the composed
    /// activations (burn-autodiff's gradients of them) on flex: finite everywhere, equal to
    /// rounding, one dispatch each way; lengths that fill a workgroup partly, exactly, and a
    /// few times over.
    #[test]
    fn fused_gelu_matches_the_composed_forms() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for len in [16, 256, 258, 4000] {
            let x = values(len);
            for tanh in [false, true] {
                let what = format!("{len} values, {}", if tanh { "tanh" } else { "exact" });
                let (y, dx, forward, launches) = run(&wgpu, true, tanh, &x);
                assert_eq!(forward, 1, "{what}: one forward dispatch");
                assert_eq!(launches, 2, "{what}: and one backward");
                assert!(y.iter().chain(&dx).all(|v| v.is_finite()), "{what}: finite");
                let (want_y, want_dx, _, _) = run(&flex, false, tanh, &x);
                // flex's erf is exact to f32 where the kernel's (as CubeCL's own) polynomial is
                // within 1.5e-7: within 1e-5 relative, or 1e-6 absolute next to the largest
                // output (1,000).
                assert_close(&format!("{what}: y"), &y, &want_y, 1e-5, 1e-4);
                // Left of 0 the slope is (1 + t) / 2 with t near -1 (and Φ(x) likewise): a
                // cancellation whose rounding, in both paths, is a few 1e-5 of the slope, and
                // up to a few 1e-6 absolute in the far left tail: 1e-4 relative or 5e-6 next to
                // the largest gradient (about 1).
                assert_close(&format!("{what}: dx"), &dx, &want_dx, 1e-4, 5e-2);
            }
        }
    }

    /// Far past where any term overflows (x³ and x² are infinite in f32): the exact limits,
    /// `y = x` and slope 1 on the right, 0 on the left, not NaN.
    #[test]
    fn huge_values_give_the_limits_not_nan() {
        let device = kernels::test_device().autodiff();
        let x = [-1e20f32, 1e20, -3e38, 3e38];
        for tanh in [false, true] {
            let t =
                Tensor::<1>::from_data(TensorData::new(x.to_vec(), [4]), &device).require_grad();
            let y = gelu(t.clone(), tanh);
            let grads = y.clone().sum().backward();
            let dx = read(t.grad(&grads).expect("dx"));
            assert_eq!(read(y), [0.0, 1e20, 0.0, 3e38], "tanh {tanh}");
            assert_eq!(dx, [0.0, 1.0, 0.0, 1.0], "tanh {tanh}");
        }
    }

    /// Without autodiff: one dispatch, the same values, any rank.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let x = values(48);
        let device = kernels::test_device();
        let t = Tensor::<3>::from_data(TensorData::new(x.clone(), [2, 4, 6]), &device);
        let before = launched();
        let y = read(gelu(t, false));
        assert_eq!(launched() - before, 1);
        let (want, _, _, _) = run(&Device::flex().autodiff(), false, false, &x);
        assert_close("untracked y", &y, &want, 1e-5, 1e-4);
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_or_on_nothing() {
        assert!(!applies(&Tensor::<2>::zeros([2, 3], &Device::flex())));
        let wgpu = kernels::test_device();
        assert!(applies(&Tensor::<2>::zeros([2, 3], &wgpu)));
        assert!(!applies(&Tensor::<2>::zeros([0, 3], &wgpu)));
    }
}
