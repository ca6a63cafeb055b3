// The user's own files through the page's real file inputs: a CSV (pick the label, train an MLP,
// report, export, re-import, predict a typed row) and a folder of PNGs (train a small CNN,
// export). Malformed files give an error naming the file and line, and the page stays usable.
// Each downloaded safetensors file is parsed here: names, shapes, metadata.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { BASE_URL, downloadOf, launch, parseSafetensors, png, setFields, waitFor } from './harness.mjs';

// Two blobs in (x, y) with a constant column; the label column `kind` is in the middle.
function blobsCsv(n) {
  const lines = ['x,kind,y,constant'];
  for (let i = 0; i < n; i++) {
    const pos = i % 2 === 0;
    const j = ((i * 7) % 10) / 10;
    lines.push(`${pos ? 2 + j : -2 - j},${pos ? 'pos' : 'neg'},${pos ? 1 - j : -1 + j},5`);
  }
  return `${lines.join('\n')}\n`;
}

const waitIdle = (page, record, what) => waitFor(page, record, (s) => s.phase === 'idle' || s.phase === 'done', 60_000, what);

test('a CSV through the file input: label choice, training, report, export, import, predict', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0&epochs=4`);
    await waitIdle(page, record, 'the worker');

    // A malformed file first: the error names the file and the line, and the page recovers.
    await page.setInputFiles('#pick-files', { name: 'broken.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b,label\n1,2,x\n3,oops,y\n') });
    const failed = await page.waitForFunction(() => !document.getElementById('message').hidden, null, { timeout: 30_000 }).then(() => page.locator('#message').textContent());
    assert.match(failed, /broken\.csv/);
    assert.match(failed, /line 3, column `b`: `oops` is not a number/);
    await page.evaluate(() => { window.burnish.errors.length = 0; });

    await page.setInputFiles('#pick-files', { name: 'blobs.csv', mimeType: 'text/csv', buffer: Buffer.from(blobsCsv(200)) });
    let s = await waitFor(page, record, (st) => st.preview, 30_000, 'the preview');
    assert.equal(s.preview.label, 'kind', 'the text column is the default label');
    assert.deepEqual(s.preview.columns, ['x', 'kind', 'y', 'constant']);
    // Another label through the select: `x` as label fails (kind is text), the page stays usable,
    // and going back to `kind` works.
    await page.selectOption('#label-column', 'x');
    await page.waitForFunction(() => !document.getElementById('message').hidden, null, { timeout: 30_000 });
    assert.match(await page.locator('#message').textContent(), /blobs\.csv: line 2, column `kind`: `(pos|neg)` is not a number/);
    await page.evaluate(() => { window.burnish.errors.length = 0; });
    await page.selectOption('#label-column', 'kind');
    s = await waitFor(page, record, (st) => st.preview.label === 'kind' && st.events.at(-1).type === 'loaded', 30_000, 'the label back');
    assert.deepEqual(s.preview.classes, ['neg', 'pos']);
    assert.deepEqual(s.preview.counts, [100, 100]);
    assert.deepEqual(s.preview.feature_names, ['x', 'y', 'constant']);
    assert.equal(await page.locator('#samples tbody tr').count(), 5);
    assert.equal(await page.locator('#balance .bar').count(), 2);

    await page.fill('[name="model.hidden"]', '16');
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.model && st.report, 180_000, 'training');
    assert.equal(s.epochs.length, 4);
    assert.ok(s.report.report.accuracy > 0.95, `blobs are separable: ${s.report.text}`);
    assert.equal(await page.locator('#progress-text').textContent(), 'Done: 4 epochs.');
    assert.equal(await page.locator('#report-table tbody tr').count(), 4);
    assert.ok((await page.locator('#chart').evaluate((c) => c.toDataURL().length)) > 2000, 'the loss chart is drawn');

    const { bytes } = await downloadOf(page, '#export');
    const st = parseSafetensors(bytes);
    assert.equal(st.metadata.format, 'burnish.classifier.v1');
    assert.deepEqual(JSON.parse(st.metadata.model), { kind: 'mlp', d_input: 3, n_classes: 2, hidden: [16], dropout: 0.1 });
    assert.deepEqual(JSON.parse(st.metadata.classes), ['neg', 'pos']);
    const norm = JSON.parse(st.metadata.normalizer);
    assert.equal(norm.mean.length, 3);
    assert.equal(norm.std[2], 1, 'a constant column keeps std 1');
    assert.equal(st.metadata.image_shape, 'null');
    assert.deepEqual(JSON.parse(st.metadata.features), ['x', 'y', 'constant']);
    assert.deepEqual(Object.keys(st.tensors).sort(), ['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']);
    assert.deepEqual(st.tensors['layers.0.weight'].shape, [16, 3], 'PyTorch [out, in] layout');
    assert.deepEqual(st.tensors['layers.1.weight'].shape, [2, 16]);

    // The page's export continues training in the CLI, and the CLI's export loads in the page.
    const cli = process.env.BURNISH_CLI;
    assert.ok(cli, 'BURNISH_CLI is not set: run the browser tests through `cargo xtask test`');
    const dir = mkdtempSync(join(tmpdir(), 'burnish-cli-'));
    writeFileSync(join(dir, 'blobs.csv'), blobsCsv(200));
    writeFileSync(join(dir, 'page.safetensors'), bytes);
    writeFileSync(join(dir, 'recipe.json'), '{"fit": {"epochs": 1}}');
    const out = execFileSync(cli, ['train', join(dir, 'blobs.csv'), '--label', 'kind', '--import', join(dir, 'page.safetensors'),
      '--recipe', join(dir, 'recipe.json'), '--out', join(dir, 'cli.safetensors')], { encoding: 'utf8' });
    assert.match(out, /test accuracy: (0\.9|1\.0)/, out);
    const fromCli = readFileSync(join(dir, 'cli.safetensors'));
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(parseSafetensors(fromCli).metadata.features, st.metadata.features);

    // Import the CLI's model in a fresh page and predict a typed row.
    await page.goto(`${BASE_URL}?demo=0`);
    await waitIdle(page, record, 'the worker again');
    await page.setInputFiles('#import', { name: 'cli.safetensors', mimeType: 'application/octet-stream', buffer: fromCli });
    s = await waitFor(page, record, (st) => st.model, 30_000, 'the import');
    assert.equal(s.model.origin, 'imported');
    assert.equal(await page.locator('#row-fields input').count(), 3);
    assert.deepEqual(await page.locator('#row-fields label').allTextContents(), ['x', 'y', 'constant'], 'column names come with the model');
    await page.fill('#row-text', '2.5, 0.8, 5');
    await page.click('#predict-row button[type=submit]');
    s = await waitFor(page, record, (st) => st.prediction, 30_000, 'a prediction');
    assert.equal(s.prediction.classes[s.prediction.best], 'pos');
    assert.ok(Math.abs(s.prediction.probabilities[0] + s.prediction.probabilities[1] - 1) < 1e-5);
    assert.equal(await page.locator('#probabilities .bar.best .name').textContent(), 'pos');

    assert.deepEqual(record.errors, []);
    assert.deepEqual(record.foreign, []);
  } finally {
    await browser.close();
  }
});

test('an image folder through the folder input trains a CNN and exports it', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'burnish-folder-'));
  const root = join(dir, 'bars');
  // Vertical and horizontal bars at varying positions, 12x12, plus a file to skip.
  for (const [cls, draw] of [['vertical', (x, y, k) => (x === k ? 255 : 0)], ['horizontal', (x, y, k) => (y === k ? 255 : 0)]]) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let k = 1; k < 11; k++) writeFileSync(join(root, cls, `${k}.png`), await png(12, 12, (x, y) => draw(x, y, k)));
  }
  writeFileSync(join(root, 'README.txt'), 'not an image');
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0&epochs=6`);
    await waitIdle(page, record, 'the worker');
    await page.locator('summary', { hasText: 'Reading options' }).click();
    await page.fill('#folder-size', '8');
    await page.setInputFiles('#pick-folder', root);
    let s = await waitFor(page, record, (st) => st.preview, 60_000, 'the folder preview');
    assert.equal(s.preview.source, 'bars');
    assert.deepEqual(s.preview.classes, ['horizontal', 'vertical']);
    assert.deepEqual(s.preview.counts, [10, 10]);
    assert.deepEqual(s.preview.image_shape, [1, 8, 8]);
    assert.deepEqual(s.preview.skipped, ['bars/README.txt']);
    assert.equal(await page.locator('#samples canvas').count(), 4);

    await setFields(page, {
      'model.filters': '4',
      'model.hidden': '8',
      'split.validation': '0.2',
      'split.test': '0',
      'train.batch_size': '8',
      'train.learning_rate': '0.02',
    });
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.model && st.report, 240_000, 'training the CNN');
    assert.equal(s.report.split, 'validation', 'no test share: the report is on validation');
    assert.equal(s.model.config.kind, 'cnn');
    assert.ok(s.losses.length >= 6);

    const { bytes } = await downloadOf(page, '#export');
    const st = parseSafetensors(bytes);
    assert.deepEqual(st.tensors['convs.0.weight'].shape, [4, 1, 3, 3]);
    assert.deepEqual(Object.keys(st.tensors).sort(), ['convs.0.bias', 'convs.0.weight', 'head.0.bias', 'head.0.weight', 'head.1.bias', 'head.1.weight']);
    assert.deepEqual(st.tensors['head.0.weight'].shape, [8, 4 * 4 * 4], 'one block halves 8x8 to 4x4 with 4 channels');
    assert.deepEqual(st.tensors['head.1.weight'].shape, [2, 8]);
    assert.deepEqual(JSON.parse(st.metadata.image_shape), [1, 8, 8]);
    assert.deepEqual(JSON.parse(st.metadata.classes), ['horizontal', 'vertical']);
    assert.deepEqual(record.errors, []);
    assert.deepEqual(record.foreign, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two IDX files through the file input load as images; a lone unknown file is refused', { timeout: 120_000 }, async () => {
  const idx = (dims, values) => {
    const head = Buffer.alloc(4 + 4 * dims.length);
    head[2] = 0x08;
    head[3] = dims.length;
    dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([head, Buffer.from(values)]);
  };
  const n = 30;
  const images = idx([n, 4, 4], Array.from({ length: n * 16 }, (_, i) => (Math.floor(i / 16) % 3) * 100));
  const labels = idx([n], Array.from({ length: n }, (_, i) => i % 3));
  const { gzipSync } = await import('node:zlib');
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0`);
    await waitIdle(page, record, 'the worker');
    await page.setInputFiles('#pick-files', { name: 'notes.bin', mimeType: 'application/octet-stream', buffer: Buffer.from('??') });
    await page.waitForFunction(() => !document.getElementById('message').hidden, null, { timeout: 30_000 });
    assert.match(await page.locator('#message').textContent(), /Cannot tell what notes\.bin is/);
    await page.evaluate(() => { window.burnish.errors.length = 0; });
    // Labels first and gzipped images: the order and the compression are found out.
    await page.setInputFiles('#pick-files', [
      { name: 't10k-labels-idx1-ubyte', mimeType: 'application/octet-stream', buffer: labels },
      { name: 't10k-images-idx3-ubyte.gz', mimeType: 'application/gzip', buffer: gzipSync(images) },
    ]);
    const s = await waitFor(page, record, (st) => st.preview, 30_000, 'the IDX preview');
    assert.equal(s.preview.source, 't10k-images-idx3-ubyte.gz');
    assert.equal(s.preview.rows, n);
    assert.equal(s.preview.features, 16);
    assert.deepEqual(s.preview.classes, ['0', '1', '2']);
    assert.deepEqual(s.preview.counts, [10, 10, 10]);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});

test('a recipe saves as JSON and loads back; a typo in a loaded recipe is named', { timeout: 120_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0`);
    await waitIdle(page, record, 'the worker');
    await setFields(page, { 'train.learning_rate': '0.003', 'train.schedule.decay': 'cosine', 'train.clip_grad_norm': '1.5' });
    const { name, bytes } = await downloadOf(page, '#save-recipe');
    assert.equal(name, 'recipe.json');
    const recipe = JSON.parse(bytes.toString('utf8'));
    assert.equal(recipe.train.learning_rate, 0.003);
    assert.equal(recipe.train.schedule.decay, 'cosine');
    assert.equal(recipe.train.clip_grad_norm, 1.5);
    assert.equal(recipe.fit.patience, 5, 'the defaults come from the core');
    assert.deepEqual(recipe.model.hidden, [128, 64]);

    recipe.fit.epochs = 7;
    recipe.model.kind = 'mlp';
    await page.setInputFiles('#load-recipe', { name: 'mine.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(recipe)) });
    await page.waitForFunction(() => document.querySelector('[name="fit.epochs"]').value === '7', null, { timeout: 10_000 });
    assert.equal(await page.inputValue('[name="model.kind"]'), 'mlp');

    await page.setInputFiles('#load-recipe', { name: 'typo.json', mimeType: 'application/json', buffer: Buffer.from('{"fit": {"epoch": 3}}') });
    await page.waitForFunction(() => !document.getElementById('message').hidden, null, { timeout: 10_000 });
    assert.equal(await page.locator('#message').textContent(), 'typo.json: unknown field `fit.epoch`');
    assert.equal(await page.inputValue('[name="fit.epochs"]'), '7', 'a bad recipe changes nothing');
    assert.deepEqual(record.foreign, []);
  } finally {
    await browser.close();
  }
});
