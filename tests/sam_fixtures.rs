//! SAM against transformers' `SamModel` + `SamProcessor` (PIL image processor) on a tiny random
//! model: the processor's pixels, the image embedding, every prompt case's low-resolution logits
//! and IoU scores, and the post-processed masks at the image's size
//! (`scripts/make_fixtures.py sam`; docs/MODEL.md §25).

mod common;

use std::path::PathBuf;

use burn::tensor::DType;

use seggpt::pipeline::decode_rgb;
use seggpt::pipeline::sam::{SamFrame, sam_input};
use seggpt::sam::{Sam, SamConfig};
use seggpt::select::{embed, select};
use seggpt::weights::{SafetensorsSource, TensorSource};

use common::sam::{
    Differences, cases, dir, image, load_model, matches_transformers_on, max_diff, prompt_of, stem,
    wgpu_cases,
};
use common::{cpu, read_tensors, seggpt};

/// Every value here is O(1) and the tiny model adds a few dozen products per value, so f32
/// rounding puts the two implementations about 1e-6 apart; 1e-4 is the bound.
const TOLERANCE: f32 = 1e-4;

#[test]
fn the_input_pixels_equal_the_processors() {
    let expected = read_tensors(&dir().join("expected.safetensors"));
    for entry in cases().images {
        let image = image(&entry.file);
        let frame = SamFrame::new((image.height() as usize, image.width() as usize), 64);
        let name = format!("{}.pixel_values", stem(&entry.file));
        let diff = max_diff(sam_input(&image, &frame).as_slice(), &expected.read_f32(&name).unwrap());
        assert!(diff <= 1e-6, "{name}: max difference {diff}");
    }
}

#[test]
fn embeddings_logits_and_scores_match_transformers_on_every_case() {
    matches_transformers_on(&cpu(), &cases(), DType::F32, Differences::all(TOLERANCE));
}

/// The same on burn's wgpu backend (lavapipe in CI): the windowed attention, the transposed
/// convolutions and the token attention through cubecl's kernels, on [`wgpu_cases`]. Even so it
/// takes 2.3 minutes on lavapipe (the kernels of every shape compiled once), so it is in the second
/// tier (`scripts/test.sh --full`); the CPU test above checks the same arithmetic on every case. The
/// half-precision twin is in `tests/f16_wgpu.rs`.
#[test]
#[ignore = "second tier: 2.3 minutes of kernel compilation on lavapipe"]
fn tier2_sam_matches_transformers_on_wgpu() {
    matches_transformers_on(&common::wgpu(), &wgpu_cases(), DType::F32, Differences::all(TOLERANCE));
}

#[test]
fn selected_masks_equal_the_processors_binary_masks() {
    let device = cpu();
    let model = load_model(&device);
    let expected = read_tensors(&dir().join("expected.safetensors"));
    let cases = cases();
    for entry in &cases.images {
        let image = image(&entry.file);
        let embedded = embed(&model, &image);
        for case in cases.cases.iter().filter(|c| c.image == entry.file) {
            let prompt = prompt_of(case);
            prompt.check(image.width(), image.height()).unwrap();
            let selection = select(&model, &embedded, &prompt, case.multimask);
            let p = &case.prefix;
            let logits = expected.read_f32(&format!("{p}.masks")).unwrap();
            // The fixture's `masks_bin` is these logits above 0 (the processor's threshold).
            let ours: Vec<bool> = selection.masks.concat();
            assert_eq!(ours.len(), logits.len(), "{p}: mask size");
            // A pixel whose reference logit is within the tolerance of 0 may fall either way.
            let differing: Vec<usize> = (0..ours.len())
                .filter(|&i| ours[i] != (logits[i] > 0.0) && logits[i].abs() > TOLERANCE)
                .collect();
            assert!(
                differing.is_empty(),
                "{p}: {} pixels differ, first at {:?}",
                differing.len(),
                differing.first()
            );
            // And the bound, over every pixel: equal on at least 99.9 %.
            let unequal = (0..ours.len()).filter(|&i| ours[i] != (logits[i] > 0.0)).count();
            assert!(unequal * 1000 <= ours.len(), "{p}: {unequal} of {} pixels differ", ours.len());
        }
    }
}

#[test]
fn a_seggpt_checkpoint_is_refused_with_the_tensor_it_lacks() {
    let config =
        SamConfig::from_json(&std::fs::read_to_string(dir().join("model/config.json")).unwrap()).unwrap();
    let seggpt = common::fixtures().join("models/tiny-k1/model.safetensors");
    let source = SafetensorsSource::from_file(&seggpt).unwrap();
    let err = Sam::load(&source, config, &cpu()).err().expect("refused").to_string();
    assert!(err.contains("vision_encoder"), "{err}");
}

#[test]
fn seggpt_sam_writes_the_masks_the_processor_gives() {
    let out = tempfile::tempdir().unwrap();
    let model = dir().join("model");
    let expected = read_tensors(&dir().join("expected.safetensors"));
    for case in cases().cases.iter().filter(|c| c.image == "wide.png" && c.case == "box_point") {
        let image = dir().join(&case.image);
        let single = out.path().join("single.png");
        let [x, y] = case.points.as_ref().unwrap()[0];
        let [x0, y0, x1, y1] = case.bbox.unwrap();
        let (point, bbox) = (format!("{x},{y}"), format!("{x0},{y0},{x1},{y1}"));
        let mut args = vec!["sam", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap()];
        args.extend(["--point", &point, "--box", &bbox, "--colour", "255,0,0"]);
        let logits = expected.read_f32(&format!("{}.masks", case.prefix)).unwrap();
        let plane = logits.len() / if case.multimask { 3 } else { 1 };
        let written: Vec<(PathBuf, usize)> = if case.multimask {
            args.extend(["--multimask", "--out-dir", out.path().to_str().unwrap()]);
            (0..3).map(|i| (out.path().join(format!("wide.sam-{}.png", i + 1)), i)).collect()
        } else {
            args.extend(["--out", single.to_str().unwrap()]);
            vec![(single.clone(), 0)]
        };
        let run = seggpt(&args);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(String::from_utf8_lossy(&run.stdout).contains("iou scores:"), "the scores are printed");
        for (path, candidate) in written {
            let mask = decode_rgb(&std::fs::read(&path).unwrap(), "mask").unwrap();
            let reference = &logits[candidate * plane..(candidate + 1) * plane];
            for (i, px) in mask.as_raw().chunks_exact(3).enumerate() {
                let inside = reference[i] > 0.0;
                if reference[i].abs() > TOLERANCE {
                    assert_eq!(
                        px,
                        if inside { [255, 0, 0] } else { [0, 0, 0] },
                        "{}: pixel {i}",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn seggpt_sam_refuses_bad_prompts_before_loading_and_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let model = dir().join("model");
    let image = dir().join("tall.png"); // 40 x 140
    let mask = out.path().join("mask.png");
    let base = [
        "sam",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--out",
        mask.to_str().unwrap(),
    ];
    for (extra, says) in [
        (vec!["--point", "41,10"], "outside the 40x140 image"),
        (vec!["--box", "30,100,10,20"], "inverted"),
        (vec![], "at least one point or a box"),
        (vec!["--point", "1,2,5"], "the third number is 1"),
        (vec!["--box", "1,2,3"], "4 numbers"),
    ] {
        let run = seggpt(&[&base[..], &extra[..]].concat());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(says), "{extra:?}: {stderr}");
        assert!(!stderr.contains("loading"), "{extra:?}: refused before the model loads: {stderr}");
        assert!(!mask.exists(), "{extra:?}: no output written");
    }
    // A SegGPT directory is not a SAM checkpoint.
    let seggpt_dir = common::fixtures().join("models/tiny-k1");
    let run = seggpt(&[
        "sam",
        "--model",
        seggpt_dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--point",
        "3,4",
        "--out",
        mask.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("not a SAM config"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!mask.exists());
}

#[test]
fn bench_sam_times_the_embedding_and_a_click() {
    let config = dir().join("model/config.json");
    let run = seggpt(&["bench-sam", "--config", config.to_str().unwrap(), "--runs", "1"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        stdout.contains("ViT 32 wide, 4 blocks, 64 px")
            && stdout.contains("image embedding")
            && stdout.contains("click"),
        "{stdout}"
    );
    let model = dir().join("model");
    let run = seggpt(&["bench-sam", "--model", model.to_str().unwrap(), "--runs", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}
