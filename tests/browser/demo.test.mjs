// The built-in demo end to end in a real browser: the page loads the 8x8 digits from its own
// origin, trains the CNN on WebGPU inside the worker for a few epochs (progress bars and charts
// move), shows the report and confusion matrix, predicts a drawing, and exports a safetensors
// file that parses with the documented names, shapes and metadata.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_URL, downloadOf, launch, parseSafetensors, waitFor } from './harness.mjs';

const EPOCHS = 3;

test('the digits demo trains, reports, predicts a drawing and exports', { timeout: 600_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?autostart=1&epochs=${EPOCHS}`);
    await waitFor(page, record, (s) => s.phase !== 'loading', 60_000, 'the WebGPU check and the worker');
    const adapter = await page.evaluate(() => window.burnish.adapter);
    assert.ok(adapter, 'navigator.gpu.requestAdapter() returned null: no WebGPU adapter (is --enable-unsafe-webgpu set?)');
    const loaded = await waitFor(page, record, (s) => s.preview, 60_000, 'the demo data');
    assert.equal(loaded.preview.rows, 1797);
    assert.deepEqual(loaded.preview.image_shape, [1, 8, 8]);
    assert.equal(loaded.preview.classes.length, 10);
    assert.equal(await page.locator('#samples canvas').count(), 20, 'two thumbnails per class');

    const t0 = Date.now();
    const state = await waitFor(page, record, (s) => s.model && s.report, 480_000, `${EPOCHS} epochs of the CNN`);
    const seconds = (Date.now() - t0) / 1000;
    const started = state.events.find((e) => e.type === 'started');
    assert.equal(state.epochs.length, EPOCHS, 'one epoch event per epoch');
    assert.equal(state.losses.length, started.steps);
    // The worker names the WebGPU adapter it trains on (headless Chromium here: SwiftShader, a
    // CPU renderer, which WebGPU reports as a fallback adapter).
    assert.match(started.adapter ?? '', /(CPU renderer|GPU) on WebGPU(, shader-f16)?$/, `the started event's adapter: ${started.adapter}`);
    assert.ok(state.losses.every(([, l]) => Number.isFinite(l)));
    const report = state.report.report;
    assert.equal(state.report.split, 'test');
    assert.equal(report.total, 179, 'about 10% of 1,797 rows, stratified per class');
    assert.ok(report.accuracy >= 0.8, `test accuracy after ${EPOCHS} epochs: ${report.accuracy}`);
    assert.equal(state.model.config.kind, 'cnn');
    // What the user sees.
    assert.equal(await page.locator('#epoch-progress').evaluate((p) => p.value), EPOCHS);
    assert.equal(await page.locator('#report-table tbody tr').count(), 12, '10 classes and two averages');
    assert.equal(await page.locator('#confusion tbody td').count(), 100);
    assert.match(await page.locator('#report-text').textContent(), /weighted avg/);
    const last = state.events.filter((e) => e.type === 'progress').at(-1);
    const gaps = state.stepTimes.slice(1).map((t, i) => t - state.stepTimes[i]).sort((a, b) => a - b);
    const median = gaps[Math.floor(gaps.length / 2)];
    console.log(
      `browser digits CNN (${state.model.parameters} parameters, batch 64): ${EPOCHS} epochs, ${started.steps} steps in ${seconds.toFixed(0)} s; ` +
      `${last.ms_per_step.toFixed(1)} ms/step (${(1000 / last.ms_per_step).toFixed(1)} steps/s), median gap ${median.toFixed(1)} ms; ` +
      `test accuracy ${(report.accuracy * 100).toFixed(1)}% on ${report.total} rows; adapter: ${started.adapter}`,
    );

    // Draw a vertical stroke and get class probabilities.
    await page.locator('#pad').scrollIntoViewIfNeeded();
    const box = await page.locator('#pad').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.15);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.85, { steps: 10 });
    await page.mouse.up();
    const predicted = await waitFor(page, record, (s) => s.prediction, 60_000, 'a prediction of the drawing');
    const p = predicted.prediction.probabilities;
    assert.equal(p.length, 10);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-4, `probabilities sum to 1: ${p}`);

    const { name, bytes } = await downloadOf(page, '#export');
    assert.equal(name, 'burnish-model.safetensors');
    const st = parseSafetensors(bytes);
    assert.equal(st.metadata.format, 'burnish.classifier.v1');
    const model = JSON.parse(st.metadata.model);
    assert.equal(model.kind, 'cnn');
    assert.deepEqual(JSON.parse(st.metadata.classes), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.deepEqual(JSON.parse(st.metadata.image_shape), [1, 8, 8]);
    assert.deepEqual(st.tensors['convs.0.weight'].shape, [16, 1, 3, 3]);
    assert.deepEqual(st.tensors['convs.1.weight'].shape, [32, 16, 3, 3]);
    assert.deepEqual(st.tensors['head.0.weight'].shape, [128, 32 * 2 * 2]);
    assert.deepEqual(st.tensors['head.2.weight'].shape, [10, 64]);
    const count = Object.values(st.tensors).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(count, state.model.parameters);
    assert.equal(st.dataBytes, 4 * count);
    assert.ok(st.tensor('head.2.bias').every(Number.isFinite));

    assert.deepEqual(record.errors, [], 'no console errors or page errors');
    assert.ok(!record.console.some((l) => /panicked/.test(l)), 'no panic in the console');
    assert.deepEqual(record.foreign, [], 'no request leaves the page\'s origin');
    assert.ok(record.requests.some((u) => u.endsWith('/digits.csv.gz')), 'the demo data came from the origin');
  } finally {
    await browser.close();
  }
});

test('pause, resume and cancel reach the worker between steps', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?epochs=50`);
    await waitFor(page, record, (s) => s.preview && s.phase === 'idle', 60_000, 'the demo data');
    await page.click('#start');
    await waitFor(page, record, (s) => s.losses.length >= 3, 120_000, 'a few steps');
    await page.click('#pause');
    await waitFor(page, record, (s) => s.phase === 'paused', 30_000, 'the paused event');
    const pausedAt = await page.evaluate(() => window.burnish.losses.length);
    await page.waitForTimeout(500);
    assert.equal(await page.evaluate(() => window.burnish.losses.length), pausedAt, 'no steps while paused');
    await page.click('#pause'); // now labelled Resume
    await waitFor(page, record, (s) => s.losses.length > pausedAt + 1, 60_000, 'steps after resuming');
    await page.click('#cancel');
    const done = await waitFor(page, record, (s) => s.phase === 'done' && s.report, 120_000, 'the cancelled run to end');
    assert.equal(done.report.cancelled, true);
    assert.ok(done.report.epochs_run < 50, `cancelled early: ${done.report.epochs_run} epochs`);
    assert.match(await page.locator('#report-summary').textContent(), /^Cancelled/);
    assert.deepEqual(record.errors, []);
    assert.deepEqual(record.foreign, []);
  } finally {
    await browser.close();
  }
});
