//! `seggpt tune` end to end on the small segment fixture model: the tuned prompt file, its
//! previews, `--resume` (equal to an uninterrupted run), `segment --tuned-prompt`, and every bad
//! input refused with a message that names it and no output written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixtures, seggpt, stderr};
use seggpt::segment::{Prompt, TunedPrompt};
use seggpt::tune::{PromptMetadata, config_hash, decode_prompt, encode_prompt};
use seggpt::{EmbeddingType, SegGptConfig};

fn segment_fixtures() -> PathBuf {
    fixtures().join("segment")
}

fn model() -> String {
    segment_fixtures().join("model").display().to_string()
}

fn file(name: &str) -> String {
    segment_fixtures().join(name).display().to_string()
}

/// A folder of training pairs in `seggpt tune`'s layout (NAME + NAME.mask.png).
fn pairs_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (image, mask, name) in
        [("prompt0.png", "prompt0_mask.png", "a.png"), ("prompt1.png", "prompt1_mask.png", "b.png")]
    {
        std::fs::copy(segment_fixtures().join(image), dir.path().join(name)).unwrap();
        std::fs::copy(segment_fixtures().join(mask), dir.path().join(format!("{name}.mask.png"))).unwrap();
    }
    dir
}

fn tune(pairs: &Path, out: &Path, extra: &[&str]) -> Output {
    let model = model();
    let mut args =
        vec!["tune", "--model", &model, "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    seggpt(&args)
}

fn half_canvas() -> (usize, usize) {
    let text = std::fs::read_to_string(segment_fixtures().join("model/config.json")).unwrap();
    SegGptConfig::from_json(&text).unwrap().half_image_size()
}

/// The config hash of the fixture model, which a tuned prompt for it must name.
fn model_config_hash() -> String {
    let text = std::fs::read_to_string(segment_fixtures().join("model/config.json")).unwrap();
    config_hash(&SegGptConfig::from_json(&text).unwrap())
}

fn read_prompt(path: &Path) -> (TunedPrompt, PromptMetadata) {
    decode_prompt(&std::fs::read(path).unwrap(), "prompt", half_canvas()).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn tune_writes_the_prompt_previews_and_metadata_and_resume_equals_an_uninterrupted_run() {
    let pairs = pairs_folder();
    let out_dir = tempfile::tempdir().unwrap();
    let whole = out_dir.path().join("whole.safetensors");
    let out = tune(pairs.path(), &whole, &["--steps", "4", "--batch", "1", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("step 4/4"), "{}", stderr(&out));
    let (prompt, meta) = read_prompt(&whole);
    assert_eq!(meta.steps, 4);
    assert_eq!(meta.train_losses.len(), 4);
    assert_eq!(meta.image_size, (32, 16));
    let text = std::fs::read_to_string(segment_fixtures().join("model/config.json")).unwrap();
    assert_eq!(meta.config_hash, config_hash(&SegGptConfig::from_json(&text).unwrap()));
    for preview in ["whole.prompt_pixel_values.png", "whole.prompt_masks.png"] {
        let png =
            seggpt::pipeline::decode_rgb(&std::fs::read(out_dir.path().join(preview)).unwrap(), preview)
                .unwrap();
        assert_eq!((png.height(), png.width()), (16, 16), "{preview}");
    }

    // Two steps, then --resume to four: the same prompt as four steps at once.
    let split = out_dir.path().join("split.safetensors");
    let first = tune(pairs.path(), &split, &["--steps", "2", "--batch", "1", "--seed", "3"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = tune(pairs.path(), &split, &["--steps", "4", "--batch", "1", "--seed", "3", "--resume"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let (resumed, resumed_meta) = read_prompt(&split);
    assert_eq!(resumed_meta.steps, 4);
    assert_eq!(resumed_meta.train_losses.len(), 4);
    for (a, b) in [
        (prompt.pixel_values.as_slice(), resumed.pixel_values.as_slice()),
        (prompt.masks.as_slice(), resumed.masks.as_slice()),
    ] {
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-5, "resumed run differs by {err}");
    }
}

#[test]
fn a_tuned_prompt_segments_like_the_same_ordinary_prompt() {
    // The tuned prompt file holds exactly the model inputs of prompt0 + its mask.
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = half_canvas();
    let read = |name: &str| std::fs::read(segment_fixtures().join(name)).unwrap();
    let prompt = Prompt::decode(&read("prompt0.png"), "p", &read("prompt0_mask.png"), "m", None).unwrap();
    let (pixel_values, masks) = prompt.prepare(h, w).unwrap();
    let metadata = PromptMetadata {
        config_hash: model_config_hash(),
        image_size: (2 * h, w),
        steps: 0,
        lr: 0.0,
        weight_decay: 0.0,
        batch: 1,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        train_losses: vec![],
        val_losses: vec![],
    };
    let tuned = dir.path().join("p.safetensors");
    std::fs::write(&tuned, encode_prompt(&TunedPrompt { pixel_values, masks }, &metadata)).unwrap();

    let (by_file, by_tuned) = (dir.path().join("file"), dir.path().join("tuned"));
    let target = file("target_a.png");
    let a = seggpt(&[
        "segment",
        "--model",
        &model(),
        "--prompt",
        &file("prompt0.png"),
        &file("prompt0_mask.png"),
        "--target",
        &target,
        "--out-dir",
        by_file.to_str().unwrap(),
    ]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = seggpt(&[
        "segment",
        "--model",
        &model(),
        "--tuned-prompt",
        tuned.to_str().unwrap(),
        "--target",
        &target,
        "--out-dir",
        by_tuned.to_str().unwrap(),
    ]);
    assert!(b.status.success(), "{}", stderr(&b));
    let mask = "target_a.png.mask.png";
    assert_eq!(std::fs::read(by_file.join(mask)).unwrap(), std::fs::read(by_tuned.join(mask)).unwrap());

    // With an ordinary prompt too, both join the ensemble.
    let both = dir.path().join("both");
    let c = seggpt(&[
        "segment",
        "--model",
        &model(),
        "--prompt",
        &file("prompt1.png"),
        &file("prompt1_mask.png"),
        "--tuned-prompt",
        tuned.to_str().unwrap(),
        "--target",
        &target,
        "--out-dir",
        both.to_str().unwrap(),
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(both.join(mask).is_file());
}

#[test]
fn segment_refuses_a_tuned_prompt_of_another_shape_or_not_a_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let image = |h: usize, w: usize| seggpt::pipeline::ChwImage::new(3, h, w, vec![0.0; 3 * h * w]).unwrap();
    let metadata = PromptMetadata {
        config_hash: "x".into(),
        image_size: (64, 32),
        steps: 1,
        lr: 0.1,
        weight_decay: 0.0,
        batch: 1,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        train_losses: vec![1.0],
        val_losses: vec![],
    };
    let other = dir.path().join("other.safetensors");
    std::fs::write(
        &other,
        encode_prompt(&TunedPrompt { pixel_values: image(32, 32), masks: image(32, 32) }, &metadata),
    )
    .unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a tensor file").unwrap();
    for (path, expected) in [(&other, "another model shape"), (&garbage, "not a safetensors file")] {
        let out_dir = dir.path().join("out");
        let out = seggpt(&[
            "segment",
            "--model",
            &model(),
            "--tuned-prompt",
            path.to_str().unwrap(),
            "--target",
            &file("target_a.png"),
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(path.to_str().unwrap()) && err.contains(expected), "{err}");
        assert!(!out_dir.join("target_a.png.mask.png").exists());
    }
}

#[test]
fn tune_refuses_bad_inputs_and_writes_nothing() {
    let pairs = pairs_folder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.safetensors");

    // More pairs per step than there are pairs.
    let r = tune(pairs.path(), &out, &["--batch", "3"]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("--batch 3 is more than the 2 training pair(s)"), "{}", stderr(&r));

    // Out-of-range numbers are refused by the parser, naming the flag.
    for (flag, value) in
        [("--lr", "0"), ("--lr", "nan"), ("--weight-decay", "-1"), ("--steps", "0"), ("--batch", "0")]
    {
        let r = tune(pairs.path(), &out, &[&format!("{flag}={value}")]);
        assert!(!r.status.success());
        assert!(stderr(&r).contains(flag), "{flag} {value}: {}", stderr(&r));
    }

    // --resume without a run to resume.
    let r = tune(pairs.path(), &out, &["--resume"]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("does not exist; start without --resume"), "{}", stderr(&r));
    assert_eq!(files_in(dir.path()), Vec::<String>::new());

    // An image without its mask, a mask without its image, a folder without pairs.
    let lonely = tempfile::tempdir().unwrap();
    std::fs::copy(segment_fixtures().join("prompt0.png"), lonely.path().join("x.png")).unwrap();
    let r = tune(lonely.path(), &out, &[]);
    assert!(stderr(&r).contains("x.png has no mask x.png.mask.png"), "{}", stderr(&r));
    std::fs::rename(lonely.path().join("x.png"), lonely.path().join("y.png.mask.png")).unwrap();
    let r = tune(lonely.path(), &out, &[]);
    assert!(stderr(&r).contains("y.png.mask.png is a mask without its image y.png"), "{}", stderr(&r));
    let empty = tempfile::tempdir().unwrap();
    let r = tune(empty.path(), &out, &[]);
    assert!(stderr(&r).contains("holds no training pairs"), "{}", stderr(&r));

    // A mask that is not an image.
    let broken = pairs_folder();
    std::fs::write(broken.path().join("a.png.mask.png"), b"not a png").unwrap();
    let r = tune(broken.path(), &out, &[]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("a.png.mask.png"), "{}", stderr(&r));
    assert_eq!(files_in(dir.path()), Vec::<String>::new());

    // An existing prompt is not overwritten without --resume.
    std::fs::write(&out, b"earlier work").unwrap();
    let r = tune(pairs.path(), &out, &["--steps", "1"]);
    assert!(stderr(&r).contains("exists; pass --resume"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier work");
}

/// Every file below `dir` with its bytes, to show that a refused run changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn tune_refuses_an_out_that_would_overwrite_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs");
    let val = dir.path().join("val");
    let model_copy = dir.path().join("model");
    for folder in [&pairs, &val, &model_copy] {
        std::fs::create_dir(folder).unwrap();
    }
    for (from, to) in [
        ("prompt0.png", "pairs/a.png"),
        ("prompt0_mask.png", "pairs/a.png.mask.png"),
        ("prompt1.png", "val/b.png"),
        ("prompt1_mask.png", "val/b.png.mask.png"),
        ("prompt1.png", "init.png"),
        // An init mask named like the mask preview of --out x.safetensors.
        ("prompt1_mask.png", "x.prompt_masks.png"),
        ("model/config.json", "model/config.json"),
        ("model/model.safetensors", "model/model.safetensors"),
    ] {
        std::fs::copy(segment_fixtures().join(from), dir.path().join(to)).unwrap();
    }
    let before = snapshot(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    for (out, input) in [
        ("pairs/a.png", "pairs/a.png"),
        ("pairs/a.png.mask.png", "pairs/a.png.mask.png"),
        ("val/b.png", "val/b.png"),
        ("x.safetensors", "x.prompt_masks.png"),
        ("model/model.safetensors", "model/model.safetensors"),
        ("model/config.json", "model/config.json"),
    ] {
        for resume in [false, true] {
            let mut args = vec![
                "tune".to_string(),
                "--model".into(),
                path("model"),
                "--pairs".into(),
                path("pairs"),
                "--val-pairs".into(),
                path("val"),
                "--init".into(),
                path("init.png"),
                path("x.prompt_masks.png"),
                "--steps".into(),
                "1".into(),
                "--batch".into(),
                "1".into(),
                "--out".into(),
                path(out),
            ];
            if resume {
                args.push("--resume".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = seggpt(&args);
            assert!(!r.status.success(), "--out {out}");
            assert!(
                stderr(&r).contains("would overwrite the input") && stderr(&r).contains(&path(input)),
                "--out {out}: {}",
                stderr(&r)
            );
            assert_eq!(snapshot(dir.path()), before, "--out {out}: the files changed");
        }
    }
}

#[test]
fn tune_refuses_bad_folders_files_and_resumes() {
    let pairs = pairs_folder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.safetensors");
    let expect = |r: &Output, needle: &str| {
        assert!(!r.status.success(), "{needle}: succeeded");
        assert!(stderr(r).contains(needle), "expected `{needle}` in: {}", stderr(r));
    };

    // A --pairs or --val-pairs folder that is missing or not a pairs folder, a broken --init.
    expect(&tune(&dir.path().join("nowhere"), &out, &[]), "cannot read the folder");
    let lonely = tempfile::tempdir().unwrap();
    std::fs::copy(segment_fixtures().join("prompt0.png"), lonely.path().join("v.png")).unwrap();
    expect(&tune(pairs.path(), &out, &["--val-pairs", lonely.path().to_str().unwrap()]), "v.png has no mask");
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let image = file("prompt0.png");
    expect(&tune(pairs.path(), &out, &["--init", &image, broken.to_str().unwrap()]), "broken.png");
    // An --out that is a folder.
    expect(&tune(pairs.path(), dir.path(), &[]), "is a folder");
    assert!(files_in(dir.path()).iter().all(|name| name == "broken.png"), "{:?}", files_in(dir.path()));

    // --resume with a prompt but no optimiser state beside it.
    let run = tune(pairs.path(), &out, &["--steps", "2", "--batch", "1"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let optimiser = dir.path().join("p.optim.safetensors");
    let saved_optimiser = std::fs::read(&optimiser).unwrap();
    std::fs::remove_file(&optimiser).unwrap();
    expect(
        &tune(pairs.path(), &out, &["--steps", "3", "--batch", "1", "--resume"]),
        "p.optim.safetensors does not exist",
    );

    // --resume with the optimiser state of another step (a run stopped between its writes).
    let one = dir.path().join("one.safetensors");
    assert!(tune(pairs.path(), &one, &["--steps", "1", "--batch", "1"]).status.success());
    std::fs::copy(dir.path().join("one.optim.safetensors"), &optimiser).unwrap();
    let prompt = std::fs::read(&out).unwrap();
    expect(
        &tune(pairs.path(), &out, &["--steps", "3", "--batch", "1", "--resume"]),
        "stopped between the two writes",
    );
    assert_eq!(std::fs::read(&out).unwrap(), prompt);
    std::fs::write(&optimiser, &saved_optimiser).unwrap();

    // --resume of a prompt tuned with another model.
    let (tuned, mut metadata) = read_prompt(&out);
    metadata.config_hash = "0123456789abcdef".into();
    let other = encode_prompt(&tuned, &metadata);
    std::fs::write(&out, &other).unwrap();
    expect(
        &tune(pairs.path(), &out, &["--steps", "3", "--batch", "1", "--resume"]),
        "was tuned with another model",
    );
    assert_eq!(std::fs::read(&out).unwrap(), other);

    // --resume of a file that is not a tuned prompt.
    std::fs::write(&out, b"earlier work").unwrap();
    expect(&tune(pairs.path(), &out, &["--steps", "3", "--resume"]), "not a safetensors file");
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier work");
    assert_eq!(std::fs::read(&optimiser).unwrap(), saved_optimiser);
}

#[test]
fn tune_keeps_its_files_out_of_the_pairs_folders() {
    // An --out inside --pairs wrote previews among the pairs, which every later run then read as
    // images without masks.
    let pairs = pairs_folder();
    let val = pairs_folder();
    let before = (snapshot(pairs.path()), snapshot(val.path()));
    let inside = [
        (pairs.path().join("p.safetensors"), "--pairs"),
        (pairs.path().join("sub/p.safetensors"), "--pairs"),
        (val.path().join("p.safetensors"), "--val-pairs"),
    ];
    for (out, flag) in inside {
        let r = tune(
            pairs.path(),
            &out,
            &["--steps", "1", "--batch", "1", "--val-pairs", val.path().to_str().unwrap()],
        );
        assert!(!r.status.success(), "--out {}", out.display());
        assert!(stderr(&r).contains(flag) && stderr(&r).contains("--out"), "{}", stderr(&r));
    }
    assert_eq!((snapshot(pairs.path()), snapshot(val.path())), before, "the pairs folders changed");

    // A folder that an earlier version polluted still trains: the previews beside their prompt
    // are this tool's files, not pairs.
    let elsewhere = tempfile::tempdir().unwrap();
    let first = elsewhere.path().join("p.safetensors");
    assert!(tune(pairs.path(), &first, &["--steps", "1", "--batch", "1"]).status.success());
    for name in ["p.safetensors", "p.optim.safetensors", "p.prompt_pixel_values.png", "p.prompt_masks.png"] {
        std::fs::copy(elsewhere.path().join(name), pairs.path().join(name)).unwrap();
    }
    let again = elsewhere.path().join("q.safetensors");
    let r = tune(pairs.path(), &again, &["--steps", "1", "--batch", "1"]);
    assert!(r.status.success(), "{}", stderr(&r));
}

#[test]
fn tune_resume_refuses_other_settings_naming_them() {
    let pairs = pairs_folder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.safetensors");
    let base = ["--steps", "1", "--batch", "1", "--seed", "3", "--lr", "0.1"];
    assert!(tune(pairs.path(), &out, &base).status.success());
    let before = snapshot(dir.path());
    // The same files in another order: other batches.
    let other_pairs = pairs_folder();
    for (from, to) in [("a.png", "c.png"), ("a.png.mask.png", "c.png.mask.png")] {
        std::fs::rename(other_pairs.path().join(from), other_pairs.path().join(to)).unwrap();
    }
    let cases: [(&Path, &[&str], &str); 6] = [
        (pairs.path(), &["--steps", "2", "--batch", "2", "--seed", "3", "--lr", "0.1"], "batch"),
        (pairs.path(), &["--steps", "2", "--batch", "1", "--seed", "4", "--lr", "0.1"], "seed"),
        (pairs.path(), &["--steps", "2", "--batch", "1", "--seed", "3", "--lr", "0.2"], "lr"),
        (
            pairs.path(),
            &["--steps", "2", "--batch", "1", "--seed", "3", "--lr", "0.1", "--embedding-type", "semantic"],
            "embedding_type",
        ),
        (
            pairs.path(),
            &["--steps", "2", "--batch", "1", "--seed", "3", "--lr", "0.1", "--weight-decay", "0.5"],
            "weight_decay",
        ),
        (other_pairs.path(), &["--steps", "2", "--batch", "1", "--seed", "3", "--lr", "0.1"], "pairs"),
    ];
    for (folder, args, name) in cases {
        let mut args = args.to_vec();
        args.push("--resume");
        let r = tune(folder, &out, &args);
        assert!(!r.status.success(), "{name}: the resume was accepted");
        assert!(
            stderr(&r).contains("other settings") && stderr(&r).contains(&format!("{name}: ")),
            "{name}: {}",
            stderr(&r)
        );
        assert_eq!(snapshot(dir.path()), before, "{name}: the files changed");
    }
    // The same settings resume, and the metadata keeps them.
    let r =
        tune(pairs.path(), &out, &["--steps", "2", "--batch", "1", "--seed", "3", "--lr", "0.1", "--resume"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let (_, meta) = read_prompt(&out);
    assert_eq!((meta.steps, meta.batch, meta.seed, meta.lr), (2, 1, 3, 0.1));
}

/// A copy of the fixture model whose weights hold a NaN: it opens (names and shapes are right)
/// but fails to load.
fn unloadable_model(dir: &Path) -> PathBuf {
    let model = dir.join("nan-model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(segment_fixtures().join("model/config.json"), model.join("config.json")).unwrap();
    let mut bytes = std::fs::read(segment_fixtures().join("model/model.safetensors")).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let start = 8 + header;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(model.join("model.safetensors"), bytes).unwrap();
    model
}

#[test]
fn tune_resume_checks_the_checkpoint_before_the_model_loads() {
    let pairs = pairs_folder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.safetensors");
    assert!(tune(pairs.path(), &out, &["--steps", "1", "--batch", "1"]).status.success());
    std::fs::write(dir.path().join("p.optim.safetensors"), b"not an optimiser state").unwrap();
    let broken = unloadable_model(dir.path());
    let args = [
        "tune",
        "--model",
        broken.to_str().unwrap(),
        "--pairs",
        pairs.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "1",
        "--resume",
    ];
    let r = seggpt(&args);
    assert!(!r.status.success());
    // The checkpoint's error, not the weights': found before the model loads.
    assert!(stderr(&r).contains("p.optim.safetensors"), "{}", stderr(&r));
    assert!(!stderr(&r).contains("non-finite"), "{}", stderr(&r));
}
