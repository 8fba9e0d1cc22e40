// The page's Benchmark and the q8 checkpoint in the browser (docs/MODEL.md §22), in headless Chromium,
// on the small fixture model (the Benchmark on SwiftShader's WebGPU; q8 on the suites' device, server.mjs):
// 1. `?bench`: the benchmark starts once the model is ready; the table and the JSON hold the adapter, the
//    dtype and, per stage and for the forward pass, times and GFLOP/s that are present and positive (no
//    value is asserted); "Copy as JSON" puts the same JSON on the clipboard; the report names the fused
//    attention (the default), and a second run with "reference" chosen in the panel names that one.
//    Screenshot `artifacts/bench-panel.png`.
// 2. q8: `seggpt convert --dtype q8` of the fixture model loads in the page and segments; its mask equals
//    the CLI's on the same q8 file (within 1 level), and its difference from the f32 model's mask is
//    reported, with the load time from browser storage of both.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI), `npm ci`.
// Run from the repository root: `node tests/browser/bench.mjs`. Exit code 0 = pass. `BENCH_ONLY=substring`
// runs some.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { CLI, launchBrowser, runTests, serve, SUITE_DEVICE, WEBGPU, WEBGPU_ARGS } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');
const artifacts = path.join(root, 'tests/browser/artifacts');
const fx = (name) => path.join(fixtures, name);

/** The Benchmark's test runs on WebGPU whatever the suite's device: its subject is the attention kernels
 * the GPU runs (fused or reference), which the CPU does not have. */
const WEBGPU_DEVICE = { args: WEBGPU_ARGS, query: WEBGPU };

async function launch(device = SUITE_DEVICE) {
  return launchBrowser({ args: device.args });
}

/** Opens `url`, agrees to the download if asked, waits for `ready`; returns the status text. */
async function openReady(page, url) {
  await page.goto(url);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: 180_000 });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: 180_000 });
  return page.getByTestId('model-status').textContent();
}

/** The seconds in `ready on ... (f32, loaded in 1.2 s)`. */
function loadSeconds(status) {
  const match = /loaded in ([0-9.]+) s/.exec(status);
  assert.ok(match, `no load time in "${status}"`);
  return Number(match[1]);
}

/** One prompt, one target; Segment; the downloaded mask as a pngjs image. */
async function segmentOne(page) {
  await page.getByTestId('prompt-image').setInputFiles(fx('prompt0.png'));
  await page.getByTestId('prompt-mask').setInputFiles(fx('prompt0_mask.png'));
  await page.getByTestId('target-input').setInputFiles([fx('target_a.png')]);
  await page.getByTestId('segment').click();
  const result = page.locator('[data-testid=result][data-state=done]').first();
  await result.waitFor({ timeout: 180_000 });
  const download = page.waitForEvent('download');
  await result.getByTestId('download-mask').click();
  return PNG.sync.read(fs.readFileSync(await (await download).path()));
}

/** What `seggpt segment` writes for the same prompt and target with `model`. */
function cliMask(model) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-cli-'));
  execFileSync(CLI, ['segment', '--model', model, '--out-dir', out, '--prompt', fx('prompt0.png'),
    fx('prompt0_mask.png'), '--target', fx('target_a.png')], { stdio: 'ignore' });
  return PNG.sync.read(fs.readFileSync(path.join(out, 'target_a.png.mask.png')));
}

/** Largest per-channel difference of two same-sized RGBA images, and the pixels differing by more than 1. */
function compare(a, b) {
  assert.deepEqual([a.width, a.height], [b.width, b.height], 'mask size');
  let max = 0;
  let over1 = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    const d = Math.max(...[0, 1, 2].map((c) => Math.abs(a.data[i + c] - b.data[i + c])));
    max = Math.max(max, d);
    if (d > 1) over1++;
  }
  return { max, over1, pixels: a.width * a.height };
}

const positive = (value, what) => assert.ok(typeof value === 'number' && value > 0, `${what}: ${value}`);

const tests = [
  ['benchmark: ?bench runs it once the model is ready; numbers present and positive; Copy as JSON', async (server) => {
    const { ctx, page } = await launch(WEBGPU_DEVICE);
    try {
      await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
      const status = await openReady(page, `${server.url}/?${WEBGPU_DEVICE.query}model=/model/&bench`);
      const copy = page.getByTestId('bench-copy');
      assert.ok(await copy.isDisabled(), 'Copy is disabled before there is a report');
      await page.getByTestId('bench-table').waitFor({ state: 'visible', timeout: 300_000 });
      const json = JSON.parse(await page.getByTestId('bench-json').textContent());
      assert.ok(status.includes(json.adapter), `the report's adapter ${json.adapter} is the status's: ${status}`);
      assert.ok(['f32', 'f16'].includes(json.dtype), json.dtype);
      assert.equal(json.attention, 'fused', 'the default attention is the fused kernel');
      assert.equal(json.prompts, 1);
      assert.equal(json.runs, 3);
      assert.deepEqual(json.stages.map((s) => s.name), ['embeddings', 'blocks', 'decoder']);
      assert.equal(json.sam, undefined, 'SAM is not loaded, so not timed');
      assert.match(await page.getByTestId('bench-setup').textContent(), /Click to select is timed too once SAM is loaded/);
      for (const timing of [...json.stages, json.forward]) {
        for (const field of ['mean_s', 'min_s', 'gflop', 'gflop_per_s']) positive(timing[field], `${timing.name}.${field}`);
      }
      const rows = await page.locator('[data-testid=bench-rows] tr').allTextContents();
      assert.equal(rows.length, 4, 'a row per stage and one for the forward pass');
      for (const name of ['embeddings', 'blocks', 'decoder', 'forward']) {
        const cells = await page.getByTestId(`bench-row-${name}`).locator('td').allTextContents();
        assert.equal(cells[0], name);
        for (const cell of cells.slice(1)) positive(parseFloat(cell), `${name} cell "${cell}"`);
      }
      await copy.click();
      await page.getByTestId('bench-status').filter({ hasText: 'copied' }).waitFor({ timeout: 10_000 });
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.deepEqual(JSON.parse(copied), json, 'the clipboard holds the report shown');
      // A second run from the button (the model stays loaded), with the reference attention.
      await page.getByTestId('bench-attention').selectOption('reference');
      await page.getByTestId('bench-run').click();
      await page.getByTestId('bench-status').filter({ hasText: 'per forward pass' }).waitFor({ timeout: 300_000 });
      const second = JSON.parse(await page.getByTestId('bench-json').textContent());
      assert.equal(second.attention, 'reference', 'the chosen attention ran');
      assert.match(await page.getByTestId('bench-setup').textContent(), /reference attention/);
      positive(second.stages[1].mean_s, 'blocks with the reference attention');
      await page.getByTestId('bench-panel').screenshot({ path: path.join(artifacts, 'bench-panel.png') });
      for (const report of [json, second]) {
        console.log(`  ${report.adapter} (${report.dtype}, ${report.attention} attention): `
          + `${report.forward.mean_s.toFixed(3)} s per forward, `
          + `${report.stages.map((s) => `${s.name} ${s.mean_s.toFixed(3)} s`).join(', ')}, `
          + `${report.forward.gflop_per_s.toPrecision(3)} GFLOP/s`);
      }
    } finally {
      await ctx.close();
    }
  }],

  ['q8: a `convert --dtype q8` checkpoint loads in the page and segments as the CLI does', async (server) => {
    const { ctx, page } = await launch();
    try {
      const f32Status = await openReady(page, `${server.url}/?${SUITE_DEVICE.query}model=/model/`);
      const f32Mask = await segmentOne(page);
      const f32Cached = loadSeconds(await openReady(page, `${server.url}/?${SUITE_DEVICE.query}model=/model/`));
      const q8Status = await openReady(page, `${server.url}/?${SUITE_DEVICE.query}model=/q8-model/`);
      assert.match(q8Status, /ready/);
      const q8Mask = await segmentOne(page);
      const q8Cached = await openReady(page, `${server.url}/?${SUITE_DEVICE.query}model=/q8-model/`);
      assert.match(await page.getByTestId('model-note').textContent(), /browser storage/);
      const sameAsCli = compare(q8Mask, cliMask(server.q8Dir));
      assert.ok(sameAsCli.max <= 1, `the page's q8 mask differs from the CLI's on the same file by ${sameAsCli.max}`);
      const vsF32 = compare(q8Mask, f32Mask);
      console.log(`  q8 vs the CLI on the q8 file: max ${sameAsCli.max} level(s); q8 vs f32 in the page: max `
        + `${vsF32.max} level(s), ${vsF32.over1} of ${vsF32.pixels} pixels over 1 level`);
      console.log(`  first load: f32 ${loadSeconds(f32Status)} s, q8 ${loadSeconds(q8Status)} s; from browser `
        + `storage: f32 ${f32Cached} s, q8 ${loadSeconds(q8Cached)} s; files: f32 `
        + `${fs.statSync(fx('model/model.safetensors')).size} bytes, q8 `
        + `${fs.statSync(path.join(server.q8Dir, 'model.safetensors')).size} bytes`);
    } finally {
      await ctx.close();
    }
  }],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const q8Dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-q8-'));
execFileSync(CLI, ['convert', '--model', fx('model'), '--output', path.join(q8Dir, 'model.safetensors'),
  '--dtype', 'q8'], { stdio: 'inherit' });
assert.ok(fs.existsSync(path.join(q8Dir, 'config.json')), 'convert writes config.json beside the q8 file');
const server = await serve({ '/': path.join(root, 'dist'), '/model/': fx('model'), '/q8-model/': q8Dir });
server.q8Dir = q8Dir;
const failed = await runTests(tests, server, 'BENCH_ONLY');
await server.close();
process.exit(failed ? 1 : 0);
