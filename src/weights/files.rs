//! Opening a model from disk (native only): an HF directory, a `.safetensors` file or an
//! official `.pth`.

use std::path::{Path, PathBuf};

use super::{LoadError, PthSource, SafetensorsSource, ShardedSource, TensorSource, check_layout};
use crate::config::SegGptConfig;

/// Largest `config.json` read: real ones are under a kilobyte.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A checkpoint and the config that describes it.
pub struct ModelFiles {
    pub config: SegGptConfig,
    pub source: Box<dyn TensorSource>,
}

/// The length of `path`, after checking that it is a regular file (links are followed). Opening
/// a named pipe would block until something writes to it, and a device such as `/dev/zero` never
/// ends, so both are refused from their metadata, before they are opened.
pub fn regular_file_len(path: &Path) -> Result<u64, LoadError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io { path: shown.clone(), source })?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let kind = if meta.is_dir() { "a directory" } else { special_file_kind(&meta) };
    Err(LoadError::NotAFile { path: shown, kind })
}

#[cfg(unix)]
fn special_file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::Metadata) -> &'static str {
    "a special file"
}

/// The weights file and the config file that `path` names: a directory holding `config.json`
/// and `model.safetensors` (or its shards' `model.safetensors.index.json`, or `model.pth`), or a
/// weights file (or a shard index) with the `config.json` beside it.
pub fn model_paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        let safetensors = path.join("model.safetensors");
        let index = path.join(super::INDEX_FILE);
        let pth = path.join("model.pth");
        let weights = if safetensors.exists() {
            safetensors
        } else if index.exists() {
            index
        } else if pth.exists() {
            pth
        } else {
            safetensors
        };
        (weights, path.join("config.json"))
    } else {
        (path.to_path_buf(), path.parent().unwrap_or(Path::new(".")).join("config.json"))
    }
}

/// Opens `path` (see [`model_paths`]); a weights file without a `config.json` beside it is the
/// released ViT-L. The checkpoint's tensor names and shapes are checked against the config
/// before any tensor is read.
pub fn open_model(path: &Path) -> Result<ModelFiles, LoadError> {
    let (weights, config_path) = model_paths(path);
    let config = if config_path.exists() {
        read_config(&config_path)?
    } else if path.is_dir() {
        return Err(LoadError::Io {
            path: config_path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no config.json"),
        });
    } else {
        SegGptConfig::default()
    };
    regular_file_len(&weights)?;
    let is_pth = matches!(weights.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin"));
    let is_index = weights.to_string_lossy().ends_with(".index.json");
    let source: Box<dyn TensorSource> = if is_index {
        Box::new(ShardedSource::open(&weights)?)
    } else if is_pth {
        Box::new(PthSource::from_file(&weights)?)
    } else {
        Box::new(SafetensorsSource::from_file(&weights)?)
    };
    check_layout(source.names(), |name| source.shape(name), &config)?;
    Ok(ModelFiles { config, source })
}

/// The text of a small regular file (`what` names it in the error): a config or a shard index,
/// refused from its metadata when it is larger than `max` bytes, before it is read.
pub fn read_small_text(path: &Path, what: &'static str, max: u64) -> Result<String, LoadError> {
    let shown = path.display().to_string();
    let bytes = regular_file_len(path)?;
    if bytes > max {
        return Err(LoadError::FileTooLarge { path: shown, what, bytes, max });
    }
    std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: shown, source })
}

/// The text of a `config.json` (any model's), refusing anything that is not a small regular file.
pub fn read_config_text(path: &Path) -> Result<String, LoadError> {
    read_small_text(path, "a config.json", MAX_CONFIG_BYTES)
}

/// Reads and validates a `config.json`, refusing anything that is not a small regular file.
pub fn read_config(path: &Path) -> Result<SegGptConfig, LoadError> {
    let shown = path.display().to_string();
    let text = read_config_text(path)?;
    SegGptConfig::from_json(&text).map_err(|e| match e {
        LoadError::Config(message) => LoadError::Config(format!(
            "{shown}: {}",
            message.strip_prefix("config.json: ").unwrap_or(&message)
        )),
        other => other,
    })
}

/// Every file a model at `path` is read from: the weights (each shard, for a sharded checkpoint,
/// as far as its index can be read) and the config.
pub fn model_input_files(path: &Path) -> Vec<PathBuf> {
    let (weights, config) = model_paths(path);
    let mut files = vec![weights.clone(), config];
    if weights.to_string_lossy().ends_with(".index.json")
        && let Ok(text) = std::fs::read_to_string(&weights)
        && let Ok(index) = super::ShardIndex::parse(&text, "")
    {
        let dir = weights.parent().unwrap_or(Path::new("."));
        files.extend(index.shard_files().into_iter().map(|f| dir.join(f)));
    }
    files
}
