//! The frames of a clip, decoded exactly: a video file through the browser's `<video>` decoder, one
//! frame per seek, or a set of image files in the natural order of their names.
//!
//! **Why seeking with `requestVideoFrameCallback`, not WebCodecs.** A `VideoDecoder` needs the
//! encoded chunks, i.e. a demuxer for every container the page accepts (MP4, WebM); the `<video>`
//! element demuxes and decodes whatever the browser plays. Seeking is made exact by checking, not
//! trusting: a short muted playback reports the presentation times of a few frames
//! (`requestVideoFrameCallback`'s `mediaTime`), whose smallest gap is the frame duration
//! ([`Timeline`]); frame `i` is then asked for at the middle of its display interval, and the frame
//! the browser presents after the seek must carry frame `i`'s time. A seek that lands elsewhere, or
//! presents nothing, is an error naming the frame, so no frame is ever skipped or repeated.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CanvasRenderingContext2d, File, HtmlCanvasElement, HtmlVideoElement, ImageBitmap};

use super::dom::{Listener, ObjectUrl, element, image_bitmap, stem, window};
use crate::clip::{Timeline, frame_stem};
use crate::web::js_text;
use crate::web::protocol::FrameInput;

/// How many presented frames the opening playback measures.
const MEASURED_FRAMES: usize = 8;
/// How long after pausing a frame the playback had under way may still be reported.
const SETTLE_MS: i32 = 250;
/// How long a video may take to load its first frame (a blocked or stalled load sends no event).
const LOAD_TIMEOUT_MS: i32 = 30_000;
/// How long to wait for the browser to present a frame (a seek on a slow machine takes a while).
const PRESENT_TIMEOUT_MS: i32 = 5_000;

/// One decoded frame: a bitmap to show, and what the worker gets.
pub struct Decoded {
    pub bitmap: ImageBitmap,
    pub input: FrameInput,
}

/// Where a clip's frames come from. Cloning shares the same decoder.
#[derive(Clone)]
pub enum Source {
    Clip(Rc<Clip>),
    /// Image files, in the natural order of their names (as `seggpt video --frames` reads a folder).
    Images(Rc<Vec<File>>),
}

impl Source {
    /// A video file, or image files (in natural order) as the frames of a clip.
    pub async fn open(files: Vec<File>) -> Result<Source, String> {
        let is_video = |f: &File| f.type_().starts_with("video/");
        match files.as_slice() {
            [] => Err("choose a video file or the frames as images".into()),
            [video] if is_video(video) => Ok(Source::Clip(Rc::new(Clip::open(video).await?))),
            _ if files.iter().any(is_video) => {
                Err("choose one video file, or image files (the frames), not both".into())
            }
            _ => {
                let mut files = files;
                files.sort_by(|a, b| crate::natural::natural_cmp(a.name(), b.name()));
                Ok(Source::Images(Rc::new(files)))
            }
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Source::Clip(clip) => clip.count,
            Source::Images(files) => files.len(),
        }
    }

    /// The file-name stem of frame `index`: its own for an image, `00007` for a video's.
    pub fn stem(&self, index: usize) -> String {
        match self {
            Source::Clip(_) => frame_stem(index),
            Source::Images(files) => {
                files.get(index).map(|f| stem(&f.name()).to_string()).unwrap_or_default()
            }
        }
    }

    /// The clip's name (for downloads) and a line about it.
    pub fn name(&self) -> String {
        match self {
            Source::Clip(clip) => clip.name.clone(),
            Source::Images(_) => "frames".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Clip(clip) => format!(
                "{}: {} frames, {} x {}, {:.3} frames/s",
                clip.name,
                clip.count,
                clip.width,
                clip.height,
                1.0 / clip.timeline.frame_duration
            ),
            Source::Images(files) => {
                format!("{} frames (image files, in natural order: 2 before 10)", files.len())
            }
        }
    }

    /// Frames per second for playback: the clip's own, 10 for image files.
    pub fn frames_per_second(&self) -> f64 {
        match self {
            Source::Clip(clip) => 1.0 / clip.timeline.frame_duration,
            Source::Images(_) => 10.0,
        }
    }

    /// Decodes frame `index`. One at a time: the caller waits for a decode before asking for the next.
    pub async fn frame(&self, index: usize) -> Result<Decoded, String> {
        match self {
            Source::Clip(clip) => clip.frame(index).await,
            Source::Images(files) => {
                let file = files.get(index).ok_or(format!("there is no frame {}", index + 1))?;
                let bitmap = image_bitmap(file)
                    .await
                    .map_err(|_| format!("{} is not an image this browser can show", file.name()))?;
                Ok(Decoded { bitmap, input: FrameInput::File(file.clone()) })
            }
        }
    }
}

/// A video file in a `<video>` element that is never shown, its timeline and its frame size.
pub struct Clip {
    name: String,
    video: HtmlVideoElement,
    _url: ObjectUrl,
    timeline: Timeline,
    count: usize,
    width: u32,
    height: u32,
    canvas: HtmlCanvasElement,
    context: CanvasRenderingContext2d,
    /// The media time of the frame the element presents now.
    presented: Cell<Option<f64>>,
}

impl Clip {
    async fn open(file: &File) -> Result<Clip, String> {
        let name = file.name();
        let cannot = |why: &str| format!("{name}: this browser cannot decode the video ({why})");
        let video: HtmlVideoElement = element("video", "").map_err(|e| js_text(&e))?;
        video.set_muted(true);
        video.set_preload("auto");
        let _ = video.set_attribute("playsinline", "");
        let url = ObjectUrl::new(file).map_err(|e| js_text(&e))?;
        let loaded = wait_event(&video, "loadeddata", "error");
        video.set_src(url.as_str());
        loaded.await.map_err(|why| cannot(&why))?;
        let (width, height) = (video.video_width(), video.video_height());
        if width == 0 || height == 0 {
            return Err(cannot("it has no picture"));
        }
        // The timeline from a short muted playback: the presented frames' times.
        let mut times = Vec::new();
        if let Ok(playing) = video.play() {
            let _ = JsFuture::from(playing).await;
        }
        while times.len() < MEASURED_FRAMES && !video.ended() {
            match wait_presented(presented_frame(&video)).await {
                Some(time) => times.push(time),
                None => break,
            }
        }
        video.pause().map_err(|e| js_text(&e))?;
        // The playback's first report may be a later frame (the first one was on screen before it
        // started): back at 0, the browser presents the first frame, whose time starts the timeline.
        // A frame the playback had under way may still be reported after the pause: let it pass.
        sleep(SETTLE_MS).await;
        let first = presented_frame(&video);
        video.set_current_time(0.0);
        times.extend(wait_presented(first).await);
        let timeline = Timeline::from_presented(&times)
            .ok_or_else(|| cannot("it showed fewer than two frames when played"))?;
        let count = timeline.frame_count(video.duration());
        if count == 0 {
            return Err(cannot("it has no frames"));
        }
        let canvas: HtmlCanvasElement = element("canvas", "").map_err(|e| js_text(&e))?;
        canvas.set_width(width);
        canvas.set_height(height);
        // The pixels are read back for every frame: a canvas kept in memory, not on the GPU.
        let options = js_sys::Object::new();
        let _ = Reflect::set(&options, &"willReadFrequently".into(), &true.into());
        let context: CanvasRenderingContext2d = canvas
            .get_context_with_context_options("2d", &options)
            .map_err(|e| js_text(&e))?
            .ok_or("no 2D canvas")?
            .unchecked_into();
        Ok(Clip {
            name,
            video,
            _url: url,
            timeline,
            count,
            width,
            height,
            canvas,
            context,
            presented: Cell::new(times.last().copied()),
        })
    }

    async fn frame(&self, index: usize) -> Result<Decoded, String> {
        if index >= self.count {
            return Err(format!("there is no frame {}", index + 1));
        }
        let shown = self.presented.get().map(|t| self.timeline.index_at(t));
        if shown != Some(index) {
            let presented = presented_frame(&self.video);
            self.video.set_current_time(self.timeline.seek_time(index));
            let time = wait_presented(presented).await.ok_or_else(|| {
                format!("frame {}: the browser presented no frame after seeking to it", index + 1)
            })?;
            self.presented.set(Some(time));
            let got = self.timeline.index_at(time);
            if got != index {
                return Err(format!(
                    "frame {}: seeking presented frame {} instead, so the clip cannot be decoded frame \
                     by frame here (try the frames as images)",
                    index + 1,
                    got + 1
                ));
            }
        }
        let (w, h) = (self.width, self.height);
        self.context.draw_image_with_html_video_element(&self.video, 0.0, 0.0).map_err(|e| js_text(&e))?;
        let rgba = self
            .context
            .get_image_data(0.0, 0.0, f64::from(w), f64::from(h))
            .map_err(|e| js_text(&e))?
            .data()
            .0;
        let bitmap = canvas_bitmap(&self.canvas).await?;
        Ok(Decoded { bitmap, input: FrameInput::Pixels { rgba, width: w, height: h } })
    }
}

/// A bitmap of a canvas's pixels as they are.
pub async fn canvas_bitmap(canvas: &HtmlCanvasElement) -> Result<ImageBitmap, String> {
    let promise = window().create_image_bitmap_with_html_canvas_element(canvas).map_err(|e| js_text(&e))?;
    Ok(JsFuture::from(promise).await.map_err(|e| js_text(&e))?.unchecked_into())
}

/// Asks for the media time of the next frame `video` presents, from now on (before a seek).
/// (`requestVideoFrameCallback` is called through `Reflect`: web-sys has it only as an unstable API.)
fn presented_frame(video: &HtmlVideoElement) -> Promise {
    Promise::new(&mut |resolve: Function, _| {
        let on_frame = Closure::once_into_js(move |_now: JsValue, metadata: JsValue| {
            let time = Reflect::get(&metadata, &"mediaTime".into()).unwrap_or(JsValue::NULL);
            let _ = resolve.call1(&JsValue::NULL, &time);
        });
        let request = Reflect::get(video, &"requestVideoFrameCallback".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        if let Some(request) = request {
            let _ = request.call1(video, &on_frame);
        }
    })
}

/// The media time [`presented_frame`] asked for, or `None` when no frame comes in time.
async fn wait_presented(presented: Promise) -> Option<f64> {
    JsFuture::from(with_timeout(presented, PRESENT_TIMEOUT_MS)).await.ok()?.as_f64()
}

async fn sleep(ms: i32) {
    let done = Promise::new(&mut |resolve: Function, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(done).await;
}

/// `promise`, or `null` after `ms` milliseconds.
fn with_timeout(promise: Promise, ms: i32) -> Promise {
    let timeout = Promise::new(&mut |resolve: Function, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_1(&resolve, ms, &JsValue::NULL);
    });
    Promise::race(&js_sys::Array::of2(&promise, &timeout))
}

/// Resolves at the first `ok` event of `target`; fails at its first `fail` event (with the media
/// error's message, if any) or when neither comes in time.
async fn wait_event(target: &HtmlVideoElement, ok: &'static str, fail: &'static str) -> Result<(), String> {
    let mut listeners = Vec::new();
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let media = target.clone();
        listeners.push(Listener::new(target, ok, move |_| {
            let _ = resolve.call1(&JsValue::NULL, &JsValue::TRUE);
        }));
        listeners.push(Listener::new(target, fail, move |_| {
            let why = media.error().map(|e| e.message()).filter(|m| !m.is_empty());
            let _ = reject.call1(&JsValue::NULL, &why.unwrap_or_else(|| "unsupported format".into()).into());
        }));
    });
    let result = match JsFuture::from(with_timeout(promise, LOAD_TIMEOUT_MS)).await {
        Ok(loaded) if loaded.is_truthy() => Ok(()),
        Ok(_) => Err(format!("it did not load within {} s", LOAD_TIMEOUT_MS / 1000)),
        Err(why) => Err(js_text(&why)),
    };
    drop(listeners);
    result
}
