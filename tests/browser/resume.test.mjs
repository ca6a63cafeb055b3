// Autosave and resume in a real browser: a run of the digits demo is autosaved to IndexedDB
// every 10 steps; the page is reloaded mid-training, offers the stored run, resumes it with one
// click, and the resumed loss curve is compared with an uninterrupted run of the same recipe
// (the resume-fidelity figure). Then pause saves at once, a worker panic offers the autosave,
// and stored runs can be deleted; a lost GPU device is reported as such and the run resumes on
// a new one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_URL, launch, nextError, waitFor } from './harness.mjs';

const EPOCHS = 2;
const EVERY = 10;
const idle = (s) => s.phase === 'idle' || s.phase === 'done';
const finished = (s) => s.report && s.model && idle(s);


test('a reloaded run resumes from its autosave and continues the uninterrupted loss curve', { timeout: 600_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    // 1. The uninterrupted run.
    await page.goto(`${BASE_URL}?autostart=1&epochs=${EPOCHS}&autosave=${EVERY}`);
    let s = await waitFor(page, record, finished, 400_000, 'the uninterrupted run');
    const steps = s.started.steps;
    const whole = new Map(s.losses);
    assert.equal(whole.size, steps);
    assert.deepEqual(s.autosaves.map((a) => a.step), Array.from({ length: Math.floor((steps - 1) / EVERY) }, (_, i) => EVERY * (i + 1)));
    const wholeReport = s.report.report;
    // A finished run's autosave is deleted.
    s = await waitFor(page, record, (st) => st.runs.length === 0, 10_000, 'the finished run to leave the store');

    // 2. The same run, reloaded after an autosave in the second epoch (started by hand, so the
    // reloaded page does not start another).
    await page.goto(`${BASE_URL}?epochs=${EPOCHS}&autosave=${EVERY}`);
    await waitFor(page, record, (st) => st.preview && idle(st), 60_000, 'the demo data');
    await page.click('#start');
    const perEpoch = s.started.steps_per_epoch;
    const target = Math.ceil((perEpoch + 1) / EVERY) * EVERY;
    s = await waitFor(page, record, (st) => st.autosaves.some((a) => a.step === target), 400_000, `the autosave at step ${target}`);
    const reachedBeforeReload = s.losses.length;
    await page.reload();
    s = await waitFor(page, record, (st) => idle(st) && st.runs.length === 1, 60_000, 'the stored run after the reload');
    const stored = s.runs[0];
    assert.equal(stored.info.step, target, `the latest autosave (the page had reached step ${reachedBeforeReload})`);
    assert.equal(stored.info.source, 'digits.csv.gz');
    assert.match(await page.locator('#message').textContent(), new RegExp(`stopped at step ${target} of ${steps}`));
    assert.match(await page.locator('#runs tbody').textContent(), new RegExp(`step ${target} of ${steps} \\(epoch 2 of ${EPOCHS}\\)`));
    assert.match(await page.locator('#runs-usage').textContent(), /1 stored run: [\d.]+ MiB; this site uses/);
    await page.click('#runs .resume-run');
    s = await waitFor(page, record, (st) => finished(st) && !st.resuming, 400_000, 'the resumed run');
    const restored = s.events.find((e) => e.type === 'restored');
    assert.deepEqual({ step: restored.step, epoch: restored.epoch }, { step: target, epoch: 2 });
    // The chart holds the whole curve: the stored part, then the resumed steps.
    assert.deepEqual(s.losses.map(([step]) => step), Array.from({ length: steps }, (_, i) => i + 1));
    let maxDiff = 0;
    for (const [step, loss] of s.losses.filter(([st]) => st > target)) {
      maxDiff = Math.max(maxDiff, Math.abs(loss - whole.get(step)));
    }
    assert.ok(maxDiff <= 1e-5, `resumed losses differ from the uninterrupted run by up to ${maxDiff}`);
    assert.equal(s.epochs.length, EPOCHS, 'the first epoch from the store, the second run');
    assert.equal(s.report.report.accuracy, wholeReport.accuracy);
    assert.deepEqual(s.report.report.confusion, wholeReport.confusion);
    console.log(
      `resume fidelity: digits CNN, ${steps} steps, reloaded after the autosave at step ${target} (page at step ${reachedBeforeReload}); ` +
      `max |loss difference| over the ${steps - target} resumed steps ${maxDiff.toExponential(2)}; ` +
      `test accuracy ${(s.report.report.accuracy * 100).toFixed(1)}% both; autosave ${stored.size} bytes + data ${stored.dataSize} bytes`,
    );
    await waitFor(page, record, (st) => st.runs.length === 0, 10_000, 'the finished run to leave the store');
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});

test('pause autosaves, a worker panic offers the autosave, and stored runs can be deleted', { timeout: 600_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?epochs=${EPOCHS}&autosave=0`);
    await waitFor(page, record, (s) => s.preview && idle(s), 60_000, 'the demo data');
    await page.click('#start');
    await waitFor(page, record, (s) => s.losses.length >= 3, 200_000, 'a few steps');
    await page.click('#pause');
    let s = await waitFor(page, record, (st) => st.phase === 'paused' && st.autosaves.length === 1, 60_000, 'the pause autosave');
    const paused = s.events.find((e) => e.type === 'paused');
    assert.deepEqual(s.autosaves.map((a) => [a.step, a.reason]), [[paused.step, 'pause']]);
    // The worker dies: the page says the run can be resumed from its autosave.
    await page.evaluate(() => window.burnishDebug.panic());
    const message = await nextError(page, 'the panic', 60_000);
    assert.match(message, new RegExp(`resume the run from its autosave at step ${paused.step} under Stored runs`));
    await waitFor(page, record, (st) => idle(st) && st.runs.length === 1, 60_000, 'the fresh worker');
    await page.click('#runs .resume-run');
    s = await waitFor(page, record, (st) => st.losses.length >= paused.step + 2 && st.phase === 'running', 200_000, 'the resumed run');
    assert.equal(s.events.filter((e) => e.type === 'restored').at(-1).step, paused.step);
    // Stop it for good: it stays stored (cancelled runs can be resumed later), then delete it.
    await page.click('#pause');
    await waitFor(page, record, (st) => st.phase === 'paused', 60_000, 'the second pause');
    await page.click('#cancel');
    s = await waitFor(page, record, (st) => finished(st) && st.report.cancelled && st.runs.length === 1, 200_000, 'the cancelled run, still stored');
    assert.ok(s.runs[0].info.step > paused.step, 'its newest autosave');
    await page.click('#runs .delete-run');
    await waitFor(page, record, (st) => st.runs.length === 0, 10_000, 'the deleted run');
    assert.ok(await page.locator('#runs-section').isHidden());
    const others = record.errors.filter((e) => !/panicked|deliberate panic|unreachable|RuntimeError/.test(e));
    assert.deepEqual(others, []);
  } finally {
    await browser.close();
  }
});

test('a lost GPU device ends the run with a message naming the loss, and the run resumes on a new device', { timeout: 600_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?epochs=${EPOCHS}&autosave=${EVERY}`);
    await waitFor(page, record, (s) => s.preview && idle(s), 60_000, 'the demo data');
    await page.click('#start');
    let s = await waitFor(page, record, (st) => st.autosaves.length >= 1 && st.losses.length >= EVERY + 2, 300_000, 'the first autosave and two more steps');
    const saved = s.autosaves.at(-1).step;
    // WebGPU's GPUDevice.destroy() in the worker: the device is gone as after a driver reset.
    // One message (the run's failed read-back is not shown beside it): the loss and the autosave.
    await page.evaluate(() => window.burnishDebug.loseDevice());
    const message = await nextError(page, 'the lost device', 60_000);
    assert.match(message, /^The training worker crashed \(the GPU device was lost \(destroyed/);
    assert.doesNotMatch(message, /back from the device|could not be mapped/);
    assert.match(message, new RegExp(`resume the run from its autosave at step ${saved} under Stored runs`));
    assert.equal(await page.locator('#message').textContent(), message);
    s = await waitFor(page, record, (st) => idle(st) && st.runs.length === 1 && st.crashes === 1, 60_000, 'the fresh worker');
    assert.deepEqual(s.errors, [], 'no error after the crash message');
    assert.equal(s.runs[0].info.step, saved);
    // The fresh worker makes a new device, and the run goes on from the autosave on it.
    await page.click('#runs .resume-run');
    // Two steps trained after the `restored` event (the old worker's steps came before it).
    const resumedSteps = (st) => st.events.slice(st.events.findLastIndex((e) => e.type === 'restored')).filter((e) => e.type === 'progress');
    s = await waitFor(page, record, (st) => st.events.some((e) => e.type === 'restored') && resumedSteps(st).length >= 2, 200_000, 'the resumed run');
    assert.equal(s.events.filter((e) => e.type === 'restored').at(-1).step, saved);
    assert.deepEqual(resumedSteps(s).slice(0, 2).map((e) => e.step), [saved + 1, saved + 2]);
    assert.ok(resumedSteps(s).every((e) => Number.isFinite(e.loss)), 'finite losses after the resume');
    await page.click('#cancel');
    await waitFor(page, record, (st) => finished(st) && st.report.cancelled, 200_000, 'the cancelled run');
    // Chromium logs the destroyed device's failed calls; nothing else may fail.
    const others = record.errors.filter((e) => !/lost|destroyed|Device|device/.test(e));
    assert.deepEqual(others, []);
  } finally {
    await browser.close();
  }
});
