// Page loader: the app logic is Rust (src/web/page/). Relative URLs, so the site also works under a sub-path.
import init, { run_page } from './seggpt-web.js';

// The service worker keeps the site's files for offline use; the page works without it.
navigator.serviceWorker?.register('sw.js').catch((error) => console.warn(`offline support is off: ${error}`));

await init();
run_page();
