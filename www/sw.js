// Service worker: the site's own files keep working with no network (the model's weights live in the
// worker's browser storage, not here). Network first, so a visitor online always gets the current files;
// the cache is only the fallback. Never stored: the model (large, and kept elsewhere), anything
// cross-origin (e.g. the model hub), non-GET requests and partial (Range) responses.

// Bump the version when the list below or the caching rules change: the old cache is then deleted.
const CACHE = 'seggpt-site-v1';
const CACHE_PREFIX = 'seggpt-site-';

// The app shell, fetched at install: on a first visit the page and its wasm load before this worker
// controls them, so they are stored here rather than on the way through.
const SHELL = ['./', 'main.js', 'worker.js', 'style.css', 'seggpt-web.js', 'seggpt-web_bg.wasm',
  'manifest.webmanifest', 'icons/icon-192.png', 'icons/icon-512.png', 'examples/examples.json'];

// Responses over this size are passed through but not stored (a model file served from an unexpected
// path must not be copied into the cache); the wasm is about 37 MB.
const MAX_CACHED_BYTES = 128 * 1024 * 1024;
const MODEL_FILE = /\.(safetensors|pth|bin)$/i;

const scope = new URL(self.registration.scope);

function cacheable(request) {
  if (request.method !== 'GET' || request.headers.has('range')) return false;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return false;
  return !url.pathname.includes('/model/') && !MODEL_FILE.test(url.pathname);
}

/** Stores the example files that examples.json lists, so the gallery also works offline. */
async function cacheExamples(cache) {
  const index = new URL('examples/examples.json', scope);
  const response = await cache.match(index);
  if (!response) return;
  const files = (await response.json()).flatMap((example) => [example.thumbnail, ...example.targets,
    ...example.prompts.flatMap((prompt) => [prompt.image, prompt.mask])]);
  await cache.addAll(files.map((file) => new URL(file, index)));
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

async function networkFirst(event) {
  const { request } = event;
  try {
    const response = await fetch(request);
    const size = Number(response.headers.get('content-length') ?? 0);
    if (response.ok && response.type === 'basic' && size <= MAX_CACHED_BYTES) {
      const copy = response.clone();
      event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)));
    }
    return response;
  } catch (offline) {
    // A page address carries its settings in the query (`?model=...`): any query finds the stored page.
    const stored = await caches.match(request, { ignoreSearch: request.mode === 'navigate' })
      ?? (request.mode === 'navigate' ? await caches.match(scope) : undefined);
    if (stored) return stored;
    throw offline;
  }
}

self.addEventListener('fetch', (event) => {
  if (cacheable(event.request)) event.respondWith(networkFirst(event));
});
