//! DOM plumbing shared by the components: listeners and object URLs that clean up after themselves,
//! element builders, image decoding, downloads.

use crate::paint::colour_name;
use js_sys::{Array, ArrayBuffer, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, CanvasRenderingContext2d, DataTransfer, Document, Element, Event, EventTarget,
    File, FileList, HtmlAnchorElement, HtmlCanvasElement, HtmlElement, HtmlInputElement, HtmlOptionElement,
    HtmlSelectElement, ImageBitmap, Url,
};

/// An event listener that is removed, and its closure freed, when this value is dropped: a component
/// keeps its listeners in its struct, so removing the component removes them.
pub struct Listener {
    target: EventTarget,
    kind: &'static str,
    closure: Closure<dyn FnMut(Event)>,
}

impl Listener {
    pub fn new(
        target: &EventTarget,
        kind: &'static str,
        handler: impl FnMut(Event) + 'static,
    ) -> Result<Self, JsValue> {
        let closure = Closure::<dyn FnMut(Event)>::new(handler);
        target.add_event_listener_with_callback(kind, closure.as_ref().unchecked_ref())?;
        Ok(Listener { target: target.clone(), kind, closure })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ =
            self.target.remove_event_listener_with_callback(self.kind, self.closure.as_ref().unchecked_ref());
    }
}

/// A `blob:` URL revoked when this value is dropped (when the element showing it goes).
pub struct ObjectUrl(String);

impl ObjectUrl {
    pub fn new(blob: &Blob) -> Result<Self, JsValue> {
        Ok(ObjectUrl(Url::create_object_url_with_blob(blob)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for ObjectUrl {
    fn drop(&mut self) {
        let _ = Url::revoke_object_url(&self.0);
    }
}

pub fn window() -> web_sys::Window {
    web_sys::window().expect("the page code runs on a page")
}

pub fn document() -> Document {
    window().document().expect("a page has a document")
}

/// The element with `data-testid=id` under `parent` (the test ids double as the components' hooks).
pub fn find<T: JsCast>(parent: &impl AsRef<web_sys::Node>, id: &str) -> Result<T, JsValue> {
    let selector = format!("[data-testid={id}]");
    let node: &web_sys::Node = parent.as_ref();
    let found = match node.dyn_ref::<Element>() {
        Some(element) => element.query_selector(&selector)?,
        None => node.unchecked_ref::<Document>().query_selector(&selector)?,
    };
    found
        .ok_or_else(|| JsValue::from_str(&format!("the page lacks data-testid={id}")))?
        .dyn_into::<T>()
        .map_err(|_| JsValue::from_str(&format!("data-testid={id} is not the expected kind of element")))
}

/// A new element with a class (empty: none).
pub fn element<T: JsCast>(tag: &str, class: &str) -> Result<T, JsValue> {
    let element = document().create_element(tag)?;
    if !class.is_empty() {
        element.set_class_name(class);
    }
    element.dyn_into::<T>().map_err(|_| JsValue::from_str(&format!("<{tag}> is not the expected element")))
}

/// A `<button type=button>` with its text.
pub fn button(text: &str, class: &str) -> Result<HtmlElement, JsValue> {
    let button: HtmlElement = element("button", class)?;
    button.set_attribute("type", "button")?;
    button.set_text_content(Some(text));
    Ok(button)
}

/// Fills a `<select>` with `(value, label)` options and selects `selected`.
pub fn fill_select(
    select: &HtmlSelectElement,
    options: &[(&str, &str)],
    selected: &str,
) -> Result<(), JsValue> {
    select.set_inner_html("");
    for (value, label) in options {
        let option: HtmlOptionElement = element("option", "")?;
        option.set_value(value);
        option.set_text(label);
        select.append_child(&option)?;
    }
    select.set_value(selected);
    Ok(())
}

pub fn set_hidden(element: &Element, hidden: bool) {
    let _ = if hidden { element.set_attribute("hidden", "") } else { element.remove_attribute("hidden") };
}

pub fn set_disabled(element: &Element, disabled: bool) {
    let _ =
        if disabled { element.set_attribute("disabled", "") } else { element.remove_attribute("disabled") };
}

pub fn files(list: Option<FileList>) -> Vec<File> {
    list.map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect()).unwrap_or_default()
}

/// Puts `files` into a file input and fires `change`, as if the user had picked them.
pub fn set_input_files(input: &HtmlInputElement, files: &[File]) -> Result<(), JsValue> {
    let transfer = DataTransfer::new()?;
    for file in files {
        transfer.items().add_with_file(file)?;
    }
    input.set_files(transfer.files().as_ref());
    input.dispatch_event(&Event::new("change")?)?;
    Ok(())
}

pub fn context(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, JsValue> {
    Ok(canvas.get_context("2d")?.ok_or_else(|| JsValue::from_str("no 2D canvas"))?.unchecked_into())
}

/// Decodes an image file to a bitmap of its pixels as stored: no EXIF rotation and no colour-space
/// conversion (an ICC profile or gAMA chunk must not change the values), as the model's own decoder
/// reads them, so painted masks and overlays line up with the CLI's output pixel for pixel.
pub async fn image_bitmap(file: &Blob) -> Result<ImageBitmap, JsValue> {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"imageOrientation".into(), &"none".into())?;
    Reflect::set(&options, &"colorSpaceConversion".into(), &"none".into())?;
    let create: Function = Reflect::get(&window(), &"createImageBitmap".into())?.dyn_into()?;
    let promise: Promise = create.call2(&window(), file, &options)?.unchecked_into();
    Ok(JsFuture::from(promise).await?.unchecked_into())
}

pub fn blob(bytes: &[u8], mime: &str) -> Result<Blob, JsValue> {
    let options = BlobPropertyBag::new();
    options.set_type(mime);
    Blob::new_with_u8_array_sequence_and_options(&Array::of1(&Uint8Array::from(bytes)), &options)
}

/// `blob` as a `File` named `name`, of the blob's type (as if the visitor had picked it).
pub fn file_of(blob: &Blob, name: &str) -> Result<File, JsValue> {
    let options = web_sys::FilePropertyBag::new();
    options.set_type(&blob.type_());
    File::new_with_blob_sequence_and_options(&Array::of1(blob), name, &options)
}

/// `bytes` as a `File` named `name`, of type `mime`.
pub fn file(bytes: &[u8], name: &str, mime: &str) -> Result<File, JsValue> {
    file_of(&blob(bytes, mime)?, name)
}

/// `bitmap` drawn on a canvas and encoded as a PNG file named `name` (a video frame that becomes a
/// prompt image, an image handed to the npm package).
pub async fn bitmap_png_file(bitmap: &ImageBitmap, name: &str) -> Result<File, JsValue> {
    let canvas: HtmlCanvasElement = element("canvas", "")?;
    canvas.set_width(bitmap.width());
    canvas.set_height(bitmap.height());
    context(&canvas)?.draw_image_with_image_bitmap(bitmap, 0.0, 0.0)?;
    file(&canvas_png(&canvas).await?, name, "image/png")
}

pub async fn blob_bytes(blob: &Blob) -> Result<Vec<u8>, JsValue> {
    let buffer: ArrayBuffer = JsFuture::from(blob.array_buffer()).await?.unchecked_into();
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// A canvas's pixels as PNG bytes.
pub async fn canvas_png(canvas: &HtmlCanvasElement) -> Result<Vec<u8>, JsValue> {
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        if let Err(err) = canvas.to_blob_with_type(&resolve, "image/png") {
            let _ = reject.call1(&JsValue::NULL, &err);
        }
    });
    let blob: Blob = JsFuture::from(promise).await?.dyn_into()?;
    blob_bytes(&blob).await
}

/// How long a download's `blob:` URL lives: the browser has read the blob well before then.
const DOWNLOAD_URL_LIFETIME_MS: i32 = 10_000;

/// Starts a download of `blob` as `name`; its object URL is revoked once the download has read it.
pub fn save(blob: &Blob, name: &str) -> Result<(), JsValue> {
    let url = ObjectUrl::new(blob)?;
    let link: HtmlAnchorElement = element("a", "")?;
    link.set_href(url.as_str());
    link.set_download(name);
    link.click();
    let revoke = Closure::once_into_js(move || drop(url));
    window().set_timeout_with_callback_and_timeout_and_arguments_0(
        revoke.unchecked_ref(),
        DOWNLOAD_URL_LIFETIME_MS,
    )?;
    Ok(())
}

/// `photo.png` -> `photo`.
pub fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

pub fn css_rgb(c: [u8; 3]) -> String {
    format!("rgb({}, {}, {})", c[0], c[1], c[2])
}

/// A checked "show this colour" toggle, appended to `parent`: a checkbox, a swatch and the colour's
/// name with its 1-based number. `on_change(shown)` runs when it is toggled; the listener is returned
/// for the component to keep (image results and the video panel share this).
pub fn colour_toggle(
    parent: &Element,
    colour: [u8; 3],
    number: usize,
    test_id: &str,
    mut on_change: impl FnMut(bool) + 'static,
) -> Result<Listener, JsValue> {
    let label: Element = element("label", "colour-toggle")?;
    let input: HtmlInputElement = element("input", "")?;
    input.set_type("checkbox");
    input.set_checked(true);
    input.set_attribute("data-testid", test_id)?;
    let swatch: HtmlElement = element("span", "swatch")?;
    swatch.set_attribute("aria-hidden", "true")?;
    swatch.style().set_property("background-color", &css_rgb(colour))?;
    let text: Element = element("span", "")?;
    text.set_text_content(Some(&format!("{} ({number})", colour_name(colour))));
    let checkbox = input.clone();
    let listener = Listener::new(&input, "change", move |_| on_change(checkbox.checked()))?;
    label.append_child(&input)?;
    label.append_child(&swatch)?;
    label.append_child(&text)?;
    parent.append_child(&label)?;
    Ok(listener)
}

/// The WebGPU adapter this browser offers, if any: `Some(true)` for a software (fallback) one.
/// Asked before the visitor is offered a 1.5 GB download, to say which device will run it.
pub async fn webgpu_adapter() -> Option<bool> {
    let gpu = Reflect::get(&window().navigator(), &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    let request =
        Reflect::get(&gpu, &"requestAdapter".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
    let adapter = match request.map(|request| request.call0(&gpu)) {
        Some(Ok(promise)) => JsFuture::from(Promise::from(promise)).await.unwrap_or(JsValue::NULL),
        _ => JsValue::NULL,
    };
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    Some(Reflect::get(&info, &"isFallbackAdapter".into()).ok().and_then(|v| v.as_bool()) == Some(true))
}
