//! One prompt-tuning step of the full-size model (random weights) on the CPU backend: the time
//! per step and the process's peak memory, to set beside scripts/bench_tune_torch.py. A
//! benchmark, not a check (docs/MODEL.md §16):
//!
//!     cargo test --release --locked --test tune_bench -- --ignored --nocapture

use std::time::Instant;

use burn::tensor::Device;
use seggpt::pipeline::ChwImage;
use seggpt::segment::TunedPrompt;
use seggpt::tune::{Activations, TrainingPair, TuneSettings, Tuner};
use seggpt::weights::RandomSource;
use seggpt::{EmbeddingType, MemoryBudget, SegGpt, SegGptConfig};

fn peak_rss_gib() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / (1u64 << 20) as f64
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "a full-size benchmark (minutes, ~10 GB): run it on its own with --ignored --nocapture"]
fn full_size_tuning_step_on_cpu() {
    let config = SegGptConfig::default();
    let device = Device::flex();
    let start = Instant::now();
    let model = SegGpt::load(&RandomSource::new(&config, 0).unwrap(), config, &device, MemoryBudget::DEFAULT)
        .unwrap();
    println!(
        "random weights loaded in {:.1} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
    let (h, w) = model.config().half_image_size();
    let image = |seed: f32| {
        let values = (0..3 * h * w).map(|i| ((i as f32 * 0.618 + seed).fract() - 0.5) * 4.0).collect();
        ChwImage::new(3, h, w, values).unwrap()
    };
    let pairs = vec![TrainingPair { image: image(0.1), label: image(0.2) }];
    let settings = TuneSettings {
        lr: 0.05,
        weight_decay: 0.01,
        batch: 1,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        activations: Activations::Keep,
    };
    let mut tuner = Tuner::new(&TunedPrompt { pixel_values: image(0.3), masks: image(0.4) }, settings);
    for step in 1..=2 {
        let start = Instant::now();
        let loss = tuner.step(&model, &device, &pairs).unwrap();
        println!(
            "burn step {step}: {:.2} s, loss {loss:.4}, peak RSS so far {:.2} GiB (batch 1, load average {})",
            start.elapsed().as_secs_f64(),
            peak_rss_gib(),
            load_average()
        );
    }
}
