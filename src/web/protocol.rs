//! Messages between the page and the worker: `{ msg, files?, bytes?, rgb? }` where `msg` is one of
//! these enums (through `serde-wasm-bindgen`), `files` the user's files and painted masks, and
//! `bytes` / `rgb` result buffers (transferred, not copied).

use serde::{Deserialize, Serialize};

/// Where the model comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ModelSource {
    /// A directory URL (`config.json` + `model.safetensors`) or a `.safetensors` URL (with
    /// `config.json` beside it). Absolute.
    Url { url: String },
    /// Files the user picked or dropped, in `files`: a `.safetensors` and optionally its `config.json`.
    Files,
}

/// A prompt's mask: a file, or painted in the page (`width * height * 3` RGB bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mask", rename_all = "snake_case")]
pub enum MaskInput {
    File,
    Painted { width: u32, height: u32 },
}

/// Options of a run, as the page's controls give them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    /// `instance` or `semantic`.
    pub embedding: String,
    /// `official`, `hf` or `none`.
    pub ensemble: String,
    /// Masks are class-index PNGs (8-bit grey or palette) rather than colours.
    pub class_masks: bool,
}

/// Page -> worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWorker {
    /// `half`: compute in f16 where the adapter has `shader-f16` (default; `?dtype=f32` turns it
    /// off; takes effect when the worker first starts its GPU device).
    /// `cache`: look for, and keep, a copy in browser storage (default; `?cache=off` turns it off).
    Load { source: ModelSource, half: bool, cache: bool },
    /// `files` = for each prompt its image then its mask (a File, or a Uint8Array when painted),
    /// then the targets.
    Segment { prompts: Vec<MaskInput>, targets: usize, options: RunOptions },
    /// Remove every cached model from browser storage.
    ClearCache,
    /// Panic, as a GPU out-of-memory error does (cubecl panics on uncaptured WebGPU errors): lets
    /// the tests check the restart path. Sent only with `?debug=panic`, once.
    DebugPanic,
}

/// Worker -> page.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToPage {
    /// The worker's wasm runs and listens; the page sends nothing before this.
    Started,
    /// Loading progress: `done` of `total` bytes (`total` 0 when unknown), shown with `text`.
    Progress { text: String, done: f64, total: f64 },
    /// The model is on the GPU. `note` says how it was stored (or why not).
    Ready { adapter: String, dtype: String, seconds: f64, note: String, max_prompts: usize },
    /// Target `index` is being segmented.
    Running { index: usize },
    /// Target `index` is done: `bytes` holds its mask PNG (the CLI's bytes), `rgb` the same mask as
    /// raw RGB, `labels` per pixel 0 (background) or 1 + the index of the nearest of `colours`, the
    /// prompts' mask colours (for per-colour toggles).
    Result { index: usize, seconds: f64, width: u32, height: u32, colours: Vec<[u8; 3]> },
    /// A run's error (bad input, too many prompts...); `index` names the target if it concerns one.
    Error { message: String, index: Option<usize> },
    /// The model could not be loaded (bad URL, network, wrong or corrupt weights, small GPU).
    LoadFailed { message: String },
    /// The cache was cleared.
    CacheCleared,
    /// The worker cannot go on (wasm panic, GPU out of memory, device lost): the page restarts it.
    Fatal { message: String },
}
