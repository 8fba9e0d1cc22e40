//! `.safetensors` checkpoints (HF names, or official names that are renamed on read).

use std::collections::{BTreeMap, BTreeSet};

use safetensors::tensor::{Dtype, Metadata, TensorView};

use super::{
    HostTensors, LoadError, TensorSource, bytes_to_f32, check_layout, names::hf_name_for_official, q8,
};
use crate::SegGptConfig;

/// Where one tensor lies in a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// safetensors dtype name: `F32`, `F16`, `BF16`, ...
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range in the whole file.
    pub range: std::ops::Range<u64>,
    /// For an `I8` tensor of a q8 file: the byte range of its per-row f32 scales
    /// (docs/MODEL.md §17).
    pub scale: Option<std::ops::Range<u64>>,
}

impl TensorEntry {
    /// The tensor's values from its bytes and, for an int8 tensor, its scales' bytes.
    pub fn decode(&self, name: &str, data: &[u8], scales: Option<&[u8]>) -> Result<Vec<f32>, LoadError> {
        match scales {
            Some(scales) => q8::dequantize(name, &self.shape, data, scales),
            None => bytes_to_f32(name, &self.dtype, data),
        }
    }
}

/// Largest header accepted (the safetensors crate's own limit): a bigger length field means the
/// file is not safetensors.
const MAX_HEADER: u64 = 100_000_000;

/// A parsed safetensors header, read from the start of a file without needing the rest, so a
/// download can be checked before its gigabytes arrive.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    /// Tensors by HF name (official names are renamed).
    pub entries: BTreeMap<String, TensorEntry>,
    /// The exact size of a complete file: 8 + header + data.
    pub file_len: u64,
}

impl SafetensorsHeader {
    /// How many leading bytes [`Self::parse`] needs, from the first 8 bytes of the file.
    pub fn prefix_len(first8: &[u8]) -> Result<u64, LoadError> {
        let bytes: [u8; 8] = first8
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| LoadError::NotSafetensors("the file is shorter than 8 bytes".into()))?;
        let n = u64::from_le_bytes(bytes);
        if !(2..=MAX_HEADER).contains(&n) {
            return Err(LoadError::NotSafetensors(format!(
                "its first 8 bytes give a header length of {n}, which no safetensors file has"
            )));
        }
        Ok(8 + n)
    }

    /// Parses the header from the first bytes of a file (at least [`Self::prefix_len`] of them).
    pub fn parse(prefix: &[u8]) -> Result<Self, LoadError> {
        let need = Self::prefix_len(prefix)?;
        let header = prefix.get(8..need as usize).ok_or_else(|| {
            LoadError::NotSafetensors(format!("the file ends inside its {}-byte header", need - 8))
        })?;
        if header.first() != Some(&b'{') {
            return Err(LoadError::NotSafetensors("its header is not safetensors JSON".into()));
        }
        // Deserializing validates the offsets: contiguous, in order, sized by dtype and shape.
        let metadata: Metadata = serde_json::from_slice(header)
            .map_err(|e| LoadError::NotSafetensors(format!("its header is not safetensors JSON: {e}")))?;
        let mut entries = BTreeMap::new();
        for (raw_name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let name = hf_name_for_official(&raw_name).unwrap_or(raw_name);
            let entry = TensorEntry {
                dtype: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
                range: need + start as u64..need + end as u64,
                scale: None,
            };
            if entries.insert(name.clone(), entry).is_some() {
                return Err(LoadError::NotSafetensors(format!(
                    "tensor `{name}` appears twice (under its official and its HF name)"
                )));
            }
        }
        q8::attach_scales(&mut entries)?;
        Ok(Self { entries, file_len: need + metadata.data_len() as u64 })
    }

    /// HF names of every tensor.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    /// The entry of `name`, or [`LoadError::Missing`].
    pub fn entry(&self, name: &str) -> Result<&TensorEntry, LoadError> {
        self.entries.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))
    }

    /// Errors unless a file of `len` bytes is exactly as long as the header declares.
    pub fn check_len(&self, len: u64) -> Result<(), LoadError> {
        match len.cmp(&self.file_len) {
            std::cmp::Ordering::Less => Err(LoadError::NotSafetensors(format!(
                "the file is truncated: {len} of the {} bytes its header declares",
                self.file_len
            ))),
            std::cmp::Ordering::Greater => Err(LoadError::NotSafetensors(format!(
                "the file is {len} bytes, longer than the {} its header declares: it is corrupt",
                self.file_len
            ))),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Checks names, shapes and dtypes against what `config` needs, before any data is read.
    pub fn check_against(&self, config: &SegGptConfig) -> Result<(), LoadError> {
        check_layout(self.names(), |name| self.shape(name), config)?;
        self.check_dtypes()
    }

    /// Checks one shard of a sharded checkpoint before any data is read: it holds exactly the
    /// tensors `names` (what the index maps to it), each one `config` needs, of the shape it needs.
    pub fn check_shard(&self, config: &SegGptConfig, names: &BTreeSet<String>) -> Result<(), LoadError> {
        let expected: BTreeMap<String, Vec<usize>> =
            crate::model::parameter_shapes(config)?.into_iter().collect();
        if let Some(name) = self.entries.keys().find(|n| !names.contains(*n)) {
            return Err(LoadError::Config(format!(
                "the shard holds `{name}`, which the index does not map to it: the shards and the index do not match"
            )));
        }
        if let Some(name) = names.iter().find(|n| !self.entries.contains_key(*n)) {
            return Err(LoadError::Config(format!(
                "the index maps `{name}` to this shard, which does not hold it: the shards and the index do not match"
            )));
        }
        for (name, entry) in &self.entries {
            match expected.get(name) {
                None => return Err(LoadError::Unexpected(vec![name.clone()])),
                Some(shape) if *shape != entry.shape => {
                    return Err(LoadError::Shape {
                        name: name.clone(),
                        expected: shape.clone(),
                        found: entry.shape.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        self.check_dtypes()
    }

    /// Every tensor in a dtype the readers widen (or a q8 tensor with its scales).
    pub fn check_dtypes(&self) -> Result<(), LoadError> {
        // `I8` entries have their scales: `parse` refuses them otherwise.
        match self.entries.iter().find(|(_, e)| !matches!(e.dtype.as_str(), "F32" | "F16" | "BF16" | "I8")) {
            Some((name, entry)) => Err(LoadError::DType { name: name.clone(), dtype: entry.dtype.clone() }),
            None => Ok(()),
        }
    }
}

/// A safetensors checkpoint indexed by HF name: bytes in memory, or a file mapped into memory, so
/// that tensors are read in place from the page cache and a checkpoint is never copied whole.
pub struct SafetensorsSource {
    data: Data,
    header: SafetensorsHeader,
}

enum Data {
    Memory(Vec<u8>),
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
}

impl SafetensorsSource {
    /// Parses the header and checks that the buffer is exactly as long as it declares.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, LoadError> {
        let header = SafetensorsHeader::parse(&bytes)?;
        header.check_len(bytes.len() as u64)?;
        Ok(Self { data: Data::Memory(bytes), header })
    }

    /// Maps a file after checking it is a regular file, and checks its header: the header's
    /// length against the file's size before the header is parsed, and the file's size against the
    /// header before any tensor is read. Mapping instead of reading saves a copy of every tensor
    /// and lets the pages be shared with the page cache (docs/MODEL.md §20).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let io = |source| LoadError::Io { path: shown.clone(), source };
        let len = super::regular_file_len(path)?;
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is only read. Like every loader that maps its checkpoint (the safetensors
        // crate's, PyTorch's), this assumes nobody shortens the file while it is mapped: reading
        // a page cut off the end would stop the process (SIGBUS) instead of returning an error.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        // Every tensor is read once, in the model's order rather than the file's: ask for the whole
        // file ahead instead of sequential read-ahead.
        #[cfg(unix)]
        map.advise(memmap2::Advice::WillNeed).map_err(io)?;
        let need = SafetensorsHeader::prefix_len(&map)?;
        if need > len {
            return Err(LoadError::NotSafetensors(format!(
                "{shown}: its first 8 bytes announce a {}-byte header, but the file has only {len} bytes",
                need - 8
            )));
        }
        let header = SafetensorsHeader::parse(&map[..need as usize])?;
        header.check_len(len)?;
        Ok(Self { data: Data::Mapped(map), header })
    }
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.header.names()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.header.shape(name)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let entry = self.header.entry(name)?;
        let scales = entry.scale.as_ref().map(|range| self.bytes(range));
        entry.decode(name, self.bytes(&entry.range), scales)
    }
}

impl SafetensorsSource {
    /// The bytes of `range`, which lies inside the data: the data's length was checked against
    /// the header.
    // In wasm there is no mapped file, so the match has one arm.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::infallible_destructuring_match))]
    fn bytes(&self, range: &std::ops::Range<u64>) -> &[u8] {
        let all: &[u8] = match &self.data {
            Data::Memory(bytes) => bytes,
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(map) => map,
        };
        &all[range.start as usize..range.end as usize]
    }
}

/// Storage precision of a written checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDType {
    F32,
    F16,
    /// Int8 matrices with per-row f32 scales, the rest f16 (docs/MODEL.md §17, [`q8`]).
    Q8,
}

/// A tensor holding values that f16 would store as infinity (beyond its largest, 65504).
#[derive(Debug, Clone, PartialEq)]
pub struct F16Overflow {
    pub name: String,
    pub count: usize,
    pub max_abs: f32,
}

impl std::fmt::Display for F16Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tensor `{}`: {} value(s) beyond f16's range (largest magnitude {:e}, f16 holds up to {})",
            self.name,
            self.count,
            self.max_abs,
            half::f16::MAX
        )
    }
}

/// Every tensor with values f16 cannot hold, in name order.
pub fn f16_overflows(tensors: &HostTensors) -> Vec<F16Overflow> {
    tensors
        .iter()
        .filter_map(|(name, (_, values))| {
            let over: Vec<f32> =
                values.iter().map(|v| v.abs()).filter(|v| half::f16::from_f32(*v).is_infinite()).collect();
            (!over.is_empty()).then(|| F16Overflow {
                name: name.clone(),
                count: over.len(),
                max_abs: over.iter().copied().fold(0.0, f32::max),
            })
        })
        .collect()
}

/// Clamps every value to f16's finite range, so an f16 file stores the nearest finite value.
pub fn clamp_to_f16(tensors: &mut HostTensors) {
    let max = half::f16::MAX.to_f32();
    for (_, values) in tensors.values_mut() {
        for v in values.iter_mut() {
            *v = v.clamp(-max, max);
        }
    }
}

/// Serializes host tensors (HF names) to safetensors bytes in `dtype`. F16 (and the f16 part of
/// Q8) refuses values it cannot hold rather than store them as infinity (see [`clamp_to_f16`]).
pub fn write_safetensors(tensors: &HostTensors, dtype: StoreDType) -> Result<Vec<u8>, String> {
    let stored_f16: HostTensors = match dtype {
        StoreDType::F32 => HostTensors::new(),
        StoreDType::F16 => tensors.clone(),
        StoreDType::Q8 => tensors
            .iter()
            .filter(|(name, (shape, _))| !q8::is_quantized(name, shape))
            .map(|(name, t)| (name.clone(), t.clone()))
            .collect(),
    };
    let overflows = f16_overflows(&stored_f16);
    if !overflows.is_empty() {
        let listed: Vec<String> = overflows.iter().map(ToString::to_string).collect();
        return Err(format!(
            "{} tensor(s) hold values f16 cannot store (they would become infinity): {}",
            overflows.len(),
            listed.join("; ")
        ));
    }
    let f16_bytes =
        |values: &[f32]| values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, (shape, values)) in tensors {
        match dtype {
            StoreDType::F32 => buffers.push((
                name.clone(),
                Dtype::F32,
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
            StoreDType::Q8 if q8::is_quantized(name, shape) => {
                let (q, scales) = q8::quantize(shape, values);
                buffers.push((name.clone(), Dtype::I8, shape.clone(), q.iter().map(|&v| v as u8).collect()));
                buffers.push((
                    format!("{name}{}", q8::SCALE_SUFFIX),
                    Dtype::F32,
                    vec![scales.len()],
                    scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
            }
            StoreDType::F16 | StoreDType::Q8 => {
                buffers.push((name.clone(), Dtype::F16, shape.clone(), f16_bytes(values)))
            }
        }
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let mut metadata: std::collections::HashMap<String, String> =
        [("format".to_string(), "pt".to_string())].into_iter().collect();
    if dtype == StoreDType::Q8 {
        metadata.insert(
            "seggpt_layout".into(),
            format!("q8: I8 weights, per-row F32 scales in <name>{}", q8::SCALE_SUFFIX),
        );
    }
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{RandomSource, read_all};

    fn tiny() -> (SegGptConfig, Vec<u8>) {
        let config =
            SegGptConfig::from_json(include_str!("../../tests/fixtures/segment/model/config.json")).unwrap();
        let tensors = read_all(&RandomSource::new(&config, 7).unwrap()).unwrap();
        (config, write_safetensors(&tensors, StoreDType::F16).unwrap())
    }

    #[test]
    fn header_parses_from_a_prefix_and_checks_against_the_config() {
        let (config, bytes) = tiny();
        let need = SafetensorsHeader::prefix_len(&bytes[..8]).unwrap() as usize;
        assert!(need < bytes.len());
        let header = SafetensorsHeader::parse(&bytes[..need]).unwrap();
        assert_eq!(header.file_len, bytes.len() as u64);
        header.check_against(&config).unwrap();
        header.check_len(bytes.len() as u64).unwrap();
        // Every range is inside the file and the values read back through it are the written ones.
        let source = SafetensorsSource::from_bytes(bytes.clone()).unwrap();
        for (name, entry) in &header.entries {
            assert!(entry.range.end <= header.file_len, "{name}");
            assert_eq!(entry.dtype, "F16");
            assert_eq!(source.shape(name).as_ref(), Some(&entry.shape));
        }
    }

    #[test]
    fn short_prefixes_and_truncated_files_are_named() {
        let (_, bytes) = tiny();
        let need = SafetensorsHeader::prefix_len(&bytes).unwrap() as usize;
        let err = SafetensorsHeader::prefix_len(&bytes[..5]).unwrap_err().to_string();
        assert!(err.contains("shorter than 8 bytes"), "{err}");
        let err = SafetensorsHeader::parse(&bytes[..need - 1]).unwrap_err().to_string();
        assert!(err.contains("ends inside its"), "{err}");
        let header = SafetensorsHeader::parse(&bytes).unwrap();
        let err = header.check_len(bytes.len() as u64 - 10).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(err.contains(&format!("{} of the {}", bytes.len() - 10, bytes.len())), "{err}");
        let err = header.check_len(bytes.len() as u64 + 1).unwrap_err().to_string();
        assert!(err.contains("longer than"), "{err}");
        let err = SafetensorsSource::from_bytes(bytes[..bytes.len() - 1].to_vec()).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn f16_refuses_values_it_cannot_hold_unless_clamped() {
        let mut tensors = HostTensors::new();
        tensors.insert("a".into(), (vec![3], vec![1.0, 70_000.0, -1e6]));
        tensors.insert("b".into(), (vec![2], vec![65_504.0, -2.0]));
        assert_eq!(f16_overflows(&tensors), [F16Overflow { name: "a".into(), count: 2, max_abs: 1e6 }]);
        let err = write_safetensors(&tensors, StoreDType::F16).unwrap_err();
        assert!(err.contains("`a`") && err.contains("2 value(s)") && err.contains("1e6"), "{err}");
        write_safetensors(&tensors, StoreDType::F32).unwrap();
        clamp_to_f16(&mut tensors);
        let bytes = write_safetensors(&tensors, StoreDType::F16).unwrap();
        let back = SafetensorsSource::from_bytes(bytes).unwrap();
        assert_eq!(back.read_f32("a").unwrap(), [1.0, 65_504.0, -65_504.0]);
    }

    /// A file of one tensor `t` of `dtype` holding `bytes`.
    fn one_tensor_file(dtype: Dtype, count: usize, bytes: &[u8]) -> Vec<u8> {
        let view = TensorView::new(dtype, vec![count], bytes).unwrap();
        safetensors::tensor::serialize([("t".to_string(), view)], None).unwrap()
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_mapped_file_reads_every_float_dtype_as_memory_does() {
        // Enough values that the conversion is split across threads.
        let values: Vec<f32> = (0..100_003).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let cases = [
            (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), 0.0),
            (Dtype::F16, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(), 0.5),
            (Dtype::BF16, values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(), 4.0),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (dtype, bytes, tolerance) in cases {
            let file = one_tensor_file(dtype, values.len(), &bytes);
            let path = dir.path().join(format!("{dtype:?}.safetensors"));
            std::fs::write(&path, &file).unwrap();
            let mapped = SafetensorsSource::from_file(&path).unwrap().read_f32("t").unwrap();
            let in_memory = SafetensorsSource::from_bytes(file).unwrap().read_f32("t").unwrap();
            assert_eq!(mapped, in_memory, "{dtype:?}");
            assert_eq!(mapped.len(), values.len());
            let worst = mapped.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= tolerance, "{dtype:?}: off by {worst}");
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn an_empty_or_short_file_is_refused_before_mapping_anything_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 5] {
            let path = dir.path().join(format!("short{len}.safetensors"));
            std::fs::write(&path, vec![1u8; len]).unwrap();
            let err = SafetensorsSource::from_file(&path).err().unwrap().to_string();
            assert!(err.contains("shorter than 8 bytes"), "{len} bytes: {err}");
        }
    }

    #[test]
    fn garbage_is_not_safetensors() {
        let huge = u64::MAX.to_le_bytes();
        let err = SafetensorsHeader::prefix_len(&huge).unwrap_err().to_string();
        assert!(err.contains("header length"), "{err}");
        let mut not_json = 4u64.to_le_bytes().to_vec();
        not_json.extend_from_slice(b"PK\x03\x04");
        let err = SafetensorsHeader::parse(&not_json).unwrap_err().to_string();
        assert!(err.contains("not safetensors JSON"), "{err}");
        let mut bad_offsets = Vec::new();
        let json = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
        bad_offsets.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bad_offsets.extend_from_slice(json);
        let err = SafetensorsHeader::parse(&bad_offsets).unwrap_err().to_string();
        assert!(err.contains("not safetensors JSON"), "{err}");
    }

    #[test]
    fn check_against_names_the_tensor_at_fault() {
        let (config, bytes) = tiny();
        let mut header = SafetensorsHeader::parse(&bytes).unwrap();
        let name = "model.encoder.layernorm.weight".to_string();

        let mut wrong_shape = header.clone();
        wrong_shape.entries.get_mut(&name).unwrap().shape = vec![3];
        let err = wrong_shape.check_against(&config).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("shape [3]"), "{err}");

        let mut int = header.clone();
        int.entries.get_mut(&name).unwrap().dtype = "I64".into();
        let err = int.check_against(&config).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("I64"), "{err}");

        let mut extra = header.clone();
        let entry = extra.entries[&name].clone();
        extra.entries.insert("head.extra".into(), entry);
        let err = extra.check_against(&config).unwrap_err().to_string();
        assert!(err.contains("head.extra"), "{err}");

        // A checkpoint of another model: a few names and the counts, not hundreds of lines.
        let mut other = header.clone();
        other.entries = header.entries.iter().map(|(n, e)| (format!("backbone.{n}"), e.clone())).collect();
        let err = other.check_against(&config).unwrap_err().to_string();
        let count = header.entries.len();
        assert!(err.contains(&format!("missing {count} of the tensors")), "{err}");
        assert!(err.contains(&format!("hold {count} it does not have")), "{err}");
        assert!(err.contains(&format!("and {} more", count - 5)), "{err}");
        assert_eq!(err.matches('`').count(), 2 * 10, "five names of each list: {err}");

        header.entries.remove(&name);
        let err = header.check_against(&config).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("missing"), "{err}");
    }
}
