// What the page promises about the user's data and its own faults: a strict CSP on the page;
// after load, no request at all while loading data, training and exporting; the bad-input corpus
// (tests/corpus/) fed through the page's real file inputs shows each error by name and the page
// still trains afterwards; a panic in the worker is reported and a fresh worker takes over
// without a reload; a worker that cannot start is not restarted forever; the page reopens
// offline and trains.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { BASE_URL, downloadOf, launch, nextError, waitFor } from './harness.mjs';

const CORPUS = new URL('../corpus/', import.meta.url).pathname;
const idle = (s) => s.phase === 'idle' || s.phase === 'done';

// Which of the page's inputs takes each loader's files (the text and adapter loaders need a
// loaded model first, and are covered natively by tests/corpus.rs).
const INPUTS = { table: '#pick-files', idx: '#pick-files', lm_text: '#pick-files', classifier: '#import', images: '#pick-folder', text_model: '#pick-model', lm_model: '#pick-model' };

function blobsCsv(n) {
  const lines = ['x,y,label'];
  for (let i = 0; i < n; i++) lines.push(i % 2 ? `${1 + (i % 5) / 10},1,pos` : `${-1 - (i % 5) / 10},-1,neg`);
  return `${lines.join('\n')}\n`;
}


test('CSP, no request after load, the bad-input corpus through the real inputs, then training', { timeout: 600_000 }, async () => {
  const cases = JSON.parse(readFileSync(join(CORPUS, 'cases.json'), 'utf8')).filter((c) => INPUTS[c.loader]);
  const dir = mkdtempSync(join(tmpdir(), 'burnish-corpus-'));
  const { browser, page, record } = await launch();
  try {
    const response = await page.goto(`${BASE_URL}?demo=0&epochs=2`);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
    assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'|\s\*/);
    assert.equal(await page.locator('meta[http-equiv="Content-Security-Policy"]').count(), 1, 'the built page carries it too');
    // Loaded: the worker is ready and the service worker has stored the app.
    await waitFor(page, record, (st) => st.offlineReady && idle(st), 60_000, 'the worker and the offline cache');
    const loaded = record.requests.length;

    let shown = 0;
    for (const c of cases) {
      // The files under the names the case gives them (folders rebuilt on disk for the folder
      // inputs, so the page sees the same relative paths).
      const entries = Object.entries(c.files).map(([as, path]) => [as, path.startsWith('generate:') ? null : readFileSync(join(CORPUS, 'files', path))]);
      if (entries.some(([, bytes]) => bytes === null)) continue;
      const input = INPUTS[c.loader];
      if (input === '#pick-folder' || input === '#pick-model') {
        // A folder input always gives paths under the chosen folder: loose files cannot come
        // through it.
        if (!entries[0][0].includes('/')) continue;
        const root = join(dir, String(shown));
        for (const [as, bytes] of entries) {
          mkdirSync(dirname(join(root, as)), { recursive: true });
          writeFileSync(join(root, as), bytes);
        }
        await page.setInputFiles(input, join(root, entries[0][0].split('/')[0]));
      } else {
        await page.setInputFiles(input, entries.map(([as, bytes]) => ({ name: basename(as), mimeType: 'application/octet-stream', buffer: bytes })));
      }
      const message = await nextError(page, c.name);
      for (const expected of c.expect) {
        const name = basename(expected);
        assert.ok(message.includes(expected) || message.includes(name), `${c.name}: "${message}" does not say "${expected}"`);
      }
      shown += 1;
      await waitFor(page, record, idle, 30_000, `the page after ${c.name}`);
    }
    assert.ok(shown >= 55, `${shown} corpus cases through the page`);

    // The page still trains, predicts and exports, and nothing of it leaves the page.
    await page.setInputFiles('#pick-files', { name: 'blobs.csv', mimeType: 'text/csv', buffer: Buffer.from(blobsCsv(120)) });
    await waitFor(page, record, (s) => s.preview && idle(s), 30_000, 'the good file');
    await page.click('#start');
    const s = await waitFor(page, record, (st) => st.report && st.model && idle(st), 200_000, 'training');
    assert.ok(s.report.report.accuracy > 0.9, `accuracy ${s.report.text}`);
    const { name } = await downloadOf(page, '#export');
    assert.match(name, /\.safetensors$/);
    const after = record.requests.slice(loaded).filter((u) => !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(after, [], 'no request after the page loaded');
    assert.deepEqual(record.foreign, []);
    console.log(`trust: ${shown} corpus cases shown by name in the page; ${loaded} requests while loading, none after`);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a panic in the worker is reported and a fresh worker trains without a reload', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0&epochs=2`);
    await waitFor(page, record, idle, 60_000, 'the worker');
    await page.setInputFiles('#pick-files', { name: 'blobs.csv', mimeType: 'text/csv', buffer: Buffer.from(blobsCsv(120)) });
    await waitFor(page, record, (s) => s.preview && idle(s), 30_000, 'the file');
    await page.evaluate(() => window.burnishDebug.panic());
    const message = await nextError(page, 'the panic');
    assert.match(message, /training worker crashed \(.*a deliberate panic \(the debug_panic command\)/);
    assert.match(message, /load them again/);
    let s = await waitFor(page, record, (st) => st.crashes === 1 && idle(st), 60_000, 'the fresh worker');
    assert.equal(s.preview, null, 'the lost data is not shown as loaded');
    assert.ok(await page.locator('#start').isDisabled(), 'nothing to train until data is loaded again');
    // Only the one restart: the dead worker's trap after its report does not start another.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await page.evaluate(() => window.burnish.crashes), 1);
    await page.setInputFiles('#pick-files', { name: 'blobs.csv', mimeType: 'text/csv', buffer: Buffer.from(blobsCsv(120)) });
    await waitFor(page, record, (st) => st.preview && idle(st), 30_000, 'the file again');
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.report && st.model && idle(st), 200_000, 'training after the restart');
    assert.ok(s.report.report.accuracy > 0.9, s.report.text);
    // The console carries the panic (logged by the worker); nothing else went wrong.
    const others = record.errors.filter((e) => !/panicked|deliberate panic|unreachable|RuntimeError/.test(e));
    assert.deepEqual(others, []);
  } finally {
    await browser.close();
  }
});

test('a worker that cannot start is started three times, then the page stops and says why', { timeout: 120_000 }, async () => {
  const { browser, page } = await launch();
  try {
    // The worker's wasm glue cannot be fetched (as from an incomplete offline copy): every
    // worker fails before it is ready.
    await page.context().route(/burnish-web\.js$/, (route) => route.abort());
    await page.goto(`${BASE_URL}?demo=0`);
    const deadline = Date.now() + 60_000;
    let s;
    for (;;) {
      s = await page.evaluate(() => ({ phase: window.burnish.phase, crashes: window.burnish.crashes }));
      if (s.phase === 'no-worker' || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(s.phase, 'no-worker', `the page gave up starting workers: ${JSON.stringify(s)}`);
    // No more workers after the third.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await page.evaluate(() => window.burnish.crashes), 3);
    assert.match(await page.locator('#message').textContent(), /^The training worker could not start \(.+\), 3 times in a row, so the page stopped trying\. Reload the page/);
    for (const id of ['#start', '#demo', '#text-demo', '#lm-demo', '#pick-files']) {
      assert.ok(await page.locator(id).isDisabled(), `${id} is disabled`);
    }
  } finally {
    await browser.close();
  }
});

test('once loaded, the page reopens with no network and trains', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0&epochs=2`);
    await waitFor(page, record, (st) => st.offlineReady && idle(st), 60_000, 'the offline cache');
    assert.match(await page.locator('#offline-status').textContent(), /without a network/);
    await page.context().setOffline(true);
    await page.reload();
    await waitFor(page, record, idle, 60_000, 'the worker, offline');
    // The network really is gone: what was never stored cannot be fetched.
    const probe = await page.evaluate(() => fetch('./never-stored.txt').then((r) => `status ${r.status}`, (e) => `failed: ${e.message}`));
    assert.match(probe, /^failed/);
    await page.setInputFiles('#pick-files', { name: 'blobs.csv', mimeType: 'text/csv', buffer: Buffer.from(blobsCsv(120)) });
    await waitFor(page, record, (st) => st.preview && idle(st), 30_000, 'the file, offline');
    await page.click('#start');
    const s = await waitFor(page, record, (st) => st.report && st.model && idle(st), 200_000, 'training offline');
    assert.ok(s.report.report.accuracy > 0.9, s.report.text);
    // The demos' data came with the app.
    await page.click('#lm-demo');
    await waitFor(page, record, (st) => st.lmPreview, 60_000, 'the Tiny Shakespeare demo, offline');
    // The one failed load is the probe's.
    assert.deepEqual(record.errors, ['error: Failed to load resource: net::ERR_FAILED']);
  } finally {
    await browser.close();
  }
});
