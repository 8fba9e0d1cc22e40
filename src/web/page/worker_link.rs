//! The main thread's end of the worker: starts it, posts messages, and hands what it sends (and its
//! crashes) to the owner: the page turns them into [`Msg`]s, the JavaScript package (`web::package`)
//! into its promises. Dropping the link terminates the worker and frees its handlers.

use wasm_bindgen::{JsCast, JsValue, prelude::*};
use web_sys::{ErrorEvent, Event, MessageEvent, Worker, WorkerOptions, WorkerType};

use super::dom::window;
use super::{Msg, dispatch};
use crate::web::js_text;
use crate::web::protocol::{self, ToWorker};

/// How long a worker's error event waits for the worker's own `fatal` message, which says why:
/// a panic reaches the page both ways, and the bare event can come first.
const CRASH_GRACE_MS: i32 = 500;

pub struct WorkerLink {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl WorkerLink {
    /// The page's worker (`worker.js` beside the page); `generation`: which start this is, carried by
    /// its messages so that a replaced worker's are ignored.
    pub fn start(generation: u32) -> Result<Self, JsValue> {
        Self::spawn(
            "./worker.js",
            move |data| dispatch(Msg::FromWorker { generation, data }),
            move |message| dispatch(Msg::WorkerCrashed { generation, message }),
        )
    }

    /// The module worker at `script`: `on_message` gets every message's data, `on_crash` why the
    /// worker failed to start or crashed.
    pub fn spawn(
        script: &str,
        mut on_message: impl FnMut(JsValue) + 'static,
        on_crash: impl Fn(String) + Clone + 'static,
    ) -> Result<Self, JsValue> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(script, &options)?;
        let on_message =
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| on_message(event.data()));
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // A script that fails to load gives a plain `Event`, not an `ErrorEvent`.
        let on_error = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            let why = event
                .dyn_ref::<ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "its script could not be loaded".into());
            let message = format!("The model worker failed to start or crashed: {why}");
            let on_crash = on_crash.clone();
            let later = Closure::once_into_js(move || on_crash(message));
            let _ = window()
                .set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), CRASH_GRACE_MS);
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(WorkerLink { worker, _on_message: on_message, _on_error: on_error })
    }

    /// Posts a message with no files.
    pub fn send(&self, msg: &ToWorker) -> Result<(), JsValue> {
        self.post(&protocol::envelope(msg)?)
    }

    /// Posts a message built with `protocol`'s helpers (`{ msg, ...named files }`).
    pub fn post(&self, envelope: &js_sys::Object) -> Result<(), JsValue> {
        self.worker
            .post_message(envelope)
            .map_err(|err| JsValue::from_str(&format!("cannot reach the model worker: {}", js_text(&err))))
    }

    /// Posts a message whose buffers in `transfer` move to the worker instead of being copied.
    pub fn post_transfer(&self, envelope: &js_sys::Object, transfer: &js_sys::Array) -> Result<(), JsValue> {
        self.worker
            .post_message_with_transfer(envelope, transfer)
            .map_err(|err| JsValue::from_str(&format!("cannot reach the model worker: {}", js_text(&err))))
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}
