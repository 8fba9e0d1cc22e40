// End-to-end test of the page in headless Chromium (Debian `chromium`, WebGPU on SwiftShader):
// load the fixture model, segment one target, compare the downloaded mask with the CLI's, check that
// every request stayed on loopback; then check the error shown without WebGPU.
//
// Needs: `trunk build --release` (dist/), `cargo build --release` (target/release/seggpt), `npm ci`.
// Run from the repository root: `node tests/browser/e2e.mjs`. Exit code 0 = pass.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');
const artifacts = path.join(root, 'tests/browser/artifacts');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const BASE_ARGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];

async function launch(extraArgs) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-pw-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath, headless: true, args: [...BASE_ARGS, ...extraArgs], acceptDownloads: true,
  });
  const urls = [];
  ctx.on('request', (r) => urls.push(r.url()));
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('console', (m) => console.log(`  [console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
  return { ctx, page, urls };
}

function readRgb(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  return png;
}

/** Max per-channel difference of two RGBA pngjs images of the same size (alpha ignored). */
function maxDiff(a, b) {
  assert.equal(a.width, b.width, 'mask width');
  assert.equal(a.height, b.height, 'mask height');
  let max = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(a.data[i + c] - b.data[i + c]));
  }
  return max;
}

function assertLoopback(urls, base) {
  const outside = urls.filter((u) => !(u.startsWith(base + '/') || u.startsWith('blob:') || u.startsWith('data:')));
  assert.deepEqual(outside, [], 'requests that left 127.0.0.1');
}

async function testSegmentMatchesCli(server) {
  // Expected: the real CLI on the same files (default ensemble, instance embedding).
  const cliOut = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-cli-'));
  execFileSync(path.resolve(root, process.env.CARGO_TARGET_DIR ?? 'target', 'release/seggpt'), ['segment', '--model', path.join(fixtures, 'model'),
    '--prompt', path.join(fixtures, 'prompt0.png'), path.join(fixtures, 'prompt0_mask.png'),
    '--target', path.join(fixtures, 'target_a.png'), '--out-dir', cliOut], { stdio: 'inherit' });
  const expected = readRgb(path.join(cliOut, 'target_a.mask.png'));

  const { ctx, page, urls } = await launch(['--enable-unsafe-webgpu']);
  try {
    const t0 = Date.now();
    await page.goto(`${server.url}/?model=/model/`);
    const status = page.getByTestId('model-status');
    await status.filter({ hasText: 'ready' }).waitFor({ timeout: 180_000 });
    const statusText = await status.textContent();
    console.log(`  status: "${statusText}" (page open to ready: ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    assert.match(statusText, /SwiftShader|swiftshader|software|google/i, 'status names the adapter');

    await page.getByTestId('prompt-image').setInputFiles(path.join(fixtures, 'prompt0.png'));
    await page.getByTestId('prompt-mask').setInputFiles(path.join(fixtures, 'prompt0_mask.png'));
    await page.getByTestId('target-input').setInputFiles([path.join(fixtures, 'target_a.png')]);
    const t1 = Date.now();
    await page.getByTestId('segment').click();
    const done = page.locator('[data-testid=result][data-state=done]');
    await done.first().waitFor({ timeout: 180_000 });
    const clickToMask = (Date.now() - t1) / 1000;
    console.log(`  click to mask: ${clickToMask.toFixed(2)} s (worker: ${await done.first().getAttribute('data-seconds')} s)`);
    assert.equal(await page.getByTestId('error').isVisible(), false, 'no error shown');

    const download = page.waitForEvent('download');
    await done.first().getByTestId('download-mask').click();
    const dl = await download;
    assert.equal(dl.suggestedFilename(), 'target_a.mask.png');
    const got = readRgb(await dl.path());
    const diff = maxDiff(got, expected);
    console.log(`  downloaded mask vs CLI: max difference ${diff} level(s) over ${got.width}x${got.height} px`);
    assert.ok(diff <= 1, `mask differs from the CLI by ${diff} levels`);

    // A second run on the same page: pipelines are compiled now, so this is the steady-state time.
    const t2 = Date.now();
    await page.getByTestId('segment').click();
    await page.locator('[data-testid=result][data-state=done]').first().waitFor({ timeout: 180_000 });
    console.log(`  click to mask, second run: ${((Date.now() - t2) / 1000).toFixed(2)} s`);

    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'result.png'), fullPage: true });
    assertLoopback(urls, server.url);
    assert.ok(server.log.includes('/model/model.safetensors'), 'the weights came from the test server');
    console.log(`  ${urls.length} requests, all to ${server.url}, blob: or data:`);
  } finally {
    await ctx.close();
  }
}

async function testNoWebGpuError(server, extraArgs, label) {
  const { ctx, page, urls } = await launch(extraArgs);
  try {
    await page.goto(`${server.url}/?model=/model/`);
    const error = page.getByTestId('error');
    await error.waitFor({ state: 'visible', timeout: 60_000 });
    const text = await error.textContent();
    console.log(`  ${label}: error shown: "${text}"`);
    assert.match(text, /WebGPU/);
    await page.screenshot({ path: path.join(artifacts, `no-webgpu-${label}.png`), fullPage: true });
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

const tests = [
  ['segment matches the CLI, loopback only', (s) => testSegmentMatchesCli(s)],
  // Chromium 156 without --enable-unsafe-webgpu exposes navigator.gpu but no adapter (so does
  // --disable-features=WebGPU and --disable-blink-features=WebGPU: the `navigator.gpu` absent path
  // is not reachable with this browser on a secure origin).
  ['no WebGPU adapter: error names WebGPU', (s) => testNoWebGpuError(s, [], 'no-adapter')],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const server = await serve({ '/': path.join(root, 'dist'), '/model/': path.join(fixtures, 'model') });
let failed = 0;
for (const [name, run] of tests) {
  const start = Date.now();
  try {
    await run(server);
    console.log(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.stack ?? err}`);
  }
}
await server.close();
process.exit(failed ? 1 : 0);
