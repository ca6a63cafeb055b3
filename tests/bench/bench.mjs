// `cargo xtask bench`: the benchmark figures, measured side by side in one run and written as a
// Markdown and a JSON table (bench-results/). Native: the burnish CLI (release) trains the digits
// CNN on flex and on wgpu (whatever Vulkan adapter there is: a GPU, or lavapipe on the CPU),
// trains the GPT on Tiny Shakespeare and generates. Browser: headless Chromium opens the real page
// and trains the same CNN in the worker on WebGPU; TF.js 4.22 trains the same CNN in the same
// browser on its WebGPU and WebGL backends; the JS API example measures page-open to first step.
// Figures are medians of steady-state steps (the first steps compile shaders).

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import { BASE_URL, launch } from '../browser/harness.mjs';

const CLI = process.env.BURNISH_CLI;
const ASSETS = process.env.BURNISH_ASSETS;
const DIST = process.env.BURNISH_DIST;
const OUT = process.env.BURNISH_BENCH_OUT;
const EPOCHS = 2;
// BURNISH_BENCH_QUICK=1: only the CNN (native, page, TF.js), the optimizer and loss kernels and the
// start-up, skipping the GPT and MiniLM figures (minutes on a CPU adapter).
const QUICK = process.env.BURNISH_BENCH_QUICK === '1';
const GPT_BROWSER_STEPS = 4;

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
// The median host time (`host_ms`) of a run's steps but the first (which generates the kernels).
const hostMedian = (hostMs) => median(hostMs.slice(1));

// Peak memory of the native runs, in run order: the CLI's `memory` event (the device allocator's
// peak on wgpu, from burn's pools; the process's resident peak, VmHWM).
const PEAKS = [];
function recordPeak(label, events) {
  const m = events.find((e) => e.type === 'memory');
  const mib = (b) => (b == null ? null : b / 2 ** 20);
  PEAKS.push({ run: label, deviceMiB: mib(m?.device_peak_bytes), processMiB: mib(m?.process_peak_rss_bytes) });
}

function cli(args, env = {}) {
  const out = execFileSync(CLI, args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

// `variant`: what the speed work changed, so each change is measured against the same run without
// it: `base` (burn's composed operations, no fused kernel, the loss read after every step),
// `fused` (the fused kernels: convolution blocks, dense layers, Adam, softmax cross-entropy) and
// the default (fused + losses read every ~100 ms). `env` picks the Vulkan driver
// (`name` tells the runs' outputs apart).
function cnnNative(device, variant = 'default', { env = {}, name = device } = {}) {
  const recipe = `${OUT}/cnn-recipe-${variant}.json`;
  const train = variant === 'default' ? {} : { fused_kernels: variant !== 'base' };
  const fit = { epochs: EPOCHS, patience: null, autosave_steps: 0, ...(variant === 'default' ? {} : { loss_read_ms: 0 }) };
  writeFileSync(recipe, JSON.stringify({ fit, train }));
  const events = cli(['train', `${ASSETS}/digits.csv.gz`, '--no-header', '--image-shape', '1,8,8', '--max-value', '16',
    '--recipe', recipe, '--out', `${OUT}/cnn-${name}-${variant}.safetensors`, '--device', device, '--json'], env);
  const started = checkAdapter(events.find((e) => e.type === 'started'), name);
  const progress = events.filter((e) => e.type === 'progress');
  recordPeak(`digits CNN, ${name}, ${variant}`, events);
  // `ms_per_step` is the mean of every step but the first (shader compiles), evaluation left out.
  return {
    device: started.adapter ?? started.device, parameters: started.parameters, steps: progress.length,
    msPerStep: progress.at(-1).ms_per_step, hostMs: hostMedian(progress.map((e) => e.host_ms)), batch: 64,
  };
}

// The fused softmax cross-entropy's own gain: a small GPT (2 x 64, context 64, batch 8) on wgpu
// with every fused kernel vs with the fused optimizer only (`fused_loss: false`), the loss read
// every step, on the character vocabulary of Tiny Shakespeare and on MiniLM's 30,522 WordPiece
// tokens (where the loss is most of a step).
function lossKernel(vocab, fusedLoss) {
  const recipe = `${OUT}/loss-recipe-${fusedLoss}.json`;
  writeFileSync(recipe, JSON.stringify({
    model: { context: 64, layers: 2, heads: 2, hidden: 64 },
    train: { batch_size: 8, steps: 10, fused_loss: fusedLoss },
    eval_every: 1000, sample_every: 1000, loss_read_ms: 0,
  }));
  const tokenizer = vocab === 'wordpiece' ? ['--tokenizer', `${ASSETS}/minilm/tokenizer.json`] : [];
  const events = cli(['lm', `${ASSETS}/tinyshakespeare.txt`, ...tokenizer, '--recipe', recipe, '--device', 'wgpu', '--json']);
  const started = checkAdapter(events.find((e) => e.type === 'started'), 'wgpu');
  return { device: started.adapter ?? started.device, msPerStep: events.filter((e) => e.type === 'progress').at(-1).ms_per_step };
}

// The optimizer step alone, fused kernel vs composed (tests/benches/optimizer.rs), as its table.
function optimizerBench() {
  const run = spawnSync('cargo', ['bench', '--quiet', '-p', 'burnish-tests', '--bench', 'optimizer'], { encoding: 'utf8' });
  const table = run.stdout.split('\n').filter((l) => l.startsWith('|')).join('\n');
  return table || `not run: ${(run.stderr || '').trim().split('\n').pop()}`;
}

// A dense layer's product alone, burnish's kernels vs burn's tiled one, at MiniLM's layer shapes
// (tests/benches/products.rs): the adapter line, its table and its summary.
function productsBench(env = {}) {
  const run = spawnSync('cargo', ['bench', '--quiet', '-p', 'burnish-tests', '--bench', 'products'], { encoding: 'utf8', env: { ...process.env, ...env } });
  const lines = run.stdout.split('\n').filter((l) => l.startsWith('|') || l.startsWith('adapter:') || l.startsWith('burnish\'s kernels'));
  return lines.length ? lines.join('\n\n').replace(/\|\n\n\|/g, '|\n|') : `not run: ${(run.stderr || '').trim().split('\n').pop()}`;
}

function gpt() {
  const events = cli(['lm', `${ASSETS}/tinyshakespeare.txt`, '--steps', '20', '--out', `${OUT}/gpt`, '--json']);
  const report = events.find((e) => e.type === 'lm_report').report;
  recordPeak('GPT 4 x 128, flex', events);
  const progress = events.filter((e) => e.type === 'progress');
  const gen = spawnSync(CLI, ['generate', '--model', `${OUT}/gpt`, '--max-tokens', '300', '--prompt', 'A', '--seed', '1'], { encoding: 'utf8' });
  const m = /(\d+) tokens in ([\d.]+) s \(([\d.]+) tokens\/s\)/.exec(`${gen.stdout}${gen.stderr}`);
  return {
    trainingTokensPerSecond: report.tokens_per_second,
    msPerStep: progress.at(-1).ms_per_step,
    generationTokensPerSecond: m ? Number(m[3]) : null,
  };
}

// MiniLM fine-tuning on the first 256 movie snippets (mean pooling, length 64, batch 16, one
// epoch), full and LoRA r=8, by burnish on flex and by PyTorch on the CPU where it imports.
function minilm() {
  const lines = readFileSync(`${ASSETS}/movie_sentiment.csv`, 'utf8').split('\n');
  const data = `${OUT}/movie256.csv`;
  writeFileSync(data, `${lines.slice(0, 257).join('\n')}\n`);
  const recipe = `${OUT}/minilm-recipe.json`;
  writeFileSync(recipe, JSON.stringify({ fit: { epochs: 1, patience: null }, train: { batch_size: 16 } }));
  const one = (extra) => {
    const events = cli(['text', data, '--model', `${ASSETS}/minilm`, '--max-length', '64', '--pooling', 'mean',
      '--recipe', recipe, '--out', `${OUT}/minilm-out`, '--json', ...extra]);
    const started = events.find((e) => e.type === 'started');
    recordPeak(`MiniLM batch 16 x 64, flex, ${extra.length ? 'LoRA' : 'full'}`, events);
    return { msPerStep: events.filter((e) => e.type === 'progress').at(-1).ms_per_step, trainable: started.parameters };
  };
  const out = { full: one([]), lora: one(['--tuning', 'lora', '--lora-rank', '8']) };
  const py = spawnSync('python3', ['tests/bench/minilm_torch.py', `${ASSETS}/minilm`, data, String(os.cpus().length)], {
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1', PYTHONPATH: process.env.BURNISH_TORCH_PYTHONPATH ?? process.env.PYTHONPATH ?? '' },
  });
  try {
    out.torch = JSON.parse(py.stdout.trim().split('\n').pop());
  } catch {
    out.torch = { error: `the PyTorch script failed: ${(py.stderr || '').trim().split('\n').pop()}` };
  }
  return out;
}

// MiniLM at the browser's shape (length 16, batch 4: SwiftShader runs ~1 GFLOP/s), natively on
// `device`, so the page's figure has a native one beside it. 40 rows: 8 training steps.
const SMALL_MINILM = { maxLength: 16, batch: 4, steps: 5 };
function minilmSmall(device, tuning, env = {}, name = device, precision = 'f32') {
  const lines = readFileSync(`${ASSETS}/movie_sentiment.csv`, 'utf8').split('\n');
  const data = `${OUT}/movie40.csv`;
  writeFileSync(data, `${lines.slice(0, 41).join('\n')}\n`);
  const recipe = `${OUT}/minilm-small-recipe${precision === 'f32' ? '' : `-${precision}`}.json`;
  writeFileSync(recipe, JSON.stringify({ fit: { epochs: 1, patience: null }, train: { batch_size: SMALL_MINILM.batch, precision } }));
  const events = cli(['text', data, '--model', `${ASSETS}/minilm`, '--max-length', String(SMALL_MINILM.maxLength), '--pooling', 'mean',
    '--recipe', recipe, '--out', `${OUT}/minilm-small-out`, '--json', '--device', device,
    ...(tuning === 'lora' ? ['--tuning', 'lora', '--lora-rank', '8'] : [])], env);
  const started = checkAdapter(events.find((e) => e.type === 'started'), name);
  const progress = events.filter((e) => e.type === 'progress');
  recordPeak(`MiniLM batch ${SMALL_MINILM.batch} x ${SMALL_MINILM.maxLength}, ${name}, ${tuning}, ${precision}`, events);
  return {
    msPerStep: progress.at(-1).ms_per_step, hostMs: hostMedian(progress.map((e) => e.host_ms)), loss: progress.at(-1).loss,
    device: started.adapter ?? started.device, precision: started.precision,
  };
}

// Chromium's own Vulkan driver (SwiftShader), when Debian's Chromium ships it: native wgpu on it
// runs on the very adapter the headless browser uses without a GPU, so the browser / native ratio
// compares like with like (lavapipe, the default native driver here, is a different, faster renderer).
// Should this driver fail to load, wgpu would fall back to another one: the run's `started` event
// names the adapter, and a "swiftshader" run on anything else is refused rather than mislabelled.
const SWIFTSHADER_ICD = ['/usr/lib/chromium/vk_swiftshader_icd.json'].find((p) => existsSync(p));
const ON_SWIFTSHADER = { VK_ICD_FILENAMES: SWIFTSHADER_ICD };

// A run's `started` event, after checking that a run named after SwiftShader ran on it.
function checkAdapter(started, name) {
  if (/swiftshader/.test(name) && !/swiftshader/i.test(started.adapter ?? '')) {
    throw new Error(`SwiftShader's Vulkan driver did not load: wgpu ran on ${started.adapter ?? started.device}`);
  }
  return started;
}

async function poll(page, read, timeout, what, arg) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(read, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Page open to first training step (the JS API example), in a browser of its own so that the
// first visit is cold (nothing cached) and the second warm. The cold visit is traced (Dawn's
// events) up to its first step, to split that step: the worker's host time (recording it, which
// includes generating each kernel's WGSL on first use) and the GPU process creating the compute
// pipelines (WGSL to the driver's code).
async function startupFigures() {
  const { browser, page } = await launch();
  try {
    await browser.startTracing(page, { categories: ['gpu.dawn'] });
    await page.goto(`${BASE_URL}examples/api.html`);
    const first = await poll(page, () => window.apiFirstStep, 300_000, 'the API example\'s first step');
    const trace = JSON.parse((await browser.stopTracing()).toString('utf8'));
    const pipelines = (Array.isArray(trace) ? trace : trace.traceEvents)
      .filter((e) => e.name === 'DeviceBase::APICreateComputePipeline' && e.ph === 'X');
    await poll(page, () => window.apiResult, 300_000, 'the API example');
    await page.goto(`${BASE_URL}examples/api.html`);
    const warm = await poll(page, () => window.apiResult, 300_000, 'the API example again');
    return {
      coldMs: first.ms,
      startedMs: first.startedMs,
      firstStepHostMs: first.hostMs,
      pipelines: pipelines.length,
      pipelineMs: pipelines.reduce((sum, e) => sum + e.dur, 0) / 1000,
      warmMs: warm.firstStepMs,
      warmStartedMs: warm.startedMs,
    };
  } finally {
    await browser.close();
  }
}

const NO_ROBUSTNESS = 'disable_robustness';

async function browserFigures() {
  const { browser, page } = await launch();
  const out = {};
  try {
    // The digits CNN through the page, first without the speed work (burn's composed operations,
    // no fused kernel, the loss read after every step), then as shipped.
    for (const [key, extra] of [['burnishCnnBase', '&kernels=0&lossread=0'], ['burnishCnn', '']]) {
      await page.goto(`${BASE_URL}?demo=1&autostart=1&epochs=${EPOCHS}&autosave=0${extra}`);
      out.adapter = await poll(page, () => window.burnish?.adapter, 60_000, 'the adapter');
      const s = await poll(page, () => (window.burnish?.report && window.burnish.model ? window.burnish : null), 600_000, 'the digits run');
      // The worker's own mean over every step but the first (shader compiles), evaluation left
      // out, as the CLI reports it natively (steps read together arrive together on the page).
      out[key] = { parameters: s.model.parameters, steps: s.losses.length, msPerStep: s.msPerStep, hostMs: hostMedian(s.hostMs), batch: 64, device: s.started?.adapter };
    }
    // Diagnostic: the same run in a browser with Dawn's robustness transform off (every storage
    // buffer index clamped to the buffer's length; a switch no user sets). On a CPU renderer with
    // little optimisation (SwiftShader's Subzero) those clamps cost much of the gap to native.
    const { browser: plain, page: plainPage } = await launch({ extraArgs: [`--enable-dawn-features=${NO_ROBUSTNESS}`] });
    try {
      await plainPage.goto(`${BASE_URL}?demo=1&autostart=1&epochs=${EPOCHS}&autosave=0`);
      const s = await poll(plainPage, () => (window.burnish?.report && window.burnish.model ? window.burnish : null), 600_000, 'the digits run without robustness');
      out.burnishCnnNoRobustness = { msPerStep: s.msPerStep, hostMs: hostMedian(s.hostMs) };
    } catch (err) {
      out.burnishCnnNoRobustness = { error: err.message };
    } finally {
      await plain.close();
    }
    for (const backend of ['webgpu', 'webgl']) {
      await page.goto(`${BASE_URL}bench/tfjs.html?backend=${backend}&steps=40`);
      out[`tfjs_${backend}`] = await poll(page, () => window.tfjsResult, 600_000, `TF.js on ${backend}`);
    }
    if (QUICK) return out;
    // The GPT: Tiny Shakespeare through the page (the default model, a few steps, a small
    // held-out share so the final evaluation stays short), then greedy generation.
    await page.goto(`${BASE_URL}?demo=0`);
    await poll(page, () => window.burnish?.phase === 'idle', 60_000, 'the page');
    await page.click('#lm-demo');
    await poll(page, () => window.burnish?.lmPreview, 120_000, 'Tiny Shakespeare');
    await page.fill('[name="lm.steps"]', String(GPT_BROWSER_STEPS));
    await page.fill('[name="lm.eval_every"]', String(GPT_BROWSER_STEPS));
    await page.fill('[name="lm.sample_every"]', '0');
    await page.fill('[name="lm.validation"]', '0.002');
    await page.click('#start');
    const lm = await poll(page, () => (window.burnish?.lmReport && window.burnish.lmModel ? window.burnish : null), 1_200_000, 'the GPT steps');
    out.gpt = { trainingTokensPerSecond: lm.lmReport.tokens_per_second, steps: lm.lmReport.steps };
    await page.fill('#gen-max', '100');
    await page.fill('#gen-temp', '0');
    await page.click('#gen-start');
    const gen = await poll(page, () => window.burnish?.generation, 600_000, 'generation');
    out.gpt.generationTokensPerSecond = gen.tokens_per_second;
    // MiniLM through the page (the text demo), full and LoRA r=8, at the small shape: a few
    // steps, then Cancel.
    out.minilm = {};
    for (const tuning of ['full', 'lora']) {
      await page.goto(`${BASE_URL}?demo=0`);
      await poll(page, () => window.burnish?.phase === 'idle', 60_000, 'the page');
      await page.click('#text-demo');
      await poll(page, () => window.burnish?.textPreview && window.burnish.memory, 300_000, 'the text demo');
      await page.fill('[name="text.max_length"]', String(SMALL_MINILM.maxLength));
      await page.fill('[name="train.batch_size"]', String(SMALL_MINILM.batch));
      await page.selectOption('[name="text.tuning.strategy"]', tuning);
      if (tuning === 'lora') await page.fill('[name="text.tuning.lora.rank"]', '8');
      await page.click('#start');
      const steps = SMALL_MINILM.steps;
      // Enough steps, or the run ended (an error such as divergence is recorded, not waited on).
      const s = await poll(page, (n) => {
        const b = window.burnish;
        return b && (b.losses.length >= n || b.errors.length || !['running', 'paused'].includes(b.phase)) ? b : null;
      }, 1_800_000, `MiniLM ${tuning} steps`, steps);
      out.minilm[tuning] = s.errors.length
        ? { error: s.errors.at(-1), steps: s.losses.length }
        : { msPerStep: s.msPerStep, hostMs: hostMedian(s.hostMs), steps: s.losses.length };
      if (['running', 'paused'].includes(await page.evaluate(() => window.burnish.phase))) {
        await page.click('#cancel');
        await poll(page, () => !['running', 'paused'].includes(window.burnish?.phase), 600_000, 'the cancel');
      }
    }
  } finally {
    await browser.close();
  }
  return out;
}

const fmt = (x, d = 1) => (x == null || Number.isNaN(x) ? '–' : x.toFixed(d));

async function main() {
  mkdirSync(OUT, { recursive: true });
  const native = { flex: cnnNative('flex') };
  try {
    native.wgpuBase = cnnNative('wgpu', 'base');
    native.wgpuFused = cnnNative('wgpu', 'fused');
    native.wgpu = cnnNative('wgpu');
  } catch (err) {
    native.wgpu = { error: String(err.stderr || err.message).trim().split('\n').pop() };
  }
  if (SWIFTSHADER_ICD) {
    try {
      native.wgpuSwiftshader = cnnNative('wgpu', 'default', { env: ON_SWIFTSHADER, name: 'swiftshader' });
    } catch (err) {
      native.wgpuSwiftshader = { error: String(err.stderr || err.message).trim().split('\n').pop() };
    }
  }
  native.optimizer = optimizerBench();
  native.products = productsBench();
  // SwiftShader (the page's adapter here) at fewer sizes: burn's product takes seconds there.
  if (SWIFTSHADER_ICD && !QUICK) native.productsSwiftshader = productsBench({ ...ON_SWIFTSHADER, BURNISH_BENCH_ROWS: '16,64,256' });
  native.loss = {};
  for (const vocab of ['chars', 'wordpiece']) {
    for (const fused of [false, true]) {
      try {
        native.loss[`${vocab}_${fused ? 'fused' : 'composed'}`] = lossKernel(vocab, fused);
      } catch (err) {
        native.loss[`${vocab}_${fused ? 'fused' : 'composed'}`] = { error: String(err.stderr || err.message).trim().split('\n').pop() };
      }
    }
  }
  native.gpt = QUICK ? { skipped: true } : gpt();
  native.minilm = QUICK ? { full: {}, lora: {} } : minilm();
  native.minilmSmall = {};
  const smallRuns = [['flex', 'flex', {}], ['wgpu', 'wgpu', {}], ...(SWIFTSHADER_ICD ? [['swiftshader', 'wgpu', ON_SWIFTSHADER]] : [])];
  for (const [name, device, env] of QUICK ? [] : smallRuns) {
    for (const tuning of ['full', 'lora']) {
      try {
        native.minilmSmall[`${name}_${tuning}`] = minilmSmall(device, tuning, env, name);
      } catch (err) {
        native.minilmSmall[`${name}_${tuning}`] = { error: String(err.stderr || err.message).trim().split('\n').pop() };
      }
    }
  }
  // Mixed precision side by side with f32 on native wgpu, where the adapter has shader-f16 (the
  // run's `started` event says which precision ran; an f32 fallback is not reported as f16).
  native.minilmHalf = {};
  for (const tuning of QUICK ? [] : ['full', 'lora']) {
    try {
      const half = minilmSmall('wgpu', tuning, {}, 'wgpu', 'f16');
      native.minilmHalf[tuning] = half.precision?.startsWith('f16') ? half : { error: `not run: ${half.precision}` };
    } catch (err) {
      native.minilmHalf[tuning] = { error: String(err.stderr || err.message).trim().split('\n').pop() };
    }
  }
  const browser = await browserFigures();
  browser.startup = await startupFigures();
  const wasm = readFileSync(`${DIST}/burnish-web_bg.wasm`);
  const result = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
    adapter: browser.adapter,
    native, browser,
    wasm: { raw: wasm.length, gzip: gzipSync(wasm, { level: 9 }).length },
    peaks: PEAKS,
  };
  const sps = (ms, batch) => (ms ? (1000 / ms) * batch : null);
  const b = browser.burnishCnn;
  const up = browser.startup ?? {};
  const rows = [
    ['burnish, native flex (CPU)', native.flex.msPerStep, native.flex.device, native.flex.hostMs],
    ['burnish, native wgpu: burn\'s composed operations (no fused kernels), loss read every step', native.wgpuBase?.msPerStep, native.wgpuBase?.device, native.wgpuBase?.hostMs],
    ['burnish, native wgpu: fused kernels (convolution blocks, dense layers, Adam, cross-entropy), loss read every step', native.wgpuFused?.msPerStep, native.wgpuFused?.device, native.wgpuFused?.hostMs],
    ['burnish, native wgpu (default: fused kernels, losses read every ~100 ms)', native.wgpu.msPerStep, native.wgpu.device ?? native.wgpu.error, native.wgpu.hostMs],
    ['burnish, native wgpu on SwiftShader (Chromium\'s Vulkan driver), as the default', native.wgpuSwiftshader?.msPerStep, native.wgpuSwiftshader?.error ?? native.wgpuSwiftshader?.device ?? `${SWIFTSHADER_ICD ?? 'Chromium\'s vk_swiftshader_icd.json'} not found`, native.wgpuSwiftshader?.hostMs],
    ['burnish, Chromium WebGPU (page + worker): burn\'s composed operations (no fused kernels), loss read every step', browser.burnishCnnBase?.msPerStep, 'same', browser.burnishCnnBase?.hostMs],
    ['burnish, Chromium WebGPU (page + worker)', b.msPerStep, [browser.adapter?.vendor, browser.adapter?.architecture].filter(Boolean).join(' / ') || b.device || 'WebGPU', b.hostMs],
    [`burnish, Chromium WebGPU (page + worker), diagnostic: Dawn's robustness transform off (--enable-dawn-features=${NO_ROBUSTNESS})`, browser.burnishCnnNoRobustness?.msPerStep, browser.burnishCnnNoRobustness?.error ?? 'same', browser.burnishCnnNoRobustness?.hostMs],
    ['TF.js 4.22, Chromium WebGPU', browser.tfjs_webgpu.msPerStep, browser.tfjs_webgpu.error ?? browser.tfjs_webgpu.backend],
    ['TF.js 4.22, Chromium WebGL', browser.tfjs_webgl.msPerStep, browser.tfjs_webgl.error ?? browser.tfjs_webgl.backend],
  ];
  const tfBest = Math.min(...[browser.tfjs_webgpu.msPerStep, browser.tfjs_webgl.msPerStep].filter((x) => x > 0), Infinity);
  const md = [
    `# burnish benchmarks (${result.date})`, '',
    `Machine: ${result.machine}. Browser adapter: ${JSON.stringify(browser.adapter?.info ?? browser.adapter ?? {})}.`, '',
    `## Digits CNN (${b.parameters.toLocaleString()} parameters, batch 64; TF.js model ${browser.tfjs_webgpu.parameters ?? '?'} parameters)`, '',
    '| where | ms/step | samples/s | host ms/step | device |', '|---|---|---|---|---|',
    ...rows.map(([w, ms, d, host]) => `| ${w} | ${fmt(ms)} | ${fmt(sps(ms, 64), 0)} | ${fmt(host)} | ${d} |`), '',
    'Host ms/step: the median time a step\'s host code took to record its work (the batch\'s upload, the graph, the dispatches). ' +
      'In the browser nothing in it waits for the GPU, so it is the floor under ms/step on a GPU fast enough to keep up; natively, ' +
      'wgpu may block inside it when the GPU falls far behind; on flex it is the whole step.', '',
    `Ratios measured in this run: browser / native flex speed ${fmt(native.flex.msPerStep / b.msPerStep, 2)}x; ` +
      `browser / native wgpu ${fmt(native.wgpu.msPerStep / b.msPerStep, 2)}x; ` +
      `browser / native wgpu on the same adapter (SwiftShader) ${fmt(native.wgpuSwiftshader?.msPerStep / b.msPerStep, 2)}x; ` +
      `the same without Dawn's robustness transform (diagnostic) ${fmt(native.wgpuSwiftshader?.msPerStep / browser.burnishCnnNoRobustness?.msPerStep, 2)}x; ` +
      `burnish in the browser / TF.js's fastest backend ${fmt(tfBest / b.msPerStep, 2)}x (samples/s).`, '',
    `Native wgpu: the fused kernels ${fmt(native.wgpuBase?.msPerStep / native.wgpuFused?.msPerStep, 2)}x the composed operations' speed; ` +
      `reading losses every ~100 ms instead of every step a further ${fmt(native.wgpuFused?.msPerStep / native.wgpu.msPerStep, 2)}x. ` +
      `In the browser, both together: ${fmt(browser.burnishCnnBase?.msPerStep / b.msPerStep, 2)}x.`, '',
    '## The optimizer step alone (wgpu; tests/benches/optimizer.rs)', '', native.optimizer, '',
    '## A dense layer alone, burnish\'s product kernels vs burn\'s tiled product (wgpu; tests/benches/products.rs)', '',
    'ms per training step of the layer (forward, then the input\'s, weights\' and bias\'s gradients) and per forward pass; "default takes": whose kernel runs at that size under the default limit (`BURNISH_PRODUCT_KERNEL_LIMIT`).', '',
    native.products, '',
    ...(native.productsSwiftshader ? ['On SwiftShader:', '', native.productsSwiftshader, ''] : []),
    `## The fused softmax cross-entropy (native wgpu, ${native.loss.chars_fused?.device ?? '?'}; GPT 2 x 64, context 64, batch 8; ms/step)`, '',
    '| vocabulary | composed loss (the other kernels fused) | fused loss | speed-up |', '|---|---|---|---|',
    ...[['chars', 'characters of Tiny Shakespeare'], ['wordpiece', 'MiniLM\'s 30,522 WordPiece tokens']].map(([k, name]) => {
      const c = native.loss[`${k}_composed`];
      const f = native.loss[`${k}_fused`];
      return `| ${name} | ${c?.error ?? fmt(c?.msPerStep)} | ${f?.error ?? fmt(f?.msPerStep)} | ${c?.msPerStep && f?.msPerStep ? `${fmt(c.msPerStep / f.msPerStep, 2)}x` : '–'} |`;
    }), '',
    '## GPT (Tiny Shakespeare, 4 x 128, context 128, batch 32)', '',
    '| where | training tokens/s | generation tokens/s |', '|---|---|---|',
    `| native flex (20 steps; 300 tokens) | ${fmt(native.gpt.trainingTokensPerSecond, 0)} | ${fmt(native.gpt.generationTokensPerSecond, 0)} |`,
    `| Chromium WebGPU, the page (${browser.gpt?.steps} steps; 100 tokens, greedy) | ${fmt(browser.gpt?.trainingTokensPerSecond, 0)} | ${fmt(browser.gpt?.generationTokensPerSecond, 0)} |`,
    `Browser / native: training ${fmt(browser.gpt?.trainingTokensPerSecond / native.gpt.trainingTokensPerSecond, 2)}x, generation ${fmt(browser.gpt?.generationTokensPerSecond / native.gpt.generationTokensPerSecond, 2)}x.`, '',
    '## MiniLM fine-tuning (all-MiniLM-L6-v2, batch 16, length 64, mean pooling; CPU, every core)', '',
    '| | burnish (flex) ms/step | PyTorch ms/step | burnish / PyTorch speed |', '|---|---|---|---|',
    ...['full', 'lora'].map((k) => {
      const ours = native.minilm[k].msPerStep;
      const theirs = native.minilm.torch?.[k]?.ms_per_step;
      return `| ${k === 'full' ? `full (${(native.minilm.full.trainable ?? 0).toLocaleString()} trainable)` : `LoRA r=8 q,v (${(native.minilm.lora.trainable ?? 0).toLocaleString()} trainable)`} | ${fmt(ours, 0)} | ${theirs ? fmt(theirs, 0) : native.minilm.torch?.error ?? '–'} | ${theirs ? `${fmt(theirs / ours, 2)}x` : '–'} |`;
    }),
    native.minilm.torch?.torch ? `PyTorch ${native.minilm.torch.torch}, ${native.minilm.torch.threads} threads.` : '', '',
    `## MiniLM at the browser's shape (length ${SMALL_MINILM.maxLength}, batch ${SMALL_MINILM.batch}, mean pooling; ms/step)`, '',
    '| | native flex | native wgpu | native wgpu, SwiftShader | Chromium WebGPU, the page | browser / native wgpu | browser / native, same adapter | host ms/step: native SwiftShader / the page |', '|---|---|---|---|---|---|---|---|',
    ...['full', 'lora'].map((k) => {
      const f = native.minilmSmall[`flex_${k}`]?.msPerStep;
      const w = native.minilmSmall[`wgpu_${k}`]?.msPerStep;
      const ss = native.minilmSmall[`swiftshader_${k}`]?.msPerStep;
      const p = browser.minilm?.[k]?.msPerStep;
      const page = p ?? browser.minilm?.[k]?.error ?? (QUICK ? 'not run (quick)' : '–');
      const hosts = `${fmt(native.minilmSmall[`swiftshader_${k}`]?.hostMs)} / ${fmt(browser.minilm?.[k]?.hostMs)}`;
      return `| ${k === 'full' ? 'full fine-tuning' : 'LoRA r=8 (query, value)'} | ${fmt(f, 0)} | ${fmt(w, 0)} | ${fmt(ss, 0)} | ${typeof page === 'number' ? fmt(page, 0) : page} | ${w && p ? `${fmt(w / p, 2)}x` : '–'} | ${ss && p ? `${fmt(ss / p, 2)}x` : '–'} | ${hosts} |`;
    }), '',
    `## Mixed precision (native wgpu, MiniLM at length ${SMALL_MINILM.maxLength}, batch ${SMALL_MINILM.batch}; ms/step)`, '',
    'f16: the dense layers\' products in half precision with f32 weights, optimizer and loss, dynamic loss scaling; f32 from the table above. ' +
      'On a CPU renderer f16 is emulated, so only a GPU\'s figures say what it gains.', '',
    '| | f32 | f16 | f16 / f32 speed | last loss f32 / f16 |', '|---|---|---|---|---|',
    ...['full', 'lora'].map((k) => {
      const single = native.minilmSmall[`wgpu_${k}`];
      const half = native.minilmHalf?.[k];
      const cell = half?.msPerStep ? fmt(half.msPerStep, 0) : half?.error ?? (QUICK ? 'not run (quick)' : '–');
      const ratio = single?.msPerStep && half?.msPerStep ? `${fmt(single.msPerStep / half.msPerStep, 2)}x` : '–';
      return `| ${k === 'full' ? 'full fine-tuning' : 'LoRA r=8 (query, value)'} | ${fmt(single?.msPerStep, 0)} | ${cell} | ${ratio} | ${fmt(single?.loss, 4)} / ${fmt(half?.loss, 4)} |`;
    }), '',
    '## Peak memory (native CLI runs)', '',
    'The device allocator\'s peak (burn\'s pools on wgpu; none on flex, whose tensors are the process\'s) and the process\'s resident peak (VmHWM: on a CPU renderer the "device" memory is the process\'s too).', '',
    '| run | device allocator MiB | process resident MiB |', '|---|---|---|',
    ...PEAKS.map((p) => `| ${p.run} | ${fmt(p.deviceMiB)} | ${fmt(p.processMiB)} |`), '',
    '## Start-up and size', '',
    `Page open to first training step (JS API example, a browser of its own): ${fmt(up.coldMs, 0)} ms cold, ${fmt(up.warmMs, 0)} ms warm cache. ` +
      `The cold visit: the run started at ${fmt(up.startedMs, 0)} ms (wasm compiled and started, GPU device, data), then its first step took ` +
      `${fmt(up.coldMs - up.startedMs, 0)} ms: ${fmt(up.firstStepHostMs, 0)} ms of host time in the worker (recording the step, generating each kernel's WGSL on first use) ` +
      `and ${fmt(up.pipelineMs, 0)} ms in the GPU process creating ${up.pipelines ?? '–'} compute pipelines (shader compiles, Tint and the driver).`,
    `Wasm: ${(result.wasm.raw / 1e6).toFixed(2)} MB raw, ${(result.wasm.gzip / 1e6).toFixed(2)} MB gzipped.`, '',
  ].join('\n');
  writeFileSync(`${OUT}/results.json`, `${JSON.stringify(result, null, 1)}\n`);
  writeFileSync(`${OUT}/results.md`, md);
  console.log(md);
  statSync(`${OUT}/results.md`);
}

main().catch((err) => { console.error(err); process.exit(1); });
