// Browser tests of click to select (SAM, docs/MODEL.md §25) in headless Chromium (on the CPU in wasm, or
// with BROWSER_DEVICE=webgpu on SwiftShader's WebGPU; in f32) with the small fixture SAM (tests/fixtures/sam/model, random weights): the page offers SAM
// with its size and fetches nothing before the visitor agrees; a click, the keyboard's points and a
// dragged box give masks equal, pixel for pixel, to what `seggpt sam` writes for the same clicks (the
// page names them as the CLI's flags); Accept paints the candidate in the brush colour and Subtract
// removes it; the accepted mask is prompt 1's, and SegGPT's result with it equals `seggpt segment`'s;
// "Use as prompt" puts that result into prompt 2's painter, where a click and Subtract correct it; a
// stored SAM loads on the next visit without a download, and the Benchmark then times SAM as well.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI).
// Run from the repository root: `node tests/browser/sam.mjs`; SAM_ONLY=substring runs some.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { CLI, SUITE_DEVICE, launchBrowser, runTests, serve } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const samFixtures = path.join(root, 'tests/fixtures/sam');
const segmentFixtures = path.join(root, 'tests/fixtures/segment');
const artifacts = path.join(root, 'tests/browser/artifacts');
// f32: the masks are compared with the CLI's (f32 on the CPU) to the pixel.
const PAGE = `/?${SUITE_DEVICE.query}dtype=f32&model=/model/&sam=/sam/`;
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
/** The first brush colour, which a fresh painter has chosen. */
const BRUSH = [255, 0, 0];

async function launch(userDataDir) {
  return launchBrowser({ args: SUITE_DEVICE.args, viewport: { width: 1280, height: 2000 }, userDataDir,
    debugConsole: false });
}

async function openApp(server, page) {
  await page.goto(`${server.url}${PAGE}`);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: 180_000 });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: 180_000 });
}

/** Turns click to select on for prompt 1 with `image`; agrees to SAM's download when asked. */
async function startClicks(page, server, image, { expectOffer }) {
  const since = server.log.length;
  const card = page.locator('.prompt-card').first();
  await card.getByTestId('prompt-image').setInputFiles(image);
  await card.getByTestId('click-select').click();
  const offer = card.locator('[data-testid=sam-offer]:not([hidden])');
  const ready = card.getByTestId('sam-status').filter({ hasText: /^ready \(/ });
  await offer.or(ready).first().waitFor({ timeout: 120_000 }).catch(async (err) => {
    throw new Error(`${err.message}\nSAM status: "${await card.getByTestId('sam-status').textContent()}"; `
      + `error: "${await page.getByTestId('error-text').textContent()}"`);
  });
  const offered = await offer.isVisible();
  assert.equal(offered, expectOffer, expectOffer ? 'SAM is offered before any download' : 'a stored SAM loads without asking');
  let offerText = null;
  if (offered) {
    offerText = await card.getByTestId('sam-offer-text').textContent();
    assert.ok(!server.log.slice(since).includes('/sam/model.safetensors'), 'nothing downloaded before the visitor agrees');
    await card.getByTestId('sam-download').click();
  }
  await ready.waitFor({ timeout: 120_000 });
  console.log(`  ${await card.getByTestId('sam-status').textContent()}`);
  return { card, offerText };
}

/** The pointer at the centre of image pixel (x, y) of the card's painting canvas. */
async function pixelOnScreen(card, x, y) {
  const canvas = card.getByTestId('mask-canvas');
  await canvas.scrollIntoViewIfNeeded();
  const b = await canvas.boundingBox();
  const { w, h } = await canvas.evaluate((c) => ({ w: c.width, h: c.height }));
  return { x: b.x + (x + 0.5) * b.width / w, y: b.y + (y + 0.5) * b.height / h };
}

/** Waits for SAM's answer to the clicks so far; returns them as `seggpt sam`'s flags. */
async function candidate(card, count) {
  await card.getByTestId('sam-status').filter({ hasText: new RegExp(`^candidate \\d of ${count}`) })
    .waitFor({ timeout: 60_000 });
  await card.locator('[data-testid=sam-accept]:not([disabled])').waitFor({ timeout: 10_000 });
  console.log(`  ${await card.getByTestId('sam-status').textContent()}`);
  return (await card.getByTestId('sam-status').getAttribute('data-cli')).split(' ');
}

/** axe-core on the page (the click tools open): no serious or critical violation. */
async function axeCheck(page) {
  // Injected through the driver: the page's CSP rightly refuses inline scripts.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.impact} ${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
  });
  console.log(`  axe with the click tools open: ${violations.join(', ') || 'no violations'}`);
  assert.deepEqual(violations.filter((v) => /^(serious|critical) /.test(v)), [], 'serious or critical accessibility violations');
}

function readPng(file) {
  return PNG.sync.read(fs.readFileSync(file));
}

/** `seggpt sam` on `image` with `flags`, the mask in `colour`. */
function cliSam(image, flags, colour) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-sam-cli-')), 'mask.png');
  execFileSync(CLI, ['sam', '--model', path.join(samFixtures, 'model'), '--image', image, ...flags,
    '--colour', colour.join(','), '--out', out], { stdio: 'ignore' });
  return readPng(out);
}

/** The card's painted mask, as its download link gives it. */
async function paintedMask(page, card) {
  const dl = page.waitForEvent('download');
  await card.getByTestId('download-prompt-mask').click();
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-sam-mask-')), 'painted.png');
  fs.copyFileSync(await (await dl).path(), file);
  return { file, png: readPng(file) };
}

/** Pixels whose RGB differs. */
function differing(a, b) {
  assert.equal(a.width, b.width, 'mask width');
  assert.equal(a.height, b.height, 'mask height');
  let count = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    if (a.data[i] !== b.data[i] || a.data[i + 1] !== b.data[i + 1] || a.data[i + 2] !== b.data[i + 2]) count++;
  }
  return count;
}

function coloured(png) {
  let count = 0;
  for (let i = 0; i < png.data.length; i += 4) if (png.data[i] || png.data[i + 1] || png.data[i + 2]) count++;
  return count;
}

async function testClickAcceptSegment(server) {
  const { ctx, page } = await launch();
  try {
    await openApp(server, page);
    const image = path.join(samFixtures, 'landscape.png');
    const before = server.log.length;
    const { card, offerText } = await startClicks(page, server, image, { expectOffer: true });
    console.log(`  offer: "${offerText}"`);
    assert.match(offerText, /SAM \(.*\/sam\/\): a download of \d+(\.\d)? (KB|MB), once, kept in this browser/);
    const fetched = server.log.slice(before);
    assert.equal(fetched.filter((p) => p === '/sam/model.safetensors').length, 1, 'SAM fetched once, after the click');

    const at = await pixelOnScreen(card, 20, 18);
    await page.mouse.click(at.x, at.y);
    const flags = await candidate(card, 3);
    assert.deepEqual(flags, ['--point', '20,18,1', '--multimask'], 'one click is one point on the object, three candidates');
    await card.screenshot({ path: path.join(artifacts, `sam-candidate.png`) });
    await card.getByTestId('sam-accept').click();
    const painted = await paintedMask(page, card);
    const expected = cliSam(image, flags, BRUSH);
    const diff = differing(painted.png, expected);
    console.log(`  one click: ${coloured(painted.png)} px selected; ${diff} px differ from seggpt sam ${flags.join(' ')}`);
    assert.ok(coloured(expected) > 0, 'the CLI selects something at this point');
    assert.equal(diff, 0, 'the accepted mask is the CLI\'s');
    assert.match(await card.getByTestId('mask-state').textContent(), /painted \(50 x 37\)/);

    // The accepted mask is prompt 1's: SegGPT's result with it is the CLI's with the same mask.
    const target = path.join(segmentFixtures, 'target_a.png');
    await page.getByTestId('target-input').setInputFiles([target]);
    await page.getByTestId('segment').click();
    await page.locator('[data-testid=result][data-state=done]').first().waitFor({ timeout: 180_000 });
    const dl = page.waitForEvent('download');
    await page.getByTestId('result').first().getByTestId('download-mask').click();
    const result = readPng(await (await dl).path());
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-sam-seg-'));
    execFileSync(CLI, ['segment', '--model', path.join(segmentFixtures, 'model'), '--out-dir', out,
      '--prompt', image, painted.file, '--target', target], { stdio: 'ignore' });
    const cli = readPng(path.join(out, fs.readdirSync(out).find((f) => f.startsWith('target_a') && f.endsWith('.png'))));
    let max = 0;
    for (let i = 0; i < cli.data.length; i += 4) {
      for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(cli.data[i + c] - result.data[i + c]));
    }
    console.log(`  SegGPT with the clicked mask vs seggpt segment: max difference ${max}`);
    assert.ok(max <= 1, `differs by ${max}`);
    await page.screenshot({ path: path.join(artifacts, `sam-click.png`), fullPage: true });

    // The result, corrected: "Use as prompt" opens the target with the result's mask in prompt 2's
    // painter, where a click on the target and Subtract take SAM's selection out of it.
    await page.getByTestId('result').first().getByTestId('use-as-prompt').click();
    const cards = page.locator('.prompt-card');
    await cards.nth(1).getByTestId('mask-state').filter({ hasText: 'painted (23 x 82)' }).waitFor({ timeout: 30_000 });
    assert.equal(await cards.count(), 2, 'the result became a second prompt');
    const fixCard = cards.nth(1);
    const start = await paintedMask(page, fixCard);
    assert.equal(differing(start.png, result), 0, 'the painting starts as the result\'s mask');
    await fixCard.getByTestId('click-select').click();
    await fixCard.getByTestId('sam-status').filter({ hasText: /^ready \(/ }).waitFor({ timeout: 120_000 });
    const onTarget = await pixelOnScreen(fixCard, 11, 40);
    await page.mouse.click(onTarget.x, onTarget.y);
    const fixFlags = await candidate(fixCard, 3);
    await fixCard.getByTestId('sam-subtract').click();
    const fixed = await paintedMask(page, fixCard);
    const selected = cliSam(target, fixFlags, [255, 255, 255]);
    const wanted = { width: result.width, height: result.height, data: Buffer.from(result.data) };
    for (let i = 0; i < selected.data.length; i += 4) if (selected.data[i]) wanted.data.fill(0, i, i + 3);
    const fixDiff = differing(fixed.png, wanted);
    console.log(`  result used as prompt 2, ${coloured(selected)} px subtracted at ${fixFlags.join(' ')}: `
      + `${coloured(result)} -> ${coloured(fixed.png)} px; ${fixDiff} px differ from the result minus seggpt sam's mask`);
    assert.ok(coloured(selected) > 0 && coloured(fixed.png) < coloured(result), 'the click took something out');
    assert.equal(fixDiff, 0);
    await fixCard.getByTestId('undo').click();
    assert.equal(differing((await paintedMask(page, fixCard)).png, result), 0, 'Undo goes back to the result');
    await fixCard.screenshot({ path: path.join(artifacts, `sam-result-as-prompt.png`) });
  } finally {
    await ctx.close();
  }
}

async function testKeyboardBoxSubtract(server) {
  // A visit that stores SAM, then a second visit in the same profile.
  const first = await launch();
  try {
    await openApp(server, first.page);
    await startClicks(first.page, server, path.join(samFixtures, 'portrait.png'), { expectOffer: true });
  } finally {
    await first.ctx.close();
  }
  const { ctx, page } = await launch(first.userDataDir);
  try {
    await openApp(server, page);
    const before = server.log.length;
    const image = path.join(samFixtures, 'portrait.png');
    const { card } = await startClicks(page, server, image, { expectOffer: false });
    assert.equal(server.log.slice(before).filter((p) => p === '/sam/model.safetensors').length, 0,
      'the stored SAM is not downloaded again');

    // The keyboard: the crosshair starts at the centre (15, 22) of the 30 x 45 image.
    const canvas = card.getByTestId('mask-canvas');
    await canvas.focus();
    for (const key of ['ArrowRight', 'ArrowRight', 'Shift+ArrowDown', 'Enter']) await page.keyboard.press(key);
    await candidate(card, 3);
    for (const key of ['ArrowLeft', 'ArrowLeft', 'ArrowLeft', 'ArrowLeft', 'Shift+Enter']) await page.keyboard.press(key);
    const keyFlags = await candidate(card, 1);
    await axeCheck(page);
    assert.deepEqual(keyFlags, ['--point', '17,32,1', '--point', '13,32,0'], 'Enter: on the object; Shift+Enter: off it');
    await card.getByTestId('sam-accept').click();
    let painted = await paintedMask(page, card);
    const keyed = cliSam(image, keyFlags, BRUSH);
    let diff = differing(painted.png, keyed);
    console.log(`  keyboard points: ${coloured(painted.png)} px; ${diff} px differ from seggpt sam ${keyFlags.join(' ')}`);
    assert.equal(diff, 0);

    // A dragged box, subtracted from the mask.
    const from = await pixelOnScreen(card, 3, 5);
    const to = await pixelOnScreen(card, 24, 30);
    await page.mouse.move(from.x, from.y);
    await page.mouse.down();
    await page.mouse.move(to.x, to.y, { steps: 8 });
    await page.mouse.up();
    const boxFlags = await candidate(card, 1);
    assert.deepEqual(boxFlags, ['--box', '3,5,24,30'], 'a drag is a box from corner to corner');
    await card.getByTestId('sam-subtract').click();
    painted = await paintedMask(page, card);
    const box = cliSam(image, boxFlags, [255, 255, 255]);
    const expected = { width: keyed.width, height: keyed.height, data: Buffer.from(keyed.data) };
    for (let i = 0; i < box.data.length; i += 4) {
      if (box.data[i]) expected.data.fill(0, i, i + 3);
    }
    diff = differing(painted.png, expected);
    console.log(`  box subtracted: ${coloured(painted.png)} px left; ${diff} px differ from the CLI's masks`);
    assert.equal(diff, 0);
    // Undo brings the keyboard's mask back.
    await card.getByTestId('undo').click();
    assert.equal(differing((await paintedMask(page, card)).png, keyed), 0, 'Undo takes the subtraction back');
    await page.screenshot({ path: path.join(artifacts, `sam-keyboard.png`), fullPage: true });

    // With SAM loaded, the Benchmark times it too: an image embedding and a click.
    await page.getByTestId('bench-run').click();
    await page.getByTestId('bench-status').filter({ hasText: 'per forward pass' }).waitFor({ timeout: 300_000 });
    const json = JSON.parse(await page.getByTestId('bench-json').textContent());
    assert.equal(json.sam.model, 'ViT 32 wide, 4 blocks, 64 px', 'the fixture SAM\'s shape');
    assert.equal(json.sam.runs, json.runs);
    for (const timing of [json.sam.embedding, json.sam.click]) {
      for (const field of ['mean_s', 'min_s']) assert.ok(timing[field] > 0, `${timing.name}.${field}: ${timing[field]}`);
    }
    for (const name of ['sam-embedding', 'sam-click']) {
      const cells = await page.getByTestId(`bench-row-${name}`).locator('td').allTextContents();
      assert.equal(cells[0], name);
      assert.deepEqual(cells.slice(3), ['\u2013', '\u2013'], 'no FLOPs counted for SAM');
    }
    const status = await page.getByTestId('bench-status').textContent();
    console.log(`  benchmark: ${status}`);
    assert.match(status, /Click to select: [\d.]+ s per image, [\d.]+ s per click$/);
  } finally {
    await ctx.close();
  }
}

const tests = [
  ['click to select: offered with its size; one click, Accept equals seggpt sam; SegGPT with it equals seggpt segment', testClickAcceptSegment],
  ['keyboard points and a dragged box equal seggpt sam; Subtract and Undo; axe with the tools open; a stored SAM loads without a download', testKeyboardBoxSubtract],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const server = await serve({
  '/': path.join(root, 'dist'),
  '/model/': path.join(segmentFixtures, 'model'),
  '/sam/': path.join(samFixtures, 'model'),
});
const failed = await runTests(tests, server, 'SAM_ONLY');
await server.close();
process.exit(failed ? 1 : 0);
