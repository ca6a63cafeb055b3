//! Fused softmax cross-entropy (`shaders/cross_entropy.wgsl` forward, `cross_entropy_grad.wgsl`
//! backward): the per-row losses `w[r] (logsumexp(x[r]) - x[r, t[r]])` in one dispatch, and their
//! gradient with respect to the logits in one more, in place of burn's composed log-softmax,
//! gather and weighting (about seven kernels forward and a dozen backward, with a
//! `[rows, classes]` log-probability tensor in between).
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph
//! (burn-autodiff's `Backward`), which keeps the logits, targets, weights and each row's
//! maximum and log of the sum of exponentials; the weights get no gradient (they are constants: masks, class weights).

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of both cross-entropy kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    CrossEntropyUniform {
        rows: u32,
        classes: u32,
    }
);

/// Whether the kernels can compute the losses of `logits` (`[rows, classes]`) against
/// `targets`: `f32` logits on a wgpu device, 32-bit integer targets (WGSL has no 64-bit ones),
/// and fewer than 2^32 logits.
pub(crate) fn applies(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DType;
        let [rows, classes] = logits.dims();
        super::applies(&[logits])
            && matches!(targets.dtype(), DType::I32 | DType::U32)
            && rows > 0
            && classes > 0
            && u32::try_from(rows * classes).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (logits, targets);
        false
    }
}

/// The per-row losses `[rows]`: `w[r] (logsumexp(logits[r]) - logits[r, targets[r]])`, 0 where
/// `w[r]` is 0 and NaN where `targets[r]` is not a class; `weights` `None` weighs every row 1.
/// Differentiable with respect to `logits`. Call only where [`applies`] said yes.
pub(crate) fn row_losses(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Option<Tensor<1>>,
) -> Tensor<1> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::row_losses(logits, targets, weights)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (targets, weights);
        unreachable!(
            "the fused cross-entropy needs the wgpu feature; `applies` said no: {logits:?}"
        )
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, unary};
    use burn::prelude::*;
    use burn::tensor::DType;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::CrossEntropyUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record, stand_ins,
        threads_per_row, tracked,
    };

    /// What both kernels read besides the logits.
    #[derive(Debug, Clone)]
    struct Rows {
        targets: CubeTensor,
        /// `None`: every row weighs 1.
        weights: Option<CubeTensor>,
        uniform: CrossEntropyUniform,
    }

    impl Rows {
        /// A kernel file with the items these rows decide.
        fn kernel(&self, name: &'static str, source: &'static str) -> WgslKernel {
            let index = if self.targets.dtype == DType::U32 {
                "u32"
            } else {
                "i32"
            };
            WgslKernel::new(name, source)
                .uniform::<CrossEntropyUniform>()
                .item("index", index)
                .item("weighted", self.weights.is_some().to_string())
        }

        /// The weights binding: the weights, or (unweighted; the kernel never reads it) a
        /// one-element buffer of its own, since a buffer may not be bound twice where one
        /// binding is writable.
        fn weights_or_placeholder(&self, like: &CubeTensor) -> CubeTensor {
            self.weights
                .clone()
                .unwrap_or_else(|| stand_ins::<1>(like)[0].clone())
        }
    }

    /// The per-row losses of `logits` (contiguous `[rows, classes]`) and each row's statistics
    /// (`[rows, 2]`: maximum, log of the sum of exponentials).
    fn forward(logits: &CubeTensor, rows: &Rows) -> (CubeTensor, CubeTensor) {
        let n = rows.uniform.rows as usize;
        let loss = empty_like(logits, [n]);
        let stats = empty_like(logits, [n, 2]);
        let threads = threads_per_row(rows.uniform.classes);
        let kernel = rows
            .kernel(
                "cross_entropy.wgsl",
                include_str!("../../../../shaders/cross_entropy.wgsl"),
            )
            .item("threads", threads.to_string());
        Launch::new(kernel, n * threads as usize)
            .buffer(logits)
            .buffer(&rows.targets)
            .buffer(&rows.weights_or_placeholder(logits))
            .buffer(&loss)
            .buffer(&stats)
            .run(&rows.uniform);
        (loss, stats)
    }

    /// The gradient of the logits from the gradient `grad` (`[rows]`) of the per-row losses.
    fn backward(state: &State, grad: CubeTensor) -> CubeTensor {
        let grad = contiguous(grad);
        let CrossEntropyUniform { rows, classes } = state.rows.uniform;
        let out = empty_like(&state.logits, [rows as usize, classes as usize]);
        let kernel = state.rows.kernel(
            "cross_entropy_grad.wgsl",
            include_str!("../../../../shaders/cross_entropy_grad.wgsl"),
        );
        Launch::new(kernel, rows as usize * classes as usize)
            .buffer(&state.logits)
            .buffer(&state.rows.targets)
            .buffer(&state.rows.weights_or_placeholder(&state.logits))
            .buffer(&state.stats)
            .buffer(&grad)
            .buffer(&out)
            .run(&state.rows.uniform);
        out
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        logits: CubeTensor,
        /// Each row's maximum and log of the sum of exponentials.
        stats: CubeTensor,
        rows: Rows,
    }

    /// burn-autodiff's backward step of [`row_losses`].
    #[derive(Debug)]
    struct CrossEntropyBackward;

    impl Backward<CubeBackend, 1> for CrossEntropyBackward {
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
            unary::<CubeBackend, _>(parents, node, grads, |grad| backward(&state, grad));
        }
    }

    pub(super) fn row_losses(
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
        weights: Option<Tensor<1>>,
    ) -> Tensor<1> {
        let [n, classes] = logits.dims();
        let targets = contiguous(
            targets
                .inner()
                .try_into_primitive::<CubeBackend>()
                .expect("`applies` checked that the targets live on a wgpu device"),
        );
        // Constants: their autodiff association (if any) is dropped, so they get no gradient.
        let weights = weights.map(|w| contiguous(cube_tensor(w.inner())));
        let uniform = CrossEntropyUniform {
            rows: u32::try_from(n).expect("`applies` checked the size"),
            classes: u32::try_from(classes).expect("`applies` checked the size"),
        };
        let rows = Rows {
            targets,
            weights,
            uniform,
        };
        if !logits.is_autodiff() {
            let (loss, _) = forward(&contiguous(cube_tensor(logits)), &rows);
            return burn_tensor(loss);
        }
        let (x, node) = tracked(logits);
        let (loss, stats) = forward(&x, &rows);
        record(
            CrossEntropyBackward,
            [node],
            |_| State {
                logits: x,
                stats,
                rows,
            },
            loss,
        )
    }
}
