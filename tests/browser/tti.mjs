// Time to interactive of the page on a throttled link (docs/MODEL.md §22): a fresh Chromium profile opens the
// site served gzip-compressed (as static hosts do) at THROUGHPUT_MBIT (10) Mbit/s with LATENCY_MS (40) ms,
// RUNS (3) times. The page's requests go through CDP's network emulation at that rate; CDP does not reach the
// worker's and the service worker's requests, so the server also paces every response through one shared
// link of that rate (what a visitor's line does: the worker's wasm competes with the page's). Per run it records, in the page's own clock
// from navigation start:
// - interactive: the page's wasm has run (the first prompt card exists, added by `run_page`), so buttons
//   work; the test then clicks "Add a prompt" and checks a second card appears;
// - ready: the model status says ready (the worker's wasm, WebGPU and the 192 KB fixture model; the
//   consent button is clicked when it shows).
// It also prints every file's size, plain and gzipped. Not in scripts/test.sh: it measures, it does not
// check behaviour, and takes about a minute per site.
//
// Usage: node tests/browser/tti.mjs [DIST_DIR]   (default dist/, built by `trunk build --release`)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';
import { CSP, WEBGPU } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const model = path.join(root, 'tests/fixtures/segment/model');
const mbit = Number(process.env.THROUGHPUT_MBIT ?? 10);
const latencyMs = Number(process.env.LATENCY_MS ?? 40);
const runs = Number(process.env.RUNS ?? 3);
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png', '.css': 'text/css', '.jpg': 'image/jpeg',
  '.safetensors': 'application/octet-stream', '.webmanifest': 'application/manifest+json',
};
const COMPRESSED = new Set(['.html', '.js', '.wasm', '.json', '.css', '.webmanifest']);

/** gzip (level 6, the common servers' default) of each compressible file, made once. */
const gzipped = new Map();
function gzipOf(file) {
  if (!gzipped.has(file)) gzipped.set(file, zlib.gzipSync(fs.readFileSync(file), { level: 6 }));
  return gzipped.get(file);
}

/** When the shared link is next free (ms); each 16 KiB piece of any response takes its turn. */
let linkFreeAt = 0;
function sendPaced(res, body) {
  let offset = 0;
  const next = () => {
    if (offset >= body.length) return res.end();
    const piece = body.subarray(offset, offset + 16384);
    offset += piece.length;
    const now = Date.now();
    const at = Math.max(now, linkFreeAt);
    linkFreeAt = at + (piece.length * 8 * 1000) / (mbit * 1e6);
    setTimeout(() => res.write(piece, next), at - now);
  };
  next();
}

function serve() {
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const [base, rest] = urlPath.startsWith('/model/') ? [model, urlPath.slice(7)] : [dist, urlPath.slice(1)];
    let file = path.join(base, rest);
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!file.startsWith(base) || !fs.existsSync(file)) {
      res.writeHead(404);
      res.end();
      return;
    }
    const ext = path.extname(file);
    const gzip = COMPRESSED.has(ext) && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    const body = gzip ? gzipOf(file) : fs.readFileSync(file);
    res.writeHead(200, {
      'Content-Type': MIME[ext] ?? 'application/octet-stream', 'Content-Length': body.length,
      'Cache-Control': 'no-store', 'Content-Security-Policy': CSP, ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
    });
    if (req.method === 'HEAD') res.end(); else sendPaced(res, body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function measure(url) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-tti-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath, headless: true, viewport: { width: 1280, height: 1000 },
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
  });
  try {
    // Marks, in the page's clock, the first prompt card and the `ready` status.
    await ctx.addInitScript(() => {
      const watch = () => new MutationObserver(() => {
        if (window.__interactiveAt === undefined && document.querySelector('.prompt-card')) {
          window.__interactiveAt = performance.now();
        }
        const status = document.querySelector('[data-testid=model-status]');
        if (window.__readyAt === undefined && status?.textContent.startsWith('ready')) window.__readyAt = performance.now();
      }).observe(document, { subtree: true, childList: true, characterData: true });
      if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch); else watch();
    });
    const page = ctx.pages()[0] ?? await ctx.newPage();
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const bytesPerSecond = (mbit * 1e6) / 8;
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: latencyMs, downloadThroughput: bytesPerSecond, uploadThroughput: bytesPerSecond,
    });
    let pageBytes = 0;
    cdp.on('Network.loadingFinished', (e) => { pageBytes += e.encodedDataLength; });
    linkFreeAt = 0;
    await page.goto(url, { waitUntil: 'commit' });
    await page.waitForFunction(() => window.__interactiveAt !== undefined, null, { timeout: 600_000, polling: 50 });
    const interactive = await page.evaluate(() => window.__interactiveAt);
    await page.getByTestId('add-prompt').click();
    assert.equal(await page.locator('.prompt-card').count(), 2, 'Add a prompt works at once');
    const load = page.getByTestId('load-model');
    const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
    await load.or(ready).first().waitFor({ timeout: 600_000 });
    if (await load.isVisible()) await load.click();
    await page.waitForFunction(() => window.__readyAt !== undefined, null, { timeout: 600_000, polling: 50 });
    const readyAt = await page.evaluate(() => window.__readyAt);
    return { interactive: interactive / 1000, ready: readyAt / 1000, pageBytes };
  } finally {
    await ctx.close();
  }
}

assert.ok(fs.existsSync(path.join(dist, 'index.html')), `${dist}/index.html missing: build the site first`);
console.log(`site ${dist}`);
for (const name of fs.readdirSync(dist).filter((f) => /\.(wasm|js|html|css)$/.test(f)).sort()) {
  const file = path.join(dist, name);
  const size = fs.statSync(file).size;
  console.log(`  ${name.padEnd(24)} ${(size / 1e6).toFixed(3).padStart(8)} MB, gzip ${(gzipOf(file).length / 1e6).toFixed(3).padStart(7)} MB`);
}
const server = await serve();
const url = `http://127.0.0.1:${server.address().port}/?${WEBGPU}model=/model/`;
const results = [];
for (let i = 0; i < runs; i++) {
  const result = await measure(url);
  console.log(`  run ${i + 1}: interactive ${result.interactive.toFixed(2)} s, ready ${result.ready.toFixed(2)} s, `
    + `${(result.pageBytes / 1e6).toFixed(2)} MB over the page's connection`);
  results.push(result);
}
server.close();
const median = (key) => results.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(results.length / 2)];
console.log(`tti: ${mbit} Mbit/s, ${latencyMs} ms: interactive ${median('interactive').toFixed(2)} s, `
  + `ready ${median('ready').toFixed(2)} s (median of ${runs})`);
