// Manual check at the released model's size (not part of the test command: it needs a 1.48 GB
// checkpoint, e.g. a random ViT-L from `scripts/make_fixtures.py model --full --out DIR`):
// downloads it into the page through OPFS, loads it onto WebGPU, reloads it from the cache, and
// (unless SEGMENT=0) segments one fixture target and compares the mask with the CLI's. DEVICE=cpu does the
// same on the CPU in the page (WebGPU off in Chromium, `?device=cpu`).
//   MODEL_DIR=/path/to/dir [DEVICE=cpu] node tests/browser/fullsize.mjs
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { CLI, serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const modelDir = process.env.MODEL_DIR;
assert.ok(modelDir && fs.existsSync(path.join(modelDir, 'model.safetensors')), 'set MODEL_DIR to a directory with model.safetensors');
const fixtures = path.join(root, 'tests/fixtures/segment');
const onCpu = process.env.DEVICE === 'cpu';
const server = await serve({ '/': path.join(root, 'dist'), '/full/': modelDir });
const ctx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-full-')), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, acceptDownloads: true,
  args: ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', ...(onCpu ? [] : ['--enable-unsafe-webgpu'])],
});
const page = ctx.pages()[0];
page.on('console', (m) => { if (m.type() === 'error') console.log(`  [console.error] ${m.text().slice(0, 300)}`); });
const status = page.getByTestId('model-status');
const seconds = (t) => ((Date.now() - t) / 1000).toFixed(1);
const watch = setInterval(async () => {
  try { console.log(`  ${await status.textContent()}`); } catch { /* page navigating */ }
}, 15_000);
try {
  let t = Date.now();
  await page.goto(`${server.url}/?model=/full/&device=${onCpu ? 'cpu' : 'webgpu'}`);
  const load = page.getByTestId('load-model');
  await load.or(status.filter({ hasText: 'ready' })).first().waitFor({ timeout: 1_800_000 });
  if (await load.isVisible()) await load.click();
  await status.filter({ hasText: 'ready' }).waitFor({ timeout: 1_800_000 });
  console.log(`first load (download to OPFS + upload to the device): ${seconds(t)} s; ${await status.textContent()}; `
    + `${await page.getByTestId('model-note').textContent()}`);
  t = Date.now();
  await page.reload();
  await status.filter({ hasText: 'ready' }).waitFor({ timeout: 1_800_000 });
  console.log(`reload (from OPFS + upload to the device): ${seconds(t)} s; ${await page.getByTestId('model-note').textContent()}`);
  if (process.env.SEGMENT !== '0') {
    await page.getByTestId('prompt-image').setInputFiles(path.join(fixtures, 'prompt0.png'));
    await page.getByTestId('prompt-mask').setInputFiles(path.join(fixtures, 'prompt0_mask.png'));
    await page.getByTestId('target-input').setInputFiles([path.join(fixtures, 'target_a.png')]);
    t = Date.now();
    await page.getByTestId('segment').click();
    const result = page.getByTestId('result').first();
    await page.locator('[data-testid=result][data-state=done], [data-testid=result][data-state=error]').first()
      .waitFor({ timeout: 1_800_000 });
    assert.equal(await result.getAttribute('data-state'), 'done', await page.getByTestId('error').textContent());
    console.log(`click to mask, full-size model: ${seconds(t)} s`);
    const download = page.waitForEvent('download');
    await result.getByTestId('download-mask').click();
    const got = PNG.sync.read(fs.readFileSync(await (await download).path()));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-full-cli-'));
    execFileSync(CLI, ['segment',
      '--model', modelDir, '--prompt', path.join(fixtures, 'prompt0.png'), path.join(fixtures, 'prompt0_mask.png'),
      '--target', path.join(fixtures, 'target_a.png'), '--out-dir', out], { stdio: 'ignore' });
    const [written] = fs.readdirSync(out).filter((name) => name.endsWith('.mask.png'));
    const want = PNG.sync.read(fs.readFileSync(path.join(out, written)));
    let max = 0, over1 = 0;
    for (let i = 0; i < want.data.length; i += 4) {
      for (let c = 0; c < 3; c++) {
        const d = Math.abs(got.data[i + c] - want.data[i + c]);
        max = Math.max(max, d);
        if (d > 1) over1++;
      }
    }
    console.log(`full-size mask vs CLI: max difference ${max} level(s), ${over1} channel values differ by more than 1`);
  }
} finally {
  clearInterval(watch);
  await ctx.close();
  await server.close();
}
