//! The browser's half-precision path (used where the adapter has `shader-f16`), run natively on wgpu
//! (lavapipe has the feature): the device's default float type is F16, so weights, activations and
//! results are f16 on the GPU. Compared with transformers' f32 outputs at a half-precision tolerance.
//! Its own test binary: the F16 default is set once per device and process.

mod common;

use burn::tensor::{Device, DeviceKind, FloatDType, Tensor};
use common::{model_fixture_dirs, read_tensors, tensor4};
use seggpt::weights::{TensorSource, open_model};
use seggpt::{EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt};

/// f16 has 11 significant bits (relative step 4.9e-4); the outputs are O(1) (normalised pixels)
/// after 4 blocks and the decoder of roundings, and measured 1.7e-2 at worst on lavapipe (2.6e-2
/// before LayerNorm statistics were taken in f32). A broken
/// half-precision path (overflow, NaN, a wrong layout) is off by O(1), far above 5e-2.
const TOLERANCE: f32 = 5e-2;

#[test]
fn fixtures_match_transformers_in_half_precision_on_wgpu() {
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
            let Some(shape) = expected.shape(&key) else { continue };
            let pred: Tensor<4> = model
                .forward(
                    tensor4(&inputs, "pixel_values", &device),
                    tensor4(&inputs, "prompt_pixel_values", &device),
                    tensor4(&inputs, "prompt_masks", &device),
                    ForwardOptions {
                        ensemble: Some(ensemble),
                        embedding_type: EmbeddingType::Instance,
                        budget: MemoryBudget::DEFAULT,
                        ..ForwardOptions::default()
                    },
                    &mut |_, _| {},
                )
                .unwrap();
            assert_eq!(pred.dims().to_vec(), shape);
            let data = pred.into_data();
            assert_eq!(format!("{:?}", data.dtype()), "F16", "the forward pass ran in half precision");
            let got = data.try_into_vec_as::<f32>().unwrap();
            let want = expected.read_f32(&key).unwrap();
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(got.iter().all(|v| v.is_finite()), "{} {key}: non-finite output", dir.display());
            assert!(err <= TOLERANCE, "{} {key}: max abs error {err} in f16", dir.display());
            worst = worst.max(err);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} comparisons");
    println!("f16 on wgpu: {checked} comparisons, worst max abs error {worst:e}");
}
