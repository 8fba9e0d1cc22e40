//! The model against transformers: every reference fixture (tests/fixtures/models/*, written by
//! scripts/make_fixtures.py) within 1e-4 max abs error, on the CPU backend and on wgpu.

mod common;

use burn::tensor::Device;
use common::*;
use seggpt::model::SplitPlan;
use seggpt::weights::{PthSource, SafetensorsSource, TensorSource, open_model};
use seggpt::{EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt, SegGptConfig, parameter_shapes};

const TOLERANCE: f32 = 1e-4;

const MODES: [(&str, Ensemble); 3] =
    [("official", Ensemble::Official), ("hf", Ensemble::Hf), ("none", Ensemble::None)];
const EMBEDDINGS: [(&str, EmbeddingType); 2] =
    [("instance", EmbeddingType::Instance), ("semantic", EmbeddingType::Semantic)];

/// Runs every fixture in every mode on `device`, loaded and run under `budget`; returns the number
/// of comparisons.
fn check_all_fixtures(device: &Device, weights_file: Option<&str>, budget: MemoryBudget) -> usize {
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
        let model = SegGpt::load(files.source.as_ref(), config, device, budget)
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
                        ForwardOptions {
                            ensemble: Some(ensemble),
                            embedding_type,
                            budget,
                            ..ForwardOptions::default()
                        },
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
    let n = check_all_fixtures(&cpu(), None, MemoryBudget::DEFAULT);
    assert!(n >= 4 * 6, "only {n} comparisons ran");
}

/// A budget far below the fixtures' sizes splits all three places the model splits work (what
/// a small GPU needs for the released model): attention heads in several score groups, the
/// block batch in several sample pieces, `decoder_embed` in several column pieces. The
/// predictions are the same. 8 KiB groups two 4 KiB score sequences; 1 byte is the finest split
/// (one sequence, one sample, one column per piece).
#[test]
fn a_small_budget_splits_every_stage_and_gives_the_same_predictions() {
    for max_buffer_bytes in [8 << 10, 1] {
        let budget = MemoryBudget { max_buffer_bytes };
        for dir in model_fixture_dirs() {
            let config = open_model(&dir).unwrap().config;
            let k = read_tensors(&dir.join("inputs.safetensors")).shape("pixel_values").unwrap()[0];
            let plan = SplitPlan::new(&config, k, budget);
            for (stage, split) in
                [("block", plan.block), ("attention", plan.attention), ("decoder_embed", plan.decoder_embed)]
            {
                assert!(split.pieces() > 1, "{}: {stage} in one piece: {split:?}", dir.display());
            }
            if max_buffer_bytes > 1 && config.patch_grid() == (8, 4) {
                assert_eq!(plan.attention.per_piece, 2, "{}", dir.display());
            }
        }
        let n = check_all_fixtures(&cpu(), None, budget);
        assert!(n >= 4 * 6, "only {n} comparisons ran");
    }
}

#[test]
fn every_fixture_matches_transformers_on_wgpu_with_fusion() {
    let n = check_all_fixtures(&wgpu(), None, MemoryBudget::DEFAULT);
    assert!(n >= 4 * 6, "only {n} comparisons ran");
}

#[test]
fn official_pth_checkpoint_gives_the_same_predictions() {
    let n = check_all_fixtures(&cpu(), Some("official.pth"), MemoryBudget::DEFAULT);
    assert!(n >= 6, "no official.pth fixture");
}

#[test]
fn f16_safetensors_gives_the_same_predictions() {
    let n = check_all_fixtures(&cpu(), Some("model-f16.safetensors"), MemoryBudget::DEFAULT);
    assert!(n >= 6, "no f16 fixture");
}

fn shapes_of(source: &dyn TensorSource) -> Vec<(String, Vec<usize>)> {
    let mut list: Vec<_> =
        source.names().into_iter().map(|n| (n.clone(), source.shape(&n).unwrap())).collect();
    list.sort();
    list
}

fn sorted_parameter_shapes(config: &SegGptConfig) -> Vec<(String, Vec<usize>)> {
    let mut list = parameter_shapes(config).unwrap();
    list.sort();
    list
}

/// The list the browser checks a download's header against is what the fixture checkpoints
/// (written by transformers and by the official code) hold, name for name and shape for shape.
#[test]
fn parameter_shapes_are_the_tensors_of_every_fixture_checkpoint() {
    let mut checked = 0;
    for dir in model_fixture_dirs() {
        let config = open_model(&dir).unwrap().config;
        let expected = sorted_parameter_shapes(&config);
        for file in ["model.safetensors", "model-f16.safetensors", "official.pth"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let source: Box<dyn TensorSource> = if file.ends_with(".pth") {
                Box::new(PthSource::from_file(&path).unwrap())
            } else {
                Box::new(read_tensors(&path))
            };
            assert_eq!(shapes_of(source.as_ref()), expected, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} checkpoints compared");
}

/// The released ViT-L: the 354 tensors of its checkpoints (tests/fixtures/weight_map.tsv lists
/// them with official and HF names) and 370,723,203 parameters, 1.483 GB in f32. That is the
/// ViT-L encoder's 303,560,704 (24 blocks of 12,606,848, the patch and position embeddings,
/// 5 tokens, the final norm) plus the decoder's 67,162,499, almost all of it `decoder_embed`
/// (4096 -> 16 x 16 x 64). Times 4 bytes this is the 1,482,892,812-byte f32 checkpoint.
#[test]
fn released_model_reads_354_tensors_and_370_723_203_parameters() {
    let table = std::fs::read_to_string(fixtures().join("weight_map.tsv")).unwrap();
    let mut expected: Vec<(String, Vec<usize>)> = table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols[1].to_string(), cols[2].split('x').map(|d| d.parse().unwrap()).collect())
        })
        .collect();
    expected.sort();
    let derived = sorted_parameter_shapes(&SegGptConfig::default());
    assert_eq!(derived, expected);
    assert_eq!(derived.len(), 354);
    let params: usize = derived.iter().map(|(_, shape)| shape.iter().product::<usize>()).sum();
    assert_eq!(params, 370_723_203);
}

#[test]
fn official_ensemble_is_the_default() {
    let dir = model_fixture_dirs()
        .into_iter()
        .find(|d| read_tensors(&d.join("inputs.safetensors")).shape("pixel_values").unwrap()[0] > 1);
    let dir = dir.expect("a fixture with several prompts");
    let device = cpu();
    let files = open_model(&dir).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT).unwrap();
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

/// `answer` decodes only the query half (docs/MODEL.md §7): it must equal the query half of the
/// reference's prediction, sample 0 for the official and hf ensembles, the mean over the K samples
/// for independent ones, within the tolerance of the whole forward pass.
#[test]
fn the_answer_is_the_query_half_of_the_reference_prediction_on_every_fixture() {
    let device = cpu();
    let mut checked = 0;
    for dir in model_fixture_dirs() {
        let (model, inputs, expected) = load_fixture(&dir, &device);
        for (mode_name, ensemble) in MODES {
            let key = format!("pred_masks.{mode_name}.instance");
            let Some(&[k, c, h, w]) = expected.shape(&key).as_deref() else { continue };
            let reference = expected.read_f32(&key).unwrap();
            // Sample i's query half: rows h/2.. of each of its c planes.
            let query_half = |i: usize| -> Vec<f32> {
                (0..c)
                    .flat_map(|plane| {
                        let start = ((i * c + plane) * h + h / 2) * w;
                        reference[start..start + h / 2 * w].to_vec()
                    })
                    .collect()
            };
            let want: Vec<f32> = match ensemble {
                Ensemble::None if k > 1 => {
                    let halves: Vec<Vec<f32>> = (0..k).map(query_half).collect();
                    (0..halves[0].len())
                        .map(|j| halves.iter().map(|s| s[j]).sum::<f32>() / k as f32)
                        .collect()
                }
                _ => query_half(0),
            };
            let options = ForwardOptions { ensemble: Some(ensemble), ..ForwardOptions::default() };
            let got = model
                .answer(
                    tensor4(&inputs, "pixel_values", &device),
                    tensor4(&inputs, "prompt_pixel_values", &device),
                    tensor4(&inputs, "prompt_masks", &device),
                    options,
                    &mut |_, _| {},
                )
                .unwrap();
            let err = max_abs_diff(got, &want, &[1, c, h / 2, w]);
            assert!(err <= TOLERANCE, "{} {key}: max abs error {err:e}", dir.display());
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} comparisons");
}

#[test]
fn inputs_of_the_wrong_size_are_refused() {
    let dir = &model_fixture_dirs()[0];
    let device = cpu();
    let files = open_model(dir).unwrap();
    let model = SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT).unwrap();
    let inputs: SafetensorsSource = read_tensors(&dir.join("inputs.safetensors"));
    let good = tensor4(&inputs, "pixel_values", &device);
    let [k, c, h, w] = good.dims();
    let bad = burn::tensor::Tensor::<4>::zeros([k, c, h + 2, w], &device);
    let Err(err) = model.forward(good.clone(), bad, good, ForwardOptions::default(), &mut |_, _| {}) else {
        panic!("inputs of the wrong size must give a shape error");
    };
    assert!(err.to_string().contains("prompt_pixel_values"), "{err}");
}
