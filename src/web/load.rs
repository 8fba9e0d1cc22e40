//! Getting the weights into the worker without holding the file in wasm memory: a streamed
//! download that is checked against the config as soon as the safetensors header has arrived and
//! written chunk by chunk to browser storage (or kept as a JS Blob when storage is short), then a
//! [`BlobSource`] that reads one tensor at a time from that Blob, a cached copy or a picked file.

use std::collections::BTreeSet;

use js_sys::{Array, Float32Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, FileReaderSync, ReadableStreamDefaultReader, ReadableStreamReadResult, RequestCache, RequestInit,
    Response,
};

use super::storage::{self, Writer};
use super::{js_text, now_s};
use crate::SegGptConfig;
use crate::model_fetch::{FetchError, Validators};
use crate::sam::SamConfig;
use crate::weights::{LoadError, SafetensorsHeader, TensorSource};

/// What a safetensors header must agree with: the whole model, or one shard of it (the tensors the
/// index maps to it, each as the model needs it).
#[derive(Clone, Copy)]
pub enum HeaderCheck<'a> {
    Whole(&'a SegGptConfig),
    Shard(&'a SegGptConfig, &'a BTreeSet<String>),
    /// A SAM checkpoint (click to select).
    Sam(&'a SamConfig),
}

impl HeaderCheck<'_> {
    fn check(&self, header: &SafetensorsHeader) -> Result<(), LoadError> {
        match self {
            HeaderCheck::Whole(config) => header.check_against(config),
            HeaderCheck::Shard(config, names) => header.check_shard(config, names),
            HeaderCheck::Sam(config) => {
                crate::sam::check_names(header.names(), |name| header.shape(name), config)?;
                header.check_dtypes()
            }
        }
    }
}

/// A safetensors file behind a JS `Blob` (an OPFS file, a picked file or downloaded chunks).
pub struct BlobSource {
    blob: Blob,
    reader: FileReaderSync,
    header: SafetensorsHeader,
}

impl BlobSource {
    /// Reads and checks the header: the file must be exactly as long as it declares and hold
    /// exactly the tensors `check` asks for.
    pub fn open(blob: Blob, check: HeaderCheck) -> Result<Self, LoadError> {
        let reader = FileReaderSync::new().map_err(|e| LoadError::NotSafetensors(js_text(&e)))?;
        let read = |start: f64, end: f64| -> Result<Vec<u8>, LoadError> {
            let part = blob.slice_with_f64_and_f64(start, end).map_err(|e| read_error("the header", &e))?;
            let buffer = reader.read_as_array_buffer(&part).map_err(|e| read_error("the header", &e))?;
            Ok(Uint8Array::new(&buffer).to_vec())
        };
        let need = SafetensorsHeader::prefix_len(&read(0.0, 8.0)?)?;
        let header = SafetensorsHeader::parse(&read(0.0, need as f64)?)?;
        header.check_len(blob.size() as u64)?;
        check.check(&header)?;
        Ok(Self { blob, reader, header })
    }
}

impl BlobSource {
    /// The file's size in bytes.
    pub fn size(&self) -> f64 {
        self.blob.size()
    }
}

fn read_error(what: &str, err: &JsValue) -> LoadError {
    LoadError::NotSafetensors(format!("reading {what} from the file failed: {}", js_text(err)))
}

impl TensorSource for BlobSource {
    fn names(&self) -> Vec<String> {
        self.header.names()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.header.shape(name)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let entry = self.header.entry(name)?;
        let what = format!("tensor `{name}`");
        let read = |range: &std::ops::Range<u64>| {
            let part = self
                .blob
                .slice_with_f64_and_f64(range.start as f64, range.end as f64)
                .map_err(|e| read_error(&what, &e))?;
            self.reader.read_as_array_buffer(&part).map_err(|e| read_error(&what, &e))
        };
        let buffer = read(&entry.range)?;
        if entry.dtype == "F32" {
            // Straight from the JS buffer into f32s (little-endian, like every WebGPU platform).
            return Ok(Float32Array::new(&buffer).to_vec());
        }
        // An int8 tensor of a q8 file is widened here with its scales, before upload.
        let scales = entry
            .scale
            .as_ref()
            .map(|range| read(range).map(|b| Uint8Array::new(&b).to_vec()))
            .transpose()?;
        entry.decode(name, &Uint8Array::new(&buffer).to_vec(), scales.as_deref())
    }
}

type Fetch = FetchError;

async fn request(url: &str, method: &str) -> Result<Response, Fetch> {
    let network = |e: JsValue| Fetch::Network(js_text(&e));
    let init = RequestInit::new();
    init.set_method(method);
    // Always the server's answer: a cached one would hide a new version, and the weights are kept in
    // browser storage, where an HTTP cache copy would only be a second 1.5 GB.
    init.set_cache(RequestCache::NoStore);
    let response = super::worker_scope().fetch_with_str_and_init(url, &init);
    Ok(JsFuture::from(response).await.map_err(network)?.unchecked_into())
}

async fn response(url: &str) -> Result<Response, Fetch> {
    let response = request(url, "GET").await?;
    if !response.ok() {
        return Err(Fetch::Status(response.status()));
    }
    Ok(response)
}

/// The version information of a response (`ETag`, `Last-Modified`, `Content-Length`).
fn validators(response: &Response) -> Validators {
    let header = |name: &str| response.headers().get(name).ok().flatten();
    Validators {
        etag: header("etag"),
        last_modified: header("last-modified"),
        bytes: header("content-length").and_then(|v| v.parse().ok()),
    }
}

/// Asks the server (`HEAD`, which needs no CORS preflight) for the current version of `url`:
/// its status and validators, or why no answer came.
pub async fn head(url: &str) -> Result<(u16, Validators), String> {
    match request(url, "HEAD").await {
        Ok(response) => Ok((response.status(), validators(&response))),
        Err(Fetch::Network(why)) => Err(why),
        Err(other) => Err(other.describe(url)),
    }
}

/// A small file (config.json) as text.
pub async fn fetch_text(url: &str) -> Result<String, Fetch> {
    fetch_text_version(url).await.map(|(text, _)| text)
}

/// A small file as text, with the validators of the version the server sent.
pub async fn fetch_text_version(url: &str) -> Result<(String, Validators), Fetch> {
    let response = response(url).await?;
    let version = validators(&response);
    let text = JsFuture::from(response.text().map_err(|e| Fetch::Network(js_text(&e)))?)
        .await
        .map_err(|e| Fetch::Network(js_text(&e)))?;
    Ok((text.as_string().ok_or_else(|| Fetch::Network("the body is not text".into()))?, version))
}

/// Where downloaded bytes go.
enum Sink {
    Storage(Writer),
    Memory(Array),
}

/// Progress of a download, for the page.
pub struct Progress {
    pub done: f64,
    pub total: f64,
    pub bytes_per_s: f64,
}

/// The downloaded weights: a Blob to read tensors from, and whether it is in browser storage.
pub struct Downloaded {
    pub source: BlobSource,
    pub stored: bool,
    /// Why it was not stored, when it was not.
    pub note: Option<String>,
}

/// Streams `url`: reads the header first and checks it against `config` (so a wrong or corrupt file
/// fails after a few kilobytes, naming the tensor), then writes every chunk to browser storage, or
/// keeps it in a JS Blob when storage is short or unavailable, or `store` is false. Never copies the
/// data into wasm.
pub async fn download(
    url: &str,
    check: HeaderCheck<'_>,
    config_json: Option<&str>,
    store: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Downloaded, Fetch> {
    let response = response(url).await?;
    let version = validators(&response);
    let body = response.body().ok_or_else(|| Fetch::Network("the response has no body".into()))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let header_total =
        response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<f64>().ok());

    let mut prefix: Vec<u8> = Vec::new();
    let mut pending: Vec<Uint8Array> = Vec::new();
    let mut header: Option<SafetensorsHeader> = None;
    let mut sink: Option<Sink> = None;
    let mut note = None;
    let mut done = 0.0f64;
    let (start, mut last_report) = (now_s(), 0.0f64);
    let result: Result<(), Fetch> = async {
        loop {
            let chunk: ReadableStreamReadResult = JsFuture::from(reader.read())
                .await
                .map_err(|e| Fetch::Network(js_text(&e)))?
                .unchecked_into();
            if chunk.get_done().unwrap_or(false) {
                break;
            }
            let chunk: Uint8Array = chunk.get_value().unchecked_into();
            done += f64::from(chunk.length());
            match &mut sink {
                Some(_) => write_to(&mut sink, &chunk, &mut note).await?,
                None => {
                    pending.push(chunk.clone());
                    prefix.extend(chunk.to_vec());
                    let need = SafetensorsHeader::prefix_len(&prefix).ok();
                    if prefix.len() < 8 || need.is_some_and(|n| (prefix.len() as u64) < n) {
                        continue;
                    }
                    let parsed = SafetensorsHeader::parse(&prefix).map_err(Fetch::Invalid)?;
                    check.check(&parsed).map_err(Fetch::Invalid)?;
                    let (target, why_not) = if store {
                        choose_sink(url, parsed.file_len).await
                    } else {
                        let why = "not kept in browser storage (?cache=off): it is downloaded on every visit";
                        (Sink::Memory(Array::new()), Some(why.to_string()))
                    };
                    note = why_not;
                    // The sink is in place before anything is written, so a failure cleans it up.
                    sink = Some(target);
                    header = Some(parsed);
                    prefix = Vec::new();
                    for part in std::mem::take(&mut pending) {
                        write_to(&mut sink, &part, &mut note).await?;
                    }
                }
            }
            let total = header.as_ref().map(|h| h.file_len as f64).or(header_total).unwrap_or(0.0);
            if total > 0.0 && done > total {
                return Err(Fetch::Invalid(LoadError::NotSafetensors(format!(
                    "the download is longer than the {total} bytes its header declares: it is corrupt"
                ))));
            }
            let now = now_s();
            if now - last_report > 0.1 {
                last_report = now;
                progress(&Progress { done, total, bytes_per_s: done / (now - start).max(1e-3) });
            }
        }
        Ok(())
    }
    .await;

    let finish = async {
        result?;
        let header = match header {
            Some(header) => header,
            None => {
                // The whole body was shorter than its header.
                SafetensorsHeader::prefix_len(&prefix).map_err(Fetch::Invalid)?;
                return Err(Fetch::Invalid(
                    SafetensorsHeader::parse(&prefix)
                        .err()
                        .unwrap_or_else(|| LoadError::NotSafetensors("the download ended early".into())),
                ));
            }
        };
        header.check_len(done as u64).map_err(Fetch::Invalid)?;
        Ok(header)
    };
    let header = match finish.await {
        Ok(header) => header,
        Err(err) => {
            let _ = JsFuture::from(reader.cancel()).await;
            if let Some(Sink::Storage(writer)) = sink {
                writer.abandon().await;
            }
            return Err(err);
        }
    };
    let (blob, stored): (Blob, bool) = match sink {
        Some(Sink::Storage(writer)) => {
            (writer.finish(url, config_json, version).await.map_err(Fetch::Storage)?.unchecked_into(), true)
        }
        Some(Sink::Memory(parts)) => {
            let blob = Blob::new_with_u8_array_sequence(&parts).map_err(|e| Fetch::Storage(js_text(&e)))?;
            // The Blob holds the bytes now: let the chunks go at once rather than at return.
            parts.set_length(0);
            (blob, false)
        }
        None => unreachable!("a header implies a sink"),
    };
    let source =
        BlobSource { blob, reader: FileReaderSync::new().map_err(|e| Fetch::Storage(js_text(&e)))?, header };
    Ok(Downloaded { source, stored, note })
}

/// Appends `chunk` to the sink. When browser storage fails part-way (quota), what it holds becomes the
/// first part of an in-memory Blob and the download goes on in memory, with a note saying so.
async fn write_to(
    sink: &mut Option<Sink>,
    chunk: &Uint8Array,
    note: &mut Option<String>,
) -> Result<(), Fetch> {
    match sink {
        Some(Sink::Memory(parts)) => {
            parts.push(chunk);
        }
        Some(Sink::Storage(writer)) => {
            if let Err(why) = writer.write(chunk) {
                let Some(Sink::Storage(writer)) = sink.take() else { return Ok(()) };
                let stored = writer.into_partial().await.map_err(Fetch::Storage)?;
                let parts = Array::of2(&stored, chunk);
                *note = Some(format!(
                    "browser storage ran out during the download ({why}): the model is kept in memory and \
                     will be downloaded again next time"
                ));
                *sink = Some(Sink::Memory(parts));
            }
        }
        None => {}
    }
    Ok(())
}

/// Browser storage if the quota allows the whole file (plus a margin), else memory, with the reason.
async fn choose_sink(url: &str, bytes: u64) -> (Sink, Option<String>) {
    const MARGIN: f64 = 64e6;
    let mb = |b: f64| (b / 1e6).round();
    match storage::free_bytes().await {
        Some(free) if free < bytes as f64 + MARGIN => {
            let why = format!(
                "browser storage has {} MB free, the model needs {} MB: it is kept in memory and will be \
                 downloaded again next time",
                mb(free),
                mb(bytes as f64)
            );
            return (Sink::Memory(Array::new()), Some(why));
        }
        _ => {}
    }
    match Writer::create(url).await {
        Ok(writer) => (Sink::Storage(writer), None),
        Err(why) => (
            Sink::Memory(Array::new()),
            Some(format!("browser storage is not available ({why}): the model is kept in memory")),
        ),
    }
}
