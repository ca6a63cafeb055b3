// The foundation's end-to-end check: the real page, in a real browser, trains the demo on
// WebGPU inside its worker, and the loss falls, with no errors and no request off the origin.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_URL, launch, waitFor } from './harness.mjs';

const STEPS = 40;
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('the demo trains on WebGPU in the worker and the loss falls', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?steps=${STEPS}`);
    await waitFor(page, record, (s) => s.phase !== 'loading', 60_000, 'the WebGPU check and the worker');
    const adapter = await page.evaluate(() => window.burnish.adapter);
    assert.ok(adapter, 'navigator.gpu.requestAdapter() returned null: no WebGPU adapter (is --enable-unsafe-webgpu set?)');

    await waitFor(page, record, (s) => s.phase === 'done', 240_000, `${STEPS} training steps`);
    const state = await page.evaluate(() => window.burnish);
    const losses = state.losses.map(([, l]) => l);
    assert.equal(losses.length, STEPS, 'one progress event per step');
    assert.ok(losses.every(Number.isFinite), `finite losses: ${losses}`);
    const head = mean(losses.slice(0, 5));
    const tail = mean(losses.slice(-5));
    assert.ok(tail < head * 0.9, `the loss should fall: first five ${head.toFixed(4)}, last five ${tail.toFixed(4)}`);
    const done = state.events.at(-1);
    assert.equal(done.type, 'done');
    assert.equal(done.cancelled, false);
    assert.equal(done.steps, STEPS);
    assert.ok(done.accuracy > 0.34, `accuracy above chance for 3 classes: ${done.accuracy}`);
    // What the user sees moved too.
    assert.equal(await page.locator('#progress').evaluate((p) => p.value), STEPS);
    assert.match(await page.locator('#loss').textContent(), /^\d+\.\d{4}$/);
    // Median time between progress events: the steady step time, without shader compilation
    // (first step, first evaluation) that the mean includes.
    const gaps = state.stepTimes.slice(1).map((t, i) => t - state.stepTimes[i]).sort((a, b) => a - b);
    const median = gaps[Math.floor(gaps.length / 2)];
    console.log(`browser demo: ${STEPS} steps, median ${median.toFixed(1)} ms/step, mean ${done.ms_per_step.toFixed(1)} ms/step after the first, loss ${head.toFixed(3)} -> ${tail.toFixed(3)}, accuracy ${(done.accuracy * 100).toFixed(1)}%`);

    assert.deepEqual(record.errors, [], 'no console errors or page errors');
    assert.ok(!record.console.some((l) => /panicked/.test(l)), 'no panic in the console');
    assert.deepEqual(record.foreign, [], 'no request leaves the page\'s origin');
    assert.ok(record.requests.some((u) => u.endsWith('.wasm')), 'the wasm was fetched from the origin');
  } finally {
    await browser.close();
  }
});

test('pause, resume and cancel reach the worker between steps', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?autostart=0&steps=400`);
    await waitFor(page, record, (s) => s.phase === 'idle', 60_000, 'the worker to be ready');
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
    await waitFor(page, record, (s) => s.phase === 'done', 60_000, 'the cancelled run to end');
    const done = await page.evaluate(() => window.burnish.events.at(-1));
    assert.equal(done.type, 'done');
    assert.equal(done.cancelled, true);
    assert.ok(done.steps < 400, `cancelled early: ${done.steps} steps`);
    assert.deepEqual(record.errors, []);
    assert.deepEqual(record.foreign, []);
  } finally {
    await browser.close();
  }
});
