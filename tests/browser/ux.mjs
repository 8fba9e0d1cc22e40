// What a first-time visitor meets, in headless Chromium (the suites' device, server.mjs): the page in its main
// states (empty, downloading, model ready, an example's results, an error) checked with axe-core (any
// serious or critical violation fails), in light and dark, with screenshots at a desktop and a phone
// viewport; the web manifest and its icons; and the offline path: after one visit the page reloads with
// no network (service worker + the model in browser storage) and segments again. An example is picked and
// segmented with the keyboard alone, with a visible focus ring.
//
// Needs: `trunk build --release` (dist/), `npm ci`. Run from the repository root:
// `node tests/browser/ux.mjs`. Exit code 0 = pass. Screenshots: tests/browser/artifacts/ux-*.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { launchBrowser, runTests, serve, SUITE_DEVICE } from './server.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const fixtures = path.join(root, 'tests/fixtures/segment');
const artifacts = path.join(root, 'tests/browser/artifacts');
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const RUN_TIMEOUT = 180_000;

async function launch() {
  // Content-security-policy violations, as the page reports them (e.g. a manifest the CSP blocks).
  const cspViolations = () => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI}`));
  };
  return launchBrowser({ args: SUITE_DEVICE.args, viewport: DESKTOP, initScripts: [cspViolations], debugConsole: false });
}

// ---------- driving the page ----------

async function waitReady(page) {
  const status = page.getByTestId('model-status');
  await status.filter({ hasText: 'ready' }).waitFor({ timeout: RUN_TIMEOUT });
  return (await status.textContent()).trim();
}

/** Clicks "load-model" when the consent block offers it (a model not yet stored), then waits for `ready`. */
async function loadModel(page) {
  const button = page.getByTestId('load-model');
  const ready = page.getByTestId('model-status').filter({ hasText: 'ready' });
  await button.or(ready).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await button.isVisible()) await button.click();
  return waitReady(page);
}

/** Presses Tab until the element with `testid` has the focus; returns its outline as the keyboard user sees it. */
async function tabTo(page, testid, maxTabs = 80) {
  for (let i = 0; i < maxTabs; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const e = document.activeElement;
      const style = getComputedStyle(e);
      return { testid: e?.dataset.testid, outline: `${style.outlineStyle} ${style.outlineWidth}`,
        focusVisible: e?.matches(':focus-visible') };
    });
    if (focused.testid === testid) return focused;
  }
  throw new Error(`${testid} is not reachable with ${maxTabs} presses of Tab`);
}

/** Picks an example of the gallery (a click, or Tab + Enter) and waits until its files fill the prompt and
 * the targets. */
async function useExample(page, id, targets, { keyboard = false } = {}) {
  if (keyboard) {
    const focused = await tabTo(page, `example-${id}`);
    console.log(`  keyboard focus on example-${id}: outline ${focused.outline}`);
    assert.ok(focused.focusVisible && !focused.outline.startsWith('none'), 'the focused example shows a focus ring');
    await page.keyboard.press('Enter');
  } else {
    await page.getByTestId(`example-${id}`).click();
  }
  await page.getByTestId('target-count').filter({ hasText: `${targets} image` }).waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => {
    const thumb = document.querySelector('[data-testid=prompt-thumb]');
    return thumb?.complete && thumb.naturalWidth > 0;
  }, null, { timeout: 30_000 });
}

/** Clicks Segment (or reaches it with Tab and presses Enter) and waits until `count` result cards have all
 * finished (done or failed); returns their states. */
async function segment(page, count, { keyboard = false } = {}) {
  await explained(page, 'the Segment button stays disabled', () => page.waitForFunction(
    () => !document.querySelector('[data-testid=segment]').disabled, null, { timeout: 60_000 }));
  if (keyboard) {
    await tabTo(page, 'segment');
    await page.keyboard.press('Enter');
  } else {
    await explained(page, 'Segment cannot be clicked', () => page.getByTestId('segment').click({ timeout: 60_000 }));
  }
  await explained(page, `the ${count} result cards do not all finish`, () => page.waitForFunction((n) => {
    const cards = [...document.querySelectorAll('[data-testid=result]')];
    return cards.length === n && cards.every((c) => c.dataset.state === 'done' || c.dataset.state === 'failed');
  }, count, { timeout: RUN_TIMEOUT }));
  return page.locator('[data-testid=result]').evaluateAll((cards) => cards.map((c) => c.dataset.state));
}

/** Runs `wait`; when it fails, the error also says what the page showed then (status, error, note, target
 * count, result cards, what the Segment button's centre hits), so that a failure on another machine explains
 * itself from the log alone. */
async function explained(page, what, wait) {
  try {
    return await wait();
  } catch (err) {
    const shown = await page.evaluate(() => {
      const text = (id) => document.querySelector(`[data-testid=${id}]`)?.textContent.replace(/\s+/g, ' ').trim();
      const button = document.querySelector('[data-testid=segment]');
      const box = button?.getBoundingClientRect();
      const hit = box && document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
      return { status: text('model-status'), error: text('error'), note: text('model-note'),
        targets: text('target-count'), segmentDisabled: button?.disabled,
        segmentCentreHits: hit ? `${hit.tagName.toLowerCase()}${hit.dataset.testid ? `[${hit.dataset.testid}]` : ''}` : null,
        cards: [...document.querySelectorAll('[data-testid=result]')].map((c) => `${c.dataset.state} ${c.title ?? ''}`) };
    }).catch((e) => `(page unreadable: ${e.message})`);
    throw new Error(`${what}: ${err.message.split('\n')[0]}\n  the page then: ${JSON.stringify(shown)}`);
  }
}

// ---------- checks ----------

const axeLog = [];

/** Runs axe-core in the page; fails on serious or critical violations, logs the rest. */
async function axeCheck(page, state) {
  // Injected through the driver: the page's CSP rightly refuses inline scripts.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 4).map((n) => `${n.target.join(' ')}: ${n.failureSummary?.split('\n')[1]?.trim()}`) }));
  });
  const blocking = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  axeLog.push({ state, violations: violations.map((v) => `${v.impact} ${v.id}`) });
  for (const v of violations) {
    console.log(`  axe ${state}: ${v.impact} ${v.id} (${v.help})\n      ${v.nodes.join('\n      ')}`);
  }
  assert.deepEqual(blocking.map((v) => `${v.id}: ${v.nodes.join('; ')}`), [],
    `serious or critical accessibility violations in state "${state}"`);
}

/** The whole page at `viewport`'s width. The viewport is stretched to the page's height first (rather than
 * Playwright's fullPage), so that the sticky run bar is drawn where it sits in the flow. */
async function screenshot(page, name, viewport) {
  await page.setViewportSize(viewport);
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: viewport.width, height: Math.max(height, viewport.height) });
  await page.screenshot({ path: path.join(artifacts, `ux-${name}.png`) });
  await page.setViewportSize(viewport);
}

/** Screenshots (desktop light and dark, phone light) and axe in light, dark and phone for one state. */
async function checkState(page, state) {
  await axeCheck(page, `${state}, light`);
  await screenshot(page, `${state}-desktop`, DESKTOP);
  await page.emulateMedia({ colorScheme: 'dark' });
  await axeCheck(page, `${state}, dark`);
  await screenshot(page, `${state}-desktop-dark`, DESKTOP);
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(PHONE);
  await axeCheck(page, `${state}, phone`);
  await screenshot(page, `${state}-phone`, PHONE);
  await page.setViewportSize(DESKTOP);
}

async function assertNoCspViolations(page) {
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'CSP violations');
}

// ---------- tests ----------

async function testStatesOfflineAndInstall(server) {
  const { ctx, page } = await launch();
  // The server logs a GET as the bare path (a HEAD, which only revalidates, as "HEAD /path").
  const weightDownloads = () => server.log.filter((p) => p === '/model/model.safetensors');
  try {
    // Empty: a first visit offers the model (what it is, its size) and downloads nothing by itself.
    await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=/model/`);
    await page.getByTestId('load-model').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid^="example-"]').first().waitFor({ timeout: 30_000 });
    assert.deepEqual(weightDownloads(), [], 'no weights downloaded before the visitor asked');
    console.log(`  consent: "${(await page.locator('.consent').textContent()).replace(/\s+/g, ' ').trim()}"`);
    await checkState(page, 'empty');

    // Installable: the manifest the page links parses, names the app and its icons load.
    const manifest = await page.evaluate(async () => {
      const link = document.querySelector('link[rel=manifest]');
      const data = await (await fetch(link.href)).json();
      const icons = await Promise.all(data.icons.map(async (icon) => {
        const response = await fetch(new URL(icon.src, link.href));
        const bitmap = await createImageBitmap(await response.blob());
        return `${icon.sizes}=${bitmap.width}x${bitmap.height}`;
      }));
      return { name: data.name, display: data.display, startUrl: data.start_url, icons };
    });
    console.log(`  manifest: ${JSON.stringify(manifest)}`);
    assert.equal(manifest.display, 'standalone');
    assert.ok(manifest.icons.includes('192x192=192x192') && manifest.icons.includes('512x512=512x512'), 'icons');

    // Model ready.
    const status = await loadModel(page);
    console.log(`  status: "${status}"`);
    assert.equal(weightDownloads().length, 1, 'the click downloaded the weights');
    await checkState(page, 'ready');

    // An example, picked with the keyboard, segmented (Enter on Segment): results shown.
    await useExample(page, 'galaxies', 2, { keyboard: true });
    assert.deepEqual(await segment(page, 2, { keyboard: true }), ['done', 'done']);
    await checkState(page, 'results');

    // Offline: the service worker serves the site, browser storage the model; the example segments again.
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    const cached = await page.evaluate(async () => {
      const names = await caches.keys();
      const keys = (await Promise.all(names.map(async (n) => (await (await caches.open(n)).keys()).map((r) => r.url))))
        .flat();
      return { names, keys };
    });
    const cachedPaths = cached.keys.map((u) => new URL(u).pathname);
    console.log(`  service worker caches ${cached.names.join(', ')}: ${cachedPaths.length} files`);
    assert.ok(cachedPaths.includes('/seggpt-web_bg.wasm') && cachedPaths.includes('/examples/galaxies/field-2.jpg'),
      'the site and its examples are cached');
    assert.deepEqual(cachedPaths.filter((p) => p.startsWith('/model/') || p.endsWith('.safetensors')), [],
      'the model is never in the service worker cache');
    await ctx.setOffline(true);
    const before = server.log.length;
    await page.reload();
    const offlineStatus = await waitReady(page);
    const note = (await page.getByTestId('model-note').textContent()).trim();
    console.log(`  offline: "${offlineStatus}", note "${note}"`);
    assert.match(note, /offline/i, 'the note says the stored copy is used because the network is off');
    await useExample(page, 'galaxies', 2);
    assert.deepEqual(await segment(page, 2), ['done', 'done']);
    // The browser's own update check of the service worker script is not covered by Playwright's offline
    // emulation (it is not a request of the page); truly offline it fails and the installed worker stays.
    assert.deepEqual(server.log.slice(before).filter((p) => p !== '/sw.js'), [],
      'no request of the page or its worker reached the server while offline');
    await ctx.setOffline(false);
    await assertNoCspViolations(page);

    // Error: a target that is not an image fails on its own card; truncated weights raise the error.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seggpt-ux-bad-'));
    const notImage = path.join(dir, 'notes.png');
    fs.writeFileSync(notImage, 'this is not a PNG');
    await page.getByTestId('target-input').setInputFiles([notImage]);
    const targets = parseInt(await page.getByTestId('target-count').textContent(), 10);
    const states = await segment(page, targets);
    assert.equal(states.filter((s) => s === 'failed').length, 1, `the card of notes.png failed: ${states}`);
    const good = fs.readFileSync(path.join(fixtures, 'model/model.safetensors'));
    const truncated = path.join(dir, 'model.safetensors');
    fs.writeFileSync(truncated, good.subarray(0, good.length - 100));
    await page.getByTestId('model-file').setInputFiles([path.join(fixtures, 'model/config.json'), truncated]);
    await page.getByTestId('error').filter({ hasText: 'truncated' }).waitFor({ timeout: 60_000 });
    await checkState(page, 'error');
  } finally {
    await ctx.close();
  }
}

async function testProgressVisible(server) {
  const { ctx, page } = await launch();
  try {
    // `/slow-model/` trickles the weights (8 KiB every 40 ms): the progress bar shows while they arrive.
    await page.goto(`${server.url}/?${SUITE_DEVICE.query}model=/slow-model/`);
    await page.getByTestId('load-model').click({ timeout: 60_000 });
    // Where the bar is, read in the same frame that finds it moving: the trickle ends about a second
    // later, and the bar is hidden then.
    const box = await (await page.waitForFunction(() => {
      const bar = document.querySelector('[data-testid=model-progress]');
      if (!bar || bar.hidden || !(bar.value > 0)) return null;
      const { x, y, width, height } = bar.getBoundingClientRect();
      return width > 0 && height > 0 ? { x, y, width, height } : null;
    }, null, { timeout: 60_000 })).jsonValue();
    assert.ok(box.y < DESKTOP.height && box.width > 200, `the progress bar is in view and wide (${JSON.stringify(box)})`);
    await page.screenshot({ path: path.join(artifacts, 'ux-downloading-desktop.png') }); // what is in view
    console.log(`  downloading: "${(await page.getByTestId('model-status').textContent()).trim()}"`);
    await waitReady(page);
  } finally {
    await ctx.close();
  }
}

const tests = [
  ['states (empty, ready, results, error): axe, light and dark, desktop and phone; manifest; offline reload segments',
    testStatesOfflineAndInstall],
  ['download progress is visible where the visitor looks', testProgressVisible],
];

assert.ok(fs.existsSync(path.join(root, 'dist/index.html')), 'dist/ missing: run `trunk build --release` first');
fs.mkdirSync(artifacts, { recursive: true });
const server = await serve({
  '/': path.join(root, 'dist'),
  '/model/': path.join(fixtures, 'model'),
  '/slow-model/': path.join(fixtures, 'model'),
}, ['/slow-model/']);
const failed = await runTests(tests, server, 'UX_ONLY'); // UX_ONLY=substring runs some
console.log('axe summary (all impacts):');
for (const { state, violations } of axeLog) console.log(`  ${state}: ${violations.join(', ') || 'none'}`);
await server.close();
process.exit(failed ? 1 : 0);
