//! Fused self-attention (`shaders/attention.wgsl` forward, `attention_grad_queries.wgsl` and
//! `attention_grad_keys.wgsl` backward): the whole attention core of a transformer layer, from
//! the packed query/key/value projection `[batch, len, 3 * hidden]` to the merged context
//! `[batch, len, hidden]`, in one dispatch, and its gradient in two. It replaces the head split
//! and merge copies, both matrix products, the softmax (or `attention.rs`'s fused one) and
//! dropout, a dozen launches or more forward and about twenty backward per layer, and keeps no
//! `[batch, heads, len, len]` probabilities: the backward kernels recompute them from each row's
//! maximum and sum.
//!
//! One thread per query (forward, queries' gradient) or key (keys' and values' gradient) with
//! its head's vector in registers: meant for the small heads of the models burnish trains (head
//! size a multiple of 4, at most 64: MiniLM's 32, the GPT's) and sequences of hundreds of tokens;
//! bigger heads keep burn's matrix products with the fused softmax.
//!
//! On an autodiff device the forward pass registers its own backward step in burn's graph; the
//! additive mask is a constant (no gradient), and the dropout mask is computed in the kernels
//! from its seed (`shaders/dropout_mask.wgsl`), never stored.

use burn::prelude::*;

use super::uniform;
use crate::model::DropMask;

/// The largest head size the kernels keep in registers.
const MAX_HEAD: usize = 64;

uniform!(
    /// The uniform block of the three self-attention kernels.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    SelfAttentionUniform {
        /// batch * heads * len: the threads
        rows: u32,
        /// tokens per sequence (keys)
        len: u32,
        /// queries per sequence: the last `queries` tokens (all of them but when decoding)
        queries: u32,
        /// len - queries
        offset: u32,
        heads: u32,
        /// heads * head size
        hidden: u32,
        scale: f32,
        /// The additive mask's stride between batch items (0: one mask for all) ...
        bias_batch_stride: u32,
        /// ... and between queries (0: one row for all).
        bias_query_stride: u32,
        /// The dropout mask's seed, keep probability and scale (`has_drop` only).
        seed: u32,
        keep: f32,
        drop_scale: f32,
    }
);

/// Whether the kernels take heads of `head` values: a multiple of 4 (read as `vec4`s), at most
/// [`MAX_HEAD`] (kept in registers).
pub(crate) fn head_fits(head: usize) -> bool {
    head.is_multiple_of(4) && (4..=MAX_HEAD).contains(&head)
}

/// Whether the kernels can take queries, keys and values of `dims` (`[batch, len, hidden]`,
/// `heads` heads; `projection` is one of them, or all packed) and the additive `bias`
/// (`[batch or 1, 1, len or 1, len]`): `f32` on a wgpu device, the mask not tracked, a head size
/// that is a multiple of 4 and at most 64, every index (the dropout mask's
/// `[batch, heads, len, len]` too) within `u32`.
pub(crate) fn applies(
    projection: &Tensor<3>,
    dims: [usize; 3],
    heads: usize,
    bias: &Tensor<4>,
) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [batch, len, hidden] = dims;
        let head = hidden.checked_div(heads).unwrap_or(0);
        let [bias_batch, bias_heads, bias_queries, bias_keys] = bias.dims();
        super::applies(&[projection])
            && super::applies(&[bias])
            && !bias.is_tracked()
            && heads > 0
            && hidden == heads * head
            && head_fits(head)
            && len > 0
            && [1, batch].contains(&bias_batch)
            && bias_heads == 1
            && [1, len].contains(&bias_queries)
            && bias_keys == len
            && u32::try_from(batch * heads * len * len).is_ok()
            && u32::try_from(batch * len * 3 * hidden).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (projection, dims, heads, bias);
        false
    }
}

/// `softmax(q k^T * scale + bias) * drop` times `v`, per head (`drop` the dropout mask over
/// `[batch, heads, len, len]`, computed in the kernels), merged back to
/// `[batch, len, hidden]`, differentiable with respect to `qkv`. Call only where [`applies`]
/// said yes (with `qkv` packed: `[batch, len, 3 * hidden]`).
pub(crate) fn attention(
    qkv: Tensor<3>,
    heads: usize,
    scale: f64,
    bias: Tensor<4>,
    drop: Option<DropMask>,
) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    {
        let len = qkv.dims()[1];
        wgpu::attention(qkv, len, heads, scale, bias, drop)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (heads, scale, bias, drop);
        unreachable!("the fused self-attention needs the wgpu feature; `applies` said no: {qkv:?}")
    }
}

/// Whether [`decode`] can take the packed projections `qkv` of all `len` tokens so far
/// (`[batch, len, 3 * hidden]`, `heads` heads), the last `queries` of them new, and `bias`
/// (`[batch or 1, 1, queries or 1, len]`): as [`applies`], on a device without autodiff
/// (generation).
pub(crate) fn applies_decode(
    qkv: &Tensor<3>,
    queries: usize,
    heads: usize,
    bias: &Tensor<4>,
) -> bool {
    #[cfg(feature = "wgpu")]
    {
        let [batch, len, width] = qkv.dims();
        let hidden = width / 3;
        let head = hidden.checked_div(heads).unwrap_or(0);
        let [bias_batch, bias_heads, bias_queries, bias_keys] = bias.dims();
        super::applies(&[qkv])
            && super::applies(&[bias])
            && !qkv.is_autodiff()
            && !bias.is_autodiff()
            && width == 3 * hidden
            && hidden == heads * head
            && head_fits(head)
            && (1..=len).contains(&queries)
            && [1, batch].contains(&bias_batch)
            && bias_heads == 1
            && [1, queries].contains(&bias_queries)
            && bias_keys == len
            && u32::try_from(batch * heads * queries * len).is_ok()
            && u32::try_from(batch * len * width).is_ok()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (qkv, queries, heads, bias);
        false
    }
}

/// The context `[batch, queries, hidden]` of the last `queries` tokens of `qkv` attending to all
/// `len` (decoding with a cache: the keys and values so far are the cache's rows, the new ones
/// appended), forward only, no dropout. Call only where [`applies_decode`] said yes.
pub(crate) fn decode(
    qkv: Tensor<3>,
    queries: usize,
    heads: usize,
    scale: f64,
    bias: Tensor<4>,
) -> Tensor<3> {
    #[cfg(feature = "wgpu")]
    {
        wgpu::attention(qkv, queries, heads, scale, bias, None)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (queries, heads, scale, bias);
        unreachable!("the fused self-attention needs the wgpu feature; `applies` said no: {qkv:?}")
    }
}

/// The heads of a `[batch, len, hidden]` projection as `[batch, heads, len, head]`.
pub(crate) fn split_heads(t: Tensor<3>, heads: usize) -> Tensor<4> {
    let [batch, len, hidden] = t.dims();
    t.reshape([batch, len, heads, hidden / heads])
        .swap_dims(1, 2)
}

/// burn's composed equivalent of [`attention`] (scores, `probs` from them, dropout, context):
/// the reference, and the path where the kernels do not apply. `probs` turns the scaled,
/// masked scores' inputs into probabilities (the caller's softmax: burn's or `attention.rs`'s).
pub(crate) fn composed(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    drop: Option<Tensor<4>>,
    probs: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<3> {
    let [batch, heads, len, head] = q.dims();
    let p = probs(q.matmul(k.transpose()));
    let p = match drop {
        Some(drop) => p * drop,
        None => p,
    };
    p.matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, len, heads * head])
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, unary};
    use burn::prelude::*;
    use burn_wgpu::{CubeBackend, CubeTensor};

    use super::SelfAttentionUniform;
    use crate::kernels::registry::{
        Launch, WgslKernel, burn_tensor, contiguous, cube_tensor, empty_like, record, tracked,
    };
    use crate::model::DropMask;

    /// What the kernels are specialised on besides the uniform block.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        batch: usize,
        /// queries per sequence (the backward pass only runs with `queries == len`)
        queries: usize,
        len: usize,
        hidden: usize,
        /// head size / 4
        head4: usize,
        has_drop: bool,
    }

    fn launch(
        name: &'static str,
        source: &'static str,
        shape: Shape,
        uniform: &SelfAttentionUniform,
    ) -> Launch {
        let kernel = WgslKernel::new(name, source)
            .uniform::<SelfAttentionUniform>()
            .item("dh4", shape.head4.to_string())
            .item("has_drop", shape.has_drop.to_string());
        Launch::new(kernel, uniform.rows as usize)
    }

    /// The context `[batch, len, hidden]` and the rows' statistics (`[3 * rows]`: each row's
    /// maximum and reciprocal sum written here, room for the backward pass's D).
    fn forward(
        qkv: &CubeTensor,
        bias: &CubeTensor,
        shape: Shape,
        uniform: &SelfAttentionUniform,
    ) -> (CubeTensor, CubeTensor) {
        let out = empty_like(qkv, [shape.batch, shape.queries, shape.hidden]);
        let stats = empty_like(qkv, [3 * uniform.rows as usize]);
        launch(
            "attention.wgsl",
            include_str!("../../../../shaders/attention.wgsl"),
            shape,
            uniform,
        )
        .buffer(qkv)
        .buffer(bias)
        .buffer(&out)
        .buffer(&stats)
        .run(uniform);
        (out, stats)
    }

    /// What the backward step keeps from the forward pass.
    #[derive(Debug, Clone)]
    struct State {
        qkv: CubeTensor,
        bias: CubeTensor,
        out: CubeTensor,
        stats: CubeTensor,
        shape: Shape,
        uniform: SelfAttentionUniform,
    }

    /// burn-autodiff's backward step of [`attention`]: one parent, the packed projection.
    #[derive(Debug)]
    struct SelfAttentionBackward;

    impl Backward<CubeBackend, 1> for SelfAttentionBackward {
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
                state: s,
            } = ops;
            unary::<CubeBackend, _>(parents, node, grads, |dout| {
                let dout = contiguous(dout);
                let dqkv = empty_like(&s.qkv, [s.shape.batch, s.shape.len, 3 * s.shape.hidden]);
                launch(
                    "attention_grad_queries.wgsl",
                    include_str!("../../../../shaders/attention_grad_queries.wgsl"),
                    s.shape,
                    &s.uniform,
                )
                .buffer(&s.qkv)
                .buffer(&s.bias)
                .buffer(&dout)
                .buffer(&s.out)
                .buffer(&s.stats)
                .buffer(&dqkv)
                .run(&s.uniform);
                launch(
                    "attention_grad_keys.wgsl",
                    include_str!("../../../../shaders/attention_grad_keys.wgsl"),
                    s.shape,
                    &s.uniform,
                )
                .buffer(&s.qkv)
                .buffer(&s.bias)
                .buffer(&dout)
                .buffer(&s.stats)
                .buffer(&dqkv)
                .run(&s.uniform);
                dqkv
            });
        }
    }

    /// The context of the last `queries` tokens (all of them for training).
    pub(super) fn attention(
        qkv: Tensor<3>,
        queries: usize,
        heads: usize,
        scale: f64,
        bias: Tensor<4>,
        drop: Option<DropMask>,
    ) -> Tensor<3> {
        let [batch, len, width] = qkv.dims();
        let hidden = width / 3;
        let [bias_batch, _, bias_queries, _] = bias.dims();
        let size = |n: usize| u32::try_from(n).expect("`applies` checked the size");
        let shape = Shape {
            batch,
            queries,
            len,
            hidden,
            head4: hidden / heads / 4,
            has_drop: drop.is_some(),
        };
        let drop = drop.unwrap_or(DropMask {
            seed: 0,
            keep: 1.0,
            scale: 1.0,
        });
        let uniform = SelfAttentionUniform {
            rows: size(batch * heads * queries),
            len: size(len),
            queries: size(queries),
            offset: size(len - queries),
            heads: size(heads),
            hidden: size(hidden),
            scale: scale as f32,
            bias_batch_stride: if bias_batch == 1 {
                0
            } else {
                size(bias_queries * len)
            },
            bias_query_stride: if bias_queries == 1 { 0 } else { size(len) },
            seed: drop.seed,
            keep: drop.keep,
            drop_scale: drop.scale,
        };
        let bias = contiguous(cube_tensor(bias.without_autodiff()));
        if !qkv.is_autodiff() {
            let qkv = contiguous(cube_tensor(qkv));
            return burn_tensor(forward(&qkv, &bias, shape, &uniform).0);
        }
        assert_eq!(
            queries, len,
            "`applies` allows decoding only without autodiff"
        );
        let (qkv, node) = tracked(qkv);
        let (out, stats) = forward(&qkv, &bias, shape, &uniform);
        record(
            SelfAttentionBackward,
            [node],
            |out| State {
                qkv: qkv.clone(),
                bias,
                out: out.clone(),
                stats,
                shape,
                uniform,
            },
            out,
        )
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{applies, applies_decode, attention, composed, decode, split_heads};
    use crate::kernels;
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::model::DropMask;
    use crate::rng::Rng;

    /// Seeded projections of spread 2 (scores spread enough that the softmax is far from
    /// uniform), an additive mask of the given shape with every third key of each mask row
    /// blocked (-1e9, as the models' padding and causal masks) and small offsets on the rest,
    /// optionally a dropout mask (a third of the probabilities dropped, the rest scaled by 1.5:
    /// computed in the kernels, and on the host for the composed reference), and an upstream
    /// gradient.
    struct Case {
        dims: [usize; 3],
        heads: usize,
        bias_dims: [usize; 4],
        qkv: Vec<f32>,
        bias: Vec<f32>,
        drop: Option<DropMask>,
        upstream: Vec<f32>,
    }

    impl Case {
        fn new(dims: [usize; 3], heads: usize, bias_dims: [usize; 4], dropout: bool) -> Self {
            let [batch, len, hidden] = dims;
            let mut rng = Rng::new((batch * 1000 + len * 10 + heads) as u64);
            let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
                (0..n)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                    .collect()
            };
            let qkv = uniform(batch * len * 3 * hidden, 2.0);
            let upstream = uniform(batch * len * hidden, 1.0);
            let keys = bias_dims[3];
            let bias = uniform(bias_dims.iter().product(), 0.5)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if i % keys % 3 == 2 { -1e9 } else { v })
                .collect();
            let drop = dropout.then(|| DropMask::new(len as u32 * 7 + 1, 1.0 / 3.0));
            Self {
                dims,
                heads,
                bias_dims,
                qkv,
                bias,
                drop,
                upstream,
            }
        }

        /// The context and the gradient of `sum(context * upstream)` with respect to `qkv`; the
        /// kernels launched for the forward pass and in all.
        fn run(&self, device: &Device, fused: bool) -> (Vec<f32>, Vec<f32>, usize, usize) {
            let [batch, len, hidden] = self.dims;
            let qkv: Tensor<3> = Tensor::from_data(
                TensorData::new(self.qkv.clone(), [batch, len, 3 * hidden]),
                device,
            )
            .require_grad();
            let bias: Tensor<4> =
                Tensor::from_data(TensorData::new(self.bias.clone(), self.bias_dims), device);
            let upstream: Tensor<3> =
                Tensor::from_data(TensorData::new(self.upstream.clone(), self.dims), device);
            let scale = 1.0 / ((hidden / self.heads) as f64).sqrt();
            let before = launched();
            let context = if fused {
                assert!(
                    applies(&qkv, self.dims, self.heads, &bias),
                    "the kernels apply"
                );
                attention(qkv.clone(), self.heads, scale, bias, self.drop)
            } else {
                let part =
                    |i: usize| split_heads(qkv.clone().narrow(2, i * hidden, hidden), self.heads);
                let drop = self
                    .drop
                    .map(|m| m.tensor([batch, self.heads, len, len], device));
                composed(part(0), part(1), part(2), drop, |scores| {
                    kernels::attention::composed(scores, scale, bias)
                })
            };
            let forward = launched() - before;
            let grads = (context.clone() * upstream).sum().backward();
            (
                read(context),
                read(qkv.grad(&grads).expect("qkv has a gradient")),
                forward,
                launched() - before,
            )
        }
    }

    /// The context and the projection's gradient through the kernels on wgpu against burn's
    /// composed split, products, softmax, dropout and merge (and burn-autodiff's gradient of
    /// them) on flex: one token; head sizes 4 to 64; one to six heads; BERT padding masks (per
    /// batch item), GPT causal ones (per query), one mask for all; odd lengths and one past a
    /// workgroup's threads; with and without dropout.
    #[test]
    fn fused_self_attention_matches_burns_composed_one() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for (dims, heads, bias_dims, dropout) in [
            ([1, 1, 4], 1, [1, 1, 1, 1], false),
            ([2, 5, 8], 2, [2, 1, 1, 5], false),
            ([2, 5, 8], 2, [2, 1, 1, 5], true),
            ([3, 16, 64], 2, [1, 1, 16, 16], false),
            ([1, 9, 64], 1, [1, 1, 9, 9], true),
            ([2, 7, 96], 6, [2, 1, 7, 7], true),
            ([1, 33, 48], 3, [1, 1, 1, 33], false),
            ([1, 257, 8], 2, [1, 1, 257, 257], false),
        ] {
            let case = Case::new(dims, heads, bias_dims, dropout);
            let what = format!("{dims:?}, {heads} heads, mask {bias_dims:?}, dropout {dropout}");
            let (context, dqkv, forward, launches) = case.run(&wgpu, true);
            assert_eq!(forward, 1, "{what}: one forward dispatch");
            assert_eq!(launches, 3, "{what}: and two backward");
            let (want_context, want_dqkv, _, _) = case.run(&flex, false);
            // Weighted sums of values of either sign, some nearly cancelling (and gradients
            // built from differences that do): judged against 1% of the largest value, as
            // their rounding is.
            assert_close(
                &format!("{what}: context"),
                &context,
                &want_context,
                1e-4,
                1e-2,
            );
            assert_close(&format!("{what}: dqkv"), &dqkv, &want_dqkv, 1e-3, 1e-2);
        }
    }

    /// A sequence whose every key is masked (a padding row) attends uniformly, as burn's
    /// softmax of equal scores does, forward and backward: the backward kernels recompute the
    /// probabilities from the row's maximum and sum, which stay exact where a log-sum-exp
    /// would round back to the mask's -1e9 and give every key probability 1.
    #[test]
    fn a_fully_masked_sequence_attends_uniformly() {
        let mut case = Case::new([2, 5, 8], 2, [2, 1, 1, 5], false);
        for v in &mut case.bias[5..] {
            *v = -1e9;
        }
        let (context, dqkv, _, _) = case.run(&kernels::test_device().autodiff(), true);
        let (want_context, want_dqkv, _, _) = case.run(&Device::flex().autodiff(), false);
        assert_close("masked context", &context, &want_context, 1e-4, 1e-2);
        assert_close("masked dqkv", &dqkv, &want_dqkv, 1e-3, 1e-2);
    }

    /// Decoding with a cache: the last 1 or 3 of 9 tokens (and all 9) attending to every token
    /// through a causal window mask, one dispatch, the context of burn's composed products over
    /// the same rows; refused with autodiff or a mask of another window.
    #[test]
    fn decoding_the_last_tokens_matches_the_composed_attention() {
        let (batch, len, hidden, heads) = (2, 9, 16, 2);
        let device = kernels::test_device();
        let case = Case::new([batch, len, hidden], heads, [1, 1, 1, len], false);
        let qkv = Tensor::<3>::from_data(
            TensorData::new(case.qkv.clone(), [batch, len, 3 * hidden]),
            &device,
        );
        let scale = 1.0 / 8f64.sqrt();
        for queries in [1, 3, len] {
            let start = len - queries;
            let causal: Vec<f32> = (0..queries)
                .flat_map(|i| (0..len).map(move |j| if j > start + i { -1e9 } else { 0.0 }))
                .collect();
            let bias =
                Tensor::<4>::from_data(TensorData::new(causal, [1, 1, queries, len]), &device);
            assert!(applies_decode(&qkv, queries, heads, &bias));
            let before = launched();
            let got = read(decode(qkv.clone(), queries, heads, scale, bias.clone()));
            assert_eq!(launched() - before, 1, "{queries} queries");
            let part = |i: usize| qkv.clone().narrow(2, i * hidden, hidden);
            let want = read(composed(
                split_heads(part(0).narrow(1, start, queries), heads),
                split_heads(part(1), heads),
                split_heads(part(2), heads),
                None,
                |scores| kernels::attention::composed(scores, scale, bias.clone()),
            ));
            assert_close(&format!("{queries} queries"), &got, &want, 1e-4, 1e-2);
        }
        let window = Tensor::<4>::zeros([1, 1, 2, len], &device);
        assert!(
            !applies_decode(&qkv, 3, heads, &window),
            "a mask of two queries"
        );
        let tracked = device.autodiff();
        let qkv_tracked = Tensor::<3>::zeros([batch, len, 3 * hidden], &tracked);
        let bias = Tensor::<4>::zeros([1, 1, 1, len], &tracked);
        assert!(!applies_decode(&qkv_tracked, 1, heads, &bias), "autodiff");
    }

    /// Without autodiff (evaluation, prediction): one dispatch, the same context.
    #[test]
    fn the_untracked_path_gives_the_same_values() {
        let case = Case::new([2, 6, 16], 2, [2, 1, 1, 6], false);
        let device = kernels::test_device();
        let qkv = Tensor::<3>::from_data(TensorData::new(case.qkv.clone(), [2, 6, 48]), &device);
        let bias =
            Tensor::<4>::from_data(TensorData::new(case.bias.clone(), case.bias_dims), &device);
        let before = launched();
        let context = read(attention(qkv, 2, 1.0 / 8f64.sqrt(), bias, None));
        assert_eq!(launched() - before, 1);
        let (want, _, _, _) = case.run(&Device::flex().autodiff(), false);
        assert_close("untracked context", &context, &want, 1e-4, 1e-3);
    }

    #[test]
    fn the_kernels_are_not_used_off_wgpu_on_odd_heads_or_masks_or_tracked_masks() {
        let qkv = |d: &Device, hidden: usize| Tensor::<3>::zeros([2, 5, 3 * hidden], d);
        let bias = |d: &Device, dims: [usize; 4]| Tensor::<4>::zeros(dims, d);
        let flex = Device::flex();
        assert!(!applies(
            &qkv(&flex, 8),
            [2, 5, 8],
            2,
            &bias(&flex, [2, 1, 1, 5])
        ));
        let wgpu = kernels::test_device();
        let ok = bias(&wgpu, [2, 1, 1, 5]);
        assert!(applies(&qkv(&wgpu, 8), [2, 5, 8], 2, &ok));
        assert!(
            applies(&qkv(&wgpu, 128), [2, 5, 128], 2, &ok),
            "heads of 64"
        );
        // Heads of 6 (not a multiple of 4), 2 and 68 (past the registers' 64), a hidden size
        // that the heads do not divide, no heads.
        for (hidden, heads) in [(12, 2), (4, 2), (136, 2), (10, 4), (8, 0)] {
            assert!(
                !applies(&qkv(&wgpu, hidden), [2, 5, hidden], heads, &ok),
                "hidden {hidden}, {heads} heads"
            );
        }
        for dims in [[3, 1, 1, 5], [2, 2, 1, 5], [2, 1, 2, 5], [2, 1, 1, 4]] {
            assert!(
                !applies(&qkv(&wgpu, 8), [2, 5, 8], 2, &bias(&wgpu, dims)),
                "mask {dims:?}"
            );
        }
        let tracked = wgpu.autodiff();
        let wants_grad = bias(&tracked, [2, 1, 1, 5]).require_grad();
        assert!(
            !applies(&qkv(&tracked, 8), [2, 5, 8], 2, &wants_grad),
            "a mask that wants a gradient"
        );
    }
}
