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
mod random;
mod safetensors;

use std::collections::BTreeMap;

#[cfg(not(target_arch = "wasm32"))]
pub use files::{ModelFiles, open_model};
#[cfg(not(target_arch = "wasm32"))]
pub use pth::PthSource;
pub use random::RandomSource;
pub use safetensors::{SafetensorsHeader, SafetensorsSource, StoreDType, TensorEntry, write_safetensors};

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
    #[error("weights are missing tensor `{0}`: is this a SegGPT checkpoint for this config?")]
    Missing(String),
    #[error("weights hold {} tensor(s) this model does not have: {}", .0.len(), .0.join(", "))]
    Unexpected(Vec<String>),
    #[error("tensor `{name}` has shape {found:?}, the config needs {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    DType { name: String, dtype: String },
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

/// Widens raw little-endian bytes of a float dtype to f32.
pub(crate) fn bytes_to_f32(name: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>, LoadError> {
    match dtype {
        "F32" => Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        "F16" => Ok(bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        "BF16" => {
            Ok(bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
        }
        other => Err(LoadError::DType { name: name.to_string(), dtype: other.to_string() }),
    }
}

/// A set of named f32 tensors held on the host, e.g. for `convert`.
pub type HostTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a source (HF names) into host memory.
pub fn read_all(source: &dyn TensorSource) -> Result<HostTensors, LoadError> {
    let mut out = HostTensors::new();
    for name in source.names() {
        let shape = source.shape(&name).unwrap_or_default();
        let values = source.read_f32(&name)?;
        out.insert(name, (shape, values));
    }
    Ok(out)
}
