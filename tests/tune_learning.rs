//! Prompt tuning learns: on a synthetic task ("segment the red squares" on random backgrounds)
//! with a small random model, tuning lowers the held-out loss below the initial prompt's.
//!
//! `cargo test --release --test tune_learning -- --nocapture` prints the curve; the ignored
//! `learning_rate_sweep` prints the held-out loss after a fixed budget for several learning rates
//! and batch sizes, which is how the defaults of `seggpt tune` were chosen (docs/MODEL.md §16).

use burn::tensor::Device;
use seggpt::pipeline::RgbImage;
use seggpt::segment::{Prompt, PromptMask, TunedPrompt};
use seggpt::tune::{Activations, TrainingPair, TuneSettings, Tuner, evaluate};
use seggpt::weights::RandomSource;
use seggpt::{EmbeddingType, MemoryBudget, SegGpt, SegGptConfig};

/// A small model: 64 x 32 canvas (half canvas 32 x 32), patches of 4, 4 blocks of width 32.
const CONFIG: &str = r#"{"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "mlp_dim": 64,
    "patch_size": 4, "image_size": [64, 32], "pretrain_image_size": 16, "decoder_hidden_size": 8,
    "merge_index": 2, "intermediate_hidden_state_indices": [2, 3]}"#;
const SIDE: u32 = 32;

/// xorshift64*, for the synthetic images.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() >> 33) as u32 % n
    }
}

/// A random non-red background (smooth colour plus noise) with 1 to 3 red squares; the mask is
/// white on the squares and black elsewhere.
fn red_squares(rng: &mut Rng) -> Prompt {
    let n = (SIDE * SIDE) as usize;
    let base = [rng.below(120), 60 + rng.below(160), 60 + rng.below(160)];
    let mut image: Vec<u8> = (0..n).flat_map(|_| base.map(|b| (b + rng.below(60)).min(255) as u8)).collect();
    let mut mask = vec![0u8; 3 * n];
    for _ in 0..1 + rng.below(3) {
        let size = 6 + rng.below(8);
        let (x0, y0) = (rng.below(SIDE - size), rng.below(SIDE - size));
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                let i = 3 * (y * SIDE + x) as usize;
                image[i..i + 3].copy_from_slice(&[220, 20, 20]);
                mask[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
    Prompt {
        image: RgbImage::new(SIDE, SIDE, image).unwrap(),
        mask: PromptMask::Rgb(RgbImage::new(SIDE, SIDE, mask).unwrap()),
    }
}

struct Task {
    model: SegGpt,
    device: Device,
    train: Vec<TrainingPair>,
    held_out: Vec<TrainingPair>,
    init: TunedPrompt,
}

fn task() -> Task {
    let config = SegGptConfig::from_json(CONFIG).unwrap();
    let device = Device::flex();
    let model = SegGpt::load(&RandomSource::new(&config, 3).unwrap(), config, &device, MemoryBudget::DEFAULT)
        .unwrap();
    let (h, w) = model.config().half_image_size();
    let mut rng = Rng(0x5eed);
    let mut pairs = (0..12).map(|_| {
        let (image, label) = red_squares(&mut rng).prepare(h, w).unwrap();
        TrainingPair { image, label }
    });
    let train: Vec<TrainingPair> = pairs.by_ref().take(8).collect();
    let held_out: Vec<TrainingPair> = pairs.collect();
    // The first training pair starts the prompt, as `seggpt tune` does without --init.
    let init = TunedPrompt { pixel_values: train[0].image.clone(), masks: train[0].label.clone() };
    Task { model, device, train, held_out, init }
}

/// The held-out loss after each of `checkpoints` steps (the first entry is the start).
fn curve(task: &Task, settings: TuneSettings, checkpoints: &[u64]) -> Vec<(u64, f32)> {
    let mut tuner = Tuner::new(&task.init, settings);
    let held_out = |t: &Tuner| {
        evaluate(&task.model, &task.device, &t.prompt(), &task.held_out, 4, EmbeddingType::Instance).unwrap()
    };
    let mut out = vec![(0, held_out(&tuner))];
    for &at in checkpoints {
        while tuner.steps() < at {
            tuner.step(&task.model, &task.device, &task.train).unwrap();
        }
        out.push((at, held_out(&tuner)));
    }
    out
}

fn settings(lr: f64, batch: usize) -> TuneSettings {
    TuneSettings {
        lr,
        weight_decay: seggpt::tune::DEFAULT_WEIGHT_DECAY,
        batch,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        activations: Activations::Keep,
    }
}

#[test]
fn tuning_lowers_the_held_out_loss() {
    let task = task();
    let settings = settings(seggpt::tune::DEFAULT_LR, seggpt::tune::DEFAULT_BATCH);
    let curve = curve(&task, settings, &[10, 20, 30, 40]);
    for (step, loss) in &curve {
        println!("step {step:3}: held-out loss {loss:.4}");
    }
    let (start, end) = (curve[0].1, curve.last().unwrap().1);
    assert!(end < 0.95 * start, "held-out loss went from {start} to {end}; expected at least 5% lower");
}

#[test]
#[ignore = "a measurement (minutes), not a check: cargo test --release --test tune_learning -- --ignored --nocapture"]
fn learning_rate_sweep() {
    let task = task();
    for batch in [1, 2, 4] {
        for lr in [0.01, 0.02, 0.05, 0.1, 0.2, 0.5] {
            let curve = curve(&task, settings(lr, batch), &[20, 40, 100]);
            println!(
                "batch {batch} lr {lr:4}: held-out {:.4} -> {:.4} (20 steps) -> {:.4} (40) -> {:.4} (100)",
                curve[0].1, curve[1].1, curve[2].1, curve[3].1
            );
        }
    }
}

#[test]
#[ignore = "a measurement, not a check: cargo test --release --test tune_learning -- --ignored default_curve --nocapture"]
fn default_curve() {
    let task = task();
    let settings = settings(seggpt::tune::DEFAULT_LR, seggpt::tune::DEFAULT_BATCH);
    let steps: Vec<u64> = (1..=10).map(|i| i * 10).collect();
    for (step, loss) in curve(&task, settings, &steps) {
        println!("step {step:3}: held-out loss {loss:.4}");
    }
}
