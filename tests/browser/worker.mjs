// Browser tests of the worker side, in headless Chromium (Debian `chromium`; the suites' device, server.mjs): the
// model copy in browser storage is checked with the server (ETag / Last-Modified) and downloaded again when
// it changed or is damaged, used offline with a note saying so; messages are handled in order (a cache clear
// posted during a download waits for it); the number of classes in the protocol gives the CLI's
// `--num-labels` colours; a `?model=` directory URL with a query string; plain error texts for a refused
// origin and an unreachable model. Every request must stay on loopback.
//
// Needs: `trunk build --release --features test-hooks` (dist/), `cargo build --release` (the CLI), `npm ci`.
// Run from the repository root: `node tests/browser/worker.mjs`. Exit code 0 = pass.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { CLI, launchBrowser, runTests, serve, SUITE_DEVICE } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');
const LONG = 180_000;
const fx = (name) => path.join(fixtures, name);

/** A fresh browser profile. Each worker the page starts is recorded as `window.__worker`, the `kind`
 * of every message it posts in `window.__fromWorker` and each result (its `msg` and mask PNG bytes) in
 * `window.__results`, so a test can post to the worker itself and check its answers. */
async function launch() {
  const recordWorker = () => {
    window.__fromWorker = [];
    window.__results = [];
    const PageWorker = window.Worker;
    window.Worker = class extends PageWorker {
      constructor(...args) {
        super(...args);
        window.__worker = this;
        this.addEventListener('message', (e) => {
          window.__fromWorker.push(e.data?.msg?.kind);
          if (e.data?.msg?.kind === 'result') {
            window.__results.push({ msg: e.data.msg, png: Array.from(new Uint8Array(e.data.mask_png)) });
          }
        });
      }
    };
  };
  return launchBrowser({ args: SUITE_DEVICE.args, initScripts: [recordWorker] });
}

function assertLoopback(urls, base) {
  const outside = urls.filter((u) => !(u.startsWith(base + '/') || u.startsWith('blob:') || u.startsWith('data:')));
  assert.deepEqual(outside, [], 'requests that left 127.0.0.1');
}

const status = (page) => page.getByTestId('model-status');
const note = async (page) => (await page.getByTestId('model-note').textContent()).trim();
const errorText = async (page) => (await page.getByTestId('error').textContent()).trim();

/** Waits until the model is ready, the page asks before downloading (then clicks `load-model`) or an
 * error shows; returns which. */
async function settle(page) {
  const ready = status(page).filter({ hasText: 'ready' });
  const ask = page.getByTestId('load-model');
  const error = page.getByTestId('error');
  // Only visible ones: `first()` of a union is the first match in document order, and the hidden
  // consent button would otherwise be waited on for ever.
  const shown = (locator) => locator.filter({ visible: true });
  await ready.or(shown(ask)).or(shown(error)).first().waitFor({ timeout: LONG });
  if (await ask.isVisible()) {
    await ask.click();
    await ready.or(error).first().waitFor({ timeout: LONG });
  }
  return (await error.isVisible()) ? 'error' : 'ready';
}

/** Opens the page with `query` (its `?model=`) and waits for the model, clicking through the consent when asked. */
async function open(page, server, query) {
  await page.goto(`${server.url}/?${SUITE_DEVICE.query}${query.slice(1)}`);
  assert.equal(await settle(page), 'ready', `model ready for ${query}`);
}

async function reload(page) {
  await page.reload();
  return settle(page);
}

/** One prompt, one target, Segment: the run finishes with a mask. */
async function segmentOnce(page) {
  await page.getByTestId('prompt-image').first().setInputFiles(fx('prompt0.png'));
  await page.getByTestId('prompt-mask').first().setInputFiles(fx('prompt0_mask.png'));
  await page.getByTestId('target-input').setInputFiles([fx('target_a.png')]);
  await page.getByTestId('segment').click();
  await page.locator('[data-testid=result][data-state=done]').first().waitFor({ timeout: LONG });
}

/** A copy of the fixture model in a temporary directory, to change it under the server. */
function modelCopy() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-model-'));
  for (const name of ['config.json', 'model.safetensors']) fs.copyFileSync(fx(`model/${name}`), path.join(dir, name));
  return dir;
}

/** Overwrites bytes of every stored model in this origin's private file system, keeping its size. */
async function damageStoredModels(page) {
  return page.evaluate(async () => {
    const models = await (await navigator.storage.getDirectory()).getDirectoryHandle('models');
    let damaged = 0;
    for await (const entry of models.values()) {
      const file = await entry.getFileHandle('model.safetensors');
      const writable = await file.createWritable({ keepExistingData: true });
      // Inside the JSON header (after its 8-byte length): it no longer parses.
      await writable.write({ type: 'write', position: 8, data: new Uint8Array(16).fill(0x7b) });
      await writable.close();
      damaged++;
    }
    return damaged;
  });
}

async function testRevalidateChangedOfflineDamaged(server, dir) {
  const { ctx, page, urls } = await launch();
  const weights = '/fresh-model/model.safetensors';
  const since = (start) => server.log.slice(start);
  try {
    await open(page, server, '?model=/fresh-model/');
    assert.match(await note(page), /downloaded and kept in browser storage/i);

    // Unchanged: the server is asked (HEAD), nothing is downloaded.
    let start = server.log.length;
    assert.equal(await reload(page), 'ready');
    console.log(`  unchanged: "${await note(page)}"; requests: ${since(start).filter((p) => p.includes('/fresh-model/')).join(', ')}`);
    assert.match(await note(page), /loaded from browser storage/i);
    assert.ok(since(start).includes(`HEAD ${weights}`), 'the stored copy is checked with the server');
    assert.ok(!since(start).includes(weights), 'no download when unchanged');

    // Changed on the server (a new modification time, so a new ETag and Last-Modified): downloaded again.
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(dir, 'model.safetensors'), later, later);
    start = server.log.length;
    assert.equal(await reload(page), 'ready');
    console.log(`  changed: "${await note(page)}"`);
    assert.match(await note(page), /changed on the server/i);
    assert.ok(since(start).includes(weights), 'downloaded again after the change');
    start = server.log.length;
    assert.equal(await reload(page), 'ready');
    assert.ok(!since(start).includes(weights), 'the new copy is stored and current');

    // Offline (the model's server does not answer): the stored copy, and the note says so.
    server.unreachable.add('/fresh-model/');
    try {
      assert.equal(await reload(page), 'ready');
      console.log(`  offline: "${await note(page)}"`);
      assert.match(await note(page), /offline: using the copy in browser storage/i);
      await segmentOnce(page);
    } finally {
      server.unreachable.delete('/fresh-model/');
    }

    // A damaged stored copy is removed and downloaded again, without asking the user to clear it.
    assert.equal(await damageStoredModels(page), 1, 'one stored model');
    start = server.log.length;
    const state = await reload(page);
    console.log(`  damaged: "${await note(page)}"${state === 'error' ? ` error: "${await errorText(page)}"` : ''}`);
    assert.equal(state, 'ready');
    assert.match(await note(page), /stored copy was damaged .*: downloaded and kept in browser storage/i);
    assert.ok(since(start).includes(weights), 'downloaded again');
    await segmentOnce(page);
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

async function testClearCacheDuringDownloadWaits(server) {
  const { ctx, page, urls } = await launch();
  try {
    await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=/slow-model/`);
    const ask = page.getByTestId('load-model');
    const downloading = status(page).filter({ hasText: 'downloading' });
    await downloading.or(ask).first().waitFor({ timeout: LONG });
    if (await ask.isVisible()) await ask.click();
    await downloading.waitFor({ timeout: LONG });
    // Posted to the worker directly: the page may rightly disable its button during a download.
    await page.evaluate(() => window.__worker.postMessage({ msg: { kind: 'clear_cache' } }));
    await page.waitForFunction(() => window.__fromWorker.includes('cache_cleared'), null, { timeout: LONG });
    // `tune_info` (the tuning panel's defaults) follows every `ready`; it is not part of the order checked here.
    const kinds = await page.evaluate(() => window.__fromWorker.filter((k) => k !== 'progress' && k !== 'tune_info'));
    console.log(`  worker messages: ${kinds.join(', ')}`);
    assert.deepEqual(kinds.slice(-2), ['ready', 'cache_cleared'], 'the clear waits for the download to end');
    assert.ok(!kinds.includes('error') && !kinds.includes('load_failed'), 'no error');
    // It did clear what the download stored: the next visit downloads again.
    const start = server.log.length;
    assert.equal(await reload(page), 'ready');
    assert.ok(server.log.slice(start).includes('/slow-model/model.safetensors'), 'downloaded again after the clear');
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

/** Runs the real CLI on one prompt and one target; returns the mask as a pngjs image. */
function cliMask(prompt, target, extra) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-cli-'));
  const args = ['segment', '--model', fx('model'), '--out-dir', out, '--prompt', ...prompt, '--target', target, ...extra];
  execFileSync(CLI, args, { stdio: 'ignore' });
  const masks = fs.readdirSync(out).filter((name) => name.endsWith('.mask.png'));
  assert.equal(masks.length, 1, `one mask from the CLI: ${masks}`);
  return PNG.sync.read(fs.readFileSync(path.join(out, masks[0])));
}

/** Max per-channel difference of two pngjs images of the same size (alpha ignored). */
function maxDiff(a, b) {
  assert.deepEqual([a.width, a.height], [b.width, b.height], 'mask size');
  let max = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(a.data[i + c] - b.data[i + c]));
  }
  return max;
}

/** An 8-bit grey class-index mask from a colour mask: black 0, then 1, 2, ... per new colour. */
function classMask(colourMask, out) {
  const rgb = PNG.sync.read(fs.readFileSync(colourMask));
  const indices = Buffer.alloc(rgb.width * rgb.height);
  const classes = new Map();
  for (let i = 0; i < indices.length; i++) {
    const key = rgb.data.readUIntBE(i * 4, 3);
    if (key === 0) continue;
    if (!classes.has(key)) classes.set(key, classes.size + 1);
    indices[i] = classes.get(key);
  }
  fs.writeFileSync(out, PNG.sync.write({ width: rgb.width, height: rgb.height, data: indices },
    { colorType: 0, inputColorType: 0, bitDepth: 8 }));
  return Math.max(...indices);
}

/** Posts one `segment` message to the worker (one prompt, one target) as the protocol describes it and
 * returns its `result`: the message and the mask PNG. */
async function segmentThroughProtocol(page, files, options) {
  const bytes = (file) => [...fs.readFileSync(file)];
  const payload = { image: bytes(files.image), mask: bytes(files.mask), target: bytes(files.target), options };
  return page.evaluate(async ({ image, mask, target, options }) => {
    const file = (data, name) => new File([new Uint8Array(data)], name, { type: 'image/png' });
    const before = window.__results.length;
    window.__worker.postMessage({
      msg: { kind: 'segment', options },
      prompts: [{ image: file(image, 'prompt.png'), mask: file(mask, 'mask.png') }],
      targets: [file(target, 'target.png')],
    });
    while (window.__results.length === before) {
      if (window.__fromWorker.includes('error')) throw new Error('the worker answered with an error');
      await new Promise((r) => setTimeout(r, 50));
    }
    return window.__results[before];
  }, payload);
}

async function testNumClassesGivesTheCliColours(server) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-classes-'));
  const mask = path.join(dir, 'mask.png');
  const top = classMask(fx('prompt0_mask.png'), mask);
  assert.ok(top >= 1 && top < 8, `class indices up to ${top}`);
  const prompt = [fx('prompt0.png'), mask];
  const target = fx('target_a.png');
  // 8 classes: a palette of base 3 where max + 1 gives base 2 (other colours, so other masks).
  const eight = cliMask(prompt, target, ['--num-labels', '8']);
  const inferred = cliMask(prompt, target, ['--num-labels', String(top + 1)]);
  assert.ok(maxDiff(eight, inferred) > 1, 'the palette size changes the mask');
  const { ctx, page } = await launch();
  try {
    await open(page, server, '?model=/model/');
    const files = { image: fx('prompt0.png'), mask, target };
    const base = { embedding: 'instance', ensemble: 'official', class_masks: true };
    for (const [numClasses, expected] of [[8, eight], [null, inferred]]) {
      const result = await segmentThroughProtocol(page, files, { ...base, num_classes: numClasses });
      const got = PNG.sync.read(Buffer.from(result.png));
      const diff = maxDiff(got, expected);
      console.log(`  num_classes ${numClasses}: the worker used ${result.msg.num_classes}; max difference ${diff} vs the CLI`);
      assert.equal(result.msg.num_classes, numClasses ?? top + 1, 'the number of classes used is reported');
      assert.ok(diff <= 1, `differs from the CLI by ${diff}`);
    }
  } finally {
    await ctx.close();
  }
}

async function testDirectoryUrlWithQuery(server) {
  const { ctx, page } = await launch();
  try {
    const start = server.log.length;
    await open(page, server, `?model=${encodeURIComponent('/model/?rev=1')}`);
    const model = server.log.slice(start).filter((p) => p.includes('/model/'));
    console.log(`  requests: ${model.join(', ')}`);
    assert.ok(model.includes('/model/config.json') && model.includes('/model/model.safetensors'), 'both files');
  } finally {
    await ctx.close();
  }
}

/** The fixture model as the hub's shards (`seggpt convert --shard-size`), in a temporary directory. */
function shardedCopy() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-shards-'));
  execFileSync(CLI, ['convert', '--model', fx('model'), '--output', dir, '--shard-size', '60KB'], { stdio: 'ignore' });
  return dir;
}

async function testShards(server, dir) {
  const shards = fs.readdirSync(dir).filter((name) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(name)).sort();
  assert.ok(shards.length >= 3, `the copy is in shards: ${shards}`);
  const { ctx, page, urls } = await launch();
  const since = (start) => server.log.slice(start).filter((p) => p.includes('/sharded-model/'));
  try {
    let start = server.log.length;
    await open(page, server, '?model=/sharded-model/');
    console.log(`  first visit: "${await note(page)}"; requests: ${since(start).join(', ')}`);
    assert.match(await note(page), new RegExp(`downloaded ${shards.length} of ${shards.length} shards and kept them in browser storage`, 'i'));
    for (const shard of shards) assert.ok(since(start).includes(`/sharded-model/${shard}`), `${shard} fetched`);

    // The mask equals the CLI's on the single file.
    const files = { image: fx('prompt0.png'), mask: fx('prompt0_mask.png'), target: fx('target_a.png') };
    const options = { embedding: 'instance', ensemble: 'official', class_masks: false, num_classes: null };
    const result = await segmentThroughProtocol(page, files, options);
    const diff = maxDiff(PNG.sync.read(Buffer.from(result.png)), cliMask([files.image, files.mask], files.target, []));
    console.log(`  mask from shards vs the CLI on the single file: max difference ${diff}`);
    assert.equal(diff, 0);

    // Reload: every shard from browser storage, each checked with the server (HEAD), none downloaded.
    start = server.log.length;
    assert.equal(await reload(page), 'ready');
    console.log(`  reload: "${await note(page)}"; requests: ${since(start).join(', ')}`);
    assert.match(await note(page), /loaded from browser storage, no download/i);
    for (const shard of shards) {
      assert.ok(since(start).includes(`HEAD /sharded-model/${shard}`), `${shard} checked`);
      assert.ok(!since(start).includes(`/sharded-model/${shard}`), `${shard} not downloaded`);
    }

    // One shard changes on the server: only it is downloaded again.
    const changed = shards[1];
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(dir, changed), later, later);
    start = server.log.length;
    assert.equal(await reload(page), 'ready');
    const fetched = since(start).filter((p) => /^\/sharded-model\/model-/.test(p));
    console.log(`  one shard changed: "${await note(page)}"; shards downloaded: ${fetched.join(', ')}`);
    assert.deepEqual(fetched, [`/sharded-model/${changed}`]);

    // Offline: the stored index and shards, with the note saying so.
    server.unreachable.add('/sharded-model/');
    try {
      assert.equal(await reload(page), 'ready');
      console.log(`  offline: "${await note(page)}"`);
      assert.match(await note(page), /offline: using the copy in browser storage/i);
    } finally {
      server.unreachable.delete('/sharded-model/');
    }
    assertLoopback(urls, server.url);
  } finally {
    await ctx.close();
  }
}

/** `scripts/deploy.sh` with the fixture model in shards: the folder a host would serve. */
function deployedSite() {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-deploy-')), 'site');
  execFileSync('bash', [path.join(root, 'scripts/deploy.sh'), '--out', out, '--site', path.join(root, 'dist'),
    '--weights', fx('model'), '--dtype', 'f32', '--shard-size', '60KB'], { env: { ...process.env, SEGGPT_CLI: CLI }, stdio: 'ignore' });
  return out;
}

async function testDeployedSite() {
  const LIMIT = 25 * 1024 * 1024; // Cloudflare Pages' limit, the lowest of the common static hosts
  const site = deployedSite();
  const files = fs.readdirSync(site, { recursive: true }).map((f) => path.join(site, f)).filter((f) => fs.statSync(f).isFile());
  const largest = Math.max(...files.map((f) => fs.statSync(f).size));
  console.log(`  deploy.sh: ${files.length} files, largest ${largest} bytes; ${fs.readdirSync(path.join(site, 'model')).join(', ')}`);
  assert.ok(largest <= LIMIT, 'every file within 25 MiB');
  assert.ok(fs.existsSync(path.join(site, '_headers')) && fs.existsSync(path.join(site, 'seggpt-worker_bg.wasm.gz')));
  // A plain static server that refuses (404) any file over the limit, as such a host would not have it.
  const host = await serve({ '/': site }, [], {}, { maxFileBytes: LIMIT });
  const { ctx, page, urls } = await launch();
  try {
    // No ?model=: the page takes the weights deployed beside it.
    await page.goto(`${host.url}/?${SUITE_DEVICE.query.replace(/&$/, '')}`);
    assert.equal(await settle(page), 'ready', 'the deployed model loads');
    console.log(`  deployed: "${(await status(page).textContent()).trim()}"; "${await note(page)}"`);
    assert.ok(host.log.includes('/model/model.safetensors.index.json'), 'the page asked for its own weights');
    const files2 = { image: fx('prompt0.png'), mask: fx('prompt0_mask.png'), target: fx('target_a.png') };
    const options = { embedding: 'instance', ensemble: 'official', class_masks: false, num_classes: null };
    const result = await segmentThroughProtocol(page, files2, options);
    const diff = maxDiff(PNG.sync.read(Buffer.from(result.png)), cliMask([files2.image, files2.mask], files2.target, []));
    console.log(`  mask vs the CLI: max difference ${diff}`);
    assert.equal(diff, 0);
    assertLoopback(urls, host.url);
  } finally {
    await ctx.close();
    await host.close();
  }
}

async function testPlainErrors(server) {
  const { ctx, page, urls } = await launch();
  try {
    // Another origin (the same server under another name) is refused before any request.
    const other = server.url.replace('127.0.0.1', 'localhost');
    await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=${encodeURIComponent(`${other}/model/`)}`);
    assert.equal(await settle(page), 'error');
    const refused = await errorText(page);
    console.log(`  other origin: "${refused}"`);
    assert.match(refused, /refusing to fetch a model from http:\/\/localhost:\d+: only this site and https:\/\/huggingface\.co/);
    assertLoopback(urls, server.url);

    // A model URL that cannot be fetched: the likely causes, CORS and the CSP among them.
    server.unreachable.add('/gone-model/');
    try {
      await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=/gone-model/`);
      assert.equal(await settle(page), 'error');
    } finally {
      server.unreachable.delete('/gone-model/');
    }
    const unreachable = await errorText(page);
    console.log(`  unreachable: "${unreachable}"`);
    assert.match(unreachable, /gone-model\/config\.json could not be fetched/);
    assert.match(unreachable, /Access-Control-Allow-Origin/);
    assert.match(unreachable, /Content-Security-Policy/);
    assert.doesNotMatch(unreachable, /JsValue|Object \{|\{:\?\}/, 'no debug dump');
  } finally {
    await ctx.close();
  }
}

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release --features test-hooks` first');
const fresh = modelCopy();
const sharded = shardedCopy();
const server = await serve({
  '/sharded-model/': sharded,
  '/': path.join(root, 'dist'),
  '/model/': fx('model'),
  '/slow-model/': fx('model'),
  '/fresh-model/': fresh,
}, ['/slow-model/']);
const tests = [
  ['stored model: checked with the server, downloaded again when changed or damaged, used offline with a note', (s) => testRevalidateChangedOfflineDamaged(s, fresh)],
  ['a cache clear posted during a download runs after it (messages in order), no error', testClearCacheDuringDownloadWaits],
  ['num_classes in the protocol gives the colours of the CLI\'s --num-labels; without it, max index + 1', testNumClassesGivesTheCliColours],
  ['a directory ?model= URL with a query string fetches config.json and model.safetensors', testDirectoryUrlWithQuery],
  ['plain errors: another origin refused; an unreachable model names CORS and the CSP', testPlainErrors],
  ['a model in shards: masks equal the single file\'s; stored per shard; only a changed shard is fetched again; offline', (s) => testShards(s, sharded)],
  ['scripts/deploy.sh: every file within 25 MiB, served by a capped static server, the page loads its own weights and segments as the CLI', testDeployedSite],
];
const failed = await runTests(tests, server, 'WORKER_ONLY'); // WORKER_ONLY=substring runs some
await server.close();
process.exit(failed ? 1 : 0);
