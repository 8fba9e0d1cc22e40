//! The model against transformers: every reference fixture (tests/fixtures/models/*, written by
//! scripts/make_fixtures.py) within 1e-4 max abs error, on the CPU backend and on wgpu.

mod common;

use burn::tensor::Device;
use common::*;
use seggpt::weights::{SafetensorsSource, TensorSource, open_model};
use seggpt::{EmbeddingType, Ensemble, ForwardOptions, SegGpt};

const TOLERANCE: f32 = 1e-4;

const MODES: [(&str, Ensemble); 3] =
    [("official", Ensemble::Official), ("hf", Ensemble::Hf), ("none", Ensemble::None)];
const EMBEDDINGS: [(&str, EmbeddingType); 2] =
    [("instance", EmbeddingType::Instance), ("semantic", EmbeddingType::Semantic)];

/// Runs every fixture in every mode on `device`; returns the number of comparisons.
fn check_all_fixtures(device: &Device, weights_file: Option<&str>, chunk_bytes: Option<usize>) -> usize {
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in model_fixture_dirs() {
        let path = match weights_file {
            Some(file) if dir.join(file).exists() => dir.join(file),
            Some(_) => continue,
            None => dir.clone(),
        };
        let files = open_model(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let config =
            if weights_file.is_some() { open_model(&dir).unwrap().config } else { files.config.clone() };
        let model = SegGpt::load(files.source.as_ref(), config, device)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let inputs = read_tensors(&dir.join("inputs.safetensors"));
        let expected = read_tensors(&dir.join("expected.safetensors"));
        for (mode_name, ensemble) in MODES {
            for (emb_name, embedding_type) in EMBEDDINGS {
                let key = format!("pred_masks.{mode_name}.{emb_name}");
                let Some(shape) = expected.shape(&key) else { continue };
                let pred = model
                    .forward(
                        tensor4(&inputs, "pixel_values", device),
                        tensor4(&inputs, "prompt_pixel_values", device),
                        tensor4(&inputs, "prompt_masks", device),
                        ForwardOptions { ensemble: Some(ensemble), embedding_type, chunk_bytes },
                        &mut |_, _| {},
                    )
                    .unwrap();
                let err = max_abs_diff(pred, &expected.read_f32(&key).unwrap(), &shape);
                if err > TOLERANCE {
                    failures.push(format!("{} {key}: max abs error {err:e}", dir.display()));
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "outside {TOLERANCE}:\n{}", failures.join("\n"));
    checked
}

#[test]
fn every_fixture_matches_transformers_on_cpu() {
    let n = check_all_fixtures(&cpu(), None, None);
    assert!(n >= 4 * 6, "only {n} comparisons ran");
}

/// Blocks split the batch into one-sample pieces (what a small GPU needs for many prompts):
/// the same predictions.
#[test]
fn one_sample_pieces_give_the_same_predictions() {
    let n = check_all_fixtures(&cpu(), None, Some(1));
    assert!(n >= 4 * 6, "only {n} comparisons ran");
}

#[test]
fn every_fixture_matches_transformers_on_wgpu_with_fusion() {
    let n = check_all_fixtures(&wgpu(), None, None);
    assert!(n >= 4 * 6, "only {n} comparisons ran");
}

#[test]
fn official_pth_checkpoint_gives_the_same_predictions() {
    let n = check_all_fixtures(&cpu(), Some("official.pth"), None);
    assert!(n >= 6, "no official.pth fixture");
}

#[test]
fn f16_safetensors_gives_the_same_predictions() {
    let n = check_all_fixtures(&cpu(), Some("model-f16.safetensors"), None);
    assert!(n >= 6, "no f16 fixture");
}

#[test]
fn official_ensemble_is_the_default() {
    let dir = model_fixture_dirs()
        .into_iter()
        .find(|d| read_tensors(&d.join("inputs.safetensors")).shape("pixel_values").unwrap()[0] > 1);
    let dir = dir.expect("a fixture with several prompts");
    let device = cpu();
    let files = open_model(&dir).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, &device).unwrap();
    let inputs = read_tensors(&dir.join("inputs.safetensors"));
    let expected = read_tensors(&dir.join("expected.safetensors"));
    let key = "pred_masks.official.instance";
    let pred = model
        .forward(
            tensor4(&inputs, "pixel_values", &device),
            tensor4(&inputs, "prompt_pixel_values", &device),
            tensor4(&inputs, "prompt_masks", &device),
            ForwardOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    let err = max_abs_diff(pred, &expected.read_f32(key).unwrap(), &expected.shape(key).unwrap());
    assert!(err <= TOLERANCE, "{err}");
    // And the schedules really differ on this fixture, so the comparison above means something.
    let hf = expected.read_f32("pred_masks.hf.instance").unwrap();
    let official = expected.read_f32(key).unwrap();
    let gap = hf.iter().zip(&official).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(gap > 1e-3, "hf and official references coincide ({gap})");
}

#[test]
fn inputs_of_the_wrong_size_are_refused() {
    let dir = &model_fixture_dirs()[0];
    let device = cpu();
    let files = open_model(dir).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, &device).unwrap();
    let inputs: SafetensorsSource = read_tensors(&dir.join("inputs.safetensors"));
    let good = tensor4(&inputs, "pixel_values", &device);
    let [k, c, h, w] = good.dims();
    let bad = burn::tensor::Tensor::<4>::zeros([k, c, h + 2, w], &device);
    let err = model
        .forward(good.clone(), bad, good, ForwardOptions::default(), &mut |_, _| {})
        .err()
        .expect("a shape error");
    assert!(err.to_string().contains("prompt_pixel_values"), "{err}");
}
