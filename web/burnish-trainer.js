// <burnish-trainer>: a live training widget for documentation pages, built on the JS API
// (burnish.js). Every element on a page shares the one burnish worker, and so one GPU device.
//
//   <script type="module" src="burnish-trainer.js"></script>
//   <burnish-trainer data="digits" epochs="5" learning-rate="0.01" panels="chart,report"></burnish-trainer>
//
// Attributes (all optional but `data`):
//   data           a demo name (`digits`) or a same-origin .csv/.tsv/.jsonl(.gz) URL
//   label, has-header ("false" for none), image-shape ("1,8,8"), max-value: how to read `data`
//   heading        the title shown on the card
//   recipe         recipe JSON (any part); the attributes below override its fields
//   epochs, learning-rate, batch-size, optimizer (adamw|adam|sgd), weight-decay, patience
//   ("none" never stops early), model (auto|mlp|cnn), hidden ("64,32"), dropout, seed,
//   validation-share
//   text-model     a pretrained encoder to fine-tune (`minilm`); `data` then holds texts
//   (`movie-sentiment`, or a table with text and label columns); tuning (full|head|lora),
//   lora-rank, max-length, pooling (cls|mean) set the text part of the recipe
//   panels         which panels to show: chart, report, predict (default "chart,report")
//   autostart      train as soon as the data is loaded
// Changing an attribute takes effect at once for what is shown (panels, heading, the settings
// line) and data, and for the next run for the recipe.

import { BurnishError, createTrainer } from './burnish.js';
import { drawingPad, el, lineChart } from './ui.js';

const RECIPE_ATTRIBUTES = {
  epochs: ['fit.epochs', Number],
  'learning-rate': ['train.learning_rate', Number],
  'batch-size': ['train.batch_size', Number],
  optimizer: ['train.optimizer', String],
  'weight-decay': ['train.weight_decay', Number],
  patience: ['fit.patience', (v) => (v === 'none' ? null : Number(v))],
  model: ['model.kind', String],
  hidden: ['model.hidden', (v) => v.split(',').map((x) => Number(x.trim()))],
  dropout: ['model.dropout', Number],
  seed: ['train.seed', Number],
  'validation-share': ['split.validation', Number],
  tuning: ['text.tuning.strategy', String],
  'lora-rank': ['text.tuning.lora.rank', Number],
  'max-length': ['text.max_length', Number],
  pooling: ['text.pooling', String],
};
const DATA_ATTRIBUTES = ['data', 'text-model', 'label', 'has-header', 'image-shape', 'max-value'];

const STYLE = `
:host { display: block; font: 14px/1.4 system-ui, sans-serif; color: #1f2937; max-width: 680px; margin: 1em 0; }
.card { border: 1px solid #d1d5db; border-radius: 8px; padding: 10px 12px; background: #fff; }
header { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
header strong { font-size: 15px; }
.settings { color: #6b7280; font-size: 12px; }
.controls { display: flex; gap: 6px; align-items: center; margin: 8px 0; flex-wrap: wrap; }
button { font: inherit; padding: 3px 10px; border-radius: 5px; border: 1px solid #9ca3af; background: #f9fafb; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
.status { color: #374151; font-size: 13px; }
.error { color: #b91c1c; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
canvas { width: 100%; height: auto; background: #fafafa; border-radius: 4px; }
figure { margin: 0; } figcaption { font-size: 11px; color: #6b7280; }
table { border-collapse: collapse; font-size: 12px; margin-top: 4px; }
td, th { padding: 1px 6px; text-align: right; } th:first-child, td:first-child { text-align: left; }
.predict { display: flex; gap: 10px; align-items: center; margin-top: 6px; }
.pad { width: 96px; height: 96px; background: #000; border-radius: 4px; touch-action: none; }
[hidden] { display: none !important; }
`;

let shared = null;
function sheet() {
  if (!shared) {
    shared = new CSSStyleSheet();
    shared.replaceSync(STYLE);
  }
  return shared;
}

function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys.at(-1)] = value;
}

export class BurnishTrainerElement extends HTMLElement {
  static get observedAttributes() {
    return ['heading', 'recipe', 'panels', ...DATA_ATTRIBUTES, ...Object.keys(RECIPE_ATTRIBUTES)];
  }

  constructor() {
    super();
    /// What the element shows, for scripts and tests: phase (`loading`, `ready`, `running`,
    /// `paused`, `done`, `error`), the losses per step, the epochs, the last report, errors.
    this.state = { phase: 'loading', losses: [], epochs: [], report: null, model: null, preview: null, errors: [], started: null, prediction: null };
    this.trainer = null;
    const root = this.attachShadow({ mode: 'open' });
    // A constructed style sheet: a strict CSP (style-src 'self') refuses inline <style>.
    root.adoptedStyleSheets = [sheet()];
    this.$ = {};
    const part = (name, node) => { this.$[name] = node; return node; };
    root.append(el('div', { class: 'card' },
      el('header', {}, part('heading', el('strong', {})), part('settings', el('span', { class: 'settings' }))),
      el('div', { class: 'controls' },
        part('train', el('button', { type: 'button', disabled: '' }, 'Train')),
        part('pause', el('button', { type: 'button', disabled: '' }, 'Pause')),
        part('cancel', el('button', { type: 'button', disabled: '' }, 'Cancel')),
        part('status', el('span', { class: 'status', role: 'status' }, 'Loading\u2026'))),
      part('chart', el('div', { class: 'charts', part: 'chart' },
        el('figure', {}, part('loss', el('canvas', { width: 320, height: 140 })), el('figcaption', {}, 'training loss per step')),
        el('figure', {}, part('val', el('canvas', { width: 320, height: 140 })), el('figcaption', {}, 'validation accuracy (blue) and loss (orange) per epoch')))),
      part('report', el('div', { part: 'report', hidden: '' })),
      part('predict', el('div', { class: 'predict', part: 'predict', hidden: '' },
        part('pad', el('canvas', { class: 'pad', width: 96, height: 96, hidden: '' })),
        part('text', el('input', { type: 'text', placeholder: 'Type a sentence and press Enter', size: 40, hidden: '' })),
        el('div', {}, part('padHint', el('div', { class: 'settings' }, '')), part('probabilities', el('div', {})))))));
    this.$.text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && this.$.text.value.trim()) this._predict(this.$.text.value);
    });
    this.$.train.addEventListener('click', () => this.train());
    this.$.pause.addEventListener('click', () => (this.state.phase === 'paused' ? this.trainer?.resume() : this.trainer?.pause()));
    this.$.cancel.addEventListener('click', () => this.trainer?.cancel());
  }

  connectedCallback() {
    this._render();
    if (!this._started) {
      this._started = true;
      this._loadData();
    }
  }

  disconnectedCallback() {
    // Kept while the element may come back (moved in the DOM); closed when garbage.
  }

  attributeChangedCallback(name, old, value) {
    if (old === value || !this._started) return;
    if (DATA_ATTRIBUTES.includes(name)) this._loadData();
    this._render();
  }

  /// The recipe the next run uses: `recipe` JSON with the attributes on top.
  recipe() {
    let recipe = {};
    const json = this.getAttribute('recipe');
    if (json) {
      try {
        recipe = JSON.parse(json);
      } catch (err) {
        throw new BurnishError('bad_input', `the recipe attribute is not JSON: ${err.message}`);
      }
    }
    for (const [attribute, [path, parse]] of Object.entries(RECIPE_ATTRIBUTES)) {
      const v = this.getAttribute(attribute);
      if (v != null && v !== '') setPath(recipe, path, parse(v));
    }
    return recipe;
  }

  _panels() {
    return new Set((this.getAttribute('panels') ?? 'chart,report').split(',').map((p) => p.trim()).filter(Boolean));
  }

  _render() {
    const panels = this._panels();
    this.$.heading.textContent = this.getAttribute('heading') ?? 'Train a model';
    let settings;
    try {
      const r = this.recipe();
      settings = [
        r.train?.learning_rate != null && `learning rate ${r.train.learning_rate}`,
        r.fit?.epochs != null && `${r.fit.epochs} epochs`,
        r.train?.batch_size != null && `batch ${r.train.batch_size}`,
        r.fit && 'patience' in r.fit && (r.fit.patience == null ? 'no early stopping' : `patience ${r.fit.patience}`),
        r.model?.kind && r.model.kind !== 'auto' && r.model.kind.toUpperCase(),
        r.text?.tuning?.strategy && (r.text.tuning.strategy === 'lora' ? `LoRA rank ${r.text.tuning.lora?.rank ?? 8}` : `${r.text.tuning.strategy} fine-tuning`),
      ].filter(Boolean).join(' \u00b7 ');
    } catch (err) {
      settings = err.message;
    }
    this.$.settings.textContent = settings;
    this.$.chart.hidden = !panels.has('chart');
    this.$.report.hidden = !panels.has('report') || !this.state.report;
    this.$.predict.hidden = !panels.has('predict') || !this.state.model;
    const running = this.state.phase === 'running' || this.state.phase === 'paused';
    this.$.train.disabled = running || !this.state.preview;
    this.$.pause.disabled = !running;
    this.$.cancel.disabled = !running;
    this.$.pause.textContent = this.state.phase === 'paused' ? 'Resume' : 'Pause';
  }

  _status(text, error = false) {
    this.$.status.textContent = text;
    this.$.status.classList.toggle('error', error);
  }

  _fail(err) {
    this.state.errors.push(err.message || String(err));
    this.state.phase = this.state.preview ? 'ready' : 'error';
    this._status(err.message || String(err), true);
    this._render();
    this.dispatchEvent(new CustomEvent('burnish-error', { detail: err }));
  }

  async _ensureTrainer() {
    if (this.trainer && !this.trainer._closed) return this.trainer;
    const trainer = await createTrainer();
    this.trainer = trainer;
    trainer.on('started', (e) => {
      this.state.started = e;
      this.state.losses = [];
      this.state.epochs = [];
      this.state.report = null;
      this._draw();
    });
    trainer.on('progress', (e) => {
      this.state.losses.push([e.step, e.loss, e.learning_rate]);
      this._status(`step ${e.step} of ${e.steps}, loss ${e.loss.toFixed(3)}`);
      this._drawSoon();
    });
    trainer.on('epoch', (e) => {
      this.state.epochs.push(e);
      this._drawSoon();
    });
    trainer.on('paused', () => { this.state.phase = 'paused'; this._render(); });
    trainer.on('resumed', () => { this.state.phase = 'running'; this._render(); });
    trainer.on('crashed', (err) => { this.trainer = null; this._fail(err); });
    for (const type of ['started', 'progress', 'epoch', 'report', 'model']) {
      trainer.on(type, (detail) => this.dispatchEvent(new CustomEvent(`burnish-${type}`, { detail })));
    }
    return trainer;
  }

  async _loadData() {
    const data = this.getAttribute('data');
    if (!data) {
      this._fail(new BurnishError('bad_input', 'set the data attribute (a demo name such as "digits", or a same-origin table URL)'));
      return;
    }
    const shape = this.getAttribute('image-shape');
    const options = {
      label: this.getAttribute('label') ?? undefined,
      hasHeader: this.getAttribute('has-header') !== 'false',
      image: shape ? { shape: shape.split(',').map(Number), max_value: Number(this.getAttribute('max-value') ?? 255) } : undefined,
    };
    this.state.phase = 'loading';
    this._status('Loading data\u2026');
    this._render();
    try {
      const trainer = await this._ensureTrainer();
      const model = this.getAttribute('text-model');
      if (model && trainer.kind !== 'text') {
        this._status('Loading the pretrained model\u2026');
        await trainer.loadModel(model);
      }
      this.state.preview = await trainer.load(data, options);
      this.state.phase = 'ready';
      const p = this.state.preview;
      const rows = p.rows;
      this._status(`${rows != null ? `${rows.toLocaleString()} rows` : 'Loaded'}${p.classes ? `, ${p.classes.length} classes` : ''}. Press Train.`);
      this._render();
      if (this.hasAttribute('autostart')) this.train();
    } catch (err) {
      this._fail(err);
    }
  }

  /// Train with the current attributes; resolves with the report.
  async train() {
    let recipe;
    try {
      recipe = this.recipe();
    } catch (err) {
      this._fail(err);
      return null;
    }
    this.state.phase = 'running';
    this.state.report = null;
    this._render();
    try {
      const trainer = await this._ensureTrainer();
      const { report, model } = await trainer.train({ recipe });
      this.state.report = report;
      this.state.model = model;
      this.state.phase = 'done';
      this._showReport(report);
      this._status(report.cancelled ? 'Cancelled; the best epoch so far is kept.' : `Done: ${report.epochs_run} epochs${report.stopped_early ? ' (stopped early)' : ''}.`);
      this._render();
      this._setUpPredict();
      return report;
    } catch (err) {
      this._fail(err);
      return null;
    }
  }

  _drawSoon() {
    if (this._drawPending) return;
    this._drawPending = true;
    requestAnimationFrame(() => {
      this._drawPending = false;
      this._draw();
    });
  }

  _draw() {
    const steps = this.state.started?.steps ?? 1;
    const epochs = this.state.started?.epochs ?? 1;
    lineChart(this.$.loss, [{ points: this.state.losses.map(([s, l]) => [s, l]), color: '#2563eb' }], steps, { xLabel: 'step' });
    const e = this.state.epochs;
    lineChart(this.$.val, [
      { points: e.map((x) => [x.epoch, x.validation_accuracy]), color: '#2563eb', max: 1 },
      { points: e.map((x) => [x.epoch, x.validation_loss]), color: '#c2410c' },
    ], epochs, { xLabel: 'epoch', dots: true });
  }

  _showReport(report) {
    const r = report.report;
    const best = this.state.epochs.find((x) => x.epoch === report.best_epoch);
    const rows = r.classes.map((c) => el('tr', {}, el('td', {}, c.name), ...[c.precision, c.recall, c.f1].map((v) => el('td', {}, v.toFixed(2)))));
    this.$.report.replaceChildren(
      el('div', {}, `Test accuracy ${(r.accuracy * 100).toFixed(1)}% on ${r.total} rows \u00b7 best epoch ${report.best_epoch} of ${report.epochs_run}` +
        (best ? ` (validation accuracy ${(best.validation_accuracy * 100).toFixed(1)}%)` : '') + (report.stopped_early ? ' \u00b7 stopped early' : '')),
      el('table', {}, el('tr', {}, ...['class', 'precision', 'recall', 'F1'].map((t) => el('th', {}, t))), ...rows),
    );
  }

  _setUpPredict() {
    if (this.trainer?.kind === 'text') {
      this.$.text.hidden = false;
      this.$.padHint.textContent = 'Try the model:';
      return;
    }
    const image = this.state.preview?.image_shape;
    if (!image || this._pad) return;
    this.$.pad.hidden = false;
    this.$.padHint.textContent = 'Draw a digit';
    this._pad = drawingPad(this.$.pad, async () => {
      const blob = await new Promise((resolve) => this.$.pad.toBlob(resolve, 'image/png'));
      this._predict(blob);
    });
  }

  async _predict(input) {
    try {
      const answer = await this.trainer.predict(input);
      this.state.prediction = answer;
      // A text model answers {task, classes: {classes, probabilities}, words, entities}.
      const p = answer.probabilities ? answer : answer.classes;
      if (!p) {
        this.$.probabilities.textContent = answer.words.map((w) => `${w.word}/${w.tag}`).join(' ');
        return;
      }
      const order = p.probabilities.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
      this.$.probabilities.textContent = order.map(([v, i]) => `${p.classes[i]}: ${(v * 100).toFixed(0)}%`).join(' \u00b7 ');
    } catch (err) {
      this._fail(err);
    }
  }
}

if (!customElements.get('burnish-trainer')) customElements.define('burnish-trainer', BurnishTrainerElement);
