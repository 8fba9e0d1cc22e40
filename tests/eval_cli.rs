//! `seggpt eval fss` and `seggpt eval vos` end to end on the committed tiny sets
//! (tests/fixtures/eval/{fss,davis}, with the tiny random model of tests/fixtures/segment/model):
//! the scores agree with the library's metrics on what the run wrote, runs resume, and bad inputs
//! fail with a message that names the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cpu, fixtures, seggpt, stderr};
use seggpt::eval::davis::{Labels, Summary, score_sequence};
use seggpt::eval::fewshot::{EpisodeAreas, FewShotScores};
use seggpt::pipeline::{ClassMap, decode_class_map, decode_rgb};
use seggpt::segment::{Prompt, PromptMask, Segmenter, Target};
use seggpt::weights::open_model;
use seggpt::{ForwardOptions, MemoryBudget, SegGpt};
use serde_json::Value;

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
fn vos_refuses_an_out_holding_files_it_did_not_write() {
    // The ground truth as --out scored 100 % without loading the model: only a folder that this
    // tool made (its run.json) may hold predictions that count.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("davis");
    copy_dir(&davis_root(), &root);
    let before = snapshot(&root);
    let truth_copy = dir.path().join("truth");
    copy_dir(&root.join("Annotations/480p"), &truth_copy);
    let run = vos_run(&root, &truth_copy);
    assert!(!run.status.success(), "the ground truth was scored as predictions: {}", stderr(&run));
    assert!(stderr(&run).contains("no run.json") && stderr(&run).contains("truth"), "{}", stderr(&run));
    assert!(!truth_copy.join("run.json").exists() && !truth_copy.join("report.json").exists());

    // The dataset's own folders are refused as --out, even before they hold files.
    for out in [root.join("Annotations/480p"), root.clone(), root.join("results")] {
        let run = vos_run(&root, &out);
        assert!(!run.status.success(), "--out {}: {}", out.display(), stderr(&run));
        assert!(stderr(&run).contains("--davis"), "--out {}: {}", out.display(), stderr(&run));
    }
    assert_eq!(snapshot(&root), before, "the dataset changed");
}

#[test]
fn fss_refuses_results_it_did_not_write_and_an_out_inside_data() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    assert!(fss_run(&fss_data(), &done, "1").status.success());
    // A folder with another run's results but no run.json: not this run's results.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::copy(done.join("results.jsonl"), foreign.join("results.jsonl")).unwrap();
    let run = fss_run(&fss_data(), &foreign, "1");
    assert!(!run.status.success(), "a results file without run.json was reused: {}", stderr(&run));
    assert!(stderr(&run).contains("no run.json") && stderr(&run).contains("foreign"), "{}", stderr(&run));
    assert!(!foreign.join("report.json").exists() && !foreign.join("run.json").exists());

    // An --out inside --data would become a class folder of the next run.
    let data = dir.path().join("data");
    copy_dir(&fss_data(), &data);
    let before = snapshot(&data);
    for out in [data.join("run1"), data.clone(), data.join("apple/run")] {
        let run = fss_run(&data, &out, "1");
        assert!(!run.status.success(), "--out {}: {}", out.display(), stderr(&run));
        assert!(stderr(&run).contains("--data"), "--out {}: {}", out.display(), stderr(&run));
    }
    assert_eq!(snapshot(&data), before, "the data changed");
}

#[test]
fn vos_refuses_sequence_names_that_leave_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/davis");
    copy_dir(&davis_root(), &root);
    // A sequence reachable by `../../escape` from every folder a sequence name is joined to.
    let escape = dir.path().join("a/escape");
    copy_dir(&davis_root().join("JPEGImages/480p/oneobject"), &escape);
    copy_dir(&davis_root().join("Annotations/480p/oneobject"), &escape);
    let absolute = escape.display().to_string();
    for name in ["../../escape", "../../../escape", absolute.as_str(), ".", "a/b"] {
        std::fs::write(root.join("ImageSets/2017/val.txt"), format!("oneobject\n{name}\n")).unwrap();
        let out = dir.path().join("a/b/out/run");
        let run = vos_run(&root, &out);
        assert!(!run.status.success(), "{name}: {}", stderr(&run));
        assert!(
            stderr(&run).contains("val.txt line 2") && stderr(&run).contains(name),
            "{name}: {}",
            stderr(&run)
        );
        assert!(!out.exists(), "{name}: nothing is written");
    }
    assert_eq!(std::fs::read_dir(&escape).unwrap().count(), 8, "nothing was written beside the frames");
}

#[test]
fn eval_counts_are_bounded_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let davis = davis_root().display().to_string();
    for frames in ["18446744073709551615", "1000000000", "64"] {
        let run = seggpt(&[
            "eval",
            "vos",
            "--model",
            &model(),
            "--davis",
            &davis,
            "--num-frames",
            frames,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!run.status.success(), "--num-frames {frames}");
        // The bound of `video --num-frames`.
        assert!(
            stderr(&run).contains("--num-frames") && stderr(&run).contains("0 to 63"),
            "{}",
            stderr(&run)
        );
        assert!(!out.exists(), "--num-frames {frames}: nothing is written");
    }
    let data = fss_data().display().to_string();
    let run = seggpt(&[
        "eval",
        "fss",
        "--model",
        &model(),
        "--data",
        &data,
        "--episodes-per-class",
        "100000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("--episodes-per-class") && stderr(&run).contains("1 to"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
}

#[test]
fn vos_checks_every_annotation_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    // An annotation that is not a class map (RGB), found only at scoring before.
    let root = dir.path().join("rgb");
    copy_dir(&davis_root(), &root);
    let annotation = root.join("Annotations/480p/oneobject/00002.png");
    let (w, h) = (labels(&annotation).width(), labels(&annotation).height());
    let rgb = seggpt::pipeline::RgbImage::new(w, h, vec![200; (3 * w * h) as usize]).unwrap();
    std::fs::write(&annotation, seggpt::pipeline::encode_rgb_png(&rgb).unwrap()).unwrap();
    let out = dir.path().join("out-rgb");
    let run = vos_run(&root, &out);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("oneobject/00002.png"), "{}", stderr(&run));
    assert!(!out.exists(), "the annotation was found after the work started");

    // A first annotation that marks no object.
    let root = dir.path().join("empty");
    copy_dir(&davis_root(), &root);
    let first = root.join("Annotations/480p/oneobject/00000.png");
    let (w, h) = (labels(&first).width(), labels(&first).height());
    let blank = ClassMap::new(w, h, vec![0; (w * h) as usize]).unwrap();
    std::fs::write(&first, seggpt::pipeline::encode_palette_png(&blank).unwrap()).unwrap();
    let out = dir.path().join("out-empty");
    let run = vos_run(&root, &out);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("marks no object") && stderr(&run).contains("00000.png"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists(), "the annotation was found after the work started");
}

#[test]
fn fss_refuses_a_hand_edited_results_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(fss_run(&fss_data(), &out, "1").status.success());
    let results = out.join("results.jsonl");
    let original = std::fs::read_to_string(&results).unwrap();
    let edit = |line: usize, field: &str, value: &str| {
        // The value as written by hand, which need not be JSON's.
        let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
        let mut edited: Value = serde_json::from_str(&lines[line]).unwrap();
        edited["areas"][field] = "VALUE".into();
        lines[line] = edited.to_string().replace("\"VALUE\"", value);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&results, text).unwrap();
        std::fs::remove_file(out.join("report.json")).ok();
    };
    for (field, value) in
        [("fg_intersection", "123456"), ("bg_union", "0"), ("fg_union", "-3"), ("fg_union", "1e400")]
    {
        edit(1, field, value);
        let run = fss_run(&fss_data(), &out, "1");
        assert!(!run.status.success(), "{field} = {value}: {}", String::from_utf8_lossy(&run.stdout));
        assert!(stderr(&run).contains("results.jsonl line 2"), "{field} = {value}: {}", stderr(&run));
        assert!(!out.join("report.json").exists());
    }
    std::fs::write(&results, &original).unwrap();
    assert!(fss_run(&fss_data(), &out, "1").status.success());
}

/// A DAVIS root of one sequence of `frames` large frames, each with the same one-object annotation.
fn long_davis(root: &Path, frames: usize) {
    let (w, h) = (1024u32, 768u32);
    for folder in ["JPEGImages/480p/long", "Annotations/480p/long", "ImageSets/2017"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
    }
    std::fs::write(root.join("ImageSets/2017/val.txt"), "long\n").unwrap();
    let ids: Vec<u8> = (0..w * h).map(|i| u8::from((i % w) < w / 2)).collect();
    let annotation = seggpt::pipeline::encode_palette_png(&ClassMap::new(w, h, ids).unwrap()).unwrap();
    for f in 0..frames {
        let pixels: Vec<u8> =
            (0..w * h * 3).map(|i| ((i / 3 * 7 + i % 3 * 50 + f as u32 * 13) % 256) as u8).collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(root.join(format!("JPEGImages/480p/long/{f:05}.jpg")), jpeg).unwrap();
        std::fs::write(root.join(format!("Annotations/480p/long/{f:05}.png")), &annotation).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_vos_stops_after_the_current_frame_and_resumes_to_the_same_predictions() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("davis");
    let total = 40;
    long_davis(&root, total);
    let out = dir.path().join("run");
    let args = |out: &Path| {
        let (root, out) = (root.display().to_string(), out.display().to_string());
        ["eval", "vos", "--model", &model(), "--davis", &root, "--num-frames", "2", "--out", &out]
            .map(str::to_owned)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_seggpt"))
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let predicted = || std::fs::read_dir(out.join("long")).map(|d| d.count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    // The first frame's prediction is its annotation; wait for a propagated one.
    while predicted() < 2 {
        assert!(Instant::now() < deadline, "no prediction appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    let written = predicted();
    assert!(written < total, "the whole sequence ran after Ctrl-C: {written} of {total} frames");
    assert!(stderr(&result).contains("interrupted: 0 of 1"), "{}", stderr(&result));
    assert!(!out.join("report.json").exists());

    // Resumed: the unfinished sequence runs again from its first frame, as an uninterrupted run.
    let resumed = Command::new(env!("CARGO_BIN_EXE_seggpt")).args(args(&out)).output().unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let whole = dir.path().join("whole");
    let straight = Command::new(env!("CARGO_BIN_EXE_seggpt")).args(args(&whole)).output().unwrap();
    assert!(straight.status.success(), "{}", stderr(&straight));
    assert_eq!(
        snapshot(&out.join("long")),
        snapshot(&whole.join("long"))
            .into_iter()
            .map(|(p, b)| { (out.join("long").join(p.file_name().unwrap()), b) })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        read_json(&out.join("report.json"))["jf_mean"],
        read_json(&whole.join("report.json"))["jf_mean"]
    );
}
