//! The fused attention kernel (docs/MODEL.md §21) in half precision on wgpu (lavapipe has
//! `shader-f16`): f16 inputs and outputs, f32 accumulation. The fixtures' forward pass with it stays
//! within the half-precision tolerance of `f16_wgpu.rs` of transformers' f32 outputs and of the same
//! pass with the reference attention. Its own test binary: the F16 default is set once per device
//! and process.

mod common;

use burn::tensor::{Device, DeviceKind, FloatDType, Tensor};
use common::{model_fixture_dirs, read_tensors, tensor4};
use seggpt::weights::{TensorSource, open_model};
use seggpt::{AttentionKernel, EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt};

/// The tolerance of `f16_wgpu.rs`, for the same comparison (see its reasoning there).
const TOLERANCE: f32 = 5e-2;

fn values(pred: Tensor<4>) -> Vec<f32> {
    let data = pred.into_data();
    assert_eq!(format!("{:?}", data.dtype()), "F16", "the forward pass ran in half precision");
    data.convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| if x.is_finite() { (x - y).abs() } else { f32::INFINITY })
        .fold(0.0, f32::max)
}

#[test]
fn fused_attention_in_half_precision_matches_on_the_fixtures() {
    let mut device: Device = Device::wgpu(DeviceKind::DefaultDevice);
    device.configure(FloatDType::F16).expect("this wgpu adapter supports F16 (lavapipe does)");
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
            if expected.shape(&key).is_none() {
                continue;
            }
            let run = |attention| {
                let options = ForwardOptions {
                    ensemble: Some(ensemble),
                    embedding_type: EmbeddingType::Instance,
                    attention,
                    ..ForwardOptions::default()
                };
                let pred = model
                    .forward(
                        tensor4(&inputs, "pixel_values", &device),
                        tensor4(&inputs, "prompt_pixel_values", &device),
                        tensor4(&inputs, "prompt_masks", &device),
                        options,
                        &mut |_, _| {},
                    )
                    .unwrap();
                values(pred)
            };
            let fused = run(AttentionKernel::Fused);
            let reference = run(AttentionKernel::Reference);
            let want = expected.read_f32(&key).unwrap();
            let label = format!("{} {key}", dir.display());
            let err = max_abs_diff(&fused, &want);
            assert!(err <= TOLERANCE, "{label}: fused f16 vs transformers {err}");
            let err_reference = max_abs_diff(&fused, &reference);
            assert!(err_reference <= TOLERANCE, "{label}: fused vs reference f16 {err_reference}");
            assert!(err_reference > 0.0, "{label}: bitwise equal outputs, the fused kernel did not run");
            worst = worst.max(err);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} comparisons");
    println!("fused attention in f16 on wgpu: {checked} comparisons, worst max abs error {worst:e}");
}
