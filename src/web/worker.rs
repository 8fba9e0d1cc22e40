//! The worker side: WebGPU probe and device, model download / cache / load, segmentation.

mod sam;
mod shards;
mod tune;

use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, FloatDType};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Blob, DedicatedWorkerGlobalScope, File, FileReaderSync, MessageEvent, Url};

use super::load::{self, BlobSource, HeaderCheck, Progress};
use super::protocol::{
    self, DeviceChoice, FrameInput, MaskFile, ModelFiles, ModelSource, PromptFiles, ResultBuffers,
    RunOptions, SegmentFiles, ToPage, ToWorker, VideoSettings,
};
use super::storage::{self, Cached};
use super::worker_bench;
use super::{js_text, now_s, size_text};
use crate::bench::BenchReport;
use crate::model_fetch::{self, FetchError, Freshness, ModelUrls, OFFLINE_NOTE, model_urls};
use crate::paint::{inferred_num_classes, mask_colours, nearest_colour_labels};
use crate::pipeline::{ClassMap, InputError, RgbImage, decode_class_map, decode_rgb};
use crate::segment::{Prompt, PromptMask, Segmentation, Segmenter, Target, Tiling};
use crate::video::{Propagator, VideoOptions, max_cached_frames};
use crate::weights::{LoadError, TensorSource};
use crate::{
    AttentionKernel, ForwardOptions, MemoryBudget, SegGpt, SegGptConfig, largest_buffer_bytes, max_prompts,
};

/// Why `?device=webgpu` cannot run (without it, the CPU runs the model where WebGPU cannot).
const NO_WEBGPU: &str = "This browser does not offer WebGPU, which the page's address asks for \
    (?device=webgpu; without it, the model runs on the CPU). Use a browser with WebGPU: Chrome or Edge 113+ \
    on desktop, Safari 26+, or Firefox 141+ on Windows (on Linux, Chrome needs \
    chrome://flags/#enable-unsafe-webgpu).";
const NO_ADAPTER: &str = "This browser has WebGPU but offers no GPU adapter for it (WebGPU is off, or the \
    GPU is blocklisted), and the page's address asks for WebGPU (?device=webgpu; without it, the model runs \
    on the CPU). Chrome or Edge 113+ on desktop, Safari 26+ and Firefox 141+ on Windows have it on; on \
    Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu (chrome://gpu shows the WebGPU status).";

/// Why a software WebGPU adapter is passed over (`?device=webgpu` takes it).
const SOFTWARE_ADAPTER: &str = "This browser's only WebGPU adapter is a software one, slower than the CPU \
    path (?device=webgpu uses it anyway)";

/// What the page calls the CPU device.
const CPU_NAME: &str = "the CPU: WebAssembly SIMD, one thread";

/// The largest buffer the CPU device gives one tensor. wasm32 addresses 4 GiB at most, and that
/// memory holds the weights (1.48 GB for the released model in f32) and every activation besides,
/// so one buffer gets a quarter of it.
const CPU_MAX_BUFFER: u64 = 1 << 30;

/// Where the model runs: burn's device (WebGPU, or burn's CPU backend compiled to wasm), and what it
/// allows.
#[derive(Clone)]
struct Engine {
    device: Device,
    /// The GPU adapter's name, or [`CPU_NAME`].
    name: String,
    /// The largest buffer of one tensor: the GPU's `maxStorageBufferBindingSize` (cubecl requests
    /// the adapter's full limits), or [`CPU_MAX_BUFFER`].
    max_binding: u64,
    /// `f16` or `f32`: the device's float type.
    dtype: &'static str,
    /// Why the model runs on the CPU, for the page (`None` on a GPU).
    cpu_reason: Option<&'static str>,
}

struct Loaded {
    model: SegGpt,
    engine: Engine,
}

thread_local! {
    /// The runtime can be initialised once per wasm instance, so the device outlives failed loads.
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static MODEL: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
}

#[cfg(feature = "test-hooks")]
thread_local! {
    /// Set by `DebugPanic`: the next run panics at its first target (tests the restart path).
    static PANIC_IN_NEXT_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Entry point of `www/worker.js`: installs the message handler, then tells the page it listens.
#[wasm_bindgen]
pub fn run_worker() {
    std::panic::set_hook(Box::new(|info| {
        // A panic aborts and poisons the instance: tell the page first, so it can restart us.
        // The payload is the readable part; the location goes to the console with the hook below.
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| info.to_string());
        post(&ToPage::Fatal { message: fatal_message(&text) });
        console_error_panic_hook::hook(info);
    }));
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| enqueue(event.data()));
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    onmessage.forget();
    post(&ToPage::Started);
}

/// Messages not yet handled, and whether a task is handling them.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<JsValue>,
    busy: bool,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::default();
    /// Resolves the promise a video session waits on for its next message ([`next_queued`]).
    static WAKE: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Queues a message; starts the one task that handles messages, one after the other, unless it
/// runs already. (A task per message would interleave them at every `await`: a `ClearCache` would
/// remove the file a `Load` is writing.)
fn enqueue(data: JsValue) {
    let start = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        q.waiting.push_back(data);
        !std::mem::replace(&mut q.busy, true)
    });
    if let Some(wake) = WAKE.with(|w| w.borrow_mut().take()) {
        let _ = wake.call0(&JsValue::NULL);
    }
    if start {
        spawn_local(async {
            while let Some(data) = QUEUE.with(|q| {
                let mut q = q.borrow_mut();
                let next = q.waiting.pop_front();
                q.busy = next.is_some();
                next
            }) {
                handle(data).await;
            }
        });
    }
}

/// The next message, for a video session, which handles its frames inside the one task that
/// handles messages (so they stay in order with everything else); waits for one if none is queued.
async fn next_queued() -> JsValue {
    loop {
        if let Some(data) = QUEUE.with(|q| q.borrow_mut().waiting.pop_front()) {
            return data;
        }
        let arrived = Promise::new(&mut |resolve, _| WAKE.with(|w| *w.borrow_mut() = Some(resolve)));
        let _ = JsFuture::from(arrived).await;
    }
}

/// Puts back a message a video session took but does not handle (it ended the session): it is
/// handled next, in its place.
fn requeue_first(data: JsValue) {
    QUEUE.with(|q| q.borrow_mut().waiting.push_front(data));
}

/// The text for a panic: GPU out-of-memory and device loss get a plain explanation.
fn fatal_message(panic: &str) -> String {
    let lower = panic.to_lowercase();
    if lower.contains("out of memory") || lower.contains("outofmemory") {
        format!(
            "The GPU ran out of memory. Close other tabs or programs that use the GPU, or use fewer \
             prompts, then retry. ({panic})"
        )
    } else if lower.contains("device lost") || lower.contains("devicelost") || lower.contains("poison") {
        format!("The GPU device was lost (driver reset or GPU busy elsewhere); retry. ({panic})")
    } else {
        format!("The model worker crashed: {panic}")
    }
}

/// Lets the worker's event loop run once (a zero-delay timer), so that messages the page sent
/// meanwhile are received and queued. A long loop inside one message's handling needs it: on the
/// CPU a step's futures complete without ever waiting, and Stop would not arrive before the loop
/// ended. On WebGPU the read-backs already wait; the timer then adds about a millisecond.
async fn next_task() {
    let timer = Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = JsFuture::from(timer).await;
}

fn scope() -> DedicatedWorkerGlobalScope {
    super::worker_scope().unchecked_into()
}

/// Posts `msg` (no attachments).
fn post(msg: &ToPage) {
    post_with(msg, |_| Array::new());
}

/// Posts `msg` with the fields `attach` adds; `attach` returns the buffers to transfer.
fn post_with(msg: &ToPage, attach: impl FnOnce(&Object) -> Array) {
    let envelope = match protocol::envelope(msg) {
        Ok(envelope) => envelope,
        Err(why) => return web_sys::console::error_1(&why.into()),
    };
    let transfer = attach(&envelope);
    if let Err(err) = scope().post_message_with_transfer(&envelope, &transfer) {
        web_sys::console::error_1(&err);
    }
}

fn progress(text: impl Into<String>, done: f64, total: f64) {
    post(&ToPage::Progress { text: text.into(), done, total });
}

fn error(message: String, index: Option<usize>) {
    post(&ToPage::Error { message, index });
}

async fn handle(data: JsValue) {
    let msg: ToWorker = match protocol::message(&data) {
        Ok(msg) => msg,
        Err(why) => return error(format!("the worker got a message it does not understand: {why}"), None),
    };
    match msg {
        ToWorker::Inspect { source } => match inspect(&source).await {
            Ok((stored, bytes, note)) => post(&ToPage::Inspected { stored, bytes, note }),
            Err(message) => post(&ToPage::LoadFailed { message }),
        },
        ToWorker::Load { source, half, cache, device } => {
            // One model on the device at a time: the old one goes first.
            MODEL.with(|m| m.borrow_mut().take());
            let start = now_s();
            match load_model(source, half, cache, device, &data).await {
                Ok((loaded, note)) => {
                    let engine = &loaded.engine;
                    let (adapter, dtype) = (engine.name.clone(), engine.dtype.to_string());
                    let max_prompts =
                        max_prompts(loaded.model.config(), engine.max_binding, MemoryBudget::DEFAULT);
                    let seconds = now_s() - start;
                    let note = match engine.cpu_reason {
                        Some(reason) => cpu_note(&loaded, reason, &note).await,
                        None => note,
                    };
                    let tune_info = tune::info(&loaded);
                    let on_gpu = engine.cpu_reason.is_none();
                    let loaded = Rc::new(loaded);
                    MODEL.with(|m| *m.borrow_mut() = Some(loaded.clone()));
                    post(&ToPage::Ready { adapter, dtype, seconds, note, max_prompts });
                    post(&tune_info);
                    if on_gpu {
                        // Compiles the kernels of a one-prompt click while the visitor picks images:
                        // messages wait their turn, so a click that comes sooner waits for it, and pays
                        // no more than it would have. A failure shows again at the first click.
                        let _ = worker_bench::warm_up(&loaded.model, &loaded.engine.device).await;
                    }
                }
                Err(message) => post(&ToPage::LoadFailed { message }),
            }
        }
        ToWorker::Segment { options } => {
            let files = match SegmentFiles::from_js(&data) {
                Ok(files) => files,
                Err(why) => return error(format!("the page sent unreadable inputs: {why}"), None),
            };
            if let Err(message) = segment(&files, &options, &data).await {
                error(message, None);
            }
        }
        ToWorker::VideoStart { session, settings } => {
            if let Err(message) = video_session(session, &settings, &data).await {
                post(&ToPage::VideoFailed { session, message });
            }
        }
        // Frames of a session that has ended (it failed, or another message ended it): dropped.
        ToWorker::VideoFrame { .. } | ToWorker::VideoEnd { .. } => {}
        // Tuning in the page (docs/MODEL.md §19).
        ToWorker::TuneStart { session, params, run } => {
            if let Err(message) = tune::session(session, params, run, &data).await {
                post(&ToPage::TuneFailed { session, message });
            }
        }
        // The stop of a run that is already over.
        ToWorker::TuneStop { .. } => {}
        ToWorker::InspectTuned { card } => tune::inspect(card, &data),
        #[cfg(feature = "test-hooks")]
        ToWorker::DebugPanic => PANIC_IN_NEXT_RUN.with(|flag| flag.set(true)),
        ToWorker::ClearCache => match storage::clear().await {
            Ok(()) => post(&ToPage::CacheCleared),
            Err(why) => error(format!("clearing the browser storage failed: {why}"), None),
        },
        // Click to select (docs/MODEL.md §25).
        ToWorker::SamInspect { url } => match inspect(&ModelSource::Url { url }).await {
            Ok((stored, bytes, note)) => post(&ToPage::SamInspected { stored, bytes, note }),
            Err(message) => post(&ToPage::SamLoadFailed { message }),
        },
        ToWorker::SamLoad { url, cache, half, device } => sam::load(&url, cache, half, device).await,
        ToWorker::SamPrepare { key } => sam::prepare(key, &data).await,
        ToWorker::SamSelect { key, prompt } => sam::select_masks(key, &prompt, &data).await,
        ToWorker::Bench { runs, attention } => match bench(runs, attention).await {
            Ok(report) => post(&ToPage::Bench { report }),
            Err(message) => post(&ToPage::BenchFailed { message }),
        },
    }
}

/// The page's Benchmark on the loaded model (`worker_bench`).
async fn bench(runs: u32, attention: AttentionKernel) -> Result<BenchReport, String> {
    let loaded = MODEL.with(|m| m.borrow().clone()).ok_or("the model is not loaded yet")?;
    let engine = &loaded.engine;
    let progress = |done: usize, total: usize| {
        post(&ToPage::BenchProgress { done: done as u32, total: total as u32 });
    };
    let setup = (engine.name.as_str(), engine.dtype);
    let mut report =
        worker_bench::bench(&loaded.model, &engine.device, setup, attention, runs as usize, &progress)
            .await?;
    report.sam =
        sam::bench(runs as usize).await.transpose().map_err(|e| format!("Click to select (SAM): {e}"))?;
    Ok(report)
}

/// The load's note, after which device runs the model and what a forward pass takes on it: one
/// encoder block is timed on synthetic inputs ([`worker_bench::estimate_forward_s`]).
async fn cpu_note(loaded: &Loaded, reason: &str, note: &str) -> String {
    progress("timing one encoder block on the CPU ...", 0.0, 0.0);
    let expect = match worker_bench::estimate_forward_s(&loaded.model, &loaded.engine.device).await {
        Ok(seconds) => format!(": {} per image here (one prompt)", about_seconds(seconds)),
        Err(_) => String::new(),
    };
    let mut note = note.chars();
    let note: String =
        note.next().map(|first| first.to_uppercase().chain(note).collect()).unwrap_or_default();
    format!("{reason}, so the model runs on the CPU{expect}. A GPU with WebGPU is much faster. {note}")
}

/// `about 3.4 s`: an estimate, to the precision it has.
fn about_seconds(seconds: f64) -> String {
    match seconds {
        s if s < 0.01 => "under 0.01 s".into(),
        s if s < 1.0 => format!("about {s:.2} s"),
        s if s < 10.0 => format!("about {s:.1} s"),
        s => format!("about {s:.0} s"),
    }
}

/// The model files a URL stands for; only this site and the Hugging Face hub are fetched from.
fn resolve(model: &str) -> Result<ModelUrls, String> {
    let href = Url::new(model).map_err(|_| format!("`{model}` is not a web address"))?.href();
    model_urls(&href, &scope().location().origin()).map_err(|e| e.to_string())
}

/// Whether browser storage holds a complete copy of the model, and its size if known (the stored
/// size, else the server's `Content-Length`, asked with a `HEAD`), with a note.
async fn inspect(source: &ModelSource) -> Result<(bool, Option<f64>, String), String> {
    let ModelSource::Url { url } = source else {
        return Ok((false, None, String::new()));
    };
    let urls = resolve(url)?;
    if let Some(cached) = storage::lookup(&urls.weights).await.ok().flatten() {
        return Ok((true, Some(cached.weights.size()), "kept in this browser's storage".into()));
    }
    if let Some(bytes) = shards::stored_size(&urls).await {
        return Ok((true, Some(bytes), "kept in this browser's storage".into()));
    }
    Ok(match load::head(&urls.weights).await {
        Ok((status, version)) if (200..300).contains(&status) => {
            (false, version.bytes.map(|b| b as f64), String::new())
        }
        Ok((404, _)) if urls.index.is_some() => match shards::index(&urls, false).await {
            Ok(Some((index, _))) => (false, index.total_size().map(|b| b as f64), String::new()),
            _ => (false, None, FetchError::Status(404).describe(&urls.weights)),
        },
        Ok((status, _)) => (false, None, FetchError::Status(status).describe(&urls.weights)),
        Err(why) => (false, None, FetchError::Network(why).describe(&urls.weights)),
    })
}

fn parse_config(text: &str, from: &str) -> Result<SegGptConfig, String> {
    SegGptConfig::from_json(text).map_err(|e| format!("{from}: {e}"))
}

/// Returns the model and a note on where it came from (storage, download, file).
async fn load_model(
    source: ModelSource,
    half: bool,
    cache: bool,
    device: DeviceChoice,
    data: &JsValue,
) -> Result<(Loaded, String), String> {
    let engine = engine(device, half).await?;
    match source {
        ModelSource::Url { url } => load_from_url(&url, cache, engine).await,
        ModelSource::Files => {
            let files = ModelFiles::from_js(data)?;
            let (weights, config, name) = picked_model(&files.0)?;
            check_fits(&config, &engine)?;
            let source =
                BlobSource::open(weights, HeaderCheck::Whole(&config)).map_err(|e| format!("{name}: {e}"))?;
            let model = to_device(&source, config, &engine).map_err(|e| format!("{name}: {e}"))?;
            Ok((Loaded { model, engine }, format!("loaded from the file {name}")))
        }
    }
}

fn to_device(source: &dyn TensorSource, config: SegGptConfig, engine: &Engine) -> Result<SegGpt, LoadError> {
    let onto = if engine.cpu_reason.is_some() { "into memory" } else { "onto the GPU" };
    progress(format!("loading the weights {onto} ..."), 0.0, 0.0);
    SegGpt::load(source, config, &engine.device, MemoryBudget::DEFAULT)
}

/// The stored copy when it is current (the server says so, or cannot be asked), else a download.
/// A stored copy that fails to load is removed and downloaded again.
async fn load_from_url(url: &str, cache: bool, engine: Engine) -> Result<(Loaded, String), String> {
    let urls = resolve(url)?;
    let mut why_downloaded = None;
    let cached = if cache { storage::lookup(&urls.weights).await.ok().flatten() } else { None };
    let cached_single = cached.as_ref().map(|_| ());
    if let Some(cached) = cached {
        progress("asking the server whether the stored copy is current ...", 0.0, 0.0);
        let freshness = model_fetch::freshness(&cached.validators, load::head(&urls.weights).await);
        let offline = freshness == Freshness::Offline;
        let note = match freshness {
            Freshness::Changed => None,
            Freshness::Current { note } => {
                Some(note.unwrap_or_else(|| "loaded from browser storage, no download".into()))
            }
            Freshness::Offline => Some(OFFLINE_NOTE.to_string()),
        };
        match note {
            None => why_downloaded = Some("the model changed on the server since it was stored".to_string()),
            Some(note) => match load_stored(cached, &urls, &engine)? {
                Ok(model) => return Ok((Loaded { model, engine }, note)),
                Err(damage) => {
                    storage::remove_entry(&urls.weights).await;
                    if offline {
                        return Err(format!(
                            "The copy of the model in browser storage is damaged ({damage}), and the server \
                             cannot be reached to download it again: it was removed; reload when online."
                        ));
                    }
                    why_downloaded = Some(format!("the stored copy was damaged ({damage})"));
                }
            },
        }
    }
    // Shards: a stored index means the model was kept in shards; else a directory without a
    // model.safetensors may hold them.
    if cached_single.is_none()
        && cache
        && let Some(index_url) = &urls.index
        && storage::lookup_text(index_url).await.is_some()
        && let Some((index, offline)) = shards::index(&urls, cache).await?
    {
        return shards::load(&urls, index, offline, cache, engine).await;
    }
    let (source, config, note) = match download(&urls, cache, &engine).await {
        Err(Downloading::Missing(why)) if urls.index.is_some() => match shards::index(&urls, cache).await? {
            Some((index, offline)) => return shards::load(&urls, index, offline, cache, engine).await,
            None => return Err(why),
        },
        Err(Downloading::Missing(why) | Downloading::Failed(why)) => return Err(why),
        Ok(got) => got,
    };
    let model = to_device(&source, config, &engine).map_err(|e| format!("{}: {e}", urls.weights))?;
    let note = match why_downloaded {
        Some(why) => format!("{why}: {note}"),
        None => note,
    };
    Ok((Loaded { model, engine }, note))
}

/// The model from a stored copy: `Err` for what the device cannot take (not the copy's fault),
/// `Ok(Err(..))` when the copy itself is damaged.
fn load_stored(cached: Cached, urls: &ModelUrls, engine: &Engine) -> Result<Result<SegGpt, String>, String> {
    let config = match &cached.config_json {
        Some(text) => match parse_config(text, &urls.config) {
            Ok(config) => config,
            Err(damage) => return Ok(Err(damage)),
        },
        None => SegGptConfig::default(),
    };
    check_fits(&config, engine)?;
    let source = match BlobSource::open(cached.weights.into(), HeaderCheck::Whole(&config)) {
        Ok(source) => source,
        Err(damage) => return Ok(Err(damage.to_string())),
    };
    Ok(to_device(&source, config, engine).map_err(|e| e.to_string()))
}

/// Downloads `config.json` and the weights (streamed into browser storage when `cache`); returns
/// the weights, the config and a note on how they are kept.
/// Why a download did not give the model: the weights file is not on the server (a directory may
/// hold shards instead), or anything else.
enum Downloading {
    Missing(String),
    Failed(String),
}

impl From<String> for Downloading {
    fn from(why: String) -> Self {
        Downloading::Failed(why)
    }
}

async fn download(
    urls: &ModelUrls,
    cache: bool,
    engine: &Engine,
) -> Result<(BlobSource, SegGptConfig, String), Downloading> {
    progress(format!("fetching {} ...", urls.config), 0.0, 0.0);
    let config_json = match load::fetch_text(&urls.config).await {
        Ok(text) => Some(text),
        Err(FetchError::Status(404)) if urls.config_optional => None,
        Err(err) => return Err(err.describe(&urls.config).into()),
    };
    let config = match &config_json {
        Some(text) => parse_config(text, &urls.config)?,
        None => SegGptConfig::default(),
    };
    check_fits(&config, engine)?;
    let mut report = download_report(file_name(&urls.weights), progress);
    let downloaded = match load::download(
        &urls.weights,
        HeaderCheck::Whole(&config),
        config_json.as_deref(),
        cache,
        &mut report,
    )
    .await
    {
        Ok(downloaded) => downloaded,
        Err(FetchError::Status(404)) => {
            return Err(Downloading::Missing(FetchError::Status(404).describe(&urls.weights)));
        }
        Err(err) => return Err(err.describe(&urls.weights).into()),
    };
    let note = match (downloaded.stored, downloaded.note) {
        (true, _) => "downloaded and kept in browser storage for next time".to_string(),
        (false, Some(why)) => why,
        (false, None) => "kept in memory".to_string(),
    };
    Ok((downloaded.source, config, note))
}

/// The last part of `url`'s path: what the progress line calls the download.
fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or("weights").to_string()
}

/// What a download of `name` reports: done, of how much, how fast, how long still; `show` posts it
/// (SegGPT's progress or SAM's).
fn download_report(name: String, show: fn(String, f64, f64)) -> impl FnMut(&Progress) {
    move |p: &Progress| {
        let mut text = format!("downloading {name}: {}", size_text(p.done));
        if p.total > 0.0 {
            text += &format!(" of {}", size_text(p.total));
        }
        text += &format!(", {}/s", size_text(p.bytes_per_s));
        if p.total > 0.0 && p.bytes_per_s > 0.0 {
            text += &format!(", {:.0} s left", (p.total - p.done) / p.bytes_per_s);
        }
        show(text, p.done, p.total);
    }
}

/// The picked files: one `.safetensors` and, optionally, a `config.json` (without one, the
/// released ViT-L config, as the CLI does).
fn picked_model(files: &[File]) -> Result<(Blob, SegGptConfig, String), String> {
    let mut weights: Option<&File> = None;
    let mut config = None;
    for file in files {
        let name = file.name();
        if name.ends_with(".json") {
            let text = FileReaderSync::new()
                .and_then(|r| r.read_as_text(file))
                .map_err(|e| format!("cannot read {name}: {}", js_text(&e)))?;
            config = Some(parse_config(&text, &name)?);
        } else if name.ends_with(".pth") {
            return Err(format!(
                "{name}: the browser reads .safetensors only; convert it with `seggpt convert`"
            ));
        } else if weights.is_some() {
            return Err("give one weights file (.safetensors) and, optionally, its config.json".into());
        } else {
            weights = Some(file);
        }
    }
    let weights = weights.ok_or("no weights file: give a .safetensors file (and its config.json)")?;
    Ok((weights.clone().into(), config.unwrap_or_default(), weights.name()))
}

/// Errors, in plain words, when the device's buffers are too small for even one prompt.
fn check_fits(config: &SegGptConfig, engine: &Engine) -> Result<(), String> {
    if max_prompts(config, engine.max_binding, MemoryBudget::DEFAULT) == 0 {
        let needs = largest_buffer_bytes(config, 1, MemoryBudget::DEFAULT).div_ceil(1 << 20);
        let allows = engine.max_binding >> 20;
        return Err(if engine.cpu_reason.is_some() {
            format!(
                "This model is too large for the CPU path in the browser: one prompt needs buffers of {needs} \
                 MiB, and WebAssembly's memory allows {allows} MiB per buffer. Use a browser with WebGPU."
            )
        } else {
            format!(
                "Your GPU cannot run this model: one prompt needs GPU buffers of {needs} MiB, and this GPU (in \
                 this browser) allows {allows} MiB. Try another browser or a GPU with more memory."
            )
        });
    }
    Ok(())
}

/// Checks for WebGPU and an adapter before burn asks for one, for a clear error and a readable name.
/// (`WorkerNavigator::gpu` needs web-sys' unstable APIs, hence `Reflect`.)
async fn probe_webgpu() -> Result<Adapter, String> {
    progress("checking WebGPU ...", 0.0, 0.0);
    let get = |target: &JsValue, key: &str| Reflect::get(target, &key.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err(NO_WEBGPU.into());
    }
    let request: Function = get(&gpu, "requestAdapter").dyn_into().map_err(|_| NO_WEBGPU.to_string())?;
    let promise: Promise = request.call0(&gpu).map_err(|e| js_text(&e))?.unchecked_into();
    let adapter = JsFuture::from(promise)
        .await
        .map_err(|e| format!("WebGPU requestAdapter failed: {}", js_text(&e)))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(NO_ADAPTER.into());
    }
    let info = get(&adapter, "info");
    let text = |key: &str| get(&info, key).as_string().unwrap_or_default();
    let mut name = text("description");
    if name.is_empty() {
        name = format!("{} {}", text("vendor"), text("architecture")).trim().to_string();
    }
    if name.is_empty() {
        name = "unnamed adapter".into();
    }
    let software = get(&info, "isFallbackAdapter").as_bool() == Some(true);
    if software {
        name.push_str(" (software)");
    }
    Ok(Adapter { name, software })
}

/// A WebGPU adapter the browser offers.
struct Adapter {
    /// Its description (or vendor and architecture), with " (software)" for a fallback adapter.
    name: String,
    /// WebGPU's fallback adapter (SwiftShader in Chromium): the GPU's work done on the CPU, one to two
    /// orders of magnitude slower than burn's CPU backend in wasm (docs/MODEL.md §24.1).
    software: bool,
}

/// The device the model runs on, started once per worker as `choice` asks: WebGPU where the
/// browser offers an adapter, else (unless `choice` is [`DeviceChoice::Webgpu`]) burn's CPU backend.
async fn engine(choice: DeviceChoice, half: bool) -> Result<Engine, String> {
    if let Some(engine) = ENGINE.with(|e| e.borrow().clone()) {
        return Ok(engine);
    }
    let engine = match choice {
        DeviceChoice::Cpu => cpu_engine("The page's address asks for the CPU (?device=cpu)"),
        DeviceChoice::Webgpu => gpu_engine(probe_webgpu().await?.name, half).await?,
        DeviceChoice::Auto => match probe_webgpu().await {
            Ok(adapter) if adapter.software => cpu_engine(SOFTWARE_ADAPTER),
            Ok(adapter) => gpu_engine(adapter.name, half).await?,
            Err(_) => cpu_engine("This browser offers no WebGPU adapter"),
        },
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(engine.clone()));
    Ok(engine)
}

/// burn's CPU backend, compiled into this wasm with SIMD128; in f32.
fn cpu_engine(reason: &'static str) -> Engine {
    progress("starting the CPU device ...", 0.0, 0.0);
    Engine {
        device: Device::flex(),
        name: CPU_NAME.into(),
        max_binding: CPU_MAX_BUFFER,
        dtype: "f32",
        cpu_reason: Some(reason),
    }
}

/// burn's WebGPU device on `adapter`; in f16 when asked and the adapter has `shader-f16` (before
/// any tensor exists, as burn requires).
async fn gpu_engine(adapter: String, half: bool) -> Result<Engine, String> {
    progress(format!("starting WebGPU on {adapter} ..."), 0.0, 0.0);
    let (mut device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU device initialisation failed: {e}"))?;
    let max_binding = setup.device.limits().max_storage_buffer_binding_size;
    let has_f16 = setup.adapter.features().contains(wgpu::Features::SHADER_F16);
    let dtype = if half && has_f16 {
        device.configure(FloatDType::F16).map_err(|e| {
            web_sys::console::error_1(&format!("{e:?}").into());
            "cannot switch the GPU to half precision (f16); reload the page with ?dtype=f32".to_string()
        })?;
        "f16"
    } else {
        "f32"
    };
    Ok(Engine { device, name: adapter, max_binding, dtype, cpu_reason: None })
}

fn read_bytes(file: &File) -> Result<Vec<u8>, String> {
    let buffer = FileReaderSync::new()
        .and_then(|r| r.read_as_array_buffer(file))
        .map_err(|e| format!("cannot read {}: {}", file.name(), js_text(&e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// The prompts of a run, and the number of classes for class-index masks (given, or the one the
/// masks imply).
fn prompts(files: &[PromptFiles], options: &RunOptions) -> Result<(Vec<Prompt>, Option<usize>), String> {
    let mut images = Vec::new();
    let mut masks: Vec<Result<RgbImage, ClassMap>> = Vec::new();
    for (i, prompt) in files.iter().enumerate() {
        let which = |what: &str| format!("prompt {}: {what}", i + 1);
        let name = prompt.image.name();
        let image = decode_rgb(&read_bytes(&prompt.image).map_err(|e| which(&e))?, &name)
            .map_err(|e| which(&e.to_string()))?;
        let mask = match &prompt.mask {
            MaskFile::Painted { rgb, width, height } => {
                if (*width, *height) != (image.width(), image.height()) {
                    return Err(which(&format!(
                        "the painted mask is {width}x{height} but the image decodes to {}x{}; paint it again",
                        image.width(),
                        image.height()
                    )));
                }
                Ok(RgbImage::new(*width, *height, rgb.clone()).map_err(|e| which(&e.to_string()))?)
            }
            MaskFile::File(file) => {
                let (bytes, name) = (read_bytes(file).map_err(|e| which(&e))?, file.name());
                // As the CLI with `--num-labels`: a grey or palette PNG is read as class indices,
                // any other mask as colours.
                let class_map = if options.class_masks {
                    match decode_class_map(&bytes, &name) {
                        Ok(map) => Some(map),
                        Err(InputError::UnsupportedMask { .. }) => None,
                        Err(other) => return Err(which(&other.to_string())),
                    }
                } else {
                    None
                };
                match class_map {
                    Some(map) => Err(map),
                    None => Ok(decode_rgb(&bytes, &name).map_err(|e| which(&e.to_string()))?),
                }
            }
        };
        images.push(image);
        masks.push(mask);
    }
    let inferred = inferred_num_classes(masks.iter().filter_map(|m| m.as_ref().err()));
    let num_classes = match options.num_classes {
        Some(0) => return Err("the number of classes must be 1 or more".into()),
        Some(n) => Some(n as usize),
        None => options.class_masks.then_some(inferred),
    };
    let prompts = images
        .into_iter()
        .zip(masks)
        .map(|(image, mask)| Prompt {
            image,
            mask: match mask {
                Ok(rgb) => PromptMask::Rgb(rgb),
                Err(map) => PromptMask::Classes { map, num_labels: num_classes.unwrap_or(inferred) },
            },
        })
        .collect();
    Ok((prompts, num_classes))
}

/// Posts one `Result` (or `Error`) per target, in order.
async fn segment(files: &SegmentFiles, options: &RunOptions, data: &JsValue) -> Result<(), String> {
    let loaded = MODEL.with(|m| m.borrow().clone()).ok_or("the model is not loaded yet")?;
    let tuned = tune::tuned_prompts(data, &loaded)?;
    if files.prompts.is_empty() && tuned.is_empty() {
        return Err("add a prompt: an example image and its mask".into());
    }
    let count = files.prompts.len() + tuned.len();
    let limit = max_prompts(loaded.model.config(), loaded.engine.max_binding, MemoryBudget::DEFAULT);
    if options.ensemble.model_prompts(count) > limit {
        return Err(format!(
            "this device allows at most {limit} prompts at a time; this run has {count}: remove some"
        ));
    }
    let forward = ForwardOptions {
        ensemble: Some(options.ensemble),
        embedding_type: options.embedding,
        budget: MemoryBudget::DEFAULT,
        ..ForwardOptions::default()
    };
    let (prompts, num_classes) = prompts(&files.prompts, options)?;
    let colours = mask_colours(&prompts);
    let segmenter = Segmenter::with_tuned(&loaded.model, &loaded.engine.device, &prompts, &tuned, forward)
        .map_err(|e| e.to_string())?;
    for (index, target) in files.targets.iter().enumerate() {
        post(&ToPage::Running { index });
        // Messages are handled in order, so the page asks before the run and the panic comes
        // mid-run, where a GPU out-of-memory error would.
        #[cfg(feature = "test-hooks")]
        if PANIC_IN_NEXT_RUN.with(|flag| flag.replace(false)) {
            panic!("wgpu error: debug panic requested by the page (?debug=panic)");
        }
        let start = now_s();
        match segment_one(&segmenter, target, num_classes, options.tile.as_ref()).await {
            Ok((mask_png, mask)) => {
                let buffers = ResultBuffers {
                    mask_png,
                    mask_rgb: mask.as_raw().to_vec(),
                    labels: nearest_colour_labels(mask.as_raw(), &colours),
                };
                let msg = ToPage::Result {
                    index,
                    seconds: now_s() - start,
                    width: mask.width(),
                    height: mask.height(),
                    colours: colours.clone(),
                    num_classes: num_classes.map(|n| n as u32),
                };
                post_with(&msg, |envelope| buffers.to_js(envelope));
            }
            Err(Failure::Input(message)) => error(message, Some(index)),
            Err(Failure::Device(message)) => {
                // The device is gone for this worker: the page restarts it.
                post(&ToPage::Fatal { message: fatal_message(&message) });
                return Ok(());
            }
        }
    }
    Ok(())
}

enum Failure {
    /// This target cannot be segmented (not an image, too large...): the run goes on.
    Input(String),
    /// The GPU is gone: the worker cannot go on.
    Device(String),
}

/// One target: decode, then for each of its tiles (the target itself without tiling) forward and
/// asynchronous read-back (sync reads panic on wasm); the tiles stitched (docs/MODEL.md §27); mask PNG.
async fn segment_one(
    segmenter: &Segmenter<'_>,
    file: &File,
    num_labels: Option<usize>,
    tiling: Option<&Tiling>,
) -> Result<(Vec<u8>, RgbImage), Failure> {
    let name = file.name();
    let input = |e: &dyn std::fmt::Display| Failure::Input(format!("{name}: {e}"));
    let target = Target::decode(&read_bytes(file).map_err(Failure::Input)?, &name)
        .map_err(|e| Failure::Input(e.to_string()))?;
    let tiles = target.tiles(tiling).map_err(|e| input(&e))?;
    let mut parts = Vec::with_capacity(tiles.len());
    for tile in &tiles {
        let pred = segmenter.predict(tile, &mut |_, _| {}).map_err(|e| input(&e))?;
        let data = pred.into_data_async().await.map_err(|e| Failure::Device(format!("device lost: {e}")))?;
        let values = data
            .try_into_vec_as::<f32>()
            .map_err(|_| input(&"the GPU returned the result in an unexpected number format"))?;
        parts.push(segmenter.finish(values, tile, num_labels).map_err(|e| input(&e))?);
    }
    let result = Segmentation::stitch(tiling, &target, parts).map_err(|e| input(&e))?;
    let png = result.mask_png().map_err(|e| input(&e))?;
    Ok((png, result.mask))
}

/// A propagation or the Live mode: prepares the prompts, then segments the session's frames as they
/// come, each prompted by the user's prompts and the previous frames with their predicted masks
/// (docs/MODEL.md §13), until `VideoEnd` or another message (which is handled next, in order).
async fn video_session(session: u32, settings: &VideoSettings, data: &JsValue) -> Result<(), String> {
    let loaded = MODEL.with(|m| m.borrow().clone()).ok_or("the model is not loaded yet")?;
    let files =
        SegmentFiles::from_js(data).map_err(|why| format!("the page sent unreadable prompts: {why}"))?;
    if files.prompts.is_empty() {
        return Err("add a prompt: a frame (or any image) and its mask".into());
    }
    let fits = max_cached_frames(
        loaded.model.config(),
        files.prompts.len(),
        loaded.engine.max_binding,
        MemoryBudget::DEFAULT,
    );
    if settings.previous_frames > fits {
        return Err(format!(
            "this device's buffer limit fits at most {fits} previous frames beside {} prompt(s); this run \
             asks for {}: choose fewer",
            files.prompts.len(),
            settings.previous_frames
        ));
    }
    let forward = ForwardOptions {
        ensemble: Some(settings.run.ensemble),
        embedding_type: settings.run.embedding,
        budget: MemoryBudget::DEFAULT,
        ..ForwardOptions::default()
    };
    let (prompts, num_classes) = prompts(&files.prompts, &settings.run)?;
    let colours = mask_colours(&prompts);
    let options = VideoOptions {
        num_frames: settings.previous_frames,
        propagate: settings.propagate,
        forward,
        num_labels: num_classes,
    };
    let mut propagator = Propagator::new(&loaded.model, &loaded.engine.device, &prompts, options)
        .map_err(|e| e.to_string())?;
    loop {
        let data = next_queued().await;
        let Ok(msg) = protocol::message::<ToWorker>(&data) else {
            requeue_first(data);
            return Ok(());
        };
        match msg {
            ToWorker::VideoFrame { session: of, index } if of == session => {
                let start = now_s();
                let frame = frame_image(&data).map_err(|why| format!("frame {}: {why}", index + 1))?;
                let pred = propagator
                    .predict(&frame, &mut |_, _| {})
                    .map_err(|e| format!("frame {}: {e}", index + 1))?;
                let values = match pred.into_data_async().await {
                    Ok(data) => data.try_into_vec_as::<f32>().map_err(|_| {
                        "the GPU returned the result in an unexpected number format".to_string()
                    })?,
                    Err(e) => {
                        post(&ToPage::Fatal { message: fatal_message(&format!("device lost: {e}")) });
                        return Ok(());
                    }
                };
                let result =
                    propagator.finish(values, &frame).map_err(|e| format!("frame {}: {e}", index + 1))?;
                let buffers = ResultBuffers {
                    mask_png: result.mask_png().map_err(|e| e.to_string())?,
                    mask_rgb: result.mask.as_raw().to_vec(),
                    labels: nearest_colour_labels(result.mask.as_raw(), &colours),
                };
                let msg = ToPage::VideoResult {
                    session,
                    index,
                    seconds: now_s() - start,
                    width: result.mask.width(),
                    height: result.mask.height(),
                    colours: colours.clone(),
                };
                post_with(&msg, |envelope| buffers.to_js(envelope));
            }
            ToWorker::VideoEnd { session: of } if of == session => return Ok(()),
            // An older session's frame or end: nothing left to do for it.
            ToWorker::VideoFrame { .. } | ToWorker::VideoEnd { .. } => {}
            _ => {
                requeue_first(data);
                return Ok(());
            }
        }
    }
}

/// A session's frame as RGB: a file decoded as the CLI decodes it, or the page's decoded pixels.
fn frame_image(data: &JsValue) -> Result<RgbImage, String> {
    match FrameInput::from_js(data)? {
        FrameInput::File(file) => decode_rgb(&read_bytes(&file)?, &file.name()).map_err(|e| e.to_string()),
        FrameInput::Pixels { rgba, width, height } => {
            let rgb = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            RgbImage::new(width, height, rgb).map_err(|e| e.to_string())
        }
    }
}
