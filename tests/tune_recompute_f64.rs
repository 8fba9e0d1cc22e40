//! Tuning with the activations recomputed block by block (docs/MODEL.md §23) against keeping them,
//! computed in f64 on the CPU backend so that the order of the sums, which differs between the two
//! (in f32 each is up to 1e-5 off exact on the tiny fixture models, tests/tune_recompute.rs), does
//! not hide a real difference: on every fixture model, for one and two training pairs, the loss and
//! both prompt gradients agree to 1e-6. Its own test binary: the CPU device's float type is set
//! once per process, before first use.

mod common;

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use common::*;
use seggpt::tune::{Activations, TrainingPair, prompt_gradients};
use seggpt::weights::open_model;
use seggpt::{EmbeddingType, MemoryBudget, SegGpt};

const TOLERANCE: f32 = 1e-6;

#[test]
fn recompute_equals_keep_in_f64_on_every_fixture_model() {
    let mut device = cpu();
    device.configure(FloatDType::F64).expect("the CPU backend computes in f64");
    // f32 data (the weights, the prompt) becomes f64 on this device.
    let probe = Tensor::<1>::from_data(TensorData::new(vec![1f32], [1]), &device);
    assert_eq!(probe.dtype(), DType::F64);
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
