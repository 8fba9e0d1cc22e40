//! The page side: model source and status, prompts (files or painted masks), targets, options,
//! results with their overlay, downloads; it starts (and restarts) the worker. Every hook is a
//! `data-testid` in the static `www/index.html`.

use std::cell::RefCell;

use js_sys::{Array, ArrayBuffer, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{Clamped, JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Blob, BlobPropertyBag, CanvasRenderingContext2d, DataTransfer, Document, DragEvent, Element, ErrorEvent,
    Event, File, FileList, HtmlAnchorElement, HtmlButtonElement, HtmlCanvasElement, HtmlElement,
    HtmlInputElement, HtmlProgressElement, HtmlSelectElement, HtmlTemplateElement, ImageBitmap, ImageData,
    MessageEvent, PointerEvent, Url, UrlSearchParams, Worker, WorkerOptions, WorkerType,
};

use super::js_text;
use super::protocol::{
    self, MaskFile, ModelFiles, ModelSource, PromptFiles, ResultBuffers, RunOptions, SegmentFiles, ToPage,
    ToWorker,
};
use crate::paint::{BRUSH_COLOURS, PaintMask, Rect, visible_mask_rgba};
use crate::pipeline::{RgbImage, encode_rgb_png};
use crate::{EmbeddingType, Ensemble};

/// Where the model comes from without `?model=`: the released ViT-L on the Hugging Face hub.
const DEFAULT_MODEL: &str = "https://huggingface.co/BAAI/seggpt-vit-large/resolve/main/";
/// Alpha of painted strokes over the prompt image while painting.
const PAINT_ALPHA: u8 = 170;

struct Painting {
    mask: PaintMask,
    drawing: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum MaskMode {
    None,
    File,
    Painted,
}

struct PromptUi {
    root: Element,
    mode: MaskMode,
    painting: Option<Painting>,
    brush: usize,
}

struct ResultView {
    name: String,
    target: File,
    bitmap: Option<ImageBitmap>,
    png: Vec<u8>,
    rgb: Vec<u8>,
    labels: Vec<u8>,
    hidden: Vec<bool>,
    width: u32,
    height: u32,
    done: bool,
    /// The mask as drawn (hidden colours white), rebuilt only when a toggle changes.
    mask_canvas: Option<HtmlCanvasElement>,
}

struct Page {
    worker: Option<Worker>,
    source: ModelSource,
    model_files: Vec<File>,
    prompts: Vec<PromptUi>,
    results: Vec<ResultView>,
    ready: bool,
    /// Targets of the current run not yet done or failed.
    remaining: usize,
    max_prompts: usize,
    /// `?debug=panic`: the next run also makes the worker panic (tests the restart path).
    #[cfg(feature = "test-hooks")]
    debug_panic: bool,
    /// Half precision where the GPU has `shader-f16` (the default; `?dtype=f32` turns it off).
    half: bool,
    /// Keep downloaded weights in browser storage (the default; `?cache=off` turns it off).
    cache: bool,
}

thread_local! {
    static PAGE: RefCell<Option<Page>> = const { RefCell::new(None) };
}

fn with_page<R>(f: impl FnOnce(&mut Page) -> R) -> Option<R> {
    PAGE.with(|p| p.borrow_mut().as_mut().map(f))
}

/// Entry point of `www/main.js`.
#[wasm_bindgen]
pub fn run_page() -> Result<(), JsValue> {
    std::panic::set_hook(Box::new(|info| {
        show_error(&format!("The page failed: {info}. Reload the page."), false);
        console_error_panic_hook::hook(info);
    }));
    let source = ModelSource::Url { url: model_url()? };
    let query = UrlSearchParams::new_with_str(&window().location().search()?)?;
    #[cfg(feature = "test-hooks")]
    let debug_panic = query.get("debug").as_deref() == Some("panic");
    let half = query.get("dtype").as_deref() != Some("f32");
    let cache = query.get("cache").as_deref() != Some("off");
    PAGE.with(|p| {
        *p.borrow_mut() = Some(Page {
            worker: None,
            source,
            model_files: Vec::new(),
            prompts: Vec::new(),
            results: Vec::new(),
            ready: false,
            remaining: 0,
            max_prompts: usize::MAX,
            #[cfg(feature = "test-hooks")]
            debug_panic,
            half,
            cache,
        })
    });
    fill_select("embedding", EmbeddingType::ALL.map(|e| (e.name(), protocol::embedding_label(e))))?;
    fill_select("ensemble", Ensemble::ALL.map(|e| (e.name(), protocol::ensemble_label(e))))?;
    add_prompt()?;
    on(&by_testid("add-prompt")?, "click", |_| report(add_prompt()))?;
    on(&by_testid("segment")?, "click", |_| {
        if let Err(message) = start_segment() {
            show_error(&message, false);
        }
    })?;
    on(&by_testid("model-file")?, "change", |_| load_picked_model())?;
    on(&by_testid("clear-cache")?, "click", |_| send(&ToWorker::ClearCache, |_| {}))?;
    on(&by_testid("retry")?, "click", |_| {
        hide_error();
        report(start_worker());
    })?;
    // A file dropped outside a drop zone must not navigate away from the app.
    for kind in ["dragover", "drop"] {
        let handler = Closure::<dyn FnMut(Event)>::new(|event: Event| event.prevent_default());
        document().add_event_listener_with_callback(kind, handler.as_ref().unchecked_ref())?;
        handler.forget();
    }
    on(&by_testid("opacity")?, "input", |_| redraw_all_results())?;
    on(&by_testid("download-all")?, "click", |_| spawn_local(async { report(download_all().await) }))?;
    on(&by_testid("target-input")?, "change", |_| update_target_count())?;
    for zone in elements(&document(), ".drop[data-drop=model], .drop[data-drop=targets]")? {
        wire_drop(&zone)?;
    }
    let paste = Closure::<dyn FnMut(Event)>::new(on_paste);
    document().add_event_listener_with_callback("paste", paste.as_ref().unchecked_ref())?;
    paste.forget();
    start_worker()
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

// ---------------------------------------------------------------- worker

/// Starts a fresh worker (first load, or after a crash); it asks for the model once it listens.
fn start_worker() -> Result<(), JsValue> {
    set_text("model-status", "starting the worker ...");
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    let worker = Worker::new_with_options("./worker.js", &options)?;
    // Messages of a worker that was replaced (a crash, a new model) are ignored.
    let this = worker.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if with_page(|p| p.worker.as_ref() == Some(&this)).unwrap_or(false) {
            on_worker_message(event);
        }
    });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    // A panic reaches the page twice: the worker's own `fatal` message, which says why, and this
    // error event, which can come first. Give the message a moment before settling for the event.
    // (A script that fails to load gives a plain `Event`, not an `ErrorEvent`.)
    let this = worker.clone();
    let onerror = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
        let why = event
            .dyn_ref::<ErrorEvent>()
            .map(|e| e.message())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "its script could not be loaded".into());
        let message = format!("The model worker failed to start or crashed: {why}");
        let this = this.clone();
        let later = Closure::once_into_js(move || {
            let current = with_page(|p| p.worker.as_ref() == Some(&this)).unwrap_or(false);
            if current {
                worker_died(&message);
            }
        });
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), 500);
    });
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    onerror.forget();
    with_page(|p| {
        if let Some(old) = p.worker.replace(worker) {
            old.terminate();
        }
        p.ready = false;
    });
    update_segment_button();
    Ok(())
}

fn send(msg: &ToWorker, attach: impl FnOnce(&js_sys::Object)) {
    let worker = with_page(|p| p.worker.clone()).flatten();
    let Some(worker) = worker else {
        return show_error("The model worker is not running: press Retry.", true);
    };
    let envelope = match protocol::envelope(msg) {
        Ok(envelope) => envelope,
        Err(message) => return show_error(&message, false),
    };
    attach(&envelope);
    if let Err(err) = worker.post_message(&envelope) {
        show_error(&format!("cannot reach the model worker: {}", js_text(&err)), true);
    }
}

fn send_load() {
    let (source, files, half, cache) =
        match with_page(|p| (p.source.clone(), p.model_files.clone(), p.half, p.cache)) {
            Some(v) => v,
            None => return,
        };
    let label = match &source {
        ModelSource::Url { url } => url.clone(),
        ModelSource::Files => "the chosen files".into(),
    };
    set_text("model-status", &format!("loading {label} ..."));
    set_text("model-note", "");
    with_page(|p| p.ready = false);
    update_segment_button();
    send(&ToWorker::Load { source, half, cache }, |envelope| ModelFiles(files).to_js(envelope));
}

/// The worker is gone (crash, GPU out of memory, device lost): stop it, keep everything the user
/// gave, offer Retry (a new worker reloads the model, from browser storage when it is there).
fn worker_died(message: &str) {
    with_page(|p| {
        if let Some(worker) = p.worker.take() {
            worker.terminate();
        }
        p.ready = false;
        p.remaining = 0;
    });
    set_all_open_results("error");
    set_text("run-status", "");
    set_text("model-status", "stopped");
    hide("model-progress");
    show_error(message, true);
    update_segment_button();
}

fn on_worker_message(event: MessageEvent) {
    let data = event.data();
    let msg: ToPage = match protocol::message(&data) {
        Ok(msg) => msg,
        Err(err) => return show_error(&format!("from the worker: {err}"), false),
    };
    match msg {
        ToPage::Started => send_load(),
        // This page loads at once; it does not ask first.
        ToPage::Inspected { .. } => {}
        ToPage::Progress { text, done, total } => {
            set_text("model-status", &text);
            if let Ok(bar) = by_testid("model-progress") {
                let bar: HtmlProgressElement = bar.unchecked_into();
                if total > 0.0 {
                    bar.set_max(total);
                    bar.set_value(done);
                } else {
                    let _ = bar.remove_attribute("value");
                }
                let _ = bar.remove_attribute("hidden");
            }
        }
        ToPage::Ready { adapter, dtype, seconds, note, max_prompts } => {
            with_page(|p| {
                p.ready = true;
                p.max_prompts = max_prompts;
            });
            hide("model-progress");
            set_text("model-status", &format!("ready on {adapter} ({dtype}, loaded in {seconds:.1} s)"));
            let limit = if max_prompts < 64 {
                format!("; up to {max_prompts} prompts on this GPU")
            } else {
                String::new()
            };
            set_text("model-note", &format!("{note}{limit}"));
            hide_error();
            update_segment_button();
        }
        ToPage::Running { index } => {
            set_result_state(index, "running");
            let total = with_page(|p| p.results.len()).unwrap_or(0);
            set_text("run-status", &format!("segmenting {} of {total} ...", index + 1));
        }
        ToPage::Result { index, seconds, width, height, colours, num_classes: _ } => {
            let ResultBuffers { mask_png: png, mask_rgb: rgb, labels } = match ResultBuffers::from_js(&data) {
                Ok(buffers) => buffers,
                Err(message) => return show_error(&message, false),
            };
            spawn_local(async move {
                let shown = show_result(index, png, rgb, labels, width, height, colours, seconds).await;
                if let Err(err) = shown {
                    show_error(&format!("cannot show result {}: {}", index + 1, js_text(&err)), false);
                    set_result_state(index, "error");
                }
                target_finished();
            });
        }
        ToPage::Error { message, index } => {
            show_error(&message, false);
            match index {
                Some(index) => {
                    set_result_state(index, "error");
                    if let Ok(figure) = result_element(index) {
                        let _ = figure.set_attribute("title", &message);
                    }
                    target_finished();
                }
                None => {
                    // A run-level error (bad prompt, too many prompts...): the run is over.
                    if with_page(|p| std::mem::take(&mut p.remaining)).unwrap_or(0) > 0 {
                        set_all_open_results("error");
                        set_text("run-status", "");
                    }
                    update_segment_button();
                }
            }
        }
        ToPage::LoadFailed { message } => {
            set_text("model-status", "failed: retry, or load other weights from files");
            hide("model-progress");
            show_error(&message, true);
            update_segment_button();
        }
        ToPage::CacheCleared => {
            set_text("model-note", "Browser storage cleared: the next visit downloads the model again.")
        }
        ToPage::Fatal { message } => worker_died(&message),
    }
}

fn target_finished() {
    let left = with_page(|p| {
        p.remaining = p.remaining.saturating_sub(1);
        p.remaining
    });
    if left == Some(0) {
        set_text("run-status", "");
        update_segment_button();
    }
}

fn update_segment_button() {
    let (ready, idle, any_done) =
        with_page(|p| (p.ready, p.remaining == 0, p.results.iter().any(|r| r.done)))
            .unwrap_or((false, false, false));
    set_disabled("segment", !(ready && idle));
    set_disabled("download-all", !(any_done && idle));
}

// ---------------------------------------------------------------- model files

fn load_picked_model() {
    let Some(files) = input_files("model-file") else { return };
    if files.is_empty() {
        return;
    }
    with_page(|p| {
        p.source = ModelSource::Files;
        p.model_files = files;
        p.remaining = 0;
    });
    // The same files can be picked again (after a failure) and still fire `change`.
    if let Ok(input) = by_testid("model-file") {
        input.unchecked_into::<HtmlInputElement>().set_value("");
    }
    hide_error();
    // A fresh worker: it cancels a load or run in flight and frees the old model's GPU memory.
    set_all_open_results("error");
    set_text("run-status", "");
    report(start_worker());
}

// ---------------------------------------------------------------- prompts

fn add_prompt() -> Result<(), JsValue> {
    let count = with_page(|p| p.prompts.len()).unwrap_or(0);
    let template: HtmlTemplateElement = document()
        .get_element_by_id("prompt-template")
        .ok_or_else(|| JsValue::from_str("index.html lacks the prompt template"))?
        .unchecked_into();
    let root: Element = template
        .content()
        .first_element_child()
        .ok_or_else(|| JsValue::from_str("empty prompt template"))?
        .clone_node_with_deep(true)?
        .unchecked_into();
    by_testid("prompts")?.append_child(&root)?;
    if count == 0 {
        child(&root, "remove-prompt")?.set_attribute("hidden", "")?;
    }
    let swatches = child(&root, "brush-colours")?;
    for (i, colour) in BRUSH_COLOURS.iter().enumerate() {
        let swatch: HtmlElement = document().create_element("button")?.unchecked_into();
        swatch.set_attribute("type", "button")?;
        swatch.set_attribute("data-testid", "brush-colour")?;
        swatch.set_attribute(
            "aria-label",
            &format!("colour rgb({}, {}, {})", colour[0], colour[1], colour[2]),
        )?;
        swatch.set_class_name(if i == 0 { "swatch selected" } else { "swatch" });
        swatch.style().set_property("background-color", &css_rgb(*colour))?;
        let root_for = root.clone();
        on(&swatch, "click", move |_| select_brush(&root_for, i))?;
        swatches.append_child(&swatch)?;
    }
    with_page(|p| {
        p.prompts.push(PromptUi { root: root.clone(), mode: MaskMode::None, painting: None, brush: 0 })
    });
    renumber_prompts();

    let r = root.clone();
    on(&child(&root, "prompt-image")?, "change", move |_| {
        let r = r.clone();
        spawn_local(async move {
            // A new image: any painting restarts at its size.
            let painting = with_prompt(&r, |p| p.painting.is_some()).unwrap_or(false);
            if painting {
                report(start_painting(&r).await);
            }
            update_mask_state(&r);
        });
    })?;
    let r = root.clone();
    on(&child(&root, "prompt-mask")?, "change", move |_| {
        let has_file = prompt_file(&r, "prompt-mask").is_some();
        with_prompt(&r, |p| {
            p.mode = match (has_file, p.painting.is_some()) {
                (true, _) => MaskMode::File,
                (false, true) => MaskMode::Painted,
                (false, false) => MaskMode::None,
            }
        });
        update_mask_state(&r);
    })?;
    let r = root.clone();
    on(&child(&root, "paint-mask")?, "click", move |_| {
        // Back to an existing painting keeps its strokes; otherwise start one.
        let resumed = with_prompt(&r, |p| {
            let has = p.painting.is_some();
            if has {
                p.mode = MaskMode::Painted;
            }
            has
        });
        if resumed == Some(true) {
            update_mask_state(&r);
            return;
        }
        let r = r.clone();
        spawn_local(async move { report(start_painting(&r).await) });
    })?;
    let r = root.clone();
    on(&child(&root, "remove-prompt")?, "click", move |_| {
        with_page(|p| p.prompts.retain(|u| u.root != r));
        r.remove();
        renumber_prompts();
    })?;
    let r = root.clone();
    on(&child(&root, "undo")?, "click", move |_| {
        with_prompt(&r, |p| p.painting.as_mut().map(|g| g.mask.undo()));
        redraw_painting(&r, None);
    })?;
    let r = root.clone();
    on(&child(&root, "clear-mask")?, "click", move |_| {
        with_prompt(&r, |p| p.painting.as_mut().map(|g| g.mask.clear()));
        redraw_painting(&r, None);
    })?;
    let r = root.clone();
    on(&child(&root, "download-prompt-mask")?, "click", move |_| report(arm_painted_download(&r)))?;
    wire_painting(&root)?;
    wire_drop(&root)?;
    Ok(())
}

fn renumber_prompts() {
    let roots: Vec<Element> =
        with_page(|p| p.prompts.iter().map(|u| u.root.clone()).collect()).unwrap_or_default();
    for (i, root) in roots.iter().enumerate() {
        if let Ok(Some(number)) = root.query_selector(".prompt-number") {
            number.set_text_content(Some(&(i + 1).to_string()));
        }
    }
}

fn with_prompt<R>(root: &Element, f: impl FnOnce(&mut PromptUi) -> R) -> Option<R> {
    with_page(|p| p.prompts.iter_mut().find(|u| &u.root == root).map(f)).flatten()
}

fn prompt_file(root: &Element, id: &str) -> Option<File> {
    let input: HtmlInputElement = child(root, id).ok()?.unchecked_into();
    input.files()?.get(0)
}

fn select_brush(root: &Element, index: usize) {
    with_prompt(root, |p| p.brush = index);
    if let Ok(swatches) = elements(root, "[data-testid=brush-colour]") {
        for (i, swatch) in swatches.iter().enumerate() {
            swatch.set_class_name(if i == index { "swatch selected" } else { "swatch" });
        }
    }
    if let Ok(eraser) = child(root, "eraser") {
        eraser.unchecked_into::<HtmlInputElement>().set_checked(false);
    }
}

fn update_mask_state(root: &Element) {
    let (mode, size) =
        with_prompt(root, |p| (p.mode, p.painting.as_ref().map(|g| (g.mask.width(), g.mask.height()))))
            .unwrap_or((MaskMode::None, None));
    let text = match (mode, size) {
        (MaskMode::Painted, Some((w, h))) => format!("mask: painted ({w} x {h})"),
        (MaskMode::File, _) => {
            format!("mask: {}", prompt_file(root, "prompt-mask").map(|f| f.name()).unwrap_or_default())
        }
        _ => "no mask yet".to_string(),
    };
    if let Ok(state) = child(root, "mask-state") {
        state.set_text_content(Some(&text));
    }
}

/// Shows the prompt image with a paintable mask canvas of the same (natural) size on top.
async fn start_painting(root: &Element) -> Result<(), JsValue> {
    let image = prompt_file(root, "prompt-image")
        .ok_or_else(|| JsValue::from_str("choose the prompt image first, then paint its mask"))?;
    let bitmap: ImageBitmap = JsFuture::from(image_bitmap(&image)?)
        .await
        .map_err(|_| JsValue::from_str(&format!("{} is not an image this browser can show", image.name())))?
        .unchecked_into();
    let (w, h) = (bitmap.width(), bitmap.height());
    for id in ["prompt-canvas", "mask-canvas"] {
        let canvas: HtmlCanvasElement = child(root, id)?.unchecked_into();
        canvas.set_width(w);
        canvas.set_height(h);
    }
    let image_canvas: HtmlCanvasElement = child(root, "prompt-canvas")?.unchecked_into();
    context(&image_canvas)?.draw_image_with_image_bitmap(&bitmap, 0.0, 0.0)?;
    with_prompt(root, |p| {
        p.painting = Some(Painting { mask: PaintMask::new(w, h), drawing: false });
        p.mode = MaskMode::Painted;
    });
    for selector in [".paint-tools", ".paint"] {
        if let Some(element) = root.query_selector(selector)? {
            element.remove_attribute("hidden")?;
        }
    }
    redraw_painting(root, None);
    update_mask_state(root);
    Ok(())
}

fn wire_painting(root: &Element) -> Result<(), JsValue> {
    let canvas: HtmlCanvasElement = child(root, "mask-canvas")?.unchecked_into();
    let r = root.clone();
    let c = canvas.clone();
    on(&canvas, "pointerdown", move |event| {
        let event: PointerEvent = event.unchecked_into();
        event.prevent_default();
        let _ = c.set_pointer_capture(event.pointer_id());
        let (x, y) = canvas_point(&c, &event);
        let (radius, colour) = brush(&r);
        let changed = with_prompt(&r, |p| {
            let g = p.painting.as_mut()?;
            g.drawing = true;
            g.mask.begin(x, y, radius, colour)
        });
        if let Some(Some(rect)) = changed {
            redraw_painting(&r, Some(rect));
        }
    })?;
    let r = root.clone();
    let c = canvas.clone();
    on(&canvas, "pointermove", move |event| {
        let event: PointerEvent = event.unchecked_into();
        let (x, y) = canvas_point(&c, &event);
        let (radius, colour) = brush(&r);
        let changed = with_prompt(&r, |p| match p.painting.as_mut() {
            Some(g) if g.drawing => g.mask.extend(x, y, radius, colour),
            _ => None,
        });
        if let Some(Some(rect)) = changed {
            redraw_painting(&r, Some(rect));
        }
    })?;
    for kind in ["pointerup", "pointercancel"] {
        let r = root.clone();
        on(&canvas, kind, move |_| {
            with_prompt(&r, |p| {
                if let Some(g) = p.painting.as_mut() {
                    g.drawing = false;
                    g.mask.end();
                }
            });
            update_mask_state(&r);
        })?;
    }
    Ok(())
}

/// Pointer position in image pixels (the canvas is CSS-scaled).
fn canvas_point(canvas: &HtmlCanvasElement, event: &PointerEvent) -> (f64, f64) {
    let rect = canvas.get_bounding_client_rect();
    let sx = f64::from(canvas.width()) / rect.width().max(1.0);
    let sy = f64::from(canvas.height()) / rect.height().max(1.0);
    ((f64::from(event.client_x()) - rect.left()) * sx, (f64::from(event.client_y()) - rect.top()) * sy)
}

/// Brush radius (image pixels) and colour (black when erasing).
fn brush(root: &Element) -> (f64, [u8; 3]) {
    let size = child(root, "brush-size")
        .ok()
        .and_then(|e| e.unchecked_into::<HtmlInputElement>().value().parse::<f64>().ok())
        .unwrap_or(12.0);
    let erasing =
        child(root, "eraser").map(|e| e.unchecked_into::<HtmlInputElement>().checked()).unwrap_or(false);
    let index = with_prompt(root, |p| p.brush).unwrap_or(0);
    (size, if erasing { [0, 0, 0] } else { BRUSH_COLOURS[index.min(BRUSH_COLOURS.len() - 1)] })
}

/// Redraws the painted strokes over the image: only `rect` (what a stroke changed) or everything.
fn redraw_painting(root: &Element, rect: Option<Rect>) {
    let rgba = with_prompt(root, |p| {
        p.painting.as_ref().map(|g| {
            let rect = rect.unwrap_or_else(|| g.mask.full());
            (g.mask.overlay_rgba(rect, PAINT_ALPHA), rect)
        })
    })
    .flatten();
    let Some((rgba, rect)) = rgba else { return };
    let draw = || -> Result<(), JsValue> {
        let canvas: HtmlCanvasElement = child(root, "mask-canvas")?.unchecked_into();
        let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), rect.width, rect.height)?;
        context(&canvas)?.put_image_data(&image, f64::from(rect.x), f64::from(rect.y))
    };
    report(draw());
}

/// Points the prompt's "download this mask" link at a PNG of the painted mask.
fn arm_painted_download(root: &Element) -> Result<(), JsValue> {
    let mask = with_prompt(root, |p| {
        p.painting.as_ref().map(|g| (g.mask.rgb().to_vec(), g.mask.width(), g.mask.height()))
    })
    .flatten();
    let Some((rgb, w, h)) = mask else { return Err("paint a mask first".into()) };
    let png = RgbImage::new(w, h, rgb)
        .and_then(|m| encode_rgb_png(&m))
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let link: HtmlAnchorElement = child(root, "download-prompt-mask")?.unchecked_into();
    link.set_href(&Url::create_object_url_with_blob(&png_blob(&png)?)?);
    Ok(())
}

// ---------------------------------------------------------------- files: drop and paste

fn wire_drop(zone: &Element) -> Result<(), JsValue> {
    on(zone, "dragover", |event| event.prevent_default())?;
    let z = zone.clone();
    on(zone, "drop", move |event| {
        event.prevent_default();
        event.stop_propagation();
        let event: DragEvent = event.unchecked_into();
        if let Some(files) = event.data_transfer().and_then(|d| d.files()) {
            report(files_arrived(&z, &list(&files)));
        }
    })
}

/// Files dropped on a zone: weights on the model box, images on a prompt (image first, then
/// mask) or on the targets.
fn files_arrived(zone: &Element, files: &[File]) -> Result<(), JsValue> {
    match zone.get_attribute("data-drop").as_deref() {
        Some("model") => set_input_files(&by_testid("model-file")?, files),
        Some("targets") => {
            let mut all = input_files("target-input").unwrap_or_default();
            all.extend(files.iter().cloned());
            set_input_files(&by_testid("target-input")?, &all)
        }
        Some("prompt") => {
            let mut files = files.iter();
            if prompt_file(zone, "prompt-image").is_none() {
                if let Some(image) = files.next() {
                    set_input_files(&child(zone, "prompt-image")?, std::slice::from_ref(image))?;
                }
            }
            if let Some(mask) = files.next() {
                set_input_files(&child(zone, "prompt-mask")?, std::slice::from_ref(mask))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Pasted images go to the prompt under the pointer focus, else to the targets.
fn on_paste(event: Event) {
    let event: web_sys::ClipboardEvent = event.unchecked_into();
    let Some(files) = event.clipboard_data().and_then(|d| d.files()) else { return };
    let files = list(&files);
    if files.is_empty() {
        return;
    }
    event.prevent_default();
    let focused = document().active_element().and_then(|e| e.closest(".prompt").ok().flatten());
    let zone = focused.map_or_else(|| document().query_selector(".drop[data-drop=targets]"), |p| Ok(Some(p)));
    if let Ok(Some(zone)) = zone {
        report(files_arrived(&zone, &files));
    }
}

fn set_input_files(input: &Element, files: &[File]) -> Result<(), JsValue> {
    let transfer = DataTransfer::new()?;
    for file in files {
        transfer.items().add_with_file(file)?;
    }
    let input: &HtmlInputElement = input.unchecked_ref();
    input.set_files(Some(&transfer.files().ok_or_else(|| JsValue::from_str("no file list"))?));
    input.dispatch_event(&Event::new("change")?)?;
    Ok(())
}

fn update_target_count() {
    let n = input_files("target-input").map_or(0, |f| f.len());
    set_text("target-count", &if n == 1 { "1 image".to_string() } else { format!("{n} images") });
}

// ---------------------------------------------------------------- segmenting

fn selected(id: &str) -> String {
    by_testid(id).map(|e| e.unchecked_into::<HtmlSelectElement>().value()).unwrap_or_default()
}

/// Checks the inputs, sends them to the worker and makes one `result` placeholder per target.
fn start_segment() -> Result<(), String> {
    hide_error();
    let prompts: Vec<(Element, MaskMode, Option<(Vec<u8>, u32, u32)>)> = with_page(|p| {
        p.prompts
            .iter()
            .map(|u| {
                let painted =
                    u.painting.as_ref().map(|g| (g.mask.rgb().to_vec(), g.mask.width(), g.mask.height()));
                (u.root.clone(), u.mode, painted)
            })
            .collect()
    })
    .unwrap_or_default();
    let max_prompts = with_page(|p| p.max_prompts).unwrap_or(usize::MAX);
    if prompts.len() > max_prompts {
        return Err(format!(
            "your GPU allows at most {max_prompts} prompts at a time: remove {} of them",
            prompts.len() - max_prompts
        ));
    }
    let mut prompt_files = Vec::new();
    for (i, (root, mode, painted)) in prompts.into_iter().enumerate() {
        let n = i + 1;
        let image = prompt_file(&root, "prompt-image").ok_or(format!("prompt {n}: choose its image"))?;
        let mask = match (mode, painted) {
            (MaskMode::Painted, Some((rgb, width, height))) => {
                if rgb.iter().all(|&v| v == 0) {
                    return Err(format!("prompt {n}: the painted mask is empty; paint what to find"));
                }
                MaskFile::Painted { rgb, width, height }
            }
            (MaskMode::File, _) => MaskFile::File(
                prompt_file(&root, "prompt-mask").ok_or(format!("prompt {n}: choose its mask"))?,
            ),
            _ => return Err(format!("prompt {n}: give its mask (a file, or paint it)")),
        };
        prompt_files.push(PromptFiles { image, mask });
    }
    let targets = input_files("target-input").unwrap_or_default();
    if targets.is_empty() {
        return Err("choose at least one target image".into());
    }
    let results = by_testid("results").map_err(|e| js_text(&e))?;
    results.set_inner_html("");
    let mut views = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let figure = new_result_element(index, &target.name()).map_err(|e| js_text(&e))?;
        results.append_child(&figure).map_err(|e| js_text(&e))?;
        views.push(ResultView {
            name: target.name(),
            target: target.clone(),
            bitmap: None,
            png: Vec::new(),
            rgb: Vec::new(),
            labels: Vec::new(),
            hidden: Vec::new(),
            width: 0,
            height: 0,
            done: false,
            mask_canvas: None,
        });
    }
    with_page(|p| {
        p.results = views;
        p.remaining = targets.len();
    });
    update_segment_button();
    set_text("run-status", "starting ...");
    let embedding = selected("embedding");
    let ensemble = selected("ensemble");
    let options = RunOptions {
        embedding: EmbeddingType::ALL.into_iter().find(|e| e.name() == embedding).unwrap_or_default(),
        ensemble: Ensemble::ALL.into_iter().find(|e| e.name() == ensemble).unwrap_or(Ensemble::Official),
        class_masks: by_testid("class-masks")
            .map(|e| e.unchecked_into::<HtmlInputElement>().checked())
            .unwrap_or(false),
        num_classes: None,
    };
    let files = SegmentFiles { prompts: prompt_files, targets: targets.clone() };
    send(&ToWorker::Segment { options }, |envelope| files.to_js(envelope));
    #[cfg(feature = "test-hooks")]
    if with_page(|p| std::mem::take(&mut p.debug_panic)) == Some(true) {
        send(&ToWorker::DebugPanic, |_| {});
    }
    Ok(())
}

/// `<figure data-testid=result data-state=pending>`: caption, canvas, colour toggles, downloads.
fn new_result_element(index: usize, name: &str) -> Result<Element, JsValue> {
    let doc = document();
    let figure = doc.create_element("figure")?;
    figure.set_attribute("data-testid", "result")?;
    figure.set_attribute("data-state", "pending")?;
    let caption = doc.create_element("figcaption")?;
    caption.set_text_content(Some(name));
    let canvas = doc.create_element("canvas")?;
    canvas.set_attribute("data-testid", "result-canvas")?;
    let toggles = doc.create_element("div")?;
    toggles.set_attribute("data-testid", "colour-toggles")?;
    toggles.set_class_name("toggles");
    let links = doc.create_element("p")?;
    links.set_class_name("row");
    let mask = doc.create_element("a")?;
    mask.set_attribute("data-testid", "download-mask")?;
    mask.set_attribute("download", &format!("{}.mask.png", stem(name)))?;
    mask.set_attribute("hidden", "")?;
    mask.set_text_content(Some("Mask PNG"));
    let overlay = doc.create_element("button")?;
    overlay.set_attribute("type", "button")?;
    overlay.set_attribute("data-testid", "download-overlay")?;
    overlay.set_attribute("hidden", "")?;
    overlay.set_text_content(Some("Overlay PNG"));
    on(&overlay, "click", move |_| spawn_local(async move { report(download_overlay(index).await) }))?;
    links.append_child(&mask)?;
    links.append_child(&overlay)?;
    for child in [&caption, &canvas, &toggles, &links] {
        figure.append_child(child)?;
    }
    Ok(figure)
}

/// Stores a result, draws it over its target, adds the colour toggles and arms the downloads.
#[allow(clippy::too_many_arguments)]
async fn show_result(
    index: usize,
    png: Vec<u8>,
    rgb: Vec<u8>,
    labels: Vec<u8>,
    width: u32,
    height: u32,
    colours: Vec<[u8; 3]>,
    seconds: f64,
) -> Result<(), JsValue> {
    let target = with_page(|p| p.results.get(index).map(|r| r.target.clone()))
        .flatten()
        .ok_or_else(|| JsValue::from_str("no such target"))?;
    let bitmap: ImageBitmap = JsFuture::from(image_bitmap(&target)?).await?.unchecked_into();
    if labels.len() as u64 != u64::from(width) * u64::from(height) || rgb.len() != labels.len() * 3 {
        return Err(JsValue::from_str("the worker sent a result of inconsistent size"));
    }
    let blob = png_blob(&png)?;
    with_page(|p| {
        if let Some(view) = p.results.get_mut(index) {
            view.bitmap = Some(bitmap);
            view.png = png;
            view.rgb = rgb;
            view.labels = labels;
            view.hidden = vec![false; colours.len()];
            view.width = width;
            view.height = height;
            view.done = true;
            view.mask_canvas = None;
        }
    });
    let figure = result_element(index)?;
    let toggles = child(&figure, "colour-toggles")?;
    for (i, colour) in colours.iter().enumerate() {
        let label = document().create_element("label")?;
        let input: HtmlInputElement = document().create_element("input")?.unchecked_into();
        input.set_type("checkbox");
        input.set_checked(true);
        input.set_attribute("data-testid", "colour-toggle")?;
        input.set_attribute("aria-label", &format!("show {}", css_rgb(*colour)))?;
        let swatch: HtmlElement = document().create_element("span")?.unchecked_into();
        swatch.set_class_name("swatch");
        swatch.style().set_property("background-color", &css_rgb(*colour))?;
        let i_input = input.clone();
        on(&input, "change", move |_| {
            let shown = i_input.checked();
            with_page(|p| {
                if let Some(view) = p.results.get_mut(index) {
                    if let Some(hidden) = view.hidden.get_mut(i) {
                        *hidden = !shown;
                    }
                    view.mask_canvas = None;
                }
            });
            report(draw_result(index));
        })?;
        label.append_child(&input)?;
        label.append_child(&swatch)?;
        toggles.append_child(&label)?;
    }
    draw_result(index)?;
    let link: HtmlAnchorElement = child(&figure, "download-mask")?.unchecked_into();
    link.set_href(&Url::create_object_url_with_blob(&blob)?);
    link.remove_attribute("hidden")?;
    child(&figure, "download-overlay")?.remove_attribute("hidden")?;
    figure.set_attribute("data-seconds", &format!("{seconds:.3}"))?;
    figure.set_attribute("data-state", "done")?;
    Ok(())
}

fn opacity() -> f64 {
    by_testid("opacity")
        .ok()
        .and_then(|e| e.unchecked_into::<HtmlInputElement>().value().parse().ok())
        .unwrap_or(0.6)
}

/// The official overlay `target * (a * mask / 255 + 1 - a)` (MODEL-SPEC 6.1) is exactly a multiply
/// blend at alpha `a`; hidden colours are drawn white, the blend's identity.
/// The opacity slider only re-blends; the mask pixels are recomputed when a toggle changes.
fn draw_result(index: usize) -> Result<(), JsValue> {
    let view = with_page(|p| {
        p.results
            .get(index)
            .filter(|r| r.done)
            .map(|r| (r.bitmap.clone(), r.mask_canvas.clone(), r.width, r.height))
    })
    .flatten();
    let Some((Some(bitmap), cached, w, h)) = view else { return Ok(()) };
    let mask = match cached {
        Some(mask) => mask,
        None => {
            let rgba =
                with_page(|p| p.results.get(index).map(|r| visible_mask_rgba(&r.rgb, &r.labels, &r.hidden)))
                    .flatten()
                    .unwrap_or_default();
            let mask: HtmlCanvasElement = document().create_element("canvas")?.unchecked_into();
            mask.set_width(w);
            mask.set_height(h);
            let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w, h)?;
            context(&mask)?.put_image_data(&image, 0.0, 0.0)?;
            with_page(|p| p.results.get_mut(index).map(|r| r.mask_canvas = Some(mask.clone())));
            mask
        }
    };
    let canvas: HtmlCanvasElement = child(&result_element(index)?, "result-canvas")?.unchecked_into();
    canvas.set_width(w);
    canvas.set_height(h);
    let ctx = context(&canvas)?;
    ctx.draw_image_with_image_bitmap_and_dw_and_dh(&bitmap, 0.0, 0.0, f64::from(w), f64::from(h))?;
    ctx.set_global_alpha(opacity());
    ctx.set_global_composite_operation("multiply")?;
    ctx.draw_image_with_html_canvas_element(&mask, 0.0, 0.0)?;
    ctx.set_global_alpha(1.0);
    ctx.set_global_composite_operation("source-over")?;
    Ok(())
}

fn redraw_all_results() {
    let n = with_page(|p| p.results.len()).unwrap_or(0);
    for index in 0..n {
        report(draw_result(index));
    }
}

/// The result canvas as PNG bytes (what is on screen: overlay at the current opacity and toggles).
async fn overlay_png(index: usize) -> Result<Vec<u8>, JsValue> {
    let canvas: HtmlCanvasElement = child(&result_element(index)?, "result-canvas")?.unchecked_into();
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        if let Err(err) = canvas.to_blob_with_type(&resolve, "image/png") {
            let _ = reject.call1(&JsValue::NULL, &err);
        }
    });
    let blob: Blob = JsFuture::from(promise).await?.dyn_into()?;
    let buffer: ArrayBuffer = JsFuture::from(blob.array_buffer()).await?.unchecked_into();
    Ok(Uint8Array::new(&buffer).to_vec())
}

async fn download_overlay(index: usize) -> Result<(), JsValue> {
    let name = with_page(|p| p.results.get(index).map(|r| r.name.clone())).flatten().unwrap_or_default();
    let png = overlay_png(index).await?;
    save(&png_blob(&png)?, &format!("{}.overlay.png", stem(&name)))
}

/// Every finished result's mask and overlay PNGs in one ZIP.
async fn download_all() -> Result<(), JsValue> {
    let done: Vec<(usize, String, Vec<u8>)> = with_page(|p| {
        p.results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.done)
            .map(|(i, r)| (i, r.name.clone(), r.png.clone()))
            .collect()
    })
    .unwrap_or_default();
    let mut entries = Vec::new();
    for (index, name, png) in done {
        entries.push((format!("{}.mask.png", stem(&name)), png));
        entries.push((format!("{}.overlay.png", stem(&name)), overlay_png(index).await?));
    }
    let zip = crate::archive::zip_stored(&entries).map_err(|e| JsValue::from_str(&e))?;
    let options = BlobPropertyBag::new();
    options.set_type("application/zip");
    let blob = Blob::new_with_u8_array_sequence_and_options(
        &Array::of1(&Uint8Array::from(zip.as_slice())),
        &options,
    )?;
    save(&blob, "seggpt-results.zip")
}

/// Starts a download of `blob` as `name`.
fn save(blob: &Blob, name: &str) -> Result<(), JsValue> {
    let url = Url::create_object_url_with_blob(blob)?;
    let link: HtmlAnchorElement = document().create_element("a")?.unchecked_into();
    link.set_href(&url);
    link.set_download(name);
    link.click();
    // Revoke later: the download has started reading by then.
    let revoke = Closure::once_into_js(move || {
        let _ = Url::revoke_object_url(&url);
    });
    window().set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000)?;
    Ok(())
}

/// `createImageBitmap(file, {imageOrientation: "none"})`: pixels as stored, ignoring EXIF rotation,
/// as the decoder the model reads them with does (so painted masks and overlays line up).
fn image_bitmap(file: &Blob) -> Result<Promise, JsValue> {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"imageOrientation".into(), &"none".into())?;
    let create: Function = Reflect::get(&window(), &"createImageBitmap".into())?.dyn_into()?;
    Ok(create.call2(&window(), file, &options)?.unchecked_into())
}

fn png_blob(png: &[u8]) -> Result<Blob, JsValue> {
    let options = BlobPropertyBag::new();
    options.set_type("image/png");
    Blob::new_with_u8_array_sequence_and_options(&Array::of1(&Uint8Array::from(png)), &options)
}

// ---------------------------------------------------------------- DOM helpers

fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

fn css_rgb(c: [u8; 3]) -> String {
    format!("rgb({}, {}, {})", c[0], c[1], c[2])
}

fn window() -> web_sys::Window {
    web_sys::window().expect("run_page runs on a page")
}

fn document() -> Document {
    window().document().expect("a page has a document")
}

fn on(target: &Element, kind: &str, handler: impl FnMut(Event) + 'static) -> Result<(), JsValue> {
    let closure = Closure::<dyn FnMut(Event)>::new(handler);
    target.add_event_listener_with_callback(kind, closure.as_ref().unchecked_ref())?;
    closure.forget();
    Ok(())
}

fn context(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, JsValue> {
    Ok(canvas.get_context("2d")?.ok_or_else(|| JsValue::from_str("no 2D canvas"))?.unchecked_into())
}

/// The options of a `<select>`, `(value, label)`, the first selected.
fn fill_select<const N: usize>(id: &str, options: [(&str, &str); N]) -> Result<(), JsValue> {
    let select = by_testid(id)?;
    select.set_inner_html("");
    for (value, label) in options {
        let option = document().create_element("option")?;
        option.set_attribute("value", value)?;
        option.set_text_content(Some(label));
        select.append_child(&option)?;
    }
    Ok(())
}

fn by_testid(id: &str) -> Result<Element, JsValue> {
    document()
        .query_selector(&format!("[data-testid={id}]"))?
        .ok_or_else(|| JsValue::from_str(&format!("index.html lacks data-testid={id}")))
}

fn child(parent: &Element, id: &str) -> Result<Element, JsValue> {
    parent
        .query_selector(&format!("[data-testid={id}]"))?
        .ok_or_else(|| JsValue::from_str(&format!("missing data-testid={id}")))
}

fn elements(parent: &impl AsRef<web_sys::Node>, selector: &str) -> Result<Vec<Element>, JsValue> {
    let node: &web_sys::Node = parent.as_ref();
    let list = if let Some(element) = node.dyn_ref::<Element>() {
        element.query_selector_all(selector)?
    } else {
        node.unchecked_ref::<Document>().query_selector_all(selector)?
    };
    Ok((0..list.length()).filter_map(|i| list.get(i)?.dyn_into::<Element>().ok()).collect())
}

fn list(files: &FileList) -> Vec<File> {
    (0..files.length()).filter_map(|i| files.get(i)).collect()
}

fn input_files(id: &str) -> Option<Vec<File>> {
    let input: HtmlInputElement = by_testid(id).ok()?.unchecked_into();
    Some(list(&input.files()?))
}

fn result_element(index: usize) -> Result<Element, JsValue> {
    elements(&document(), "[data-testid=result]")?
        .into_iter()
        .nth(index)
        .ok_or_else(|| JsValue::from_str(&format!("no result {index}")))
}

fn set_result_state(index: usize, state: &str) {
    if let Ok(figure) = result_element(index) {
        let _ = figure.set_attribute("data-state", state);
    }
}

fn set_all_open_results(state: &str) {
    let open = "[data-testid=result][data-state=pending], [data-testid=result][data-state=running]";
    for figure in elements(&document(), open).unwrap_or_default() {
        let _ = figure.set_attribute("data-state", state);
    }
}

fn set_text(id: &str, text: &str) {
    if let Ok(element) = by_testid(id) {
        element.set_text_content(Some(text));
    }
}

fn set_disabled(id: &str, disabled: bool) {
    if let Ok(button) = by_testid(id) {
        button.unchecked_into::<HtmlButtonElement>().set_disabled(disabled);
    }
}

fn hide(id: &str) {
    if let Ok(element) = by_testid(id) {
        let _ = element.set_attribute("hidden", "");
    }
}

/// Shows `message` in the error box; `retry` also shows the Retry button.
fn show_error(message: &str, retry: bool) {
    web_sys::console::error_1(&message.into());
    set_text("error-text", message);
    if let Ok(element) = by_testid("error") {
        let _ = element.remove_attribute("hidden");
    }
    // Retry stays offered while no worker runs, whatever error comes next.
    let stopped = with_page(|p| p.worker.is_none()).unwrap_or(false);
    if let Ok(button) = by_testid("retry") {
        let _ = if retry || stopped {
            button.remove_attribute("hidden")
        } else {
            button.set_attribute("hidden", "")
        };
    }
}

fn hide_error() {
    hide("error");
    hide("retry");
}

/// Shows the error of a UI action, if any.
fn report(result: Result<(), JsValue>) {
    if let Err(err) = result {
        show_error(&js_text(&err), false);
    }
}
