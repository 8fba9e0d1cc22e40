//! The official PyTorch checkpoint (`seggpt_vit_large.pth`): a state dict, either at the top
//! level or under `model` as released (docs/MODEL.md §9.1). Names are renamed to HF ones on read.

use std::collections::BTreeMap;
use std::path::Path;

use pytorch_reader::{DType, PytorchReader, Tensor};

use super::{LoadError, TensorSource, bytes_to_f32, names::hf_name_for_official};

/// An official `.pth` checkpoint, tensors read lazily from the file.
pub struct PthSource {
    tensors: BTreeMap<String, Tensor>,
}

impl PthSource {
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let pth_err = |e: pytorch_reader::PytorchError| LoadError::Pth(format!("{}: {e}", path.display()));
        // The release nests the state dict under `model`; accept a bare state dict too.
        let reader = match PytorchReader::with_top_level_key(path, "model") {
            Ok(reader) => reader,
            Err(_) => PytorchReader::new(path).map_err(pth_err)?,
        };
        let tensors = reader
            .into_tensors()
            .into_iter()
            .map(|(name, t)| (hf_name_for_official(&name).unwrap_or(name), t))
            .collect();
        Ok(Self { tensors })
    }
}

impl TensorSource for PthSource {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape().to_vec())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let tensor = self.tensors.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
        let dtype = match tensor.dtype() {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            other => {
                return Err(LoadError::DType { name: name.to_string(), dtype: format!("{other:?}") });
            }
        };
        let bytes = tensor.read().map_err(|e| LoadError::Pth(e.to_string()))?;
        bytes_to_f32(name, dtype, &bytes)
    }
}
