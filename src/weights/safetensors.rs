//! `.safetensors` checkpoints (HF names, or official names that are renamed on read).

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use super::{HostTensors, LoadError, TensorSource, bytes_to_f32, names::hf_name_for_official};

struct Entry {
    dtype: String,
    shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

/// A whole safetensors file in memory, indexed by HF name.
pub struct SafetensorsSource {
    bytes: Vec<u8>,
    entries: BTreeMap<String, Entry>,
}

impl SafetensorsSource {
    /// Parses the header and checks that every tensor lies inside the buffer.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, LoadError> {
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(describe)?;
        let data_start = 8 + header_len;
        let mut entries = BTreeMap::new();
        for (raw_name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let name = hf_name_for_official(&raw_name).unwrap_or(raw_name);
            let entry = Entry {
                dtype: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
                range: data_start + start..data_start + end,
            };
            if entries.insert(name.clone(), entry).is_some() {
                return Err(LoadError::NotSafetensors(format!(
                    "tensor `{name}` appears twice (under its official and its HF name)"
                )));
            }
        }
        Ok(Self { bytes, entries })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Self::from_bytes(bytes)
    }
}

fn describe(err: SafeTensorError) -> LoadError {
    let what = match err {
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            "the file is too short or its header length is wrong".to_string()
        }
        SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderDeserialization(_) => {
            "its header is not safetensors JSON".to_string()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the data is shorter or longer than the header declares: the file is truncated or corrupt"
                .to_string()
        }
        other => format!("{other:?}"),
    };
    LoadError::NotSafetensors(what)
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let entry = self.entries.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
        bytes_to_f32(name, &entry.dtype, &self.bytes[entry.range.clone()])
    }
}

/// Storage precision of a written checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDType {
    F32,
    F16,
}

/// Serializes host tensors (HF names) to safetensors bytes in `dtype`.
pub fn write_safetensors(tensors: &HostTensors, dtype: StoreDType) -> Result<Vec<u8>, String> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let bytes = match dtype {
                StoreDType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                StoreDType::F16 => {
                    values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
                }
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        StoreDType::F32 => Dtype::F32,
        StoreDType::F16 => Dtype::F16,
    };
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(st_dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let metadata = Some([("format".to_string(), "pt".to_string())].into_iter().collect());
    safetensors::tensor::serialize(views, metadata).map_err(|e| format!("{e:?}"))
}
