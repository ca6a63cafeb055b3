// Self-attention, backward pass for the queries (after attention.wgsl): for each batch item b,
// head h and query i (one thread each), with the probabilities recomputed from the row's kept
// maximum m and reciprocal sum (p[j] = exp(s[j] - m) / l),
//   D        = dout[b, i, h] . context[b, i, h]   (= sum_j p[j] dp[j]; kept for the keys' kernel)
//   dp[j]    = dropout[b, h, i, j] * (dout[b, i, h] . v[b, j, h])
//   dq[b, i, h] = scale * sum_j p[j] (dp[j] - D) k[b, j, h]
// written into the queries' third of `dqkv` ([batch, len, 3 * hidden], the layout of `qkv`).
// burn's composed backward: the merge copy's, two matrix products, the softmax's, dropout's and
// the head split's (zero fills, slice writes and adds), a dozen launches or more.
//
// Template items: as attention.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const DH4: u32 = {{ dh4 }}u;
const HAS_DROP: bool = {{ has_drop }};

@group(0) @binding(0) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> context: array<vec4<f32>>;
// [3 * rows]: each row's maximum and reciprocal sum (read), then D (written here).
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> params: SelfAttentionUniform;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let r = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (r >= params.rows) {
        return;
    }
    let len = params.len;
    let i = r % len;
    let h = (r / len) % params.heads;
    let b = r / (len * params.heads);
    let hidden4 = params.hidden / 4u;
    let row4 = 3u * hidden4;
    let head4 = h * DH4;
    let tokens = b * len;
    let bias_row = b * params.bias_batch_stride + i * params.bias_query_stride;

    var q: array<vec4<f32>, DH4>;
    var g: array<vec4<f32>, DH4>;
    var dq: array<vec4<f32>, DH4>;
    let q_at = (tokens + i) * row4 + head4;
    let o_at = (tokens + i) * hidden4 + head4;
    var delta4 = vec4<f32>(0.0);
    for (var d = 0u; d < DH4; d++) {
        q[d] = qkv[q_at + d] * params.scale;
        g[d] = dout[o_at + d];
        delta4 += g[d] * context[o_at + d];
        dq[d] = vec4<f32>(0.0);
    }
    let delta = delta4.x + delta4.y + delta4.z + delta4.w;
    let m = stats[r];
    let inv = stats[params.rows + r];
    stats[2u * params.rows + r] = delta;
    for (var j = 0u; j < len; j++) {
        let k_at = (tokens + j) * row4 + hidden4 + head4;
        let v_at = k_at + hidden4;
        var s4 = vec4<f32>(0.0);
        var dp4 = vec4<f32>(0.0);
        for (var d = 0u; d < DH4; d++) {
            s4 += q[d] * qkv[k_at + d];
            dp4 += g[d] * qkv[v_at + d];
        }
        let p = exp(s4.x + s4.y + s4.z + s4.w + bias[bias_row + j] - m) * inv;
        var dp = dp4.x + dp4.y + dp4.z + dp4.w;
        if (HAS_DROP) {
            dp *= dropout_mask(params.seed, r * len + j, params.keep, params.drop_scale);
        }
        let ds = p * (dp - delta);
        for (var d = 0u; d < DH4; d++) {
            dq[d] += ds * qkv[k_at + d];
        }
    }
    for (var d = 0u; d < DH4; d++) {
        dqkv[q_at + d] = dq[d] * params.scale;
    }
}
