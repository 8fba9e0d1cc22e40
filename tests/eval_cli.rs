//! `seggpt eval fss` and `seggpt eval vos` end to end on the committed tiny sets
//! (tests/fixtures/eval/{fss,davis}, with the tiny random model of tests/fixtures/segment/model):
//! the scores agree with the library's metrics on what the run wrote, runs resume, and bad inputs
//! fail with a message that names the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cpu, fixtures};
use seggpt::eval::davis::{Labels, Summary, score_sequence};
use seggpt::eval::fewshot::{EpisodeAreas, FewShotScores};
use seggpt::pipeline::{ClassMap, decode_class_map, decode_rgb};
use seggpt::segment::{Prompt, PromptMask, Segmenter, Target};
use seggpt::weights::open_model;
use seggpt::{ForwardOptions, MemoryBudget, SegGpt};
use serde_json::Value;

fn seggpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seggpt")).args(args).output().expect("the seggpt binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn model() -> String {
    fixtures().join("segment/model").display().to_string()
}

fn fss_data() -> PathBuf {
    fixtures().join("eval/fss")
}

fn davis_root() -> PathBuf {
    fixtures().join("eval/davis")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn fss_run(data: &Path, out: &Path, seed: &str) -> Output {
    let (data, out) = (data.display().to_string(), out.display().to_string());
    seggpt(&[
        "eval",
        "fss",
        "--model",
        &model(),
        "--data",
        &data,
        "--shots",
        "2",
        "--episodes-per-class",
        "3",
        "--seed",
        seed,
        "--out",
        &out,
    ])
}

fn vos_run(root: &Path, out: &Path) -> Output {
    let (root, out) = (root.display().to_string(), out.display().to_string());
    seggpt(&["eval", "vos", "--model", &model(), "--davis", &root, "--num-frames", "2", "--out", &out])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target)
        } else {
            std::fs::copy(&path, &target).map(drop).unwrap()
        }
    }
}

fn load_model() -> SegGpt {
    let files = open_model(&fixtures().join("segment/model")).unwrap();
    SegGpt::load(files.source.as_ref(), files.config, &cpu(), MemoryBudget::DEFAULT).unwrap()
}

fn grey_foreground(path: &Path) -> (u32, u32, Vec<bool>) {
    let rgb = decode_rgb(&std::fs::read(path).unwrap(), "mask").unwrap();
    // Binary masks: every channel is 0 or 255, so any channel decides.
    (rgb.width(), rgb.height(), rgb.as_raw().chunks_exact(3).map(|p| p[0] >= 128).collect())
}

#[test]
fn fss_scores_every_episode_as_the_library_does_and_repeats_with_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = fss_run(&fss_data(), &out, "5");
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("mIoU") && stdout.contains("apple") && stdout.contains("boat"), "{stdout}");

    let episodes = read_json(&out.join("episodes.json"))["episodes"].as_array().unwrap().clone();
    assert_eq!(episodes.len(), 6, "3 episodes for each of 2 classes");
    // Every episode again through the library: its supports as white-on-black prompts, the
    // query's foreground where the class map says 1.
    let model = load_model();
    let mut scores = FewShotScores::default();
    for episode in &episodes {
        let query = episode["query"]["image"].as_str().unwrap();
        let supports = episode["supports"].as_array().unwrap();
        assert_eq!(supports.len(), 2);
        assert!(supports.iter().all(|s| s["image"] != episode["query"]["image"]), "query among its supports");
        let prompts: Vec<Prompt> = supports
            .iter()
            .map(|s| {
                let image = fss_data().join(s["image"].as_str().unwrap());
                let (w, h, fg) = grey_foreground(&fss_data().join(s["mask"].as_str().unwrap()));
                let map = ClassMap::new(w, h, fg.iter().map(|&f| u8::from(f)).collect()).unwrap();
                let image = decode_rgb(&std::fs::read(&image).unwrap(), "support").unwrap();
                Prompt { image, mask: PromptMask::Classes { map, num_labels: 1 } }
            })
            .collect();
        let target = Target::decode(&std::fs::read(fss_data().join(query)).unwrap(), query).unwrap();
        let segmenter = Segmenter::new(&model, &cpu(), &prompts, ForwardOptions::default()).unwrap();
        let result = segmenter.run(&target, Some(1), &mut |_, _| {}).unwrap();
        let pred: Vec<bool> = result.classes.unwrap().as_raw().iter().map(|&c| c == 1).collect();
        let (_, _, truth) = grey_foreground(&fss_data().join(episode["query"]["mask"].as_str().unwrap()));
        scores.add(episode["class"].as_str().unwrap(), &EpisodeAreas::measure(&pred, &truth, None).unwrap());
    }
    let report = read_json(&out.join("report.json"));
    let close = |a: f64, b: &Value| assert!((a * 100.0 - b.as_f64().unwrap()).abs() < 1e-9, "{a} vs {b}");
    close(scores.miou().unwrap(), &report["miou"]);
    close(scores.fb_iou().unwrap(), &report["fb_iou"]);
    for ((class, iou, n), row) in scores.class_ious().into_iter().zip(report["classes"].as_array().unwrap()) {
        assert_eq!(row["class"], class);
        assert_eq!(row["episodes"], n);
        close(iou, &row["iou"]);
    }
    assert_eq!(report["settings"]["seed"], 5);
    assert_eq!(report["settings"]["model_sha256"].as_str().unwrap().len(), 64);

    // The same seed draws the same episodes; another seed others.
    let again = dir.path().join("again");
    assert!(fss_run(&fss_data(), &again, "5").status.success());
    assert_eq!(read_json(&again.join("episodes.json")), read_json(&out.join("episodes.json")));
    let other = dir.path().join("other");
    assert!(fss_run(&fss_data(), &other, "6").status.success());
    assert_ne!(read_json(&other.join("episodes.json")), read_json(&out.join("episodes.json")));
}

#[test]
fn fss_resumes_from_the_results_written_and_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(fss_run(&fss_data(), &out, "1").status.success());
    let report = read_json(&out.join("report.json"));
    // As if stopped while writing episode 4: three whole lines and half a fourth.
    let results = out.join("results.jsonl");
    let text = std::fs::read_to_string(&results).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = format!("{}\n{}", lines[..3].join("\n"), &lines[3][..lines[3].len() / 2]);
    std::fs::write(&results, cut).unwrap();
    std::fs::remove_file(out.join("report.json")).unwrap();
    let resumed = fss_run(&fss_data(), &out, "1");
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming"), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("3/3 episodes"), "only the missing three run: {}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(&results).unwrap().lines().count(), 6);
    let again = read_json(&out.join("report.json"));
    assert_eq!(again["miou"], report["miou"]);
    assert_eq!(again["classes"], report["classes"]);

    let other = fss_run(&fss_data(), &out, "2");
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("other settings") && stderr(&other).contains("seed"),
        "{}",
        stderr(&other)
    );
}

#[test]
fn fss_accepts_a_json_episode_list_with_a_label_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&fss_data(), &data);
    let list = serde_json::json!({ "episodes": [
        { "class": "apple", "label": 255,
          "query": { "image": "apple/1.jpg", "mask": "apple/1.png" },
          "supports": [{ "image": "apple/2.jpg", "mask": "apple/2.png" }] },
        { "class": "boat", "label": 255,
          "query": { "image": "boat/3.jpg", "mask": "boat/3.png" },
          "supports": [{ "image": "boat/1.jpg", "mask": "boat/1.png" }] },
    ]});
    let file = data.join("episodes.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let out = dir.path().join("run");
    let run = seggpt(&[
        "eval",
        "fss",
        "--model",
        &model(),
        "--episodes",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["episodes"], 2);
    assert_eq!(report["classes"].as_array().unwrap().len(), 2);
}

#[test]
fn fss_bad_inputs_fail_with_the_file_named_and_write_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let expect_error = |data: &Path, needle: &str| {
        let out = dir.path().join(format!("out-{}", needle.len()));
        let run = fss_run(data, &out, "0");
        assert!(!run.status.success(), "{needle}: succeeded");
        assert!(stderr(&run).contains(needle), "expected `{needle}` in: {}", stderr(&run));
        assert!(!out.join("report.json").exists());
    };
    expect_error(&dir.path().join("missing"), "missing");

    // A mask of another size than its image.
    let data = dir.path().join("size");
    copy_dir(&fss_data(), &data);
    std::fs::copy(data.join("boat/1.png"), data.join("apple/2.png")).unwrap();
    let (w1, h1, _) = grey_foreground(&data.join("apple/2.png"));
    let (w2, h2, _) = grey_foreground(&fss_data().join("apple/2.png"));
    assert_ne!((w1, h1), (w2, h2), "the fixture's images differ in size");
    expect_error(&data, "must be its image's size");

    // An empty class.
    let data = dir.path().join("empty");
    copy_dir(&fss_data(), &data);
    std::fs::create_dir(data.join("cloud")).unwrap();
    expect_error(&data, "`cloud` has 0 image(s)");

    // An image without its mask.
    let data = dir.path().join("nomask");
    copy_dir(&fss_data(), &data);
    std::fs::remove_file(data.join("boat/2.png")).unwrap();
    expect_error(&data, "has no mask");

    // Not an image.
    let data = dir.path().join("notimage");
    copy_dir(&fss_data(), &data);
    std::fs::write(data.join("apple/3.jpg"), b"not a jpeg").unwrap();
    expect_error(&data, "apple/3.jpg");

    // An episode list that is not one.
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "{\"episodes\": [{\"class\": 3}]}").unwrap();
    let run = seggpt(&[
        "eval",
        "fss",
        "--model",
        &model(),
        "--episodes",
        file.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!run.status.success() && stderr(&run).contains("not an episode list"), "{}", stderr(&run));
}

fn labels(path: &Path) -> ClassMap {
    decode_class_map(&std::fs::read(path).unwrap(), &path.display().to_string()).unwrap()
}

fn view(maps: &[ClassMap]) -> Vec<Labels<'_>> {
    maps.iter()
        .map(|m| Labels { width: m.width() as usize, height: m.height() as usize, ids: m.as_raw() })
        .collect()
}

fn frame_names(sequence: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(davis_root().join("Annotations/480p").join(sequence))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn vos_writes_davis_predictions_and_scores_them_like_the_toolkit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = vos_run(&davis_root(), &out);
    assert!(run.status.success(), "{}", stderr(&run));
    let mut objects = Vec::new();
    for (sequence, count) in [("twoobjects", 2u8), ("oneobject", 1)] {
        let names = frame_names(sequence);
        let truth: Vec<ClassMap> = names
            .iter()
            .map(|n| labels(&davis_root().join("Annotations/480p").join(sequence).join(n)))
            .collect();
        let pred: Vec<ClassMap> = names.iter().map(|n| labels(&out.join(sequence).join(n))).collect();
        // The DAVIS format: 8-bit palette PNGs of object ids; the first frame is its annotation.
        let png = std::fs::read(out.join(sequence).join(&names[0])).unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(&png)).read_info().unwrap().info().color_type;
        assert_eq!(info, png::ColorType::Indexed);
        assert_eq!(pred[0].as_raw(), truth[0].as_raw());
        assert!(pred.iter().all(|p| p.as_raw().iter().all(|&v| v <= count)));
        objects.extend(score_sequence(&view(&truth), &view(&pred)).unwrap());
    }
    let summary = Summary::of(&objects).unwrap();
    let report = read_json(&out.join("report.json"));
    assert!((summary.jf_mean * 100.0 - report["jf_mean"].as_f64().unwrap()).abs() < 1e-9);
    assert!((summary.j.mean * 100.0 - report["j"]["mean"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(report["objects"].as_array().unwrap().len(), 3);
    assert_eq!(report["settings"]["propagate"], "colour");
}

#[test]
fn vos_resumes_the_unfinished_sequence_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(vos_run(&davis_root(), &out).status.success());
    let report = read_json(&out.join("report.json"));
    let last = out.join("oneobject").join(frame_names("oneobject").last().unwrap());
    std::fs::remove_file(&last).unwrap();
    let resumed = vos_run(&davis_root(), &out);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    // oneobject has 4 frames: 3 predicted again, twoobjects none.
    assert!(stderr(&resumed).contains("3/3 frames"), "{}", stderr(&resumed));
    assert!(last.exists());
    assert_eq!(read_json(&out.join("report.json"))["jf_mean"], report["jf_mean"]);
}

#[test]
fn vos_bad_inputs_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let expect_error = |root: &Path, needle: &str| {
        let out = dir.path().join(format!("out-{}", needle.len()));
        let run = vos_run(root, &out);
        assert!(!run.status.success(), "{needle}: succeeded");
        assert!(stderr(&run).contains(needle), "expected `{needle}` in: {}", stderr(&run));
        assert!(!out.join("report.json").exists());
    };
    expect_error(&dir.path().join("nowhere"), "ImageSets/2017/val.txt");

    let root = dir.path().join("noann");
    copy_dir(&davis_root(), &root);
    std::fs::remove_file(root.join("Annotations/480p/twoobjects/00002.png")).unwrap();
    expect_error(&root, "00002.png is missing");

    let root = dir.path().join("size");
    copy_dir(&davis_root(), &root);
    let small = ClassMap::new(5, 4, vec![0; 20]).unwrap();
    std::fs::write(
        root.join("Annotations/480p/oneobject/00001.png"),
        seggpt::pipeline::encode_palette_png(&small).unwrap(),
    )
    .unwrap();
    expect_error(&root, "must be its image's size");

    let root = dir.path().join("short");
    copy_dir(&davis_root(), &root);
    for f in ["00002", "00003"] {
        std::fs::remove_file(root.join(format!("JPEGImages/480p/oneobject/{f}.jpg"))).unwrap();
    }
    expect_error(&root, "at least 3");

    let root = dir.path().join("noseq");
    copy_dir(&davis_root(), &root);
    std::fs::write(root.join("ImageSets/2017/val.txt"), "twoobjects\nghost\n").unwrap();
    expect_error(&root, "ghost");
}
