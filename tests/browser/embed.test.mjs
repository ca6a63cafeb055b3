// The embedding API and element in a real browser: a page that uses only the public JS API
// (burnish.js) trains, evaluates, predicts, exports and imports, with typed errors; the
// learning-rate tutorial runs two <burnish-trainer> elements at once on one worker, and
// attribute changes take effect; the LoRA tutorial loads MiniLM into two elements.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_URL, launch } from './harness.mjs';
import { tinyFiles } from './tiny-bert.mjs';

async function poll(page, read, predicate, timeout, what, record) {
  const deadline = Date.now() + timeout;
  let value;
  for (;;) {
    value = await page.evaluate(read);
    if (predicate(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}: ${JSON.stringify(value)?.slice(0, 500)}; console:\n${record.console.slice(-15).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Each element's state, read through its public `state` property.
const elements = () => Object.fromEntries([...document.querySelectorAll('burnish-trainer')].map((e, i) => [e.id || `#${i}`, {
  phase: e.state.phase,
  steps: e.state.losses.length,
  lr: e.state.losses.map(([, , lr]) => lr),
  epochs: e.state.epochs.length,
  report: e.state.report && { accuracy: e.state.report.report.accuracy, epochs_run: e.state.report.epochs_run, stopped_early: e.state.report.stopped_early },
  rows: e.state.preview?.rows ?? null,
  errors: e.state.errors,
  session: e.trainer?.session ?? null,
  reportHidden: e.shadowRoot.querySelector('[part=report]').hidden,
  chartHidden: e.shadowRoot.querySelector('[part=chart]').hidden,
  settings: e.shadowRoot.querySelector('.settings').textContent,
}]));

test('a page using only the public JS API trains, evaluates, predicts, exports and imports', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}examples/api.html`);
    const r = await poll(page, () => window.apiResult ?? null, (v) => v, 240_000, 'the API example', record);
    assert.equal(r.failed, undefined, r.failed);
    assert.ok(r.report.accuracy > 0.9, `accuracy ${r.report.accuracy}`);
    assert.equal(r.report.epochs, 4);
    assert.deepEqual(r.events, { started: 1, progress: r.events.progress, epoch: 4 });
    assert.ok(r.events.progress >= 4);
    assert.deepEqual({ total: r.evaluation.total, split: r.evaluation.split }, { total: 50, split: 'test' });
    assert.ok(r.evaluation.accuracy > 0.9);
    assert.equal(r.prediction.classes[r.prediction.best], 'pos');
    assert.ok(r.exportMagic.includes('"__metadata__"') || r.exportMagic.startsWith('{'), r.exportMagic);
    assert.equal(r.imported.origin, 'imported');
    assert.equal(r.imported.sameSession, false);
    assert.deepEqual(r.imported.probabilities, r.prediction.probabilities, 'the imported model predicts the same');
    assert.equal(r.errors.length, 2);
    for (const e of r.errors) assert.ok(e.typed && e.name === 'BurnishError' && e.code === 'bad_input', JSON.stringify(e));
    assert.match(r.errors[0].message, /expected 2 values/);
    assert.match(r.errors[1].message, /data\.labels/);
    assert.ok(r.firstStepMs > 0);
    console.log(`JS API: page open to first training step ${r.firstStepMs.toFixed(0)} ms (cold cache, SwiftShader; trainer with data at ${r.trainerMs.toFixed(0)} ms); export ${r.exportSize} bytes`);
    // Warm cache: open it again.
    await page.goto(`${BASE_URL}examples/api.html`);
    const warm = await poll(page, () => window.apiResult ?? null, (v) => v, 240_000, 'the API example again', record);
    console.log(`JS API: page open to first training step ${warm.firstStepMs.toFixed(0)} ms (warm cache; trainer with data at ${warm.trainerMs.toFixed(0)} ms)`);
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});

test('the JS API fine-tunes a text model with LoRA, predicts text and exports the adapter', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}examples/api.html`);
    await poll(page, () => window.apiResult ?? null, (v) => v, 240_000, 'the API example', record);
    const files = Object.entries(tinyFiles()).map(([name, bytes]) => ({ path: `tiny-bert/${name}`, bytes: [...bytes] }));
    const texts = [['the good film', 'pos'], ['great fine film', 'pos'], ['the bad film', 'neg'], ['awful poor film', 'neg']];
    const csv = `text,label\n${Array.from({ length: 32 }, (_, k) => texts[k % 4].join(',')).join('\n')}\n`;
    const r = await page.evaluate(async ({ files, csv }) => {
      const { createTrainer } = await import(new URL('../burnish.js', location.href).href);
      const trainer = await createTrainer({ model: { files: files.map((f) => ({ path: f.path, bytes: new Uint8Array(f.bytes) })) } });
      const preview = await trainer.load(new File([csv], 'reviews.csv'));
      const recipe = {
        fit: { epochs: 3, patience: null },
        train: { learning_rate: 0.01, batch_size: 8 },
        text: { max_length: 16, dropout: 0, tuning: { strategy: 'lora', lora: { rank: 4, alpha: 8 } } },
      };
      const { report, model } = await trainer.train({ recipe });
      const prediction = await trainer.predict('the good film');
      const adapter = await trainer.export({ adapter: true });
      const folder = await trainer.export();
      return {
        kind: trainer.kind, rows: preview.rows, epochs: report.epochs_run, accuracy: report.report.accuracy,
        trainable: model.trainable ?? null, adapterInfo: model.adapter ?? null, prediction,
        adapter: adapter.map((f) => f.name).sort(), folder: folder.map((f) => f.name).sort(),
      };
    }, { files, csv });
    assert.equal(r.kind, 'text');
    assert.equal(r.rows, 32);
    assert.equal(r.epochs, 3);
    assert.equal(r.adapterInfo, 'LoRA r=4 alpha=8 on query, value');
    assert.deepEqual(r.adapter, ['adapter_config.json', 'adapter_model.safetensors', 'burnish_adapter.json']);
    assert.ok(r.folder.includes('config.json') && r.folder.includes('model.safetensors') && r.folder.includes('tokenizer.json'), r.folder.join(', '));
    assert.deepEqual(r.prediction.classes.classes, ['neg', 'pos']);
    assert.ok(Math.abs(r.prediction.classes.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});

test('two <burnish-trainer> elements train at once on one worker; attributes take effect', { timeout: 600_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}tutorials/learning-rate.html`);
    let s = await poll(page, elements, (v) => Object.values(v).every((e) => e.phase === 'ready'), 120_000, 'the three elements', record);
    assert.deepEqual(Object.keys(s), ['calm', 'hot', '#2']);
    assert.ok(Object.values(s).every((e) => e.rows === 1797));
    assert.equal(new Set(Object.values(s).map((e) => e.session)).size, 3, 'a session each');
    assert.match(s.calm.settings, /learning rate 0\.003 · 20 epochs · patience 3/);
    assert.match(s.hot.settings, /learning rate 0\.1 · 20 epochs · no early stopping/);
    // Shorter runs for the test: the settings line follows at once.
    await page.evaluate(() => {
      for (const e of document.querySelectorAll('#calm, #hot')) e.setAttribute('epochs', '3');
    });
    s = await poll(page, elements, (v) => /3 epochs/.test(v.calm.settings) && /3 epochs/.test(v.hot.settings), 5_000, 'the settings line', record);
    await page.locator('#calm').getByRole('button', { name: 'Train' }).click();
    await page.locator('#hot').getByRole('button', { name: 'Train' }).click();
    // Both run at once: each has taken steps while the other is still running.
    s = await poll(page, elements, (v) => v.calm.phase === 'running' && v.hot.phase === 'running' && v.calm.steps > 2 && v.hot.steps > 2, 200_000, 'both trainers running', record);
    s = await poll(page, elements, (v) => v.calm.phase === 'done' && v.hot.phase === 'done', 400_000, 'both runs', record);
    assert.equal(s.calm.report.epochs_run, 3);
    assert.equal(s.hot.report.epochs_run, 3);
    assert.ok(s.calm.lr.every((lr) => Math.abs(lr - 0.003) < 1e-12), `calm lr ${s.calm.lr[0]}`);
    assert.ok(s.hot.lr.every((lr) => Math.abs(lr - 0.1) < 1e-12), `hot lr ${s.hot.lr[0]}`);
    assert.ok(s.calm.report.accuracy > 0.5, `calm accuracy ${s.calm.report.accuracy}`);
    assert.equal(s.calm.reportHidden, false);
    assert.equal(await page.locator('#calm').getByText(/Test accuracy/).count(), 1);
    // Attribute changes: panels at once, the learning rate on the next run.
    await page.evaluate(() => {
      document.querySelector('#calm').setAttribute('panels', 'chart');
      document.querySelector('#hot').setAttribute('learning-rate', '0.02');
      document.querySelector('#hot').setAttribute('epochs', '1');
    });
    s = await poll(page, elements, (v) => v.calm.reportHidden && /learning rate 0\.02 · 1 epochs/.test(v.hot.settings), 5_000, 'panels and settings', record);
    await page.locator('#hot').getByRole('button', { name: 'Train' }).click();
    s = await poll(page, elements, (v) => v.hot.phase === 'done' && v.hot.report?.epochs_run === 1, 200_000, 'the second run', record);
    assert.ok(s.hot.lr.length > 0 && s.hot.lr.every((lr) => Math.abs(lr - 0.02) < 1e-12), `new lr ${s.hot.lr[0]}`);
    assert.deepEqual(Object.values(s).flatMap((e) => e.errors), []);
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});

test('the LoRA tutorial loads MiniLM and the snippets into two elements', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}tutorials/lora.html`);
    const s = await poll(page, elements, (v) => Object.values(v).every((e) => e.phase === 'ready' || e.errors.length), 240_000, 'MiniLM in both elements', record);
    assert.deepEqual(Object.values(s).flatMap((e) => e.errors), []);
    assert.equal(s.full.rows, 2000);
    assert.equal(s.lora.rows, 2000);
    assert.match(s.lora.settings, /LoRA rank 8/);
    assert.match(s.full.settings, /full fine-tuning/);
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});
