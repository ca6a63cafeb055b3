//! Fused attention softmax (`shaders/attention_softmax.wgsl` forward,
//! `attention_softmax_grad.wgsl` backward): `softmax(scores * scale + mask)` over the keys in
//! one dispatch and its gradient in one more, in place of burn's composed scale, mask add and
//! softmax (seven kernels forward, about ten backward, per attention layer). The matrix
//! products on either side stay burn's.
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph,
//! keeping the probabilities; the mask is a constant (no gradient).

use burn::prelude::*;

use super::uniform;

uniform!(
    /// The uniform block of the two attention-softmax kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    AttentionUniform {
        /// batch * heads * queries
        rows: u32,
        /// keys
        cols: u32,
        scale: f32,
        /// heads * queries: the rows of one batch item
        batch_rows: u32,
        queries: u32,
        /// The mask's stride between batch items (0: one mask for all) ...
        bias_batch_stride: u32,
        /// ... and between queries (0: one row for all).
        bias_query_stride: u32,
    }
);

/// Whether the kernels can take `scores` (`[batch, heads, queries, keys]`) and `mask`
/// (`[batch or 1, 1, queries or 1, keys]`): both `f32` on a wgpu device, the mask not tracked by
/// autodiff (it gets no gradient), fewer than 2^32 scores.
pub(crate) fn applies(scores: &Tensor<4>, mask: &Tensor<4>) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [batch, _, queries, keys] = scores.dims();
        let [mask_batch, mask_heads, mask_queries, mask_keys] = mask.dims();
        super::applies(&[scores, mask])
            && !mask.is_tracked()
            && [1, batch].contains(&mask_batch)
            && mask_heads == 1
            && [1, queries].contains(&mask_queries)
            && mask_keys == keys
            && keys > 0
            && u32::try_from(scores.shape().num_elements()).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (scores, mask);
        false
    }
}

/// `softmax(scores * scale + mask)` over the last dimension, differentiable with respect to
/// `scores`. Call only where [`applies`] said yes.
pub(crate) fn attention_softmax(scores: Tensor<4>, scale: f64, mask: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::attention_softmax(scores, scale, mask)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (scale, mask);
        unreachable!(
            "the fused attention softmax needs the wgpu feature; `applies` said no: {scores:?}"
        )
    }
}

/// burn's composed equivalent of [`attention_softmax`]: the reference, and the path off wgpu.
pub(crate) fn composed(scores: Tensor<4>, scale: f64, mask: Tensor<4>) -> Tensor<4> {
    burn::tensor::activation::softmax(scores * scale + mask, 3)
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, unary};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::AttentionUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record,
        threads_per_row, tracked,
    };

    fn launch(name: &'static str, source: &'static str, uniform: &AttentionUniform) -> Launch {
        let threads = threads_per_row(uniform.cols);
        let kernel = WgslKernel::new(name, source)
            .uniform::<AttentionUniform>()
            .item("threads", threads.to_string());
        Launch::new(kernel, uniform.rows as usize * threads as usize)
    }

    /// The probabilities from contiguous scores and mask.
    fn forward(
        scores: &CubeTensor,
        mask: &CubeTensor,
        dims: [usize; 4],
        uniform: &AttentionUniform,
    ) -> CubeTensor {
        let probs = empty_like(scores, dims);
        launch(
            "attention_softmax.wgsl",
            include_str!("../../../../shaders/attention_softmax.wgsl"),
            uniform,
        )
        .buffer(scores)
        .buffer(mask)
        .buffer(&probs)
        .run(uniform);
        probs
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        probs: CubeTensor,
        dims: [usize; 4],
        uniform: AttentionUniform,
    }

    /// burn-autodiff's backward step of [`attention_softmax`]: one parent, the scores.
    #[derive(Debug)]
    struct AttentionSoftmaxBackward;

    impl Backward<CubeBackend, 1> for AttentionSoftmaxBackward {
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
            unary::<CubeBackend, _>(parents, node, grads, |dprobs| {
                let dscores = empty_like(&state.probs, state.dims);
                launch(
                    "attention_softmax_grad.wgsl",
                    include_str!("../../../../shaders/attention_softmax_grad.wgsl"),
                    &state.uniform,
                )
                .buffer(&state.probs)
                .buffer(&contiguous(dprobs))
                .buffer(&dscores)
                .run(&state.uniform);
                dscores
            });
        }
    }

    pub(super) fn attention_softmax(scores: Tensor<4>, scale: f64, mask: Tensor<4>) -> Tensor<4> {
        let dims = scores.dims();
        let [batch, heads, queries, keys] = dims;
        let [mask_batch, _, mask_queries, _] = mask.dims();
        let size = |n: usize| u32::try_from(n).expect("`applies` checked the size");
        let uniform = AttentionUniform {
            rows: size(batch * heads * queries),
            cols: size(keys),
            scale: scale as f32,
            batch_rows: size(heads * queries),
            queries: size(queries),
            bias_batch_stride: if mask_batch == 1 {
                0
            } else {
                size(mask_queries * keys)
            },
            bias_query_stride: if mask_queries == 1 { 0 } else { size(keys) },
        };
        let mask = contiguous(cube_tensor(mask.without_autodiff()));
        if !scores.is_autodiff() {
            return burn_tensor(forward(
                &contiguous(cube_tensor(scores)),
                &mask,
                dims,
                &uniform,
            ));
        }
        let (scores, node) = tracked(scores);
        let probs = forward(&scores, &mask, dims, &uniform);
        record(
            AttentionSoftmaxBackward,
            [node],
            |probs| State {
                probs: probs.clone(),
                dims,
                uniform,
            },
            probs,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, attention_softmax, composed};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::rng::Rng;

    /// Seeded raw scores of spread 8 (so the softmax is far from uniform), an additive mask of
    /// the given shape with every third key of each mask row blocked (-1e9) and small offsets
    /// on the rest, and an upstream gradient.
    struct Case {
        dims: [usize; 4],
        mask_dims: [usize; 4],
        scores: Vec<f32>,
        mask: Vec<f32>,
        upstream: Vec<f32>,
    }

    impl Case {
        fn new(dims: [usize; 4], mask_dims: [usize; 4]) -> Self {
            let n = dims.iter().product::<usize>();
            let mut rng = Rng::new(n as u64 * 31 + mask_dims[2] as u64);
            let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
                (0..n)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                    .collect()
            };
            let scores = uniform(n, 8.0);
            let upstream = uniform(n, 1.0);
            let keys = mask_dims[3];
            let mask = uniform(mask_dims.iter().product(), 0.5)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if i % keys % 3 == 2 { -1e9 } else { v })
                .collect();
            Self {
                dims,
                mask_dims,
                scores,
                mask,
                upstream,
            }
        }

        /// The probabilities and the scores' gradient of `sum(p * upstream)`; the kernels
        /// launched for the forward pass and in all.
        fn run(
            &self,
            device: &Device,
            fused: bool,
            scale: f64,
        ) -> (Vec<f32>, Vec<f32>, usize, usize) {
            let scores: Tensor<4> =
                Tensor::from_data(TensorData::new(self.scores.clone(), self.dims), device)
                    .require_grad();
            let mask: Tensor<4> =
                Tensor::from_data(TensorData::new(self.mask.clone(), self.mask_dims), device);
            let upstream: Tensor<4> =
                Tensor::from_data(TensorData::new(self.upstream.clone(), self.dims), device);
            let before = launched();
            let probs = if fused {
                assert!(applies(&scores, &mask), "the kernel applies");
                attention_softmax(scores.clone(), scale, mask)
            } else {
                composed(scores.clone(), scale, mask)
            };
            let forward = launched() - before;
            let grads = (probs.clone() * upstream).sum().backward();
            (
                read(probs),
                read(scores.grad(&grads).expect("the scores have a gradient")),
                forward,
                launched() - before,
            )
        }
    }

    /// Probabilities and the scores' gradient through the kernels on wgpu against burn's
    /// composed scale, mask and softmax (and burn-autodiff's gradient of them) on flex: key
    /// counts around each step of the threads per row (1 thread up to 32 keys, 2 up to 64, ...),
    /// one key (probability 1, gradient 0), a BERT padding mask (per batch item, all queries),
    /// a GPT causal one (all batch items, per query), a full one, and a decoding window (fewer
    /// queries than keys).
    #[test]
    fn fused_attention_softmax_matches_burns_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for (dims, mask_dims) in [
            ([1, 1, 1, 1], [1, 1, 1, 1]),
            ([2, 3, 5, 5], [2, 1, 1, 5]),
            ([3, 2, 16, 16], [1, 1, 16, 16]),
            ([2, 2, 7, 33], [2, 1, 7, 33]),
            ([1, 4, 3, 64], [1, 1, 3, 64]),
            ([2, 12, 9, 128], [2, 1, 1, 128]),
            ([1, 2, 2, 300], [1, 1, 2, 300]),
            ([1, 1, 3, 2000], [1, 1, 1, 2000]),
            ([5, 3, 17, 31], [1, 1, 1, 31]),
        ] {
            let case = Case::new(dims, mask_dims);
            let what = format!("scores {dims:?}, mask {mask_dims:?}");
            let scale = 1.0 / (dims[3] as f64).sqrt().max(1.0);
            let (probs, dscores, forward, launches) = case.run(&wgpu, true, scale);
            assert_eq!(forward, 1, "{what}: one forward dispatch");
            assert_eq!(launches, 2, "{what}: and one backward");
            let (want_probs, want_dscores, _, _) = case.run(&flex, false, scale);
            // Sums of up to 2,000 exponentials in another order: 1e-5.
            assert_close(&format!("{what}: probs"), &probs, &want_probs, 1e-5, 1e-3);
            // The gradient is p (dp - sum(dp p)), a difference that nearly cancels for keys
            // whose upstream gradient is close to the row's mean: judged against 1% of the
            // largest value, as its rounding is.
            assert_close(
                &format!("{what}: dscores"),
                &dscores,
                &want_dscores,
                1e-4,
                1e-2,
            );
            // Blocked keys get nothing: masked out exactly, as in the composed path.
            let keys = dims[3];
            if keys >= 3 {
                assert_eq!(probs[2], 0.0, "{what}: a blocked key");
            }
            for row in probs.chunks(keys) {
                let total: f32 = row.iter().sum();
                assert!((total - 1.0).abs() < 1e-5, "{what}: a row sums to {total}");
            }
        }
    }

    /// A query whose every key is masked (a padding row of a batch of one sequence) attends
    /// uniformly, as the composed path does, instead of dividing by zero.
    #[test]
    fn a_fully_masked_row_attends_uniformly() {
        let device = kernels::test_device();
        let scores =
            Tensor::<4>::from_data(TensorData::new(vec![3.0, -1.0, 0.5], [1, 1, 1, 3]), &device);
        let mask = Tensor::<4>::full([1, 1, 1, 3], -1e9, &device);
        let probs = read(attention_softmax(scores, 0.5, mask));
        for p in probs {
            assert!((p - 1.0 / 3.0).abs() < 1e-6, "{p}");
        }
    }

    /// Without autodiff (evaluation, generation): one dispatch, the same values.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let case = Case::new([2, 2, 4, 40], [2, 1, 1, 40]);
        let device = kernels::test_device();
        let scores =
            Tensor::<4>::from_data(TensorData::new(case.scores.clone(), case.dims), &device);
        let mask =
            Tensor::<4>::from_data(TensorData::new(case.mask.clone(), case.mask_dims), &device);
        let before = launched();
        let probs = read(attention_softmax(scores, 0.25, mask));
        assert_eq!(launched() - before, 1);
        let (want, _, _, _) = case.run(&Device::flex().autodiff(), false, 0.25);
        assert_close("untracked probs", &probs, &want, 1e-5, 1e-3);
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_on_odd_masks_or_a_tracked_mask() {
        let flex = Device::flex();
        let scores = |d: &Device| Tensor::<4>::zeros([2, 3, 4, 5], d);
        assert!(!applies(
            &scores(&flex),
            &Tensor::zeros([2, 1, 1, 5], &flex)
        ));
        let wgpu = kernels::test_device();
        assert!(applies(&scores(&wgpu), &Tensor::zeros([2, 1, 4, 5], &wgpu)));
        for mask in [[3, 1, 1, 5], [2, 3, 1, 5], [2, 1, 2, 5], [2, 1, 1, 4]] {
            assert!(
                !applies(&scores(&wgpu), &Tensor::zeros(mask, &wgpu)),
                "mask {mask:?}"
            );
        }
        let tracked = wgpu.autodiff();
        assert!(
            !applies(
                &scores(&tracked),
                &Tensor::zeros([2, 1, 1, 5], &tracked).require_grad()
            ),
            "a mask that wants a gradient"
        );
    }
}
