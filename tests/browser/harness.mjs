// Shared set-up of the browser tests: Debian's Chromium with WebGPU on (SwiftShader on machines
// without a GPU), a record of every request, console message and page error.

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

export const BASE_URL = process.env.BURNISH_URL;
if (!BASE_URL) throw new Error('BURNISH_URL is not set: run the browser tests through `cargo xtask test`');

const candidates = [process.env.BURNISH_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter(Boolean);
const executablePath = candidates.find((p) => existsSync(p));

/// `extraArgs`: more Chromium switches (the benchmark's diagnostic runs).
export async function launch({ extraArgs = [] } = {}) {
  if (!executablePath) throw new Error(`no Chromium found at ${candidates.join(', ')}; set BURNISH_CHROMIUM`);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', ...extraArgs,
    ],
  });
  const page = await browser.newPage();
  const origin = new URL(BASE_URL).origin;
  const record = { requests: [], foreign: [], console: [], errors: [] };
  // Every request, from the page and its workers, must go to the page's own origin.
  page.context().on('request', (req) => {
    record.requests.push(req.url());
    if (!req.url().startsWith(origin + '/') && !req.url().startsWith('data:') && !req.url().startsWith('blob:')) {
      record.foreign.push(req.url());
    }
  });
  page.on('console', (msg) => {
    const line = `${msg.type()}: ${msg.text()}`;
    record.console.push(line);
    if (msg.type() === 'error') record.errors.push(line);
  });
  page.on('pageerror', (err) => record.errors.push(`pageerror: ${err.message}`));
  page.on('worker', (w) => w.on('console', (msg) => {
    const line = `worker ${msg.type()}: ${msg.text()}`;
    record.console.push(line);
    if (msg.type() === 'error') record.errors.push(line);
  }));
  return { browser, page, record };
}

/// Set the page's recipe form fields by name, in order (choosing one field can show others): a
/// `<select>` gets the option, any other field the text.
export async function setFields(page, fields) {
  for (const [name, value] of Object.entries(fields)) {
    const field = page.locator(`[name="${name}"]`);
    if (await field.evaluate((el) => el.tagName === 'SELECT')) await field.selectOption(value);
    else await field.fill(value);
  }
}

/// Wait until the page's state (window.burnish) satisfies `predicate`, run here in Node on a
/// snapshot polled every 250 ms (the page's CSP forbids eval, so no predicate runs in the page).
/// Fails early, with what the page said, when the page reports an error.
export async function waitFor(page, record, predicate, timeout, what) {
  const deadline = Date.now() + timeout;
  let state = null;
  for (;;) {
    state = await page.evaluate(() => window.burnish ?? null);
    if (state && state.errors.length) {
      throw new Error(`the page reported errors while waiting for ${what}: ${state.errors.join('; ')}`);
    }
    if (state && predicate(state)) return state;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const brief = state && { phase: state.phase, events: state.events.length, last: state.events.at(-1) };
  throw new Error(`timed out after ${timeout} ms waiting for ${what}: page state ${JSON.stringify(brief)}; console:\n${record.console.slice(-20).join('\n')}`);
}

/// Parse safetensors bytes: the header (names, dtypes, shapes, offsets) and its metadata.
export function parseSafetensors(bytes) {
  const buf = Buffer.from(bytes);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const metadata = header.__metadata__ ?? {};
  delete header.__metadata__;
  const data = buf.subarray(8 + n);
  const tensor = (name) => {
    const t = header[name];
    const [a, b] = t.data_offsets;
    const view = data.subarray(a, b);
    return Array.from({ length: (b - a) / 4 }, (_, i) => view.readFloatLE(4 * i));
  };
  return { tensors: header, metadata, tensor, dataBytes: data.length };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/// A grayscale 8-bit PNG of `width` x `height` whose pixel (x, y) is `pixel(x, y)`.
export async function png(width, height, pixel) {
  const { deflateSync } = await import('node:zlib');
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0;
    for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = pixel(x, y);
  }
  const chunk = (type, body) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const tb = Buffer.concat([Buffer.from(type, 'ascii'), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(tb));
    return Buffer.concat([len, tb, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/// Click `selector` and return the bytes of the download it starts.
export async function downloadOf(page, selector) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const stream = await download.createReadStream();
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return { name: download.suggestedFilename(), bytes: Buffer.concat(chunks) };
}

/// The next error the page shows (taken off its list, so later waits do not fail on it).
export async function nextError(page, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const errors = await page.evaluate(() => window.burnish.errors.slice());
    if (errors.length) {
      await page.evaluate(() => { window.burnish.errors.length = 0; });
      return errors.join('; ');
    }
    if (Date.now() > deadline) throw new Error(`no error shown for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
