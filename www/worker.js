// Module worker loader, started by run_page: the model runs here (src/web/worker.rs), in the worker's own
// wasm (worker/), which the page never loads.
import init, { run_worker } from './seggpt-worker.js';
await init();
run_worker();
