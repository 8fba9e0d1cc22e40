// Module worker loader, started by run_page: the model runs here (src/web/worker.rs), in the worker's own
// wasm (worker/), which the page never loads.
import init, { run_worker } from './seggpt-worker.js';

// scripts/deploy.sh sets this to true and serves the worker's wasm gzipped (seggpt-worker_bg.wasm.gz):
// 43 MB is over some static hosts' file-size limit (Cloudflare Pages: 25 MiB), 8 MB gzipped is not.
const GZIPPED_WASM = false;

/** The gzipped wasm as a response the wasm loader streams from, decompressed on the way. */
async function gunzipped(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return new Response(response.body.pipeThrough(new DecompressionStream('gzip')),
    { headers: { 'Content-Type': 'application/wasm' } });
}

await init(GZIPPED_WASM ? { module_or_path: gunzipped(new URL('seggpt-worker_bg.wasm.gz', import.meta.url)) } : undefined);
run_worker();
