// Shared set-up of the browser tests: Debian's Chromium with WebGPU on (SwiftShader on machines
// without a GPU), a record of every request, console message and page error.

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

export const BASE_URL = process.env.BURNISH_URL;
if (!BASE_URL) throw new Error('BURNISH_URL is not set: run the browser tests through `cargo xtask test`');

const candidates = [process.env.BURNISH_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter(Boolean);
const executablePath = candidates.find((p) => existsSync(p));

export async function launch() {
  if (!executablePath) throw new Error(`no Chromium found at ${candidates.join(', ')}; set BURNISH_CHROMIUM`);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic',
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
