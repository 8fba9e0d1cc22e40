//! The JavaScript package's API (`www/package/`, docs/PACKAGE.md): SegGPT inside another page. It is a
//! second front end of the app's own worker: the same `worker.js`, the same [`protocol`] messages, the
//! same storage cache, so the package and the page share one implementation of everything the model
//! does, and this module only turns promises into messages and answers back into promises.
//!
//! The worker answers strictly in the order it is asked, so each request waits in a queue and the
//! answers go to the request at its front.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::{Clamped, JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{Blob, File, HtmlCanvasElement, HtmlImageElement, ImageBitmap, ImageData, Url};

use super::js_text;
use super::page::dom::{bitmap_png_file, blob, document, file_of};
use super::page::worker_link::WorkerLink;
use super::protocol::{
    self, DeviceChoice, MaskFile, ModelSource, PromptFiles, ResultBuffers, RunOptions, SegmentFiles, ToPage,
    ToWorker,
};
use crate::paint::opaque_rgba;
use crate::{EmbeddingType, Ensemble};

/// `SegGPT.load`'s options (`onProgress`, a function, is read apart).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadOptions {
    /// A directory URL (`config.json` + `model.safetensors`, or shards) or a `.safetensors` URL,
    /// relative to the page.
    model: String,
    #[serde(default)]
    dtype: Dtype,
    #[serde(default)]
    device: DeviceChoice,
    #[serde(default = "yes")]
    cache: bool,
}

fn yes() -> bool {
    true
}

/// The float type asked for: `auto` and `f16` compute in f16 where the adapter has `shader-f16`
/// (the page's default), `f32` always in f32.
#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Dtype {
    #[default]
    Auto,
    F32,
    F16,
}

/// `model.segment`'s options besides the images (which are read apart: serde cannot carry them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SegmentOptions {
    #[serde(default = "default_ensemble")]
    ensemble: Ensemble,
    #[serde(default = "default_embedding")]
    embedding: EmbeddingType,
    /// Mask images are class-index PNGs (0 background, 1.. classes) rather than colours.
    #[serde(default)]
    class_masks: bool,
    #[serde(default)]
    num_classes: Option<u32>,
}

fn default_ensemble() -> Ensemble {
    Ensemble::Official
}

fn default_embedding() -> EmbeddingType {
    EmbeddingType::Instance
}

/// A request waiting for the worker's answers.
enum Waiting {
    Load {
        resolve: Function,
        reject: Function,
    },
    Segment {
        results: Vec<JsValue>,
        answered: usize,
        error: Option<String>,
        resolve: Function,
        reject: Function,
    },
}

/// What the loaded model runs on, from the worker's `Ready`.
#[derive(Default, Clone)]
struct ReadyInfo {
    adapter: String,
    dtype: String,
    note: String,
    max_prompts: usize,
}

struct Session {
    link: Option<WorkerLink>,
    /// The `Load` message, posted once the worker says it listens.
    load: Option<Object>,
    on_progress: Option<Function>,
    waiting: VecDeque<Waiting>,
    ready: ReadyInfo,
    /// Why the worker is gone (crashed, disposed): every later request is refused with it.
    gone: Option<String>,
}

/// A JavaScript call to make once the session is no longer borrowed (a callback may call back in).
type Call = (Function, JsValue);

impl Session {
    fn on_message(&mut self, data: &JsValue) -> Result<Vec<Call>, String> {
        let msg: ToPage = protocol::message(data)?;
        let mut calls = Vec::new();
        match msg {
            ToPage::Started => {
                if let (Some(load), Some(link)) = (self.load.take(), &self.link) {
                    link.post(&load).map_err(|e| js_text(&e))?;
                }
            }
            ToPage::Progress { text, done, total } => {
                if let Some(callback) = &self.on_progress {
                    let progress = Object::new();
                    set(&progress, "text", &text.into());
                    set(&progress, "done", &done.into());
                    set(&progress, "total", &total.into());
                    calls.push((callback.clone(), progress.into()));
                }
            }
            ToPage::Ready { adapter, dtype, note, max_prompts, .. } => {
                self.ready = ReadyInfo { adapter, dtype, note, max_prompts };
                if let Some(Waiting::Load { resolve, .. }) = self.waiting.pop_front() {
                    calls.push((resolve, JsValue::UNDEFINED));
                }
            }
            ToPage::LoadFailed { message } => calls.extend(self.fail_all(&message)),
            ToPage::Result { index, seconds, width, height, colours, num_classes } => {
                let buffers = ResultBuffers::from_js(data)?;
                let result = result_object(index, seconds, width, height, &colours, num_classes, buffers)
                    .map_err(|e| js_text(&e))?;
                calls.extend(self.answer(index, Ok(result)));
            }
            ToPage::Error { message, index: Some(index) } => {
                calls.extend(self.answer(index, Err(format!("target {}: {message}", index + 1))))
            }
            ToPage::Error { message, index: None } => {
                if let Some(Waiting::Segment { reject, .. }) = self.waiting.pop_front() {
                    calls.push((reject, error(&message)));
                }
            }
            ToPage::Fatal { message } => calls.extend(self.fail_all(&message)),
            _ => {}
        }
        Ok(calls)
    }

    /// Target `index` of the front request is answered; the request ends with its last target.
    fn answer(&mut self, index: usize, answer: Result<JsValue, String>) -> Vec<Call> {
        let Some(Waiting::Segment { results, answered, error: first_error, .. }) = self.waiting.front_mut()
        else {
            return Vec::new();
        };
        match answer {
            Ok(result) if index < results.len() => results[index] = result,
            Ok(_) => {}
            Err(message) => {
                first_error.get_or_insert(message);
            }
        }
        *answered += 1;
        if *answered < results.len() {
            return Vec::new();
        }
        match self.waiting.pop_front() {
            Some(Waiting::Segment { error: Some(message), reject, .. }) => vec![(reject, error(&message))],
            Some(Waiting::Segment { results, resolve, .. }) => {
                vec![(resolve, results.into_iter().collect::<Array>().into())]
            }
            _ => Vec::new(),
        }
    }

    /// The worker is gone: every waiting request is refused with `why`, and so is every later one.
    fn fail_all(&mut self, why: &str) -> Vec<Call> {
        self.gone = Some(why.to_string());
        self.link = None;
        self.waiting
            .drain(..)
            .map(|waiting| match waiting {
                Waiting::Load { reject, .. } | Waiting::Segment { reject, .. } => (reject, error(why)),
            })
            .collect()
    }
}

/// Makes the calls a message asked for, the session no longer borrowed.
fn make(calls: Vec<Call>) {
    for (function, argument) in calls {
        let _ = function.call1(&JsValue::UNDEFINED, &argument);
    }
}

/// An `Error` with the app's text; the package's `index.js` makes it a `SegGPTError`.
fn error(message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    error.set_name("SegGPTError");
    error.into()
}

fn set(object: &Object, field: &str, value: &JsValue) {
    // Setting a property on a plain object cannot fail.
    let _ = Reflect::set(object, &field.into(), value);
}

/// The options object `value` of `call`: `known` read by serde, `apart` (functions, images) by the caller.
/// Any other key is refused, so that a misspelt option is not silently ignored (serde-wasm-bindgen reads
/// only the fields it knows).
fn parse<T: serde::de::DeserializeOwned>(
    value: &JsValue,
    known: &[&str],
    apart: &[&str],
    call: &str,
) -> Result<T, JsValue> {
    if !value.is_object() {
        return Err(error(&format!("{call}: give an object of options")));
    }
    let copy = Object::assign(&Object::new(), value.unchecked_ref());
    for key in Object::keys(&copy).iter().filter_map(|key| key.as_string()) {
        if apart.contains(&key.as_str()) {
            let _ = Reflect::delete_property(&copy, &key.as_str().into());
        } else if !known.contains(&key.as_str()) {
            let all = known.iter().chain(apart).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            return Err(error(&format!("{call}: unknown option `{key}` (the options are {all})")));
        }
    }
    serde_wasm_bindgen::from_value(copy.into()).map_err(|e| {
        let text = e.to_string();
        error(&format!("{call}: {}", text.strip_prefix("Error: ").unwrap_or(&text)))
    })
}

fn get(object: &JsValue, field: &str) -> JsValue {
    Reflect::get(object, &field.into()).unwrap_or(JsValue::UNDEFINED)
}

/// A loaded model (the package's `SegGPT` wraps it).
#[wasm_bindgen]
pub struct SegGptModel {
    session: Rc<RefCell<Session>>,
}

/// Starts the worker at `worker_url` and loads the model `options` name; resolves to the model once
/// it is on its device. The package's `SegGPT.load`.
#[wasm_bindgen(js_name = loadModel)]
pub fn load_model(options: JsValue, worker_url: String) -> Promise {
    future_to_promise(async move {
        let parsed: LoadOptions =
            parse(&options, &["model", "dtype", "device", "cache"], &["onProgress"], "SegGPT.load")?;
        let on_progress = match get(&options, "onProgress") {
            none if none.is_undefined() || none.is_null() => None,
            callback => Some(
                callback
                    .dyn_into::<Function>()
                    .map_err(|_| error("SegGPT.load: `onProgress` must be a function"))?,
            ),
        };
        let base = document().base_uri().ok().flatten().unwrap_or_default();
        let url = Url::new_with_base(&parsed.model, &base)
            .map_err(|_| error(&format!("SegGPT.load: `{}` is not a web address", parsed.model)))?
            .href();
        let load = ToWorker::Load {
            source: ModelSource::Url { url },
            half: parsed.dtype != Dtype::F32,
            cache: parsed.cache,
            device: parsed.device,
        };
        let session = Rc::new(RefCell::new(Session {
            link: None,
            load: Some(protocol::envelope(&load).map_err(|e| error(&e))?),
            on_progress,
            waiting: VecDeque::new(),
            ready: ReadyInfo::default(),
            gone: None,
        }));
        let loaded = Promise::new(&mut |resolve, reject| {
            session.borrow_mut().waiting.push_back(Waiting::Load { resolve, reject });
        });
        let on_message = {
            let session = session.clone();
            move |data: JsValue| {
                let calls = session.borrow_mut().on_message(&data);
                match calls {
                    Ok(calls) => make(calls),
                    Err(why) => web_sys::console::error_1(&format!("seggpt-web: {why}").into()),
                }
            }
        };
        let on_crash = {
            let session = session.clone();
            move |why: String| {
                let calls = session.borrow_mut().fail_all(&why);
                make(calls);
            }
        };
        let link = WorkerLink::spawn(&worker_url, on_message, on_crash).map_err(|e| error(&js_text(&e)))?;
        session.borrow_mut().link = Some(link);
        JsFuture::from(loaded).await?;
        Ok(SegGptModel { session }.into())
    })
}

#[wasm_bindgen]
impl SegGptModel {
    /// The device: the WebGPU adapter's name, or the CPU.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.session.borrow().ready.adapter.clone()
    }

    /// The float type the model computes in: `f32` or `f16`.
    #[wasm_bindgen(getter)]
    pub fn dtype(&self) -> String {
        self.session.borrow().ready.dtype.clone()
    }

    /// Where the weights came from and how they are kept (the page's note under its status).
    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.session.borrow().ready.note.clone()
    }

    /// The most prompts one `segment` may have on this device (after the ensemble's arithmetic).
    #[wasm_bindgen(getter, js_name = maxPrompts)]
    pub fn max_prompts(&self) -> usize {
        self.session.borrow().ready.max_prompts
    }

    /// Segments every target with every prompt; resolves to one result per target, in order.
    pub fn segment(&self, request: JsValue) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            if let Some(why) = &session.borrow().gone {
                return Err(error(why));
            }
            let options: SegmentOptions = parse(
                &request,
                &["ensemble", "embedding", "classMasks", "numClasses"],
                &["prompts", "targets"],
                "segment",
            )?;
            let files = segment_files(&request).await.map_err(|e| error(&e))?;
            let targets = files.targets.len();
            let run = RunOptions {
                embedding: options.embedding,
                ensemble: options.ensemble,
                class_masks: options.class_masks,
                num_classes: options.num_classes,
                tile: None,
            };
            let envelope = protocol::envelope(&ToWorker::Segment { options: run }).map_err(|e| error(&e))?;
            files.to_js(&envelope);
            let answered = Promise::new(&mut |resolve, reject| {
                let mut session = session.borrow_mut();
                let posted = match (&session.gone, &session.link) {
                    (Some(why), _) => Err(why.clone()),
                    (None, Some(link)) => link.post(&envelope).map_err(|e| js_text(&e)),
                    (None, None) => Err("the model is not loaded".to_string()),
                };
                match posted {
                    Ok(()) => session.waiting.push_back(Waiting::Segment {
                        results: vec![JsValue::UNDEFINED; targets],
                        answered: 0,
                        error: None,
                        resolve,
                        reject,
                    }),
                    Err(why) => {
                        let _ = reject.call1(&JsValue::UNDEFINED, &error(&why));
                    }
                }
            });
            JsFuture::from(answered).await
        })
    }

    /// Stops the worker and frees the model; later calls are refused.
    pub fn dispose(&self) {
        let calls = self.session.borrow_mut().fail_all("the model was disposed");
        make(calls);
    }
}

/// The request's images as the files the protocol carries: `prompts: [{ image, mask }]` and
/// `targets: [image]`, each a `File`, `Blob`, `ImageBitmap`, `HTMLImageElement` or `HTMLCanvasElement`.
async fn segment_files(request: &JsValue) -> Result<SegmentFiles, String> {
    let list = |field: &str| -> Result<Array, String> {
        get(request, field).dyn_into::<Array>().map_err(|_| format!("segment: `{field}` must be a list"))
    };
    let (prompt_list, target_list) = (list("prompts")?, list("targets")?);
    if prompt_list.length() == 0 {
        return Err("segment: give at least one prompt (an image and its mask)".into());
    }
    if target_list.length() == 0 {
        return Err("segment: give at least one target image".into());
    }
    let mut prompts = Vec::new();
    for (i, prompt) in prompt_list.iter().enumerate() {
        let n = i + 1;
        let image = image_file(&get(&prompt, "image"), &format!("prompt-{n}.png")).await?;
        let mask = image_file(&get(&prompt, "mask"), &format!("prompt-{n}-mask.png")).await?;
        prompts.push(PromptFiles { image, mask: MaskFile::File(mask) });
    }
    let mut targets = Vec::new();
    for (i, target) in target_list.iter().enumerate() {
        targets.push(image_file(&target, &format!("target-{}.png", i + 1)).await?);
    }
    Ok(SegmentFiles { prompts, targets })
}

/// An image as a file: a `File` as it is, a `Blob` named `name`, and a bitmap, image element or
/// canvas as a bitmap encoded as PNG (through the browser's canvas, which may convert colours of an
/// image with a colour profile: pass the file for the exact pixels).
async fn image_file(value: &JsValue, name: &str) -> Result<File, String> {
    if let Some(file) = value.dyn_ref::<File>() {
        return Ok(file.clone());
    }
    if let Some(blob) = value.dyn_ref::<Blob>() {
        return file_of(blob, name).map_err(|e| js_text(&e));
    }
    let window = web_sys::window().ok_or("no window")?;
    let bitmap = if let Some(bitmap) = value.dyn_ref::<ImageBitmap>() {
        bitmap.clone()
    } else {
        let promise = if let Some(image) = value.dyn_ref::<HtmlImageElement>() {
            if !image.complete() || image.natural_width() == 0 {
                return Err(format!("{name}: the <img> has not loaded an image yet"));
            }
            window.create_image_bitmap_with_html_image_element(image)
        } else if let Some(canvas) = value.dyn_ref::<HtmlCanvasElement>() {
            window.create_image_bitmap_with_html_canvas_element(canvas)
        } else {
            return Err(format!(
                "{name}: an image must be a File, Blob, ImageBitmap, HTMLImageElement or HTMLCanvasElement"
            ));
        };
        let drawn = async { JsFuture::from(promise?).await?.dyn_into::<ImageBitmap>() };
        drawn.await.map_err(|e| format!("{name}: cannot draw it: {}", js_text(&e)))?
    };
    bitmap_png_file(&bitmap, name).await.map_err(|e| {
        format!("{name}: cannot read its pixels (an image from another origin?): {}", js_text(&e))
    })
}

/// One target's result: `{ index, width, height, seconds, colours, numClasses, maskPng, mask, labels }`.
fn result_object(
    index: usize,
    seconds: f64,
    width: u32,
    height: u32,
    colours: &[[u8; 3]],
    num_classes: Option<u32>,
    buffers: ResultBuffers,
) -> Result<JsValue, JsValue> {
    let object = Object::new();
    set(&object, "index", &(index as f64).into());
    set(&object, "width", &width.into());
    set(&object, "height", &height.into());
    set(&object, "seconds", &seconds.into());
    let colours: Array =
        colours.iter().map(|c| c.iter().map(|&v| JsValue::from(v)).collect::<Array>()).collect();
    set(&object, "colours", &colours);
    set(&object, "numClasses", &num_classes.map_or(JsValue::NULL, JsValue::from));
    set(&object, "maskPng", &blob(&buffers.mask_png, "image/png")?.into());
    let rgba = opaque_rgba(&buffers.mask_rgb);
    let mask = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), width, height)?;
    set(&object, "mask", &mask.into());
    set(&object, "labels", &Uint8Array::from(buffers.labels.as_slice()));
    Ok(object.into())
}
