//! The worker side: WebGPU probe and device, model download / cache / load, segmentation.

use std::{cell::RefCell, rc::Rc};

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, FloatDType};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Blob, DedicatedWorkerGlobalScope, File, FileReaderSync, MessageEvent, Url};

use super::load::{self, BlobSource, Fetch, Progress};
use super::protocol::{MaskInput, ModelSource, RunOptions, ToPage, ToWorker};
use super::{js_text, now_s, storage};
use crate::paint::nearest_colour_labels;
use crate::pipeline::{ClassMap, RgbImage, decode_class_map, decode_rgb};
use crate::segment::{Prompt, PromptMask, Segmenter, Target};
use crate::{
    EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt, SegGptConfig, largest_buffer_bytes,
    max_prompts,
};

const NO_WEBGPU: &str = "This browser does not offer WebGPU, which SegGPT needs to run on your GPU. \
    Use a browser with WebGPU: Chrome or Edge 113+ on desktop, Safari 26+, or Firefox 141+ on Windows \
    (on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu).";
const NO_ADAPTER: &str = "This browser has WebGPU but offers no GPU adapter for it (WebGPU is off, or the \
    GPU is blocklisted). Chrome or Edge 113+ on desktop, Safari 26+ and Firefox 141+ on Windows have it on; \
    on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu (chrome://gpu shows the WebGPU status).";

/// burn's device and what the adapter allows.
#[derive(Clone)]
struct Gpu {
    device: Device,
    adapter: String,
    /// `maxStorageBufferBindingSize` of the device (cubecl requests the adapter's full limits).
    max_binding: u64,
    /// `f16` or `f32`: the device's float type.
    dtype: &'static str,
}

struct Loaded {
    model: SegGpt,
    gpu: Gpu,
}

thread_local! {
    /// The runtime can be initialised once per wasm instance, so the device outlives failed loads.
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
    static MODEL: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
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
        post(&ToPage::Fatal { message: fatal_message(&text) }, &[]);
        console_error_panic_hook::hook(info);
    }));
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| spawn_local(handle(event)));
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&ToPage::Started, &[]);
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

fn scope() -> DedicatedWorkerGlobalScope {
    super::worker_scope().unchecked_into()
}

/// Posts `msg` with extra fields (`bytes`, `rgb`: ArrayBuffers, transferred).
fn post(msg: &ToPage, buffers: &[(&str, &JsValue)]) {
    let envelope = Object::new();
    let value = serde_wasm_bindgen::to_value(msg).unwrap_or(JsValue::NULL);
    let _ = Reflect::set(&envelope, &"msg".into(), &value);
    let transfer = Array::new();
    for (name, buffer) in buffers {
        let _ = Reflect::set(&envelope, &(*name).into(), buffer);
        transfer.push(buffer);
    }
    if let Err(err) = scope().post_message_with_transfer(&envelope, &transfer) {
        web_sys::console::error_1(&err);
    }
}

fn progress(text: impl Into<String>, done: f64, total: f64) {
    post(&ToPage::Progress { text: text.into(), done, total }, &[]);
}

fn error(message: String, index: Option<usize>) {
    post(&ToPage::Error { message, index }, &[]);
}

async fn handle(event: MessageEvent) {
    let data = event.data();
    let msg = Reflect::get(&data, &"msg".into()).unwrap_or(JsValue::UNDEFINED);
    let msg: ToWorker = match serde_wasm_bindgen::from_value(msg) {
        Ok(msg) => msg,
        Err(err) => return error(format!("the worker got a message it does not understand: {err}"), None),
    };
    let files = Reflect::get(&data, &"files".into())
        .ok()
        .and_then(|f| f.dyn_into::<Array>().ok())
        .unwrap_or_default();
    match msg {
        ToWorker::Load { source, half, cache } => {
            // One model on the GPU at a time: the old one goes first.
            MODEL.with(|m| m.borrow_mut().take());
            let start = now_s();
            match load_model(source, half, cache, &files).await {
                Ok((loaded, note)) => {
                    let adapter = loaded.gpu.adapter.clone();
                    let dtype = loaded.gpu.dtype.to_string();
                    let max_prompts =
                        max_prompts(loaded.model.config(), loaded.gpu.max_binding, MemoryBudget::DEFAULT);
                    MODEL.with(|m| *m.borrow_mut() = Some(Rc::new(loaded)));
                    let seconds = now_s() - start;
                    post(&ToPage::Ready { adapter, dtype, seconds, note, max_prompts }, &[]);
                }
                Err(message) => post(&ToPage::LoadFailed { message }, &[]),
            }
        }
        ToWorker::Segment { prompts, targets, options } => {
            if let Err(message) = segment(&prompts, targets, &options, &files).await {
                error(message, None);
            }
        }
        ToWorker::DebugPanic => panic!("wgpu error: debug panic requested by the page (?debug=panic)"),
        ToWorker::ClearCache => match storage::clear().await {
            Ok(()) => post(&ToPage::CacheCleared, &[]),
            Err(why) => error(format!("clearing the browser storage failed: {why}"), None),
        },
    }
}

/// `config.json` and weights URLs for a model URL: a `.safetensors` file (config beside it) or a
/// directory holding `config.json` + `model.safetensors`. Only this site and the Hugging Face hub are
/// fetched from (the worker is not bound by the page's CSP meta tag).
fn model_urls(model: &str) -> Result<(String, String, bool), String> {
    let url = Url::new(model).map_err(|_| format!("`{model}` is not a URL"))?;
    let host = url.hostname();
    let same_origin = url.origin() == scope().location().origin();
    let hub = host == "huggingface.co" || host.ends_with(".huggingface.co") || host.ends_with(".hf.co");
    if !same_origin && !hub {
        return Err(format!(
            "refusing to fetch a model from {}: only this site and huggingface.co are allowed",
            url.origin()
        ));
    }
    let path = url.pathname();
    if path.ends_with(".safetensors") {
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let config = format!("{}{dir}config.json", url.origin());
        Ok((config, url.href(), true))
    } else if path.ends_with(".pth") {
        Err(format!("{model}: the browser reads .safetensors only; convert it with `seggpt convert`"))
    } else {
        let base = if path.ends_with('/') { url.href() } else { format!("{}{path}/", url.origin()) };
        Ok((format!("{base}config.json"), format!("{base}model.safetensors"), false))
    }
}

fn parse_config(text: &str, from: &str) -> Result<SegGptConfig, String> {
    SegGptConfig::from_json(text).map_err(|e| format!("{from}: {e}"))
}

/// Returns the model and a note on where it came from (storage, download, file).
async fn load_model(
    source: ModelSource,
    half: bool,
    cache: bool,
    files: &Array,
) -> Result<(Loaded, String), String> {
    progress("checking WebGPU ...", 0.0, 0.0);
    let adapter = probe_webgpu().await?;
    progress(format!("starting WebGPU on {adapter} ..."), 0.0, 0.0);
    let gpu = gpu(adapter, half).await?;
    let (weights, config, note, what) = match source {
        ModelSource::Url { url } => {
            let (config_url, weights_url, config_optional) = model_urls(&url)?;
            let cached = if cache { storage::lookup(&weights_url).await.ok().flatten() } else { None };
            match cached {
                Some(cached) => {
                    let config = match &cached.config_json {
                        Some(text) => parse_config(text, &config_url)?,
                        None => SegGptConfig::default(),
                    };
                    check_fits(&config, &gpu)?;
                    let source = BlobSource::open(cached.weights.into(), &config)
                        .map_err(|e| format!("the stored copy of {weights_url}: {e} (clear the cache)"))?;
                    (source, config, "loaded from browser storage, no download".to_string(), weights_url)
                }
                None => {
                    progress(format!("fetching {config_url} ..."), 0.0, 0.0);
                    let config_json = match load::fetch_text(&config_url).await {
                        Ok(text) => Some(text),
                        Err(Fetch::Status(404)) if config_optional => None,
                        Err(err) => return Err(err.describe(&config_url)),
                    };
                    let config = match &config_json {
                        Some(text) => parse_config(text, &config_url)?,
                        None => SegGptConfig::default(),
                    };
                    check_fits(&config, &gpu)?;
                    let name = weights_url.rsplit('/').next().unwrap_or("weights").to_string();
                    let mut report = |p: &Progress| {
                        let mut text = format!("downloading {name}: {}", size_text(p.done));
                        if p.total > 0.0 {
                            text += &format!(" of {}", size_text(p.total));
                        }
                        text += &format!(", {}/s", size_text(p.bytes_per_s));
                        if p.total > 0.0 && p.bytes_per_s > 0.0 {
                            text += &format!(", {:.0} s left", (p.total - p.done) / p.bytes_per_s);
                        }
                        progress(text, p.done, p.total);
                    };
                    let downloaded =
                        load::download(&weights_url, &config, config_json.as_deref(), cache, &mut report)
                            .await
                            .map_err(|e| e.describe(&weights_url))?;
                    let note = match (downloaded.stored, downloaded.note) {
                        (true, _) => "downloaded and kept in browser storage for next time".to_string(),
                        (false, Some(why)) => why,
                        (false, None) => "kept in memory".to_string(),
                    };
                    (downloaded.source, config, note, weights_url)
                }
            }
        }
        ModelSource::Files => {
            let (weights, config, name) = picked_model(files)?;
            check_fits(&config, &gpu)?;
            let source = BlobSource::open(weights, &config).map_err(|e| format!("{name}: {e}"))?;
            (source, config, format!("loaded from the file {name}"), name)
        }
    };
    progress("loading the weights onto the GPU ...", 0.0, 0.0);
    let model = SegGpt::load(&weights, config, &gpu.device, MemoryBudget::DEFAULT)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok((Loaded { model, gpu }, note))
}

/// `812 KB`, `37.4 MB`, `1.48 GB`.
fn size_text(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.0} KB", b / 1e3),
    }
}

/// The picked files: one `.safetensors` and, optionally, a `config.json` (without one, the
/// released ViT-L config, as the CLI does).
fn picked_model(files: &Array) -> Result<(Blob, SegGptConfig, String), String> {
    let mut weights = None;
    let mut config = None;
    for file in files.iter() {
        let file: File = file.dyn_into().map_err(|_| "the page sent something that is not a file")?;
        let name = file.name();
        if name.ends_with(".json") {
            let text = FileReaderSync::new()
                .and_then(|r| r.read_as_text(&file))
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
    let name = weights.name();
    Ok((weights.into(), config.unwrap_or_default(), name))
}

/// Errors (naming the limit) when the adapter's buffers are too small for even one prompt.
fn check_fits(config: &SegGptConfig, gpu: &Gpu) -> Result<(), String> {
    if max_prompts(config, gpu.max_binding, MemoryBudget::DEFAULT) == 0 {
        return Err(format!(
            "This GPU's maxStorageBufferBindingSize is {} MiB; this model needs buffers of {} MiB. \
             Use a GPU (or browser) with a larger limit.",
            gpu.max_binding >> 20,
            largest_buffer_bytes(config, 1, MemoryBudget::DEFAULT).div_ceil(1 << 20)
        ));
    }
    Ok(())
}

/// Checks for WebGPU and an adapter before burn asks for one, for a clear error and a readable name.
/// (`WorkerNavigator::gpu` needs web-sys' unstable APIs, hence `Reflect`.)
async fn probe_webgpu() -> Result<String, String> {
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
    if get(&info, "isFallbackAdapter").as_bool() == Some(true) {
        name.push_str(" (software)");
    }
    Ok(name)
}

/// burn's WebGPU device, initialised once per worker; in f16 when asked and the adapter has
/// `shader-f16` (before any tensor exists, as burn requires).
async fn gpu(adapter: String, half: bool) -> Result<Gpu, String> {
    if let Some(gpu) = GPU.with(|g| g.borrow().clone()) {
        return Ok(gpu);
    }
    let (mut device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU device initialisation failed: {e}"))?;
    let max_binding = setup.device.limits().max_storage_buffer_binding_size;
    let has_f16 = setup.adapter.features().contains(wgpu::Features::SHADER_F16);
    let dtype = if half && has_f16 {
        device.configure(FloatDType::F16).map_err(|e| format!("cannot switch the GPU to f16: {e:?}"))?;
        "f16"
    } else {
        "f32"
    };
    let gpu = Gpu { device, adapter, max_binding, dtype };
    GPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

fn read_bytes(value: &JsValue) -> Result<(Vec<u8>, String), String> {
    let file: &File = value.dyn_ref().ok_or("the page sent something that is not a file")?;
    let buffer = FileReaderSync::new()
        .and_then(|r| r.read_as_array_buffer(file))
        .map_err(|e| format!("cannot read {}: {}", file.name(), js_text(&e)))?;
    Ok((Uint8Array::new(&buffer).to_vec(), file.name()))
}

/// The prompts from `files` (image, mask, image, mask, ...).
fn prompts(
    specs: &[MaskInput],
    options: &RunOptions,
    files: &Array,
) -> Result<(Vec<Prompt>, Option<usize>), String> {
    let mut images = Vec::new();
    let mut masks: Vec<Result<RgbImage, ClassMap>> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let which = |what: &str| format!("prompt {}: {what}", i + 1);
        let (bytes, name) = read_bytes(&files.get(2 * i as u32)).map_err(|e| which(&e))?;
        let image = decode_rgb(&bytes, &name).map_err(|e| which(&e.to_string()))?;
        let mask = files.get(2 * i as u32 + 1);
        let mask = match spec {
            MaskInput::Painted { width, height } => {
                if (*width, *height) != (image.width(), image.height()) {
                    return Err(which(&format!(
                        "the painted mask is {width}x{height} but the image decodes to {}x{}; paint it again",
                        image.width(),
                        image.height()
                    )));
                }
                let rgb = Uint8Array::new(&mask).to_vec();
                Ok(RgbImage::new(*width, *height, rgb).map_err(|e| which(&e.to_string()))?)
            }
            MaskInput::File => {
                let (bytes, name) = read_bytes(&mask).map_err(|e| which(&e))?;
                if options.class_masks {
                    Err(decode_class_map(&bytes, &name).map_err(|e| which(&e.to_string()))?)
                } else {
                    Ok(decode_rgb(&bytes, &name).map_err(|e| which(&e.to_string()))?)
                }
            }
        };
        images.push(image);
        masks.push(mask);
    }
    // Class-index masks: the palette covers the largest index any prompt uses.
    let num_labels = options.class_masks.then(|| {
        masks
            .iter()
            .filter_map(|m| m.as_ref().err())
            .flat_map(|map| map.as_raw().iter().copied())
            .max()
            .map_or(2, |max| (usize::from(max) + 1).max(2))
    });
    let prompts = images
        .into_iter()
        .zip(masks)
        .map(|(image, mask)| Prompt {
            image,
            mask: match mask {
                Ok(rgb) => PromptMask::Rgb(rgb),
                Err(map) => PromptMask::Classes { map, num_labels: num_labels.unwrap_or(2) },
            },
        })
        .collect();
    Ok((prompts, num_labels))
}

/// The distinct colours of the prompt masks (those covering at least 0.2% of a mask), black left
/// out, at most 16, most frequent first: the page's per-colour toggles.
fn mask_colours(prompts: &[Prompt]) -> Vec<[u8; 3]> {
    let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
    let mut total = 0;
    for prompt in prompts {
        let rgb = match &prompt.mask {
            PromptMask::Rgb(rgb) => rgb.clone(),
            PromptMask::Classes { map, num_labels } => {
                match crate::pipeline::mask_to_rgb(map, Some(&crate::pipeline::build_palette(*num_labels))) {
                    Ok(rgb) => rgb,
                    Err(_) => continue,
                }
            }
        };
        for px in rgb.as_raw().chunks_exact(3) {
            *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
        }
        total += rgb.as_raw().len() / 3;
    }
    let mut colours: Vec<([u8; 3], usize)> =
        counts.into_iter().filter(|(c, n)| *c != [0, 0, 0] && *n * 500 >= total).collect();
    colours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    colours.into_iter().take(16).map(|(c, _)| c).collect()
}

fn forward_options(options: &RunOptions) -> Result<ForwardOptions, String> {
    let ensemble = match options.ensemble.as_str() {
        "official" => Ensemble::Official,
        "hf" => Ensemble::Hf,
        "none" => Ensemble::None,
        other => return Err(format!("unknown ensemble `{other}`")),
    };
    let embedding_type = match options.embedding.as_str() {
        "instance" => EmbeddingType::Instance,
        "semantic" => EmbeddingType::Semantic,
        other => return Err(format!("unknown embedding `{other}`")),
    };
    Ok(ForwardOptions { ensemble: Some(ensemble), embedding_type, budget: MemoryBudget::DEFAULT })
}

/// Posts one `Result` (or `Error`) per target, in order.
async fn segment(
    specs: &[MaskInput],
    targets: usize,
    options: &RunOptions,
    files: &Array,
) -> Result<(), String> {
    let loaded = MODEL.with(|m| m.borrow().clone()).ok_or("the model is not loaded yet")?;
    if specs.is_empty() {
        return Err("add a prompt: an example image and its mask".into());
    }
    let limit = max_prompts(loaded.model.config(), loaded.gpu.max_binding, MemoryBudget::DEFAULT);
    if specs.len() > limit {
        return Err(format!(
            "{} prompts need more than this GPU's maxStorageBufferBindingSize ({} MiB) allows: at most {limit} \
             prompts here",
            specs.len(),
            loaded.gpu.max_binding >> 20
        ));
    }
    let forward = forward_options(options)?;
    let (prompts, num_labels) = prompts(specs, options, files)?;
    let colours = mask_colours(&prompts);
    let segmenter =
        Segmenter::new(&loaded.model, &loaded.gpu.device, &prompts, forward).map_err(|e| e.to_string())?;
    let first = 2 * specs.len() as u32;
    for index in 0..targets {
        post(&ToPage::Running { index }, &[]);
        let start = now_s();
        match segment_one(&segmenter, &files.get(first + index as u32), num_labels).await {
            Ok((png, mask)) => {
                let (width, height) = (mask.width(), mask.height());
                let bytes = Uint8Array::from(png.as_slice()).buffer();
                let rgb = Uint8Array::from(mask.as_raw()).buffer();
                let labels =
                    Uint8Array::from(nearest_colour_labels(mask.as_raw(), &colours).as_slice()).buffer();
                let msg = ToPage::Result {
                    index,
                    seconds: now_s() - start,
                    width,
                    height,
                    colours: colours.clone(),
                };
                post(&msg, &[("bytes", &bytes), ("rgb", &rgb), ("labels", &labels)]);
            }
            Err(Failure::Input(message)) => error(message, Some(index)),
            Err(Failure::Device(message)) => {
                // The device is gone for this worker: the page restarts it.
                post(&ToPage::Fatal { message: fatal_message(&message) }, &[]);
                return Ok(());
            }
        }
    }
    Ok(())
}

enum Failure {
    Input(String),
    Device(String),
}

/// One target: decode, forward, asynchronous read-back (sync reads panic on wasm), mask PNG.
async fn segment_one(
    segmenter: &Segmenter<'_>,
    file: &JsValue,
    num_labels: Option<usize>,
) -> Result<(Vec<u8>, RgbImage), Failure> {
    let (bytes, name) = read_bytes(file).map_err(Failure::Input)?;
    let target = Target::decode(&bytes, &name).map_err(|e| Failure::Input(e.to_string()))?;
    let pred = segmenter.predict(&target, &mut |_, _| {}).map_err(|e| Failure::Input(e.to_string()))?;
    let data = pred.into_data_async().await.map_err(|e| Failure::Device(format!("device lost: {e}")))?;
    let values = data
        .try_into_vec_as::<f32>()
        .map_err(|e| Failure::Input(format!("unexpected result data: {e:?}")))?;
    let result = segmenter.finish(values, &target, num_labels).map_err(|e| Failure::Input(e.to_string()))?;
    let png = result.mask_png().map_err(|e| Failure::Input(e.to_string()))?;
    Ok((png, result.mask))
}
