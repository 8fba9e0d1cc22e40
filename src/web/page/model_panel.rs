//! The model panel: status and progress, the consent block before the big download, notes (how the
//! model is stored, whether storage is persistent), weights from files, clearing the stored copy; and
//! the error banner with its Retry button.

use wasm_bindgen::JsValue;
use web_sys::{Element, File, HtmlElement, HtmlInputElement, HtmlProgressElement};

use super::dom::{Listener, files, find, set_disabled, set_hidden, set_input_files};
use super::{Msg, dispatch};
use crate::web::size_text;

/// What the visitor is told before the download (the released checkpoint's size when the server
/// does not say).
const RELEASED_MODEL_BYTES: f64 = 1.48e9;

pub struct ModelPanel {
    status: Element,
    progress: HtmlProgressElement,
    consent: Element,
    consent_text: Element,
    note: Element,
    persist_state: Element,
    file_input: HtmlInputElement,
    clear_cache: Element,
    /// A load is open: clearing the stored copy now would pull the file from under it.
    loading: bool,
    _listeners: Vec<Listener>,
}

impl ModelPanel {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let load: HtmlElement = find(root, "load-model")?;
        let file_input: HtmlInputElement = find(root, "model-file")?;
        let clear_cache: Element = find(root, "clear-cache")?;
        let drop_zone: Element = file_input
            .closest("[data-drop=model]")?
            .ok_or_else(|| JsValue::from_str("the model file input lies in no drop zone"))?;
        let listeners = vec![
            Listener::new(&load, "click", |_| dispatch(Msg::LoadModel))?,
            Listener::new(&file_input, "change", |_| dispatch(Msg::ModelFilesPicked))?,
            Listener::new(&clear_cache, "click", |_| dispatch(Msg::ClearCache))?,
            Listener::new(&drop_zone, "dragover", |event| event.prevent_default())?,
            Listener::new(&drop_zone, "drop", |event| {
                if let Some(files) = super::dropped_files(&event) {
                    dispatch(Msg::ModelFilesDropped(files));
                }
            })?,
        ];
        Ok(ModelPanel {
            status: find(root, "model-status")?,
            progress: find(root, "model-progress")?,
            consent: find(root, "consent")?,
            consent_text: find(root, "consent-text")?,
            note: find(root, "model-note")?,
            persist_state: find(root, "persist-state")?,
            file_input,
            clear_cache,
            loading: false,
            _listeners: listeners,
        })
    }

    pub fn set_status(&self, text: &str) {
        self.status.set_text_content(Some(text));
    }

    pub fn set_note(&self, text: &str) {
        self.note.set_text_content(Some(text));
    }

    /// A load starts (`true`) or ends: the progress bar and "Clear the cached model" follow it.
    pub fn set_loading(&mut self, loading: bool) {
        self.loading = loading;
        set_disabled(&self.clear_cache, loading);
        if !loading {
            set_hidden(&self.progress, true);
        }
        if loading {
            set_hidden(&self.consent, true);
        }
    }

    pub fn loading(&self) -> bool {
        self.loading
    }

    /// Shows `done` of `total` bytes (`total` 0: unknown, an indeterminate bar).
    pub fn show_progress(&self, text: &str, done: f64, total: f64) {
        self.set_status(text);
        if total > 0.0 {
            self.progress.set_max(total);
            self.progress.set_value(done);
        } else {
            let _ = self.progress.remove_attribute("value");
        }
        set_hidden(&self.progress, false);
    }

    /// The model is not in browser storage: say what a click downloads, and wait for it.
    pub fn ask_consent(&self, bytes: Option<f64>, note: &str) {
        let size = bytes.unwrap_or(RELEASED_MODEL_BYTES);
        let text = format!(
            "The model (SegGPT ViT-L, {}) is downloaded once and kept in this browser for next time. Your \
             images are never uploaded.{}{note}",
            size_text(size),
            if note.is_empty() { "" } else { " " },
        );
        self.consent_text.set_text_content(Some(&text));
        self.set_status("not loaded: download it to start");
        set_hidden(&self.consent, false);
    }

    /// `granted`: the answer of `navigator.storage.persist()` (`None`: the browser has no such call).
    pub fn show_persistence(&self, granted: Option<bool>) {
        let text = match granted {
            Some(true) => "Persistent storage granted: the browser keeps the model until you clear it.",
            Some(false) => {
                "Persistent storage not granted: the browser may remove the model when space runs low \
                 (it is then downloaded again)."
            }
            None => "This browser cannot keep the model persistently; it may remove it when space runs low.",
        };
        self.persist_state.set_text_content(Some(text));
        set_hidden(&self.persist_state, false);
    }

    /// The picked (or dropped) weight files, and the input emptied so picking the same files again
    /// (after a failure) fires `change` again.
    pub fn take_files(&self) -> Vec<File> {
        let picked = files(self.file_input.files());
        self.file_input.set_value("");
        picked
    }

    pub fn put_files(&self, dropped: &[File]) -> Result<(), JsValue> {
        set_input_files(&self.file_input, dropped)
    }
}

/// The error banner: a message, with Retry when restarting the worker can help.
pub struct ErrorBanner {
    root: Element,
    text: Element,
    retry: Element,
    _listeners: Vec<Listener>,
}

impl ErrorBanner {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let retry: Element = find(root, "retry")?;
        let listeners = vec![Listener::new(&retry, "click", |_| dispatch(Msg::Retry))?];
        Ok(ErrorBanner {
            root: find(root, "error")?,
            text: find(root, "error-text")?,
            retry,
            _listeners: listeners,
        })
    }

    pub fn show(&self, message: &str, retry: bool) {
        self.text.set_text_content(Some(message));
        set_hidden(&self.retry, !retry);
        set_hidden(&self.root, false);
    }

    pub fn hide(&self) {
        set_hidden(&self.root, true);
    }
}
