//! The worker's wasm: the library's `run_worker` entry point, built with the model. Its
//! `#[wasm_bindgen]` export comes with the library; there is nothing else here.

#[cfg(target_arch = "wasm32")]
pub use seggpt::web::run_worker;
