//! A result card: one target's state (pending, running, done, failed), and once done its mask shown
//! over the target (overlay, before/after, or the mask alone), per-colour toggles, the time it took,
//! and downloads of the mask PNG (the CLI's bytes) and of the overlay.

use wasm_bindgen::{Clamped, JsValue};
use web_sys::{Element, File, HtmlAnchorElement, HtmlCanvasElement, HtmlElement, ImageBitmap, ImageData};

use super::dom::{Listener, ObjectUrl, blob, button, colour_toggle, context, element, set_hidden, stem};
use super::{Msg, dispatch};
use crate::paint::{PaintMask, visible_mask_rgba};

/// What the worker sent for a finished target (see `protocol::ToPage::Result`).
pub struct Segmented {
    pub png: Vec<u8>,
    pub rgb: Vec<u8>,
    pub labels: Vec<u8>,
    pub colours: Vec<[u8; 3]>,
    pub width: u32,
    pub height: u32,
    pub seconds: f64,
}

pub struct Done {
    result: Segmented,
    hidden: Vec<bool>,
    target: ImageBitmap,
    /// The mask as drawn (hidden colours white), rebuilt only when a toggle changes.
    mask: HtmlCanvasElement,
    /// The mask PNG behind the "Mask PNG" link; revoked with the card.
    _mask_url: ObjectUrl,
    _toggles: Vec<Listener>,
}

pub enum ResultState {
    Pending,
    Running,
    Done(Box<Done>),
    Failed(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overlay,
    BeforeAfter,
    MaskOnly,
}

impl View {
    const ALL: [View; 3] = [View::Overlay, View::BeforeAfter, View::MaskOnly];

    fn label(self) -> &'static str {
        match self {
            View::Overlay => "Overlay",
            View::BeforeAfter => "Before / after",
            View::MaskOnly => "Mask only",
        }
    }

    fn testid(self) -> &'static str {
        match self {
            View::Overlay => "view-overlay",
            View::BeforeAfter => "view-before-after",
            View::MaskOnly => "view-mask",
        }
    }
}

pub enum ResultMsg {
    View(View),
    Toggle {
        colour: usize,
        shown: bool,
    },
    DownloadOverlay,
    /// This target and its mask become a new prompt, the mask open for correcting (handled by the app,
    /// which owns the prompts).
    UseAsPrompt,
}

pub struct ResultCard {
    pub name: String,
    pub target: File,
    root: Element,
    time: Element,
    canvas: HtmlCanvasElement,
    toggles: Element,
    switch: Element,
    view_buttons: Vec<(View, HtmlElement)>,
    actions: Element,
    mask_link: HtmlAnchorElement,
    view: View,
    pub state: ResultState,
    _listeners: Vec<Listener>,
}

impl ResultCard {
    /// `<article class=result-card data-testid=result>` for target `index`, appended to `list`;
    /// `name`: the target's name, made unique among the run's targets (downloads are named after it).
    pub fn new(index: usize, target: File, name: &str, list: &Element) -> Result<Self, JsValue> {
        let name = name.to_string();
        let root: Element = element("article", "result-card")?;
        root.set_attribute("data-testid", "result")?;
        let header: Element = element("header", "")?;
        let title: Element = element("h3", "")?;
        title.set_text_content(Some(&name));
        let time: Element = element("span", "time")?;
        header.append_child(&title)?;
        header.append_child(&time)?;
        let view: Element = element("div", "result-view")?;
        let canvas: HtmlCanvasElement = element("canvas", "")?;
        canvas.set_attribute("data-testid", "result-canvas")?;
        canvas.set_attribute("role", "img")?;
        canvas.set_attribute("aria-label", &format!("segmentation of {name}"))?;
        view.append_child(&canvas)?;
        let switch: Element = element("div", "view-switch")?;
        switch.set_attribute("role", "group")?;
        switch.set_attribute("aria-label", "View")?;
        let mut listeners = Vec::new();
        let mut view_buttons = Vec::new();
        for mode in View::ALL {
            let button = button(mode.label(), "")?;
            button.set_attribute("data-testid", mode.testid())?;
            listeners.push(Listener::new(&button, "click", move |_| {
                dispatch(Msg::Result(index, ResultMsg::View(mode)))
            })?);
            switch.append_child(&button)?;
            view_buttons.push((mode, button));
        }
        let toggles: Element = element("div", "colour-toggles")?;
        toggles.set_attribute("data-testid", "colour-toggles")?;
        let actions: Element = element("div", "actions")?;
        let mask_link: HtmlAnchorElement = element("a", "")?;
        mask_link.set_attribute("data-testid", "download-mask")?;
        mask_link.set_download(&format!("{}.mask.png", stem(&name)));
        mask_link.set_text_content(Some("Mask PNG"));
        let overlay = button("Overlay PNG", "")?;
        overlay.set_attribute("data-testid", "download-overlay")?;
        listeners.push(Listener::new(&overlay, "click", move |_| {
            dispatch(Msg::Result(index, ResultMsg::DownloadOverlay))
        })?);
        let use_as_prompt = button("Use as prompt", "")?;
        use_as_prompt.set_attribute("data-testid", "use-as-prompt")?;
        use_as_prompt.set_attribute(
            "title",
            "Add this image and its mask as a new prompt, where the brush and Click to select correct the mask",
        )?;
        listeners.push(Listener::new(&use_as_prompt, "click", move |_| {
            dispatch(Msg::Result(index, ResultMsg::UseAsPrompt))
        })?);
        actions.append_child(&mask_link)?;
        actions.append_child(&overlay)?;
        actions.append_child(&use_as_prompt)?;
        for child in [&header, &view, &switch, &toggles, &actions] {
            root.append_child(child)?;
        }
        list.append_child(&root)?;
        let card = ResultCard {
            name,
            target,
            root,
            time,
            canvas,
            toggles,
            switch,
            view_buttons,
            actions,
            mask_link,
            view: View::Overlay,
            state: ResultState::Pending,
            _listeners: listeners,
        };
        card.render(0.0)?;
        Ok(card)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, ResultState::Pending | ResultState::Running)
    }

    /// The target decoded and the worker's result: the card is done.
    pub fn finish(&mut self, index: usize, result: Segmented, target: ImageBitmap) -> Result<(), JsValue> {
        let (w, h) = (result.width, result.height);
        if result.labels.len() as u64 != u64::from(w) * u64::from(h)
            || result.rgb.len() != result.labels.len() * 3
        {
            return Err("the worker sent a result of inconsistent size".into());
        }
        let url = ObjectUrl::new(&blob(&result.png, "image/png")?)?;
        self.mask_link.set_href(url.as_str());
        let mut toggles = Vec::new();
        for (colour_index, colour) in result.colours.iter().enumerate() {
            toggles.push(colour_toggle(
                &self.toggles,
                *colour,
                colour_index + 1,
                "colour-toggle",
                move |shown| dispatch(Msg::Result(index, ResultMsg::Toggle { colour: colour_index, shown })),
            )?);
        }
        let hidden = vec![false; result.colours.len()];
        let mask = mask_canvas(&result, &hidden)?;
        self.state = ResultState::Done(Box::new(Done {
            result,
            hidden,
            target,
            mask,
            _mask_url: url,
            _toggles: toggles,
        }));
        Ok(())
    }

    pub fn update(&mut self, msg: ResultMsg, opacity: f64) -> Result<(), JsValue> {
        match msg {
            ResultMsg::View(view) => self.view = view,
            ResultMsg::Toggle { colour, shown } => {
                if let ResultState::Done(done) = &mut self.state {
                    if let Some(hidden) = done.hidden.get_mut(colour) {
                        *hidden = !shown;
                    }
                    done.mask = mask_canvas(&done.result, &done.hidden)?;
                }
            }
            ResultMsg::UseAsPrompt => {}
            ResultMsg::DownloadOverlay => {
                let (canvas, name) = self.overlay(opacity)?.ok_or("this result is not done")?;
                wasm_bindgen_futures::spawn_local(async move {
                    let saved = async {
                        let png = super::dom::canvas_png(&canvas).await?;
                        super::dom::save(&blob(&png, "image/png")?, &name)
                    };
                    if let Err(err) = saved.await {
                        dispatch(Msg::Failed(format!(
                            "cannot save the overlay: {}",
                            crate::web::js_text(&err)
                        )));
                    }
                });
            }
        }
        self.render(opacity)
    }

    /// A canvas with the overlay at `opacity` (what "Overlay PNG" saves), and its file name.
    pub fn overlay(&self, opacity: f64) -> Result<Option<(HtmlCanvasElement, String)>, JsValue> {
        let ResultState::Done(done) = &self.state else { return Ok(None) };
        let canvas: HtmlCanvasElement = element("canvas", "")?;
        canvas.set_width(done.result.width);
        canvas.set_height(done.result.height);
        draw_overlay(&canvas, done, opacity, 0.0)?;
        Ok(Some((canvas, format!("{}.overlay.png", stem(&self.name)))))
    }

    /// The target and its mask as a painting, to correct it as a prompt; `None` until done.
    pub fn as_prompt(&self) -> Option<Result<(File, PaintMask), String>> {
        let ResultState::Done(done) = &self.state else { return None };
        let result = &done.result;
        Some(
            PaintMask::from_rgb(result.width, result.height, result.rgb.clone())
                .map(|m| (self.target.clone(), m)),
        )
    }

    /// A finished result's labels for the exports of "Download all".
    pub fn labelled(&self) -> Option<crate::export::download::PageResult<'_>> {
        let ResultState::Done(done) = &self.state else { return None };
        let result = &done.result;
        Some(crate::export::download::PageResult {
            name: &self.name,
            width: result.width,
            height: result.height,
            labels: &result.labels,
            classes: result.colours.len(),
        })
    }

    /// The mask PNG and its file name, once done.
    pub fn mask_png(&self) -> Option<(&[u8], String)> {
        match &self.state {
            ResultState::Done(done) => Some((&done.result.png, format!("{}.mask.png", stem(&self.name)))),
            _ => None,
        }
    }

    pub fn render(&self, opacity: f64) -> Result<(), JsValue> {
        let state = match &self.state {
            ResultState::Pending => "pending",
            ResultState::Running => "running",
            ResultState::Done(_) => "done",
            ResultState::Failed(_) => "failed",
        };
        self.root.set_attribute("data-state", state)?;
        let done = match &self.state {
            ResultState::Done(done) => Some(done),
            _ => None,
        };
        let time = match &self.state {
            ResultState::Pending => "waiting".to_string(),
            ResultState::Running => "segmenting ...".to_string(),
            ResultState::Done(done) => format!("{:.2} s", done.result.seconds),
            ResultState::Failed(_) => "failed".to_string(),
        };
        self.time.set_text_content(Some(&time));
        match &self.state {
            ResultState::Failed(reason) => self.root.set_attribute("title", reason)?,
            _ => self.root.remove_attribute("title")?,
        }
        for element in [&self.switch, &self.toggles, &self.actions] {
            set_hidden(element, done.is_none());
        }
        for (view, button) in &self.view_buttons {
            button.set_attribute("aria-pressed", if *view == self.view { "true" } else { "false" })?;
        }
        if let Some(done) = done {
            self.root.set_attribute("data-seconds", &format!("{:.3}", done.result.seconds))?;
            self.draw(done, opacity)?;
        }
        Ok(())
    }

    fn draw(&self, done: &Done, opacity: f64) -> Result<(), JsValue> {
        let (w, h) = (done.result.width, done.result.height);
        let canvas = &self.canvas;
        canvas.set_width(if self.view == View::BeforeAfter { 2 * w } else { w });
        canvas.set_height(h);
        match self.view {
            View::Overlay => draw_overlay(canvas, done, opacity, 0.0),
            View::BeforeAfter => {
                let ctx = context(canvas)?;
                ctx.draw_image_with_image_bitmap_and_dw_and_dh(
                    &done.target,
                    0.0,
                    0.0,
                    f64::from(w),
                    f64::from(h),
                )?;
                draw_overlay(canvas, done, opacity, f64::from(w))
            }
            View::MaskOnly => context(canvas)?.draw_image_with_html_canvas_element(&done.mask, 0.0, 0.0),
        }
    }
}

impl Drop for ResultCard {
    fn drop(&mut self) {
        self.root.remove();
    }
}

/// The official overlay `target * (a * mask / 255 + 1 - a)` (docs/MODEL.md §8) is exactly a multiply
/// blend at alpha `a`; hidden colours are drawn white, the blend's identity.
fn draw_overlay(canvas: &HtmlCanvasElement, done: &Done, opacity: f64, x: f64) -> Result<(), JsValue> {
    let (w, h) = (f64::from(done.result.width), f64::from(done.result.height));
    let ctx = context(canvas)?;
    ctx.draw_image_with_image_bitmap_and_dw_and_dh(&done.target, x, 0.0, w, h)?;
    ctx.set_global_alpha(opacity);
    ctx.set_global_composite_operation("multiply")?;
    ctx.draw_image_with_html_canvas_element(&done.mask, x, 0.0)?;
    ctx.set_global_alpha(1.0);
    ctx.set_global_composite_operation("source-over")
}

/// The mask with the hidden colours white, on a canvas of its own.
fn mask_canvas(result: &Segmented, hidden: &[bool]) -> Result<HtmlCanvasElement, JsValue> {
    let rgba = visible_mask_rgba(&result.rgb, &result.labels, hidden);
    let canvas: HtmlCanvasElement = element("canvas", "")?;
    canvas.set_width(result.width);
    canvas.set_height(result.height);
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), result.width, result.height)?;
    context(&canvas)?.put_image_data(&image, 0.0, 0.0)?;
    Ok(canvas)
}
