// The page's side of burnish: checks WebGPU, starts the training worker, sends it commands and
// draws what it reports. The message shapes are burnish_core::session::protocol (Command, Event).
// window.burnish exposes the page's state for the browser tests.

const $ = (id) => document.getElementById(id);
const state = { phase: 'loading', events: [], losses: [], stepTimes: [], accuracies: [], errors: [], adapter: null };
window.burnish = state;

const params = new URLSearchParams(location.search);
let worker = null;
let total = 0;

function showMessage(text, isError = true) {
  const el = $('message');
  el.textContent = text;
  el.hidden = false;
  el.classList.toggle('error', isError);
  if (isError) state.errors.push(text);
}

function setPhase(phase) {
  state.phase = phase;
  const running = phase === 'running' || phase === 'paused';
  $('start').disabled = running || !worker || phase === 'loading';
  $('pause').disabled = !running;
  $('cancel').disabled = !running;
  $('pause').textContent = phase === 'paused' ? 'Resume' : 'Pause';
}

async function checkWebGpu() {
  if (!('gpu' in navigator)) {
    $('gpu-status').innerHTML = '';
    $('gpu-status').append(
      'This browser does not offer WebGPU, which burnish needs to train on your GPU. ',
      'Use a current Chrome or Edge (113 or later), Safari 26 or later, or Firefox 141 or later on Windows. ',
      'On Linux, Chromium may need to be started with --enable-unsafe-webgpu.',
    );
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
  $('gpu-status').textContent = 'WebGPU is available. The trainer asks for this adapter\u2019s own limits rather than the defaults.';
  const rows = [
    ['Adapter', [info.vendor, info.architecture, info.description].filter(Boolean).join(' / ') || 'unnamed'],
    ['Software fallback', state.adapter.fallback ? 'yes (slow: expect seconds per step on large models)' : 'no'],
    ['Largest storage binding', mib(limits.maxStorageBufferBindingSize)],
    ['Largest buffer', mib(limits.maxBufferSize)],
    ['16-bit floats (shader-f16)', state.adapter.shaderF16 ? 'yes' : 'no (f32 is used)'],
  ];
  const dl = $('gpu-details');
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  dl.hidden = false;
  return true;
}

function readRecipe() {
  const form = new FormData($('recipe'));
  const num = (name) => Number(form.get(name));
  const hidden = String(form.get('hidden')).split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  return {
    hidden,
    train: {
      learning_rate: num('learning_rate'),
      steps: num('steps'),
      batch_size: num('batch_size'),
      seed: num('seed'),
    },
  };
}

function onEvent(event) {
  state.events.push(event);
  switch (event.type) {
    case 'ready':
      setPhase('idle');
      $('progress-text').textContent = 'Ready. Press Train to start the demo.';
      if (params.get('autostart') !== '0') start();
      break;
    case 'started':
      total = event.steps;
      state.losses = [];
      state.stepTimes = [];
      state.accuracies = [];
      $('progress').max = total;
      $('progress-text').textContent = `Training ${event.parameters.toLocaleString()} parameters on ${event.rows} rows\u2026`;
      draw();
      break;
    case 'progress': {
      state.losses.push([event.step, event.loss]);
      state.stepTimes.push(performance.now());
      $('progress').value = event.step;
      const eta = ((event.steps - event.step) * event.ms_per_step) / 1000;
      $('progress-text').textContent = `Step ${event.step} of ${event.steps} \u00b7 ${(1000 / event.ms_per_step).toFixed(1)} steps/s \u00b7 about ${eta.toFixed(1)} s left`;
      $('loss').textContent = event.loss.toFixed(4);
      $('speed').textContent = `${event.ms_per_step.toFixed(1)} ms/step`;
      scheduleDraw();
      break;
    }
    case 'metrics':
      state.accuracies.push([event.step, event.accuracy]);
      $('accuracy').textContent = `${(event.accuracy * 100).toFixed(1)}%`;
      scheduleDraw();
      break;
    case 'paused':
      setPhase('paused');
      $('progress-text').textContent = `Paused at step ${event.step}.`;
      break;
    case 'resumed':
      setPhase('running');
      break;
    case 'done':
      setPhase('done');
      $('progress-text').textContent = event.cancelled
        ? `Cancelled after ${event.steps} steps.`
        : `Done: ${event.steps} steps, final loss ${event.loss.toFixed(4)}, accuracy ${(event.accuracy * 100).toFixed(1)}%.`;
      $('speed').textContent = `${event.ms_per_step.toFixed(1)} ms/step`;
      draw();
      break;
    case 'error':
      showMessage(event.message);
      if (state.phase === 'running' || state.phase === 'paused') setPhase('idle');
      break;
    default:
      showMessage(`unexpected message from the worker: ${JSON.stringify(event)}`);
  }
}

function start() {
  const request = readRecipe();
  $('message').hidden = true;
  setPhase('running');
  worker.postMessage({ type: 'start_demo', request });
}

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }
}

function draw() {
  const canvas = $('chart');
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  const pad = 32;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#8888';
  ctx.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
  ctx.fillStyle = '#888';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText('loss', 4, 20);
  ctx.fillText('step', w - 36, h - 8);
  if (!state.losses.length || !total) return;
  const maxLoss = Math.max(...state.losses.map(([, l]) => l));
  const x = (step) => pad + ((w - pad - 8) * step) / total;
  const y = (v, max) => 8 + (h - pad - 8) * (1 - v / max);
  ctx.strokeStyle = '#c2410c';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  state.losses.forEach(([s, l], i) => (i ? ctx.lineTo(x(s), y(l, maxLoss)) : ctx.moveTo(x(s), y(l, maxLoss))));
  ctx.stroke();
  ctx.fillStyle = '#2563eb';
  for (const [s, a] of state.accuracies) {
    ctx.beginPath();
    ctx.arc(x(s), y(a, 1), 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.fillText(`max ${maxLoss.toFixed(2)}`, pad + 4, 22);
  ctx.fillStyle = '#2563eb';
  ctx.fillText('\u25cf accuracy (0\u2013100%)', w - 150, 22);
}

async function main() {
  setPhase('loading');
  // ?steps=N presets the form (tests use it for short runs).
  const steps = Number(params.get('steps'));
  if (Number.isInteger(steps) && steps > 0) $('recipe').elements.steps.value = String(steps);
  draw();
  if (!(await checkWebGpu())) {
    $('progress-text').textContent = 'Training needs WebGPU (see above).';
    state.phase = 'no-webgpu';
    return;
  }
  worker = new Worker(new URL('./burnish-web_loader.js', import.meta.url), { type: 'module' });
  worker.onmessage = (e) => onEvent(e.data);
  worker.onerror = (e) => {
    showMessage(`The training worker failed: ${e.message || 'see the console'}. Reload the page to try again.`);
    setPhase('idle');
  };
  $('recipe').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!$('recipe').reportValidity()) return;
    start();
  });
  $('pause').addEventListener('click', () => worker.postMessage({ type: state.phase === 'paused' ? 'resume' : 'pause' }));
  $('cancel').addEventListener('click', () => worker.postMessage({ type: 'cancel' }));
}

main().catch((err) => showMessage(`The page failed to start: ${err}`));
