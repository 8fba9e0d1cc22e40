//! Click to select, in a prompt card's painter (docs/USING-THE-PAGE.md): the toggle, the offer to
//! download SAM, the clicks (`crate::clicks`), SAM's candidate drawn over the image, and the buttons
//! that accept it into the painted mask or subtract it. The painter applies an accepted mask; the app
//! (`clicks_app.rs`) talks to the worker.

use wasm_bindgen::{Clamped, JsCast, JsValue};
use web_sys::{Element, HtmlCanvasElement, ImageData, KeyboardEvent, PointerEvent};

use super::dom::{Listener, context, css_rgb, find, set_disabled, set_hidden};
use super::prompt_card::{PromptId, PromptMsg};
use super::{Msg, dispatch};
use crate::clicks::{Arrow, ClickPrompt, Crosshair, Gesture, gesture};
use crate::paint::selection_overlay_rgba;

/// Alpha of SAM's candidate over the image.
const CANDIDATE_ALPHA: u8 = 140;
/// Colours of the clicks drawn over the image: on the object, off it.
const ON_COLOUR: [u8; 3] = [40, 220, 90];
const OFF_COLOUR: [u8; 3] = [240, 60, 60];

pub enum ClickMsg {
    /// The "Click to select" button.
    Toggle,
    /// "Download SAM" in the offer.
    Consent,
    Accept,
    Subtract,
    Next,
    Clear,
    Key(KeyboardEvent),
}

/// SAM's answer to the current clicks: one `width * height` mask per candidate, the shown one first
/// chosen by SAM's score.
struct Candidates {
    masks: Vec<u8>,
    scores: Vec<f32>,
    shown: usize,
}

/// Where the pointer went down, in image pixels and on screen, and whether it marks "off the object".
struct Press {
    image: (f64, f64),
    client: (f64, f64),
    off: bool,
}

/// What the app tells a click tool about SAM.
pub enum SamNews<'a> {
    /// The visitor is asked first: `text` says what would be downloaded.
    Offer(&'a str),
    /// Loading, preparing, or a failure: a line for the status.
    Status(&'a str),
}

pub struct ClickTool {
    toggle: Element,
    tools: Element,
    offer: Element,
    offer_text: Element,
    status: Element,
    accept: Element,
    subtract: Element,
    next: Element,
    overlay: HtmlCanvasElement,
    mask_canvas: HtmlCanvasElement,
    active: bool,
    /// The key the app gave the image when it asked the worker to prepare it (`None`: not prepared).
    key: Option<u32>,
    size: (u32, u32),
    prompt: ClickPrompt,
    crosshair: Option<Crosshair>,
    press: Option<Press>,
    candidates: Option<Candidates>,
    _listeners: Vec<Listener>,
}

impl ClickTool {
    pub fn new(root: &Element, id: PromptId, mask_canvas: &HtmlCanvasElement) -> Result<Self, JsValue> {
        let send = move |msg: ClickMsg| dispatch(Msg::Prompt(id, PromptMsg::Click(msg)));
        let toggle: Element = find(root, "click-select")?;
        let download: Element = find(root, "sam-download")?;
        let accept: Element = find(root, "sam-accept")?;
        let subtract: Element = find(root, "sam-subtract")?;
        let next: Element = find(root, "sam-next")?;
        let clear: Element = find(root, "sam-clear")?;
        let listeners = vec![
            Listener::new(&toggle, "click", move |_| send(ClickMsg::Toggle))?,
            Listener::new(&download, "click", move |_| send(ClickMsg::Consent))?,
            Listener::new(&accept, "click", move |_| send(ClickMsg::Accept))?,
            Listener::new(&subtract, "click", move |_| send(ClickMsg::Subtract))?,
            Listener::new(&next, "click", move |_| send(ClickMsg::Next))?,
            Listener::new(&clear, "click", move |_| send(ClickMsg::Clear))?,
            Listener::new(mask_canvas, "keydown", move |event| send(ClickMsg::Key(event.unchecked_into())))?,
            // The right button places a point off the object: no context menu over the image.
            Listener::new(mask_canvas, "contextmenu", |event| event.prevent_default())?,
        ];
        Ok(Self {
            toggle,
            tools: root.query_selector(".click-tools")?.ok_or("the prompt template lacks .click-tools")?,
            offer: find(root, "sam-offer")?,
            offer_text: find(root, "sam-offer-text")?,
            status: find(root, "sam-status")?,
            accept,
            subtract,
            next,
            overlay: find(root, "sam-canvas")?,
            mask_canvas: mask_canvas.clone(),
            active: false,
            key: None,
            size: (0, 0),
            prompt: ClickPrompt::default(),
            crosshair: None,
            press: None,
            candidates: None,
            _listeners: listeners,
        })
    }

    pub fn active(&self) -> bool {
        self.active
    }

    pub fn key(&self) -> Option<u32> {
        self.key
    }

    pub fn prompt(&self) -> &ClickPrompt {
        &self.prompt
    }

    /// Click mode on or off (the painter's brush works when it is off).
    pub fn set_active(&mut self, active: bool) -> Result<(), JsValue> {
        self.active = active;
        self.toggle.set_attribute("aria-pressed", if active { "true" } else { "false" })?;
        set_hidden(&self.tools, !active);
        // Focusable only in click mode, where the keyboard places points.
        // An application role while it takes keys of its own (arrows, Enter), an image otherwise.
        if active {
            self.mask_canvas.set_attribute("tabindex", "0")?;
            self.mask_canvas.set_attribute("role", "application")?;
            self.mask_canvas.set_attribute(
                "aria-label",
                "Click on the object to select it; arrow keys move the crosshair, Enter adds a point",
            )?;
        } else {
            self.mask_canvas.remove_attribute("tabindex")?;
            self.mask_canvas.set_attribute("role", "img")?;
            self.mask_canvas.set_attribute("aria-label", "Paint the mask here with the pointer")?;
        }
        self.draw()
    }

    /// A new image of `size` under the painter: its clicks and any embedding are gone.
    pub fn restart(&mut self, size: (u32, u32)) -> Result<(), JsValue> {
        self.size = size;
        self.overlay.set_width(size.0);
        self.overlay.set_height(size.1);
        self.key = None;
        self.forget_clicks()
    }

    /// The worker was asked to prepare this image under `key`.
    pub fn preparing(&mut self, key: u32) {
        self.key = Some(key);
        self.say("preparing clicks: SAM reads the image once ...");
    }

    /// The worker has lost every embedding (it restarted): the image is prepared again when needed.
    pub fn unprepare(&mut self) {
        self.key = None;
    }

    pub fn prepared(&self, seconds: f64) {
        self.say(&format!(
            "ready ({seconds:.1} s to read the image): click on the object, Shift-click off it, or drag a box"
        ));
    }

    pub fn news(&self, news: SamNews) {
        match news {
            SamNews::Offer(text) => {
                self.offer_text.set_text_content(Some(text));
                set_hidden(&self.offer, false);
                self.say("");
            }
            SamNews::Status(text) => {
                set_hidden(&self.offer, true);
                self.say(text);
            }
        }
    }

    pub fn failed(&mut self, message: &str) {
        self.candidates = None;
        self.render_buttons();
        self.say(&format!("click to select failed: {message}"));
    }

    /// SAM's masks for the current clicks.
    pub fn show(
        &mut self,
        masks: Vec<u8>,
        scores: Vec<f32>,
        best: usize,
        seconds: f64,
    ) -> Result<(), JsValue> {
        self.candidates = Some(Candidates { masks, scores, shown: best });
        self.render_candidate_line(seconds);
        self.render_buttons();
        self.draw()
    }

    /// The pointer went down over the image at `image` pixels: the start of a click or a drag.
    pub fn press(&mut self, event: &PointerEvent, image: (f64, f64)) {
        let off = event.shift_key() || event.button() == 2;
        self.press = Some(Press { image, client: client(event), off });
    }

    /// The pointer came up: a point or a box, if it makes one. Returns whether the clicks changed.
    pub fn release(&mut self, event: Option<&PointerEvent>, image: (f64, f64)) -> Result<bool, JsValue> {
        let (Some(press), Some(event)) = (self.press.take(), event) else { return Ok(false) };
        let (cx, cy) = client(event);
        let distance = ((cx - press.client.0).powi(2) + (cy - press.client.1).powi(2)).sqrt();
        match gesture(self.size, press.image, image, distance, press.off) {
            Some(added) => self.add(added).map(|()| true),
            None => Ok(false),
        }
    }

    /// Keys over the image: arrows move the crosshair, Enter places a point, C the next candidate,
    /// Escape clears. Returns whether the clicks changed.
    fn key_down(&mut self, event: &KeyboardEvent) -> Result<bool, JsValue> {
        let key = event.key();
        if let Some(arrow) = Arrow::from_key(&key) {
            event.prevent_default();
            let at = self.crosshair.unwrap_or_else(|| Crosshair::centre(self.size));
            self.crosshair = Some(at.moved(arrow, event.shift_key(), self.size));
            self.draw()?;
            return Ok(false);
        }
        match key.as_str() {
            "Enter" => {
                event.prevent_default();
                let at = *self.crosshair.get_or_insert_with(|| Crosshair::centre(self.size));
                self.add(Gesture::Point(at.point(!event.shift_key())))?;
                Ok(true)
            }
            "c" | "C" => self.next_candidate().map(|()| false),
            "Escape" => self.forget_clicks().map(|()| false),
            _ => Ok(false),
        }
    }

    /// Handles the tool's own messages; `Accept` and `Subtract` are the painter's. Returns whether
    /// the clicks changed (time to ask SAM).
    pub fn update(&mut self, msg: ClickMsg) -> Result<bool, JsValue> {
        match msg {
            ClickMsg::Next => self.next_candidate().map(|()| false),
            ClickMsg::Clear => self.forget_clicks().map(|()| false),
            ClickMsg::Key(event) if self.active => self.key_down(&event),
            ClickMsg::Key(_)
            | ClickMsg::Toggle
            | ClickMsg::Consent
            | ClickMsg::Accept
            | ClickMsg::Subtract => Ok(false),
        }
    }

    /// The candidate shown, to accept or subtract; the clicks start over after it is used.
    pub fn take_shown(&mut self) -> Result<Option<Vec<u8>>, JsValue> {
        let Some(candidates) = &self.candidates else { return Ok(None) };
        let plane = self.size.0 as usize * self.size.1 as usize;
        let shown = candidates.masks[candidates.shown * plane..(candidates.shown + 1) * plane].to_vec();
        self.forget_clicks()?;
        self.say("used: click again for another selection");
        Ok(Some(shown))
    }

    fn add(&mut self, gesture: Gesture) -> Result<(), JsValue> {
        self.prompt.add(gesture);
        self.say("asking SAM ...");
        self.draw()
    }

    fn next_candidate(&mut self) -> Result<(), JsValue> {
        if let Some(candidates) = self.candidates.as_mut() {
            candidates.shown = (candidates.shown + 1) % candidates.scores.len().max(1);
            self.render_candidate_line(0.0);
        }
        self.draw()
    }

    fn forget_clicks(&mut self) -> Result<(), JsValue> {
        self.prompt = ClickPrompt::default();
        self.candidates = None;
        self.press = None;
        self.status.remove_attribute("data-cli")?;
        self.say("click on the object, Shift-click off it, or drag a box");
        self.render_buttons();
        self.draw()
    }

    fn say(&self, text: &str) {
        self.status.set_text_content(Some(text));
    }

    /// "candidate 2 of 3 (SAM's score 0.91)": the line under the image, with the clicks as
    /// `seggpt sam`'s flags in `data-cli` (to repeat the selection on the command line).
    fn render_candidate_line(&self, seconds: f64) {
        let Some(candidates) = &self.candidates else { return };
        let count = candidates.scores.len();
        let mut text = format!(
            "candidate {} of {count} (SAM's score {:.2})",
            candidates.shown + 1,
            candidates.scores[candidates.shown]
        );
        if seconds > 0.0 {
            text += &format!(", {:.0} ms", seconds * 1e3);
        }
        text += ": Accept adds it to the mask in the brush colour, Subtract removes it";
        self.say(&text);
        let _ = self.status.set_attribute("data-cli", &self.prompt.cli_flags());
    }

    fn render_buttons(&self) {
        let none = self.candidates.is_none();
        set_disabled(&self.accept, none);
        set_disabled(&self.subtract, none);
        set_disabled(&self.next, self.candidates.as_ref().is_none_or(|c| c.scores.len() < 2));
    }

    /// The candidate, the clicks and the crosshair over the image.
    fn draw(&self) -> Result<(), JsValue> {
        let ctx = context(&self.overlay)?;
        let (w, h) = self.size;
        ctx.clear_rect(0.0, 0.0, f64::from(w), f64::from(h));
        if !self.active || w == 0 || h == 0 {
            return Ok(());
        }
        if let Some(candidates) = &self.candidates {
            let plane = w as usize * h as usize;
            let shown = &candidates.masks[candidates.shown * plane..(candidates.shown + 1) * plane];
            let rgba = selection_overlay_rgba(shown, [30, 144, 255], CANDIDATE_ALPHA);
            let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w, h)?;
            ctx.put_image_data(&image, 0.0, 0.0)?;
        }
        // Marks sized to the image, so they show on small and large images alike.
        let radius = (f64::from(w.max(h)) / 80.0).max(1.0);
        ctx.set_line_width((radius / 2.0).max(1.0));
        if let Some([x0, y0, x1, y1]) = self.prompt.bbox {
            ctx.set_stroke_style_str(&css_rgb(ON_COLOUR));
            let (x0, y0) = (f64::from(x0), f64::from(y0));
            ctx.stroke_rect(x0 + 0.5, y0 + 0.5, f64::from(x1) - x0, f64::from(y1) - y0);
        }
        for point in &self.prompt.points {
            ctx.set_fill_style_str(&css_rgb(if point.on { ON_COLOUR } else { OFF_COLOUR }));
            ctx.begin_path();
            ctx.arc(f64::from(point.x) + 0.5, f64::from(point.y) + 0.5, radius, 0.0, std::f64::consts::TAU)?;
            ctx.fill();
        }
        if let Some(Crosshair { x, y }) = self.crosshair {
            ctx.set_stroke_style_str("#ffffff");
            let (x, y) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            ctx.begin_path();
            ctx.move_to(x - 3.0 * radius, y);
            ctx.line_to(x + 3.0 * radius, y);
            ctx.move_to(x, y - 3.0 * radius);
            ctx.line_to(x, y + 3.0 * radius);
            ctx.stroke();
        }
        Ok(())
    }
}

fn client(event: &PointerEvent) -> (f64, f64) {
    (f64::from(event.client_x()), f64::from(event.client_y()))
}
