//! The image pipeline against reference outputs from Pillow, torch and HF's
//! `SegGptImageProcessorPil` (fixtures made by `scripts/make_fixtures.py`; versions in
//! `tests/fixtures/index.json`).
//!
//! - `resize/`: Pillow BICUBIC / NEAREST resizes must be byte-equal; torch legacy nearest
//!   interpolation and its source indices must be identical (docs/MODEL.md §3.4, §3.5, §8.2).
//! - `preprocess/`: processor outputs from PNG files must agree to 1e-5 (they are in fact
//!   bit-equal), and `build_palette` must reproduce HF's palettes (docs/MODEL.md §3.3, §3.7).

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use seggpt::pipeline::resize::{interpolate_nearest, resize_bicubic, resize_nearest, torch_nearest_indices};
use seggpt::pipeline::{
    ChwImage, IMAGENET_MEAN, IMAGENET_STD, RgbImage, build_palette, class_map, decode_class_map, decode_rgb,
    denormalize, mean_intensity, prepare_image, prepare_mask_classes, prepare_mask_rgb, to_rgb_u8, upsample,
};

fn fixtures(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(sub)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: PathBuf) -> Value {
    serde_json::from_slice(&read(path)).expect("fixture JSON parses")
}

fn usize_at(v: &Value, i: usize) -> usize {
    v[i].as_u64().expect("size is an integer") as usize
}

struct Tensor {
    shape: Vec<usize>,
    dtype: Dtype,
    bytes: Vec<u8>,
}

impl Tensor {
    fn get(st: &SafeTensors, name: &str) -> Tensor {
        let view = st.tensor(name).unwrap_or_else(|e| panic!("tensor {name}: {e}"));
        Tensor { shape: view.shape().to_vec(), dtype: view.dtype(), bytes: view.data().to_vec() }
    }

    fn u8(&self) -> &[u8] {
        assert_eq!(self.dtype, Dtype::U8);
        &self.bytes
    }

    fn f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32);
        self.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    fn i64s(&self) -> Vec<i64> {
        match self.dtype {
            Dtype::I32 => self
                .bytes
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            Dtype::I64 => {
                self.bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
            }
            other => panic!("index tensor has dtype {other:?}"),
        }
    }
}

/// Where two byte images first differ, and how many bytes differ.
fn first_difference(got: &[u8], want: &[u8], width: usize, channels: usize) -> Option<String> {
    let count = got.iter().zip(want).filter(|(a, b)| a != b).count();
    let i = got.iter().zip(want).position(|(a, b)| a != b)?;
    let (px, c) = (i / channels, i % channels);
    Some(format!(
        "{count} bytes differ; first at (y={}, x={}, c={c}): got {}, Pillow {}",
        px / width,
        px % width,
        got[i],
        want[i]
    ))
}

#[test]
fn pillow_bicubic_and_nearest_resizes_are_byte_equal() {
    let spec = json(fixtures("resize/resize.json"));
    let bytes = read(fixtures("resize/resize.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("resize.safetensors parses");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in spec["cases"].as_array().expect("cases") {
        let input = Tensor::get(&st, case["input"].as_str().unwrap());
        let (h, w, c) = (input.shape[0], input.shape[1], input.shape[2]);
        for out in case["outputs"].as_array().unwrap() {
            let name = out["tensor"].as_str().unwrap();
            let (oh, ow) = (usize_at(&out["out_hw"], 0), usize_at(&out["out_hw"], 1));
            let want = Tensor::get(&st, name);
            assert_eq!(want.shape, [oh, ow, c], "{name} shape");
            let got = match out["method"].as_str().unwrap() {
                "bicubic" => resize_bicubic(input.u8(), w, h, c, ow, oh),
                "nearest" => resize_nearest(input.u8(), w, h, c, ow, oh),
                other => panic!("unknown method {other}"),
            };
            assert_eq!(got.len(), want.u8().len(), "{name} length");
            if let Some(diff) = first_difference(&got, want.u8(), ow, c) {
                failures.push(format!("{name} ({h}x{w}x{c} -> {oh}x{ow}): {diff}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no resize cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn torch_legacy_nearest_interpolation_is_identical() {
    let spec = json(fixtures("resize/resize.json"));
    let bytes = read(fixtures("resize/resize.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("resize.safetensors parses");
    let cases = spec["legacy"].as_array().expect("legacy cases");
    assert!(!cases.is_empty());
    for case in cases {
        let input = Tensor::get(&st, case["input"].as_str().unwrap());
        let want = Tensor::get(&st, case["output"].as_str().unwrap());
        let (ch, h, w) = (input.shape[0], input.shape[1], input.shape[2]);
        let (oh, ow) = (usize_at(&case["out_hw"], 0), usize_at(&case["out_hw"], 1));
        assert_eq!(want.shape, [ch, oh, ow]);
        let got = interpolate_nearest(&input.f32(), ch, h, w, oh, ow);
        let want = want.f32();
        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{} ({h}x{w} -> {oh}x{ow}) differs", case["output"]);
    }
}

#[test]
fn torch_legacy_nearest_indices_are_identical() {
    let spec = json(fixtures("resize/resize.json"));
    let bytes = read(fixtures("resize/resize.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("resize.safetensors parses");
    let cases = spec["legacy_index"].as_array().expect("legacy_index cases");
    assert!(!cases.is_empty());
    for case in cases {
        let (n_in, n_out) = (case["in"].as_u64().unwrap() as usize, case["out"].as_u64().unwrap() as usize);
        let want = Tensor::get(&st, case["tensor"].as_str().unwrap()).i64s();
        let got: Vec<i64> = torch_nearest_indices(n_in, n_out).into_iter().map(|i| i as i64).collect();
        assert_eq!(got, want, "{n_in} -> {n_out}");
    }
}

#[test]
fn palettes_match_hf_build_palette() {
    let palettes = json(fixtures("preprocess/palettes.json"));
    let palettes = palettes.as_object().expect("palettes.json is an object");
    assert!(!palettes.is_empty());
    for (n, want) in palettes {
        let n: usize = n.parse().expect("num_labels key");
        let want: Vec<[u8; 3]> = serde_json::from_value(want.clone()).expect("palette entries");
        assert_eq!(build_palette(n), want, "num_labels = {n}");
    }
}

/// Largest absolute difference, checking shapes first.
fn max_abs_diff(got: &ChwImage, want: &Tensor, what: &str) -> f32 {
    assert_eq!(want.shape, [1, got.channels(), got.height(), got.width()], "{what} shape");
    got.as_slice().iter().zip(want.f32()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn hf_processor_outputs_are_reproduced_from_files() {
    let spec = json(fixtures("preprocess/cases.json"));
    let bytes = read(fixtures("preprocess/expected.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("expected.safetensors parses");
    let open_rgb = |file: &str| decode_rgb(&read(fixtures("preprocess").join(file)), file).unwrap();
    let mut checked = 0;
    for case in spec["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let (h, w) = (usize_at(&case["size"], 0) as u32, usize_at(&case["size"], 1) as u32);
        let tensors: Vec<&str> =
            case["tensors"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();

        if tensors.iter().any(|t| t.ends_with(".png")) {
            // The 448x448 case stores the resized image; its normalisation is the formula.
            let image = open_rgb(case["image"].as_str().unwrap());
            for t in &tensors {
                let want = decode_rgb(&read(fixtures("preprocess").join(t)), t).unwrap();
                let got = resize_bicubic(
                    image.as_raw(),
                    image.width() as usize,
                    image.height() as usize,
                    3,
                    w as usize,
                    h as usize,
                );
                let diff = first_difference(&got, want.as_raw(), w as usize, 3);
                assert!(diff.is_none(), "{name}/{t}: {}", diff.unwrap_or_default());
                let got = prepare_image(&image, h, w).unwrap();
                let px = 1234;
                let v = want.as_raw()[px * 3 + 2];
                let expected = ((f64::from(v) * (1.0 / 255.0)) as f32 - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
                assert_eq!(got.plane(2)[px], expected, "{name}: normalisation");
                checked += 1;
            }
            continue;
        }

        let mut outputs: Vec<(&str, ChwImage)> = Vec::new();
        let image = open_rgb(case["image"].as_str().unwrap());
        outputs.push(("pixel_values", prepare_image(&image, h, w).unwrap()));
        if let Some(file) = case["prompt_image"].as_str() {
            outputs.push(("prompt_pixel_values", prepare_image(&open_rgb(file), h, w).unwrap()));
        }
        if let Some(file) = case["prompt_mask"].as_str() {
            let mask = match case["mask_kind"].as_str().unwrap() {
                "rgb" => prepare_mask_rgb(&open_rgb(file), h, w).unwrap(),
                "index" => {
                    let bytes = read(fixtures("preprocess").join(file));
                    let map = decode_class_map(&bytes, file).unwrap();
                    let num_labels = case["num_labels"].as_u64().map(|n| n as usize);
                    prepare_mask_classes(&map, num_labels, h, w).unwrap()
                }
                other => panic!("unknown mask kind {other}"),
            };
            outputs.push(("prompt_masks", mask));
        }
        for (key, got) in outputs {
            let tensor = format!("{name}.{key}");
            assert!(tensors.contains(&tensor.as_str()), "{tensor} not listed");
            let diff = max_abs_diff(&got, &Tensor::get(&st, &tensor), &tensor);
            assert!(diff <= 1e-5, "{tensor}: max |diff| = {diff}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no preprocess cases found");
}

#[test]
fn rgb_decoding_of_fixture_files_matches_pil_modes() {
    // RGBA drops alpha and P expands its palette; both must give the same pixels the
    // processor saw. The decoded sizes must match the recorded (height, width).
    let spec = json(fixtures("preprocess/cases.json"));
    for (file, info) in spec["files"].as_object().expect("files") {
        let img: RgbImage = decode_rgb(&read(fixtures("preprocess").join(file)), file).unwrap();
        let (h, w) = (usize_at(&info["size_hw"], 0), usize_at(&info["size_hw"], 1));
        assert_eq!((img.height() as usize, img.width() as usize), (h, w), "{file}");
    }
}

/// Sample `k` of a `(K, C, H, W)` f32 tensor.
fn sample(t: &Tensor, k: usize) -> ChwImage {
    let (c, h, w) = (t.shape[1], t.shape[2], t.shape[3]);
    let n = c * h * w;
    ChwImage::new(c, h, w, t.f32()[k * n..(k + 1) * n].to_vec()).expect("sample shape")
}

/// The query (bottom) half of sample `k` of a `(K, 3, H, W)` prediction, as the segmenter
/// narrows it on the device before reading it back.
fn query_half(t: &Tensor, k: usize) -> ChwImage {
    let full = sample(t, k);
    let (c, h, w) = (full.channels(), full.height(), full.width());
    let data = (0..c).flat_map(|ch| full.plane(ch)[h / 2 * w..].to_vec()).collect();
    ChwImage::new(c, h - h / 2, w, data).expect("query half shape")
}

#[test]
fn segment_fixtures_pre_and_post_processing_match_hf() {
    // Everything around the model in the end-to-end fixtures: processor inputs from the PNGs,
    // and mask / classes / mean PNGs from the recorded pred_masks (docs/MODEL.md §3.2, §8.3).
    let dir = fixtures("segment");
    let spec = json(dir.join("cases.json"));
    let (h, w) =
        (usize_at(&spec["processor_size_hw"], 0) as u32, usize_at(&spec["processor_size_hw"], 1) as u32);
    let open_rgb = |file: &str| decode_rgb(&read(dir.join(file)), file).unwrap();
    let mut checked = 0;
    for case in spec["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let prompts = case["prompts"].as_array().unwrap();
        let num_labels = case["num_labels"].as_u64().map(|n| n as usize);
        for target in case["targets"].as_array().unwrap() {
            let file = target["target"].as_str().unwrap();
            let what = format!("{name}/{file}");
            let bytes = read(dir.join(target["tensors"].as_str().unwrap()));
            let st = SafeTensors::deserialize(&bytes).expect("tensors parse");
            let (pixel_values, prompt_pixel_values, prompt_masks, pred_masks) = (
                Tensor::get(&st, "pixel_values"),
                Tensor::get(&st, "prompt_pixel_values"),
                Tensor::get(&st, "prompt_masks"),
                Tensor::get(&st, "pred_masks"),
            );

            let query = prepare_image(&open_rgb(file), h, w).unwrap();
            for (k, prompt) in prompts.iter().enumerate() {
                let image = prepare_image(&open_rgb(prompt["image"].as_str().unwrap()), h, w);
                let mask = prepare_mask_rgb(&open_rgb(prompt["mask"].as_str().unwrap()), h, w);
                for (got, want, key) in [
                    (&query, &pixel_values, "pixel_values"),
                    (&image.unwrap(), &prompt_pixel_values, "prompt_pixel_values"),
                    (&mask.unwrap(), &prompt_masks, "prompt_masks"),
                ] {
                    let want = sample(want, k);
                    assert_eq!(got.as_slice(), want.as_slice(), "{what}: {key}[{k}]");
                }
            }

            let (th, tw) = (usize_at(&target["size_hw"], 0) as u32, usize_at(&target["size_hw"], 1) as u32);
            let values = upsample(&denormalize(&query_half(&pred_masks, 0)), th, tw).unwrap();
            let want_mask = open_rgb(target["mask"].as_str().unwrap());
            let got_mask = to_rgb_u8(&values);
            let diff = first_difference(got_mask.as_raw(), want_mask.as_raw(), tw as usize, 3);
            assert!(diff.is_none(), "{what}: mask.png: {}", diff.unwrap_or_default());

            let classes_file = target["classes"].as_str().unwrap();
            let want = decode_class_map(&read(dir.join(classes_file)), classes_file).unwrap();
            let palette = build_palette(num_labels.expect("segment cases give num_labels"));
            assert_eq!(class_map(&values, &palette).unwrap().as_raw(), want.as_raw(), "{what}: classes.png");
            let mean_file = target["mean"].as_str().unwrap();
            let want = decode_class_map(&read(dir.join(mean_file)), mean_file).unwrap();
            assert_eq!(mean_intensity(&values).as_raw(), want.as_raw(), "{what}: mean.png");
            checked += 1;
        }
    }
    assert!(checked > 0, "no segment cases found");
}
