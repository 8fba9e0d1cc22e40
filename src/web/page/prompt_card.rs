//! A prompt card: an example image and its mask (a file, or painted), shown as a thumbnail with the
//! mask over the image; files can be picked, dropped or pasted onto it.

use wasm_bindgen::{Clamped, JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    Element, File, HtmlCanvasElement, HtmlImageElement, HtmlInputElement, HtmlTemplateElement, ImageBitmap,
    ImageData,
};

use super::click_tool::{ClickMsg, ClickTool};
use super::dom::{
    Listener, ObjectUrl, context, document, files, find, image_bitmap, set_hidden, set_input_files,
};
use super::painter::{PaintMsg, Painter};
use super::{Msg, dispatch};
use crate::paint::PaintMask;
use crate::web::protocol::{MaskFile, PromptFiles};

/// Identifies a card for as long as it lives (indices shift when one is removed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PromptId(pub u32);

pub enum PromptMsg {
    ImagePicked,
    MaskPicked,
    /// The image decoded for painting (`file`: which image, in case it changed meanwhile).
    PaintImageDecoded(File, Result<ImageBitmap, String>),
    /// The mask file decoded for the thumbnail.
    MaskDecoded(File, Result<ImageBitmap, String>),
    PaintClicked,
    Dropped(Vec<File>),
    Paint(PaintMsg),
    /// Click to select (SAM).
    Click(ClickMsg),
}

#[derive(Clone, PartialEq)]
enum MaskChoice {
    None,
    File(File),
    Painted,
}

pub struct PromptCard {
    pub id: PromptId,
    root: Element,
    number: Element,
    thumb: Element,
    thumb_image: HtmlImageElement,
    thumb_mask: HtmlCanvasElement,
    /// The image shown in the thumbnail; revoked when the image changes or the card goes.
    thumb_url: Option<ObjectUrl>,
    image_input: HtmlInputElement,
    mask_input: HtmlInputElement,
    remove: Element,
    mask_state: Element,
    mask: MaskChoice,
    painter: Painter,
    /// A result's mask waiting for its image to decode, to be corrected in the painter
    /// ([`PromptCard::correct`]); taken only for that same image.
    correcting: Option<(File, PaintMask)>,
    _listeners: Vec<Listener>,
}

impl PromptCard {
    /// A new card from the page's `<template id="prompt-template">`, appended to `list`.
    pub fn new(id: PromptId, list: &Element) -> Result<Self, JsValue> {
        let template: HtmlTemplateElement = document()
            .get_element_by_id("prompt-template")
            .ok_or("index.html lacks the prompt template")?
            .unchecked_into();
        let root: Element = template
            .content()
            .first_element_child()
            .ok_or("the prompt template is empty")?
            .clone_node_with_deep(true)?
            .unchecked_into();
        list.append_child(&root)?;
        let send = move |msg: PromptMsg| dispatch(Msg::Prompt(id, msg));
        let image_input: HtmlInputElement = find(&root, "prompt-image")?;
        let mask_input: HtmlInputElement = find(&root, "prompt-mask")?;
        let remove: Element = find(&root, "remove-prompt")?;
        let paint: Element = find(&root, "paint-mask")?;
        let listeners = vec![
            Listener::new(&image_input, "change", move |_| send(PromptMsg::ImagePicked))?,
            Listener::new(&mask_input, "change", move |_| send(PromptMsg::MaskPicked))?,
            Listener::new(&paint, "click", move |_| send(PromptMsg::PaintClicked))?,
            Listener::new(&remove, "click", move |_| dispatch(Msg::RemovePrompt(id)))?,
            Listener::new(&root, "dragover", |event| event.prevent_default())?,
            Listener::new(&root, "drop", move |event| {
                if let Some(files) = super::dropped_files(&event) {
                    send(PromptMsg::Dropped(files));
                }
            })?,
        ];
        Ok(PromptCard {
            id,
            number: root
                .query_selector(".prompt-number")?
                .ok_or("the prompt template lacks .prompt-number")?,
            thumb: root.query_selector(".thumb")?.ok_or("the prompt template lacks .thumb")?,
            thumb_image: find(&root, "prompt-thumb")?,
            thumb_mask: find(&root, "prompt-thumb-mask")?,
            thumb_url: None,
            image_input,
            mask_input,
            remove,
            mask_state: find(&root, "mask-state")?,
            mask: MaskChoice::None,
            painter: Painter::new(&root, id)?,
            correcting: None,
            root,
            _listeners: listeners,
        })
    }

    pub fn root(&self) -> &Element {
        &self.root
    }

    /// Its place in the list (1-based) and whether it may be removed (the last one stays).
    pub fn render_position(&self, number: usize, removable: bool) {
        self.number.set_text_content(Some(&number.to_string()));
        set_hidden(&self.remove, !removable);
    }

    pub fn update(&mut self, msg: PromptMsg) -> Result<(), JsValue> {
        match msg {
            PromptMsg::ImagePicked => {
                self.thumb_url = None;
                self.thumb_image.remove_attribute("src")?;
                if let Some(image) = self.image() {
                    let url = ObjectUrl::new(&image)?;
                    self.thumb_image.set_src(url.as_str());
                    self.thumb_image.set_alt(&format!("prompt image {}", image.name()));
                    self.thumb_url = Some(url);
                    // A new image: a painting in progress restarts at its size.
                    if self.painter.mask().is_some() {
                        self.decode_for_painting(image);
                    }
                }
                set_hidden(&self.thumb, self.thumb_url.is_none());
            }
            PromptMsg::MaskPicked => {
                self.mask = match self.mask_file() {
                    Some(file) => {
                        let id = self.id;
                        let decoded = file.clone();
                        spawn_local(async move {
                            let bitmap = image_bitmap(&decoded).await.map_err(|e| crate::web::js_text(&e));
                            dispatch(Msg::Prompt(id, PromptMsg::MaskDecoded(decoded, bitmap)));
                        });
                        MaskChoice::File(file)
                    }
                    None if self.painter.mask().is_some() => MaskChoice::Painted,
                    None => MaskChoice::None,
                };
                self.render_mask()?;
            }
            PromptMsg::MaskDecoded(file, bitmap) => {
                // A mask that is not an image is reported when segmenting; the thumbnail just lacks it.
                if self.mask == MaskChoice::File(file)
                    && let Ok(bitmap) = bitmap
                {
                    self.thumb_mask.set_width(bitmap.width());
                    self.thumb_mask.set_height(bitmap.height());
                    context(&self.thumb_mask)?.draw_image_with_image_bitmap(&bitmap, 0.0, 0.0)?;
                }
            }
            PromptMsg::PaintClicked => {
                if self.painter.mask().is_some() {
                    // Back to an existing painting keeps its strokes.
                    self.mask = MaskChoice::Painted;
                    self.render_mask()?;
                } else {
                    let image = self.image().ok_or("choose the prompt image first, then paint its mask")?;
                    self.decode_for_painting(image);
                }
            }
            PromptMsg::PaintImageDecoded(file, bitmap) => {
                if self.image().as_ref() == Some(&file) {
                    let bitmap = bitmap.map_err(|_| {
                        JsValue::from_str(&format!("{} is not an image this browser can show", file.name()))
                    })?;
                    let initial = match self.correcting.take() {
                        Some((image, mask)) if image == file => Some(mask),
                        _ => None,
                    };
                    self.painter.start(&bitmap, initial)?;
                    self.mask = MaskChoice::Painted;
                    self.render_mask()?;
                }
            }
            PromptMsg::Dropped(dropped) => {
                // Image first (unless it has one), then mask.
                let mut dropped = dropped.into_iter();
                if self.image().is_none()
                    && let Some(image) = dropped.next()
                {
                    set_input_files(&self.image_input, &[image])?;
                }
                if let Some(mask) = dropped.next() {
                    set_input_files(&self.mask_input, &[mask])?;
                }
            }
            PromptMsg::Paint(msg) => {
                if self.painter.update(msg)? && self.mask == MaskChoice::Painted {
                    self.render_mask()?;
                }
            }
            PromptMsg::Click(ClickMsg::Toggle) => {
                let on = !self.painter.clicks().active();
                if on && self.painter.mask().is_none() {
                    // Clicks are made over the painting: it starts first, and asks for SAM when it has.
                    let image = self.image().ok_or("choose the prompt image first, then click on it")?;
                    self.decode_for_painting(image);
                    self.painter.clicks_mut().set_active(true)?;
                } else {
                    self.painter.clicks_mut().set_active(on)?;
                    if on {
                        self.mask = MaskChoice::Painted;
                        self.render_mask()?;
                        dispatch(Msg::SamWanted(self.id));
                    }
                }
            }
            PromptMsg::Click(msg) => {
                if self.painter.click(msg)? && self.mask == MaskChoice::Painted {
                    self.render_mask()?;
                }
            }
        }
        Ok(())
    }

    /// Fills the card as a user picking these two files would.
    pub fn fill(&self, image: &File, mask: &File) -> Result<(), JsValue> {
        set_input_files(&self.image_input, std::slice::from_ref(image))?;
        set_input_files(&self.mask_input, std::slice::from_ref(mask))
    }

    /// Makes `image` this prompt's image with `mask` as its painted mask, open in the painter, where the
    /// brush, the eraser and Click to select correct it (a result used as a prompt).
    pub fn correct(&mut self, image: &File, mask: PaintMask) -> Result<(), JsValue> {
        self.correcting = Some((image.clone(), mask));
        self.set_image(image)?;
        self.decode_for_painting(image.clone());
        self.root.scroll_into_view();
        Ok(())
    }

    /// Makes `image` this prompt's image, as picking it would (a video or camera frame).
    pub fn set_image(&self, image: &File) -> Result<(), JsValue> {
        set_input_files(&self.image_input, std::slice::from_ref(image))
    }

    /// The image and mask to send, or why the prompt is not ready (`number`: its place, 1-based).
    pub fn files(&self, number: usize) -> Result<PromptFiles, String> {
        let image = self.image().ok_or(format!("prompt {number}: choose its image"))?;
        let mask = match (&self.mask, self.painter.mask()) {
            (MaskChoice::File(file), _) => MaskFile::File(file.clone()),
            (MaskChoice::Painted, Some(mask)) => {
                if mask.is_blank() {
                    return Err(format!("prompt {number}: the painted mask is empty: paint what to find"));
                }
                MaskFile::Painted { rgb: mask.rgb().to_vec(), width: mask.width(), height: mask.height() }
            }
            _ => return Err(format!("prompt {number}: give its mask (a file, or paint it)")),
        };
        Ok(PromptFiles { image, mask })
    }

    /// Nothing chosen yet: no image, no mask (a tuned prompt may stand in for it).
    pub fn is_blank(&self) -> bool {
        self.image().is_none() && self.mask == MaskChoice::None
    }

    /// The mask file, when the mask is a file (class-index masks are read from these).
    pub fn class_mask_file(&self) -> Option<File> {
        match &self.mask {
            MaskChoice::File(file) => Some(file.clone()),
            _ => None,
        }
    }

    fn image(&self) -> Option<File> {
        files(self.image_input.files()).into_iter().next()
    }

    /// The prompt image, the one click to select works on.
    pub fn image_file(&self) -> Option<File> {
        self.image()
    }

    pub fn clicks(&self) -> &ClickTool {
        self.painter.clicks()
    }

    pub fn clicks_mut(&mut self) -> &mut ClickTool {
        self.painter.clicks_mut()
    }

    fn mask_file(&self) -> Option<File> {
        files(self.mask_input.files()).into_iter().next()
    }

    fn decode_for_painting(&self, image: File) {
        let id = self.id;
        spawn_local(async move {
            let bitmap = image_bitmap(&image).await.map_err(|e| crate::web::js_text(&e));
            dispatch(Msg::Prompt(id, PromptMsg::PaintImageDecoded(image, bitmap)));
        });
    }

    /// The mask line under the card and the mask drawn in the thumbnail.
    fn render_mask(&self) -> Result<(), JsValue> {
        let text = match (&self.mask, self.painter.mask()) {
            (MaskChoice::Painted, Some(mask)) => {
                format!("mask: painted ({} x {})", mask.width(), mask.height())
            }
            (MaskChoice::File(file), _) => format!("mask: {}", file.name()),
            _ => "no mask yet".to_string(),
        };
        self.mask_state.set_text_content(Some(&text));
        match (&self.mask, self.painter.mask()) {
            (MaskChoice::Painted, Some(mask)) => {
                let rgba = crate::paint::opaque_rgba(mask.rgb());
                self.thumb_mask.set_width(mask.width());
                self.thumb_mask.set_height(mask.height());
                let image =
                    ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), mask.width(), mask.height())?;
                context(&self.thumb_mask)?.put_image_data(&image, 0.0, 0.0)?;
            }
            (MaskChoice::None, _) | (MaskChoice::Painted, None) => {
                // A zero-size canvas shows nothing.
                self.thumb_mask.set_width(0);
                self.thumb_mask.set_height(0);
            }
            (MaskChoice::File(_), _) => {} // drawn when decoded
        }
        Ok(())
    }
}

impl Drop for PromptCard {
    fn drop(&mut self) {
        self.root.remove();
    }
}
