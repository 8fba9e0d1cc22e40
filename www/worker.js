// Module worker loader, started by run_page: the model runs here (src/web/worker.rs).
import init, { run_worker } from './seggpt-web.js';
await init();
run_worker();
