//! Checkpoints in pieces, in the Hugging Face hub's layout: `model.safetensors.index.json` (its
//! `weight_map` names the shard of every tensor) beside `model-00001-of-0000N.safetensors` files.
//! transformers' `save_pretrained(max_shard_size=...)` writes it, and `seggpt convert --shard-size`
//! too, so that no file passes a static host's limit (docs/MODEL.md §26).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{LoadError, TensorSource};

/// The index file's name, which also marks a directory as sharded.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Largest index read: the released model's would be about 40 KB.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// The parts of an index file that are read (transformers also writes `metadata.total_size`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardIndex {
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Tensor name -> shard file name.
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    /// Parses an index and checks every shard name is a plain file name beside it: an index may
    /// not send the reader to another folder.
    pub fn parse(text: &str, shown: &str) -> Result<Self, LoadError> {
        let index: Self = serde_json::from_str(text)
            .map_err(|e| LoadError::Config(format!("{shown}: not a shard index ({e})")))?;
        if index.weight_map.is_empty() {
            return Err(LoadError::Config(format!("{shown}: its weight_map names no tensor")));
        }
        for file in index.weight_map.values() {
            let plain = !file.is_empty()
                && file != "."
                && file != ".."
                && !file.contains(['/', '\\'])
                && file.ends_with(".safetensors");
            if !plain {
                return Err(LoadError::Config(format!(
                    "{shown}: the shard name {file:?} is not a .safetensors file name beside the index"
                )));
            }
        }
        Ok(index)
    }

    /// The shard files, in order, each once.
    pub fn shard_files(&self) -> Vec<String> {
        self.weight_map.values().cloned().collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// The tensors the index maps to `file`.
    pub fn tensors_of(&self, file: &str) -> BTreeSet<String> {
        self.weight_map.iter().filter(|(_, f)| *f == file).map(|(n, _)| n.clone()).collect()
    }

    /// The data size the index declares (`metadata.total_size`), if it does.
    pub fn total_size(&self) -> Option<u64> {
        self.metadata.get("total_size").and_then(|v| v.as_u64())
    }
}

/// The shards of one checkpoint as one [`TensorSource`] (files natively, Blobs in the worker).
pub struct ShardedSource {
    shards: Vec<Box<dyn TensorSource>>,
    /// Tensor name -> index into `shards`.
    by_name: BTreeMap<String, usize>,
}

impl ShardedSource {
    /// Opened shards, `(file name, source)`, checked against `index`: each shard holds exactly the
    /// tensors the index maps to it, so a missing, extra or misplaced tensor is an error naming its
    /// shard before any tensor is read.
    pub fn from_shards(
        index: &ShardIndex,
        shards: Vec<(String, Box<dyn TensorSource>)>,
    ) -> Result<Self, LoadError> {
        let mut by_name = BTreeMap::new();
        let mut sources = Vec::with_capacity(shards.len());
        for (i, (file, source)) in shards.into_iter().enumerate() {
            let held: BTreeSet<String> = source.names().into_iter().collect();
            let mapped = index.tensors_of(&file);
            if let Some(name) = mapped.difference(&held).next() {
                return Err(LoadError::Config(format!(
                    "{INDEX_FILE} maps `{name}` to {file}, which does not hold it: the shards and the index do not match"
                )));
            }
            if let Some(name) = held.difference(&mapped).next() {
                return Err(LoadError::Config(format!(
                    "{file} holds `{name}`, which {INDEX_FILE} does not map to it: the shards and the index do not match"
                )));
            }
            by_name.extend(held.into_iter().map(|name| (name, i)));
            sources.push(source);
        }
        Ok(Self { shards: sources, by_name })
    }

    /// Opens the shards an index in `dir` names, each checked as a safetensors file (header
    /// against size) before the index's mapping is checked against them.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(index_path: &std::path::Path) -> Result<Self, LoadError> {
        let shown = index_path.display().to_string();
        let text = super::read_small_text(index_path, "a shard index", MAX_INDEX_BYTES)?;
        let index = ShardIndex::parse(&text, &shown)?;
        let dir = index_path.parent().unwrap_or(std::path::Path::new("."));
        let shards = index
            .shard_files()
            .into_iter()
            .map(|file| {
                let path = dir.join(&file);
                if !path.exists() {
                    return Err(LoadError::Config(format!(
                        "{shown} names the shard {file}, which is not in {}",
                        dir.display()
                    )));
                }
                let source = super::SafetensorsSource::from_file(&path)
                    .map_err(|e| LoadError::NotSafetensors(format!("{}: {e}", path.display())))?;
                Ok((file, Box::new(source) as Box<dyn TensorSource>))
            })
            .collect::<Result<_, LoadError>>()?;
        Self::from_shards(&index, shards)
    }
}

impl TensorSource for ShardedSource {
    fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.by_name.get(name).and_then(|&i| self.shards[i].shape(name))
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        match self.by_name.get(name) {
            Some(&i) => self.shards[i].read_f32(name),
            None => Err(LoadError::Missing(name.to_string())),
        }
    }
}

/// The shard file name transformers uses: `model-00002-of-00005.safetensors`.
pub fn shard_file_name(index: usize, count: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", index + 1, count)
}

/// Splits tensor names, in order, into consecutive groups of at most `max_bytes` each (by the
/// `bytes` of each name); a tensor larger than `max_bytes` gets a group of its own, as
/// transformers does.
pub fn plan_shards(sizes: &[(String, u64)], max_bytes: u64) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current = 0u64;
    for (name, bytes) in sizes {
        match groups.last_mut() {
            Some(group) if current + bytes <= max_bytes => {
                group.push(name.clone());
                current += bytes;
            }
            _ => {
                groups.push(vec![name.clone()]);
                current = *bytes;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_fill_up_to_the_limit_and_a_large_tensor_stands_alone() {
        let sizes: Vec<(String, u64)> = [("a", 40), ("b", 50), ("c", 20), ("d", 300), ("e", 10)]
            .iter()
            .map(|(n, b)| (n.to_string(), *b))
            .collect();
        let groups = plan_shards(&sizes, 100);
        assert_eq!(groups, vec![vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
        assert_eq!(shard_file_name(1, 12), "model-00002-of-00012.safetensors");
    }

    #[test]
    fn an_index_may_not_point_outside_its_folder() {
        for bad in ["../model.safetensors", "/etc/passwd.safetensors", "sub/model.safetensors", "model.bin"] {
            let text = format!(r#"{{"weight_map": {{"a": "{bad}"}}}}"#);
            let err = ShardIndex::parse(&text, "index").unwrap_err().to_string();
            assert!(err.contains("not a .safetensors file name"), "{bad}: {err}");
        }
        assert!(
            ShardIndex::parse(r#"{"weight_map": {}}"#, "index")
                .unwrap_err()
                .to_string()
                .contains("no tensor")
        );
    }
}
