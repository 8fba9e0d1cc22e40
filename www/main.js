// Page loader: the app logic is Rust (src/web/page.rs). Relative URLs, so the site also works under a sub-path.
import init, { run_page } from './seggpt-web.js';
await init();
run_page();
