//! Tuning with the activations recomputed block by block (docs/MODEL.md §23) against keeping them,
//! computed in f64 on the CPU backend so that the order of the sums, which differs between the two
//! (in f32 each is up to 1e-5 off exact on the tiny fixture models, tests/tune_recompute.rs), does
//! not hide a real difference: on every fixture model, for one and two training pairs, the loss and
//! both prompt gradients agree to 1e-6, and three tuner steps of either learn the same prompt. Its
//! own test binary: the CPU device's float type is set once per process, before first use.

mod common;

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use common::*;
use seggpt::tune::{Activations, TrainingPair, prompt_gradients};
use seggpt::weights::open_model;
use seggpt::{EmbeddingType, MemoryBudget, SegGpt};

const TOLERANCE: f32 = 1e-6;

/// The CPU device computing in f64 (f32 data, the weights and the prompt, becomes f64 on it). Its
/// float type is set once for the process, by whichever test comes first.
fn cpu_f64() -> burn::tensor::Device {
    static CONFIGURE: std::sync::Once = std::sync::Once::new();
    let mut device = cpu();
    CONFIGURE.call_once(|| device.configure(FloatDType::F64).expect("the CPU backend computes in f64"));
    let probe = Tensor::<1>::from_data(TensorData::new(vec![1f32], [1]), &device);
    assert_eq!(probe.dtype(), DType::F64);
    device
}

#[test]
fn recompute_equals_keep_in_f64_on_every_fixture_model() {
    let device = cpu_f64();
    for dir in model_fixture_dirs() {
        let files = open_model(&dir).unwrap();
        let model =
            SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT).unwrap();
        let half = model.config().half_image_size();
        let (prompt, pairs) = synthetic_prompt_and_pairs(half);
        for b in [1, 2] {
            let batch: Vec<&TrainingPair> = pairs[..b].iter().collect();
            let run = |activations| {
                prompt_gradients(&model, &device, &prompt, &batch, EmbeddingType::Instance, activations)
                    .unwrap()
            };
            let (keep, recompute) = (run(Activations::Keep), run(Activations::Recompute));
            let name = dir.file_name().unwrap().to_string_lossy();
            let loss_err = (recompute.loss - keep.loss).abs() / keep.loss.abs();
            let pixel_err = relative_error(&recompute.pixel_values, &keep.pixel_values);
            let mask_err = relative_error(&recompute.masks, &keep.masks);
            println!(
                "{name}, batch {b}: relative errors loss {loss_err:e}, gradients {pixel_err:e}, {mask_err:e}"
            );
            assert!(loss_err < TOLERANCE, "{name}, batch {b}: loss relative error {loss_err:e}");
            assert!(pixel_err < TOLERANCE, "{name}, batch {b}: prompt_pixel_values gradient {pixel_err:e}");
            assert!(mask_err < TOLERANCE, "{name}, batch {b}: prompt_masks gradient {mask_err:e}");
        }
    }
}

/// `Tuner::step` takes the path its settings name: three steps of either learn the same prompt.
/// The gradients are computed in f64 and agree to about 1e-12 (relative), so they round to the
/// same f32 values, or one unit in the last place apart, before the host's f32 AdamW; an update
/// moves a component by at most about lr, so one unit of f32 rounding in the gradient moves the
/// prompt by at most about lr * 1e-7 a step. A real difference moves it by about lr.
#[test]
fn the_tuner_recomputes_when_told_and_learns_the_same_prompt() {
    let device = cpu_f64();
    let files = open_model(&fixtures().join("models/merge1-k2")).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT).unwrap();
    let (init, pairs) = tuner_inputs(model.config().half_image_size());
    let (keep_losses, keep) = tune_three_steps(&model, &device, &init, &pairs, Activations::Keep);
    let (losses, recomputed) = tune_three_steps(&model, &device, &init, &pairs, Activations::Recompute);
    for (a, b) in losses.iter().zip(&keep_losses) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "losses {losses:?} vs {keep_losses:?}");
    }
    assert_ne!(keep.pixel_values.as_slice(), init.pixel_values.as_slice(), "the prompt did not move");
    for (a, b) in [(&recomputed.pixel_values, &keep.pixel_values), (&recomputed.masks, &keep.masks)] {
        let err = a.as_slice().iter().zip(b.as_slice()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-6, "the prompts differ by {err:e}");
    }
}
