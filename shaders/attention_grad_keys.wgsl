// Self-attention, backward pass for the keys and values (after attention_grad_queries.wgsl,
// which kept D for every query): for each batch item b, head h and key j (one thread each),
// with p[i] = exp(s[i, j] - m[i]) / l[i] recomputed as there,
//   dp[i]    = dropout[b, h, i, j] * (dout[b, i, h] . v[b, j, h])
//   dk[b, j, h] = scale * sum_i p[i] (dp[i] - D[i]) q[b, i, h]
//   dv[b, j, h] = sum_i p[i] dropout[b, h, i, j] dout[b, i, h]
// written into the keys' and values' thirds of `dqkv`.
//
// Template items: as attention.wgsl.

{{ uniform }}

const WORKGROUP: u32 = {{ workgroup_size }}u;
const DH4: u32 = {{ dh4 }}u;
const HAS_DROP: bool = {{ has_drop }};

@group(0) @binding(0) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> dout: array<vec4<f32>>;
// [3 * rows]: each query row's maximum, reciprocal sum and D.
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: SelfAttentionUniform;

{{ dropout_mask }}

@compute @workgroup_size({{ workgroup_size }})
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // t = (b * heads + h) * len + j
    let t = (group.y * groups.x + group.x) * WORKGROUP + local;
    if (t >= params.rows) {
        return;
    }
    let len = params.len;
    let j = t % len;
    let first = t - j;
    let h = (t / len) % params.heads;
    let b = t / (len * params.heads);
    let hidden4 = params.hidden / 4u;
    let row4 = 3u * hidden4;
    let head4 = h * DH4;
    let tokens = b * len;
    let bias_col = b * params.bias_batch_stride + j;

    var k: array<vec4<f32>, DH4>;
    var v: array<vec4<f32>, DH4>;
    var dk: array<vec4<f32>, DH4>;
    var dv: array<vec4<f32>, DH4>;
    let k_at = (tokens + j) * row4 + hidden4 + head4;
    let v_at = k_at + hidden4;
    for (var d = 0u; d < DH4; d++) {
        k[d] = qkv[k_at + d] * params.scale;
        v[d] = qkv[v_at + d];
        dk[d] = vec4<f32>(0.0);
        dv[d] = vec4<f32>(0.0);
    }
    for (var i = 0u; i < len; i++) {
        let r = first + i;
        let q_at = (tokens + i) * row4 + head4;
        let o_at = (tokens + i) * hidden4 + head4;
        var s4 = vec4<f32>(0.0);
        var dp4 = vec4<f32>(0.0);
        for (var d = 0u; d < DH4; d++) {
            s4 += k[d] * qkv[q_at + d];
            dp4 += v[d] * dout[o_at + d];
        }
        let s = s4.x + s4.y + s4.z + s4.w + bias[bias_col + i * params.bias_query_stride];
        let p = exp(s - stats[r]) * stats[params.rows + r];
        var keep = 1.0;
        if (HAS_DROP) {
            keep = dropout_mask(params.seed, r * len + j, params.keep, params.drop_scale);
        }
        let ds = p * (keep * (dp4.x + dp4.y + dp4.z + dp4.w) - stats[2u * params.rows + r]);
        let pv = p * keep;
        for (var d = 0u; d < DH4; d++) {
            dk[d] += ds * qkv[q_at + d];
            dv[d] += pv * dout[o_at + d];
        }
    }
    for (var d = 0u; d < DH4; d++) {
        dqkv[k_at + d] = dk[d] * params.scale;
        dqkv[v_at + d] = dv[d];
    }
}
