//! seggpt-web: SegGPT ("Segmenting Everything In Context") in Rust with burn.
//!
//! Rooms, data flowing one way: files/bytes -> [`pipeline`] (decode, resize, normalise) ->
//! [`model`] (the ViT-L forward pass) -> [`pipeline`] (masks, class maps, overlays) -> pixels.
//! [`weights`] reads checkpoints for the model; [`segment`] ties pipeline and model together for
//! the CLI and the browser alike, and [`video`] does the same for a clip, frame by frame; `web`
//! (wasm32 only) is the browser app's page and worker.

pub mod archive;
pub mod bench;
pub mod clicks;
pub mod clip;
#[cfg(feature = "burn")]
pub mod config;
pub mod eval;
pub mod export;
pub mod fnv;
pub mod model;
#[cfg(feature = "burn")]
pub mod model_fetch;
pub mod natural;
pub mod paint;
pub mod pipeline;
#[cfg(feature = "burn")]
pub mod sam;
#[cfg(feature = "burn")]
pub mod segment;
#[cfg(feature = "burn")]
pub mod select;
#[cfg(feature = "burn")]
pub mod tune;
pub mod tune_page;
#[cfg(feature = "burn")]
pub mod video;
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(feature = "burn")]
pub mod weights;

#[cfg(feature = "burn")]
pub use config::SegGptConfig;
pub use model::{AttentionKernel, EmbeddingType, Ensemble};
#[cfg(feature = "burn")]
pub use model::{ForwardOptions, MemoryBudget, SegGpt, largest_buffer_bytes, max_prompts, parameter_shapes};
