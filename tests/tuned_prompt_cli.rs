//! `--tuned-prompt` in `seggpt video` and `seggpt eval`, end to end on the small fixture models: a
//! prompt learned by `seggpt tune` gives what `seggpt segment --tuned-prompt` gives on the same
//! image, alone or beside ordinary prompts, and every unusable tuned prompt is refused, naming
//! the file, before anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixtures, seggpt, stderr};
use seggpt::eval::fewshot::EpisodeAreas;
use seggpt::pipeline::{ChwImage, RgbImage, decode_class_map, decode_rgb, encode_rgb_png};
use seggpt::segment::TunedPrompt;
use seggpt::tune::{PromptMetadata, encode_prompt};
use seggpt::{EmbeddingType, SegGptConfig};
use serde_json::Value;

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// The video fixture model; the segment fixture model (used by `eval`) has the same shape.
fn video_model() -> String {
    text(&fixtures().join("video/model"))
}

fn segment_model() -> String {
    text(&fixtures().join("segment/model"))
}

fn frames() -> PathBuf {
    fixtures().join("video/frames")
}

fn frame_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(frames())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

/// A prompt tuned for two steps on `model` from the first frame and its mask.
fn tuned_prompt(dir: &Path, model: &str) -> PathBuf {
    let out = dir.join("tuned.safetensors");
    let run = seggpt(&[
        "tune",
        "--model",
        model,
        "--pair",
        &text(&frames().join(&frame_names()[0])),
        &text(&fixtures().join("video/first_mask.png")),
        "--steps",
        "2",
        "--batch",
        "1",
        "--lr",
        "0.5",
        "--out",
        &text(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    out
}

/// A tuned prompt file of a `(3, h, w)` prompt.
fn prompt_file(path: &Path, h: usize, w: usize) {
    let image = || ChwImage::new(3, h, w, vec![0.25; 3 * h * w]).unwrap();
    let metadata = PromptMetadata {
        config_hash: "other".into(),
        image_size: (2 * h, w),
        steps: 1,
        lr: 0.1,
        weight_decay: 0.0,
        batch: 1,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        train_losses: vec![1.0],
        val_losses: vec![],
    };
    std::fs::write(path, encode_prompt(&TunedPrompt { pixel_values: image(), masks: image() }, &metadata))
        .unwrap();
}

/// Files no command may use as a tuned prompt, each with what its refusal says: a prompt of
/// another model shape, a missing file, a file that is not safetensors, and safetensors that are
/// not a tuned prompt (the model's weights).
fn unusable_prompts(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let config = std::fs::read_to_string(fixtures().join("video/model/config.json")).unwrap();
    let (h, w) = SegGptConfig::from_json(&config).unwrap().half_image_size();
    let other_shape = dir.join("other_shape.safetensors");
    prompt_file(&other_shape, 2 * h, w);
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"no tensors here").unwrap();
    vec![
        (other_shape, "another model shape"),
        (dir.join("missing.safetensors"), "missing.safetensors"),
        (garbage, "not a safetensors file"),
        (fixtures().join("segment/model/model.safetensors"), "has no tensor `prompt_pixel_values`"),
    ]
}

fn segment_masks(model: &str, prompt: &[&str], target: &Path, out_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["segment", "--model", model];
    args.extend_from_slice(prompt);
    let (target, out_dir) = (text(target), text(out_dir));
    args.extend_from_slice(&["--target", &target, "--out-dir", &out_dir]);
    args.extend_from_slice(extra);
    seggpt(&args)
}

fn video(out_dir: &Path, extra: &[&str]) -> Output {
    let model = video_model();
    let (frames, out_dir) = (text(&frames()), text(out_dir));
    let mut args = vec!["video", "--model", &model, "--frames", &frames, "--out-dir", &out_dir];
    args.extend_from_slice(extra);
    seggpt(&args)
}

#[test]
fn video_with_a_tuned_prompt_segments_the_first_frame_like_segment() {
    let dir = tempfile::tempdir().unwrap();
    let tuned = tuned_prompt(dir.path(), &video_model());
    let tuned = text(&tuned);
    let names = frame_names();

    // Each frame by `segment` with the tuned prompt alone.
    let single = dir.path().join("single");
    for name in &names {
        let out =
            segment_masks(&video_model(), &["--tuned-prompt", &tuned], &frames().join(name), &single, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let segment_mask = |name: &str| std::fs::read(single.join(format!("{name}.mask.png"))).unwrap();
    let video_mask =
        |out: &Path, name: &str| std::fs::read(out.join(format!("{}.mask.png", stem(name)))).unwrap();

    // K = 0 with the tuned prompt alone: every frame is segment's.
    let k0 = dir.path().join("k0");
    let run = video(&k0, &["--tuned-prompt", &tuned, "--num-frames", "0"]);
    assert!(run.status.success(), "{}", stderr(&run));
    for name in &names {
        assert_eq!(video_mask(&k0, name), segment_mask(name), "{name}");
    }

    // K = 2: the first frame is segment's; the later ones are propagated, one output each.
    let k2 = dir.path().join("k2");
    let run = video(&k2, &["--tuned-prompt", &tuned, "--num-frames", "2"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(video_mask(&k2, &names[0]), segment_mask(&names[0]));
    for name in &names {
        assert!(k2.join(format!("{}.mask.png", stem(name))).is_file(), "{name}");
    }

    // Beside the first frame's mask, the tuned prompt follows it in the batch, as it follows
    // --prompt in segment.
    let first = dir.path().join("first");
    let first_mask = text(&fixtures().join("video/first_mask.png"));
    let run = video(&first, &["--first-mask", &first_mask, "--tuned-prompt", &tuned, "--num-frames", "0"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let both = dir.path().join("both");
    let first_frame = text(&frames().join(&names[0]));
    let prompts = ["--prompt", &first_frame, &first_mask, "--tuned-prompt", &tuned];
    let out = segment_masks(&video_model(), &prompts, &frames().join(&names[1]), &both, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        video_mask(&first, &names[1]),
        std::fs::read(both.join(format!("{}.mask.png", names[1]))).unwrap()
    );
}

#[test]
fn video_refuses_unusable_tuned_prompts_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |out: &Output, out_dir: &Path, needles: &[&str]| {
        let message = stderr(out);
        assert!(!out.status.success(), "the run should fail: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} not in: {message}");
        }
        assert!(!out_dir.exists(), "no output folder is made for a refused run");
    };
    let out_dir = dir.path().join("out");
    for (path, needle) in unusable_prompts(dir.path()) {
        let run = video(&out_dir, &["--tuned-prompt", &text(&path)]);
        refused(&run, &out_dir, &[&text(&path), needle]);
    }
    let tuned = tuned_prompt(dir.path(), &video_model());
    let run = video(&out_dir, &["--tuned-prompt", &text(&tuned), "--ensemble", "spatial"]);
    refused(&run, &out_dir, &["cannot join the spatial ensemble"]);
    // Colour propagation takes its colours from prompt masks, which a tuned prompt has not.
    let run = video(&out_dir, &["--tuned-prompt", &text(&tuned), "--propagate", "colour"]);
    refused(&run, &out_dir, &["no mask colours", "propagate binary masks"]);
}

/// `eval fss` on the committed FSS folder with `extra`.
fn fss(out: &Path, extra: &[&str]) -> Output {
    let model = segment_model();
    let (data, out) = (text(&fixtures().join("eval/fss")), text(out));
    let mut args = vec!["eval", "fss", "--model", &model, "--data", &data, "--out", &out];
    args.extend_from_slice(&["--episodes-per-class", "2", "--seed", "1"]);
    args.extend_from_slice(extra);
    seggpt(&args)
}

/// A mask as eval reads it: grey level >= 128 is foreground.
fn foreground(path: &Path) -> (u32, u32, Vec<bool>) {
    let rgb = decode_rgb(&std::fs::read(path).unwrap(), "mask").unwrap();
    let grey = |p: &[u8]| (19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 0x8000) >> 16;
    (rgb.width(), rgb.height(), rgb.as_raw().chunks_exact(3).map(|p| grey(p) >= 128).collect())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn eval_fss_with_a_tuned_prompt_scores_what_segment_gives() {
    let dir = tempfile::tempdir().unwrap();
    let tuned = text(&tuned_prompt(dir.path(), &segment_model()));
    let data = fixtures().join("eval/fss");
    for shots in ["0", "1"] {
        let run_dir = dir.path().join(format!("run{shots}"));
        let run = fss(&run_dir, &["--shots", shots, "--tuned-prompt", &tuned]);
        assert!(run.status.success(), "{}", stderr(&run));
        let settings = &read_json(&run_dir.join("report.json"))["settings"];
        assert_eq!(settings["tuned_prompts_sha256"].as_array().unwrap().len(), 1);
        let results = std::fs::read_to_string(run_dir.join("results.jsonl")).unwrap();
        let episodes = read_json(&run_dir.join("episodes.json"))["episodes"].as_array().unwrap().clone();
        assert_eq!(results.lines().count(), episodes.len());
        for line in results.lines() {
            let result: Value = serde_json::from_str(line).unwrap();
            let episode = &episodes[result["index"].as_u64().unwrap() as usize];
            // The same episode by `segment`: each support a white-on-black prompt, then the
            // tuned prompt; the class map of one label is the prediction.
            let case = dir.path().join(format!("case{shots}-{}", result["index"]));
            std::fs::create_dir_all(&case).unwrap();
            let mut prompt_args: Vec<String> = Vec::new();
            for (i, support) in episode["supports"].as_array().unwrap().iter().enumerate() {
                let (w, h, fg) = foreground(&data.join(support["mask"].as_str().unwrap()));
                let white: Vec<u8> = fg.iter().flat_map(|&f| [u8::from(f) * 255; 3]).collect();
                let mask = case.join(format!("support{i}.png"));
                std::fs::write(&mask, encode_rgb_png(&RgbImage::new(w, h, white).unwrap()).unwrap()).unwrap();
                let image = data.join(support["image"].as_str().unwrap());
                prompt_args.extend(["--prompt".into(), text(&image), text(&mask)]);
            }
            prompt_args.extend(["--tuned-prompt".into(), tuned.clone()]);
            let prompt_args: Vec<&str> = prompt_args.iter().map(String::as_str).collect();
            let query = data.join(episode["query"]["image"].as_str().unwrap());
            let out_dir = case.join("out");
            let out = segment_masks(&segment_model(), &prompt_args, &query, &out_dir, &["--num-labels", "1"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let classes_file =
                out_dir.join(format!("{}.classes.png", query.file_name().unwrap().to_string_lossy()));
            let classes = decode_class_map(&std::fs::read(classes_file).unwrap(), "classes").unwrap();
            let pred: Vec<bool> = classes.as_raw().iter().map(|&c| c == 1).collect();
            let (_, _, truth) = foreground(&data.join(episode["query"]["mask"].as_str().unwrap()));
            let areas = EpisodeAreas::measure(&pred, &truth, None).unwrap();
            let recorded: EpisodeAreas = serde_json::from_value(result["areas"].clone()).unwrap();
            assert_eq!(recorded, areas, "shots {shots}, episode {}", result["index"]);
        }
    }
}

#[test]
fn eval_refuses_unusable_tuned_prompts_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (path, needle) in unusable_prompts(dir.path()) {
        let run = fss(&out, &["--tuned-prompt", &text(&path)]);
        assert!(!run.status.success());
        assert!(stderr(&run).contains(&text(&path)) && stderr(&run).contains(needle), "{}", stderr(&run));
        assert!(!out.exists(), "nothing is written for a refused run");
    }
    let tuned = text(&tuned_prompt(dir.path(), &segment_model()));
    let run = fss(&out, &["--tuned-prompt", &tuned, "--ensemble", "spatial"]);
    assert!(!run.status.success() && stderr(&run).contains("cannot join the spatial ensemble"));
    assert!(!out.exists());
    let run = fss(&out, &["--shots", "0"]);
    assert!(!run.status.success() && stderr(&run).contains("--shots 0"), "{}", stderr(&run));
    assert!(!out.exists());

    let davis = text(&fixtures().join("eval/davis"));
    let vos = |out: &Path, tuned: &str, extra: &[&str]| {
        let (model, out) = (segment_model(), text(out));
        let mut args = vec!["eval", "vos", "--model", &model, "--davis", &davis, "--out", &out];
        args.extend_from_slice(&["--num-frames", "1", "--tuned-prompt", tuned]);
        args.extend_from_slice(extra);
        seggpt(&args)
    };
    let bad = unusable_prompts(dir.path());
    let run = vos(&out, &text(&bad[0].0), &[]);
    assert!(!run.status.success() && stderr(&run).contains("another model shape"), "{}", stderr(&run));
    assert!(!out.exists());
    let run = vos(&out, &tuned, &["--ensemble", "spatial"]);
    assert!(!run.status.success() && stderr(&run).contains("cannot join the spatial ensemble"));
    assert!(!out.exists());

    // A vos run with a tuned prompt records it, and the folder refuses another one.
    let run = vos(&out, &tuned, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(read_json(&out.join("report.json"))["jf_mean"].is_number());
    let other = dir.path().join("other.safetensors");
    std::fs::copy(&tuned, &other).unwrap();
    let mut bytes = std::fs::read(&other).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&other, bytes).unwrap();
    let run = vos(&out, &text(&other), &[]);
    assert!(!run.status.success() && stderr(&run).contains("tuned_prompts_sha256"), "{}", stderr(&run));
}

/// The config hash of the fixture models (segment's and video's share their config).
fn model_config_hash() -> String {
    let text = std::fs::read_to_string(fixtures().join("segment/model/config.json")).unwrap();
    seggpt::tune::config_hash(&SegGptConfig::from_json(&text).unwrap())
}

/// A tuned prompt for the fixture models with every value `value` and the config hash `hash`.
fn prompt_of(path: &Path, value: f32, hash: &str) {
    let text = std::fs::read_to_string(fixtures().join("segment/model/config.json")).unwrap();
    let (h, w) = SegGptConfig::from_json(&text).unwrap().half_image_size();
    let image = || ChwImage::new(3, h, w, vec![value; 3 * h * w]).unwrap();
    let metadata = PromptMetadata {
        config_hash: hash.into(),
        image_size: (2 * h, w),
        steps: 1,
        lr: 0.1,
        weight_decay: 0.0,
        batch: 1,
        seed: 0,
        embedding_type: EmbeddingType::Instance,
        train_losses: vec![1.0],
        val_losses: vec![],
    };
    std::fs::write(path, encode_prompt(&TunedPrompt { pixel_values: image(), masks: image() }, &metadata))
        .unwrap();
}

fn segment_with(tuned: &Path, out_dir: &Path) -> Output {
    let target = fixtures().join("segment/target_a.png");
    segment_masks(&segment_model(), &["--tuned-prompt", &text(tuned)], &target, out_dir, &[])
}

#[test]
fn a_tuned_prompt_with_absurd_values_is_refused_naming_the_file() {
    // They made the model overflow, which was blamed on "the weights or the config".
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.safetensors");
    prompt_of(&ok, 0.5, &model_config_hash());
    assert!(segment_with(&ok, &dir.path().join("ok")).status.success());
    for (name, value) in [("huge", 1e30f32), ("nan", f32::NAN), ("inf", f32::INFINITY), ("big", -1e6)] {
        let path = dir.path().join(format!("{name}.safetensors"));
        prompt_of(&path, value, &model_config_hash());
        let out_dir = dir.path().join(name);
        for run in [segment_with(&path, &out_dir), fss(&out_dir, &["--tuned-prompt", &text(&path)])] {
            let message = stderr(&run);
            assert!(!run.status.success(), "{name}: accepted");
            assert!(
                message.contains(&text(&path)) && message.contains("prompt_pixel_values"),
                "{name}: {message}"
            );
            assert!(!message.contains("the weights or the config"), "{name}: {message}");
            assert!(!out_dir.exists(), "{name}: nothing is written");
        }
    }
}

#[test]
fn a_tuned_prompt_for_another_config_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    prompt_of(&path, 0.5, "0123456789abcdef");
    let out_dir = dir.path().join("out");
    let video_run = video(&out_dir, &["--tuned-prompt", &text(&path), "--propagate", "binary"]);
    for run in [segment_with(&path, &out_dir), fss(&out_dir, &["--tuned-prompt", &text(&path)]), video_run] {
        let message = stderr(&run);
        assert!(!run.status.success(), "accepted: {message}");
        for needle in [text(&path), "0123456789abcdef".into(), model_config_hash()] {
            assert!(message.contains(&needle), "{needle} not in: {message}");
        }
        assert!(!out_dir.exists(), "nothing is written");
    }
}
