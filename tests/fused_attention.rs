//! The fused attention kernel (docs/MODEL.md §21) against the reference attention path on the
//! fixture models, on wgpu (lavapipe here) in f32: the whole forward pass of each fixture within
//! 1e-4 of the same pass with the reference attention, and of transformers' outputs.

mod common;

use common::{max_abs_diff, model_fixture_dirs, read_tensors, tensor4, wgpu};
use seggpt::weights::{TensorSource, open_model};
use seggpt::{AttentionKernel, EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt};

#[test]
fn fused_attention_matches_the_reference_path_on_the_fixtures() {
    let device = wgpu();
    let mut worst = 0.0f32;
    let mut checked = 0;
    for dir in model_fixture_dirs() {
        let files = open_model(&dir).unwrap();
        let model =
            SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT).unwrap();
        let inputs = read_tensors(&dir.join("inputs.safetensors"));
        let expected = read_tensors(&dir.join("expected.safetensors"));
        for (mode, ensemble) in [("official", Ensemble::Official), ("none", Ensemble::None)] {
            let key = format!("pred_masks.{mode}.instance");
            let Some(shape) = expected.shape(&key) else { continue };
            let run = |attention| {
                let options = ForwardOptions {
                    ensemble: Some(ensemble),
                    embedding_type: EmbeddingType::Instance,
                    attention,
                    ..ForwardOptions::default()
                };
                model
                    .forward(
                        tensor4(&inputs, "pixel_values", &device),
                        tensor4(&inputs, "prompt_pixel_values", &device),
                        tensor4(&inputs, "prompt_masks", &device),
                        options,
                        &mut |_, _| {},
                    )
                    .unwrap()
            };
            let reference = run(AttentionKernel::Reference);
            let reference_values = reference.into_data().try_into_vec::<f32>().unwrap();
            let fused = run(AttentionKernel::Fused);
            let err = max_abs_diff(fused.clone(), &reference_values, &shape);
            let label = format!("{} {key}", dir.display());
            assert!(err <= 1e-4, "{label}: fused vs reference max abs difference {err}");
            // Different summation orders cannot agree to the bit over a whole forward pass.
            assert!(err > 0.0, "{label}: bitwise equal outputs, the fused kernel did not run");
            let err_transformers = max_abs_diff(fused, &expected.read_f32(&key).unwrap(), &shape);
            assert!(err_transformers <= 1e-4, "{label}: fused vs transformers {err_transformers}");
            worst = worst.max(err);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} comparisons");
    println!("fused attention on wgpu: {checked} comparisons, worst max abs difference {worst:e}");
}
