//! The browser app: two wasm files, two entry points (docs/ARCHITECTURE.md, "Two wasm files").
//!
//! - [`run_page`] runs on the page (`www/main.js`): components for the model, prompts, targets,
//!   options and results ([`page`]). It starts the worker. The page's wasm is this library without
//!   feature `burn`, so it loads before the model's code.
//! - `run_worker` (feature `burn`) runs in a module worker (`www/worker.js`, the wasm of `worker/`):
//!   WebGPU, model load, segmentation and PNG encoding, so the page never blocks on the slow parts.
//!
//! They talk through [`protocol`]: serde messages plus, where needed, files or bytes. The worker
//! streams the weights (`load`) into browser storage (`storage`).
//! There is no `#[wasm_bindgen(start)]`: the worker's wasm holds the page's code too.

#[cfg(feature = "burn")]
mod load;
mod package;
mod page;
mod protocol;
#[cfg(feature = "burn")]
mod storage;
#[cfg(feature = "burn")]
mod worker;
#[cfg(feature = "burn")]
mod worker_bench;

pub use package::{SegGptModel, load_model};
pub use page::run_page;
#[cfg(feature = "burn")]
pub use worker::run_worker;

use wasm_bindgen::{JsCast, JsValue};

/// Text of a JS error value: an `Error`'s message, else its string form.
fn js_text(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(err) => String::from(err.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}

/// The global scope of the worker (only call from worker code).
#[cfg(feature = "burn")]
fn worker_scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Seconds since an arbitrary origin (wall clock; good enough for user-facing timings).
fn now_s() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// A size for people: `812 KB`, `37.4 MB`, `1.48 GB` (a download's size and progress, page and worker).
fn size_text(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.0} KB", b / 1e3),
    }
}
