// A tiny static server for the browser tests: `/` -> dist/, `/model/` -> the fixture model.
// Loopback only, correct MIME types for module scripts and wasm, no caching, the app's CSP as a header,
// an ETag and Last-Modified per file (from its size and modification time, as common static servers
// do), and a log of every path (`HEAD /path` for a HEAD, the bare path for a GET).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** The Chromium the suites drive: `CHROMIUM`, else Debian's. */
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** The flags of every suite's Chromium: headless, and nothing of its own on the network. */
const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];

/** Chromium 156 offers a WebGPU adapter (SwiftShader) only with this flag; without it, navigator.gpu
 * exists but has no adapter, and the page runs on the CPU. */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

/**
 * Chromium with a fresh profile (or `userDataDir`'s: a second visit) and its first page, downloads
 * accepted; the page's console (its `debug` lines only with `debugConsole`) and errors are printed, and
 * every request's URL is kept in `urls`. `args` are added to the common flags; `initScripts` run in every
 * document before the page's own scripts. Resolves to { ctx, page, urls, userDataDir }.
 */
export async function launchBrowser({ args = [], viewport = { width: 1280, height: 1000 }, userDataDir, initScripts = [],
  debugConsole = true } = {}) {
  const dir = userDataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-browser-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...args], acceptDownloads: true, viewport,
  });
  const urls = [];
  ctx.on('request', (r) => urls.push(r.url()));
  for (const script of initScripts) await ctx.addInitScript(script);
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('console', (m) => { if (debugConsole || m.type() !== 'debug') console.log(`  [console.${m.type()}] ${m.text()}`); });
  page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
  return { ctx, page, urls, userDataDir: dir };
}

/** The start of a page query that keeps the model on WebGPU: the WebGPU suites run on SwiftShader, a
 * software adapter, which the page would otherwise pass over for the CPU. */
export const WEBGPU = 'device=webgpu&';

/**
 * Where the model runs in the suites whose subject is not the device (worker, ux, video, tune, sam,
 * bench, package): by default on the CPU in wasm, what the page itself picks on a machine whose only
 * WebGPU adapter is a software one, and three to five times faster there than SwiftShader. With
 * `BROWSER_DEVICE=webgpu` (the second tier, `scripts/test.sh --full`) they run on SwiftShader's WebGPU.
 * The default tier keeps WebGPU in the browser covered: e2e.mjs runs every journey on it, and the tests
 * about the GPU itself (its buffer limit, its out-of-memory crash) use WEBGPU_ARGS / WEBGPU directly.
 * `args` go to launchBrowser, `query` starts the page's query string.
 */
export const SUITE_DEVICE = (() => {
  const name = process.env.BROWSER_DEVICE ?? 'cpu';
  if (name !== 'cpu' && name !== 'webgpu') throw new Error(`BROWSER_DEVICE=${name}: use cpu or webgpu`);
  return name === 'webgpu'
    ? { name, onCpu: false, args: WEBGPU_ARGS, query: WEBGPU }
    : { name, onCpu: true, args: [], query: '' };
})();

/** The CLI the browser tests compare the page with: `SEGGPT_CLI` (scripts/test.sh sets it to the build
 * it tests), else `cargo build --release`'s. */
export const CLI = process.env.SEGGPT_CLI ?? path.resolve(root, process.env.CARGO_TARGET_DIR ?? 'target', 'release/seggpt');

// The page's meta CSP, also sent as a header: a dedicated worker takes its policy from its script's
// response, not from the page's meta tag, so only the header binds the worker (docs/ARCHITECTURE.md).
export const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
  + "connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; "
  + "img-src 'self' blob: data:; media-src blob:; style-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'";

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
  '.css': 'text/css', '.safetensors': 'application/octet-stream', '.jpg': 'image/jpeg',
  '.webmanifest': 'application/manifest+json',
};

/** roots: { '/url-prefix/': '/dir/on/disk', ... }; longest prefix wins. Paths under a prefix in
 * `slow` are sent in 8 KiB pieces 40 ms apart (to watch download progress). Requests under a prefix
 * added to `unreachable` get their connection dropped with no answer, as when offline. `headers` are
 * added to every answer (a `null` value leaves that header out).
 * Resolves to { url, log, unreachable, close }. */
export function serve(roots, slow = [], headers = {}, { maxFileBytes = Infinity } = {}) {
  const log = [];
  const unreachable = new Set();
  const prefixes = Object.keys(roots).sort((a, b) => b.length - a.length);
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    log.push(req.method === 'GET' ? urlPath : `${req.method} ${urlPath}`);
    if ([...unreachable].some((p) => urlPath.startsWith(p))) {
      req.socket.destroy();
      return;
    }
    const prefix = prefixes.find((p) => urlPath.startsWith(p));
    let file = prefix && path.join(roots[prefix], urlPath.slice(prefix.length));
    if (file && !file.startsWith(path.resolve(roots[prefix]))) file = null; // no `..` escapes
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    // A host that caps a file's size never has a larger file: it refused the upload.
    if (!file || !fs.existsSync(file) || fs.statSync(file).size > maxFileBytes) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end(`not found: ${urlPath}`);
      return;
    }
    const bytes = fs.readFileSync(file);
    const { mtime, mtimeMs } = fs.statSync(file);
    const answer = {
      'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'Content-Length': bytes.length,
      'Cache-Control': 'no-store',
      'Content-Security-Policy': CSP,
      'ETag': `"${bytes.length.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`,
      'Last-Modified': mtime.toUTCString(),
      ...headers,
    };
    res.writeHead(200, Object.fromEntries(Object.entries(answer).filter(([, value]) => value !== null)));
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (!slow.includes(prefix)) {
      res.end(bytes);
      return;
    }
    let offset = 0;
    const next = () => {
      if (offset >= bytes.length) return res.end();
      res.write(bytes.subarray(offset, offset + 8192));
      offset += 8192;
      setTimeout(next, 40);
    };
    next();
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, log, unreachable, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

/**
 * Runs `tests` ([name, async (server) => ...] pairs) one after the other against `server`, printing
 * `ok` / `FAIL` per test; the environment variable `onlyVar` (a substring of test names) picks some.
 * Returns the number that failed.
 */
export async function runTests(tests, server, onlyVar) {
  let failed = 0;
  const only = process.env[onlyVar];
  for (const [name, run] of tests.filter(([n]) => !only || n.includes(only))) {
    const start = Date.now();
    try {
      await run(server);
      console.log(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${name}: ${err.stack ?? err}`);
    }
  }
  return failed;
}
