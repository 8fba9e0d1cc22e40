//! Messages between the page and the worker. Each is `{ msg: <JSON of these enums>, files?, bytes? }`:
//! small fields as JSON, files and result bytes as JS objects (big buffers are transferred).

use serde::{Deserialize, Serialize};

/// Page -> worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWorker {
    /// Load the model from a directory URL (`config.json` + `model.safetensors`) or a
    /// `.safetensors` URL (with `config.json` beside it). Absolute URL.
    Load { model: String },
    /// Segment: `files` = [prompt image, prompt mask, target 0, target 1, ...].
    Segment,
}

/// Worker -> page.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToPage {
    /// The worker's wasm is running and it listens; the page sends nothing before this.
    Started,
    /// Model loading progress, shown as is.
    Status { text: String },
    /// The model is on the GPU.
    Ready { adapter: String, seconds: f64 },
    /// Target `index` is being segmented.
    Running { index: usize },
    /// Target `index` is done; `bytes` holds its mask PNG.
    Result { index: usize, seconds: f64 },
    /// A recoverable error (bad input, bad URL...); `index` names the target if it concerns one.
    Error { message: String, index: Option<usize> },
    /// The worker's wasm panicked: the instance is poisoned, nothing more will come.
    Fatal { message: String },
}
