// An example of burnish's JavaScript API, and the page the API's browser test drives: only the
// public module is used. Results go to the page and to `window.apiResult`.

import { BurnishError, createTrainer } from '../burnish.js';

const log = (line) => { document.getElementById('log').textContent += `${line}\n`; };

// Two classes in two features: `x` near -2 is `neg`, near 2 is `pos`.
function blobs(n, seed) {
  const rows = [];
  const labels = [];
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < n; i += 1) {
    const pos = i % 2 === 1;
    rows.push([(pos ? 2 : -2) + rand() - 0.5, rand()]);
    labels.push(pos ? 'pos' : 'neg');
  }
  return { rows, labels, columns: ['x', 'noise'] };
}

async function main() {
  const result = { events: { started: 0, progress: 0, epoch: 0 }, errors: [] };
  const trainer = await createTrainer({ data: blobs(200, 1) });
  // From opening the page to a trainer with its data (the worker's wasm compiled and started).
  result.trainerMs = performance.now();
  trainer.on('started', () => {
    result.events.started += 1;
    // Milliseconds from opening the page to the run started (GPU device made, model built).
    result.startedMs ??= performance.now();
  });
  trainer.on('progress', (p) => {
    result.events.progress += 1;
    // Milliseconds from opening the page (navigation start) to the first training step done,
    // and how much of that step the worker spent recording it (kernels generated on first use).
    result.firstStepMs ??= performance.now();
    result.firstStepHostMs ??= p.host_ms;
    window.apiFirstStep ??= { ms: result.firstStepMs, startedMs: result.startedMs, hostMs: p.host_ms };
  });
  trainer.on('epoch', () => { result.events.epoch += 1; });
  log(`trainer ${trainer.session} loaded 200 rows`);

  const { report, model } = await trainer.train({ recipe: { fit: { epochs: 4, patience: null }, train: { learning_rate: 0.02, batch_size: 32 } } });
  result.report = { accuracy: report.report.accuracy, epochs: report.epochs_run, split: report.split };
  result.parameters = model.parameters;
  log(`trained: ${(report.report.accuracy * 100).toFixed(1)}% on the ${report.split} split`);

  const evaluation = await trainer.evaluate(blobs(50, 7));
  result.evaluation = { accuracy: evaluation.report.accuracy, total: evaluation.report.total, split: evaluation.split };
  log(`evaluated on 50 new rows: ${(evaluation.report.accuracy * 100).toFixed(1)}%`);

  const prediction = await trainer.predict([2.1, 0.3]);
  result.prediction = prediction;
  log(`predict [2.1, 0.3]: ${prediction.classes[prediction.best]}`);

  const bytes = await trainer.export();
  result.exportSize = bytes.length;
  result.exportMagic = new TextDecoder().decode(bytes.slice(8, 40));
  log(`exported ${bytes.length} bytes`);

  const other = await createTrainer();
  const info = await other.import(bytes);
  const again = await other.predict([2.1, 0.3]);
  result.imported = { origin: info.origin, probabilities: again.probabilities, sameSession: other.session === trainer.session };
  log(`imported into trainer ${other.session}: ${again.classes[again.best]}`);

  // Typed errors: a row of the wrong length, data of the wrong shape.
  for (const attempt of [() => other.predict([1]), () => other.load({ rows: [[1, 2]], labels: [] })]) {
    try {
      await attempt();
      result.errors.push('no error');
    } catch (err) {
      result.errors.push({ name: err.name, code: err.code, message: err.message, typed: err instanceof BurnishError });
    }
  }
  log(`errors: ${result.errors.map((e) => e.message).join(' | ')}`);
  other.close();
  trainer.close();
  window.apiResult = result;
}

main().catch((err) => {
  log(`failed: ${err.message}`);
  window.apiResult = { failed: `${err.name}: ${err.message}` };
});
