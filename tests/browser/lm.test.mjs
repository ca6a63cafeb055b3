// A small GPT trained from scratch in the page on a text dropped through the file input: the
// held-out loss and perplexity and samples arrive as it learns; greedy generation streams into
// the page and repeats; a long generation stops on request; the GPT-2 folder export loads back
// through the model-folder input and generates the same text; LoRA adapters trained on it export
// as a PEFT folder that loads back onto the base. The Tiny Shakespeare demo loads from the page's
// origin.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE_URL, launch, setFields, waitFor } from './harness.mjs';

const idle = (s) => s.phase === 'idle' || s.phase === 'done';

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

async function generate(page, record, prompt, max, temperature) {
  await page.evaluate(() => { window.burnish.generation = null; });
  await page.fill('#gen-prompt', prompt);
  await page.fill('#gen-max', String(max));
  await page.fill('#gen-temp', String(temperature));
  await page.click('#gen-start');
}

test('a GPT trains on a dropped text, generates with streaming, stops, exports and loads back', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'burnish-lm-'));
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0`);
    await waitFor(page, record, idle, 60_000, 'the worker');
    const text = 'the cat sat on the mat.\nthe dog sat on the log.\n'.repeat(30);
    await page.setInputFiles('#pick-files', { name: 'rhymes.txt', mimeType: 'text/plain', buffer: Buffer.from(text) });
    let s = await waitFor(page, record, (st) => st.lmPreview, 30_000, 'the text preview');
    assert.equal(s.mode, 'lm');
    assert.equal(s.lmPreview.characters, text.length);
    assert.equal(s.lmPreview.vocab_size, new Set(text).size + 1);
    assert.equal(await page.locator('#lm-fields').isVisible(), true);
    assert.equal(await page.locator('#fit-fields').isVisible(), false);
    assert.match(await page.locator('#lm-summary').textContent(), /rhymes\.txt: 1,440 characters/);

    for (const [name, value] of [['lm.model.context', 16], ['lm.model.layers', 1], ['lm.model.heads', 2], ['lm.model.hidden', 16],
      ['lm.model.dropout', 0], ['lm.steps', 40], ['lm.eval_every', 10], ['lm.sample_every', 20], ['train.batch_size', 8],
      ['train.learning_rate', 0.02], ['train.schedule.warmup_fraction', 0]]) {
      await page.fill(`[name="${name}"]`, String(value));
    }
    await page.fill('[name="lm.prompt"]', 'the ');
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.lmModel && st.lmReport && idle(st), 200_000, 'language-model training');
    assert.deepEqual(s.lmEvals.map((e) => e.step), [10, 20, 30, 40]);
    assert.deepEqual(s.lmSamples.map((e) => e.step), [20]);
    const first = s.lmEvals[0].validation_loss;
    const last = s.lmReport.validation.loss;
    assert.ok(last < first, `held-out loss ${first} -> ${last}`);
    assert.ok(Math.abs(s.lmReport.validation.perplexity - Math.exp(last)) < 1e-6 * Math.exp(last));
    assert.equal(s.lmModel.config.context, 16);
    assert.match(await page.locator('#lm-eval').textContent(), /Done after 40 steps: held-out loss/);
    assert.equal(await page.locator('#lm-samples pre').count(), 2, 'the step-20 sample and the final one');

    // Greedy generation streams token by token and repeats.
    await generate(page, record, 'the d', 30, 0);
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'a generation');
    assert.equal(s.generation.tokens, 30);
    assert.equal(s.generated, s.generation.text, 'the streamed tokens make the text');
    assert.equal(await page.locator('#generated').textContent(), `the d${s.generation.text}`);
    const greedy = s.generation.text;
    await generate(page, record, 'the d', 30, 0);
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'the same generation');
    assert.equal(s.generation.text, greedy);

    // A long generation stops when asked.
    await generate(page, record, 'the ', 5000, 1);
    await waitFor(page, record, (st) => st.generated.length > 5, 60_000, 'the first tokens');
    await page.click('#gen-stop');
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'the stop');
    assert.equal(s.generation.stopped, true);
    assert.ok(s.generation.tokens < 5000);

    const files = await downloadsOf(page, '#export-lm', 3);
    assert.deepEqual(Object.keys(files).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    const config = JSON.parse(files['config.json']);
    assert.deepEqual(config.architectures, ['GPT2LMHeadModel']);
    assert.equal(config.n_positions, 16);
    const folder = join(dir, 'my-gpt');
    mkdirSync(folder);
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(folder, name), bytes);
    await page.evaluate(() => { window.burnish.lmModel = null; });
    await page.setInputFiles('#pick-model', folder);
    s = await waitFor(page, record, (st) => st.lmModel, 30_000, 'the exported model loaded back');
    assert.equal(s.lmModel.origin, 'imported');
    await generate(page, record, 'the d', 30, 0);
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'generation with the loaded model');
    assert.equal(s.generation.text, greedy, 'the loaded model generates what the trained one did');

    // LoRA on the loaded model: only the adapters train; they export as a PEFT folder that
    // loads back onto the base and generates what the adapted model did.
    assert.equal(await page.locator('[name="lm.tuning.lora.rank"]').isVisible(), false);
    await page.selectOption('[name="lm.tuning.strategy"]', 'lora');
    assert.equal(await page.locator('[name="lm.tuning.lora.rank"]').isVisible(), true);
    assert.deepEqual(await page.locator('[name="lm.tuning.lora.targets"]').evaluate((e) => [...e.selectedOptions].map((o) => o.value)), ['c_attn']);
    await setFields(page, { 'lm.tuning.lora.rank': '2', 'lm.steps': '10', 'train.learning_rate': '0.05' });
    await page.evaluate(() => { window.burnish.lmReport = null; });
    await page.click('#start');
    s = await waitFor(page, record, (st) => st.lmModel?.adapter && st.lmReport && idle(st), 200_000, 'LoRA training');
    assert.equal(s.started.parameters, 2 * 16 + 2 * 48, 'rank-2 factors of the one block\'s c_attn');
    assert.equal(s.lmModel.adapter, 'LoRA r=2 alpha=16 on c_attn');
    assert.match(await page.locator('#model-summary').textContent(), /with LoRA r=2 alpha=16 on c_attn adapters/);
    await generate(page, record, 'the d', 30, 0);
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'generation with the adapters');
    const adapted = s.generation.text;
    const adapter = await downloadsOf(page, '#export-lm-adapter', 2);
    assert.deepEqual(Object.keys(adapter).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const peft = JSON.parse(adapter['adapter_config.json']);
    assert.equal(peft.task_type, 'CAUSAL_LM');
    assert.equal(peft.r, 2);
    assert.equal(peft.base_model_name_or_path, 'my-gpt');
    assert.deepEqual(peft.target_modules, ['c_attn']);
    const st = adapter['adapter_model.safetensors'];
    const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString('utf8'));
    assert.deepEqual(Object.keys(header).filter((k) => k !== '__metadata__').sort(), [
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight',
      'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight',
    ]);
    assert.deepEqual(header['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight'].shape, [48, 2]);
    const adapterDir = join(dir, 'my-lora');
    mkdirSync(adapterDir);
    for (const [name, bytes] of Object.entries(adapter)) writeFileSync(join(adapterDir, name), bytes);
    await page.evaluate(() => { window.burnish.lmModel = null; });
    await page.setInputFiles('#pick-model', folder);
    s = await waitFor(page, record, (st) => st.lmModel, 30_000, 'the base loaded again');
    assert.equal(s.lmModel.adapter, null);
    await page.evaluate(() => { window.burnish.lmModel = null; });
    await page.setInputFiles('#pick-model', adapterDir);
    s = await waitFor(page, record, (st) => st.lmModel, 30_000, 'the adapter loaded onto the base');
    assert.equal(s.lmModel.adapter, 'LoRA r=2 alpha=16 on c_attn');
    await generate(page, record, 'the d', 30, 0);
    s = await waitFor(page, record, (st) => st.generation && idle(st), 60_000, 'generation with the loaded adapter');
    assert.equal(s.generation.text, adapted);

    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the Tiny Shakespeare demo loads from the page\'s origin', { timeout: 120_000 }, async () => {
  const { browser, page, record } = await launch();
  try {
    await page.goto(`${BASE_URL}?demo=0`);
    await waitFor(page, record, idle, 60_000, 'the worker');
    await page.click('#lm-demo');
    const s = await waitFor(page, record, (st) => st.lmPreview, 60_000, 'the demo text');
    assert.equal(s.lmPreview.source, 'tinyshakespeare.txt');
    assert.equal(s.lmPreview.characters, 1_115_394);
    assert.equal(s.lmPreview.vocab_size, 66);
    assert.match(s.lmPreview.head, /^First Citizen:/);
    assert.equal(await page.locator('[name="lm.model.context"]').inputValue(), '128');
    assert.ok(!(await page.locator('#start').isDisabled()), 'ready to train');
    assert.deepEqual(record.foreign, []);
    assert.deepEqual(record.errors, []);
  } finally {
    await browser.close();
  }
});
