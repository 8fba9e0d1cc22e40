//! The spatial ensemble (docs/MODEL.md §14) against its Python reference (tests/fixtures/spatial,
//! written by scripts/ref_spatial.py): the grid prompt byte for byte as PIL composes it, and the
//! model's output on it within 1e-4 of transformers', for K = 2 to 5.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use common::*;
use seggpt::pipeline::{decode_rgb, normalize_image, spatial_grid};
use seggpt::segment::{Prompt, Segmenter, Target};
use seggpt::weights::{TensorSource, open_model};
use seggpt::{Ensemble, ForwardOptions, MemoryBudget, SegGpt};

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    fixtures().join("spatial")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("cases.json")).unwrap()).unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn prompts(case: &serde_json::Value) -> Vec<Prompt> {
    case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (image, mask) = (p["image"].as_str().unwrap(), p["mask"].as_str().unwrap());
            Prompt::decode(&read(&root().join(image)), image, &read(&root().join(mask)), mask, None).unwrap()
        })
        .collect()
}

fn load_model() -> SegGpt {
    let files = open_model(&root().join("model")).unwrap();
    SegGpt::load(files.source.as_ref(), files.config, &cpu(), MemoryBudget::DEFAULT).unwrap()
}

fn options(ensemble: Ensemble) -> ForwardOptions {
    ForwardOptions { ensemble: Some(ensemble), ..ForwardOptions::default() }
}

#[test]
fn grid_prompts_equal_pil_byte_for_byte() {
    let cases = cases();
    let [h, w] = [0, 1].map(|i| cases["half_canvas_hw"][i].as_u64().unwrap() as u32);
    for case in cases["cases"].as_array().unwrap() {
        let prompts = prompts(case);
        let masks: Vec<_> = prompts.iter().map(|p| p.rgb_mask().unwrap()).collect();
        let pairs: Vec<_> = prompts.iter().zip(&masks).map(|(p, m)| (&p.image, m.as_ref())).collect();
        let (image, mask) = spatial_grid(&pairs, h, w).unwrap();
        for (ours, file) in [(&image, "grid_image"), (&mask, "grid_mask")] {
            let name = case[file].as_str().unwrap();
            let expected = decode_rgb(&read(&root().join(name)), name).unwrap();
            assert_eq!(ours.as_raw(), expected.as_raw(), "K = {}: {name}", case["k"]);
        }
    }
}

#[test]
fn the_model_on_the_grid_prompt_matches_transformers() {
    let cases = cases();
    let model = load_model();
    let device = cpu();
    let (h, w) = model.config().half_image_size();
    let target_name = cases["target"].as_str().unwrap();
    let target = Target::decode(&read(&root().join(target_name)), target_name).unwrap();
    let query = seggpt::pipeline::prepare_image(&target.image, h as u32, w as u32).unwrap();
    let tensor =
        |values: &[f32]| Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 3, h, w]), &device);
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let expected = read_tensors(&root().join(case["expected"].as_str().unwrap()));
        let shape = expected.shape("pred_masks").unwrap();
        let expected = expected.read_f32("pred_masks").unwrap();

        // The whole prediction (prompt and query halves) from the committed grid PNGs.
        let grid = |key: &str| {
            let name = case[key].as_str().unwrap();
            normalize_image(&decode_rgb(&read(&root().join(name)), name).unwrap())
        };
        let pred = model
            .forward(
                tensor(query.as_slice()),
                tensor(grid("grid_image").as_slice()),
                tensor(grid("grid_mask").as_slice()),
                options(Ensemble::Spatial),
                &mut |_, _| {},
            )
            .unwrap();
        let err = max_abs_diff(pred, &expected, &shape);
        assert!(err <= TOLERANCE, "K = {}: whole prediction off by {err:e}", case["k"]);

        // `Segmenter` from the prompt files: composes the grid itself; its query half.
        let segmenter = Segmenter::new(&model, &device, &prompts(case), options(Ensemble::Spatial)).unwrap();
        let half = segmenter.predict(&target, &mut |_, _| {}).unwrap();
        let half = half.into_data().try_into_vec::<f32>().unwrap();
        let plane = h * w;
        let mut err = 0f32;
        for c in 0..3 {
            for i in 0..plane {
                let e = expected[c * 2 * plane + plane + i];
                err = err.max((half[c * plane + i] - e).abs());
            }
        }
        assert!(err <= TOLERANCE, "K = {}: segmenter's query half off by {err:e}", case["k"]);
        checked += 1;
    }
    assert_eq!(checked, 4, "K = 2, 3, 4, 5");
}

#[test]
fn spatial_with_one_prompt_is_the_one_shot_prediction() {
    let case = &cases()["cases"][0];
    let model = load_model();
    let target_name = cases()["target"].as_str().unwrap().to_owned();
    let target = Target::decode(&read(&root().join(&target_name)), &target_name).unwrap();
    let one = &prompts(case)[..1];
    let run = |ensemble| {
        let segmenter = Segmenter::new(&model, &cpu(), one, options(ensemble)).unwrap();
        segmenter.predict(&target, &mut |_, _| {}).unwrap().into_data().try_into_vec::<f32>().unwrap()
    };
    assert_eq!(run(Ensemble::Spatial), run(Ensemble::Official));
}

#[test]
fn the_model_refuses_several_prompts_with_the_spatial_ensemble() {
    let model = load_model();
    let (h, w) = model.config().half_image_size();
    let input = || Tensor::<4>::zeros([2, 3, h, w], &cpu());
    let err =
        model.forward(input(), input(), input(), options(Ensemble::Spatial), &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("K = 1"), "{err}");
    // The memory checks count the one grid prompt.
    assert_eq!(Ensemble::Spatial.model_prompts(5), 1);
    assert_eq!(Ensemble::Official.model_prompts(5), 5);
}

#[test]
fn segment_cli_takes_the_spatial_ensemble() {
    let case = &cases()["cases"][1];
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["segment", "--model"].map(String::from).to_vec();
    args.push(root().join("model").display().to_string());
    for prompt in case["prompts"].as_array().unwrap() {
        args.push("--prompt".into());
        args.push(root().join(prompt["image"].as_str().unwrap()).display().to_string());
        args.push(root().join(prompt["mask"].as_str().unwrap()).display().to_string());
    }
    let target_name = cases()["target"].as_str().unwrap().to_owned();
    args.extend(["--target".into(), root().join(&target_name).display().to_string()]);
    args.extend([
        "--ensemble".into(),
        "spatial".into(),
        "--out-dir".into(),
        out.path().display().to_string(),
    ]);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_seggpt")).args(&args).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let model = load_model();
    let target = Target::decode(&read(&root().join(&target_name)), &target_name).unwrap();
    let segmenter = Segmenter::new(&model, &cpu(), &prompts(case), options(Ensemble::Spatial)).unwrap();
    let expected = segmenter.run(&target, None, &mut |_, _| {}).unwrap().mask_png().unwrap();
    let written = read(&out.path().join(format!("{target_name}.mask.png")));
    assert_eq!(
        decode_rgb(&written, "cli").unwrap().as_raw(),
        decode_rgb(&expected, "library").unwrap().as_raw()
    );
}
