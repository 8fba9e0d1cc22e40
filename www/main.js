// Page loader: the app logic is Rust (src/web/page/). Relative URLs, so the site also works under a sub-path.
// This is the page's own small wasm; the model's code is in the worker's (worker.js), which run_page starts.
import init, { run_page } from './seggpt-web.js';

await init();
run_page();

// The service worker keeps the site's files for offline use; the page works without it. Registered after
// the page runs: its install downloads the site's files, which must not compete with the page's own wasm.
navigator.serviceWorker?.register('sw.js').catch((error) => console.warn(`offline support is off: ${error}`));
