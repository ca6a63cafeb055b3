// The page's views for language models: the loaded text, the held-out loss and perplexity as
// it learns, samples during training, streamed generation. No state of their own; app.js calls
// them with the worker's events (burnish_core::session::lm).

import { el } from './ui.js';

const $ = (id) => document.getElementById(id);

// The recipe the worker takes (LmRecipe) from the form's values: the `lm.*` fields and the
// shared optimizer and batch fields (`train.*`).
export function lmRecipe(form) {
  const { steps, ...lm } = form.lm;
  return { ...lm, train: { ...form.train, steps } };
}

// The form's values for an LmRecipe (the inverse of lmRecipe).
export function lmForm(recipe) {
  const { train, model, validation, eval_every: evalEvery, sample_every: sampleEvery, prompt, tuning } = recipe;
  return { train, lm: { model, steps: train.steps, validation, eval_every: evalEvery, sample_every: sampleEvery, prompt, tuning } };
}

// The generation request from the generation form.
export function sampling() {
  const optional = (id) => ($(id).value.trim() === '' ? null : Number($(id).value));
  const max = Number($('gen-max').value);
  const temperature = Number($('gen-temp').value);
  if (!Number.isInteger(max) || max < 1) throw new Error(`Tokens: expected a whole number of at least 1, found "${$('gen-max').value}"`);
  if (!(temperature >= 0)) throw new Error(`Temperature: expected 0 or more, found "${$('gen-temp').value}"`);
  return { max_tokens: max, temperature, top_k: optional('gen-topk'), top_p: optional('gen-topp'), seed: Number($('gen-seed').value) || 0 };
}

export function showLmPreview(p) {
  $('lm-preview').hidden = false;
  $('lm-summary').textContent =
    `${p.source}: ${p.characters.toLocaleString()} characters, ${p.tokens.toLocaleString()} tokens over a vocabulary of ${p.vocab_size} ` +
    '(a character-level tokenizer built from the text). The end of the text is held out to measure loss and perplexity. Train, and watch the samples.';
  $('lm-head').textContent = `${p.head}\u2026`;
  $('lm').hidden = false;
  $('lm-samples').replaceChildren();
  $('lm-eval').textContent = '';
}

export function showLmEval(e) {
  $('lm-eval').textContent =
    `Step ${e.step}: training loss ${e.train_loss.toFixed(3)}, held-out loss ${e.validation_loss.toFixed(3)}, perplexity ${e.perplexity.toFixed(2)}.`;
  $('accuracy').textContent = `perplexity ${e.perplexity.toFixed(2)}`;
}

export function addLmSample(s, prompt) {
  $('lm-samples').prepend(el('h4', { text: `After ${s.step} steps` }), el('pre', { class: 'sample-text', text: prompt + s.text }));
}

export function showLmReport(r, prompt) {
  const v = r.validation ? `held-out loss ${r.validation.loss.toFixed(3)}, perplexity ${r.validation.perplexity.toFixed(2)} over ${r.validation.tokens.toLocaleString()} tokens; ` : '';
  const peak = r.peak_memory != null ? ` Peak GPU memory held by the allocator: ${(r.peak_memory / 2 ** 20).toFixed(1)} MiB.` : '';
  $('lm-eval').textContent = `${r.cancelled ? 'Cancelled' : 'Done'} after ${r.steps} steps: ${v}${Math.round(r.tokens_per_second).toLocaleString()} training tokens/s.${peak}`;
  $('lm-samples').prepend(el('h4', { text: `Final sample (${r.steps} steps)` }), el('pre', { class: 'sample-text', text: prompt + r.sample }));
}

export function showLmModel(info) {
  const c = info.config;
  $('lm').hidden = false;
  $('model-summary').textContent =
    `${info.origin === 'imported' ? 'Imported' : 'Trained'} GPT: ${c.layers} blocks, width ${c.hidden}, ${c.heads} heads, context ${c.context}, ` +
    `${info.parameters.toLocaleString()} parameters, ${c.vocab_size} tokens` + (info.adapter ? `; with ${info.adapter} adapters.` : '.');
}

export function startGeneration(prompt) {
  $('generated').textContent = prompt;
  $('gen-speed').textContent = '';
}

export function appendToken(text) {
  $('generated').textContent += text;
}

export function showGenerated(g) {
  $('gen-speed').textContent = `${g.stopped ? 'Stopped: ' : ''}${g.tokens} tokens at ${g.tokens_per_second.toFixed(1)} tokens/s.`;
}
