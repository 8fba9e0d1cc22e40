//! `seggpt video` under bad input: every refusal names what is wrong, exits non-zero and leaves no
//! output; plus frames of different sizes, the output names, and Ctrl-C.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, stderr};
use seggpt::pipeline::{RgbImage, decode_class_map, decode_rgb, encode_rgb_png};

fn video_fixture(name: &str) -> PathBuf {
    fixtures().join("video").join(name)
}

/// `video` with the fixture model, `frames`, `out_dir` and `extra`.
fn video_command(frames: &Path, out_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seggpt"));
    let mut args: Vec<OsString> = vec![
        "video".into(),
        "--model".into(),
        video_fixture("model").into(),
        "--frames".into(),
        frames.into(),
        "--out-dir".into(),
        out_dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    command.args(args);
    command
}

fn run(frames: &Path, out_dir: &Path, extra: &[&str]) -> Output {
    video_command(frames, out_dir, extra).output().expect("the seggpt binary runs")
}

fn first_mask() -> String {
    video_fixture("first_mask.png").display().to_string()
}

/// A copy of the fixture clip's frames in a new folder.
fn copy_frames(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(video_fixture("frames")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn write_image(path: &Path, width: u32, height: u32, seed: u32) {
    let data = (0..width * height * 3).map(|i| ((i / 3 * 7 + i % 3 * 50 + seed * 13) % 256) as u8).collect();
    std::fs::write(path, encode_rgb_png(&RgbImage::new(width, height, data).unwrap()).unwrap()).unwrap();
}

/// Asserts a failed run: non-zero exit, every `needles` in the message, and no output folder.
fn assert_refused(out: &Output, out_dir: &Path, needles: &[&str]) {
    let message = stderr(out);
    assert!(!out.status.success(), "the run should fail: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    assert!(!out_dir.exists(), "no output folder is made for a refused run");
}

#[test]
fn writes_every_frame_named_after_its_stem() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(&video_fixture("frames"), &out_dir, &["--first-mask", &first_mask(), "--num-labels", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let expected: Vec<String> =
        (0..6).flat_map(|i| [format!("f{i:02}.mask.png"), format!("f{i:02}.png")]).collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(names, expected);
    // A plain line per frame when stderr is not a terminal.
    assert_eq!(stderr(&out).matches("frames/s").count(), 5, "{}", stderr(&out));
    // The class maps are palette PNGs of indices 0..=2.
    let classes = decode_class_map(&std::fs::read(out_dir.join("f03.png")).unwrap(), "f03.png").unwrap();
    assert!(classes.as_raw().iter().all(|&c| c <= 2));
}

#[test]
fn frames_of_different_sizes_get_masks_of_their_own_size() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    write_image(&frames.join("a.png"), 40, 30, 1);
    write_image(&frames.join("b.png"), 23, 51, 2);
    // Not frames: other extensions and folders are ignored.
    std::fs::write(frames.join("notes.txt"), "not a frame").unwrap();
    std::fs::create_dir(frames.join("sub.png")).unwrap();
    let out_dir = tmp.path().join("out");
    let prompt = video_fixture("frames/f00.png").display().to_string();
    let out = run(&frames, &out_dir, &["--prompt", &prompt, &first_mask(), "--overlay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, size) in [("a", (40, 30)), ("b", (23, 51))] {
        for suffix in [".mask.png", ".overlay.png"] {
            let file = format!("{name}{suffix}");
            let image = decode_rgb(&std::fs::read(out_dir.join(&file)).unwrap(), &file).unwrap();
            assert_eq!((image.width(), image.height()), size, "{file}");
        }
    }
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 4);
}

#[test]
fn a_missing_or_empty_frames_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let missing = tmp.path().join("no-such-folder");
    let out = run(&missing, &out_dir, &["--first-mask", &first_mask()]);
    assert_refused(&out, &out_dir, &["cannot read the frames folder", "no-such-folder"]);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "x").unwrap();
    let out = run(&empty, &out_dir, &["--first-mask", &first_mask()]);
    assert_refused(&out, &out_dir, &["holds no PNG or JPEG frames"]);
}

#[test]
fn a_frame_that_is_not_an_image_or_truncated_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    copy_frames(&frames);
    let out_dir = tmp.path().join("out");
    std::fs::write(frames.join("f03.png"), b"this is not a PNG").unwrap();
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask()]);
    assert_refused(&out, &out_dir, &["f03.png", "not a readable image"]);

    let whole = std::fs::read(video_fixture("frames/f03.png")).unwrap();
    std::fs::write(frames.join("f03.png"), &whole[..whole.len() / 2]).unwrap();
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask()]);
    assert_refused(&out, &out_dir, &["f03.png", "truncated"]);
}

#[test]
fn a_first_mask_of_another_size_than_the_first_frame_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mask = tmp.path().join("mask.png");
    write_image(&mask, 10, 10, 0);
    let out_dir = tmp.path().join("out");
    let out = run(&video_fixture("frames"), &out_dir, &["--first-mask", mask.to_str().unwrap()]);
    assert_refused(&out, &out_dir, &["mask.png is 10x10 pixels", "f00.png is 37x29"]);
}

#[test]
fn a_first_mask_that_marks_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mask = tmp.path().join("empty_mask.png");
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, 37, 29);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_palette(vec![0, 0, 0, 128, 0, 0]);
    encoder.write_header().unwrap().write_image_data(&[0; 37 * 29]).unwrap();
    std::fs::write(&mask, encoded).unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(&video_fixture("frames"), &out_dir, &["--first-mask", mask.to_str().unwrap()]);
    assert_refused(&out, &out_dir, &["empty_mask.png", "marks no object"]);
}

#[test]
fn prompt_arguments_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let frames = video_fixture("frames");
    let prompt = video_fixture("frames/f00.png").display().to_string();
    // Neither a first mask nor a prompt.
    let out = run(&frames, &out_dir, &[]);
    assert_refused(&out, &out_dir, &["--first-mask"]);
    // Both.
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask(), "--prompt", &prompt, &first_mask()]);
    assert_refused(&out, &out_dir, &["cannot be used with"]);
    // K beyond the batch limit.
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask(), "--num-frames", "64"]);
    assert_refused(&out, &out_dir, &["--num-frames", "from 0 to 63"]);
    // A prompt mask that is missing.
    let out = run(&frames, &out_dir, &["--prompt", &prompt, "/no/such/mask.png"]);
    assert_refused(&out, &out_dir, &["/no/such/mask.png"]);
}

#[test]
fn colour_propagation_refuses_a_noisy_mask_before_the_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let mask = tmp.path().join("noisy.png");
    // 300 colours besides black, as a JPEG-like or antialiased mask has.
    let data = (0..37 * 29).flat_map(|p| [(p % 300 % 256) as u8, (p % 300 / 256) as u8 + 1, 7]).collect();
    std::fs::write(&mask, encode_rgb_png(&RgbImage::new(37, 29, data).unwrap()).unwrap()).unwrap();
    let out_dir = tmp.path().join("out");
    let args = ["--first-mask", mask.to_str().unwrap(), "--propagate", "colour"];
    let out = run(&video_fixture("frames"), &out_dir, &args);
    assert_refused(&out, &out_dir, &["more than 255 colours"]);
    // Found from the mask alone: the slow model load never starts.
    assert!(!stderr(&out).contains("loading"), "{}", stderr(&out));
}

/// The frame file names of the masks in `message`'s per-frame lines, in the order written.
fn masks_written(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|line| line.split(" (").next().filter(|path| path.ends_with(".mask.png")))
        .map(|path| Path::new(path).file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn frames_are_taken_in_natural_order() {
    // Named as `ffmpeg -i clip.mp4 %d.png` names them: byte order would put 10 and 11 after 1.
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 1..=11 {
        write_image(&frames.join(format!("{i}.png")), 37, 29, i);
    }
    let out_dir = tmp.path().join("out");
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask(), "--num-frames", "2"]);
    let message = stderr(&out);
    assert!(out.status.success(), "{message}");
    assert!(message.contains("frames: 1.png ... 11.png (11 frames, in natural order)"), "{message}");
    // Each frame is segmented after the one before it in number, which feeds its batch.
    let expected: Vec<String> = (1..=11).map(|i| format!("{i}.mask.png")).collect();
    assert_eq!(masks_written(&message), expected, "{message}");
}

#[test]
fn an_out_dir_that_is_the_frames_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    copy_frames(&frames);
    let link = tmp.path().join("link");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&frames, &link).unwrap();
    #[cfg(not(unix))]
    let link = frames.clone();
    // The same folder, also by another spelling or through a link.
    for out_dir in [frames.clone(), frames.join("."), link.join("../frames/"), link.clone()] {
        let out = run(&frames, &out_dir, &["--first-mask", &first_mask()]);
        let message = stderr(&out);
        assert!(!out.status.success(), "{}: {message}", out_dir.display());
        assert!(message.contains("--out-dir") && message.contains("is the frames folder"), "{message}");
        assert!(!message.contains("loading"), "refused before the model loads: {message}");
        assert_eq!(std::fs::read_dir(&frames).unwrap().count(), 6, "nothing was written: {message}");
    }
    // A folder inside the frames folder is fine: frames are the folder's files, never a sub-folder's.
    let inside = frames.join("masks");
    let out = run(&frames, &inside, &["--first-mask", &first_mask()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 6);
    let again = run(&frames, &inside, &["--first-mask", &first_mask()]);
    assert!(stderr(&again).contains("(6 frames"), "{}", stderr(&again));
}

#[test]
fn earlier_outputs_in_the_frames_folder_are_not_frames() {
    // A folder once used as --out-dir (before that was refused), or that `segment` wrote into.
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    copy_frames(&frames);
    for i in 0..6 {
        std::fs::copy(first_mask(), frames.join(format!("f{i:02}.mask.png"))).unwrap();
    }
    std::fs::copy(video_fixture("frames/f00.png"), frames.join("f00.overlay.png")).unwrap();
    std::fs::copy(first_mask(), frames.join("f00.png.classes.png")).unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask()]);
    let message = stderr(&out);
    assert!(out.status.success(), "{message}");
    assert!(message.contains("frames: f00.png ... f05.png (6 frames"), "{message}");
    assert!(message.contains("skipped 8 files"), "{message}");
    let mut names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let expected: Vec<String> = (0..6).map(|i| format!("f{i:02}.mask.png")).collect();
    assert_eq!(names, expected);
}

#[test]
fn frames_whose_outputs_would_collide_or_overwrite_a_frame_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    copy_frames(&frames);
    std::fs::copy(video_fixture("frames/f01.png"), frames.join("f01.jpg")).unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(&frames, &out_dir, &["--first-mask", &first_mask()]);
    assert_refused(&out, &out_dir, &["f01.png", "f01.jpg", "same name before the extension"]);
    std::fs::remove_file(frames.join("f01.jpg")).unwrap();

    // A first mask named as the first frame's output, in the output folder (the last run's).
    let out_dir = tmp.path().join("last-run");
    std::fs::create_dir(&out_dir).unwrap();
    let given = out_dir.join("f00.mask.png");
    std::fs::copy(first_mask(), &given).unwrap();
    let out = run(&frames, &out_dir, &["--first-mask", given.to_str().unwrap()]);
    let message = stderr(&out);
    assert!(!out.status.success() && message.contains("would overwrite the input"), "{message}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1, "nothing was written: {message}");
    assert_eq!(std::fs::read(&given).unwrap(), std::fs::read(first_mask()).unwrap());
}

#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_current_frame_and_reports_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let total = 40;
    for i in 0..total {
        write_image(&frames.join(format!("f{i:02}.png")), 1024, 1024, i);
    }
    let out_dir = tmp.path().join("out");
    let prompt = video_fixture("frames/f00.png").display().to_string();
    let mut child = video_command(&frames, &out_dir, &["--prompt", &prompt, &first_mask(), "--overlay"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let written = || -> Vec<String> {
        std::fs::read_dir(&out_dir)
            .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default()
    };
    while !written().iter().any(|n| n.ends_with(".overlay.png")) {
        assert!(Instant::now() < deadline, "no output appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let result = child.wait_with_output().unwrap();
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(130), "{message}");
    let files = written();
    let masks = files.iter().filter(|n| n.ends_with(".mask.png")).count();
    assert!(masks > 0 && masks < total as usize, "{files:?}");
    assert!(message.contains(&format!("interrupted: {masks} of {total} frames written")), "{message}");
    for name in &files {
        assert!(name.ends_with(".mask.png") || name.ends_with(".overlay.png"), "no temporary file: {name}");
        decode_rgb(&std::fs::read(out_dir.join(name)).unwrap(), name).expect("every written file is whole");
    }
    assert_eq!(files.len(), 2 * masks, "a frame's mask and overlay are written together: {files:?}");
}
