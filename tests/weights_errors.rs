//! Bad weights give a clear error naming the problem, never a half-initialised model.

mod common;

use std::path::Path;

use common::*;
use seggpt::weights::{HostTensors, LoadError, StoreDType, open_model, read_all, write_safetensors};
use seggpt::{MemoryBudget, SegGpt};

/// A copy of the first fixture model in a temp dir, with its tensors edited by `edit`.
fn edited_model(edit: impl FnOnce(&mut HostTensors)) -> tempfile::TempDir {
    let src = &model_fixture_dirs()[0];
    let files = open_model(src).unwrap();
    let mut tensors = read_all(files.source.as_ref()).unwrap();
    edit(&mut tensors);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        write_safetensors(&tensors, StoreDType::F32).unwrap(),
    )
    .unwrap();
    dir
}

fn load(path: &Path) -> Result<SegGpt, LoadError> {
    let files = open_model(path)?;
    SegGpt::load(files.source.as_ref(), files.config, &cpu(), MemoryBudget::DEFAULT)
}

#[test]
fn unedited_copy_loads() {
    let dir = edited_model(|_| {});
    load(dir.path()).expect("the round-tripped fixture loads");
}

#[test]
fn missing_tensor_is_named() {
    let name = "model.encoder.layers.1.attention.rel_pos_h";
    let dir = edited_model(|t| {
        t.remove(name);
    });
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(&err, LoadError::Missing(n) if n == name), "{err}");
    assert!(err.to_string().contains(name));
}

#[test]
fn wrongly_shaped_tensor_is_named_with_both_shapes() {
    let name = "decoder.decoder_pred.conv.bias";
    let dir = edited_model(|t| {
        let (shape, values) = t.get_mut(name).unwrap();
        shape[0] += 1;
        values.push(0.0);
    });
    let err = load(dir.path()).err().expect("an error");
    match &err {
        LoadError::Shape { name: n, expected, found } => {
            assert_eq!(n, name);
            assert_eq!(found[0], expected[0] + 1);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = edited_model(|t| {
        t.insert("model.encoder.layers.99.mlp.lin1.bias".into(), (vec![2], vec![0.0, 1.0]));
    });
    let err = load(dir.path()).err().expect("an error");
    assert!(err.to_string().contains("model.encoder.layers.99.mlp.lin1.bias"), "{err}");
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let dir = edited_model(|_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(err, LoadError::NotSafetensors(_)), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn a_file_that_is_not_safetensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"<html>404 Not Found</html> and some more bytes").unwrap();
    let err = load(&path).err().expect("an error");
    assert!(matches!(err, LoadError::NotSafetensors(_)), "{err}");
    std::fs::write(&path, b"ab").unwrap();
    assert!(matches!(load(&path), Err(LoadError::NotSafetensors(_))));
}

#[test]
fn integer_tensor_is_refused_with_its_dtype() {
    // An I64 tensor where a float is expected (e.g. a buffer saved by mistake).
    let src = &model_fixture_dirs()[0];
    let files = open_model(src).unwrap();
    let tensors = read_all(files.source.as_ref()).unwrap();
    let mut views = Vec::new();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            if n == "model.encoder.layernorm.bias" {
                (n.clone(), s.clone(), v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect())
            } else {
                (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        })
        .collect();
    for (n, s, b) in &bytes {
        let dtype = if n == "model.encoder.layernorm.bias" {
            safetensors::Dtype::I32
        } else {
            safetensors::Dtype::F32
        };
        views.push((n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(&err, LoadError::DType { name, .. } if name == "model.encoder.layernorm.bias"), "{err}");
}

#[test]
fn config_that_does_not_match_the_weights_names_the_tensor() {
    let dir = edited_model(|_| {});
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["decoder_hidden_size"] = serde_json::json!(5);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(err, LoadError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("decoder"), "{err}");
}

#[test]
fn missing_config_in_a_directory_is_an_error() {
    let dir = edited_model(|_| {});
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load(dir.path()).err().expect("an error");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn a_non_finite_weight_is_refused_naming_the_tensor_and_the_count() {
    let name = "model.embeddings.patch_embeddings.projection.bias";
    let dir = edited_model(|t| {
        let (_, values) = t.get_mut(name).unwrap();
        values[0] = f32::NAN;
        values[1] = f32::NEG_INFINITY;
        values[2] = f32::INFINITY;
    });
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(&err, LoadError::NonFinite { name: n, count: 3, .. } if n == name), "{err}");
    assert!(err.to_string().contains(name) && err.to_string().contains("3 non-finite"), "{err}");
    // `convert` reads every tensor through `read_all`, which refuses them too.
    let files = open_model(dir.path()).unwrap();
    assert!(matches!(read_all(files.source.as_ref()), Err(LoadError::NonFinite { .. })));
}

#[test]
fn a_checkpoint_of_another_model_lists_five_names_and_the_counts() {
    let dir = edited_model(|t| {
        *t = std::mem::take(t).into_iter().map(|(name, value)| (format!("vit.{name}"), value)).collect();
    });
    let count = read_all(open_model(&model_fixture_dirs()[0]).unwrap().source.as_ref()).unwrap().len();
    let err = load(dir.path()).err().expect("an error").to_string();
    assert!(err.contains(&format!("missing {count} of the tensors")), "{err}");
    assert!(err.contains(&format!("hold {count} it does not have")), "{err}");
    assert!(err.contains(&format!("and {} more", count - 5)), "{err}");
    assert!(err.len() < 1000, "a few names, not all {count}: {err}");
}

#[test]
fn a_header_longer_than_the_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut bytes = 50_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\":");
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&path).err().expect("an error").to_string();
    assert!(err.contains("50000000-byte header") && err.contains("only 13 bytes"), "{err}");
}

#[test]
fn weights_that_are_not_a_regular_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model.safetensors")).unwrap();
    std::fs::copy(model_fixture_dirs()[0].join("config.json"), dir.path().join("config.json")).unwrap();
    let err = load(dir.path()).err().expect("an error");
    assert!(matches!(&err, LoadError::NotAFile { kind: "a directory", .. }), "{err}");
    #[cfg(unix)]
    {
        let err = load(Path::new("/dev/zero")).err().expect("an error");
        assert!(err.to_string().contains("/dev/zero is a device, not a regular file"), "{err}");
    }
}

// ---------- checkpoints in shards (the hub's `model.safetensors.index.json` layout) ----------

fn shards_fixture() -> std::path::PathBuf {
    fixtures().join("shards/tiny-k1-hf")
}

fn tensors_of(path: &Path) -> HostTensors {
    let files = open_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_all(files.source.as_ref()).unwrap()
}

/// A copy of transformers' sharded fixture that `edit` may change.
fn shards_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shards_fixture()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn transformers_shards_load_as_the_single_file_does() {
    let single = fixtures().join("models/tiny-k1");
    assert!(!shards_fixture().join("model.safetensors").exists(), "the fixture is sharded");
    assert_eq!(
        tensors_of(&shards_fixture()),
        tensors_of(&single),
        "every tensor equal, none missing or extra"
    );
    load(&shards_fixture()).expect("the model loads from shards");
    // The index itself may be named, as a weights file is.
    assert_eq!(tensors_of(&shards_fixture().join("model.safetensors.index.json")), tensors_of(&single));
}

#[test]
fn a_missing_shard_is_named() {
    let dir = shards_copy();
    std::fs::remove_file(dir.path().join("model-00003-of-00004.safetensors")).unwrap();
    let err = load(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("model-00003-of-00004.safetensors") && err.contains("not in"), "{err}");
}

#[test]
fn shards_that_do_not_match_their_index_are_refused_by_name() {
    let index_path = |dir: &tempfile::TempDir| dir.path().join("model.safetensors.index.json");
    let edit_index = |dir: &tempfile::TempDir, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(index_path(dir)).unwrap()).unwrap();
        edit(&mut index);
        std::fs::write(index_path(dir), index.to_string()).unwrap();
    };
    // A tensor mapped to a shard that does not hold it.
    let dir = shards_copy();
    edit_index(&dir, &|index| {
        index["weight_map"]["decoder.decoder_embed.bias"] = "model-00004-of-00004.safetensors".into();
    });
    let err = load(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("decoder.decoder_embed.bias") && err.contains("do not match"), "{err}");
    // A tensor a shard holds that the index leaves out.
    let dir = shards_copy();
    edit_index(&dir, &|index| {
        index["weight_map"].as_object_mut().unwrap().remove("decoder.decoder_embed.bias");
    });
    let err = load(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("decoder.decoder_embed.bias") && err.contains("does not map"), "{err}");
    // An index that points outside its folder.
    let dir = shards_copy();
    edit_index(&dir, &|index| {
        index["weight_map"]["decoder.decoder_embed.bias"] = "../model.safetensors".into();
    });
    let err = load(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("not a .safetensors file name beside the index"), "{err}");
}

#[test]
fn convert_writes_shards_within_the_size_that_load_as_the_input_does() {
    let single = fixtures().join("models/tiny-k1");
    let out = tempfile::tempdir().unwrap();
    for (dtype, folder) in [("f32", "f32"), ("q8", "q8")] {
        let dir = out.path().join(folder);
        let run = seggpt(&[
            "convert",
            "--model",
            single.to_str().unwrap(),
            "--output",
            dir.to_str().unwrap(),
            "--dtype",
            dtype,
            "--shard-size",
            "40KB",
        ]);
        assert!(run.status.success(), "{dtype}: {}", String::from_utf8_lossy(&run.stderr));
        let shards: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("model-"))
            .collect();
        assert!(shards.len() >= 2, "{dtype}: {} shards", shards.len());
        for shard in &shards {
            // 40 KB of data per shard (no tensor of this model is larger), plus the header.
            let len = std::fs::metadata(shard).unwrap().len();
            assert!(len <= 40_000 + 16_384, "{dtype}: {} is {len} bytes", shard.display());
        }
        assert!(dir.join("config.json").exists() && dir.join("model.safetensors.index.json").exists());
        // The same values as the same conversion to one file.
        let one = out.path().join(format!("{folder}-single/model.safetensors"));
        std::fs::create_dir_all(one.parent().unwrap()).unwrap();
        let run = seggpt(&[
            "convert",
            "--model",
            single.to_str().unwrap(),
            "--output",
            one.to_str().unwrap(),
            "--dtype",
            dtype,
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(
            tensors_of(&dir),
            tensors_of(one.parent().unwrap()),
            "{dtype}: shards equal the single file"
        );
        load(&dir).expect("the shards load");
    }
}

#[test]
fn convert_refuses_shard_folders_that_would_lose_data() {
    let single = fixtures().join("models/tiny-k1");
    let out = tempfile::tempdir().unwrap();
    // Into the model's own folder: the shards would sit beside what the run reads.
    let copy = out.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(single.join(name), copy.join(name)).unwrap();
    }
    let before = std::fs::read(copy.join("model.safetensors")).unwrap();
    let run = seggpt(&[
        "convert",
        "--model",
        copy.to_str().unwrap(),
        "--output",
        copy.to_str().unwrap(),
        "--shard-size",
        "40KB",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("holds the model this run reads"), "{stderr}");
    assert_eq!(std::fs::read(copy.join("model.safetensors")).unwrap(), before);
    assert_eq!(std::fs::read_dir(&copy).unwrap().count(), 2, "nothing written");
    // Into a folder with a model.safetensors, which readers would take before the shards.
    let other = out.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("model.safetensors"), b"old").unwrap();
    let run = seggpt(&[
        "convert",
        "--model",
        single.to_str().unwrap(),
        "--output",
        other.to_str().unwrap(),
        "--shard-size",
        "40KB",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("readers take before shards"), "{stderr}");
    assert_eq!(std::fs::read(other.join("model.safetensors")).unwrap(), b"old");
    // A size that is not one.
    let run = seggpt(&[
        "convert",
        "--model",
        single.to_str().unwrap(),
        "--output",
        out.path().join("x").to_str().unwrap(),
        "--shard-size",
        "lots",
    ]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("a size such as 90MB"));
    assert!(!out.path().join("x").exists(), "no folder made for a refused size");
}
