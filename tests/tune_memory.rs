//! GPU memory of one prompt-tuning step on wgpu, as reported by the device's allocator: the
//! released model's width and canvas (1024 hidden, 16 heads, 896 x 448) cut to a few encoder blocks,
//! so every activation has its real size at a fraction of the work. It prints the measurement beside
//! `seggpt::tune::step_memory`'s estimate (docs/MODEL.md §19; on lavapipe on this 2-core machine one
//! step of the 1-block model did not finish in 47 minutes, so no wgpu number is recorded yet). Run on
//! request, one configuration per process (the allocator keeps its pages, so a second run in the
//! same process would read the first one's high-water mark). `TUNE_MEMORY_ACTIVATIONS=keep` keeps every
//! activation; anything else recomputes them block by block (docs/MODEL.md §23):
//!
//!     TUNE_MEMORY_BLOCKS=1 TUNE_MEMORY_BATCH=1 TUNE_MEMORY_ACTIVATIONS=keep cargo test --release --locked --test tune_memory -- --ignored --nocapture

mod common;

use std::time::Instant;

use seggpt::config::Size2;
use seggpt::pipeline::ChwImage;
use seggpt::segment::TunedPrompt;
use seggpt::tune::{Activations, TrainingPair, TuneSettings, Tuner, step_memory};
use seggpt::weights::RandomSource;
use seggpt::{EmbeddingType, MemoryBudget, SegGpt, SegGptConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

#[test]
#[ignore = "a measurement on a software Vulkan device (minutes): run with --ignored --nocapture"]
fn one_tuning_step_on_wgpu() {
    let blocks = env("TUNE_MEMORY_BLOCKS", 1);
    let batch = env("TUNE_MEMORY_BATCH", 1);
    let activations = match std::env::var("TUNE_MEMORY_ACTIVATIONS").as_deref() {
        Ok("keep") => Activations::Keep,
        _ => Activations::Recompute,
    };
    // A narrower model on a smaller canvas for a software device: TUNE_MEMORY_HIDDEN,
    // TUNE_MEMORY_HEADS and TUNE_MEMORY_HEIGHT (the canvas is HEIGHT x HEIGHT/2).
    let hidden = env("TUNE_MEMORY_HIDDEN", 1024);
    let height = env("TUNE_MEMORY_HEIGHT", 896);
    let config = SegGptConfig {
        num_hidden_layers: blocks,
        merge_index: 0,
        intermediate_hidden_state_indices: (0..blocks).collect(),
        hidden_size: hidden,
        num_attention_heads: env("TUNE_MEMORY_HEADS", 16),
        mlp_dim: Some(4 * hidden),
        image_size: Size2::HeightWidth([height, height / 2]),
        ..SegGptConfig::default()
    };
    let device = common::wgpu();
    let weights = RandomSource::new(&config, 7).unwrap();
    let model = SegGpt::load(&weights, config.clone(), &device, MemoryBudget::DEFAULT).unwrap();
    let loaded = device.memory_pool_usage().expect("wgpu reports its memory pools");
    let (h, w) = config.half_image_size();
    let image = |seed: f32| {
        let values = (0..3 * h * w).map(|i| ((i as f32 * 0.618 + seed).fract() - 0.5) * 4.0).collect();
        ChwImage::new(3, h, w, values).unwrap()
    };
    let pairs: Vec<TrainingPair> = (0..batch)
        .map(|i| TrainingPair { image: image(0.1 + i as f32 * 0.01), label: image(0.2 + i as f32 * 0.01) })
        .collect();
    let settings = TuneSettings {
        lr: 0.05,
        weight_decay: 0.01,
        batch,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        activations,
    };
    let mut tuner = Tuner::new(&TunedPrompt { pixel_values: image(0.3), masks: image(0.4) }, settings);
    let start = Instant::now();
    let loss = tuner.step(&model, &device, &pairs).unwrap();
    let after = device.memory_pool_usage().expect("wgpu reports its memory pools");
    let step_bytes = after.bytes_reserved.saturating_sub(loaded.bytes_reserved);
    let estimate = step_memory(&config, batch, activations);
    println!(
        "blocks {blocks}, hidden {hidden}, canvas {height} x {}, batch {batch}, activations {}: weights in use {:.1} MiB (reserved {:.1} MiB); after one step \
         reserved {:.1} MiB, so the step reserved {:.1} MiB more; estimate {:.1} MiB; loss {loss:.4}; {:.1} s",
        height / 2,
        activations.name(),
        mib(loaded.bytes_in_use),
        mib(loaded.bytes_reserved),
        mib(after.bytes_reserved),
        mib(step_bytes),
        mib(estimate.activation_bytes),
        start.elapsed().as_secs_f64()
    );
    assert!(loss.is_finite());
}
