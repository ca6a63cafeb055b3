// The page's views for fine-tuning a text encoder: the model folder, the texts or tagged
// sentences, the memory estimate, the entity report and predictions on typed text. No state of
// their own; app.js calls them with the worker's events (burnish_core::session::text_session).

import { bars, el } from './ui.js';

const $ = (id) => document.getElementById(id);
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

// Which files of a set make a Hugging Face model folder (by base name).
export function isModelFolder(names) {
  const base = new Set(names.map((n) => n.split('/').at(-1)));
  return base.has('config.json') && (base.has('model.safetensors') || base.has('pytorch_model.bin') || base.has('tokenizer.json'));
}

// A PEFT LoRA adapter folder (without a model of its own).
export function isAdapterFolder(names) {
  const base = new Set(names.map((n) => n.split('/').at(-1)));
  return base.has('adapter_config.json') && !base.has('config.json');
}

// CoNLL-style files of tagged words.
export const CONLL = /\.(conll|conllu|bio|iob|iob2|ner|txt)$/i;

export function showFolder(info) {
  $('folder').hidden = false;
  const head = info.head
    ? ` It already has a ${info.head.task === 'tokens' ? 'tagging' : 'classification'} head (${info.head.labels.join(', ')}): try it below, or train on.`
    : '';
  $('folder-summary').textContent =
    `Text model ${info.name}: ${info.layers}-layer BERT-style encoder, hidden ${info.hidden_size}, ${info.heads} heads, ` +
    `${info.parameters.toLocaleString()} parameters, up to ${info.max_positions} tokens${info.has_pooler ? ', with pooler' : ''}.` +
    (info.ignored.length ? ` Left out (not part of the encoder): ${info.ignored.slice(0, 4).join(', ')}${info.ignored.length > 4 ? ', \u2026' : ''}.` : '') +
    head +
    ' Now drop a table of texts and labels, or a CoNLL file of tagged words.';
}

function options(select, values, chosen, empty) {
  const list = empty ? [['', empty], ...values.map((v) => [v, v])] : values.map((v) => [v, v]);
  select.replaceChildren(...list.map(([value, text]) => el('option', { value, text })));
  select.value = chosen ?? '';
}

export function showTextPreview(p) {
  $('preview').hidden = false;
  $('label-pick').hidden = true;
  const tokens = p.tokens ? ` Tokens per row: mean ${p.tokens.mean.toFixed(1)}, 95% within ${p.tokens.p95}, longest ${p.tokens.max}.` : '';
  const what = p.task === 'tokens'
    ? `${p.rows.toLocaleString()} sentences, ${p.words.toLocaleString()} words, ${p.classes.length} tags (${p.classes.join(', ')})`
    : `${p.rows.toLocaleString()} texts, ${p.classes.length} classes`;
  $('preview-summary').textContent = `${p.source}: ${what}.${tokens}`;
  $('text-columns').hidden = !p.columns.length;
  if (p.chosen) {
    options($('text-column'), p.columns, p.chosen.text);
    options($('pair-column'), p.columns, p.chosen.pair, '(none)');
    options($('text-label-column'), p.columns, p.chosen.label);
  }
  const total = p.counts.reduce((a, b) => a + b, 0);
  const most = Math.max(...p.counts);
  bars($('balance'), p.classes.map((c, i) => [c, p.counts[i] / most, `${p.counts[i]} (${((100 * p.counts[i]) / total).toFixed(1)}%)`]));
  const samples = $('samples');
  samples.replaceChildren();
  if (p.task === 'tokens') {
    samples.append(...p.samples.map((s) => taggedLine(s.words.map((w, i) => ({ word: w, tag: s.tags[i] })))));
  } else {
    const table = el('table', { class: 'rows' });
    const pair = p.samples.some((s) => s.pair != null);
    table.append(el('thead', {}, el('tr', {}, ...['text', ...(pair ? ['second text'] : []), 'label'].map((h) => el('th', { text: h })))));
    table.append(el('tbody', {}, ...p.samples.map((s) => el('tr', {},
      el('td', { class: 'text', text: s.text }), ...(pair ? [el('td', { class: 'text', text: s.pair ?? '' })] : []), el('td', { text: s.label })))));
    samples.append(el('div', { class: 'scroll' }, table));
  }
}

// Words with their tags; entity words are marked (B-/I- share the type's colour).
export function taggedLine(words) {
  const line = el('p', { class: 'tagged' });
  for (const w of words) {
    if (w.tag === 'O') {
      line.append(el('span', { class: 'word', text: w.word }), ' ');
    } else {
      const type = w.tag.replace(/^[BIES]-/, '');
      const title = w.probability != null ? `${w.tag} (${(100 * w.probability).toFixed(0)}%)` : w.tag;
      line.append(el('mark', { class: `entity t${hash(type) % 6}`, title, 'data-tag': w.tag }, w.word, el('small', { text: w.tag })), ' ');
    }
  }
  return line;
}

function hash(s) {
  let h = 0;
  for (const c of s) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h;
}

export function showMemory(estimate, problem, adapter) {
  const e = estimate;
  const limit = adapter ? Math.min(adapter.maxStorageBufferBindingSize, adapter.maxBufferSize) : null;
  const fits = problem ? `Does not fit: ${problem}.` : `Largest buffer ${e.largest[0]} (${mib(e.largest[1])})${limit ? `, within this GPU's ${mib(limit)} per buffer` : ''}.`;
  $('memory').textContent =
    `Estimated GPU memory at batch ${e.batch_size} \u00d7 ${e.max_length} tokens: ${mib(e.total)} ` +
    `(weights ${mib(e.weights)}, gradients ${mib(e.gradients)}, optimizer ${mib(e.optimizer)}, activations ${mib(e.activations)}; ` +
    `${e.tuning}: ${e.trainable.toLocaleString()} of ${e.parameters.toLocaleString()} parameters train (${(100 * e.trainable / e.parameters).toPrecision(2)}%). ${fits}`;
  $('memory').classList.toggle('error', !!problem);
}

export function showEntityReport(r) {
  const table = $('entity-table');
  table.hidden = !r.entities;
  if (!r.entities) return;
  const caption = table.querySelector('caption');
  const f = (x) => x.toFixed(3);
  const row = (m, cls) => el('tr', { class: cls || '' }, el('th', { text: m.name }), ...[m.precision, m.recall, m.f1].map((x) => el('td', { text: f(x) })), el('td', { text: String(m.support) }));
  table.replaceChildren(caption,
    el('thead', {}, el('tr', {}, ...['type', 'precision', 'recall', 'F1', 'entities'].map((h) => el('th', { text: h })))),
    el('tbody', {}, ...r.entities.types.map((m) => row(m)), row(r.entities.micro, 'avg'), row(r.entities.macro_avg, 'avg'), row(r.entities.weighted, 'avg')));
}

export function textReportSummary(r) {
  const peak = r.peak_memory != null ? ` Peak GPU memory held by the allocator: ${mib(r.peak_memory)}.` : '';
  const kept = `Kept epoch ${r.best_epoch} of ${r.epochs_run}${r.stopped_early ? ' (stopped early)' : ''}.${peak}`;
  if (r.entities) {
    return `${r.cancelled ? 'Cancelled. ' : ''}Entity F1 on the ${r.split} sentences: ${(100 * r.entities.micro.f1).toFixed(1)}% ` +
      `(precision ${(100 * r.entities.micro.precision).toFixed(1)}%, recall ${(100 * r.entities.micro.recall).toFixed(1)}%); ` +
      `token accuracy ${(100 * r.entities.token_accuracy).toFixed(1)}% over ${r.entities.words} words. ${kept}`;
  }
  return `${r.cancelled ? 'Cancelled. ' : ''}Accuracy on the ${r.report.total} ${r.split} texts: ${(100 * r.report.accuracy).toFixed(1)}% (loss ${r.loss.toFixed(4)}). ${kept}`;
}

export function showTextModel(info) {
  const task = info.task === 'tokens' ? `tags words (${info.classes.join(', ')})` : `classifies texts (${info.classes.join(', ')})`;
  const origin = { imported: 'Imported', adapter: 'LoRA adapter on the loaded model:', trained: 'Fine-tuned' }[info.origin] ?? info.origin;
  const adapter = info.adapter ? ` ${info.adapter}${info.adapter_exportable ? ' (exportable alone as a PEFT adapter)' : ''}.` : '';
  $('model-summary').textContent =
    `${origin} text model: ${task}; ${info.parameters.toLocaleString()} parameters, up to ${info.max_length} tokens.${adapter}`;
  $('predict').hidden = false;
  $('predict-image').hidden = true;
  $('predict-row').hidden = true;
  $('predict-text').hidden = false;
  $('tagged').replaceChildren();
  $('probabilities').replaceChildren();
}

export function showTextPrediction(p) {
  $('tagged').replaceChildren();
  $('probabilities').replaceChildren();
  if (p.task === 'tokens') {
    const line = taggedLine(p.words);
    const found = p.entities.length
      ? `Entities: ${p.entities.map((e) => `${e.text} (${e.label})`).join(', ')}.`
      : 'No entities found.';
    $('tagged').append(...line.childNodes, el('br'), el('span', { text: found }));
  } else {
    const c = p.classes;
    bars($('probabilities'), c.classes.map((name, i) => [name, c.probabilities[i], `${(100 * c.probabilities[i]).toFixed(1)}%`]), c.best);
  }
}
