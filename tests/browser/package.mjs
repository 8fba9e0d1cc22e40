// Browser tests of the JavaScript package (docs/PACKAGE.md): `scripts/package.sh` makes it from the site
// the tests built; `npm pack` takes exactly its files; the example page (www/package-example/), which uses
// only the package, segments the fixture images in headless Chromium with nothing fetched from another
// origin, and its mask equals `seggpt segment`'s; Blob, ImageBitmap and <img> inputs give the File's mask
// byte for byte; errors are SegGPTErrors with the app's texts; a disposed model refuses work.
// Runs on the CPU in wasm (no WebGPU adapter in this Chromium): the package is the same worker as the page,
// whose WebGPU path e2e.mjs checks.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI).
// Run from the repository root: `node tests/browser/package.mjs`; PACKAGE_ONLY=substring runs some.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { CLI, launchBrowser, runTests, serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');

/** The package, made from the tests' site, and the example beside it: `/seggpt-web/`, `/example/`. */
function makePackage() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-package-'));
  execFileSync('bash', ['scripts/package.sh', '--site', path.join(root, 'dist'), path.join(out, 'seggpt-web')],
    { cwd: root, stdio: 'inherit' });
  fs.cpSync(path.join(root, 'www/package-example'), path.join(out, 'example'), { recursive: true });
  return out;
}

function launch() {
  return launchBrowser();
}

/** `seggpt segment` with prompt0 on target_a: its mask PNG's bytes. */
function cliMask() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-pkg-cli-'));
  execFileSync(CLI, ['segment', '--model', path.join(fixtures, 'model'), '--out-dir', out,
    '--prompt', path.join(fixtures, 'prompt0.png'), path.join(fixtures, 'prompt0_mask.png'),
    '--target', path.join(fixtures, 'target_a.png')], { stdio: 'ignore' });
  return fs.readFileSync(path.join(out, fs.readdirSync(out).find((f) => f.startsWith('target_a') && f.endsWith('.png'))));
}

/** The largest per-channel difference of two PNGs of the same size. */
function maxDiff(aBytes, bBytes) {
  const a = PNG.sync.read(aBytes);
  const b = PNG.sync.read(bBytes);
  assert.deepEqual([a.width, a.height], [b.width, b.height], 'mask size');
  let max = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(a.data[i + c] - b.data[i + c]));
  }
  return max;
}

const tests = [
  ['package: npm pack takes its files; the example page segments as seggpt segment, nothing fetched elsewhere', async (server) => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', path.join(server.dir, 'seggpt-web')],
      { cwd: server.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const files = packed[0].files.map((f) => f.path).sort();
    console.log(`  npm pack: ${packed[0].name}@${packed[0].version}, ${files.length} files, ${(packed[0].size / 1e6).toFixed(1)} MB packed`);
    assert.deepEqual(files, ['README.md', 'index.d.ts', 'index.js', 'package.json', 'seggpt-web.js', 'seggpt-web_bg.wasm',
      'seggpt-worker.js', 'seggpt-worker_bg.wasm', 'worker.js']);
    const { ctx, page, urls } = await launch();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    try {
      await page.goto(`${server.url}/example/?model=/model/`);
      const status = page.locator('#status');
      await status.filter({ hasText: /^ready on / }).waitFor({ timeout: 180_000 });
      console.log(`  ${await status.textContent()}`);
      await page.locator('#prompt-image').setInputFiles(path.join(fixtures, 'prompt0.png'));
      await page.locator('#prompt-mask').setInputFiles(path.join(fixtures, 'prompt0_mask.png'));
      await page.locator('#target').setInputFiles(path.join(fixtures, 'target_a.png'));
      await page.locator('#segment').click();
      await status.filter({ hasText: /^done: 23 x 82 in / }).waitFor({ timeout: 60_000 });
      // Its download link (the page's CSP, `connect-src 'self'`, rightly keeps a fetch from reading blob: URLs).
      const download = page.waitForEvent('download');
      await page.locator('#download').click();
      const png = fs.readFileSync(await (await download).path());
      const diff = maxDiff(png, cliMask());
      console.log(`  ${await status.textContent()}; the example's mask vs seggpt segment: max difference ${diff}`);
      assert.ok(diff <= 1, `differs from the CLI by ${diff} levels`);
      fs.mkdirSync(path.join(root, 'tests/browser/artifacts'), { recursive: true });
      await page.screenshot({ path: path.join(root, 'tests/browser/artifacts/package-example.png'), fullPage: true });
      const elsewhere = urls.filter((u) => !u.startsWith(server.url) && !u.startsWith('blob:') && !u.startsWith('data:'));
      assert.deepEqual(elsewhere, [], 'nothing fetched from another origin');
      assert.ok(urls.some((u) => u.endsWith('/seggpt-web/worker.js')), 'the package\'s own worker ran');
      assert.deepEqual(errors, [], 'no console errors (the example works under the strict CSP)');
    } finally {
      await ctx.close();
    }
  }],

  ['package API: Blob, ImageBitmap and <img> inputs give the File\'s mask; errors are SegGPTErrors; dispose', async (server) => {
    const { ctx, page } = await launch();
    try {
      await page.goto(`${server.url}/example/?model=/nope/`);
      await page.locator('#status').filter({ hasText: /^failed: / }).waitFor({ timeout: 60_000 });
      const failed = await page.locator('#status').textContent();
      console.log(`  an unreachable model: "${failed}"`);
      assert.match(failed, /nope/, 'the message names the URL');
      const outcome = await page.evaluate(async () => {
        const { SegGPT, SegGPTError } = await import('/seggpt-web/index.js');
        const refusal = async (promise) => {
          try {
            await promise;
            return 'resolved';
          } catch (error) {
            return `${error instanceof SegGPTError ? 'SegGPTError' : error.constructor.name}: ${error.message}`;
          }
        };
        const typo = await refusal(SegGPT.load({ model: '/model/', dtyp: 'f32' }));
        const steps = [];
        const model = await SegGPT.load({ model: '/model/', onProgress: ({ text }) => steps.push(text) });
        const blob = async (name) => (await fetch(`/fx/${name}`)).blob();
        const [image, mask, target] = await Promise.all(['prompt0.png', 'prompt0_mask.png', 'target_a.png'].map(blob));
        const bytes = async (result) => [...new Uint8Array(await result.maskPng.arrayBuffer())];
        const prompts = [{ image, mask }];
        const [fromBlob] = await model.segment({ prompts, targets: [target] });
        const bitmap = await createImageBitmap(target, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
        const img = new Image();
        img.src = URL.createObjectURL(target);
        await img.decode();
        const [fromBitmap, fromImg] = await model.segment({ prompts, targets: [bitmap, img] });
        const notImage = await refusal(model.segment({ prompts, targets: [new Blob(['not a png'])] }));
        const noPrompt = await refusal(model.segment({ prompts: [], targets: [target] }));
        const badOption = await refusal(model.segment({ prompts, targets: [target], ensemble: 'best' }));
        model.dispose();
        const disposed = await refusal(model.segment({ prompts, targets: [target] }));
        return {
          typo, steps, adapter: model.adapter, dtype: model.dtype, maxPrompts: model.maxPrompts,
          blob: await bytes(fromBlob), bitmap: await bytes(fromBitmap), img: await bytes(fromImg),
          sizes: [fromBlob.width, fromBlob.height, fromBlob.mask.width, fromBlob.labels.length],
          notImage, noPrompt, badOption, disposed,
        };
      });
      console.log(`  loaded on ${outcome.adapter} (${outcome.dtype}), at most ${outcome.maxPrompts} prompts; progress: ${outcome.steps.length} step(s)`);
      for (const key of ['typo', 'notImage', 'noPrompt', 'badOption', 'disposed']) console.log(`  ${key}: ${outcome[key]}`);
      assert.equal(outcome.typo, 'SegGPTError: SegGPT.load: unknown option `dtyp` (the options are `model`, '
        + '`dtype`, `device`, `cache`, `onProgress`)');
      assert.match(outcome.notImage, /^SegGPTError: target 1: /);
      assert.equal(outcome.noPrompt, 'SegGPTError: segment: give at least one prompt (an image and its mask)');
      assert.match(outcome.badOption, /^SegGPTError: segment: unknown variant `best`/);
      assert.equal(outcome.disposed, 'SegGPTError: the model was disposed');
      assert.deepEqual(outcome.sizes, [23, 82, 23, 23 * 82]);
      const fromBlob = Buffer.from(outcome.blob);
      assert.ok(maxDiff(fromBlob, cliMask()) <= 1, 'a Blob target segments as the CLI does');
      assert.ok(fromBlob.equals(Buffer.from(outcome.bitmap)), 'an ImageBitmap target gives the same mask PNG');
      assert.ok(fromBlob.equals(Buffer.from(outcome.img)), 'an <img> target gives the same mask PNG');
    } finally {
      await ctx.close();
    }
  }],
];

const dir = makePackage();
const server = await serve({ '/': dir, '/model/': path.join(fixtures, 'model'), '/fx/': fixtures });
server.dir = dir;
const failed = await runTests(tests, server, 'PACKAGE_ONLY');
await server.close();
process.exit(failed ? 1 : 0);
