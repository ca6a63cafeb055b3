// TF.js trains the same CNN as burnish's digits demo (3x3 convolutions of 16 and 32 filters with
// ReLU and 2x2 max-pooling, dense 128 and 64 with ReLU, dropout 0.1 before each dense layer, 10
// classes; batch 64; Adam) on the same 8x8 digits, reading the loss back every step as burnish
// does. `?backend=webgpu|webgl|wasm|cpu&steps=N`; results in `window.tfjsResult`.

const params = new URLSearchParams(location.search);
const backend = params.get('backend') || 'webgpu';
const steps = Number(params.get('steps') || 40);
const BATCH = 64;

async function digits() {
  const response = await fetch('../digits.csv.gz');
  const text = await new Response(response.body.pipeThrough(new DecompressionStream('gzip'))).text();
  const rows = text.trim().split('\n').map((l) => l.split(',').map(Number));
  const x = rows.map((r) => r.slice(0, 64).map((v) => v / 16));
  const y = rows.map((r) => r[64]);
  return { x, y };
}

function model() {
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dropout({ rate: 0.1 }));
  m.add(tf.layers.dense({ units: 128, activation: 'relu' }));
  m.add(tf.layers.dropout({ rate: 0.1 }));
  m.add(tf.layers.dense({ units: 64, activation: 'relu' }));
  m.add(tf.layers.dropout({ rate: 0.1 }));
  m.add(tf.layers.dense({ units: 10 }));
  return m;
}

async function main() {
  const t0 = performance.now();
  const ok = await tf.setBackend(backend);
  if (!ok) throw new Error(`TF.js backend ${backend} is unavailable here`);
  await tf.ready();
  const { x, y } = await digits();
  const net = model();
  const optimizer = tf.train.adam(0.001);
  const times = [];
  let loss = NaN;
  for (let s = 0; s < steps; s += 1) {
    const start = performance.now();
    const idx = Array.from({ length: BATCH }, (_, i) => (s * BATCH + i) % x.length);
    const value = tf.tidy(() => {
      const xb = tf.tensor4d(idx.map((i) => x[i]).flat(), [BATCH, 8, 8, 1]);
      const yb = tf.oneHot(tf.tensor1d(idx.map((i) => y[i]), 'int32'), 10);
      return optimizer.minimize(() => tf.losses.softmaxCrossEntropy(yb, net.apply(xb, { training: true })), true);
    });
    loss = (await value.data())[0];
    value.dispose();
    times.push(performance.now() - start);
  }
  const rest = times.slice(3).sort((a, b) => a - b);
  const median = rest[Math.floor(rest.length / 2)];
  window.tfjsResult = {
    backend: tf.getBackend(), steps, batch: BATCH, msPerStep: median, firstStepMs: times[0],
    parameters: net.countParams(), loss, setupMs: times.length ? performance.now() - t0 - times.reduce((a, b) => a + b, 0) : 0,
  };
  document.getElementById('log').textContent = JSON.stringify(window.tfjsResult, null, 1);
}

main().catch((err) => { window.tfjsResult = { backend, error: String(err.message || err) }; });
