//! A model in shards (docs/MODEL.md §26): `model.safetensors.index.json` and the files it names,
//! for hosts that cap a file's size. The index is kept in browser storage beside the shards; each
//! shard is its own stored copy, revalidated on its own, so a reload fetches only a shard that
//! changed or is missing.

use super::{Engine, Loaded, check_fits, parse_config, progress, size_text, to_device};
use crate::SegGptConfig;
use crate::model_fetch::{self, FetchError, Freshness, ModelUrls, OFFLINE_NOTE};
use crate::web::load::{self, BlobSource, HeaderCheck, Progress};
use crate::web::storage;
use crate::weights::{MAX_INDEX_BYTES, ShardIndex, ShardedSource, TensorSource, check_layout};

/// The index of the model at `urls`, when it is sharded: from the server, or, when the server
/// cannot be reached, the stored copy. `Ok(None)`: the directory has no index.
pub async fn index(urls: &ModelUrls, cache: bool) -> Result<Option<(ShardIndex, bool)>, String> {
    let Some(url) = &urls.index else { return Ok(None) };
    match load::fetch_text_version(url).await {
        Ok((text, version)) => {
            if text.len() as u64 > MAX_INDEX_BYTES {
                return Err(format!("{url}: {} bytes is too large for a shard index", text.len()));
            }
            let index = ShardIndex::parse(&text, url).map_err(|e| e.to_string())?;
            if cache {
                // Without the stored index the stored shards could not be found offline; a failure
                // to keep it only costs that.
                let _ = storage::store_text(url, &text, version).await;
            }
            Ok(Some((index, false)))
        }
        Err(FetchError::Status(404)) => Ok(None),
        Err(FetchError::Network(why)) => match storage::lookup_text(url).await {
            Some((text, _)) => Ok(Some((ShardIndex::parse(&text, url).map_err(|e| e.to_string())?, true))),
            None => Err(FetchError::Network(why).describe(url)),
        },
        Err(err) => Err(err.describe(url)),
    }
}

/// Whether every shard of a stored index is in browser storage, and their size.
pub async fn stored_size(urls: &ModelUrls) -> Option<f64> {
    let (text, _) = storage::lookup_text(urls.index.as_ref()?).await?;
    let index = ShardIndex::parse(&text, "").ok()?;
    let mut total = 0.0;
    for file in index.shard_files() {
        total += storage::lookup(&urls.beside(&file)).await.ok()??.weights.size();
    }
    Some(total)
}

/// Loads every shard (stored and current, or downloaded) and the model from them.
pub async fn load(
    urls: &ModelUrls,
    index: ShardIndex,
    offline: bool,
    cache: bool,
    engine: Engine,
) -> Result<(Loaded, String), String> {
    let (config, config_json) = config(urls, offline).await?;
    check_fits(&config, &engine)?;
    let files = index.shard_files();
    let total = index.total_size().map_or(0.0, |b| b as f64);
    let (mut done_before, mut downloaded) = (0.0, 0usize);
    let mut shards: Vec<(String, Box<dyn TensorSource>)> = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let url = urls.beside(file);
        let names = index.tensors_of(file);
        let check = HeaderCheck::Shard(&config, &names);
        let source = match stored_shard(&url, check, cache, offline).await {
            Some(source) => source,
            None => {
                let mut report = |p: &Progress| {
                    let text = format!(
                        "downloading shard {} of {} ({file}): {}, {}/s",
                        i + 1,
                        files.len(),
                        size_text(done_before + p.done),
                        size_text(p.bytes_per_s)
                    );
                    progress(text, done_before + p.done, total.max(done_before + p.total));
                };
                downloaded += 1;
                let got = load::download(&url, check, config_json.as_deref(), cache, &mut report)
                    .await
                    .map_err(|e| e.describe(&url))?;
                got.source
            }
        };
        done_before += source.size();
        shards.push((file.clone(), Box::new(source)));
    }
    let source = ShardedSource::from_shards(&index, shards).map_err(|e| e.to_string())?;
    check_layout(source.names(), |name| source.shape(name), &config).map_err(|e| e.to_string())?;
    let model = to_device(&source, config, &engine)
        .map_err(|e| format!("{}: {e}", urls.index.as_deref().unwrap_or("")))?;
    let note = match (downloaded, offline) {
        (_, true) => OFFLINE_NOTE.to_string(),
        (0, false) => format!("loaded from browser storage, no download ({} shards)", files.len()),
        (n, false) if cache => {
            format!("downloaded {n} of {} shards and kept them in browser storage for next time", files.len())
        }
        (n, false) => format!("downloaded {n} shards, kept in memory"),
    };
    Ok((Loaded { model, engine }, note))
}

/// The config: from the server, or offline from a stored shard's copy.
async fn config(urls: &ModelUrls, offline: bool) -> Result<(SegGptConfig, Option<String>), String> {
    if !offline {
        progress(format!("fetching {} ...", urls.config), 0.0, 0.0);
        let text = load::fetch_text(&urls.config).await.map_err(|e| e.describe(&urls.config))?;
        return Ok((parse_config(&text, &urls.config)?, Some(text)));
    }
    let Some(index_url) = &urls.index else { return Err("no shard index".into()) };
    let (text, _) = storage::lookup_text(index_url).await.ok_or("the shard index is not stored")?;
    let index = ShardIndex::parse(&text, index_url).map_err(|e| e.to_string())?;
    for file in index.shard_files() {
        if let Ok(Some(cached)) = storage::lookup(&urls.beside(&file)).await
            && let Some(text) = cached.config_json
        {
            return Ok((parse_config(&text, &urls.config)?, Some(text)));
        }
    }
    Err(format!("{}: the server cannot be reached and no stored shard holds the config", urls.config))
}

/// A stored shard that is current (the server says so, or cannot be asked) and whose header
/// agrees with the index; a stale or damaged one is removed.
async fn stored_shard(url: &str, check: HeaderCheck<'_>, cache: bool, offline: bool) -> Option<BlobSource> {
    if !cache {
        return None;
    }
    let cached = storage::lookup(url).await.ok().flatten()?;
    let current = offline
        || match model_fetch::freshness(&cached.validators, load::head(url).await) {
            Freshness::Changed => false,
            Freshness::Current { .. } | Freshness::Offline => true,
        };
    let source = if current { BlobSource::open(cached.weights.into(), check).ok() } else { None };
    if source.is_none() {
        storage::remove_entry(url).await;
    }
    source
}
