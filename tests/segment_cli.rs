//! `seggpt segment` on PNG files against transformers' processor + model + post-processing
//! (tests/fixtures/segment, written by scripts/make_fixtures.py), and the CLI's error paths.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, seggpt, stderr};
use seggpt::pipeline::{decode_class_map, decode_rgb};

#[test]
fn segment_matches_the_reference_pipeline() {
    let root = fixtures().join("segment");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    let model = root.join(cases["model_dir"].as_str().unwrap());
    let mut compared = 0;
    for case in cases["cases"].as_array().unwrap() {
        let out_dir = tempfile::tempdir().unwrap();
        let num_labels = case["num_labels"].as_u64().unwrap().to_string();
        let mut args: Vec<String> = vec![
            "segment".into(),
            "--model".into(),
            model.display().to_string(),
            "--out-dir".into(),
            out_dir.path().display().to_string(),
            "--num-labels".into(),
            num_labels,
            "--ensemble".into(),
            case["mode"].as_str().unwrap().into(),
            "--embedding-type".into(),
            case["embedding_type"].as_str().unwrap().into(),
        ];
        for prompt in case["prompts"].as_array().unwrap() {
            args.push("--prompt".into());
            args.push(root.join(prompt["image"].as_str().unwrap()).display().to_string());
            args.push(root.join(prompt["mask"].as_str().unwrap()).display().to_string());
        }
        for target in case["targets"].as_array().unwrap() {
            args.push("--target".into());
            args.push(root.join(target["target"].as_str().unwrap()).display().to_string());
        }
        let out = seggpt(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", stderr(&out));

        for target in case["targets"].as_array().unwrap() {
            // Targets in one folder: outputs are flat, named after the full file name.
            let name = Path::new(target["target"].as_str().unwrap()).file_name().unwrap().to_str().unwrap();
            let label = format!("{} {name}", case["name"]);
            let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));

            let ours = decode_rgb(&read(&out_dir.path().join(format!("{name}.mask.png"))), "ours").unwrap();
            let theirs = decode_rgb(&read(&root.join(target["mask"].as_str().unwrap())), "ref").unwrap();
            let [h, w] = [target["size_hw"][0].as_u64().unwrap(), target["size_hw"][1].as_u64().unwrap()];
            assert_eq!((ours.height() as u64, ours.width() as u64), (h, w), "{label}: mask size");
            // Truncation to u8 may flip by one level where the float lies within ~1e-4 of an
            // integer (the fixture records margins that small); nothing may differ by more.
            let diffs: Vec<i32> = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .collect();
            let max = diffs.iter().max().copied().unwrap_or(0);
            let off = diffs.iter().filter(|d| **d > 0).count();
            assert!(max <= 1, "{label}: mask differs by {max} levels");
            assert!(off * 100 <= diffs.len(), "{label}: {off} of {} values differ", diffs.len());

            let ours =
                decode_class_map(&read(&out_dir.path().join(format!("{name}.classes.png"))), "ours").unwrap();
            let theirs =
                decode_class_map(&read(&root.join(target["classes"].as_str().unwrap())), "ref").unwrap();
            assert_eq!(ours.as_raw(), theirs.as_raw(), "{label}: class map");
            compared += 1;
        }
    }
    assert!(compared >= 4, "only {compared} targets compared");
}

#[test]
fn infer_writes_pred_masks_that_match_the_reference() {
    let dir = fixtures().join("models/tiny-k3");
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("out.safetensors");
    let result = seggpt(&[
        "infer",
        "--model",
        dir.to_str().unwrap(),
        "--inputs",
        dir.join("inputs.safetensors").to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--ensemble",
        "hf",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let ours = common::read_tensors(&output);
    let theirs = common::read_tensors(&dir.join("expected.safetensors"));
    use seggpt::weights::TensorSource;
    let a = ours.read_f32("pred_masks").unwrap();
    let b = theirs.read_f32("pred_masks.hf.instance").unwrap();
    assert_eq!(ours.shape("pred_masks"), theirs.shape("pred_masks.hf.instance"));
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn convert_round_trips_official_pth_to_f16_safetensors() {
    let dir = fixtures().join("models/tiny-k1");
    let out = tempfile::tempdir().unwrap();
    let converted = out.path().join("model.safetensors");
    let result = seggpt(&[
        "convert",
        "--model",
        dir.join("official.pth").to_str().unwrap(),
        "--output",
        converted.to_str().unwrap(),
        "--dtype",
        "f16",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    // The fixture weights are f16-exact, so the f16 file holds the very same values.
    use seggpt::weights::TensorSource;
    let ours = common::read_tensors(&converted);
    let theirs = common::read_tensors(&dir.join("model.safetensors"));
    assert_eq!(ours.names(), theirs.names());
    for name in theirs.names() {
        assert_eq!(ours.read_f32(&name).unwrap(), theirs.read_f32(&name).unwrap(), "{name}");
    }
    assert!(
        std::fs::metadata(&converted).unwrap().len()
            < std::fs::metadata(dir.join("model.safetensors")).unwrap().len()
    );
}

#[test]
fn a_target_that_is_not_an_image_fails_with_its_name_and_writes_nothing() {
    let root = fixtures().join("segment");
    let out = tempfile::tempdir().unwrap();
    let bogus = out.path().join("notes.png");
    std::fs::write(&bogus, b"this is text, not a PNG").unwrap();
    let out_dir = out.path().join("results");
    let result = seggpt(&[
        "segment",
        "--model",
        root.join("model").to_str().unwrap(),
        "--prompt",
        root.join("prompt0.png").to_str().unwrap(),
        root.join("prompt0_mask.png").to_str().unwrap(),
        "--target",
        root.join("target_a.png").to_str().unwrap(),
        "--target",
        bogus.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains("notes.png") && message.contains("not a readable image"), "{message}");
    assert!(!out_dir.exists(), "nothing is written when an input is bad");
}

#[test]
fn missing_model_fails_cleanly() {
    let root = fixtures().join("segment");
    let out = tempfile::tempdir().unwrap();
    let result = seggpt(&[
        "segment",
        "--model",
        out.path().join("nowhere").to_str().unwrap(),
        "--prompt",
        root.join("prompt0.png").to_str().unwrap(),
        root.join("prompt0_mask.png").to_str().unwrap(),
        "--target",
        root.join("target_a.png").to_str().unwrap(),
        "--out-dir",
        out.path().to_str().unwrap(),
    ]);
    assert!(!result.status.success());
    assert!(stderr(&result).contains("nowhere"), "{}", stderr(&result));
}

/// `--tile SIZE,OVERLAP` (docs/MODEL.md §27): every pixel of the stitched mask and class map is
/// that pixel in its own tile's result, the tile segmented on its own by a run without tiles; its
/// tile is the one whose centre is nearest, per axis. The rule is stated here again, apart from
/// the code it checks.
#[test]
fn tiled_segmentation_takes_each_pixel_from_its_nearest_tile() {
    let root = fixtures().join("segment");
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (150u32, 97u32);
    let big = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, ((x / 9 + y / 7) % 2 * 200) as u8])
    });
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).unwrap();
    big.save(targets.join("big.png")).unwrap();
    // A target no larger than a tile is segmented whole.
    std::fs::copy(root.join("target_b.png"), targets.join("small.png")).unwrap();

    let (size, overlap) = (64u32, 16u32);
    let starts = |length: u32| {
        let mut starts: Vec<u32> =
            (0..).map(|i| i * (size - overlap)).take_while(|start| start + size < length).collect();
        starts.push(length - size);
        starts
    };
    let (columns, rows) = (starts(width), starts(height));
    assert_eq!((columns.as_slice(), rows.as_slice()), (&[0, 48, 86][..], &[0, 33][..]));
    let crops = dir.path().join("crops");
    std::fs::create_dir(&crops).unwrap();
    for &y in &rows {
        for &x in &columns {
            let crop = image::imageops::crop_imm(&big, x, y, size, size).to_image();
            crop.save(crops.join(format!("tile_{x}_{y}.png"))).unwrap();
        }
    }
    let model = root.join("model").display().to_string();
    let prompts = ["prompt0.png", "prompt0_mask.png", "prompt1.png", "prompt1_mask.png"]
        .map(|name| root.join(name).display().to_string());
    let run = |out: &Path, extra: &[&str]| {
        let mut args =
            vec!["segment", "--model", &model, "--out-dir", out.to_str().unwrap(), "--num-labels", "3"];
        args.extend(["--prompt", &prompts[0], &prompts[1], "--prompt", &prompts[2], &prompts[3]]);
        args.extend(extra);
        seggpt(&args)
    };
    let tiled_out = dir.path().join("tiled");
    let out = run(&tiled_out, &["--targets", targets.to_str().unwrap(), "--tile", "64,16"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let whole_out = dir.path().join("whole");
    std::fs::copy(root.join("target_b.png"), crops.join("small.png")).unwrap();
    let out = run(&whole_out, &["--targets", crops.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mask = |path: &Path| image::open(path).unwrap().into_rgb8();
    let classes = |path: &Path| image::open(path).unwrap().into_luma8();
    let tiled_mask = mask(&tiled_out.join("big.png.mask.png"));
    let tiled_classes = classes(&tiled_out.join("big.png.classes.png"));
    assert_eq!(tiled_mask.dimensions(), (width, height));
    let nearest = |starts: &[u32], p: u32| {
        let distance = |start: u32| (2 * p + 1).abs_diff(2 * start + size);
        let best = starts.iter().map(|&s| distance(s)).min().unwrap();
        *starts.iter().find(|&&s| distance(s) == best).unwrap()
    };
    let mut from_second_tiles = 0;
    for y in 0..height {
        for x in 0..width {
            let (tx, ty) = (nearest(&columns, x), nearest(&rows, y));
            let name = format!("tile_{tx}_{ty}.png");
            let (own_mask, own_classes) = (
                mask(&whole_out.join(format!("{name}.mask.png"))),
                classes(&whole_out.join(format!("{name}.classes.png"))),
            );
            assert_eq!(
                tiled_mask.get_pixel(x, y),
                own_mask.get_pixel(x - tx, y - ty),
                "mask at ({x}, {y}), from {name}"
            );
            assert_eq!(
                tiled_classes.get_pixel(x, y),
                own_classes.get_pixel(x - tx, y - ty),
                "classes at ({x}, {y})"
            );
            from_second_tiles += usize::from(tx > 0 || ty > 0);
        }
    }
    assert!(from_second_tiles > 0);
    let read = |path: PathBuf| std::fs::read(path).unwrap();
    assert_eq!(read(tiled_out.join("small.png.mask.png")), read(whole_out.join("small.png.mask.png")));

    // Resuming with another tiling would keep masks made with the old one: refused, naming it.
    let out = run(&tiled_out, &["--targets", targets.to_str().unwrap(), "--tile", "80"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tile"), "{}", stderr(&out));
}

/// A tile too small to show the model anything, or an overlap as large as the tile, is refused
/// before anything is written.
#[test]
fn a_tiling_that_cannot_work_is_refused_and_writes_nothing() {
    let root = fixtures().join("segment");
    let dir = tempfile::tempdir().unwrap();
    let model = root.join("model").display().to_string();
    let [image, mask, target] =
        ["prompt0.png", "prompt0_mask.png", "target_a.png"].map(|name| root.join(name).display().to_string());
    for (tile, says) in [("16", "at least 32"), ("64,64", "OVERLAP < SIZE"), ("64,x", "\"x\"")] {
        let out_dir = dir.path().join(format!("out-{}", tile.replace(',', "-")));
        let args =
            ["segment", "--model", &model, "--out-dir", out_dir.to_str().unwrap(), "--prompt", &image, &mask];
        let out = seggpt(&[&args[..], &["--target", &target, "--tile", tile]].concat());
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "--tile {tile}: {}", stderr(&out));
        assert!(!out_dir.exists(), "--tile {tile} made {}", out_dir.display());
    }
}
