// Measurement (not part of the test command): a forward pass on the CPU in this browser, the page's
// (burn's CPU backend in the worker's wasm, `?device=cpu`, timed by its Benchmark) against
// onnxruntime-web's WASM backend on the same model, single-threaded and with threads, in the same
// headless Chromium run. The page is served cross-origin isolated (COOP/COEP), which ORT's threads need.
//
// Set-up (docs/MODEL.md §24):
//   .venv-ref/bin/python scripts/make_fixtures.py model --full --out /tmp/cpu-model \
//     --config '{"hidden_size": 256, "num_attention_heads": 4, "mlp_dim": 1024, "num_hidden_layers": 2,
//                "merge_index": 0, "intermediate_hidden_state_indices": [0, 1]}'
//   .venv-ref/bin/python scripts/ort_export.py /tmp/cpu-model            (-> /tmp/cpu-model/model.onnx)
//   npm install --no-save onnxruntime-web@1.30.0
//   MODEL_DIR=/tmp/cpu-model node tests/browser/cpu-vs-ort.mjs            (THREADS=4 RUNS=3 by default)
// Prints each one's mean and minimum time per forward pass after one untimed warm-up.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const modelDir = process.env.MODEL_DIR;
for (const file of ['model.safetensors', 'config.json', 'model.onnx']) {
  assert.ok(modelDir && fs.existsSync(path.join(modelDir, file)), `set MODEL_DIR to a directory with ${file}`);
}
const ortDist = path.join(root, 'node_modules/onnxruntime-web/dist');
assert.ok(fs.existsSync(ortDist), 'onnxruntime-web missing: npm install --no-save onnxruntime-web');
const runs = Number(process.env.RUNS ?? 3);
const threads = Number(process.env.THREADS ?? 4);
const LONG = 3_600_000;

// The ORT side: a module that loads the ONNX file and times `runs` passes after a warm-up, on
// inputs of the model's shape; `?threads=N` sets ORT's WASM thread count.
const harness = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-ort-'));
fs.writeFileSync(path.join(harness, 'index.html'),
  '<!doctype html><meta charset="utf-8"><title>ORT</title><script type="module" src="run.mjs"></script>');
fs.writeFileSync(path.join(harness, 'run.mjs'), `
import * as ort from '/ort/ort.wasm.min.mjs';
const threads = Number(new URLSearchParams(location.search).get('threads'));
const config = await (await fetch('/m/config.json')).json();
const [h, w] = config.image_size;
ort.env.wasm.wasmPaths = '/ort/';
ort.env.wasm.numThreads = threads;
ort.env.wasm.simd = true;
try {
  const session = await ort.InferenceSession.create('/m/model.onnx', { executionProviders: ['wasm'] });
  const shape = [1, 3, h / 2, w];
  const input = (seed) => new ort.Tensor('float32', Float32Array.from({ length: 3 * h / 2 * w }, (_, i) => Math.sin(i * seed)), shape);
  const feeds = { pixel_values: input(1), prompt_pixel_values: input(2), prompt_masks: input(3) };
  const times = [];
  for (let run = 0; run <= ${runs}; run++) {
    const start = performance.now();
    await session.run(feeds);
    if (run > 0) times.push((performance.now() - start) / 1000);
  }
  window.__result = { times, isolated: crossOriginIsolated, threads };
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
`);

const server = await serve({ '/': path.join(root, 'dist'), '/m/': modelDir, '/ort/': ortDist, '/ort-harness/': harness }, [], {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
});
const ctx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-cpu-')), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-background-networking'],
});
const page = ctx.pages()[0];
page.on('console', (m) => { if (m.type() === 'error') console.log(`  [console.error] ${m.text().slice(0, 300)}`); });
const summary = (times) => {
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return `mean ${mean.toFixed(2)} s  min ${Math.min(...times).toFixed(2)} s  (${times.length} passes after a warm-up)`;
};
try {
  // The page: WebGPU is off in this Chromium (no --enable-unsafe-webgpu), and ?device=cpu says so anyway.
  await page.goto(`${server.url}/?model=/m/&device=cpu&cache=off`);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: LONG });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: LONG });
  console.log(`${await page.getByTestId('model-status').textContent()}\n  ${await page.getByTestId('model-note').textContent()}`);
  await page.getByTestId('bench-run').click();
  const status = page.getByTestId('bench-status');
  await status.filter({ hasText: /per forward pass|failed/ }).waitFor({ timeout: LONG });
  assert.doesNotMatch(await status.textContent(), /failed/);
  const report = JSON.parse(await page.getByTestId('bench-json').textContent());
  console.log(`this page on ${report.adapter} (${report.dtype}): ${report.runs} passes after a warm-up`);
  for (const t of [...report.stages, report.forward]) {
    console.log(`  ${t.name.padEnd(10)} mean ${t.mean_s.toFixed(2)} s  min ${t.min_s.toFixed(2)} s  ${t.gflop.toFixed(1)} GFLOP  ${t.gflop_per_s.toFixed(2)} GFLOP/s`);
  }
  for (const n of [1, threads]) {
    await page.goto(`${server.url}/ort-harness/?threads=${n}`);
    await page.waitForFunction(() => window.__result, null, { timeout: LONG });
    const result = await page.evaluate(() => window.__result);
    assert.ok(!result.error, result.error);
    console.log(`onnxruntime-web WASM, ${n} thread(s) (cross-origin isolated: ${result.isolated}): ${summary(result.times)}`);
  }
} finally {
  await ctx.close();
  await server.close();
}
