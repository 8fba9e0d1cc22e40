//! The targets: picked, dropped or pasted images, shown as thumbnails with a remove button each. The
//! file input holds the list (picking replaces it, dropping and pasting add to it); the thumbnails
//! follow it.

use wasm_bindgen::JsValue;
use web_sys::{Element, File, HtmlElement, HtmlImageElement, HtmlInputElement};

use super::dom::{Listener, ObjectUrl, button, element, files, find, set_input_files};
use super::{Msg, dispatch};

struct Thumb {
    file: File,
    item: Element,
    /// Revoked when the thumbnail goes.
    _url: ObjectUrl,
    _remove: Listener,
}

impl Drop for Thumb {
    fn drop(&mut self) {
        self.item.remove();
    }
}

pub struct TargetsPanel {
    input: HtmlInputElement,
    list: Element,
    count: Element,
    thumbs: Vec<Thumb>,
    _listeners: Vec<Listener>,
}

impl TargetsPanel {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let input: HtmlInputElement = find(root, "target-input")?;
        let zone: Element =
            input.closest("[data-drop=targets]")?.ok_or("the target input lies in no drop zone")?;
        let listeners = vec![
            Listener::new(&input, "change", |_| dispatch(Msg::TargetsChanged))?,
            Listener::new(&zone, "dragover", |event| event.prevent_default())?,
            Listener::new(&zone, "drop", |event| {
                if let Some(files) = super::dropped_files(&event) {
                    dispatch(Msg::TargetsAdded(files));
                }
            })?,
        ];
        Ok(TargetsPanel {
            input,
            list: find(root, "target-list")?,
            count: find(root, "target-count")?,
            thumbs: Vec::new(),
            _listeners: listeners,
        })
    }

    pub fn files(&self) -> Vec<File> {
        files(self.input.files())
    }

    /// Replaces the list (as picking files does).
    pub fn set(&self, targets: &[File]) -> Result<(), JsValue> {
        set_input_files(&self.input, targets)
    }

    pub fn add(&self, more: Vec<File>) -> Result<(), JsValue> {
        let mut all = self.files();
        all.extend(more);
        self.set(&all)
    }

    /// Removes the target whose thumbnail shows `file` (by place: the thumbnails follow the list).
    pub fn remove(&self, file: &File) -> Result<(), JsValue> {
        let Some(place) = self.thumbs.iter().position(|t| &t.file == file) else { return Ok(()) };
        let mut rest = self.files();
        if place < rest.len() {
            rest.remove(place);
        }
        self.set(&rest)
    }

    /// Thumbnails for the input's files: those already shown are kept, the others made or dropped.
    pub fn render(&mut self) -> Result<(), JsValue> {
        let files = self.files();
        let mut old: Vec<Option<Thumb>> = std::mem::take(&mut self.thumbs).into_iter().map(Some).collect();
        for file in &files {
            let kept =
                old.iter_mut().find(|t| t.as_ref().is_some_and(|t| &t.file == file)).and_then(Option::take);
            let thumb = match kept {
                Some(thumb) => thumb,
                None => thumbnail(file)?,
            };
            self.list.append_child(&thumb.item)?; // moves it to its place in order
            self.thumbs.push(thumb);
        }
        drop(old);
        let n = files.len();
        let text = match n {
            0 => "no images yet".to_string(),
            1 => "1 image".to_string(),
            n => format!("{n} images"),
        };
        self.count.set_text_content(Some(&text));
        Ok(())
    }
}

fn thumbnail(file: &File) -> Result<Thumb, JsValue> {
    let item: Element = element("li", "thumb")?;
    let image: HtmlImageElement = element("img", "")?;
    let url = ObjectUrl::new(file)?;
    image.set_src(url.as_str());
    image.set_alt(&file.name());
    let remove: HtmlElement = button("×", "remove")?;
    remove.set_attribute("aria-label", &format!("Remove {}", file.name()))?;
    remove.set_attribute("data-testid", "remove-target")?;
    let name: HtmlElement = element("span", "name")?;
    name.set_text_content(Some(&file.name()));
    item.append_child(&image)?;
    item.append_child(&name)?;
    item.append_child(&remove)?;
    let target = file.clone();
    let listener = Listener::new(&remove, "click", move |_| dispatch(Msg::RemoveTarget(target.clone())))?;
    Ok(Thumb { file: file.clone(), item, _url: url, _remove: listener })
}
