//! The tuned prompt file and the optimiser state beside it (docs/MODEL.md §16).
//!
//! A tuned prompt is a safetensors file with two f32 tensors named like transformers' inputs,
//! `prompt_pixel_values` and `prompt_masks`, each `(1, 3, H/2, W)` in normalised space, and
//! metadata saying what it was tuned for and how ([`PromptMetadata`], one key per field). The
//! AdamW state needed to resume a run is a second safetensors file.

use std::collections::HashMap;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::SegGptConfig;
use crate::fnv::fnv1a64;
use crate::pipeline::ChwImage;
use crate::segment::TunedPrompt;
use crate::tune::adamw::{AdamW, Moments};

/// The tensor names, as transformers' `SegGptForImageSegmentation` calls its inputs.
const PIXEL_VALUES: &str = "prompt_pixel_values";
const MASKS: &str = "prompt_masks";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

/// The largest magnitude a tuned prompt's value may have. Images normalise to about -2.1 to 2.6,
/// and AdamW moves a value by about the learning rate a step, so a run at the default rate needs
/// tens of thousands of steps in one direction to get here. A larger value is a broken or
/// hand-made file, which would make the model overflow (1e30 does) and be blamed on the weights.
pub const MAX_PROMPT_VALUE: f32 = 1e4;

/// What a tuned prompt file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMetadata {
    /// [`config_hash`] of the model it was tuned with.
    pub config_hash: String,
    /// The model's full canvas `(H, W)`; the prompt tensors are `(1, 3, H/2, W)`.
    pub image_size: (usize, usize),
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch: usize,
    pub seed: u64,
    pub embedding_type: crate::EmbeddingType,
    /// The training loss of every step, in order.
    pub train_losses: Vec<f32>,
    /// `(step, loss)` of every validation, in order.
    pub val_losses: Vec<(u64, f32)>,
}

/// A tuned prompt or optimiser file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct FileError {
    pub file: String,
    pub problem: String,
}

/// A stable hash of a model config (FNV-1a 64 of its JSON), to recognise the model a prompt was
/// tuned with.
pub fn config_hash(config: &SegGptConfig) -> String {
    let json = serde_json::to_string(config).expect("a config serialises");
    format!("{:016x}", fnv1a64(json.as_bytes()))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn serialize(tensors: Vec<(String, [usize; 4], Vec<u8>)>, metadata: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.to_vec(), bytes).expect("bytes match the shape");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, Some(metadata)).expect("f32 tensors of matching sizes serialise")
}

/// The tuned prompt file's bytes.
pub fn encode_prompt(prompt: &TunedPrompt, metadata: &PromptMetadata) -> Vec<u8> {
    let shape = |p: &ChwImage| [1, p.channels(), p.height(), p.width()];
    let tensors = vec![
        (PIXEL_VALUES.to_string(), shape(&prompt.pixel_values), f32_bytes(prompt.pixel_values.as_slice())),
        (MASKS.to_string(), shape(&prompt.masks), f32_bytes(prompt.masks.as_slice())),
    ];
    serialize(tensors, flatten(metadata))
}

/// One key per field, each value its JSON text, so that a reader sees `steps: "100"`.
fn flatten(metadata: &PromptMetadata) -> HashMap<String, String> {
    let serde_json::Value::Object(fields) = serde_json::to_value(metadata).expect("metadata serialises")
    else {
        unreachable!("a struct serialises to an object")
    };
    fields.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

fn unflatten(file: &str, map: &HashMap<String, String>) -> Result<PromptMetadata, FileError> {
    let mut fields = serde_json::Map::new();
    for (k, v) in map {
        let value = serde_json::from_str(v).map_err(|e| FileError {
            file: file.to_string(),
            problem: format!("metadata `{k}` is not JSON ({e})"),
        })?;
        fields.insert(k.clone(), value);
    }
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| FileError {
        file: file.to_string(),
        problem: format!("its metadata is not a tuned prompt's ({e}); make it with `seggpt tune`"),
    })
}

fn parse<'a>(bytes: &'a [u8], file: &str) -> Result<SafeTensors<'a>, FileError> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| FileError { file: file.to_string(), problem: format!("not a safetensors file ({e})") })
}

/// The f32 values of tensor `name`, which must have shape `shape`.
fn read_tensor(st: &SafeTensors<'_>, file: &str, name: &str, shape: &[usize]) -> Result<Vec<f32>, FileError> {
    let err = |problem: String| FileError { file: file.to_string(), problem };
    let view = st.tensor(name).map_err(|_| err(format!("has no tensor `{name}`")))?;
    if view.dtype() != Dtype::F32 {
        return Err(err(format!("tensor `{name}` is {:?}; a tuned prompt holds F32", view.dtype())));
    }
    if view.shape() != shape {
        return Err(err(format!(
            "tensor `{name}` has shape {:?} but this model takes {shape:?}; it was tuned for another model shape",
            view.shape()
        )));
    }
    let values: Vec<f32> =
        view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(err(format!("tensor `{name}` holds a non-finite value at index {bad}")));
    }
    Ok(values)
}

/// Refuses a prompt holding a value beyond [`MAX_PROMPT_VALUE`] (or not finite), naming `file`,
/// the tensor and the first such value.
pub fn check_prompt_values(prompt: &TunedPrompt, file: &str) -> Result<(), FileError> {
    for (name, values) in [(PIXEL_VALUES, prompt.pixel_values.as_slice()), (MASKS, prompt.masks.as_slice())] {
        // NaN is not finite, so it is refused too.
        if let Some(index) = values.iter().position(|v| !v.is_finite() || v.abs() > MAX_PROMPT_VALUE) {
            return Err(FileError {
                file: file.to_string(),
                problem: format!(
                    "tensor `{name}` holds {} at index {index}, beyond the ±{MAX_PROMPT_VALUE} a tuned \
                     prompt's values stay within (images are about -2.1 to 2.6); it is not a usable prompt",
                    values[index]
                ),
            });
        }
    }
    Ok(())
}

/// Reads a tuned prompt `file` for a model whose half canvas is `(height, width)`; refuses a
/// prompt of another shape, a file without the two tensors, and values no tuning gives
/// (non-finite, or beyond [`MAX_PROMPT_VALUE`]).
pub fn decode_prompt(
    bytes: &[u8],
    file: &str,
    (height, width): (usize, usize),
) -> Result<(TunedPrompt, PromptMetadata), FileError> {
    let st = parse(bytes, file)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| FileError {
        file: file.to_string(),
        problem: format!("not a safetensors file ({e})"),
    })?;
    let shape = [1, 3, height, width];
    let image = |values| ChwImage::new(3, height, width, values).expect("checked shape");
    let pixel_values = image(read_tensor(&st, file, PIXEL_VALUES, &shape)?);
    let masks = image(read_tensor(&st, file, MASKS, &shape)?);
    let prompt = TunedPrompt { pixel_values, masks };
    check_prompt_values(&prompt, file)?;
    let metadata = unflatten(file, header.metadata().as_ref().unwrap_or(&HashMap::new()))?;
    Ok((prompt, metadata))
}

/// The optimiser state file's bytes: the moments of both prompt tensors and the step count.
pub fn encode_optimiser(optimiser: &AdamW, shape: [usize; 3]) -> Vec<u8> {
    let [c, h, w] = shape;
    let mut tensors = Vec::new();
    for (param, moments) in [PIXEL_VALUES, MASKS].into_iter().zip(&optimiser.moments) {
        for (which, values) in [(EXP_AVG, &moments.exp_avg), (EXP_AVG_SQ, &moments.exp_avg_sq)] {
            tensors.push((format!("{which}.{param}"), [1, c, h, w], f32_bytes(values)));
        }
    }
    let metadata = HashMap::from([("steps".to_string(), optimiser.steps.to_string())]);
    serialize(tensors, metadata)
}

/// Reads the optimiser state `file` for prompt tensors of `shape`.
pub fn decode_optimiser(bytes: &[u8], file: &str, shape: [usize; 3]) -> Result<AdamW, FileError> {
    let st = parse(bytes, file)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| FileError {
        file: file.to_string(),
        problem: format!("not a safetensors file ({e})"),
    })?;
    let steps = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("steps"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FileError { file: file.to_string(), problem: "has no `steps` metadata".into() })?;
    let [c, h, w] = shape;
    let mut moments = Vec::new();
    for param in [PIXEL_VALUES, MASKS] {
        let read = |which: &str| read_tensor(&st, file, &format!("{which}.{param}"), &[1, c, h, w]);
        moments.push(Moments { exp_avg: read(EXP_AVG)?, exp_avg_sq: read(EXP_AVG_SQ)? });
    }
    // lr and weight decay are the run's settings, set again on resume.
    Ok(AdamW { lr: 0.0, weight_decay: 0.0, steps, moments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddingType;

    fn prompt(h: usize, w: usize) -> TunedPrompt {
        let values: Vec<f32> = (0..3 * h * w).map(|i| i as f32 * 0.25 - 1.0).collect();
        let image = |v: Vec<f32>| ChwImage::new(3, h, w, v).unwrap();
        TunedPrompt { pixel_values: image(values.clone()), masks: image(values.iter().map(|v| -v).collect()) }
    }

    fn metadata() -> PromptMetadata {
        PromptMetadata {
            config_hash: config_hash(&SegGptConfig::default()),
            image_size: (8, 4),
            steps: 3,
            lr: 0.05,
            weight_decay: 0.01,
            batch: 2,
            seed: 7,
            embedding_type: EmbeddingType::Instance,
            train_losses: vec![1.0, 0.5, 0.25],
            val_losses: vec![(3, 0.75)],
        }
    }

    #[test]
    fn a_prompt_round_trips_with_its_metadata() {
        let bytes = encode_prompt(&prompt(4, 4), &metadata());
        let (back, meta) = decode_prompt(&bytes, "p.safetensors", (4, 4)).unwrap();
        assert_eq!(back.pixel_values.as_slice(), prompt(4, 4).pixel_values.as_slice());
        assert_eq!(back.masks.as_slice(), prompt(4, 4).masks.as_slice());
        assert_eq!(meta, metadata());
    }

    #[test]
    fn a_prompt_for_another_model_shape_is_refused_by_name() {
        let bytes = encode_prompt(&prompt(4, 4), &metadata());
        let err = decode_prompt(&bytes, "p.safetensors", (8, 4)).unwrap_err().to_string();
        assert!(err.contains("p.safetensors") && err.contains("prompt_pixel_values"), "{err}");
        assert!(err.contains("another model shape"), "{err}");
    }

    #[test]
    fn optimiser_state_round_trips() {
        let mut opt = AdamW::new(0.1, 0.0, &[48, 48]);
        let mut a: Vec<f32> = vec![0.5; 48];
        let mut b: Vec<f32> = vec![-0.5; 48];
        let g: Vec<f32> = (0..48).map(|i| i as f32 - 20.0).collect();
        opt.update(&mut [&mut a, &mut b], &[&g, &g]);
        let back = decode_optimiser(&encode_optimiser(&opt, [3, 4, 4]), "o", [3, 4, 4]).unwrap();
        assert_eq!(back.steps, 1);
        assert_eq!(back.moments, opt.moments);
    }

    #[test]
    fn a_prompt_with_values_no_tuning_gives_is_refused_by_name() {
        for bad in [1e30, -2e4, f32::INFINITY] {
            let mut p = prompt(4, 4);
            let mut masks = p.masks.as_slice().to_vec();
            masks[5] = bad;
            p.masks = ChwImage::new(3, 4, 4, masks).unwrap();
            let err = decode_prompt(&encode_prompt(&p, &metadata()), "p.safetensors", (4, 4)).unwrap_err();
            let err = err.to_string();
            assert!(
                err.starts_with("p.safetensors: tensor `prompt_masks`") && err.contains("index 5"),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_tuned_prompt() {
        let err = decode_prompt(b"not safetensors at all", "x.bin", (4, 4)).unwrap_err().to_string();
        assert!(err.starts_with("x.bin: not a safetensors file"), "{err}");
    }
}
