//! The browser's half-precision path (used where the adapter has `shader-f16`), run natively on wgpu
//! (lavapipe has the feature): the device's default float type is F16, so weights, activations and
//! results are f16 on the GPU. SegGPT's model fixtures and (second tier) SAM's are compared with
//! transformers' f32 outputs at a half-precision tolerance. Its own test binary: the F16 default is
//! set once per device and process (`f16_wgpu` sets it for every test here).

mod common;

use std::sync::OnceLock;

use burn::tensor::{DType, Device, FloatDType, Tensor};
use common::sam::{Differences, matches_transformers_on, wgpu_cases};
use common::{model_fixture_dirs, read_tensors, tensor4};
use seggpt::weights::{TensorSource, open_model};
use seggpt::{EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt};

/// f16 has 11 significant bits (relative step 4.9e-4); the outputs are O(1) (normalised pixels)
/// after 4 blocks and the decoder of roundings, and measured 1.7e-2 at worst on lavapipe (2.6e-2
/// before LayerNorm statistics were taken in f32). A broken
/// half-precision path (overflow, NaN, a wrong layout) is off by O(1), far above 5e-2.
const TOLERANCE: f32 = 5e-2;

/// The wgpu device with F16 as its default float type, configured once for every test here.
fn f16_wgpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut device = common::wgpu();
            device.configure(FloatDType::F16).expect("this wgpu adapter supports F16 (lavapipe does)");
            device
        })
        .clone()
}

#[test]
fn fixtures_match_transformers_in_half_precision_on_wgpu() {
    let device = f16_wgpu();
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

/// SAM in half precision, as the page runs it on SegGPT's device where the adapter has
/// `shader-f16`: the tiny fixture model on the image and two cases of its f32 wgpu twin
/// (`tier2_sam_matches_transformers_on_wgpu` in `tests/sam_fixtures.rs`), against transformers' f32
/// outputs, every output read back as F16 and finite.
///
/// The bound is [`TOLERANCE`], for the same reason as SegGPT's: the image embedding is O(1) (a
/// LayerNorm's output: at most 4.0, rms 1.06) after 4 ViT blocks and the neck, as deep as SegGPT's
/// fixture. The decoder's outputs are smaller (low-resolution logits at most 0.23, IoU scores 0.74),
/// but they are made from O(1) activations (its tokens and upscaled features are LayerNormed), so
/// their rounding errors are at most of that scale. Measured on lavapipe (AVX2): 1.5e-2 on the
/// embeddings, 4.8e-3 on the logits, 2.0e-3 on the scores, 3.3e-3 on the logits at the image's
/// size. lavapipe compiles the kernels for the host's vector unit: with AVX2 (F16C) an f16
/// operation runs in f32 and is rounded on the way back, a CPU with AVX-512 FP16 may run it
/// natively, and the vector width (8 or 16 lanes) and FMA contraction change the order of the sums.
/// Each rounding is still at most 4.9e-4 relative (an f32 intermediate is finer, not coarser), so
/// another CPU changes the signs and order of the same roundings, not their size: their sum moves by
/// a fraction of itself, within the 3x margin of the tightest (the embeddings). Nothing can overflow
/// f16 (65504) on one CPU and not another: LayerNorm statistics are taken in f32
/// (`model::nn::LayerNorm`), burn's softmax subtracts the row maximum, and the activations are
/// O(1). A broken half-precision path is off by the outputs' own size (0.2 to 4) or non-finite.
#[test]
#[ignore = "second tier: 2.8 minutes of kernel compilation on lavapipe, as its f32 twin's 2.3"]
fn tier2_sam_matches_transformers_in_half_precision_on_wgpu() {
    let worst = matches_transformers_on(&f16_wgpu(), &wgpu_cases(), DType::F16, Differences::all(TOLERANCE));
    println!(
        "SAM in f16 on wgpu, worst max abs error: image embeddings {:e}, pred_masks {:e}, \
         iou_scores {:e}, masks at the image's size {:e}",
        worst.image_embeddings, worst.pred_masks, worst.iou_scores, worst.masks
    );
}
