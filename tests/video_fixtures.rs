//! `seggpt video` against the official propagation loop re-run in Python (tests/fixtures/video,
//! written by `scripts/make_fixtures.py video`): K = 0 and K = 2, binary and colour propagation, the
//! first frame as the prompt and a separate prompt, masks, overlays and DAVIS class maps.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixtures;
use seggpt::pipeline::{decode_class_map, decode_rgb};

/// Share of pixel values that must be within one level of the reference: the two sides compute in
/// float32 and float64, which may move a value across an integer before truncation.
const MIN_CLOSE_SHARE: f64 = 0.999;

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The share of values within `tolerance` levels, and the largest difference.
fn closeness(actual: &[u8], expected: &[u8], tolerance: u8) -> (f64, u8) {
    assert_eq!(actual.len(), expected.len(), "sizes differ");
    let diffs: Vec<u8> = actual.iter().zip(expected).map(|(a, e)| a.abs_diff(*e)).collect();
    let close = diffs.iter().filter(|&&d| d <= tolerance).count();
    (close as f64 / diffs.len() as f64, diffs.into_iter().max().unwrap_or(0))
}

#[test]
fn video_matches_the_official_propagation_loop() {
    let root = fixtures().join("video");
    let cases: serde_json::Value = serde_json::from_slice(&read(&root.join("cases.json"))).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let mut args = vec!["video", "--model", "model", "--frames", "frames"];
        args.extend(case["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()));
        let out_arg = out_dir.path().to_str().unwrap().to_owned();
        args.extend(["--out-dir", &out_arg]);
        let out = Command::new(env!("CARGO_BIN_EXE_seggpt")).args(&args).current_dir(&root).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));

        for frame in case["frames"].as_array().unwrap() {
            let stem = frame["frame"].as_str().unwrap();
            for (kind, suffix) in [("mask", ".mask.png"), ("overlay", ".overlay.png")] {
                let label = format!("{name} {stem} {kind}");
                let expected = decode_rgb(&read(&root.join(frame[kind].as_str().unwrap())), &label).unwrap();
                let actual =
                    decode_rgb(&read(&out_dir.path().join(format!("{stem}{suffix}"))), &label).unwrap();
                assert_eq!(
                    (actual.width(), actual.height()),
                    (expected.width(), expected.height()),
                    "{label}"
                );
                let (share, max) = closeness(actual.as_raw(), expected.as_raw(), 1);
                assert!(
                    share >= MIN_CLOSE_SHARE,
                    "{label}: {share} within 1 level (largest difference {max})"
                );
            }
            if let Some(classes) = frame["classes"].as_str() {
                let label = format!("{name} {stem} classes");
                let expected = decode_class_map(&read(&root.join(classes)), &label).unwrap();
                let actual = read(&out_dir.path().join(format!("{stem}.png")));
                let actual = decode_class_map(&actual, &label).unwrap();
                let (share, _) = closeness(actual.as_raw(), expected.as_raw(), 0);
                assert!(share >= MIN_CLOSE_SHARE, "{label}: {share} of the classes agree");
            }
        }
        if case["first_frame_given"].as_bool().unwrap() {
            // The prompt frame is not segmented: its mask is the given one, in the prompt's colours.
            let first = decode_rgb(&read(&out_dir.path().join("f00.mask.png")), "f00.mask.png").unwrap();
            let given = case["args"][1].as_str().unwrap();
            if case["num_labels"].is_null() {
                assert_eq!(first.as_raw(), decode_rgb(&read(&root.join(given)), given).unwrap().as_raw());
            } else {
                let classes = decode_class_map(&read(&out_dir.path().join("f00.png")), "f00.png").unwrap();
                let given = decode_class_map(&read(&root.join(given)), given).unwrap();
                assert_eq!(classes.as_raw(), given.as_raw(), "{name}: the first class map is the given one");
            }
        }
    }
}

/// The spatial ensemble in video tiles the user's prompts (and the cached frames) into one grid
/// prompt (docs/MODEL.md §14). With K = 0 only the prompts are tiled, so every frame's mask must be
/// exactly `segment --ensemble spatial`'s for the same two prompts.
#[test]
fn spatial_video_without_cached_frames_equals_spatial_segment() {
    let root = fixtures().join("video");
    let frames = ["f01.png", "f02.png", "f03.png"];
    let frames_dir = tempfile::tempdir().unwrap();
    for frame in frames {
        std::fs::copy(root.join("frames").join(frame), frames_dir.path().join(frame)).unwrap();
    }
    let prompts =
        ["--prompt", "frames/f00.png", "first_mask.png", "--prompt", "frames/f05.png", "first_mask.png"];
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_seggpt")).args(args).current_dir(&root).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (video_out, segment_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let frames_arg = frames_dir.path().to_str().unwrap();
    let video_arg = video_out.path().to_str().unwrap();
    let mut video = vec!["video", "--model", "model", "--frames", frames_arg, "--out-dir", video_arg];
    video.extend(prompts);
    video.extend(["--num-frames", "0", "--ensemble", "spatial"]);
    run(&video);
    let segment_arg = segment_out.path().to_str().unwrap();
    let targets: Vec<String> =
        frames.iter().map(|f| frames_dir.path().join(f).display().to_string()).collect();
    let mut segment = vec!["segment", "--model", "model", "--out-dir", segment_arg, "--ensemble", "spatial"];
    segment.extend(prompts);
    for target in &targets {
        segment.extend(["--target", target]);
    }
    run(&segment);
    for frame in frames {
        let stem = frame.trim_end_matches(".png");
        let from_video = read(&video_out.path().join(format!("{stem}.mask.png")));
        let from_segment = read(&segment_out.path().join(format!("{frame}.mask.png")));
        let label = format!("{frame}: video and segment, spatial");
        let (a, b) = (decode_rgb(&from_video, &label).unwrap(), decode_rgb(&from_segment, &label).unwrap());
        assert_eq!(a.as_raw(), b.as_raw(), "{label}");
    }
}
