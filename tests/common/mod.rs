//! Shared helpers of the fixture tests: fixture paths, devices, tensor comparison.
#![allow(dead_code)]

pub mod sam;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use seggpt::weights::{SafetensorsSource, TensorSource};

/// Runs the `seggpt` binary of this build with `args`.
pub fn seggpt(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_seggpt"))
        .args(args)
        .output()
        .expect("the seggpt binary runs")
}

/// What a run printed on standard error.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Directories under `tests/fixtures/models` holding a reference model and its outputs.
/// A model fixture on `device`: the model (loaded within the default budget), its inputs and
/// transformers' outputs.
pub fn load_fixture(dir: &Path, device: &Device) -> (seggpt::SegGpt, SafetensorsSource, SafetensorsSource) {
    let files = seggpt::weights::open_model(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let model =
        seggpt::SegGpt::load(files.source.as_ref(), files.config, device, seggpt::MemoryBudget::DEFAULT)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (model, read_tensors(&dir.join("inputs.safetensors")), read_tensors(&dir.join("expected.safetensors")))
}

pub fn model_fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("models"))
        .expect("tests/fixtures/models exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no model fixtures found");
    dirs
}

pub fn cpu() -> Device {
    Device::flex()
}

/// burn's wgpu backend (fusion on), on whatever adapter the machine has: lavapipe in CI.
pub fn wgpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

pub fn read_tensors(path: &Path) -> SafetensorsSource {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    SafetensorsSource::from_bytes(bytes).unwrap()
}

pub fn tensor4(source: &SafetensorsSource, name: &str, device: &Device) -> Tensor<4> {
    let shape: [usize; 4] = source.shape(name).unwrap_or_else(|| panic!("no {name}")).try_into().unwrap();
    Tensor::from_data(TensorData::new(source.read_f32(name).unwrap(), shape), device)
}

/// Largest absolute difference; panics on a shape mismatch.
pub fn max_abs_diff(actual: Tensor<4>, expected: &[f32], expected_shape: &[usize]) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected_shape, "output shape");
    let actual = actual.into_data().try_into_vec::<f32>().unwrap();
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| if a.is_nan() || e.is_nan() { f32::INFINITY } else { (a - e).abs() })
        .fold(0.0, f32::max)
}

/// Max abs difference over the expected values' max abs (the tuning tests' gradient measure).
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "the expected gradient is zero: nothing is compared");
    actual.iter().zip(expected).fold(0f32, |m, (a, e)| m.max((a - e).abs())) / scale
}

/// A deterministic `(3, h, w)` image of normalised values.
pub fn synthetic_image((h, w): (usize, usize), seed: f32) -> seggpt::pipeline::ChwImage {
    let values = (0..3 * h * w).map(|i| ((i as f32 * 0.618_034 + seed).fract() - 0.5) * 4.0).collect();
    seggpt::pipeline::ChwImage::new(3, h, w, values).unwrap()
}

/// The prompt and the two training pairs the recomputation tests tune with, at `half` size.
pub fn synthetic_prompt_and_pairs(
    half: (usize, usize),
) -> (seggpt::segment::TunedPrompt, Vec<seggpt::tune::TrainingPair>) {
    let prompt = seggpt::segment::TunedPrompt {
        pixel_values: synthetic_image(half, 0.3),
        masks: synthetic_image(half, 0.4),
    };
    let pairs = (0..2)
        .map(|i| seggpt::tune::TrainingPair {
            image: synthetic_image(half, 0.1 + i as f32 * 0.05),
            label: synthetic_image(half, 0.2 + i as f32),
        })
        .collect();
    (prompt, pairs)
}

/// The tuner tests' start: a prompt and three training pairs of the model's half canvas.
pub fn tuner_inputs(half: (usize, usize)) -> (seggpt::segment::TunedPrompt, Vec<seggpt::tune::TrainingPair>) {
    let pairs = (0..3)
        .map(|i| seggpt::tune::TrainingPair {
            image: synthetic_image(half, 0.15 * i as f32),
            label: synthetic_image(half, 0.7 + i as f32),
        })
        .collect();
    let init = seggpt::segment::TunedPrompt {
        pixel_values: synthetic_image(half, 0.3),
        masks: synthetic_image(half, 0.4),
    };
    (init, pairs)
}

/// Three `Tuner` steps (lr 0.05, batch 2 of the pairs, seed 1) with the activations kept or
/// recomputed: the losses before each step and the prompt after them.
pub fn tune_three_steps(
    model: &seggpt::SegGpt,
    device: &Device,
    init: &seggpt::segment::TunedPrompt,
    pairs: &[seggpt::tune::TrainingPair],
    activations: seggpt::tune::Activations,
) -> (Vec<f32>, seggpt::segment::TunedPrompt) {
    let settings = seggpt::tune::TuneSettings {
        lr: 0.05,
        weight_decay: 0.01,
        batch: 2,
        seed: 1,
        embedding_type: seggpt::EmbeddingType::Instance,
        activations,
    };
    let mut tuner = seggpt::tune::Tuner::new(init, settings);
    let losses = (0..3).map(|_| tuner.step(model, device, pairs).unwrap()).collect();
    (losses, tuner.prompt())
}
