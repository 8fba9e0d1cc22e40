//! Tuned prompt cards (docs/MODEL.md §19): prompts that are already model input, from a file that
//! `seggpt tune` or the tuning panel wrote. The worker checks each against the model and sends its
//! previews (the prompt image and mask, denormalised); a checked card joins every run's prompts.

use wasm_bindgen::JsValue;
use web_sys::{Document, Element, File, HtmlElement, HtmlImageElement, HtmlInputElement};

use super::dom::{Listener, ObjectUrl, blob, button, element, files, find};
use super::{Msg, dispatch};
use crate::web::protocol::TunedPreviewPngs;

pub enum TunedMsg {
    /// Files were picked in the "Load a tuned prompt" input.
    Picked,
    Remove(u32),
}

/// One card: the file, and its previews once the worker has checked it.
struct TunedCard {
    id: u32,
    file: File,
    root: Element,
    state: Element,
    image: HtmlImageElement,
    mask: HtmlImageElement,
    checked: bool,
    _urls: Vec<ObjectUrl>,
    _listeners: Vec<Listener>,
}

impl Drop for TunedCard {
    fn drop(&mut self) {
        self.root.remove();
    }
}

pub struct TunedPrompts {
    list: Element,
    input: HtmlInputElement,
    cards: Vec<TunedCard>,
    next_id: u32,
    _listeners: Vec<Listener>,
}

impl TunedPrompts {
    pub fn new(doc: &Document) -> Result<Self, JsValue> {
        let input: HtmlInputElement = find(doc, "tuned-input")?;
        let listeners = vec![Listener::new(&input, "change", |_| dispatch(Msg::Tuned(TunedMsg::Picked)))?];
        Ok(Self {
            list: find(doc, "tuned-prompts")?,
            input,
            cards: Vec::new(),
            next_id: 0,
            _listeners: listeners,
        })
    }

    /// The files just picked (the input is emptied, so the same file can be picked again).
    pub fn take_picked(&self) -> Vec<File> {
        let picked = files(self.input.files());
        self.input.set_value("");
        picked
    }

    /// A card for `file`, waiting for the worker's check; returns its id for `InspectTuned`.
    pub fn add(&mut self, file: File) -> Result<u32, JsValue> {
        self.next_id += 1;
        let id = self.next_id;
        let root: Element = element("figure", "tuned-card")?;
        root.set_attribute("data-testid", "tuned-card")?;
        let image: HtmlImageElement = element("img", "")?;
        image.set_attribute("data-testid", "tuned-image")?;
        image.set_alt(&format!("tuned prompt image of {}", file.name()));
        let mask: HtmlImageElement = element("img", "")?;
        mask.set_attribute("data-testid", "tuned-mask")?;
        mask.set_alt(&format!("tuned prompt mask of {}", file.name()));
        let state: Element = element("figcaption", "hint")?;
        state.set_attribute("data-testid", "tuned-state")?;
        state.set_text_content(Some(&format!("{}: checking ...", file.name())));
        let remove: HtmlElement = button("Remove", "")?;
        remove.set_attribute("data-testid", "remove-tuned")?;
        remove.set_attribute("aria-label", &format!("Remove the tuned prompt {}", file.name()))?;
        for child in [image.as_ref(), mask.as_ref(), state.as_ref(), remove.as_ref()] {
            root.append_child(child)?;
        }
        self.list.append_child(&root)?;
        let listeners =
            vec![Listener::new(&remove, "click", move |_| dispatch(Msg::Tuned(TunedMsg::Remove(id))))?];
        self.cards.push(TunedCard {
            id,
            file,
            root,
            state,
            image,
            mask,
            checked: false,
            _urls: Vec::new(),
            _listeners: listeners,
        });
        Ok(id)
    }

    /// The worker accepted card `id`: show its previews.
    pub fn preview(
        &mut self,
        id: u32,
        steps: u64,
        loss: Option<f32>,
        pngs: &TunedPreviewPngs,
    ) -> Result<(), JsValue> {
        let Some(card) = self.cards.iter_mut().find(|c| c.id == id) else { return Ok(()) };
        let image_url = ObjectUrl::new(&blob(&pngs.image_png, "image/png")?)?;
        let mask_url = ObjectUrl::new(&blob(&pngs.mask_png, "image/png")?)?;
        card.image.set_src(image_url.as_str());
        card.mask.set_src(mask_url.as_str());
        card._urls = vec![image_url, mask_url];
        let loss = loss.map(|l| format!(", last loss {l:.4}")).unwrap_or_default();
        card.state
            .set_text_content(Some(&format!("{}: tuned prompt, {steps} steps{loss}", card.file.name())));
        card.checked = true;
        Ok(())
    }

    pub fn remove(&mut self, id: u32) {
        self.cards.retain(|c| c.id != id);
    }

    /// The files of every card, for a run; an error while one is still being checked.
    pub fn files(&self) -> Result<Vec<File>, String> {
        self.cards
            .iter()
            .map(|c| {
                if c.checked {
                    Ok(c.file.clone())
                } else {
                    Err(format!(
                        "the tuned prompt {} is still being checked; try again in a moment",
                        c.file.name()
                    ))
                }
            })
            .collect()
    }
}
