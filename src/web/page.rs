//! The page side: reads the inputs, starts the worker, shows status, errors and results.
//! Every hook is a `data-testid` in the static `www/index.html`.

use std::cell::RefCell;

use js_sys::{Array, ArrayBuffer, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Blob, BlobPropertyBag, CanvasRenderingContext2d, Document, Element, ErrorEvent, File, HtmlAnchorElement,
    HtmlButtonElement, HtmlCanvasElement, HtmlInputElement, ImageBitmap, MessageEvent, Url, UrlSearchParams,
    Worker, WorkerOptions, WorkerType,
};

use super::js_text;
use super::protocol::{ToPage, ToWorker};

/// Where the model comes from without `?model=`: the released ViT-L on the Hugging Face hub.
const DEFAULT_MODEL: &str = "https://huggingface.co/BAAI/seggpt-vit-large/resolve/main/";
/// Opacity of the mask over the target (the official overlay's alpha, MODEL-SPEC 6.1).
const MASK_ALPHA: f64 = 0.6;

struct Page {
    worker: Worker,
    model: String,
    /// The targets of the current run, in the order sent to the worker.
    targets: Vec<File>,
}

thread_local! {
    static PAGE: RefCell<Option<Page>> = const { RefCell::new(None) };
}

/// Entry point of `www/main.js`.
#[wasm_bindgen]
pub fn run_page() -> Result<(), JsValue> {
    console_error_panic_hook::set_once();
    let model = model_url()?;
    set_text("model-status", "starting the worker ...");
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    let worker = Worker::new_with_options("./worker.js", &options)?;

    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| on_worker_message(event));
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let onerror = Closure::<dyn FnMut(ErrorEvent)>::new(|event: ErrorEvent| {
        show_error(&format!("the worker failed: {}", event.message()));
        set_text("model-status", "failed");
    });
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    onerror.forget();

    let onclick = Closure::<dyn FnMut()>::new(|| {
        if let Err(message) = start_segment() {
            show_error(&message);
        }
    });
    by_testid("segment")?.add_event_listener_with_callback("click", onclick.as_ref().unchecked_ref())?;
    onclick.forget();

    PAGE.with(|p| *p.borrow_mut() = Some(Page { worker, model, targets: Vec::new() }));
    Ok(())
}

/// `?model=URL` resolved against the page (so `/model/` works), else [`DEFAULT_MODEL`].
fn model_url() -> Result<String, JsValue> {
    let location = window().location();
    let query = UrlSearchParams::new_with_str(&location.search()?)?;
    match query.get("model") {
        Some(model) => Ok(Url::new_with_base(&model, &location.href()?)
            .map_err(|_| JsValue::from_str(&format!("?model={model} is not a URL")))?
            .href()),
        None => Ok(DEFAULT_MODEL.into()),
    }
}

fn send(msg: &ToWorker, files: Option<&Array>) {
    PAGE.with(|p| {
        let page = p.borrow();
        let Some(page) = page.as_ref() else { return };
        let envelope = Object::new();
        let _ = Reflect::set(&envelope, &"msg".into(), &serde_json::to_string(msg).unwrap_or_default().into());
        if let Some(files) = files {
            let _ = Reflect::set(&envelope, &"files".into(), files);
        }
        if let Err(err) = page.worker.post_message(&envelope) {
            show_error(&format!("cannot reach the worker: {}", js_text(&err)));
        }
    });
}

fn on_worker_message(event: MessageEvent) {
    let data = event.data();
    let text = Reflect::get(&data, &"msg".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    let msg: ToPage = match serde_json::from_str(&text) {
        Ok(msg) => msg,
        Err(err) => return show_error(&format!("unreadable message from the worker ({err}): {text}")),
    };
    match msg {
        ToPage::Started => {
            let model = PAGE.with(|p| p.borrow().as_ref().map(|p| p.model.clone())).unwrap_or_default();
            set_text("model-status", &format!("loading {model} ..."));
            send(&ToWorker::Load { model }, None);
        }
        ToPage::Status { text } => set_text("model-status", &text),
        ToPage::Ready { adapter, seconds } => {
            set_text("model-status", &format!("ready on {adapter} (loaded in {seconds:.1} s)"));
            enable_segment_when_idle();
        }
        ToPage::Running { index } => set_result_state(index, "running"),
        ToPage::Result { index, seconds } => {
            let bytes = Reflect::get(&data, &"bytes".into()).unwrap_or(JsValue::UNDEFINED);
            spawn_local(async move {
                if let Err(err) = show_result(index, bytes.unchecked_into(), seconds).await {
                    show_error(&format!("cannot show result {}: {}", index + 1, js_text(&err)));
                    set_result_state(index, "error");
                }
                enable_segment_when_idle();
            });
        }
        ToPage::Error { message, index } => {
            show_error(&message);
            match index {
                Some(index) => set_result_state(index, "error"),
                None => set_all_pending_results("error"),
            }
            if !status_text().starts_with("ready") {
                set_text("model-status", "failed");
            }
            enable_segment_when_idle();
        }
        ToPage::Fatal { message } => {
            show_error(&format!("the model worker crashed: {message}. Reload the page to try again."));
            set_all_pending_results("error");
            set_text("model-status", "failed");
        }
    }
}

/// Sends the chosen files to the worker and makes one `result` placeholder per target.
fn start_segment() -> Result<(), String> {
    hide_error();
    let files = |id: &str| -> Vec<File> {
        let input = by_testid(id).ok().and_then(|e| e.dyn_into::<HtmlInputElement>().ok());
        let list = input.and_then(|i| i.files());
        list.map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect()).unwrap_or_default()
    };
    let image = files("prompt-image").into_iter().next().ok_or("choose a prompt image")?;
    let mask = files("prompt-mask").into_iter().next().ok_or("choose the prompt's mask")?;
    let targets = files("target-input");
    if targets.is_empty() {
        return Err("choose at least one target image".into());
    }
    let results = by_testid("results").map_err(|e| js_text(&e))?;
    results.set_inner_html("");
    for target in &targets {
        let figure = result_element(&target.name()).map_err(|e| js_text(&e))?;
        results.append_child(&figure).map_err(|e| js_text(&e))?;
    }
    let list = Array::of2(&image, &mask);
    for target in &targets {
        list.push(target);
    }
    PAGE.with(|p| {
        if let Some(page) = p.borrow_mut().as_mut() {
            page.targets = targets;
        }
    });
    set_segment_enabled(false);
    send(&ToWorker::Segment, Some(&list));
    Ok(())
}

/// One run at a time: the button comes back once the model is ready and no result is still open.
fn enable_segment_when_idle() {
    let open = document()
        .query_selector("[data-testid=result][data-state=pending], [data-testid=result][data-state=running]")
        .ok()
        .flatten();
    set_segment_enabled(open.is_none() && status_text().starts_with("ready"));
}

fn set_segment_enabled(enabled: bool) {
    if let Ok(button) = by_testid("segment") {
        button.unchecked_into::<HtmlButtonElement>().set_disabled(!enabled);
    }
}

/// `<figure data-testid=result data-state=pending>` with a caption, a canvas and a hidden download link.
fn result_element(name: &str) -> Result<Element, JsValue> {
    let doc = document();
    let figure = doc.create_element("figure")?;
    figure.set_attribute("data-testid", "result")?;
    figure.set_attribute("data-state", "pending")?;
    let caption = doc.create_element("figcaption")?;
    caption.set_text_content(Some(name));
    let canvas = doc.create_element("canvas")?;
    canvas.set_attribute("data-testid", "result-canvas")?;
    let link = doc.create_element("a")?;
    link.set_attribute("data-testid", "download-mask")?;
    link.set_attribute("download", &format!("{}.mask.png", stem(name)))?;
    link.set_attribute("hidden", "")?;
    link.set_text_content(Some("Download mask"));
    figure.append_child(&caption)?;
    figure.append_child(&canvas)?;
    figure.append_child(&link)?;
    Ok(figure)
}

/// Draws the mask over the target (`target * (a * mask + 1 - a)` = multiply at alpha `a`, MODEL-SPEC
/// 6.1) and arms the download link with the mask PNG the worker encoded (the CLI's bytes).
async fn show_result(index: usize, png: ArrayBuffer, seconds: f64) -> Result<(), JsValue> {
    let target = PAGE
        .with(|p| p.borrow().as_ref().and_then(|p| p.targets.get(index).cloned()))
        .ok_or_else(|| JsValue::from_str("no such target"))?;
    let figure = result(index)?;
    let options = BlobPropertyBag::new();
    options.set_type("image/png");
    let blob = Blob::new_with_buffer_source_sequence_and_options(&Array::of1(&png), &options)?;
    let target_bitmap: ImageBitmap = JsFuture::from(window().create_image_bitmap_with_blob(&target)?).await?.into();
    let mask_bitmap: ImageBitmap = JsFuture::from(window().create_image_bitmap_with_blob(&blob)?).await?.into();

    let canvas: HtmlCanvasElement = child(&figure, "result-canvas")?.unchecked_into();
    canvas.set_width(target_bitmap.width());
    canvas.set_height(target_bitmap.height());
    let ctx: CanvasRenderingContext2d =
        canvas.get_context("2d")?.ok_or_else(|| JsValue::from_str("no 2D canvas"))?.unchecked_into();
    ctx.draw_image_with_image_bitmap(&target_bitmap, 0.0, 0.0)?;
    ctx.set_global_alpha(MASK_ALPHA);
    ctx.set_global_composite_operation("multiply")?;
    ctx.draw_image_with_image_bitmap(&mask_bitmap, 0.0, 0.0)?;

    let link: HtmlAnchorElement = child(&figure, "download-mask")?.unchecked_into();
    link.set_href(&Url::create_object_url_with_blob(&blob)?);
    link.remove_attribute("hidden")?;
    figure.set_attribute("data-seconds", &format!("{seconds:.3}"))?;
    figure.set_attribute("data-state", "done")?;
    Ok(())
}

fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

fn window() -> web_sys::Window {
    web_sys::window().expect("run_page runs on a page")
}

fn document() -> Document {
    window().document().expect("a page has a document")
}

fn by_testid(id: &str) -> Result<Element, JsValue> {
    document()
        .query_selector(&format!("[data-testid={id}]"))?
        .ok_or_else(|| JsValue::from_str(&format!("index.html lacks data-testid={id}")))
}

fn child(parent: &Element, id: &str) -> Result<Element, JsValue> {
    parent
        .query_selector(&format!("[data-testid={id}]"))?
        .ok_or_else(|| JsValue::from_str(&format!("result lacks data-testid={id}")))
}

fn result(index: usize) -> Result<Element, JsValue> {
    let all = document().query_selector_all("[data-testid=result]")?;
    all.get(index as u32)
        .and_then(|n| n.dyn_into::<Element>().ok())
        .ok_or_else(|| JsValue::from_str(&format!("no result {index}")))
}

fn set_result_state(index: usize, state: &str) {
    if let Ok(figure) = result(index) {
        let _ = figure.set_attribute("data-state", state);
    }
}

fn set_all_pending_results(state: &str) {
    if let Ok(all) = document().query_selector_all("[data-testid=result][data-state=pending], [data-testid=result][data-state=running]") {
        for i in 0..all.length() {
            if let Some(figure) = all.get(i).and_then(|n| n.dyn_into::<Element>().ok()) {
                let _ = figure.set_attribute("data-state", state);
            }
        }
    }
}

fn set_text(id: &str, text: &str) {
    if let Ok(element) = by_testid(id) {
        element.set_text_content(Some(text));
    }
}

fn status_text() -> String {
    by_testid("model-status").ok().and_then(|e| e.text_content()).unwrap_or_default()
}

fn show_error(message: &str) {
    web_sys::console::error_1(&message.into());
    if let Ok(element) = by_testid("error") {
        element.set_text_content(Some(message));
        let _ = element.remove_attribute("hidden");
    }
}

fn hide_error() {
    if let Ok(element) = by_testid("error") {
        let _ = element.set_attribute("hidden", "");
    }
}
