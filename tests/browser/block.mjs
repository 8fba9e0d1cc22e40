// Measurement (not part of the test command): the page's Benchmark on a model of the released width with
// one encoder block, once with the fused attention kernel and once with the reference path, so that its
// "blocks" row is the time of one full-width block in this browser (SwiftShader in headless Chromium).
// The model: `scripts/make_fixtures.py model --full --config '{"num_hidden_layers": 1, "merge_index": 0,
// "intermediate_hidden_state_indices": [0]}' --out DIR` (docs/MODEL.md §21).
//   MODEL_DIR=DIR node tests/browser/block.mjs          (DTYPE=f16 for the page's default dtype)
// Prints each run's report: the adapter, the dtype, the attention, and per stage the mean and minimum time.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const modelDir = process.env.MODEL_DIR;
assert.ok(modelDir && fs.existsSync(path.join(modelDir, 'model.safetensors')), 'set MODEL_DIR to a directory with model.safetensors');
const dtype = process.env.DTYPE ?? 'f32';
const LONG = 3_600_000;

const server = await serve({ '/': path.join(root, 'dist'), '/block/': modelDir });
const ctx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-block-')), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-dev-shm-usage'],
});
const page = ctx.pages()[0];
page.on('console', (m) => { if (m.type() === 'error') console.log(`  [console.error] ${m.text().slice(0, 300)}`); });
const status = page.getByTestId('bench-status');
try {
  await page.goto(`${server.url}/?model=/block/&dtype=${dtype}&device=webgpu`);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: LONG });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: LONG });
  console.log(await page.getByTestId('model-status').textContent());
  for (const attention of ['fused', 'reference']) {
    await page.getByTestId('bench-attention').selectOption(attention);
    const started = Date.now();
    await page.getByTestId('bench-run').click();
    const watch = setInterval(async () => {
      try { console.log(`  ${attention}, ${((Date.now() - started) / 1000).toFixed(0)} s: ${await status.textContent()}`); } catch { /* closing */ }
    }, 60_000);
    try {
      await status.filter({ hasText: /per forward pass|failed/ }).waitFor({ timeout: LONG });
    } finally {
      clearInterval(watch);
    }
    assert.doesNotMatch(await status.textContent(), /failed/);
    const report = JSON.parse(await page.getByTestId('bench-json').textContent());
    assert.equal(report.attention, attention);
    console.log(`${report.adapter} (${report.dtype}, ${report.attention} attention), ${report.runs} timed passes `
      + `after a warm-up, ${((Date.now() - started) / 1000).toFixed(0)} s in all:`);
    for (const t of [...report.stages, report.forward]) {
      console.log(`  ${t.name.padEnd(10)} mean ${t.mean_s.toFixed(2)} s  min ${t.min_s.toFixed(2)} s  `
        + `${t.gflop.toFixed(1)} GFLOP  ${t.gflop_per_s.toFixed(2)} GFLOP/s`);
    }
  }
} finally {
  await ctx.close();
  server.close();
}
