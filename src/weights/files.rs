//! Opening a model from disk (native only): an HF directory, a `.safetensors` file or an
//! official `.pth`.

use std::path::{Path, PathBuf};

use super::{LoadError, PthSource, SafetensorsSource, TensorSource};
use crate::config::SegGptConfig;

/// A checkpoint and the config that describes it.
pub struct ModelFiles {
    pub config: SegGptConfig,
    pub source: Box<dyn TensorSource>,
}

/// Opens `path`: a directory holding `config.json` and `model.safetensors` (or `model.pth`), or a
/// weights file, whose config is the `config.json` beside it or, when there is none, the released
/// ViT-L's.
pub fn open_model(path: &Path) -> Result<ModelFiles, LoadError> {
    let io = |p: &Path, source| LoadError::Io { path: p.display().to_string(), source };
    let (weights, config_path): (PathBuf, PathBuf) = if path.is_dir() {
        let safetensors = path.join("model.safetensors");
        let pth = path.join("model.pth");
        let weights = if safetensors.exists() || !pth.exists() { safetensors } else { pth };
        (weights, path.join("config.json"))
    } else {
        let beside = path.parent().unwrap_or(Path::new(".")).join("config.json");
        (path.to_path_buf(), beside)
    };
    let config = if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| io(&config_path, e))?;
        SegGptConfig::from_json(&text)?
    } else if path.is_dir() {
        return Err(io(&config_path, std::io::Error::new(std::io::ErrorKind::NotFound, "no config.json")));
    } else {
        SegGptConfig::default()
    };
    if !weights.exists() {
        return Err(io(&weights, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let is_pth = matches!(weights.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin"));
    let source: Box<dyn TensorSource> = if is_pth {
        Box::new(PthSource::from_file(&weights)?)
    } else {
        Box::new(SafetensorsSource::from_file(&weights)?)
    };
    Ok(ModelFiles { config, source })
}
