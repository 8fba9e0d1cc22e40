//! The metric code against its references on synthetic masks (tests/fixtures/eval/metrics, written
//! by scripts/ref_eval.py): DAVIS J and F against PyPI `davisinteractive`'s `batched_jaccard` /
//! `batched_f_measure`, the toolkit's statistics, and HSNet's few-shot accumulation, to 1e-6.

mod common;

use std::path::PathBuf;

use common::fixtures;
use seggpt::eval::davis::{Labels, ObjectScores, Statistics, Summary, score_sequence};
use seggpt::eval::fewshot::{EpisodeAreas, FewShotScores};
use seggpt::pipeline::{ClassMap, decode_class_map};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn root() -> PathBuf {
    fixtures().join("eval/metrics")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("expected.json")).unwrap()).unwrap()
}

fn labels(path: &str) -> ClassMap {
    let path = root().join(path);
    decode_class_map(&std::fs::read(&path).unwrap(), &path.display().to_string()).unwrap()
}

fn close(what: &str, actual: f64, expected: &Value) {
    let expected = expected.as_f64().unwrap_or_else(|| panic!("{what}: {expected}"));
    assert!((actual - expected).abs() <= TOLERANCE, "{what}: {actual} vs {expected}");
}

fn close_stats(what: &str, actual: &Statistics, expected: &Value) {
    close(&format!("{what} mean"), actual.mean, &expected["mean"]);
    close(&format!("{what} recall"), actual.recall, &expected["recall"]);
    close(&format!("{what} decay"), actual.decay, &expected["decay"]);
}

fn view(maps: &[ClassMap]) -> Vec<Labels<'_>> {
    maps.iter()
        .map(|m| Labels { width: m.width() as usize, height: m.height() as usize, ids: m.as_raw() })
        .collect()
}

#[test]
fn davis_j_and_f_match_davisinteractive_and_the_toolkit() {
    let expected = expected();
    let mut all: Vec<ObjectScores> = Vec::new();
    for seq in expected["davis"]["sequences"].as_array().unwrap() {
        let name = seq["name"].as_str().unwrap();
        let frames = seq["frames"].as_u64().unwrap() as usize;
        let read = |kind: &str| -> Vec<ClassMap> {
            (0..frames).map(|f| labels(&format!("davis/{name}/{kind}/{f:05}.png"))).collect()
        };
        let (truth, pred) = (read("truth"), read("pred"));
        let scores = score_sequence(&view(&truth), &view(&pred)).unwrap();
        let objects = seq["objects"].as_array().unwrap();
        assert_eq!(scores.len(), objects.len(), "{name}: objects");
        for (i, (ours, theirs)) in scores.iter().zip(objects).enumerate() {
            let what = format!("{name} object {}", i + 1);
            for (key, values) in [("j_frames", &ours.j_frames), ("f_frames", &ours.f_frames)] {
                let reference = theirs[key].as_array().unwrap();
                assert_eq!(values.len(), reference.len(), "{what} {key}");
                for (f, (v, r)) in values.iter().zip(reference).enumerate() {
                    close(&format!("{what} {key}[{f}]"), *v, r);
                }
            }
            close_stats(&format!("{what} J"), &ours.j, &theirs["j"]);
            close_stats(&format!("{what} F"), &ours.f, &theirs["f"]);
        }
        all.extend(scores);
    }
    let summary = Summary::of(&all).unwrap();
    let reference = &expected["davis"]["summary"];
    close("J&F", summary.jf_mean, &reference["jf_mean"]);
    close_stats("J", &summary.j, &reference["j"]);
    close_stats("F", &summary.f, &reference["f"]);
}

#[test]
fn fewshot_scores_match_the_hsnet_accumulation() {
    let expected = expected();
    let mut scores = FewShotScores::default();
    for episode in expected["fewshot"]["episodes"].as_array().unwrap() {
        let fg = |key: &str| -> Vec<bool> {
            labels(episode[key].as_str().unwrap()).as_raw().iter().map(|&v| v >= 128).collect()
        };
        let areas = EpisodeAreas::measure(&fg("pred"), &fg("truth"), None).unwrap();
        scores.add(episode["class"].as_str().unwrap(), &areas);
    }
    let reference = &expected["fewshot"];
    let ious = scores.class_ious();
    assert_eq!(ious.len(), reference["class_iou"].as_object().unwrap().len());
    for (class, iou, _) in ious {
        close(&format!("class {class}"), iou, &reference["class_iou"][class]);
    }
    close("mIoU", scores.miou().unwrap(), &reference["miou"]);
    close("FB-IoU", scores.fb_iou().unwrap(), &reference["fb_iou"]);
}
