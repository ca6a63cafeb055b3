// Self-attention, forward pass, the whole core in one dispatch: for each batch item b, head h and
// query i (one thread each),
//   s[j]    = scale * q[b, i, h] . k[b, j, h] + bias[b, i, j]
//   p[j]    = softmax_j(s)                     (online: a running maximum and sum, one pass)
//   context[b, i, h] = sum_j p[j] * dropout[b, h, i, j] * v[b, j, h]
// reading the queries, keys and values straight from the packed projection `qkv`
// ([batch, len, 3 * hidden], row-major: q, k, v side by side, each head's `dh` columns together,
// as GPT-2's c_attn writes them) and writing the context already merged ([batch, len, hidden]).
// It also keeps each row's maximum and reciprocal sum (`stats[r]`, `stats[rows + r]`) for the
// backward kernels, which recompute the probabilities from them instead of keeping them (not a
// log-sum-exp: for a row whose every key is masked, -1e9 + log(len) rounds back to -1e9 in f32,
// and exp(s - lse) would give every key 1 instead of 1 / len). burn's composed path is a dozen
// launches or more per layer (head split copies, two matrix products, the softmax, dropout, the
// merge copy) with [batch, heads, len, len] intermediates.
//
// Decoding with a cache runs it on the last `queries` of the `len` tokens only (`offset` = len -
// queries; no dropout, no backward); training and evaluation on all of them (offset 0).
//
// Vectors are read four values at a time (`dh` is a multiple of 4, every row starts at a
// multiple of 4), so WebGPU's bounds checks cost a quarter of what scalar reads would.
//
// Template items (filled by crates/burnish-core/src/kernels/self_attention.rs):
//   uniform         the `SelfAttentionUniform` struct, generated from the Rust definition
//   workgroup_size  threads per workgroup
//   dh4             the head size / 4 (at most 16)
//   has_drop        whether to drop probabilities: the mask (0, or 1 / keep, per probability)
//                   from the uniform block's seed, keep and drop_scale
//   dropout_mask    the mask's hash (shaders/dropout_mask.wgsl, the host's DropMask::value)

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const DH4: u32 = {{ dh4 }}u;
const HAS_DROP: bool = {{ has_drop }};

// Only read, except context and stats, but declared read_write: CubeCL's memory pool may place two
// tensors in one wgpu buffer, and one dispatch cannot bind a buffer both read-only and writable.
@group(0) @binding(0) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> context: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<uniform> params: SelfAttentionUniform;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // r = (b * heads + h) * queries + i; query i sits at position offset + i of the len tokens.
    let r = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (r >= params.rows) {
        return;
    }
    let len = params.len;
    let queries = params.queries;
    let i = r % queries;
    let h = (r / queries) % params.heads;
    let b = r / (queries * params.heads);
    let hidden4 = params.hidden / 4u;
    // In vec4s: a token's row of qkv, this head's offset in each third.
    let row4 = 3u * hidden4;
    let head4 = h * DH4;
    let tokens = b * len;
    let bias_row = b * params.bias_batch_stride + i * params.bias_query_stride;

    var q: array<vec4<f32>, DH4>;
    var acc: array<vec4<f32>, DH4>;
    let q_at = (tokens + params.offset + i) * row4 + head4;
    for (var d = 0u; d < DH4; d++) {
        q[d] = qkv[q_at + d] * params.scale;
        acc[d] = vec4<f32>(0.0);
    }
    // The lowest finite f32, in hex (Chromium's compiler rejects -3.4028235e38, just past it).
    var m = -0x1.fffffep+127f;
    var l = 0.0;
    for (var j = 0u; j < len; j++) {
        let k_at = (tokens + j) * row4 + hidden4 + head4;
        var dot4 = vec4<f32>(0.0);
        for (var d = 0u; d < DH4; d++) {
            dot4 += q[d] * qkv[k_at + d];
        }
        let s = dot4.x + dot4.y + dot4.z + dot4.w + bias[bias_row + j];
        let m_new = max(m, s);
        let c = exp(m - m_new);
        let e = exp(s - m_new);
        l = l * c + e;
        m = m_new;
        var w = e;
        if (HAS_DROP) {
            w *= dropout_mask(params.seed, r * len + j, params.keep, params.drop_scale);
        }
        let v_at = k_at + hidden4;
        for (var d = 0u; d < DH4; d++) {
            acc[d] = acc[d] * c + w * qkv[v_at + d];
        }
    }
    let inv = 1.0 / l;
    let out_at = (b * queries + i) * hidden4 + head4;
    for (var d = 0u; d < DH4; d++) {
        context[out_at + d] = acc[d] * inv;
    }
    stats[r] = m;
    stats[params.rows + r] = inv;
}
