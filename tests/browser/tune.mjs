// Browser tests of tuning a prompt in the page (docs/MODEL.md §19), in headless Chromium (the suites'
// device, server.mjs: the CPU in wasm, or WebGPU) with the small fixture model: the tuned prompt the page lets the user download equals
// what `seggpt tune` writes for the same pairs and settings (the same loop, burn's autodiff in the page
// against the CLI's on the CPU), the page's tuned prompt card segments a target exactly as
// `seggpt segment --tuned-prompt` does, Stop keeps the prompt so far, and a tuned prompt made for
// another model shape is refused in plain words.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI).
// Run from the repository root: `node tests/browser/tune.mjs`; TUNE_ONLY=substring runs some.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI, launchBrowser, runTests, serve, SUITE_DEVICE } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');
const model = path.join(fixtures, 'model');
const otherShapeModel = path.join(root, 'tests/fixtures/models/nonsquare-merge0');
const fx = (name) => path.join(fixtures, name);
const PAIRS = [[fx('prompt0.png'), fx('prompt0_mask.png')], [fx('prompt1.png'), fx('prompt1_mask.png')]];
const artifacts = path.join(root, 'tests/browser/artifacts');
/** The prompt tensors of the page and of the CLI agree to this (max abs difference). */
const TOLERANCE = 1e-4;

async function launch() {
  return launchBrowser({ args: SUITE_DEVICE.args, viewport: { width: 1280, height: 1400 }, debugConsole: false });
}

async function openApp(server, page) {
  await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=/model/`);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: 180_000 });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: 180_000 });
  // The tuning panel knows the GPU once the worker has said what a step takes.
  await page.getByTestId('tune-memory').filter({ hasText: 'needs about' }).waitFor({ timeout: 60_000 });
}

/** Adds the training pairs as files in the tuning panel and sets its fields. */
async function giveTraining(page, pairs, { steps, lr, batch, seed }) {
  const panel = page.getByTestId('tune-panel');
  for (const [i, [image, mask]] of pairs.entries()) {
    await panel.getByTestId('tune-add-pair').click();
    await panel.getByTestId('prompt-image').nth(i).setInputFiles(image);
    await panel.getByTestId('prompt-mask').nth(i).setInputFiles(mask);
  }
  await panel.getByTestId('tune-steps').fill(String(steps));
  if (lr !== undefined) await panel.getByTestId('tune-lr').fill(String(lr));
  if (batch !== undefined) await panel.getByTestId('tune-batch').fill(String(batch));
  if (seed !== undefined) await panel.getByTestId('tune-seed').fill(String(seed));
}

async function download(page, locator) {
  const pending = page.waitForEvent('download', { timeout: 120_000 });
  await locator.click();
  const dl = await pending;
  return { name: dl.suggestedFilename(), bytes: fs.readFileSync(await dl.path()) };
}

/** A safetensors file's f32 tensors and metadata. */
function readSafetensors(bytes) {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const data = bytes.subarray(8 + headerLength);
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    assert.equal(info.dtype, 'F32', name);
    const [start, end] = info.data_offsets;
    const slice = data.subarray(start, end);
    tensors[name] = { shape: info.shape, values: new Float32Array(slice.buffer.slice(slice.byteOffset, slice.byteOffset + slice.length)) };
  }
  return { tensors, metadata: header.__metadata__ ?? {} };
}

/** `seggpt tune` on `pairs`; returns the tuned prompt file's bytes. */
function cliTune(modelDir, pairs, args) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-tune-cli-')), 'prompt.safetensors');
  execFileSync(CLI, ['tune', '--model', modelDir, ...pairs.flatMap((p) => ['--pair', ...p]), '--out', out, ...args],
    { stdio: 'ignore' });
  return fs.readFileSync(out);
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

async function testTuneEqualsCli(server) {
  const { ctx, page } = await launch();
  try {
    await openApp(server, page);
    const panel = page.getByTestId('tune-panel');
    // The fields start at `seggpt tune`'s defaults.
    const defaults = {
      lr: await panel.getByTestId('tune-lr').inputValue(),
      batch: await panel.getByTestId('tune-batch').inputValue(),
      seed: await panel.getByTestId('tune-seed').inputValue(),
      weightDecay: await panel.getByTestId('tune-weight-decay').inputValue(),
    };
    console.log(`  defaults in the page: ${JSON.stringify(defaults)}`);
    assert.deepEqual(defaults, { lr: '0.1', batch: '2', seed: '0', weightDecay: '0.01' });
    await giveTraining(page, PAIRS, { steps: 3 });
    await panel.getByTestId('tune-start').click();
    await panel.getByTestId('tune-status').filter({ hasText: 'done after 3 step' }).waitFor({ timeout: 300_000 });
    await panel.screenshot({ path: path.join(artifacts, 'tune-panel.png') });
    const plot = await page.getByTestId('tune-plot').getAttribute('aria-label');
    assert.match(plot, /at step 3/);

    const { name, bytes } = await download(page, panel.getByTestId('tune-download'));
    assert.equal(name, 'tuned-prompt.safetensors');
    const inPage = readSafetensors(bytes);
    const cli = readSafetensors(cliTune(model, PAIRS, ['--steps', '3', '--lr', '0.1', '--batch', '2', '--seed', '0']));
    for (const tensor of ['prompt_pixel_values', 'prompt_masks']) {
      assert.deepEqual(inPage.tensors[tensor].shape, cli.tensors[tensor].shape, tensor);
      const diff = maxAbsDiff(inPage.tensors[tensor].values, cli.tensors[tensor].values);
      console.log(`  ${tensor}: page vs seggpt tune, max abs difference ${diff.toExponential(2)}`);
      assert.ok(diff <= TOLERANCE, `${tensor} differs by ${diff}`);
    }
    for (const key of ['config_hash', 'image_size', 'steps', 'lr', 'weight_decay', 'batch', 'seed', 'embedding_type']) {
      assert.equal(inPage.metadata[key], cli.metadata[key], `metadata ${key}`);
    }
    const pageLosses = JSON.parse(inPage.metadata.train_losses);
    const cliLosses = JSON.parse(cli.metadata.train_losses);
    console.log(`  losses: page ${pageLosses.map((l) => l.toFixed(5))}, CLI ${cliLosses.map((l) => l.toFixed(5))}`);
    assert.ok(maxAbsDiff(pageLosses, cliLosses) <= TOLERANCE * Math.max(1, ...cliLosses));

    // The tuned prompt became a prompt card with its previews.
    const card = page.getByTestId('tuned-card');
    await card.getByTestId('tuned-state').filter({ hasText: 'tuned prompt, 3 steps' }).waitFor({ timeout: 60_000 });
    for (const preview of ['tuned-image', 'tuned-mask']) {
      const width = await card.getByTestId(preview).evaluate((img) => img.naturalWidth);
      assert.equal(width, 16, `${preview} is the half canvas, 16 px wide`);
    }

    // Segmenting with the tuned prompt alone equals `seggpt segment --tuned-prompt`.
    const tuned = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-tuned-')), 'tuned-prompt.safetensors');
    fs.writeFileSync(tuned, bytes);
    await page.getByTestId('target-input').setInputFiles(fx('target_a.png'));
    await page.getByTestId('segment').click();
    const result = page.getByTestId('result').first();
    await result.getByTestId('download-mask').waitFor({ timeout: 120_000 });
    const mask = await download(page, result.getByTestId('download-mask'));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-tuned-out-'));
    execFileSync(CLI, ['segment', '--model', model, '--tuned-prompt', tuned, '--target', fx('target_a.png'), '--out-dir', out],
      { stdio: 'ignore' });
    const expected = fs.readFileSync(path.join(out, 'target_a.png.mask.png'));
    assert.ok(mask.bytes.equals(expected), 'the page\'s mask with the tuned prompt differs from seggpt segment --tuned-prompt');
    console.log(`  target_a with the tuned prompt: mask PNG equal to seggpt segment --tuned-prompt (${expected.length} bytes)`);

    // The spatial ensemble cannot take a tuned prompt: said in plain words.
    await page.getByTestId('ensemble').selectOption('spatial');
    await page.getByTestId('segment').click();
    const error = page.getByTestId('error-text');
    await error.filter({ hasText: 'spatial ensemble' }).waitFor({ timeout: 60_000 });
    console.log(`  spatial + tuned: "${await error.textContent()}"`);
  } finally {
    await ctx.close();
  }
}

async function testStop(server) {
  const { ctx, page } = await launch();
  try {
    await openApp(server, page);
    const panel = page.getByTestId('tune-panel');
    // More steps than any device here runs before Stop lands (on the CPU a step of the small model takes
    // milliseconds).
    const STEPS = 100_000;
    await giveTraining(page, PAIRS, { steps: STEPS });
    await panel.getByTestId('tune-start').click();
    const status = panel.getByTestId('tune-status');
    await status.filter({ hasText: new RegExp(`step [2-9]\\d* of ${STEPS}`) }).waitFor({ timeout: 300_000 });
    await panel.getByTestId('tune-stop').click();
    await status.filter({ hasText: 'stopped after' }).waitFor({ timeout: 120_000 });
    const steps = Number(/stopped after (\d+) step/.exec(await status.textContent())[1]);
    console.log(`  stopped after ${steps} of ${STEPS} steps`);
    assert.ok(steps >= 2 && steps < STEPS, `stopped at ${steps}`);
    const { bytes } = await download(page, panel.getByTestId('tune-download'));
    const file = readSafetensors(bytes);
    assert.equal(file.metadata.steps, String(steps));
    assert.equal(JSON.parse(file.metadata.train_losses).length, steps);
    // The worker is free again: the tuned prompt's card is checked.
    await page.getByTestId('tuned-state').filter({ hasText: `${steps} steps` }).waitFor({ timeout: 60_000 });
  } finally {
    await ctx.close();
  }
}

async function testOtherShapeRefused(server) {
  const { ctx, page } = await launch();
  try {
    await openApp(server, page);
    // A prompt tuned for a model with a 40 x 16 canvas; the page's model has 32 x 16.
    const bytes = cliTune(otherShapeModel, [PAIRS[0]], ['--steps', '1', '--batch', '1']);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-other-')), 'other.safetensors');
    fs.writeFileSync(file, bytes);
    await page.getByTestId('tuned-input').setInputFiles(file);
    const error = page.getByTestId('error-text');
    await error.filter({ hasText: 'another model shape' }).waitFor({ timeout: 60_000 });
    const text = await error.textContent();
    console.log(`  "${text}"`);
    assert.match(text, /other\.safetensors/);
    assert.equal(await page.getByTestId('tuned-card').count(), 0, 'a refused prompt gets no card');
  } finally {
    await ctx.close();
  }
}

const tests = [
  ['3 steps in the page = seggpt tune (1e-4); the tuned card segments like seggpt segment --tuned-prompt; spatial refused', testTuneEqualsCli],
  ['Stop: after the current step, the prompt so far downloadable', testStop],
  ['a tuned prompt for another model shape is refused in plain words', testOtherShapeRefused],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const server = await serve({ '/': path.join(root, 'dist'), '/model/': model });
const failed = await runTests(tests, server, 'TUNE_ONLY');
await server.close();
process.exit(failed ? 1 : 0);
