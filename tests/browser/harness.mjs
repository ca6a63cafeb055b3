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

/// Wait until the page's state satisfies `predicate` (a function of window.burnish), or fail with
/// what the page said.
export async function waitFor(page, record, predicate, timeout, what) {
  try {
    await page.waitForFunction(
      (src) => { const s = window.burnish; return !!s && (s.errors.length > 0 || new Function('s', `return (${src})(s)`)(s)); },
      predicate.toString(), { timeout, polling: 250 },
    );
  } catch (err) {
    const state = await page.evaluate(() => window.burnish && { phase: window.burnish.phase, errors: window.burnish.errors, events: window.burnish.events.length }).catch(() => null);
    throw new Error(`timed out waiting for ${what}: page state ${JSON.stringify(state)}; console:\n${record.console.slice(-20).join('\n')}`);
  }
  const errors = await page.evaluate(() => window.burnish.errors);
  if (errors.length) throw new Error(`the page reported errors while waiting for ${what}: ${errors.join('; ')}`);
}
