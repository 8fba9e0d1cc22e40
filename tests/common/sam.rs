//! The SAM fixture (`scripts/make_fixtures.py sam`): the tiny random model, its images and prompt
//! cases, and the comparison of our outputs with transformers' `SamModel` + `SamProcessor`, shared by
//! the f32 tests (`tests/sam_fixtures.rs`) and the half-precision one (`tests/f16_wgpu.rs`).

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device, Tensor};
use serde::Deserialize;

use seggpt::pipeline::sam::{SamFrame, mask_logits_at_original};
use seggpt::pipeline::{RgbImage, decode_rgb};
use seggpt::sam::{PointLabel, Sam, SamConfig};
use seggpt::select::{ImagePrompt, model_prompt};
use seggpt::weights::{SafetensorsSource, TensorSource};

use super::{fixtures, read_tensors, tensor4};

#[derive(Deserialize)]
pub struct Cases {
    pub images: Vec<ImageEntry>,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct ImageEntry {
    pub file: String,
}

#[derive(Deserialize)]
pub struct Case {
    pub image: String,
    pub case: String,
    pub multimask: bool,
    pub prefix: String,
    pub points: Option<Vec<[f64; 2]>>,
    pub labels: Option<Vec<i64>>,
    #[serde(rename = "box")]
    pub bbox: Option<[f64; 4]>,
}

pub fn dir() -> PathBuf {
    fixtures().join("sam")
}

pub fn cases() -> Cases {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

/// What the wgpu tests run: one image that the windows pad and two cases (points, box + point).
/// On lavapipe every new shape compiles new kernels, which made all 32 cases take 4 minutes.
pub fn wgpu_cases() -> Cases {
    let mut cases = cases();
    cases.images.truncate(1);
    cases.cases.retain(|c| (c.case == "points3" && !c.multimask) || (c.case == "box_point" && c.multimask));
    cases
}

pub fn load_model(device: &Device) -> Sam {
    let model = dir().join("model");
    let config = SamConfig::from_json(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let source = SafetensorsSource::from_file(&model.join("model.safetensors")).unwrap();
    Sam::load(&source, config, device).unwrap()
}

pub fn image(file: &str) -> RgbImage {
    let path = dir().join(file);
    decode_rgb(&std::fs::read(&path).unwrap(), file).unwrap()
}

pub fn stem(file: &str) -> &str {
    Path::new(file).file_stem().unwrap().to_str().unwrap()
}

pub fn max_diff(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "lengths");
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| if a.is_finite() { (a - e).abs() } else { f32::INFINITY })
        .fold(0.0, f32::max)
}

pub fn prompt_of(case: &Case) -> ImagePrompt {
    let points = case
        .points
        .iter()
        .flatten()
        .zip(case.labels.iter().flatten())
        .map(|(&[x, y], &label)| {
            (x, y, if label == 1 { PointLabel::Foreground } else { PointLabel::Background })
        })
        .collect();
    ImagePrompt { points, bbox: case.bbox }
}

/// Per output, the largest absolute difference from transformers over the cases compared (or, as
/// the bounds of [`matches_transformers_on`], the largest allowed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Differences {
    pub image_embeddings: f32,
    /// The low-resolution mask logits.
    pub pred_masks: f32,
    pub iou_scores: f32,
    /// Those logits at the image's size (post-processed on the host, in f32).
    pub masks: f32,
}

impl Differences {
    pub fn all(bound: f32) -> Self {
        Self { image_embeddings: bound, pred_masks: bound, iou_scores: bound, masks: bound }
    }
}

/// Every image's embedding and every case's logits and scores on `device`, from the reference's
/// own pixels (the model is checked apart from the processor), against transformers' within
/// `bounds`; each output must come back as `dtype` and finite. Returns what was measured.
pub fn matches_transformers_on(
    device: &Device,
    cases: &Cases,
    dtype: DType,
    bounds: Differences,
) -> Differences {
    let model = load_model(device);
    let expected = read_tensors(&dir().join("expected.safetensors"));
    let mut worst = Differences::default();
    let compare = |name: &str, actual: &[f32], bound: f32, worst: &mut f32| {
        let diff = max_diff(actual, &expected.read_f32(name).unwrap());
        assert!(diff <= bound, "{name}: max difference {diff} (bound {bound})");
        *worst = worst.max(diff);
    };
    for entry in &cases.images {
        let stem = stem(&entry.file);
        let pixels = tensor4(&expected, &format!("{stem}.pixel_values"), device);
        let embedding = model.embed_image(pixels);
        let name = format!("{stem}.image_embeddings");
        let values = read_back(embedding.tensor().clone(), dtype, &name);
        compare(&name, &values, bounds.image_embeddings, &mut worst.image_embeddings);

        let image = image(&entry.file);
        let frame = SamFrame::new((image.height() as usize, image.width() as usize), 64);
        for case in cases.cases.iter().filter(|c| c.image == entry.file) {
            let logits = model.predict(&embedding, &model_prompt(&prompt_of(case), &frame), case.multimask);
            let p = &case.prefix;
            let [_, count, side, _] = logits.low_res.dims();
            let name = format!("{p}.pred_masks");
            let low_res = read_back(logits.low_res, dtype, &name);
            compare(&name, &low_res, bounds.pred_masks, &mut worst.pred_masks);
            let name = format!("{p}.iou_scores");
            let scores = read_back(logits.iou_scores, dtype, &name);
            compare(&name, &scores, bounds.iou_scores, &mut worst.iou_scores);

            // Post-processing on our logits against the processor's on its own.
            let plane = side * side;
            let at_original: Vec<f32> = (0..count)
                .flat_map(|i| mask_logits_at_original(&low_res[i * plane..(i + 1) * plane], side, &frame))
                .collect();
            compare(&format!("{p}.masks"), &at_original, bounds.masks, &mut worst.masks);
        }
    }
    worst
}

/// `t`'s values as f32, after checking that it was computed in `dtype` and is finite.
fn read_back<const D: usize>(t: Tensor<D>, dtype: DType, name: &str) -> Vec<f32> {
    let data = t.into_data();
    assert_eq!(data.dtype(), dtype, "{name}: computed in {dtype:?}");
    let values = data.try_into_vec_as::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "{name}: non-finite values");
    values
}
