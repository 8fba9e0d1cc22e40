//! The browser app: one wasm with two entry points.
//!
//! - [`run_page`] runs on the page (`www/main.js`): components for the model, prompts, targets,
//!   options and results ([`page`]). It starts the worker.
//! - [`run_worker`] runs in a module worker (`www/worker.js`): WebGPU, model load, segmentation and
//!   PNG encoding, so the page never blocks on the slow parts.
//!
//! They talk through [`protocol`]: serde messages plus, where needed, files or bytes. The worker
//! streams the weights ([`load`]) into browser storage ([`storage`]).
//! There is no `#[wasm_bindgen(start)]`: it would run in both places.

mod load;
mod page;
mod protocol;
mod storage;
mod worker;

pub use page::run_page;
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
fn worker_scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Seconds since an arbitrary origin (wall clock; good enough for user-facing timings).
fn now_s() -> f64 {
    js_sys::Date::now() / 1000.0
}
