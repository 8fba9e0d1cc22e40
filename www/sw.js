// Service worker: the site's own files keep working with no network (the model's weights live in the
// worker's browser storage, not here). It stores exactly the files it fetched at install (the app shell,
// the icons and the example gallery) and serves them network first, so a visitor online always gets the
// current files and the stored copy is only the fallback. Every other request passes through untouched:
// a model (wherever it is served from), anything cross-origin (e.g. the model hub), non-GET requests.

// Bump the version when the list below or the caching rules change: the old cache is then deleted.
const CACHE = 'seggpt-site-v2';
const CACHE_PREFIX = 'seggpt-site-';

// Fetched at install: on a first visit the page and its wasm load before this worker controls them.
const SHELL = ['./', 'main.js', 'worker.js', 'style.css', 'seggpt-web.js', 'seggpt-web_bg.wasm',
  'seggpt-worker.js', 'seggpt-worker_bg.wasm',
  'manifest.webmanifest', 'icons/icon-192.png', 'icons/icon-512.png', 'examples/examples.json'];
const EXAMPLES_INDEX = 'examples/examples.json';

const scope = new URL(self.registration.scope);
const examplesIndex = new URL(EXAMPLES_INDEX, scope);

/** Stores the example files that examples.json lists (those not stored yet), so the gallery works offline. */
async function cacheExamples(cache) {
  const index = await cache.match(examplesIndex);
  if (!index) return;
  const files = (await index.json()).flatMap((example) => [example.thumbnail, ...example.targets,
    ...example.prompts.flatMap((prompt) => [prompt.image, prompt.mask])]);
  await Promise.all(files.map(async (file) => {
    const url = new URL(file, examplesIndex);
    if (!(await cache.match(url))) await cache.add(url);
  }));
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.map((file) => new URL(file, scope)));
    await cacheExamples(cache);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE)
      .map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

/** The cache key of a request: a navigation to the page, whatever its query (`?model=...`), is the page. */
function cacheKey(request) {
  if (request.mode !== 'navigate') return request;
  const url = new URL(request.url);
  return url.pathname === scope.pathname || url.pathname === `${scope.pathname}index.html` ? scope : null;
}

async function networkFirst(event) {
  const { request } = event;
  const cache = await caches.open(CACHE);
  const key = cacheKey(request);
  const stored = key && await cache.match(key);
  if (!stored) return fetch(request); // not one of the site's files: never stored
  try {
    const response = await fetch(request);
    if (response.ok) {
      const copy = response.clone();
      event.waitUntil(cache.put(key, copy).then(() => {
        // A newer gallery may list new files.
        if (new URL(request.url).href === examplesIndex.href) return cacheExamples(cache);
      }));
    }
    return response;
  } catch (offline) {
    return stored;
  }
}

// Model files are left to the browser outright, not even streamed through this worker: a 1.48 GB
// download should not depend on a service worker staying alive.
const MODEL_FILE = /\/model\/|\.(safetensors|pth|bin)$/i;

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || request.headers.has('range')) return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin || MODEL_FILE.test(url.pathname)) return;
  event.respondWith(networkFirst(event));
});
