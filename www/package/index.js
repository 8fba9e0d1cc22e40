// seggpt-web's JavaScript package: SegGPT in your own page (docs/PACKAGE.md). The work happens in the
// package's own module worker (worker.js, the app's worker); this file only loads the package's small
// wasm (the app's page-side code, which speaks the worker's protocol) and names the errors.
import init, { loadModel } from './seggpt-web.js';

/** Every error of the package: the same plain texts as the app's. */
export class SegGPTError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SegGPTError';
  }
}

let initialised;

async function guarded(promise) {
  try {
    return await promise;
  } catch (error) {
    throw error instanceof SegGPTError ? error : new SegGPTError(error instanceof Error ? error.message : String(error));
  }
}

/** A loaded SegGPT model. */
export class SegGPT {
  #model;

  constructor(model) {
    this.#model = model;
  }

  /** Loads the model (from browser storage when a current copy is there, else downloaded and kept). */
  static async load(options) {
    initialised ??= init({ module_or_path: new URL('./seggpt-web_bg.wasm', import.meta.url) });
    await guarded(initialised);
    return new SegGPT(await guarded(loadModel(options, new URL('./worker.js', import.meta.url).href)));
  }

  /** The device: the WebGPU adapter's name, or the CPU. */
  get adapter() { return this.#model.adapter; }

  /** The float type the model computes in: 'f32' or 'f16'. */
  get dtype() { return this.#model.dtype; }

  /** Where the weights came from and how they are kept. */
  get note() { return this.#model.note; }

  /** The most prompts one segment() may have on this device. */
  get maxPrompts() { return this.#model.maxPrompts; }

  /** Segments every target with every prompt: one result per target, in order. */
  segment(request) {
    return guarded(this.#model.segment(request));
  }

  /** Stops the worker and frees the model; later calls are refused. */
  dispose() {
    this.#model.dispose();
  }
}
