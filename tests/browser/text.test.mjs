// Fine-tuning a text encoder in the page through its real file inputs: a tiny BERT-shaped model
// folder written here (random weights, no `bert.` prefix, a pooler and an MLM-head tensor that
// must be left out, the tiny word-level tokenizer.json), then a CoNLL file (tagging) and a CSV
// (classification), a few epochs each on SwiftShader, predictions on typed text, and the
// exported Hugging Face folder checked: transformers' names, config, tokenizer. The built-in
// MiniLM demo loads (model folder, 2,000 texts, memory estimate) without training.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE_URL, launch, parseSafetensors, setFields, waitFor } from './harness.mjs';
import { CONFIG, TOKENIZER, tinyFolder } from './tiny-bert.mjs';

function conll(n) {
  const sentences = [
    [['the', 'O'], ['good', 'B-POS'], ['film', 'O']],
    [['awful', 'B-NEG'], ['poor', 'I-NEG'], ['film', 'O']],
    [['great', 'B-POS'], ['fine', 'I-POS'], ['the', 'O'], ['film', 'O']],
    [['the', 'O'], ['film', 'O'], ['bad', 'B-NEG']],
  ];
  let out = '';
  for (let k = 0; k < n; k++) out += `${sentences[k % 4].map(([w, tag]) => `${w}\t${tag}`).join('\n')}\n\t\n`;
  return out;
}

// Click `selector` and collect the `count` downloads it starts, by file name.
async function downloadsOf(page, selector, count) {
  const files = {};
  const done = new Promise((resolve) => {
    page.on('download', async (d) => {
      const chunks = [];
      for await (const c of await d.createReadStream()) chunks.push(c);
      files[d.suggestedFilename()] = Buffer.concat(chunks);
      if (Object.keys(files).length === count) resolve(files);
    });
  });
  await page.click(selector);
  return done;
}

const idle = (s) => s.phase === 'idle' || s.phase === 'done';

// The tiny BERT (`options` as for `tinyFiles`) through the model picker, then 32 labelled
// reviews (pos/neg) through the file input, up to the preview and memory estimate.
async function openTinyBertWithReviews(page, record, dir, options) {
  const model = join(dir, 'tiny-bert');
  tinyFolder(model, options);
  await page.goto(`${BASE_URL}?demo=0`);
  await waitFor(page, record, idle, 60_000, 'the worker');
  await page.setInputFiles('#pick-model', model);
  await waitFor(page, record, (st) => st.folder, 60_000, 'the model folder');
  const rows = ['text,label'];
  const texts = [['the good film', 'pos'], ['great fine film', 'pos'], ['the bad film', 'neg'], ['awful poor film', 'neg']];
  for (let k = 0; k < 32; k++) rows.push(`${texts[k % 4][0]},${texts[k % 4][1]}`);
  await page.setInputFiles('#pick-files', { name: 'reviews.csv', mimeType: 'text/csv', buffer: Buffer.from(`${rows.join('\n')}\n`) });
  await waitFor(page, record, (st) => st.textPreview && st.memory, 30_000, 'the texts preview');
}

test('a tiny BERT through the file inputs: tagging and classification, predict, export', { timeout: 400_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'burnish-text-'));
  const { browser, page, record } = await launch();
  try {
    const model = join(dir, 'tiny-bert');
    tinyFolder(model);
    await page.goto(`${BASE_URL}?demo=0`);
    await waitFor(page, record, idle, 60_000, 'the worker');

    // A folder without tokenizer.json is refused with what to do; the page stays usable.
    const broken = join(dir, 'no-tokenizer');
    mkdirSync(broken);
    writeFileSync(join(broken, 'config.json'), JSON.stringify(CONFIG));
    writeFileSync(join(broken, 'model.safetensors'), readFileSync(join(model, 'model.safetensors')));
    await page.setInputFiles('#pick-model', broken);
    await page.waitForFunction(() => !document.getElementById('message').hidden, null, { timeout: 30_000 });
    assert.match(await page.locator('#message').textContent(), /no-tokenizer: the folder has no tokenizer\.json/);
    await page.evaluate(() => { window.burnish.errors.length = 0; });

    await page.setInputFiles('#pick-model', model);
    let s = await waitFor(page, record, (st) => st.folder, 60_000, 'the model folder');
    assert.equal(s.folder.name, 'tiny-bert');
    assert.equal(s.folder.layers, 2);
    assert.equal(s.folder.prefix, '');
    assert.deepEqual(s.folder.ignored, ['cls.predictions.bias']);
    assert.equal(s.mode, 'text');
    assert.match(await page.locator('#folder-summary').textContent(), /2-layer BERT-style encoder, hidden 16/);
    assert.equal(await page.locator('#text-fields').isVisible(), true);
    assert.equal(await page.locator('#model-fields').isVisible(), false);

    // Tagged sentences through the ordinary file input.
    await page.setInputFiles('#pick-files', { name: 'train.conll', mimeType: 'text/plain', buffer: Buffer.from(conll(48)) });
    s = await waitFor(page, record, (st) => st.textPreview && st.memory, 30_000, 'the CoNLL preview and the memory estimate');
    assert.equal(s.textPreview.task, 'tokens');
    assert.equal(s.textPreview.rows, 48);
    assert.equal(s.textPreview.words, 156);
    assert.deepEqual(s.textPreview.classes, ['O', 'B-NEG', 'B-POS', 'I-NEG', 'I-POS']);
    assert.equal(await page.locator('#samples mark.entity').count() > 0, true, 'entities are marked in the preview');
    assert.equal(s.memory.problem, null);
    assert.match(await page.locator('#memory').textContent(), /Estimated GPU memory at batch 16/);
    assert.equal(await page.locator('[name="fit.metric"]').inputValue(), 'entity_f1');

    await setFields(page, {
      'train.learning_rate': '0.01',
      'train.batch_size': '8',
      'train.schedule.warmup_fraction': '0',
      'train.schedule.decay': 'constant',
      'text.dropout': '0',
      'fit.epochs': '12',
    });
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.textModel && st.report && idle(st), 240_000, 'tagging training');
    assert.ok(s.report.entities, 'an entity report');
    assert.ok(s.report.entities.micro.f1 >= 0.9, `entity F1 ${s.report.entities.micro.f1}:\n${s.report.text}`);
    assert.ok(s.epochs.every((e) => e.validation_entity_f1 != null));
    assert.match(await page.locator('#report-summary').textContent(), /Entity F1 on the test sentences/);
    assert.ok(await page.locator('#entity-table tbody tr').count() >= 5);

    await page.fill('#predict-input', 'the good film and awful poor film');
    await page.click('#predict-text button[type="submit"]');
    s = await waitFor(page, record, (st) => st.textPrediction, 30_000, 'a tagged sentence');
    assert.deepEqual(s.textPrediction.words.map((w) => w.word), ['the', 'good', 'film', 'and', 'awful', 'poor', 'film']);
    assert.deepEqual(s.textPrediction.words.map((w) => w.tag).filter((t) => t !== 'O'), ['B-POS', 'B-NEG', 'I-NEG']);
    assert.deepEqual(s.textPrediction.entities.map((e) => [e.label, e.text]), [['POS', 'good'], ['NEG', 'awful poor']]);
    assert.equal(await page.locator('#tagged mark.entity').count(), 3);

    const files = await downloadsOf(page, '#export-text', 3);
    assert.deepEqual(Object.keys(files).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    const config = JSON.parse(files['config.json']);
    assert.deepEqual(config.architectures, ['BertForTokenClassification']);
    assert.deepEqual(config.id2label, { 0: 'O', 1: 'B-NEG', 2: 'B-POS', 3: 'I-NEG', 4: 'I-POS' });
    assert.equal(config.label2id['I-POS'], 4);
    assert.equal(config.model_type, 'bert');
    assert.equal(config.num_hidden_layers, 2);
    assert.deepEqual(files['tokenizer.json'], TOKENIZER);
    const st = parseSafetensors(files['model.safetensors']);
    const names = Object.keys(st.tensors);
    assert.equal(names.length, 5 + 2 * 16 + 2, names.join(', '));
    assert.ok(names.every((n) => n.startsWith('bert.') || n.startsWith('classifier.')));
    assert.ok(!names.some((n) => n.includes('pooler') || n.startsWith('cls.')));
    assert.deepEqual(st.tensors['classifier.weight'].shape, [5, 16]);
    assert.deepEqual(st.tensors['bert.encoder.layer.1.intermediate.dense.weight'].shape, [32, 16]);

    // Texts with labels: the same folder, a CSV whose columns are found by name.
    const rows = ['id,review,sentiment'];
    const texts = [['the good film', 'pos'], ['great fine film', 'pos'], ['the bad film', 'neg'], ['awful poor film', 'neg']];
    for (let k = 0; k < 48; k++) rows.push(`${k},${texts[k % 4][0]},${texts[k % 4][1]}`);
    await page.setInputFiles('#pick-files', { name: 'reviews.csv', mimeType: 'text/csv', buffer: Buffer.from(`${rows.join('\n')}\n`) });
    s = await waitFor(page, record, (st) => st.textPreview?.task === 'sequence', 30_000, 'the texts preview');
    assert.deepEqual(s.textPreview.chosen, { text: 'review', pair: null, label: 'sentiment' });
    assert.deepEqual(await page.locator('#text-column').inputValue(), 'review');
    assert.deepEqual(s.textPreview.classes, ['neg', 'pos']);
    await setFields(page, { 'fit.epochs': '6', 'fit.metric': 'accuracy' });
    await page.evaluate(() => { window.burnish.textModel = null; window.burnish.report = null; });
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.textModel && st.report && idle(st), 240_000, 'classification training');
    assert.equal(s.textModel.task, 'sequence');
    assert.equal(s.report.report.accuracy, 1, s.report.text);
    await page.fill('#predict-input', 'awful poor film');
    await page.evaluate(() => { window.burnish.textPrediction = null; });
    await page.click('#predict-text button[type="submit"]');
    s = await waitFor(page, record, (st) => st.textPrediction, 30_000, 'class probabilities');
    assert.equal(s.textPrediction.classes.classes[s.textPrediction.classes.best], 'neg');
    assert.equal(await page.locator('#probabilities .bar').count(), 2);

    assert.deepEqual(record.foreign, [], 'no request left the page\'s origin');
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('LoRA on the tiny BERT: memory before training, a few steps, the PEFT adapter exported and loaded back', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'burnish-lora-'));
  const { browser, page, record } = await launch();
  try {
    await openTinyBertWithReviews(page, record, dir);

    // Only the chosen strategy's settings show; the estimate follows the form.
    assert.equal(await page.locator('[name="text.tuning.lora.rank"]').isVisible(), false);
    await page.selectOption('[name="text.tuning.strategy"]', 'lora');
    assert.equal(await page.locator('[name="text.tuning.lora.rank"]').isVisible(), true);
    assert.equal(await page.locator('[name="text.tuning.top_layers"]').isVisible(), false);
    assert.deepEqual(await page.locator('[name="text.tuning.lora.targets"]').evaluate((s) => [...s.selectedOptions].map((o) => o.value)), ['query', 'value']);
    await setFields(page, { 'text.tuning.lora.rank': '4', 'text.tuning.lora.alpha': '8' });
    await page.evaluate(() => { window.burnish.memory = null; });
    await page.fill('[name="fit.epochs"]', '3');
    // 2 layers x (query, value) x 4 x (16 + 16) + the head (16 + 1) x 2 = 546.
    let s = await waitFor(page, record, (st) => st.memory?.estimate.trainable === 546, 30_000, 'the LoRA estimate');
    assert.equal(s.memory.estimate.tuning, 'LoRA r=4 alpha=8 on query, value');
    assert.match(await page.locator('#memory').textContent(), /LoRA r=4 alpha=8 on query, value: 546 of [\d,]+ parameters train/);

    await setFields(page, {
      'train.learning_rate': '0.01',
      'train.batch_size': '8',
      'text.dropout': '0',
      'fit.metric': 'accuracy',
    });
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.textModel && st.report && idle(st), 200_000, 'LoRA training');
    assert.equal(s.started.parameters, 546);
    assert.ok(s.report.peak_memory > 0, `peak memory ${s.report.peak_memory}`);
    assert.match(await page.locator('#report-summary').textContent(), /Peak GPU memory held by the allocator: [\d.]+ MiB/);
    assert.ok(s.started.total_parameters > 5000, `${s.started.total_parameters} parameters in all`);
    assert.equal(s.textModel.adapter, 'LoRA r=4 alpha=8 on query, value');
    assert.equal(s.textModel.adapter_exportable, true);
    assert.ok(!(await page.locator('#export-adapter').isDisabled()));
    await page.fill('#predict-input', 'awful poor film');
    await page.click('#predict-text button[type="submit"]');
    s = await waitFor(page, record, (st) => st.textPrediction, 30_000, 'class probabilities');
    const before = s.textPrediction.classes.probabilities;

    const files = await downloadsOf(page, '#export-adapter', 3);
    assert.deepEqual(Object.keys(files).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'burnish_adapter.json']);
    const config = JSON.parse(files['adapter_config.json']);
    assert.equal(config.peft_type, 'LORA');
    assert.equal(config.task_type, 'SEQ_CLS');
    assert.equal(config.r, 4);
    assert.equal(config.lora_alpha, 8);
    assert.deepEqual(config.target_modules, ['query', 'value']);
    assert.deepEqual(config.modules_to_save, ['classifier']);
    assert.equal(config.base_model_name_or_path, 'tiny-bert');
    assert.equal(config.bias, 'none');
    const st = parseSafetensors(files['adapter_model.safetensors']);
    const names = Object.keys(st.tensors).sort();
    const expected = ['base_model.model.classifier.bias', 'base_model.model.classifier.weight'];
    for (const l of [0, 1]) for (const m of ['query', 'value']) for (const f of ['A', 'B']) expected.push(`base_model.model.bert.encoder.layer.${l}.attention.self.${m}.lora_${f}.weight`);
    assert.deepEqual(names, expected.sort());
    assert.deepEqual(st.tensors['base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight'].shape, [4, 16]);
    assert.deepEqual(st.tensors['base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight'].shape, [16, 4]);
    assert.deepEqual(JSON.parse(files['burnish_adapter.json']).labels, ['neg', 'pos']);

    // The adapter folder through the model picker: it goes onto the loaded model and predicts
    // exactly as before.
    const adapterDir = join(dir, 'my-adapter');
    mkdirSync(adapterDir);
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(adapterDir, name), bytes);
    await page.evaluate(() => { window.burnish.textModel = null; window.burnish.textPrediction = null; });
    await page.setInputFiles('#pick-model', adapterDir);
    s = await waitFor(page, record, (st) => st.textModel, 30_000, 'the adapter loaded');
    assert.equal(s.textModel.origin, 'adapter');
    assert.deepEqual(s.textModel.classes, ['neg', 'pos']);
    assert.match(await page.locator('#model-summary').textContent(), /LoRA adapter on the loaded model/);
    await page.click('#predict-text button[type="submit"]');
    s = await waitFor(page, record, (st) => st.textPrediction, 30_000, 'probabilities with the imported adapter');
    assert.deepEqual(s.textPrediction.classes.probabilities, before);

    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('activations past ±89 (outlier features) fine-tune with finite losses on every layer', { timeout: 300_000 }, async () => {
  // SwiftShader's tanh is NaN from |x| = 89 on, and burn's GELU backward takes tanh of
  // 0.0357 x³ + 0.798 x: pre-activations of ±40 made every gradient below them NaN (MiniLM's
  // fourth layer has such features), and the pooler's tanh of ±100 made the loss NaN.
  const dir = mkdtempSync(join(tmpdir(), 'burnish-outliers-'));
  const { browser, page, record } = await launch();
  try {
    await openTinyBertWithReviews(page, record, dir, { outliers: true });
    await setFields(page, {
      'text.tuning.strategy': 'full',
      'text.pooling': 'cls',
      'train.learning_rate': '0.001',
      'train.batch_size': '8',
      'train.schedule.warmup_fraction': '0',
      'text.dropout': '0',
      'fit.epochs': '2',
      'fit.metric': 'accuracy',
    });
    await page.click('#start');
    const s = await waitFor(page, record, (st) => st.textModel && st.report && idle(st), 200_000, 'training through the outliers');
    const losses = s.losses.map(([, loss]) => loss);
    assert.ok(losses.length >= 4, `${losses.length} steps`);
    assert.ok(losses.every(Number.isFinite), `losses ${losses.join(', ')}`);
    assert.notEqual(losses.at(-1), losses[0], 'the weights moved');
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the built-in text demo loads MiniLM and the movie snippets from the page\'s origin', { timeout: 300_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0`);
    await waitFor(page, record, idle, 60_000, 'the worker');
    await page.click('#text-demo');
    const s = await waitFor(page, record, (st) => st.folder && st.textPreview && st.memory, 240_000, 'the text demo');
    assert.equal(s.folder.name, 'all-MiniLM-L6-v2');
    assert.equal(s.folder.layers, 6);
    assert.equal(s.folder.parameters, 22_713_216);
    assert.equal(s.textPreview.rows, 2000);
    assert.deepEqual(s.textPreview.classes, ['negative', 'positive']);
    assert.ok(s.textPreview.tokens.mean > 10 && s.textPreview.tokens.max <= 512);
    assert.equal(await page.locator('[name="text.pooling"]').inputValue(), 'mean');
    assert.equal(await page.locator('[name="text.max_length"]').inputValue(), '64');
    assert.equal(s.memory.estimate.max_length, 64);
    assert.ok(!(await page.locator('#start').isDisabled()), 'ready to train');
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});
