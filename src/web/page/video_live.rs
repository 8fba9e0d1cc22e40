//! The Live mode: the camera through `getUserMedia`, a captured frame as a prompt (painted in the
//! prompt card), then the camera's frames segmented continuously, as fast as the GPU allows. One
//! frame is in the worker at a time and the next one is taken when its answer comes, so the frames
//! in between are dropped, never queued. The measured frames/s are shown; Stop releases the camera.
//! No frame leaves the device: they go to the worker, nowhere else.

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    CanvasRenderingContext2d, Element, HtmlCanvasElement, HtmlVideoElement, ImageBitmap, MediaStream,
    MediaStreamTrack,
};

use super::dom::{Listener, context, element, find, set_disabled, set_hidden, window};
use super::video::{mask_canvas, overlay};
use super::video_source::canvas_bitmap;
use super::worker_link::WorkerLink;
use super::{Msg, dispatch};
use crate::clip::FrameRate;
use crate::web::js_text;
use crate::web::protocol::{self, FrameInput, ResultBuffers, ToWorker};

pub enum LiveMsg {
    Start,
    Started(Result<MediaStream, String>),
    Stop,
    /// "Use this frame as the prompt": handled by the app, which owns the prompts.
    Capture,
}

/// Live segmentation in progress.
struct Running {
    session: u32,
    /// The frame in the worker, with its picture, and the next index.
    in_flight: Option<(usize, ImageBitmap)>,
    next: usize,
    rate: FrameRate,
}

pub struct LivePanel {
    root: Element,
    start: Element,
    stop: Element,
    capture: Element,
    run_button: Element,
    status: Element,
    video: HtmlVideoElement,
    canvas: HtmlCanvasElement,
    grab: HtmlCanvasElement,
    grab_context: CanvasRenderingContext2d,
    stream: Option<MediaStream>,
    running: Option<Running>,
    _listeners: Vec<Listener>,
}

impl LivePanel {
    pub fn new(doc: &web_sys::Document) -> Result<Self, JsValue> {
        let send = |msg: LiveMsg| dispatch(Msg::Live(msg));
        let start: Element = find(doc, "live-start")?;
        let stop: Element = find(doc, "live-stop")?;
        let capture: Element = find(doc, "live-capture")?;
        let run_button: Element = find(doc, "live-run")?;
        let listeners = vec![
            Listener::new(&start, "click", move |_| send(LiveMsg::Start))?,
            Listener::new(&stop, "click", move |_| send(LiveMsg::Stop))?,
            Listener::new(&capture, "click", move |_| send(LiveMsg::Capture))?,
            Listener::new(&run_button, "click", |_| dispatch(Msg::LiveRun))?,
        ];
        let grab: HtmlCanvasElement = element("canvas", "")?;
        let options = Object::new();
        Reflect::set(&options, &"willReadFrequently".into(), &true.into())?;
        let grab_context: CanvasRenderingContext2d =
            grab.get_context_with_context_options("2d", &options)?.ok_or("no 2D canvas")?.unchecked_into();
        let panel = LivePanel {
            root: find(doc, "live")?,
            start,
            stop,
            capture,
            run_button,
            status: find(doc, "live-status")?,
            video: find(doc, "live-video")?,
            canvas: find(doc, "live-canvas")?,
            grab,
            grab_context,
            stream: None,
            running: None,
            _listeners: listeners,
        };
        panel.render(false);
        Ok(panel)
    }

    pub fn session(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.session)
    }

    pub fn render(&self, ready: bool) {
        let on = self.stream.is_some();
        set_disabled(&self.start, on);
        set_disabled(&self.stop, !on);
        set_disabled(&self.capture, !on);
        set_disabled(&self.run_button, !on || !ready || self.running.is_some());
        set_hidden(&self.video, !on);
        let _ = self.root.set_attribute("data-camera", if on { "on" } else { "off" });
    }

    pub fn update(&mut self, msg: LiveMsg, worker: Option<&WorkerLink>) -> Result<(), JsValue> {
        match msg {
            LiveMsg::Start => {
                self.status.set_text_content(Some("asking for the camera ..."));
                spawn_local(async { dispatch(Msg::Live(LiveMsg::Started(camera().await))) });
            }
            LiveMsg::Started(Ok(stream)) => {
                self.video.set_src_object(Some(&stream));
                self.video.set_muted(true);
                let _ = self.video.play();
                self.stream = Some(stream);
                self.status.set_text_content(Some(
                    "camera on: capture a frame as the prompt (and paint its mask), or use the prompts above, \
                     then Segment live",
                ));
            }
            LiveMsg::Started(Err(why)) => {
                self.status.set_text_content(Some(&why));
                return Err(why.into());
            }
            LiveMsg::Stop => self.stop(worker, "camera off")?,
            LiveMsg::Capture => {} // the app's
        }
        Ok(())
    }

    /// The camera's current frame as a picture (to become a prompt).
    pub async fn capture(video: HtmlVideoElement) -> Result<ImageBitmap, JsValue> {
        if video.video_width() == 0 || video.video_height() == 0 {
            return Err("the camera gives no picture yet; try again in a moment".into());
        }
        let canvas: HtmlCanvasElement = element("canvas", "")?;
        canvas.set_width(video.video_width());
        canvas.set_height(video.video_height());
        context(&canvas)?.draw_image_with_html_video_element(&video, 0.0, 0.0)?;
        canvas_bitmap(&canvas).await.map_err(JsValue::from)
    }

    pub fn video(&self) -> Option<HtmlVideoElement> {
        self.stream.as_ref().map(|_| self.video.clone())
    }

    /// Starts segmenting as `session` (the app has sent `VideoStart` with the prompts).
    pub fn begin(&mut self, session: u32, worker: Option<&WorkerLink>) -> Result<(), JsValue> {
        self.running = Some(Running { session, in_flight: None, next: 0, rate: FrameRate::new() });
        self.status.set_text_content(Some("segmenting live ..."));
        let sent = self.send_frame(worker);
        if sent.is_err() {
            self.running = None;
        }
        sent
    }

    /// Takes the camera's newest frame and sends it.
    fn send_frame(&mut self, worker: Option<&WorkerLink>) -> Result<(), JsValue> {
        let Some(running) = self.running.as_mut() else { return Ok(()) };
        let (w, h) = (self.video.video_width(), self.video.video_height());
        if w == 0 || h == 0 {
            return Err("the camera gives no picture yet; try again in a moment".into());
        }
        if self.grab.width() != w || self.grab.height() != h {
            self.grab.set_width(w);
            self.grab.set_height(h);
        }
        self.grab_context.draw_image_with_html_video_element(&self.video, 0.0, 0.0)?;
        let rgba = self.grab_context.get_image_data(0.0, 0.0, f64::from(w), f64::from(h))?.data().0;
        let worker = worker.ok_or("the model worker is not running: press Retry")?;
        let index = running.next;
        let envelope = protocol::envelope(&ToWorker::VideoFrame { session: running.session, index })?;
        let transfer = FrameInput::Pixels { rgba, width: w, height: h }.to_js(&envelope);
        worker.post_transfer(&envelope, &transfer)?;
        running.next += 1;
        // The picture for the overlay, taken now: the canvas is reused for the next frame.
        let grab = self.grab.clone();
        let session = running.session;
        running.in_flight = None;
        spawn_local(async move {
            if let Ok(bitmap) = canvas_bitmap(&grab).await {
                dispatch(Msg::LiveFrameKept { session, index, bitmap });
            }
        });
        Ok(())
    }

    /// The picture of the frame in the worker, once made.
    pub fn keep_frame(&mut self, session: u32, index: usize, bitmap: ImageBitmap) {
        if let Some(running) = self.running.as_mut().filter(|r| r.session == session) {
            running.in_flight = Some((index, bitmap));
        }
    }

    /// A frame's mask: draw it over its frame, count it, take the next frame.
    pub fn on_result(
        &mut self,
        worker: Option<&WorkerLink>,
        index: usize,
        size: (u32, u32),
        buffers: ResultBuffers,
    ) -> Result<(), JsValue> {
        let Some(running) = self.running.as_mut() else { return Ok(()) };
        running.rate.tick(crate::web::now_s());
        let fps = running.rate.per_second();
        let (width, height) = size;
        if let Some((_, bitmap)) = running.in_flight.take().filter(|(i, _)| *i == index) {
            self.canvas.set_width(width);
            self.canvas.set_height(height);
            let ctx = context(&self.canvas)?;
            ctx.draw_image_with_image_bitmap(&bitmap, 0.0, 0.0)?;
            let mask = mask_canvas(&buffers.mask_rgb, &buffers.labels, width, height, &[])?;
            overlay(&ctx, &mask, 0.6, f64::from(width), f64::from(height))?;
        }
        let text = match fps {
            Some(fps) => format!("live: {fps:.2} frames/s ({} frames)", index + 1),
            None => format!("live: {} frame(s)", index + 1),
        };
        self.status.set_text_content(Some(&text));
        if let Some(fps) = fps {
            self.root.set_attribute("data-fps", &format!("{fps:.3}"))?;
        }
        self.root.set_attribute("data-frames", &(index + 1).to_string())?;
        self.send_frame(worker)
    }

    /// Ends live segmentation (the worker failed or went away), keeping the camera.
    pub fn fail(&mut self, worker: Option<&WorkerLink>, message: &str) -> Result<(), JsValue> {
        if let Some(running) = self.running.take() {
            if let Some(worker) = worker {
                worker.send(&ToWorker::VideoEnd { session: running.session })?;
            }
            self.status.set_text_content(Some(&format!("stopped: {message}")));
        }
        Ok(())
    }

    /// Ends live segmentation and releases the camera.
    pub fn stop(&mut self, worker: Option<&WorkerLink>, status: &str) -> Result<(), JsValue> {
        if let Some(running) = self.running.take()
            && let Some(worker) = worker
        {
            worker.send(&ToWorker::VideoEnd { session: running.session })?;
        }
        if let Some(stream) = self.stream.take() {
            for track in stream.get_tracks() {
                track.unchecked_into::<MediaStreamTrack>().stop();
            }
        }
        self.video.set_src_object(None);
        self.status.set_text_content(Some(status));
        dispatch(Msg::VideoChanged);
        Ok(())
    }
}

impl Drop for LivePanel {
    fn drop(&mut self) {
        let _ = self.stop(None, "");
    }
}

/// The camera's stream, or a plain reason why not.
async fn camera() -> Result<MediaStream, String> {
    let devices = window()
        .navigator()
        .media_devices()
        .map_err(|_| "this browser gives no access to cameras (it needs a secure page, https)".to_string())?;
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_video(&true.into());
    let promise: Promise = devices.get_user_media_with_constraints(&constraints).map_err(|e| js_text(&e))?;
    match JsFuture::from(promise).await {
        Ok(stream) => Ok(stream.unchecked_into()),
        Err(err) => {
            let name =
                Reflect::get(&err, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
            Err(match name.as_str() {
                "NotAllowedError" | "SecurityError" => "The camera is blocked for this page: allow it in the \
                    browser's site settings (the camera icon in the address bar), then press Start camera again."
                    .into(),
                "NotFoundError" | "OverconstrainedError" => "No camera was found: connect one, then press Start \
                    camera again."
                    .into(),
                "NotReadableError" | "AbortError" => "The camera is in use by another program or tab: close it, \
                    then press Start camera again."
                    .into(),
                _ => format!("The camera could not be started: {}", js_text(&err)),
            })
        }
    }
}
