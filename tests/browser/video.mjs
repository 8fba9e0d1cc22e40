// Browser tests of the Video panel and the Live camera mode, in headless Chromium (on the CPU in wasm, or
// SwiftShader's WebGPU with BROWSER_DEVICE=webgpu; the buffer-limit test always on WebGPU) with the small fixture model. Every mask the page lets the user download is compared
// with what `seggpt video` writes for the same frames: for image files those files, for a video the
// frames the page decoded (its "Frames (zip)" download, decoded again the same exact way). The clip
// (`tests/fixtures/clip/`, made by `scripts/make_video_clip.py`) shows a red square 4 px further right
// in every frame, so each decoded frame tells which frame it is: none skipped, none repeated.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI).
// Run from the repository root: `node tests/browser/video.mjs`; VIDEO_ONLY=substring runs some.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { CLI, launchBrowser, runTests, serve, SUITE_DEVICE, WEBGPU, WEBGPU_ARGS } from './server.mjs';
import { unzipStored } from './zip.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const model = path.join(root, 'tests/fixtures/segment/model');
const clip = path.join(root, 'tests/fixtures/clip');
const frameFiles = fs.readdirSync(path.join(clip, 'frames')).sort().map((f) => path.join(clip, 'frames', f));
const firstMask = path.join(clip, 'first_mask.png');
const artifacts = path.join(root, 'tests/browser/artifacts');
const AUTOPLAY = ['--autoplay-policy=no-user-gesture-required'];
/** The clip's square: where frame i has it (scripts/make_video_clip.py). */
const squareLeft = (i) => 4 + 4 * i;
const SQUARE = 14;

/** `device`: SUITE_DEVICE, or { args: WEBGPU_ARGS, query: WEBGPU } for a test about the GPU itself. */
async function launch(extraArgs = [], device = SUITE_DEVICE) {
  return launchBrowser({ args: [...device.args, ...AUTOPLAY, ...extraArgs], viewport: { width: 1280, height: 1400 }, debugConsole: false });
}

function assertLoopback(urls, base) {
  const outside = urls.filter((u) => !(u.startsWith(base + '/') || u.startsWith('blob:') || u.startsWith('data:')));
  assert.deepEqual(outside, [], 'requests that left 127.0.0.1');
}

async function openApp(server, page, device = SUITE_DEVICE) {
  await page.goto(`${server.url}/?${device.query}model=/model/`);
  const load = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await load.or(ready).first().waitFor({ timeout: 180_000 });
  if (await load.isVisible()) await load.click();
  await ready.waitFor({ timeout: 180_000 });
}

async function download(page, testid) {
  const pending = page.waitForEvent('download', { timeout: 120_000 });
  await page.getByTestId(testid).click();
  const dl = await pending;
  return { name: dl.suggestedFilename(), bytes: fs.readFileSync(await dl.path()) };
}

/** Where `seggpt video --out-dir out` writes the mask of frame file `stem`. */
const cliMaskPath = (out, stem) => path.join(out, `${stem}.mask.png`);

/** Runs `seggpt video` on a folder of frames with one prompt; returns its output folder. */
function cliVideo(framesDir, prompt, mask, extra) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-video-cli-'));
  execFileSync(CLI, ['video', '--model', model, '--frames', framesDir, '--prompt', prompt, mask, '--out-dir', out, ...extra],
    { stdio: 'ignore' });
  return out;
}

/** Max per-channel difference between a PNG buffer and a PNG file. */
function maxDiff(bytes, file) {
  const a = PNG.sync.read(bytes);
  const b = PNG.sync.read(fs.readFileSync(file));
  assert.equal(a.width, b.width, 'mask width');
  assert.equal(a.height, b.height, 'mask height');
  let max = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(a.data[i + c] - b.data[i + c]));
  }
  return max;
}

/** Every mask of the zip equals the CLI's (within 1 level); the names are the CLI's. */
function assertMasksEqualCli(zipBytes, out, stems) {
  const entries = unzipStored(zipBytes);
  assert.deepEqual(entries.map(([n]) => n), stems.map((s) => `${s}.mask.png`), 'one mask per frame, named as the CLI');
  let worst = 0;
  for (const [name, bytes] of entries) {
    const diff = maxDiff(bytes, cliMaskPath(out, name.replace(/\.mask\.png$/, '')));
    worst = Math.max(worst, diff);
    assert.ok(diff <= 1, `${name} differs from the CLI by ${diff} levels`);
  }
  return worst;
}

/** The left edge of the red square in a decoded frame (PNG bytes): the frame's index. */
function squareIndex(bytes) {
  const png = PNG.sync.read(bytes);
  let sum = 0;
  let count = 0;
  for (let y = 0; y < png.height; y++) {
    for (let x = 0; x < png.width; x++) {
      const i = (y * png.width + x) * 4;
      if (png.data[i] > 150 && png.data[i + 1] < 90 && png.data[i + 2] < 90) { sum += x; count++; }
    }
  }
  assert.ok(count > SQUARE * SQUARE / 2, 'the square is visible');
  const left = sum / count - (SQUARE - 1) / 2;
  return Math.round((left - 4) / 4);
}

/** Sets a range input as dragging it would (Playwright cannot `fill` a range). */
async function setRange(page, testid, value) {
  await page.getByTestId(testid).evaluate((input, v) => {
    input.value = v;
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }, String(value));
}

async function givePrompt(page, image) {
  await page.getByTestId('prompt-image').setInputFiles(image);
  await page.getByTestId('prompt-mask').setInputFiles(firstMask);
}

/** Clicks Propagate and waits for `done`; returns the progress lines seen on the way. */
async function propagate(page, { k = 2, rule = 'binary', step = 1 } = {}) {
  await page.getByTestId('video-previous-frames').fill(String(k));
  await page.getByTestId('video-propagate').selectOption(rule);
  await page.getByTestId('video-step').fill(String(step));
  const seen = new Set();
  const status = page.getByTestId('video-status');
  await page.getByTestId('video-run').click();
  const deadline = Date.now() + 300_000;
  for (;;) {
    const text = await status.textContent();
    seen.add(text);
    if (text.startsWith('done')) break;
    assert.ok(!text.startsWith('stopped'), `the propagation stopped: ${text}`);
    assert.ok(Date.now() < deadline, 'the propagation did not finish');
    await page.waitForTimeout(100);
  }
  return [...seen];
}

async function testImageFrames(server) {
  const { ctx, page, urls } = await launch();
  try {
    await openApp(server, page);
    const hint = await page.getByTestId('video-previous-hint').textContent();
    console.log(`  K hint: "${hint}"`);
    assert.match(hint, /^this device fits up to \d+ previous frames beside 1 prompt/);
    await givePrompt(page, frameFiles[0]);
    await page.getByTestId('video-input').setInputFiles(frameFiles);
    await page.getByTestId('video-info').filter({ hasText: '12 frames' }).waitFor();
    const seen = await propagate(page, { k: 2 });
    const progress = seen.filter((t) => /^frame \d+ of 12, [\d.]+ frames\/s, about \d+ s left$/.test(t));
    console.log(`  progress lines: ${seen.length} distinct, e.g. "${progress[0]}"; end: "${seen.at(-1)}"`);
    assert.ok(progress.length >= 3, 'progress shows frame i of n, frames/s and time left');
    assert.equal(await page.getByTestId('video-canvas').getAttribute('data-masked'), 'true', 'the preview shows a mask');
    await page.screenshot({ path: path.join(artifacts, 'video-panel.png'), fullPage: true });
    const masks = await download(page, 'video-download-masks');
    assert.equal(masks.name, 'frames.masks.zip');
    const stems = frameFiles.map((f) => path.basename(f, '.png'));
    const out = cliVideo(path.join(clip, 'frames'), frameFiles[0], firstMask, ['--num-frames', '2']);
    const worst = assertMasksEqualCli(masks.bytes, out, stems);
    console.log(`  12 masks (K = 2) vs seggpt video: max difference ${worst}`);
    // Colour rule and every 3rd frame: 4 masks, equal to the CLI on those frames.
    const seen3 = await propagate(page, { k: 1, rule: 'colour', step: 3 });
    assert.ok(seen3.at(-1).startsWith('done: 4 frames'), seen3.at(-1));
    const some = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-every3-'));
    const picked = [0, 3, 6, 9].map((i) => frameFiles[i]);
    for (const f of picked) fs.copyFileSync(f, path.join(some, path.basename(f)));
    const out3 = cliVideo(some, frameFiles[0], firstMask, ['--num-frames', '1', '--propagate', 'colour']);
    const worst3 = assertMasksEqualCli((await download(page, 'video-download-masks')).bytes, out3,
      picked.map((f) => path.basename(f, '.png')));
    console.log(`  every 3rd frame, colour rule, K = 1: 4 masks, max difference ${worst3}`);
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

async function testVideoFile(server, file) {
  const { ctx, page, urls } = await launch();
  try {
    await openApp(server, page);
    const type = file.endsWith('.mp4') ? 'video/mp4; codecs="avc1.64000a"' : 'video/webm; codecs="vp9"';
    const playable = await page.evaluate((t) => document.createElement('video').canPlayType(t), type);
    if (!playable) {
      console.log(`  this Chromium does not play ${type}: skipped`);
      return;
    }
    await page.getByTestId('video-input').setInputFiles(file);
    const info = page.getByTestId('video-info');
    await info.filter({ hasText: 'frames' }).waitFor({ timeout: 60_000 });
    console.log(`  ${await info.textContent()}`);
    assert.match(await info.textContent(), /: 12 frames, 64 x 48, 10\.000 frames\/s/);
    // Scrub to frame 0 and make it prompt 1; its mask from a file.
    await setRange(page, 'video-scrub', 0);
    await page.getByTestId('video-frame').filter({ hasText: 'frame 1 of 12' }).waitFor();
    await page.locator('[data-testid=video-canvas][data-frame="0"]').waitFor();
    await page.getByTestId('video-use-frame').click();
    await page.getByTestId('prompt-thumb').and(page.locator('[alt*="clip-00000.png"]')).waitFor();
    await page.getByTestId('prompt-mask').setInputFiles(firstMask);
    await propagate(page, { k: 2 });
    // The frames the page decoded: each shows its own square, in order.
    const frames = await download(page, 'video-download-frames');
    const entries = unzipStored(frames.bytes);
    assert.deepEqual(entries.map(([n]) => n), frameFiles.map((f) => path.basename(f)), 'frames named 00000.png ...');
    const indices = entries.map(([, bytes]) => squareIndex(bytes));
    console.log(`  decoded frames show squares ${indices.join(' ')}`);
    assert.deepEqual(indices, [...Array(12).keys()], 'every frame decoded once, in order');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-decoded-'));
    for (const [name, bytes] of entries) fs.writeFileSync(path.join(dir, name), bytes);
    // The prompt image was the page's frame 0 too (prompt 1 is that frame as a PNG).
    const out = cliVideo(dir, path.join(dir, '00000.png'), firstMask, ['--num-frames', '2']);
    const masks = await download(page, 'video-download-masks');
    assert.equal(masks.name, `${path.basename(file, path.extname(file))}.masks.zip`);
    const worst = assertMasksEqualCli(masks.bytes, out, entries.map(([n]) => n.replace(/\.png$/, '')));
    console.log(`  masks vs seggpt video on the decoded frames: max difference ${worst}`);
    if (file.endsWith('.mp4')) return;

    // Playback: frames in order, each with its mask.
    await page.getByTestId('video-play').click();
    const shown = [];
    for (let i = 0; i < 40 && (await page.getByTestId('video-play').textContent()) === 'Pause'; i++) {
      shown.push(Number(await page.getByTestId('video-canvas').getAttribute('data-frame')));
      await page.waitForTimeout(40);
    }
    const distinct = shown.filter((f, i) => i === 0 || f !== shown[i - 1]);
    console.log(`  playback showed frames ${distinct.join(' ')}`);
    assert.ok(distinct.length >= 6, 'playback goes through the frames');
    assert.ok(distinct.every((f, i) => i === 0 || f > distinct[i - 1]), 'in order');
    // Opacity 1 with the colour hidden: the canvas is the frame itself; shown, the mask darkens it.
    const canvasSum = () => page.evaluate(() => {
      const c = document.querySelector('[data-testid=video-canvas]');
      return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.reduce((a, b) => a + b, 0);
    });
    await setRange(page, 'video-opacity', 1);
    const masked = await canvasSum();
    await page.getByTestId('video-colour-toggle').first().uncheck();
    const unmasked = await canvasSum();
    console.log(`  canvas brightness, mask shown vs hidden: ${masked} < ${unmasked}`);
    assert.ok(masked < unmasked, 'the colour toggle hides the mask');
    await page.getByTestId('video-colour-toggle').first().check();
    await setRange(page, 'video-opacity', 0.6);
    // The overlay video: a WebM recorded from the canvas while it plays.
    const overlay = await download(page, 'video-download-overlay');
    console.log(`  overlay video: ${overlay.name}, ${overlay.bytes.length} bytes`);
    assert.equal(overlay.name, 'clip.overlay.webm');
    assert.equal(overlay.bytes.readUInt32BE(0), 0x1a45dfa3, 'a WebM (EBML) file');
    assert.ok(overlay.bytes.length > 1000, 'with frames in it');
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

async function testStop(server) {
  const { ctx, page } = await launch();
  try {
    await openApp(server, page);
    await givePrompt(page, frameFiles[0]);
    await page.getByTestId('video-input').setInputFiles(frameFiles);
    await page.getByTestId('video-info').filter({ hasText: '12 frames' }).waitFor();
    await page.getByTestId('video-previous-frames').fill('0');
    await page.getByTestId('video-run').click();
    await page.getByTestId('video-status').filter({ hasText: /^frame 2 of 12/ }).waitFor({ timeout: 120_000 });
    await page.getByTestId('video-stop').click();
    const text = await page.getByTestId('video-status').textContent();
    console.log(`  after Stop: "${text}"`);
    const done = Number(/stopped after (\d+) frame/.exec(text)?.[1]);
    assert.ok(done >= 2 && done < 12, 'stopped part-way');
    assert.equal(await page.getByTestId('video-stop').isVisible(), false);
    const masks = unzipStored((await download(page, 'video-download-masks')).bytes);
    assert.equal(masks.length, done, 'the masks made before Stop');
    // The worker is free again: a new propagation runs to the end.
    await propagate(page, { k: 0 });
  } finally {
    await ctx.close();
  }
}

async function testLive(server) {
  const y4m = path.join(clip, 'camera.y4m');
  const { ctx, page, urls } = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    `--use-file-for-fake-video-capture=${y4m}`]);
  try {
    // Every camera stream the page opens, to check that Stop ends its tracks.
    await ctx.addInitScript(() => {
      window.__streams = [];
      const get = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = async (c) => { const s = await get(c); window.__streams.push(s); return s; };
    });
    await openApp(server, page);
    const before = server.log.length;
    await page.getByTestId('live-start').click();
    const live = page.getByTestId('live');
    await page.locator('[data-testid=live][data-camera=on]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid=live-video]').videoWidth > 0);
    await page.getByTestId('live-capture').click();
    await page.getByTestId('prompt-thumb').and(page.locator('[alt*="camera-frame.png"]')).waitFor();
    await page.getByTestId('prompt-mask').setInputFiles(firstMask);
    await page.getByTestId('video-previous-frames').fill('1');
    await page.getByTestId('live-run').click();
    // Steady state: frames keep coming, the rate is shown.
    // At least 6 (on the CPU frames come faster than the page's animation frames, so "6" itself may be
    // shown too briefly to be seen).
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=live]').dataset.frames) >= 6,
      null, { timeout: 120_000 });
    const status = await page.getByTestId('live-status').textContent();
    const fps = Number(await live.getAttribute('data-fps'));
    console.log(`  live: "${status}" (${fps.toFixed(2)} frames/s on ${SUITE_DEVICE.name}, small model)`);
    assert.match(status, /^live: [\d.]+ frames\/s \(\d+ frames\)$/);
    assert.ok(fps > 0, 'a measured rate');
    await page.screenshot({ path: path.join(artifacts, 'video-live.png'), fullPage: true });
    await page.getByTestId('live-stop').click();
    await page.locator('[data-testid=live][data-camera=off]').waitFor();
    const tracks = await page.evaluate(() => window.__streams.flatMap((s) => s.getTracks().map((t) => t.readyState)));
    console.log(`  after Stop: camera tracks ${tracks.join(', ')}`);
    assert.ok(tracks.length > 0 && tracks.every((t) => t === 'ended'), 'Stop releases the camera');
    const framesAtStop = Number(await live.getAttribute('data-frames'));
    await page.waitForTimeout(1500);
    assert.ok(Number(await live.getAttribute('data-frames')) <= framesAtStop + 1, 'no frames after Stop');
    // Nothing was sent anywhere: no request while the camera ran (but the browser's own update check
    // of the service worker), and none off loopback.
    assert.deepEqual(server.log.slice(before).filter((p) => p !== '/sw.js'), [], 'no request during the Live mode');
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

async function testCameraDenied(server) {
  const { ctx, page } = await launch(['--use-fake-device-for-media-stream', '--deny-permission-prompts']);
  try {
    await openApp(server, page);
    await page.getByTestId('live-start').click();
    const status = page.getByTestId('live-status').filter({ hasText: /blocked|No camera/ });
    await status.waitFor({ timeout: 30_000 });
    const text = await status.textContent();
    console.log(`  camera denied: "${text}"`);
    assert.match(text, /The camera is blocked for this page: allow it in the browser's site settings/);
    assert.match(await page.getByTestId('error-text').textContent(), /camera is blocked/);
    assert.equal(await page.locator('[data-testid=live][data-camera=off]').count(), 1);
  } finally {
    await ctx.close();
  }
}

async function testTooManyPreviousFrames(server) {
  // The buffer limit is WebGPU's: this test runs there whatever the suite's device.
  const webgpu = { args: WEBGPU_ARGS, query: WEBGPU };
  const { ctx, page } = await launch([], webgpu);
  try {
    await openApp(server, page, webgpu);
    const hint = await page.getByTestId('video-previous-hint').textContent();
    const fits = Number(/up to (\d+) previous frames/.exec(hint)[1]);
    await givePrompt(page, frameFiles[0]);
    await page.getByTestId('video-input').setInputFiles(frameFiles.slice(0, 2));
    await page.getByTestId('video-info').filter({ hasText: '2 frames' }).waitFor();
    await page.getByTestId('video-previous-frames').fill(String(fits + 1));
    await page.getByTestId('video-run').click();
    const error = page.getByTestId('error-text');
    await error.filter({ hasText: 'previous frames' }).waitFor({ timeout: 60_000 });
    console.log(`  K = ${fits + 1}: "${await error.textContent()}"`);
    assert.match(await error.textContent(), new RegExp(`at most ${fits} previous frames beside 1 prompt`));
  } finally {
    await ctx.close();
  }
}

const tests = [
  ['frames as images: progress, preview, masks zip equal to seggpt video (K = 2; every 3rd frame, colour rule)', testImageFrames],
  ['WebM clip: decoded exactly (every frame once, in order), masks equal seggpt video on the decoded frames; playback, toggles, overlay WebM', (s) => testVideoFile(s, path.join(clip, 'clip.webm'))],
  ['MP4 clip (when this Chromium plays H.264): decoded exactly, masks equal seggpt video', (s) => testVideoFile(s, path.join(clip, 'clip.mp4'))],
  ['Stop: part-way, the masks so far, the worker free again', testStop],
  ['Live camera (fake device): steady state, frames/s shown, Stop releases the camera, nothing sent', testLive],
  ['Live camera denied: the message says how to allow it', testCameraDenied],
  ['K beyond the GPU buffer limit: the page says how many previous frames fit', testTooManyPreviousFrames],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const server = await serve({ '/': path.join(root, 'dist'), '/model/': model });
const failed = await runTests(tests, server, 'VIDEO_ONLY');
await server.close();
process.exit(failed ? 1 : 0);
