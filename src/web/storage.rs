//! The model cache in the Origin Private File System (worker only: it writes through sync access
//! handles). One directory per weights URL under `models/`: `config.json`, `model.safetensors`,
//! and `meta.json`, written last: its presence marks the copy complete, and it keeps the server's
//! validators (ETag, Last-Modified) to ask later whether the copy is still current. A directory
//! without it is a partial download and is removed.

use js_sys::{Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, File, FileReaderSync, FileSystemDirectoryHandle, FileSystemFileHandle,
    FileSystemGetDirectoryOptions, FileSystemGetFileOptions, FileSystemReadWriteOptions,
    FileSystemRemoveOptions, FileSystemSyncAccessHandle, StorageEstimate, StorageManager,
};

use super::js_text;
use crate::model_fetch::Validators;

const MODELS: &str = "models";

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    url: String,
    bytes: u64,
    /// What the server said about the version it sent (absent in copies stored before).
    #[serde(default)]
    validators: Validators,
}

/// A complete cached copy.
pub struct Cached {
    pub config_json: Option<String>,
    pub weights: File,
    pub validators: Validators,
}

fn storage() -> StorageManager {
    super::worker_scope().navigator().storage()
}

async fn wait(promise: Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(|e| js_text(&e))
}

/// The directory for cache entries; `None` if this browser has no OPFS here.
async fn models_dir(create: bool) -> Result<Option<FileSystemDirectoryHandle>, String> {
    let Ok(root) = wait(storage().get_directory()).await else { return Ok(None) };
    let root: FileSystemDirectoryHandle = root.unchecked_into();
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(create);
    match JsFuture::from(root.get_directory_handle_with_options(MODELS, &options)).await {
        Ok(dir) => Ok(Some(dir.unchecked_into())),
        Err(_) if !create => Ok(None),
        Err(err) => Err(js_text(&err)),
    }
}

/// Stable directory name for a URL (FNV-1a 64).
pub fn key(url: &str) -> String {
    let hash = crate::fnv::fnv1a64(url.as_bytes());
    format!("m-{hash:016x}")
}

async fn file_handle(
    dir: &FileSystemDirectoryHandle,
    name: &str,
    create: bool,
) -> Result<FileSystemFileHandle, String> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(create);
    Ok(wait(dir.get_file_handle_with_options(name, &options)).await?.unchecked_into())
}

async fn read_text(dir: &FileSystemDirectoryHandle, name: &str) -> Result<String, String> {
    let file: File = wait(file_handle(dir, name, false).await?.get_file()).await?.unchecked_into();
    FileReaderSync::new().and_then(|r| r.read_as_text(&file)).map_err(|e| js_text(&e))
}

async fn write_small(dir: &FileSystemDirectoryHandle, name: &str, bytes: &[u8]) -> Result<(), String> {
    let handle: FileSystemSyncAccessHandle =
        wait(file_handle(dir, name, true).await?.create_sync_access_handle()).await?.unchecked_into();
    let result = (|| {
        handle.truncate_with_u32(0)?;
        let options = FileSystemReadWriteOptions::new();
        options.set_at(0.0);
        handle.write_with_js_u8_array_and_options(&Uint8Array::from(bytes), &options)?;
        handle.flush()
    })();
    handle.close();
    result.map_err(|e| js_text(&e))
}

/// The complete cached copy of `url`, if there is one; a partial one is removed.
pub async fn lookup(url: &str) -> Result<Option<Cached>, String> {
    let Some(models) = models_dir(false).await? else { return Ok(None) };
    let name = key(url);
    let Ok(dir) = JsFuture::from(models.get_directory_handle(&name)).await else { return Ok(None) };
    let dir: FileSystemDirectoryHandle = dir.unchecked_into();
    let meta: Option<Meta> =
        read_text(&dir, "meta.json").await.ok().and_then(|t| serde_json::from_str(&t).ok());
    let weights = match meta {
        Some(meta) if meta.url == url => {
            let file: File =
                wait(file_handle(&dir, "model.safetensors", false).await?.get_file()).await?.unchecked_into();
            let validators = Validators { bytes: Some(meta.bytes), ..meta.validators };
            (file.size() as u64 == meta.bytes).then_some((file, validators))
        }
        _ => None,
    };
    match weights {
        Some((weights, validators)) => {
            Ok(Some(Cached { config_json: read_text(&dir, "config.json").await.ok(), weights, validators }))
        }
        None => {
            remove(&models, &name).await;
            Ok(None)
        }
    }
}

/// A small file kept under its URL (a shard index), and what the server said of its version.
pub async fn lookup_text(url: &str) -> Option<(String, Validators)> {
    let models = models_dir(false).await.ok()??;
    let dir: FileSystemDirectoryHandle =
        JsFuture::from(models.get_directory_handle(&key(url))).await.ok()?.unchecked_into();
    let meta: Meta = serde_json::from_str(&read_text(&dir, "meta.json").await.ok()?).ok()?;
    let text = read_text(&dir, "text").await.ok()?;
    (meta.url == url && text.len() as u64 == meta.bytes).then_some((text, meta.validators))
}

/// Keeps a small file under its URL, the completion mark written last.
pub async fn store_text(url: &str, text: &str, validators: Validators) -> Result<(), String> {
    let (_, _, dir) = fresh_entry(url).await?;
    write_small(&dir, "text", text.as_bytes()).await?;
    let meta = Meta { url: url.to_string(), bytes: text.len() as u64, validators };
    write_small(&dir, "meta.json", serde_json::to_string(&meta).unwrap_or_default().as_bytes()).await
}

/// An empty entry for `url` (any old copy removed first): the models directory, the entry's name
/// and its directory.
async fn fresh_entry(
    url: &str,
) -> Result<(FileSystemDirectoryHandle, String, FileSystemDirectoryHandle), String> {
    let models = models_dir(true).await?.ok_or("this browser offers no file system storage here")?;
    let name = key(url);
    remove(&models, &name).await;
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    let dir: FileSystemDirectoryHandle =
        wait(models.get_directory_handle_with_options(&name, &options)).await?.unchecked_into();
    Ok((models, name, dir))
}

/// Removes the copy of `url` (a stale or damaged one), if any.
pub async fn remove_entry(url: &str) {
    if let Ok(Some(models)) = models_dir(false).await {
        remove(&models, &key(url)).await;
    }
}

async fn remove(models: &FileSystemDirectoryHandle, name: &str) {
    let options = FileSystemRemoveOptions::new();
    options.set_recursive(true);
    let _ = JsFuture::from(models.remove_entry_with_options(name, &options)).await;
}

/// Free bytes the browser grants this origin (quota - usage), if it says.
pub async fn free_bytes() -> Option<f64> {
    let estimate: StorageEstimate = wait(storage().estimate().ok()?).await.ok()?.unchecked_into();
    Some(estimate.get_quota()? - estimate.get_usage().unwrap_or(0.0))
}

/// Removes every cached model (nothing cached is not an error).
pub async fn clear() -> Result<(), String> {
    let Some(root) = wait(storage().get_directory()).await.ok() else { return Ok(()) };
    let root: FileSystemDirectoryHandle = root.unchecked_into();
    let options = FileSystemRemoveOptions::new();
    options.set_recursive(true);
    match JsFuture::from(root.remove_entry_with_options(MODELS, &options)).await {
        Ok(_) => Ok(()),
        // NotFoundError: nothing cached.
        Err(err)
            if js_sys::Reflect::get(&err, &"name".into()).ok().and_then(|n| n.as_string()).as_deref()
                == Some("NotFoundError") =>
        {
            Ok(())
        }
        Err(err) => Err(js_text(&err)),
    }
}

/// A cache entry being written, chunk by chunk, straight from the network.
pub struct Writer {
    models: FileSystemDirectoryHandle,
    dir: FileSystemDirectoryHandle,
    name: String,
    weights: FileSystemFileHandle,
    handle: FileSystemSyncAccessHandle,
    offset: f64,
}

impl Writer {
    pub async fn create(url: &str) -> Result<Self, String> {
        let (models, name, dir) = fresh_entry(url).await?;
        let weights = file_handle(&dir, "model.safetensors", true).await?;
        let handle: FileSystemSyncAccessHandle =
            wait(weights.create_sync_access_handle()).await?.unchecked_into();
        Ok(Self { models, dir, name, weights, handle, offset: 0.0 })
    }

    /// Appends `chunk` (a QuotaExceededError comes back as an error text).
    pub fn write(&mut self, chunk: &Uint8Array) -> Result<(), String> {
        let options = FileSystemReadWriteOptions::new();
        options.set_at(self.offset);
        let written =
            self.handle.write_with_js_u8_array_and_options(chunk, &options).map_err(|e| js_text(&e))?;
        if written as u32 != chunk.length() {
            return Err(format!("the browser stored {written} of {} bytes (storage full?)", chunk.length()));
        }
        self.offset += written;
        Ok(())
    }

    /// Closes the weights file, writes `config.json` (if any) and the completion mark with the
    /// server's `validators`; returns the stored, disk-backed file.
    pub async fn finish(
        self,
        url: &str,
        config_json: Option<&str>,
        validators: Validators,
    ) -> Result<File, String> {
        let flushed = self.handle.flush().map_err(|e| js_text(&e));
        self.handle.close();
        let result = async {
            flushed?;
            if let Some(text) = config_json {
                write_small(&self.dir, "config.json", text.as_bytes()).await?;
            }
            let meta = Meta { url: url.to_string(), bytes: self.offset as u64, validators };
            write_small(&self.dir, "meta.json", serde_json::to_string(&meta).unwrap_or_default().as_bytes())
                .await?;
            Ok::<File, String>(wait(self.weights.get_file()).await?.unchecked_into())
        }
        .await;
        if result.is_err() {
            remove(&self.models, &self.name).await;
        }
        result
    }

    /// Stops storing: closes the file and returns what was written, as a Blob. The entry stays
    /// incomplete (no `meta.json`), so the next lookup removes it.
    pub async fn into_partial(self) -> Result<Blob, String> {
        let _ = self.handle.flush();
        self.handle.close();
        let file: File = wait(self.weights.get_file()).await?.unchecked_into();
        file.slice_with_f64_and_f64(0.0, self.offset).map_err(|e| js_text(&e))
    }

    /// Gives up: closes and removes the partial entry.
    pub async fn abandon(self) {
        self.handle.close();
        remove(&self.models, &self.name).await;
    }
}
