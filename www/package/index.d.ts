// Types of seggpt-web's JavaScript package (docs/PACKAGE.md).

/** An image: a file or blob (its pixels exactly as stored), or something a canvas can draw. */
export type ImageInput = File | Blob | ImageBitmap | HTMLImageElement | HTMLCanvasElement;

export interface LoadProgress {
  /** What is happening, in words ("downloading model.safetensors: 12.3 MB of 373 MB, ..."). */
  text: string;
  /** Bytes done, and of how many (0 when unknown). */
  done: number;
  total: number;
}

export interface LoadOptions {
  /** A directory URL (config.json + model.safetensors, or the hub's shards) or a .safetensors URL;
   * relative URLs are resolved against the page; the same origin as the package, or the Hugging Face hub. */
  model: string;
  /** 'auto' and 'f16': half precision where the GPU has shader-f16; 'f32': always f32. Default 'auto'. */
  dtype?: 'auto' | 'f32' | 'f16';
  /** 'auto': WebGPU where the browser has an adapter, else the CPU in wasm; 'webgpu' or nothing; 'cpu'. */
  device?: 'auto' | 'webgpu' | 'cpu';
  /** Look for, and keep, a copy in browser storage (OPFS). Default true. */
  cache?: boolean;
  onProgress?: (progress: LoadProgress) => void;
}

export interface Prompt {
  image: ImageInput;
  /** A colour mask (black background, one colour per object or class), or a class-index PNG with classMasks. */
  mask: ImageInput;
}

export interface SegmentRequest {
  prompts: Prompt[];
  targets: ImageInput[];
  /** How several prompts combine. Default 'official'. */
  ensemble?: 'official' | 'hf' | 'none' | 'spatial';
  /** 'instance': each colour one object; 'semantic': each colour one class. Default 'instance'. */
  embedding?: 'instance' | 'semantic';
  /** Masks are class-index PNGs (0 background, 1.. classes). Default false. */
  classMasks?: boolean;
  /** With classMasks: the number of classes (the CLI's --num-labels); default the largest index + 1. */
  numClasses?: number;
}

export interface SegmentResult {
  /** The target's place in the request. */
  index: number;
  width: number;
  height: number;
  /** The worker's time for this target. */
  seconds: number;
  /** The prompts' mask colours, most frequent first. */
  colours: [number, number, number][];
  /** With classMasks: the number of classes used; else null. */
  numClasses: number | null;
  /** The mask as PNG, byte for byte what `seggpt segment` writes. */
  maskPng: Blob;
  /** The same mask as pixels (opaque RGBA). */
  mask: ImageData;
  /** Per pixel: 0 background, else 1 + the index in `colours` of its nearest colour. */
  labels: Uint8Array;
}

/** Every error of the package: the same plain texts as the app's. */
export class SegGPTError extends Error {}

export class SegGPT {
  static load(options: LoadOptions): Promise<SegGPT>;
  readonly adapter: string;
  readonly dtype: 'f32' | 'f16';
  readonly note: string;
  readonly maxPrompts: number;
  segment(request: SegmentRequest): Promise<SegmentResult[]>;
  dispose(): void;
}
