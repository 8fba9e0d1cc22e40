//! Weights: reading checkpoints (HF safetensors, the official `.pth`), mapping their names to one
//! scheme (the HF one, docs/MODEL.md §9), and handing typed, shape-checked tensors to the model.
//!
//! Nothing is ever left at an initial value: a missing, unexpected or wrongly shaped tensor is a
//! [`LoadError`] that names it.

#[cfg(not(target_arch = "wasm32"))]
mod files;
mod names;
#[cfg(not(target_arch = "wasm32"))]
mod pth;
pub mod q8;
mod random;
mod safetensors;
mod sharded;

use std::collections::{BTreeMap, BTreeSet};

use crate::SegGptConfig;

#[cfg(not(target_arch = "wasm32"))]
pub use files::{
    ModelFiles, model_input_files, model_paths, open_model, read_config, read_config_text, read_small_text,
    regular_file_len,
};
#[cfg(not(target_arch = "wasm32"))]
pub use pth::PthSource;
pub use random::RandomSource;
pub use safetensors::{
    F16Overflow, SafetensorsHeader, SafetensorsSource, StoreDType, TensorEntry, clamp_to_f16, f16_overflows,
    write_safetensors,
};
pub use sharded::{INDEX_FILE, MAX_INDEX_BYTES, ShardIndex, ShardedSource, plan_shards, shard_file_name};

/// Why weights could not be loaded. Each variant names the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a valid safetensors file ({0})")]
    NotSafetensors(String),
    #[error("not a readable PyTorch checkpoint ({0})")]
    Pth(String),
    #[error("{path} is {kind}, not a regular file")]
    NotAFile { path: String, kind: &'static str },
    #[error("{path}: {bytes} bytes is too large for {what} (limit: {max} bytes)")]
    FileTooLarge { path: String, what: &'static str, bytes: u64, max: u64 },
    #[error("weights are missing tensor `{0}`: is this a checkpoint of this model for this config?")]
    Missing(String),
    #[error("weights hold {} tensor(s) this model does not have: {}", .0.len(), first_names(.0))]
    Unexpected(Vec<String>),
    #[error(
        "weights are missing {} of the tensors this config needs ({}){}: is this a checkpoint of this model \
         for this config?",
        .missing.len(),
        first_names(.missing),
        if .unexpected.is_empty() {
            String::new()
        } else {
            format!(" and hold {} it does not have ({})", .unexpected.len(), first_names(.unexpected))
        }
    )]
    WrongTensors { missing: Vec<String>, unexpected: Vec<String> },
    #[error(
        "tensor `{name}` holds {count} non-finite value(s) (NaN or infinity) of {total}: the \
         checkpoint is corrupt"
    )]
    NonFinite { name: String, count: usize, total: usize },
    #[error("tensor `{name}` has shape {found:?}, the config needs {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error(
        "tensor `{name}` has dtype {dtype}; only F32, F16, BF16 and I8 (q8 files, with scales) are supported"
    )]
    DType { name: String, dtype: String },
    /// A q8 file whose int8 tensors and scales do not pair up (docs/MODEL.md §17).
    #[error("q8 checkpoint: tensor `{name}` {reason}")]
    Q8 { name: String, reason: String },
}

/// A checkpoint whose tensors can be read one at a time, under HF names.
pub trait TensorSource {
    /// HF names of every tensor in the checkpoint.
    fn names(&self) -> Vec<String>;
    /// Shape of a tensor, `None` if absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor's values as f32, row-major (f16/bf16 are widened).
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError>;
}

/// How many names an error lists: enough to recognise a checkpoint, not hundreds of lines.
const NAMES_LISTED: usize = 5;

/// `a, b, c, d, e and 12 more`.
fn first_names(names: &[String]) -> String {
    let listed: Vec<String> = names.iter().take(NAMES_LISTED).map(|n| format!("`{n}`")).collect();
    match names.len().saturating_sub(NAMES_LISTED) {
        0 => listed.join(", "),
        more => format!("{} and {more} more", listed.join(", ")),
    }
}

/// Errors if `values` of tensor `name` hold NaN or infinity: such a weight turns every output
/// into NaN, which would come out as an all-black mask.
pub(crate) fn check_finite(name: &str, values: &[f32]) -> Result<(), LoadError> {
    #[cfg(not(target_arch = "wasm32"))]
    let count = {
        use rayon::prelude::*;
        values.par_iter().filter(|v| !v.is_finite()).count()
    };
    #[cfg(target_arch = "wasm32")]
    let count = values.iter().filter(|v| !v.is_finite()).count();
    match count {
        0 => Ok(()),
        count => Err(LoadError::NonFinite { name: name.to_string(), count, total: values.len() }),
    }
}

/// Compares a checkpoint's tensor names and shapes with what `config` needs, before any tensor
/// data is read: a wrong checkpoint fails at once, listing a few names and the counts.
pub(crate) fn check_layout(
    names: Vec<String>,
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
    config: &SegGptConfig,
) -> Result<(), LoadError> {
    compare_layout(names, shape_of, &crate::model::parameter_shapes(config)?)
}

/// Compares a checkpoint's tensor `names` and shapes with the `expected` list a model's dry run
/// gives: every expected tensor present with its shape, and nothing else.
pub(crate) fn compare_layout(
    names: Vec<String>,
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
    expected: &[(String, Vec<usize>)],
) -> Result<(), LoadError> {
    let missing: Vec<String> =
        expected.iter().filter(|(name, _)| shape_of(name).is_none()).map(|(name, _)| name.clone()).collect();
    let known: BTreeSet<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    let unexpected: Vec<String> = names.into_iter().filter(|name| !known.contains(name.as_str())).collect();
    match (missing.len(), unexpected.is_empty()) {
        (0, true) => {}
        (0, false) => return Err(LoadError::Unexpected(unexpected)),
        (1, true) => return Err(LoadError::Missing(missing[0].clone())),
        _ => return Err(LoadError::WrongTensors { missing, unexpected }),
    }
    for (name, shape) in expected {
        let found = shape_of(name).unwrap_or_default();
        if &found != shape {
            return Err(LoadError::Shape { name: name.clone(), expected: shape.clone(), found });
        }
    }
    Ok(())
}

/// Widens raw little-endian bytes of a float dtype to f32.
pub(crate) fn bytes_to_f32(name: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>, LoadError> {
    match dtype {
        "F32" => Ok(widen(bytes, f32::from_le_bytes)),
        "F16" => Ok(widen(bytes, |b| half::f16::from_le_bytes(b).to_f32())),
        "BF16" => Ok(widen(bytes, |b| half::bf16::from_le_bytes(b).to_f32())),
        other => Err(LoadError::DType { name: name.to_string(), dtype: other.to_string() }),
    }
}

/// `one` applied to every `W`-byte value of `bytes`; natively on all cores, since loading widens
/// about 300 million values (docs/MODEL.md §20).
fn widen<const W: usize>(bytes: &[u8], one: impl Fn([u8; W]) -> f32 + Sync + Send) -> Vec<f32> {
    let value = |b: &[u8]| one(b.try_into().unwrap_or_else(|_| unreachable!("chunks of exactly W bytes")));
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        bytes.par_chunks_exact(W).map(value).collect()
    }
    #[cfg(target_arch = "wasm32")]
    bytes.chunks_exact(W).map(value).collect()
}

/// A set of named f32 tensors held on the host, e.g. for `convert`.
pub type HostTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a source (HF names) into host memory.
pub fn read_all(source: &dyn TensorSource) -> Result<HostTensors, LoadError> {
    let mut out = HostTensors::new();
    for name in source.names() {
        let shape = source.shape(&name).unwrap_or_default();
        let values = source.read_f32(&name)?;
        check_finite(&name, &values)?;
        out.insert(name, (shape, values));
    }
    Ok(out)
}
