//! The worker side: WebGPU probe and device, model download and load, segmentation.

use std::{cell::RefCell, rc::Rc};

use burn::tensor::Device;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{DedicatedWorkerGlobalScope, File, MessageEvent, Response, Url};

use super::protocol::{ToPage, ToWorker};
use super::{js_text, now_s};
use crate::segment::{Prompt, Segmenter, Target};
use crate::weights::SafetensorsSource;
use crate::{ForwardOptions, SegGpt, SegGptConfig};

const NO_WEBGPU: &str = "This browser does not offer WebGPU, which SegGPT needs to run on your GPU. \
    Use a browser with WebGPU: Chrome or Edge 113+ on desktop, Safari 26+, or Firefox 141+ on Windows \
    (on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu).";
const NO_ADAPTER: &str = "This browser has WebGPU but offers no GPU adapter for it (WebGPU is off, or the \
    GPU is blocklisted). Chrome or Edge 113+ on desktop, Safari 26+ and Firefox 141+ on Windows have it on; \
    on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu (chrome://gpu shows the WebGPU status).";

struct Loaded {
    model: SegGpt,
    device: Device,
}

thread_local! {
    /// The runtime can be initialised once per wasm instance, so the device outlives failed loads.
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
    static MODEL: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
}

/// Entry point of `www/worker.js`: installs the message handler, then tells the page it listens.
#[wasm_bindgen]
pub fn run_worker() {
    std::panic::set_hook(Box::new(|info| {
        // A panic aborts and poisons the instance: tell the page first, so it can restart us.
        post(&ToPage::Fatal { message: info.to_string() }, None);
        console_error_panic_hook::hook(info);
    }));
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| spawn_local(handle(event)));
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&ToPage::Started, None);
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts `msg`; `bytes` goes along as `bytes` and is transferred, not copied.
fn post(msg: &ToPage, bytes: Option<&ArrayBuffer>) {
    let text = serde_json::to_string(msg).unwrap_or_default();
    let envelope = Object::new();
    let _ = Reflect::set(&envelope, &"msg".into(), &text.into());
    let sent = match bytes {
        Some(bytes) => {
            let _ = Reflect::set(&envelope, &"bytes".into(), bytes);
            scope().post_message_with_transfer(&envelope, &Array::of1(bytes))
        }
        None => scope().post_message(&envelope),
    };
    if let Err(err) = sent {
        web_sys::console::error_1(&err);
    }
}

fn status(text: impl Into<String>) {
    post(&ToPage::Status { text: text.into() }, None);
}

async fn handle(event: MessageEvent) {
    let data = event.data();
    let msg = Reflect::get(&data, &"msg".into()).ok().and_then(|v| v.as_string());
    let msg: ToWorker = match msg.as_deref().map(serde_json::from_str) {
        Some(Ok(msg)) => msg,
        other => {
            let message = format!("the worker got a message it does not understand: {other:?}");
            return post(&ToPage::Error { message, index: None }, None);
        }
    };
    match msg {
        ToWorker::Load { model } => {
            let start = now_s();
            match load(&model).await {
                Ok((loaded, adapter)) => {
                    MODEL.with(|m| *m.borrow_mut() = Some(Rc::new(loaded)));
                    post(&ToPage::Ready { adapter, seconds: now_s() - start }, None);
                }
                Err(message) => post(&ToPage::Error { message, index: None }, None),
            }
        }
        ToWorker::Segment => {
            let files = Reflect::get(&data, &"files".into()).unwrap_or(JsValue::UNDEFINED);
            if let Err(message) = segment(Array::from(&files)).await {
                post(&ToPage::Error { message, index: None }, None);
            }
        }
    }
}

/// `config.json` and weights URLs for a model URL: a `.safetensors` file (config beside it) or a
/// directory holding `config.json` + `model.safetensors`. Only this site and the Hugging Face hub are
/// fetched from (the worker is not bound by the page's CSP).
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
    } else {
        let base = if path.ends_with('/') { url.href() } else { format!("{}{path}/", url.origin()) };
        Ok((format!("{base}config.json"), format!("{base}model.safetensors"), false))
    }
}

async fn load(model_url: &str) -> Result<(Loaded, String), String> {
    let (config_url, weights_url, config_optional) = model_urls(model_url)?;
    status("checking WebGPU ...");
    let adapter = probe_webgpu().await?;
    status(format!("starting WebGPU on {adapter} ..."));
    let device = device().await?;
    status(format!("fetching {config_url} ..."));
    let config = match fetch(&config_url).await {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| format!("{config_url} is not UTF-8 text"))?;
            SegGptConfig::from_json(&text).map_err(|e| format!("{config_url}: {e}"))?
        }
        Err(Fetch::Status(404)) if config_optional => SegGptConfig::default(),
        Err(err) => return Err(err.describe(&config_url)),
    };
    status(format!("downloading {weights_url} ..."));
    let bytes = fetch(&weights_url).await.map_err(|e| e.describe(&weights_url))?;
    status(format!("loading {} MB of weights onto the GPU ...", bytes.len() / 1_000_000));
    let source = SafetensorsSource::from_bytes(bytes).map_err(|e| format!("{weights_url}: {e}"))?;
    let model = SegGpt::load(&source, config, &device).map_err(|e| format!("{weights_url}: {e}"))?;
    Ok((Loaded { model, device }, adapter))
}

/// Checks for WebGPU and an adapter before burn asks for one, for a clear error and a readable name.
/// (`WorkerNavigator::gpu` is unstable in web-sys, hence `Reflect`.)
async fn probe_webgpu() -> Result<String, String> {
    let get = |target: &JsValue, key: &str| Reflect::get(target, &key.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err(NO_WEBGPU.into());
    }
    let request: Function = get(&gpu, "requestAdapter").dyn_into().map_err(|_| NO_WEBGPU.to_string())?;
    let promise: Promise = request.call0(&gpu).map_err(|e| js_text(&e))?.unchecked_into();
    let adapter = JsFuture::from(promise).await.map_err(|e| format!("WebGPU requestAdapter failed: {}", js_text(&e)))?;
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

/// burn's WebGPU device, initialised once per worker.
async fn device() -> Result<Device, String> {
    if let Some(device) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("WebGPU device initialisation failed: {e}"))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

enum Fetch {
    Status(u16),
    Network(String),
}

impl Fetch {
    fn describe(&self, url: &str) -> String {
        match self {
            Fetch::Status(code) => format!("{url}: the server answered HTTP {code}"),
            Fetch::Network(why) => format!("{url}: download failed ({why})"),
        }
    }
}

/// The whole body of `url` (this slice holds the model file in memory).
async fn fetch(url: &str) -> Result<Vec<u8>, Fetch> {
    let network = |e: JsValue| Fetch::Network(js_text(&e));
    let response: Response = JsFuture::from(scope().fetch_with_str(url)).await.map_err(network)?.unchecked_into();
    if !response.ok() {
        return Err(Fetch::Status(response.status()));
    }
    let body = JsFuture::from(response.array_buffer().map_err(network)?).await.map_err(network)?;
    Ok(Uint8Array::new(&body).to_vec())
}

async fn read_file(file: &JsValue) -> Result<(Vec<u8>, String), String> {
    let file: &File = file.dyn_ref().ok_or("the page sent something that is not a file")?;
    let bytes = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("cannot read {}: {}", file.name(), js_text(&e)))?;
    Ok((Uint8Array::new(&bytes).to_vec(), file.name()))
}

/// `files` = [prompt image, prompt mask, targets...]; posts one `Result` (or `Error`) per target.
async fn segment(files: Array) -> Result<(), String> {
    let loaded = MODEL.with(|m| m.borrow().clone()).ok_or("the model is not loaded yet")?;
    if files.length() < 3 {
        return Err("segmenting needs a prompt image, its mask and at least one target".into());
    }
    let (image, image_name) = read_file(&files.get(0)).await?;
    let (mask, mask_name) = read_file(&files.get(1)).await?;
    let prompt = Prompt::decode(&image, &image_name, &mask, &mask_name, None).map_err(|e| e.to_string())?;
    let segmenter = Segmenter::new(&loaded.model, &loaded.device, &[prompt], ForwardOptions::default())
        .map_err(|e| e.to_string())?;
    for (index, file) in files.iter().skip(2).enumerate() {
        post(&ToPage::Running { index }, None);
        let start = now_s();
        match segment_one(&segmenter, &file).await {
            Ok(png) => {
                let bytes = Uint8Array::from(png.as_slice()).buffer();
                post(&ToPage::Result { index, seconds: now_s() - start }, Some(&bytes));
            }
            Err(message) => post(&ToPage::Error { message, index: Some(index) }, None),
        }
    }
    Ok(())
}

/// One target: decode, forward, asynchronous read-back (sync reads panic on wasm), mask PNG.
async fn segment_one(segmenter: &Segmenter<'_>, file: &JsValue) -> Result<Vec<u8>, String> {
    let (bytes, name) = read_file(file).await?;
    let target = Target::decode(&bytes, &name).map_err(|e| e.to_string())?;
    let pred = segmenter.predict(&target, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let data = pred.into_data_async().await.map_err(|e| format!("reading the result from the GPU failed: {e}"))?;
    let values = data.try_into_vec_as::<f32>().map_err(|e| format!("unexpected result data: {e:?}"))?;
    let result = segmenter.finish(values, &target, None).map_err(|e| e.to_string())?;
    result.mask_png().map_err(|e| e.to_string())
}
