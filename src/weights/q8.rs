//! The `q8` checkpoint layout (docs/MODEL.md §17): weight-only int8, symmetric per output channel.
//!
//! A q8 file is an ordinary safetensors file. Every linear weight outside the embeddings and the
//! decoder's last two layers (the 2-D `.weight` tensors not under `model.embeddings.` or
//! `decoder.decoder_pred.`) is stored as `I8` under its own name and shape, with its scales beside it
//! as `<name>.q8_scale`, `F32`, shape `[rows]` (`rows` = the first dimension, the output channel). A value is `q * scale[row]`; `q` lies
//! in -127..=127 and `scale[row]` is the row's largest magnitude / 127. Everything else (norms,
//! biases, embeddings, tokens, relative-position tables) is `F16`. Weights are widened to f32 when
//! they are read, before upload: the file is a quarter of the f32 one, the model in memory is not.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{LoadError, TensorEntry};

/// The suffix naming a quantised tensor's scales.
pub const SCALE_SUFFIX: &str = ".q8_scale";

/// The largest quantised magnitude: symmetric, so -128 is never used.
const Q_MAX: f32 = 127.0;

/// Whether `convert --dtype q8` stores this tensor as int8 (the rest is f16). The decoder's 3 x 3 conv
/// and head stay f16: the head writes pixels directly, and both are 74 KB in the released model.
pub fn is_quantized(name: &str, shape: &[usize]) -> bool {
    let excluded = ["model.embeddings.", "decoder.decoder_pred."];
    shape.len() == 2 && name.ends_with(".weight") && !excluded.iter().any(|p| name.starts_with(p))
}

/// Rows of `shape` (its first dimension) and the length of one row.
fn rows(shape: &[usize]) -> (usize, usize) {
    let rows = shape.first().copied().unwrap_or(1);
    (rows, shape.iter().skip(1).product())
}

/// Symmetric per-row int8: `(q, scales)` with `values[r][i] ~ q[r][i] * scales[r]`.
pub fn quantize(shape: &[usize], values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let (rows, row_len) = rows(shape);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(row_len.max(1)).take(rows) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = finite_scale(max);
        scales.push(scale);
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(row.iter().map(|v| (v * inverse).round().clamp(-Q_MAX, Q_MAX) as i8));
    }
    (q, scales)
}

/// The row's scale, `max / 127`, lowered by units in the last place where `127 * scale`
/// rounds past the largest f32 (a row holding `f32::MAX`): dequantizing must give back finite
/// values, which every load checks.
fn finite_scale(max: f32) -> f32 {
    let mut scale = max / Q_MAX;
    while scale > 0.0 && !(scale * Q_MAX).is_finite() {
        scale = f32::from_bits(scale.to_bits() - 1);
    }
    scale
}

/// f32 values of int8 tensor `name` from its bytes and its scales' bytes (little-endian f32).
pub fn dequantize(name: &str, shape: &[usize], q: &[u8], scales: &[u8]) -> Result<Vec<f32>, LoadError> {
    let (rows, row_len) = rows(shape);
    if scales.len() != 4 * rows || q.len() != rows * row_len {
        return Err(bad(name, format!("{} scale bytes for {rows} rows of {row_len}", scales.len())));
    }
    let scales = scales.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut out = Vec::with_capacity(q.len());
    for (row, scale) in q.chunks(row_len.max(1)).zip(scales) {
        out.extend(row.iter().map(|&b| f32::from(b as i8) * scale));
    }
    Ok(out)
}

fn bad(name: &str, reason: String) -> LoadError {
    LoadError::Q8 { name: name.to_string(), reason }
}

/// Pairs every `I8` tensor of a parsed header with its `<name>.q8_scale` entry, which leaves the
/// list of tensors: afterwards `entries` holds model tensors only, each int8 one with the byte
/// range of its scales. Errors name the tensor: an int8 tensor without scales, scales without an
/// int8 tensor, or scales of the wrong dtype or shape.
pub(super) fn attach_scales(entries: &mut BTreeMap<String, TensorEntry>) -> Result<(), LoadError> {
    let scale_names: Vec<String> = entries.keys().filter(|n| n.ends_with(SCALE_SUFFIX)).cloned().collect();
    let mut scales: BTreeMap<String, Range<u64>> = BTreeMap::new();
    for scale_name in scale_names {
        let entry = entries.remove(&scale_name).unwrap_or_else(|| unreachable!("listed above"));
        let name = scale_name.trim_end_matches(SCALE_SUFFIX).to_string();
        let Some(base) = entries.get(&name) else {
            return Err(bad(&scale_name, "is a scale tensor with no int8 tensor beside it".into()));
        };
        if base.dtype != "I8" {
            return Err(bad(&name, format!("has scales `{scale_name}` but is {}, not I8", base.dtype)));
        }
        if entry.dtype != "F32" {
            return Err(bad(&name, format!("its scales `{scale_name}` are {}, not F32", entry.dtype)));
        }
        let want = vec![rows(&base.shape).0];
        if entry.shape != want {
            return Err(bad(
                &name,
                format!("its scales `{scale_name}` have shape {:?}, not {want:?} (one per row)", entry.shape),
            ));
        }
        scales.insert(name, entry.range);
    }
    for (name, entry) in entries.iter_mut() {
        if entry.dtype == "I8" {
            let range = scales.remove(name).ok_or_else(|| {
                bad(name, format!("is I8 but its scales `{name}{SCALE_SUFFIX}` are missing"))
            })?;
            entry.scale = Some(range);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_is_symmetric_per_row_and_within_half_a_step() {
        let values = [1.0, -0.5, 0.25, 0.0, 0.0, 0.0, -3.0, 2.0, 1.0];
        let (q, scales) = quantize(&[3, 3], &values);
        assert_eq!(&q[..3], &[127, -64, 32]);
        assert_eq!(&q[3..6], &[0, 0, 0], "an all-zero row stays zero");
        assert_eq!(scales, [1.0 / 127.0, 0.0, 3.0 / 127.0]);
        let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        let back = dequantize("w", &[3, 3], &bytes, &scale_bytes).unwrap();
        for ((v, b), row) in values.iter().zip(&back).zip([0, 0, 0, 1, 1, 1, 2, 2, 2]) {
            assert!((v - b).abs() <= scales[row] / 2.0 + 1e-7, "{v} vs {b}");
        }
        assert_eq!(back[6], -3.0);
    }

    #[test]
    fn a_row_holding_the_largest_f32_dequantizes_to_finite_values() {
        let values = [f32::MAX, -f32::MAX, 1.0e38, 0.0];
        let (q, scales) = quantize(&[1, 4], &values);
        let q_bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        let back = dequantize("w", &[1, 4], &q_bytes, &scale_bytes).unwrap();
        assert!(back.iter().all(|v| v.is_finite()), "{back:?}");
        assert!((back[0] / f32::MAX - 1.0).abs() < 1e-6 && back[1] == -back[0], "{back:?}");
    }

    #[test]
    fn which_tensors_are_quantized() {
        assert!(is_quantized("model.encoder.layers.0.mlp.lin1.weight", &[16, 8]));
        assert!(is_quantized("decoder.decoder_embed.weight", &[64, 16]));
        assert!(!is_quantized("decoder.decoder_pred.conv.weight", &[8, 8, 3, 3]));
        assert!(!is_quantized("decoder.decoder_pred.head.weight", &[3, 8, 1, 1]));
        assert!(!is_quantized("model.encoder.layers.0.mlp.lin1.bias", &[16]));
        assert!(!is_quantized("model.encoder.layernorm.weight", &[8]));
        assert!(!is_quantized("model.embeddings.patch_embeddings.projection.weight", &[8, 3, 2, 2]));
        assert!(!is_quantized("model.encoder.layers.0.attention.rel_pos_h", &[7, 4]));
    }

    #[test]
    fn scales_of_the_wrong_size_are_refused() {
        let err = dequantize("w", &[2, 3], &[0; 6], &[0; 4]).unwrap_err().to_string();
        assert!(err.contains("`w`") && err.contains("2 rows"), "{err}");
    }
}
