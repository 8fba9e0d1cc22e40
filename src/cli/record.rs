//! What shaped a command's outputs, written beside them and compared on the next run, so that a
//! resumed run never keeps an output made with other settings; and the one check every command
//! makes before it writes: no output may be one of the files it reads.
//!
//! A record is a JSON object of `settings` (what makes two runs the same: the model's SHA-256, the
//! options that change an output) and the `command` line (kept for the reader, never compared).
//! `eval` keeps one per run folder (`run.json`), `segment` one per output folder, `tune` one beside
//! its prompt (`NAME.run.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli::output::resolve;
use crate::{CliResult, write_atomically};

/// A record file: the settings that made the outputs beside it, and the command line that ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub settings: Value,
    pub command: Vec<String>,
}

impl RunRecord {
    /// A record of `settings` for this process's command line.
    pub fn new(settings: Value) -> Self {
        Self { settings, command: std::env::args().collect() }
    }

    /// The record at `path`, `None` if there is none; a file that is not a record is an error
    /// naming it.
    pub fn read(path: &Path) -> CliResult<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{} is not a run record of this tool ({e})", path.display()))
    }

    /// Writes the record whole or not at all.
    pub fn write(&self, path: &Path) -> CliResult<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        write_atomically(path, text.as_bytes())
    }
}

/// The SHA-256 of a file, in hex (the digest the Hugging Face hub lists for each file).
pub fn sha256_file(path: &Path) -> CliResult<String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(cannot)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The model's identity for a record: the SHA-256 of its weights and of its config (if any).
pub fn model_identity(model: &Path) -> CliResult<Value> {
    let (weights, config) = seggpt::weights::model_paths(model);
    let config_sha256 = if config.exists() { Some(sha256_file(&config)?) } else { None };
    Ok(json!({ "model_sha256": sha256_file(&weights)?, "config_sha256": config_sha256 }))
}

/// The settings that differ between two records, as `name: old -> new`.
pub fn differences(old: &Value, new: &Value) -> String {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return "format".into() };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            format!("{k}: {} -> {}", old.get(k).unwrap_or(&Value::Null), new.get(k).unwrap_or(&Value::Null))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files a model argument reads: the weights and, where there is one, the config beside them.
pub fn model_files(model: &Path) -> Vec<PathBuf> {
    seggpt::weights::model_input_files(model)
}

/// Refuses, before any work, an output that is one of the inputs (after resolving links and
/// relative paths): the write would destroy what the run reads. Every command that writes a
/// file it names calls this with every file it reads.
pub fn refuse_output_over_inputs(output: &Path, inputs: &[PathBuf]) -> CliResult<()> {
    let target = resolve(output);
    for input in inputs {
        if resolve(input) == target {
            return Err(format!(
                "the output {} is the input {}: writing it would destroy what this run reads; choose \
                 another output",
                output.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

/// Refuses, before any work, an output folder that is the input folder `input` or inside it
/// (after resolving links and relative paths): what the run writes there would be read as input
/// by this run or the next (`because` says how). `output_flag` and `input_flag` name the options.
pub fn refuse_output_inside(
    output: &Path,
    output_flag: &str,
    input: &Path,
    input_flag: &str,
    because: &str,
) -> CliResult<()> {
    let (target, folder) = (resolve(output), resolve(input));
    if !target.starts_with(&folder) {
        return Ok(());
    }
    let place = if target == folder { "is the same folder as" } else { "is inside" };
    Err(format!(
        "{output_flag} {} {place} {input_flag} {}: {because}; choose a folder outside it",
        output.display(),
        input.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_equal_to_an_input_by_another_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model.safetensors");
        std::fs::write(&input, b"x").unwrap();
        let other = dir.path().join("sub/../model.safetensors");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = refuse_output_over_inputs(&other, std::slice::from_ref(&input)).unwrap_err();
        assert!(err.contains("would destroy"), "{err}");
        assert!(refuse_output_over_inputs(&dir.path().join("out.safetensors"), &[input]).is_ok());
    }

    #[test]
    fn an_output_folder_inside_an_input_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        for inside in [data.clone(), data.join("new/run"), dir.path().join("data/../data/x")] {
            let err = refuse_output_inside(&inside, "--out", &data, "--data", "why").unwrap_err();
            assert!(err.starts_with("--out ") && err.contains("--data") && err.contains("why"), "{err}");
        }
        // A sibling whose name starts the same is outside.
        assert!(refuse_output_inside(&dir.path().join("data2"), "--out", &data, "--data", "").is_ok());
    }

    #[test]
    fn differences_name_each_changed_setting() {
        let old = json!({"a": 1, "b": "x"});
        let new = json!({"a": 2, "b": "x", "c": true});
        assert_eq!(differences(&old, &new), "a: 1 -> 2, c: null -> true");
    }
}
