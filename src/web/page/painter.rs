//! Painting a prompt's mask over its image: brush colours, size, eraser, undo, clear, and a download of
//! the painted mask. The pixel work is `crate::paint` (tested natively); this is its DOM.

use wasm_bindgen::{Clamped, JsCast, JsValue};
use web_sys::{
    Element, HtmlAnchorElement, HtmlCanvasElement, HtmlElement, HtmlInputElement, ImageBitmap, ImageData,
    PointerEvent,
};

use super::click_tool::{ClickMsg, ClickTool};
use super::dom::{Listener, ObjectUrl, blob, context, css_rgb, element, find, set_hidden};
use super::prompt_card::{PromptId, PromptMsg};
use super::{Msg, dispatch};
use crate::paint::{BRUSH_COLOURS, PaintMask, Rect, colour_name};
use crate::pipeline::{RgbImage, encode_rgb_png};

/// Alpha of painted strokes over the prompt image while painting.
const PAINT_ALPHA: u8 = 170;
/// Brush radius when the size control cannot be read.
const DEFAULT_BRUSH: f64 = 12.0;

pub enum PaintMsg {
    Brush(usize),
    Down(PointerEvent),
    Move(PointerEvent),
    /// The pointer came up (`None`: the browser cancelled it).
    Up(Option<PointerEvent>),
    Undo,
    Clear,
    /// The download link was clicked: point it at the current mask before the browser follows it.
    Download,
}

pub struct Painter {
    id: PromptId,
    tools: Element,
    area: Element,
    image_canvas: HtmlCanvasElement,
    mask_canvas: HtmlCanvasElement,
    swatches: Vec<HtmlElement>,
    size: HtmlInputElement,
    eraser: HtmlInputElement,
    download: HtmlAnchorElement,
    /// The painted mask the download link points at; replaced (and revoked) on the next click.
    download_url: Option<ObjectUrl>,
    mask: Option<PaintMask>,
    drawing: bool,
    brush: usize,
    /// Click to select: while it is on, the pointer clicks for SAM instead of painting.
    clicks: ClickTool,
    _listeners: Vec<Listener>,
}

impl Painter {
    pub fn new(root: &Element, id: PromptId) -> Result<Self, JsValue> {
        let send = move |msg: PaintMsg| dispatch(Msg::Prompt(id, PromptMsg::Paint(msg)));
        let mask_canvas: HtmlCanvasElement = find(root, "mask-canvas")?;
        let palette: Element = find(root, "brush-colours")?;
        let mut listeners = Vec::new();
        let mut swatches = Vec::new();
        for (i, colour) in BRUSH_COLOURS.iter().enumerate() {
            let name = colour_name(*colour);
            let swatch: HtmlElement = element("button", "swatch")?;
            swatch.set_attribute("type", "button")?;
            swatch.set_attribute("data-testid", "brush-colour")?;
            swatch.set_attribute("aria-label", &format!("brush colour {name}"))?;
            swatch.style().set_property("background-color", &css_rgb(*colour))?;
            listeners.push(Listener::new(&swatch, "click", move |_| send(PaintMsg::Brush(i)))?);
            palette.append_child(&swatch)?;
            swatches.push(swatch);
        }
        let canvas = mask_canvas.clone();
        listeners.push(Listener::new(&mask_canvas, "pointerdown", move |event| {
            let event: PointerEvent = event.unchecked_into();
            event.prevent_default();
            let _ = canvas.set_pointer_capture(event.pointer_id());
            send(PaintMsg::Down(event));
        })?);
        listeners.push(Listener::new(&mask_canvas, "pointermove", move |event| {
            send(PaintMsg::Move(event.unchecked_into()))
        })?);
        listeners.push(Listener::new(&mask_canvas, "pointerup", move |event| {
            send(PaintMsg::Up(Some(event.unchecked_into())))
        })?);
        listeners.push(Listener::new(&mask_canvas, "pointercancel", move |_| send(PaintMsg::Up(None)))?);
        let undo: Element = find(root, "undo")?;
        let clear: Element = find(root, "clear-mask")?;
        let download: HtmlAnchorElement = find(root, "download-prompt-mask")?;
        listeners.push(Listener::new(&undo, "click", move |_| send(PaintMsg::Undo))?);
        listeners.push(Listener::new(&clear, "click", move |_| send(PaintMsg::Clear))?);
        listeners.push(Listener::new(&download, "click", move |_| send(PaintMsg::Download))?);
        let painter = Painter {
            id,
            clicks: ClickTool::new(root, id, &mask_canvas)?,
            tools: root.query_selector(".paint-tools")?.ok_or("the prompt template lacks .paint-tools")?,
            area: root.query_selector(".paint")?.ok_or("the prompt template lacks .paint")?,
            image_canvas: find(root, "prompt-canvas")?,
            mask_canvas,
            swatches,
            size: find(root, "brush-size")?,
            eraser: find(root, "eraser")?,
            download,
            download_url: None,
            mask: None,
            drawing: false,
            brush: 0,
            _listeners: listeners,
        };
        painter.render_brush();
        Ok(painter)
    }

    /// Starts painting over `image` at its natural size (a new image starts over): from `initial` (a
    /// result's mask to correct, of the image's size) or from a blank mask.
    pub fn start(&mut self, image: &ImageBitmap, initial: Option<PaintMask>) -> Result<(), JsValue> {
        let (w, h) = (image.width(), image.height());
        let mask = match initial {
            Some(mask) if (mask.width(), mask.height()) != (w, h) => {
                return Err(format!(
                    "the mask is {} x {} pixels and its image {w} x {h}: they must be the same size",
                    mask.width(),
                    mask.height()
                )
                .into());
            }
            Some(mask) => mask,
            None => PaintMask::new(w, h),
        };
        for canvas in [&self.image_canvas, &self.mask_canvas] {
            canvas.set_width(w);
            canvas.set_height(h);
        }
        context(&self.image_canvas)?.draw_image_with_image_bitmap(image, 0.0, 0.0)?;
        self.mask = Some(mask);
        self.drawing = false;
        set_hidden(&self.tools, false);
        set_hidden(&self.area, false);
        self.clicks.restart((w, h))?;
        if self.clicks.active() {
            dispatch(Msg::SamWanted(self.id));
        }
        self.redraw(None)
    }

    pub fn clicks(&self) -> &ClickTool {
        &self.clicks
    }

    pub fn clicks_mut(&mut self) -> &mut ClickTool {
        &mut self.clicks
    }

    /// Click to select's messages; true when the mask changed (a candidate accepted or subtracted).
    pub fn click(&mut self, msg: ClickMsg) -> Result<bool, JsValue> {
        match msg {
            ClickMsg::Consent => dispatch(Msg::SamConsent),
            ClickMsg::Accept | ClickMsg::Subtract => {
                let colour = match msg {
                    ClickMsg::Accept => BRUSH_COLOURS[self.brush],
                    _ => [0, 0, 0],
                };
                let Some(selected) = self.clicks.take_shown()? else { return Ok(false) };
                let Some(mask) = self.mask.as_mut() else { return Ok(false) };
                mask.apply_selection(&selected, colour);
                self.redraw(None)?;
                return Ok(true);
            }
            msg => {
                if self.clicks.update(msg)? {
                    dispatch(Msg::SamAsk(self.id));
                }
            }
        }
        Ok(false)
    }

    pub fn mask(&self) -> Option<&PaintMask> {
        self.mask.as_ref()
    }

    /// Applies `msg`; true when a stroke ended or the mask changed as a whole (time to show it elsewhere).
    pub fn update(&mut self, msg: PaintMsg) -> Result<bool, JsValue> {
        match msg {
            PaintMsg::Brush(index) => {
                self.brush = index.min(BRUSH_COLOURS.len() - 1);
                self.eraser.set_checked(false);
                self.render_brush();
                Ok(false)
            }
            PaintMsg::Down(event) if self.clicks.active() => {
                self.clicks.press(&event, self.point(&event));
                Ok(false)
            }
            PaintMsg::Up(event) if self.clicks.active() => {
                let at = event.as_ref().map(|e| self.point(e)).unwrap_or_default();
                if self.clicks.release(event.as_ref(), at)? {
                    dispatch(Msg::SamAsk(self.id));
                }
                Ok(false)
            }
            PaintMsg::Move(_) if self.clicks.active() => Ok(false),
            PaintMsg::Down(event) => {
                let (x, y) = self.point(&event);
                let (radius, colour) = self.brush();
                let Some(mask) = self.mask.as_mut() else { return Ok(false) };
                self.drawing = true;
                let changed = mask.begin(x, y, radius, colour);
                self.redraw_changed(changed)
            }
            PaintMsg::Move(event) if self.drawing => {
                let (x, y) = self.point(&event);
                let (radius, colour) = self.brush();
                let changed = self.mask.as_mut().and_then(|mask| mask.extend(x, y, radius, colour));
                self.redraw_changed(changed)
            }
            PaintMsg::Move(_) => Ok(false),
            PaintMsg::Up(_) => {
                let was_drawing = std::mem::take(&mut self.drawing);
                if let Some(mask) = self.mask.as_mut() {
                    mask.end();
                }
                Ok(was_drawing)
            }
            PaintMsg::Undo => {
                self.mask.as_mut().map(PaintMask::undo);
                self.redraw(None)?;
                Ok(true)
            }
            PaintMsg::Clear => {
                self.mask.as_mut().map(PaintMask::clear);
                self.redraw(None)?;
                Ok(true)
            }
            PaintMsg::Download => {
                let mask = self.mask.as_ref().ok_or("paint a mask first")?;
                let png = RgbImage::new(mask.width(), mask.height(), mask.rgb().to_vec())
                    .and_then(|m| encode_rgb_png(&m))
                    .map_err(|e| JsValue::from_str(&e.to_string()))?;
                let url = ObjectUrl::new(&blob(&png, "image/png")?)?;
                self.download.set_href(url.as_str());
                self.download_url = Some(url);
                Ok(false)
            }
        }
    }

    fn render_brush(&self) {
        for (i, swatch) in self.swatches.iter().enumerate() {
            swatch.set_class_name(if i == self.brush { "swatch selected" } else { "swatch" });
            let _ = swatch.set_attribute("aria-pressed", if i == self.brush { "true" } else { "false" });
        }
    }

    /// Pointer position in image pixels (the canvas is scaled by CSS).
    fn point(&self, event: &PointerEvent) -> (f64, f64) {
        let canvas = &self.mask_canvas;
        let rect = canvas.get_bounding_client_rect();
        let sx = f64::from(canvas.width()) / rect.width().max(1.0);
        let sy = f64::from(canvas.height()) / rect.height().max(1.0);
        ((f64::from(event.client_x()) - rect.left()) * sx, (f64::from(event.client_y()) - rect.top()) * sy)
    }

    /// Brush radius (image pixels) and colour (black when erasing).
    fn brush(&self) -> (f64, [u8; 3]) {
        let size = self.size.value().parse::<f64>().unwrap_or(DEFAULT_BRUSH);
        (size, if self.eraser.checked() { [0, 0, 0] } else { BRUSH_COLOURS[self.brush] })
    }

    fn redraw_changed(&self, changed: Option<Rect>) -> Result<bool, JsValue> {
        if let Some(rect) = changed {
            self.redraw(Some(rect))?;
        }
        Ok(false)
    }

    /// Redraws the strokes over the image: only `rect` (what a stroke changed) or everything.
    fn redraw(&self, rect: Option<Rect>) -> Result<(), JsValue> {
        let Some(mask) = &self.mask else { return Ok(()) };
        let rect = rect.unwrap_or_else(|| mask.full());
        let rgba = mask.overlay_rgba(rect, PAINT_ALPHA);
        let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), rect.width, rect.height)?;
        context(&self.mask_canvas)?.put_image_data(&image, f64::from(rect.x), f64::from(rect.y))
    }
}
