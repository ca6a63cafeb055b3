// A tiny BERT folder (random weights, no `bert.` prefix, an MLM tensor to leave out), the same
// on every run: shared by the browser tests of the page and of the JS API.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const TOKENIZER = readFileSync(join(here, '../fixtures/tiny-tokenizer.json'));
export const CONFIG = {
  architectures: ['BertForMaskedLM'], model_type: 'bert', vocab_size: 12, hidden_size: 16, num_hidden_layers: 2,
  num_attention_heads: 2, intermediate_size: 32, hidden_act: 'gelu', max_position_embeddings: 32, type_vocab_size: 2,
  layer_norm_eps: 1e-12, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1,
};

// A seeded normal(0, 0.02) generator, so the folder is the same on every run.
function normal(seed) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 2 ** 32;
  };
  return () => 0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

// safetensors bytes for tensors [[name, shape, Float32Array]].
function safetensors(tensors) {
  const header = {};
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([head, Buffer.from(json), ...tensors.map(([, , d]) => Buffer.from(d.buffer))]);
}

/// The folder's files: config.json, tokenizer.json, model.safetensors. With `outliers`, the
/// feed-forward pre-activations sit near ±40 and the pooler's near ±100 (biases), as outlier
/// features of pretrained encoders do: past where SwiftShader's `tanh` turns NaN (|x| >= 89), so
/// an activation or a derivative that goes through `tanh` unguarded shows up as NaN.
export function tinyFiles({ outliers = false } = {}) {
  const { vocab_size: v, hidden_size: h, intermediate_size: i, max_position_embeddings: p } = CONFIG;
  const next = normal(7);
  const t = (name, shape, fill) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = fill ?? next();
    return [name, shape, data];
  };
  const linear = (name, out, inp, bias = 0) => {
    const b = t(`${name}.bias`, [out], 0);
    if (bias) for (let k = 0; k < out; k++) b[2][k] = k % 2 ? -bias : bias;
    return [t(`${name}.weight`, [out, inp]), b];
  };
  const norm = (name) => [t(`${name}.weight`, [h], 1), t(`${name}.bias`, [h], 0)];
  const tensors = [
    t('embeddings.word_embeddings.weight', [v, h]), t('embeddings.position_embeddings.weight', [p, h]),
    t('embeddings.token_type_embeddings.weight', [2, h]), ...norm('embeddings.LayerNorm'),
  ];
  for (let l = 0; l < CONFIG.num_hidden_layers; l++) {
    const b = `encoder.layer.${l}`;
    tensors.push(...linear(`${b}.attention.self.query`, h, h), ...linear(`${b}.attention.self.key`, h, h),
      ...linear(`${b}.attention.self.value`, h, h), ...linear(`${b}.attention.output.dense`, h, h),
      ...norm(`${b}.attention.output.LayerNorm`), ...linear(`${b}.intermediate.dense`, i, h, outliers ? 40 : 0),
      ...linear(`${b}.output.dense`, h, i), ...norm(`${b}.output.LayerNorm`));
  }
  tensors.push(...linear('pooler.dense', h, h, outliers ? 100 : 0), t('cls.predictions.bias', [v], 0));
  return {
    'config.json': Buffer.from(JSON.stringify(CONFIG)),
    'tokenizer.json': TOKENIZER,
    'model.safetensors': safetensors(tensors),
  };
}

/// Write the folder to `dir` (`options` as for `tinyFiles`).
export function tinyFolder(dir, options) {
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(tinyFiles(options))) writeFileSync(join(dir, name), bytes);
}

