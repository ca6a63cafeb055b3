//! Dropout with masks from the trainer's portable [`Rng`], instead of the backend's global
//! generator: a seed then repeats a run with dropout exactly, on every backend alike, whatever
//! else uses the device. Each mask takes one draw, its seed; its values come from a
//! counter-based hash of (seed, index) ([`DropMask::value`]), which the kernels compute in place
//! on wgpu (`shaders/dropout_mask.wgsl`, the same bits), so no mask is drawn value by value on
//! the host or uploaded there; elsewhere the host computes it.

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::prelude::*;

use super::lora::{AdaptedLinear, add_scaled};
use crate::kernels;
use crate::rng::Rng;

/// `x` as `[rows, width]`, every leading dimension folded into the rows: the form the 2-D
/// kernels take.
pub(crate) fn rows<const D: usize>(x: &Tensor<D>) -> Tensor<2> {
    let dims = x.dims();
    x.clone()
        .reshape([dims[..D - 1].iter().product(), dims[D - 1]])
}

/// A 2-D kernel's `[rows, width]` output back in the leading dimensions `like` of its input.
pub(crate) fn unrows<const D: usize>(y: Tensor<2>, like: [usize; D]) -> Tensor<D> {
    let mut dims = like;
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// A dropout mask: `scale` (`1 / keep`) with probability `keep`, else 0, at each flat index,
/// from its `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropMask {
    pub(crate) seed: u32,
    pub(crate) keep: f32,
    pub(crate) scale: f32,
}

impl DropMask {
    /// The mask of dropout probability `p` (in `(0, 1)`) from `seed`.
    pub(crate) fn new(seed: u32, p: f64) -> Self {
        Self {
            seed,
            keep: (1.0 - p) as f32,
            scale: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// The mask's value at flat index `index`: a counter-based hash of the index and the seed
    /// ("lowbias32", C. Wellons' integer hash), its top 24 bits as a uniform float in `[0, 1)`
    /// compared with `keep`. `shaders/dropout_mask.wgsl` is the same function, bit for bit.
    pub(crate) fn value(&self, index: u32) -> f32 {
        let mut x = index ^ self.seed;
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        let u = (x >> 8) as f32 * (1.0 / 16_777_216.0);
        if u < self.keep { self.scale } else { 0.0 }
    }

    /// The mask over a tensor of `dims` (row-major flat indices), computed on the host.
    pub(crate) fn tensor<const D: usize>(&self, dims: [usize; D], device: &Device) -> Tensor<D> {
        let n = dims.iter().product::<usize>();
        let values: Vec<f32> = (0..n).map(|i| self.value(i as u32)).collect();
        Tensor::<D>::from_data(TensorData::new(values, dims), device)
    }
}

/// The query, key and value projections of an attention layer: `[batch, len, hidden]` each
/// (BERT's three layers), or side by side in one `[batch, len, 3 * hidden]` tensor (GPT-2's
/// `c_attn`).
// Built once per layer and consumed at once: boxing the three tensors would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub enum Projections {
    /// `[batch, len, 3 * hidden]`: queries, keys and values side by side.
    Packed(Tensor<3>),
    /// Queries, keys and values, `[batch, len, hidden]` each.
    Separate(Tensor<3>, Tensor<3>, Tensor<3>),
}

impl Projections {
    /// `[batch, len, hidden]` of the queries.
    fn query_dims(&self) -> [usize; 3] {
        match self {
            Self::Packed(qkv) => {
                let [batch, len, width] = qkv.dims();
                [batch, len, width / 3]
            }
            Self::Separate(q, _, _) => q.dims(),
        }
    }
}

/// Where a forward pass draws dropout masks from: nowhere (evaluation, prediction) or a
/// generator (training); and whether its layers may use burnish's fused kernels (on by default;
/// a trainer passes its `fused_kernels`).
pub struct Masks<'a> {
    rng: Option<&'a mut Rng>,
    fused_kernels: bool,
    half: bool,
}

impl<'a> Masks<'a> {
    /// No dropout: the layers pass values through.
    pub fn none() -> Self {
        Self {
            rng: None,
            fused_kernels: true,
            half: false,
        }
    }

    /// Dropout with masks from `rng`.
    pub fn from(rng: &'a mut Rng) -> Self {
        Self {
            rng: Some(rng),
            fused_kernels: true,
            half: false,
        }
    }

    /// Whether layers may use the fused kernels where they apply (`false`: burn's composed
    /// operations only, the reference the kernels are measured against).
    #[must_use]
    pub fn with_fused_kernels(mut self, on: bool) -> Self {
        self.fused_kernels = on;
        self
    }

    /// Whether the dense layers' matrix products take half-precision inputs (a trainer passes
    /// `true` where its recipe asks for `f16` and the device has `shader-f16`; off by default).
    #[must_use]
    pub fn with_half_products(mut self, on: bool) -> Self {
        self.half = on;
        self
    }

    /// `x w` (`w` `[d_in, d_out]`, broadcast over `x`'s leading dimensions): in f32 (through
    /// `kernels::linear`'s product where it takes it and fused kernels are allowed, else
    /// burn's), or with both inputs cast to f16 and burn's product cast back to f32 when
    /// half-precision products are on. Autodiff carries the casts, so the backward products run in f16 too and the
    /// gradients come back f32.
    pub fn product<const D: usize>(&self, x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
        if self.half {
            use burn::tensor::FloatDType;
            let x = x.cast(FloatDType::F16);
            let w: Tensor<D> = w.cast(FloatDType::F16).unsqueeze();
            x.matmul(w).cast(FloatDType::F32)
        } else {
            if self.fused_kernels {
                let flat = rows(&x);
                if kernels::linear::applies_product(&flat, &w) {
                    return unrows(kernels::linear::product(flat, w), x.dims());
                }
            }
            x.matmul(w.unsqueeze())
        }
    }

    /// Whether half-precision products are on.
    pub(crate) fn half(&self) -> bool {
        self.half
    }

    /// Whether layers may use the fused kernels where they apply.
    pub(crate) fn fused(&self) -> bool {
        self.fused_kernels
    }

    /// A CNN block: `conv` (3x3, padding 1, with bias), ReLU and 2x2 max pooling of `x`,
    /// through the fused kernel (`kernels::conv_pool`) where it applies and is allowed, else
    /// burn's operations (`pool` and `activation` are the model's own modules).
    pub fn conv_block(
        &self,
        conv: &burn::nn::conv::Conv2d,
        pool: &burn::nn::pool::MaxPool2d,
        activation: &burn::nn::Relu,
        x: Tensor<4>,
    ) -> Tensor<4> {
        if self.fused_kernels
            && let Some(bias) = &conv.bias
        {
            let (w, b) = (conv.weight.val(), bias.val());
            if kernels::conv_pool::applies(&x, &w, &b) {
                return kernels::conv_pool::conv_relu_pool(x, w, b);
            }
        }
        pool.forward(activation.forward(conv.forward(x)))
    }

    /// A dense layer `layer` of `x` (over its last dimension), through ReLU when `relu`, by the
    /// fused kernel (`kernels::linear`, small products only) where it applies and is allowed,
    /// else burn's operations.
    pub fn linear<const D: usize>(
        &self,
        layer: &burn::nn::Linear,
        x: Tensor<D>,
        relu: bool,
    ) -> Tensor<D> {
        if self.fused_kernels
            && let Some(bias) = &layer.bias
        {
            let (w, b) = (layer.weight.val(), bias.val());
            let flat = rows(&x);
            if kernels::linear::applies(&flat, &w, &b) {
                return unrows(kernels::linear::linear(flat, w, b, relu), x.dims());
            }
        }
        let y = layer.forward(x);
        if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    }

    /// Layer normalisation of `x` over its last dimension by `ln`, through the fused kernel
    /// (`kernels::layer_norm`) where it applies and is allowed, else burn's own. burn's
    /// `LayerNorm` keeps its epsilon private, so the caller passes the one it built it with.
    pub fn layer_norm<const D: usize>(
        &self,
        ln: &LayerNorm,
        epsilon: f64,
        x: Tensor<D>,
    ) -> Tensor<D> {
        if self.fused_kernels {
            let gamma = ln.gamma.val();
            let beta = ln.beta.as_ref().map(Param::val);
            let flat = rows(&x);
            if kernels::layer_norm::applies(&flat, &gamma, beta.as_ref()) {
                let y = kernels::layer_norm::layer_norm(flat, gamma, beta, epsilon);
                return unrows(y, x.dims());
            }
        }
        ln.forward(x)
    }

    /// Exact GELU (`tanh` false) or its tanh approximation of every value of `x`, through the
    /// fused kernel (`kernels::gelu`) where it applies and is allowed, else the composed forms
    /// of [`super::activation`].
    pub fn gelu<const D: usize>(&self, x: Tensor<D>, tanh: bool) -> Tensor<D> {
        if self.fused_kernels && kernels::gelu::applies(&x) {
            return kernels::gelu::gelu(x, tanh);
        }
        if tanh {
            super::activation::gelu_tanh(x)
        } else {
            super::activation::gelu(x)
        }
    }

    /// Attention probabilities `softmax(scores * scale + mask)` over the keys (`scores`
    /// `[batch, heads, queries, keys]`, the additive `mask` `[batch or 1, 1, queries or 1,
    /// keys]`, a constant), through the fused kernel (`kernels::attention`) where it applies
    /// and is allowed, else burn's composed operations.
    pub fn attention_softmax(&self, scores: Tensor<4>, scale: f64, mask: Tensor<4>) -> Tensor<4> {
        if self.fused_kernels && kernels::attention::applies(&scores, &mask) {
            return kernels::attention::attention_softmax(scores, scale, mask);
        }
        kernels::attention::composed(scores, scale, mask)
    }

    /// The query, key and value projections of `x` (`[batch, len, hidden]`) by an encoder
    /// layer's three linear layers, adapters included: packed by the fused projection
    /// (`kernels::qkv`, one matrix product for all three) where it applies and is allowed,
    /// else each layer on its own. The adapters' dropout masks are drawn in the same order
    /// (query, key, value) on every path.
    pub fn projections(&mut self, layers: [&AdaptedLinear; 3], x: Tensor<3>) -> Projections {
        let biases = layers.map(|l| l.linear.bias.as_ref().map(Param::val));
        let [Some(b0), Some(b1), Some(b2)] = biases else {
            return self.separate(layers, x);
        };
        if !(self.fused_kernels && kernels::applies(&[&x])) {
            return self.separate(layers, x);
        }
        let [batch, len, d_in] = x.dims();
        let flat: Tensor<2> = x.reshape([batch * len, d_in]);
        let [e0, e1, e2] = layers.map(|l| l.low_rank(flat.clone(), self));
        let part = |l: &AdaptedLinear, b, extra: Option<(Tensor<2>, f64)>| kernels::qkv::Part {
            w: l.linear.weight.val(),
            b,
            extra: extra.map(|(e, scale)| (e, scale as f32)),
        };
        let parts = [
            part(layers[0], b0, e0),
            part(layers[1], b1, e1),
            part(layers[2], b2, e2),
        ];
        if kernels::qkv::applies(&flat, &parts) {
            let qkv = kernels::qkv::project(flat, parts, self.half);
            let width = qkv.dims()[1];
            return Projections::Packed(qkv.reshape([batch, len, width]));
        }
        // The adapters' products are drawn already: add them to burn's layers' outputs.
        let [q, k, v] = parts.map(|p| {
            let y = self.product(flat.clone(), p.w) + p.b.unsqueeze_dim(0);
            let y = match p.extra {
                Some((e, scale)) => add_scaled(y, e, f64::from(scale)),
                None => y,
            };
            let width = y.dims()[1];
            y.reshape([batch, len, width])
        });
        Projections::Separate(q, k, v)
    }

    /// Each of the three layers on its own.
    fn separate(&mut self, [q, k, v]: [&AdaptedLinear; 3], x: Tensor<3>) -> Projections {
        Projections::Separate(
            q.forward(x.clone(), self),
            k.forward(x.clone(), self),
            v.forward(x, self),
        )
    }

    /// A post-norm transformer layer's end: `layer_norm(res + dropout(layer(input)))` with
    /// `ln` (BERT's attention output and feed-forward output, `res` the layer's input to that
    /// block). The layer's bias add, the dropout, the residual add and the layer norm run as
    /// one kernel (`kernels::layer_norm::residual_layer_norm`) after the layer's product
    /// (and its adapter's, if any) where it applies and is allowed, else as burn's and the
    /// other kernels' operations. The masks are drawn in the same order (the adapter's, then
    /// the dropout's) on every path.
    pub fn residual_norm(
        &mut self,
        layer: &AdaptedLinear,
        input: Tensor<3>,
        res: Tensor<3>,
        dropout: f64,
        ln: &LayerNorm,
        epsilon: f64,
    ) -> Tensor<3> {
        let fused = self.fused_kernels && kernels::applies(&[&input]);
        let Some(bias) = layer.linear.bias.as_ref().map(Param::val).filter(|_| fused) else {
            let y = layer.forward(input, self);
            let y = self.apply(y, dropout);
            return self.layer_norm(ln, epsilon, res + y);
        };
        let [batch, len, d_in] = input.dims();
        let d_out = res.dims()[2];
        let rows = batch * len;
        let input: Tensor<2> = input.reshape([rows, d_in]);
        let h = self.product(input.clone(), layer.linear.weight.val());
        let h = match layer.low_rank(input, self) {
            Some((low, scale)) => add_scaled(h, low, scale),
            None => h,
        };
        let drop = self.draw(dropout);
        let res: Tensor<2> = res.reshape([rows, d_out]);
        let (gamma, beta) = (ln.gamma.val(), ln.beta.as_ref().map(Param::val));
        if kernels::layer_norm::applies_residual(&h, &bias, &res, &gamma, beta.as_ref()) {
            return kernels::layer_norm::residual_layer_norm(
                h, bias, res, drop, gamma, beta, epsilon,
            )
            .reshape([batch, len, d_out]);
        }
        // The masks are drawn already: finish the composed way with them.
        let y = h + bias.unsqueeze_dim(0);
        let y = match &drop {
            Some(mask) => self.apply_mask(y, mask),
            None => y,
        };
        self.layer_norm(ln, epsilon, (res + y).reshape([batch, len, d_out]))
    }

    /// The self-attention core of a transformer layer: per head, `softmax(q k^T * scale + bias)`
    /// with dropout `dropout` on the probabilities, times `v`, merged back to
    /// `[batch, len, hidden]`; `bias` (`[batch or 1, 1, len or 1, len]`) is the additive padding
    /// or causal mask. Through the fused kernel (`kernels::self_attention`) where it applies and
    /// is allowed, else burn's matrix products around [`Self::attention_softmax`]. The dropout
    /// mask (`[batch, heads, len, len]`) is the same on either path: one seed, computed in the
    /// kernel or on the host.
    pub fn self_attention(
        &mut self,
        projections: Projections,
        heads: usize,
        scale: f64,
        bias: Tensor<4>,
        dropout: f64,
    ) -> Tensor<3> {
        let dims @ [batch, len, _] = projections.query_dims();
        let drop = self.draw(dropout);
        let first = match &projections {
            Projections::Packed(qkv) => qkv,
            Projections::Separate(q, _, _) => q,
        };
        if self.fused_kernels && kernels::self_attention::applies(first, dims, heads, &bias) {
            let qkv = match projections {
                Projections::Packed(qkv) => qkv,
                Projections::Separate(q, k, v) => Tensor::cat(vec![q, k, v], 2),
            };
            return kernels::self_attention::attention(qkv, heads, scale, bias, drop);
        }
        let drop = drop.map(|m| m.tensor([batch, heads, len, len], &bias.device()));
        self.composed_attention(projections, heads, scale, bias, drop)
    }

    /// Decoding with a cache: the context `[batch, queries, hidden]` of the last `queries` of
    /// the tokens whose packed projections `qkv` (`[batch, len, 3 * hidden]`, every token so
    /// far) holds, attending to all `len` through `bias` (`[batch or 1, 1, queries or 1,
    /// len]`); no dropout (generation). Through the fused kernel where it applies and is
    /// allowed, else burn's matrix products around [`Self::attention_softmax`].
    pub fn decode_attention(
        &self,
        qkv: Tensor<3>,
        queries: usize,
        heads: usize,
        scale: f64,
        bias: Tensor<4>,
    ) -> Tensor<3> {
        if self.fused_kernels
            && kernels::self_attention::applies_decode(&qkv, queries, heads, &bias)
        {
            return kernels::self_attention::decode(qkv, queries, heads, scale, bias);
        }
        use kernels::self_attention::split_heads;
        let [_, len, width] = qkv.dims();
        let hidden = width / 3;
        let part = |i: usize| qkv.clone().narrow(2, i * hidden, hidden);
        let q = split_heads(part(0).narrow(1, len - queries, queries), heads);
        kernels::self_attention::composed(
            q,
            split_heads(part(1), heads),
            split_heads(part(2), heads),
            None,
            |scores| self.attention_softmax(scores, scale, bias),
        )
    }

    fn composed_attention(
        &self,
        projections: Projections,
        heads: usize,
        scale: f64,
        bias: Tensor<4>,
        drop: Option<Tensor<4>>,
    ) -> Tensor<3> {
        use kernels::self_attention::split_heads;
        let (q, k, v) = match projections {
            Projections::Packed(qkv) => {
                let hidden = qkv.dims()[2] / 3;
                let part = |i: usize| split_heads(qkv.clone().narrow(2, i * hidden, hidden), heads);
                (part(0), part(1), part(2))
            }
            Projections::Separate(q, k, v) => (
                split_heads(q, heads),
                split_heads(k, heads),
                split_heads(v, heads),
            ),
        };
        kernels::self_attention::composed(q, k, v, drop, |scores| {
            self.attention_softmax(scores, scale, bias)
        })
    }

    /// Zero each value with probability `p` and scale the rest by `1 / (1 - p)` (inverted
    /// dropout, as PyTorch), or pass `x` through when there is no generator or `p` is 0: through
    /// the fused kernel (`kernels::dropout`, the mask computed in place) where it applies and
    /// is allowed, else times the mask computed on the host.
    pub fn apply<const D: usize>(&mut self, x: Tensor<D>, p: f64) -> Tensor<D> {
        match self.draw(p) {
            Some(mask) => self.apply_mask(x, &mask),
            None => x,
        }
    }

    /// `x` times a drawn mask: in the kernel where it applies and is allowed, else times the
    /// mask computed on the host.
    fn apply_mask<const D: usize>(&self, x: Tensor<D>, mask: &DropMask) -> Tensor<D> {
        if self.fused_kernels && kernels::dropout::applies(&x) {
            return kernels::dropout::dropout(x, mask);
        }
        let mask = mask.tensor(x.dims(), &x.device());
        x * mask
    }

    /// The next dropout mask of probability `p` (one draw from the generator: its seed), or
    /// `None` when there is no generator or `p` is 0.
    pub(crate) fn draw(&mut self, p: f64) -> Option<DropMask> {
        let rng = self.rng.as_deref_mut()?;
        if p <= 0.0 {
            return None;
        }
        Some(DropMask::new((rng.next_u64() >> 32) as u32, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_expected_share_scaled_and_repeat_with_the_seed() {
        let device = Device::flex();
        let x = Tensor::<2>::ones([100, 50], &device);
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            Masks::from(&mut rng)
                .apply(x.clone(), 0.2)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        let kept = a.iter().filter(|&&v| v != 0.0).count();
        assert!((3800..4200).contains(&kept), "{kept} of 5000 kept");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let same = Masks::none().apply(x.clone(), 0.5);
        same.into_data().assert_eq(&x.into_data(), true);
    }
}
