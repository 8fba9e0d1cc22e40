//! The Video panel: pick or drop a clip (a video file, or its frames as images), scrub to a frame,
//! use it as a prompt, choose K and the propagation rule, **Propagate** (every frame or every n-th,
//! one frame at a time through the worker, with progress, a live preview and **Stop**), then play
//! the clip back with its masks (opacity and colour toggles as for images) and download the masks
//! (a zip named like `seggpt video`'s output), the decoded frames, and the overlay as a WebM video.

use std::collections::BTreeMap;

use js_sys::Array;
use wasm_bindgen::{Clamped, JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    Blob, BlobEvent, CanvasRenderingContext2d, Element, File, HtmlCanvasElement, HtmlInputElement,
    HtmlProgressElement, HtmlSelectElement, ImageBitmap, ImageData, MediaRecorder, MediaRecorderOptions,
};

use super::dom::{
    Listener, blob, colour_toggle, context, element, files, fill_select, find, save, set_disabled,
    set_hidden, stem, window,
};
use super::video_source::{Decoded, Source};
use super::worker_link::WorkerLink;
use super::{Msg, dispatch, dropped_files};
use crate::clip::{DEFAULT_NUM_FRAMES, FrameRate, Propagate, mask_name, planned_frames, progress_text};
use crate::paint::visible_mask_rgba;
use crate::pipeline::{RgbImage, encode_rgb_png};
use crate::web::js_text;
use crate::web::protocol::{self, FrameInput, ResultBuffers, ToWorker};

pub enum VideoMsg {
    Picked,
    Dropped(Vec<File>),
    Opened {
        generation: u32,
        source: Result<Source, String>,
    },
    Scrub,
    Decoded {
        generation: u32,
        purpose: Purpose,
        index: usize,
        frame: Result<Decoded, String>,
    },
    /// "Use this frame as the prompt": handled by the app, which owns the prompts.
    UseFrame,
    Stop,
    Play,
    Tick,
    Opacity,
    Toggle {
        colour: usize,
        shown: bool,
    },
    DownloadMasks,
    DownloadFrames,
    DownloadOverlay,
    Recorded(Result<Blob, String>),
}

/// Why a frame was decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Show,
    Propagate(u32),
}

/// A segmented frame: its picture, its mask PNG (the CLI's bytes), and the mask as drawn.
struct FrameResult {
    bitmap: ImageBitmap,
    png: Vec<u8>,
    rgb: Vec<u8>,
    labels: Vec<u8>,
    width: u32,
    height: u32,
    /// The mask with hidden colours white, rebuilt when a toggle changes.
    mask: HtmlCanvasElement,
}

/// A propagation in progress: one frame in the worker, the next one decoded ahead.
struct Run {
    session: u32,
    plan: Vec<usize>,
    /// How many of `plan` were sent to the worker.
    sent: usize,
    in_flight: Option<(usize, ImageBitmap)>,
    ahead: Option<(usize, Decoded)>,
    rate: FrameRate,
    started: f64,
}

/// Playing the segmented frames back, maybe into a recorder.
struct Playback {
    order: Vec<usize>,
    position: usize,
    timer: i32,
    _tick: Closure<dyn FnMut()>,
    recorder: Option<Recording>,
}

impl Drop for Playback {
    fn drop(&mut self) {
        window().clear_interval_with_handle(self.timer);
    }
}

struct Recording {
    recorder: MediaRecorder,
    _listeners: Vec<Listener>,
}

pub struct VideoPanel {
    input: HtmlInputElement,
    info: Element,
    canvas: HtmlCanvasElement,
    scrub: HtmlInputElement,
    frame_label: Element,
    use_frame: Element,
    previous_frames: HtmlInputElement,
    previous_hint: Element,
    propagate: HtmlSelectElement,
    from: HtmlInputElement,
    step: HtmlInputElement,
    run_button: Element,
    stop: Element,
    progress: HtmlProgressElement,
    status: Element,
    play: Element,
    opacity: HtmlInputElement,
    toggles: Element,
    download_masks: Element,
    download_frames: Element,
    download_overlay: Element,
    generation: u32,
    source: Option<Source>,
    /// The frame on the canvas, and its picture when it was decoded for showing.
    shown: Option<(usize, ImageBitmap)>,
    /// A decode for showing is running; `wanted` is the frame asked for meanwhile.
    show_decoding: bool,
    wanted: Option<usize>,
    frames: BTreeMap<usize, FrameResult>,
    colours: Vec<[u8; 3]>,
    hidden: Vec<bool>,
    run: Option<Run>,
    playback: Option<Playback>,
    /// A recorder stopped, until it hands over its video.
    recording: Option<Recording>,
    toggle_listeners: Vec<Listener>,
    _listeners: Vec<Listener>,
}

impl VideoPanel {
    pub fn new(doc: &web_sys::Document) -> Result<Self, JsValue> {
        let send = |msg: VideoMsg| dispatch(Msg::Video(msg));
        let input: HtmlInputElement = find(doc, "video-input")?;
        let zone: Element = find(doc, "video-drop")?;
        let scrub: HtmlInputElement = find(doc, "video-scrub")?;
        let use_frame: Element = find(doc, "video-use-frame")?;
        let previous_frames: HtmlInputElement = find(doc, "video-previous-frames")?;
        let propagate: HtmlSelectElement = find(doc, "video-propagate")?;
        let run_button: Element = find(doc, "video-run")?;
        let stop: Element = find(doc, "video-stop")?;
        let play: Element = find(doc, "video-play")?;
        let opacity: HtmlInputElement = find(doc, "video-opacity")?;
        let download_masks: Element = find(doc, "video-download-masks")?;
        let download_frames: Element = find(doc, "video-download-frames")?;
        let download_overlay: Element = find(doc, "video-download-overlay")?;
        let rules = Propagate::ALL.map(|rule| {
            let label = match rule {
                Propagate::Binary => "binary (the official rule: objects cached as white)",
                Propagate::Colour => "colour (each object keeps its prompt colour)",
            };
            (rule.name(), label)
        });
        fill_select(&propagate, &rules, Propagate::default().name())?;
        previous_frames.set_value(&DEFAULT_NUM_FRAMES.to_string());
        let listeners = vec![
            Listener::new(&input, "change", move |_| send(VideoMsg::Picked))?,
            Listener::new(&zone, "dragover", |event| event.prevent_default())?,
            Listener::new(&zone, "drop", move |event| {
                if let Some(files) = dropped_files(&event) {
                    send(VideoMsg::Dropped(files));
                }
            })?,
            Listener::new(&scrub, "input", move |_| send(VideoMsg::Scrub))?,
            Listener::new(&use_frame, "click", move |_| send(VideoMsg::UseFrame))?,
            Listener::new(&run_button, "click", |_| dispatch(Msg::Propagate))?,
            Listener::new(&stop, "click", move |_| send(VideoMsg::Stop))?,
            Listener::new(&play, "click", move |_| send(VideoMsg::Play))?,
            Listener::new(&opacity, "input", move |_| send(VideoMsg::Opacity))?,
            Listener::new(&download_masks, "click", move |_| send(VideoMsg::DownloadMasks))?,
            Listener::new(&download_frames, "click", move |_| send(VideoMsg::DownloadFrames))?,
            Listener::new(&download_overlay, "click", move |_| send(VideoMsg::DownloadOverlay))?,
        ];
        let panel = VideoPanel {
            input,
            info: find(doc, "video-info")?,
            canvas: find(doc, "video-canvas")?,
            scrub,
            frame_label: find(doc, "video-frame")?,
            use_frame,
            previous_frames,
            previous_hint: find(doc, "video-previous-hint")?,
            propagate,
            from: find(doc, "video-from")?,
            step: find(doc, "video-step")?,
            run_button,
            stop,
            progress: find(doc, "video-progress")?,
            status: find(doc, "video-status")?,
            play,
            opacity,
            toggles: find(doc, "video-colour-toggles")?,
            download_masks,
            download_frames,
            download_overlay,
            generation: 0,
            source: None,
            shown: None,
            show_decoding: false,
            wanted: None,
            frames: BTreeMap::new(),
            colours: Vec::new(),
            hidden: Vec::new(),
            run: None,
            playback: None,
            recording: None,
            toggle_listeners: Vec::new(),
            _listeners: listeners,
        };
        panel.render_controls(false, usize::MAX, 1);
        Ok(panel)
    }

    /// The session of the propagation in progress.
    pub fn session(&self) -> Option<u32> {
        self.run.as_ref().map(|run| run.session)
    }

    /// K and the propagation rule, as chosen (shared with the Live mode).
    pub fn settings(&self) -> Result<(usize, Propagate), String> {
        let k = self
            .previous_frames
            .value()
            .trim()
            .parse::<usize>()
            .map_err(|_| "the number of previous frames must be a whole number, 0 or more".to_string())?;
        let rule =
            Propagate::ALL.into_iter().find(|p| p.name() == self.propagate.value()).unwrap_or_default();
        Ok((k, rule))
    }

    /// The shown frame's picture and a file name for it (`clip-00007.png`); a propagation will
    /// start from it (the frame that shows the objects is where following them starts).
    pub fn use_shown_frame(&self) -> Option<(ImageBitmap, String)> {
        let source = self.source.as_ref()?;
        let (index, bitmap) = self.shown.as_ref()?;
        self.from.set_value(&(index + 1).to_string());
        Some((bitmap.clone(), format!("{}-{}.png", stem(&source.name()), source.stem(*index))))
    }

    /// Shows how many previous frames fit: the device's prompt limit (a GPU's buffer limit, or the
    /// bound every device shares) less the prompts.
    pub fn render_controls(&self, ready: bool, max_prompts: usize, prompts: usize) {
        let running = self.run.is_some();
        let has_source = self.source.is_some();
        set_disabled(&self.run_button, !ready || running || !has_source);
        set_hidden(&self.stop, !running);
        set_hidden(&self.progress, !running);
        set_disabled(&self.scrub, running || !has_source);
        set_disabled(&self.use_frame, running || self.shown.is_none());
        let done = !self.frames.is_empty() && !running;
        for button in [&self.play, &self.download_masks, &self.download_frames, &self.download_overlay] {
            set_disabled(button, !done);
        }
        let hint = if max_prompts == usize::MAX {
            "previous frames the model sees beside the prompts (the CLI's --num-frames)".to_string()
        } else {
            let fits = max_prompts.saturating_sub(prompts.max(1));
            format!("this device fits up to {fits} previous frames beside {} prompt(s)", prompts.max(1))
        };
        self.previous_hint.set_text_content(Some(&hint));
    }

    pub fn update(&mut self, msg: VideoMsg, worker: Option<&WorkerLink>) -> Result<(), JsValue> {
        match msg {
            VideoMsg::Picked => self.open(files(self.input.files())),
            VideoMsg::Dropped(dropped) => self.open(dropped),
            VideoMsg::Opened { generation, source } if generation == self.generation => {
                let source = source.map_err(|why| {
                    self.info.set_text_content(Some("no clip"));
                    JsValue::from_str(&why)
                })?;
                self.info.set_text_content(Some(&source.describe()));
                self.scrub.set_max(&(source.count().saturating_sub(1)).to_string());
                self.scrub.set_value("0");
                self.from.set_value("1");
                self.source = Some(source);
                self.show(0);
            }
            VideoMsg::Opened { .. } => {}
            VideoMsg::Scrub => {
                if let Ok(index) = self.scrub.value().parse::<usize>() {
                    self.stop_playback();
                    self.show(index);
                }
            }
            VideoMsg::Decoded { generation, .. } if generation != self.generation => {}
            VideoMsg::Decoded { purpose: Purpose::Show, index, frame, .. } => {
                self.show_decoding = false;
                let frame = frame.map_err(|why| JsValue::from_str(&why))?;
                self.shown = Some((index, frame.bitmap));
                self.draw(index)?;
                if let Some(next) = self.wanted.take() {
                    self.show(next);
                }
            }
            VideoMsg::Decoded { purpose: Purpose::Propagate(session), index, frame, .. } => {
                if self.session() == Some(session) {
                    match frame {
                        Ok(frame) => {
                            if let Some(run) = self.run.as_mut() {
                                run.ahead = Some((index, frame));
                            }
                            self.send_next(worker)?;
                        }
                        Err(why) => {
                            self.end_run(worker, &format!("stopped: {why}"))?;
                            return Err(why.into());
                        }
                    }
                }
            }
            VideoMsg::UseFrame => {} // the app's
            VideoMsg::Stop => {
                let done = self.frames.len();
                self.end_run(worker, &format!("stopped after {done} frame(s)"))?;
            }
            VideoMsg::Play => match self.playback {
                Some(_) => self.stop_playback(),
                None => self.start_playback(None)?,
            },
            VideoMsg::Tick => self.tick()?,
            VideoMsg::Opacity => {
                if let Some((index, _)) = &self.shown {
                    self.draw(*index)?;
                }
            }
            VideoMsg::Toggle { colour, shown } => {
                if let Some(hidden) = self.hidden.get_mut(colour) {
                    *hidden = !shown;
                }
                for frame in self.frames.values_mut() {
                    frame.mask =
                        mask_canvas(&frame.rgb, &frame.labels, frame.width, frame.height, &self.hidden)?;
                }
                if let Some((index, _)) = &self.shown {
                    self.draw(*index)?;
                }
            }
            VideoMsg::DownloadMasks => {
                let source = self.source.as_ref().ok_or("open a clip first")?;
                let entries: Vec<(String, Vec<u8>)> = self
                    .frames
                    .iter()
                    .map(|(index, frame)| (mask_name(&source.stem(*index)), frame.png.clone()))
                    .collect();
                let zip = crate::archive::zip_stored(&entries).map_err(|e| JsValue::from_str(&e))?;
                save(&blob(&zip, "application/zip")?, &format!("{}.masks.zip", stem(&source.name())))?;
            }
            VideoMsg::DownloadFrames => {
                let source = self.source.clone().ok_or("open a clip first")?;
                let indices: Vec<usize> = self.frames.keys().copied().collect();
                self.status.set_text_content(Some("decoding the frames again for the zip ..."));
                spawn_local(async move {
                    if let Err(why) = frames_zip(&source, &indices).await {
                        dispatch(Msg::Failed(format!("cannot make the frames zip: {why}")));
                    }
                });
            }
            VideoMsg::DownloadOverlay => {
                self.stop_playback();
                let recording = self.record()?;
                self.status.set_text_content(Some("recording the overlay video while it plays ..."));
                self.start_playback(Some(recording))?;
            }
            VideoMsg::Recorded(recorded) => {
                self.recording = None;
                let video = recorded.map_err(|why| JsValue::from_str(&format!("recording failed: {why}")))?;
                let name = self.source.as_ref().map(|s| stem(&s.name()).to_string()).unwrap_or_default();
                self.status
                    .set_text_content(Some(&format!("overlay video: {} KB", (video.size() / 1024.0).ceil())));
                save(&video, &format!("{name}.overlay.webm"))?;
            }
        }
        Ok(())
    }

    fn open(&mut self, picked: Vec<File>) {
        if picked.is_empty() {
            return;
        }
        self.generation += 1;
        self.source = None;
        self.shown = None;
        self.frames.clear();
        self.stop_playback();
        self.info.set_text_content(Some("opening ..."));
        let generation = self.generation;
        spawn_local(async move {
            let source = Source::open(picked).await;
            dispatch(Msg::Video(VideoMsg::Opened { generation, source }));
        });
    }

    /// Shows frame `index`: its stored result, else the decoded frame (one decode at a time).
    fn show(&mut self, index: usize) {
        let Some(source) = self.source.clone() else { return };
        self.scrub.set_value(&index.to_string());
        self.frame_label.set_text_content(Some(&format!("frame {} of {}", index + 1, source.count())));
        if self.show_decoding {
            self.wanted = Some(index);
            return;
        }
        self.show_decoding = true;
        let generation = self.generation;
        spawn_local(async move {
            let frame = source.frame(index).await;
            dispatch(Msg::Video(VideoMsg::Decoded { generation, purpose: Purpose::Show, index, frame }));
        });
    }

    /// The frames a propagation would segment: from the chosen frame on, every n-th.
    pub fn plan(&self) -> Result<Vec<usize>, String> {
        let source = self.source.as_ref().ok_or("open a clip first: a video file or its frames")?;
        if self.run.is_some() {
            return Err("a propagation is running: stop it first".into());
        }
        if self.show_decoding {
            // One decode at a time on the clip's `<video>`.
            return Err("the frame is still being decoded: press Propagate again in a moment".into());
        }
        let from = self
            .from
            .value()
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|f| (1..=source.count()).contains(f))
            .ok_or(format!("start from a frame between 1 and {}", source.count()))?;
        let step = self
            .step
            .value()
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|s| *s >= 1)
            .ok_or("segment every n-th frame: n must be a whole number, 1 or more")?;
        Ok(planned_frames(source.count(), from - 1, step))
    }

    /// Starts a propagation of `plan` as `session` (the app has sent `VideoStart` with the prompts).
    pub fn begin(&mut self, session: u32, plan: Vec<usize>) {
        self.stop_playback();
        self.frames.clear();
        self.run = Some(Run {
            session,
            plan,
            sent: 0,
            in_flight: None,
            ahead: None,
            rate: FrameRate::new(),
            started: crate::web::now_s(),
        });
        self.progress.set_max(self.run.as_ref().map_or(1, |r| r.plan.len()) as f64);
        self.progress.set_value(0.0);
        self.status.set_text_content(Some("starting ..."));
        self.decode_next();
    }

    /// Decodes the next planned frame that is neither sent nor decoded yet.
    fn decode_next(&self) {
        let (Some(run), Some(source)) = (&self.run, self.source.clone()) else { return };
        // `sent` counts the frame in the worker; the one decoded ahead comes next.
        let Some(&index) = run.plan.get(run.sent + usize::from(run.ahead.is_some())) else { return };
        let (generation, session) = (self.generation, run.session);
        spawn_local(async move {
            let frame = source.frame(index).await;
            let purpose = Purpose::Propagate(session);
            dispatch(Msg::Video(VideoMsg::Decoded { generation, purpose, index, frame }));
        });
    }

    /// Sends the decoded frame when the worker is free, and decodes the one after it meanwhile.
    fn send_next(&mut self, worker: Option<&WorkerLink>) -> Result<(), JsValue> {
        let Some(run) = self.run.as_mut() else { return Ok(()) };
        if run.in_flight.is_some() {
            return Ok(());
        }
        let Some((index, frame)) = run.ahead.take() else { return Ok(()) };
        let worker = worker.ok_or("the model worker is not running: press Retry")?;
        let envelope = protocol::envelope(&ToWorker::VideoFrame { session: run.session, index })?;
        let transfer = frame.input.to_js(&envelope);
        worker.post_transfer(&envelope, &transfer)?;
        run.in_flight = Some((index, frame.bitmap));
        run.sent += 1;
        self.decode_next();
        Ok(())
    }

    /// A frame's mask from the worker: store it, show it, send the next frame.
    pub fn on_result(
        &mut self,
        worker: Option<&WorkerLink>,
        index: usize,
        size: (u32, u32),
        colours: Vec<[u8; 3]>,
        buffers: ResultBuffers,
    ) -> Result<(), JsValue> {
        let Some(run) = self.run.as_mut() else { return Ok(()) };
        let Some((_, bitmap)) = run.in_flight.take().filter(|(i, _)| *i == index) else { return Ok(()) };
        let (width, height) = size;
        if buffers.labels.len() as u64 != u64::from(width) * u64::from(height) {
            return Err("the worker sent a mask of inconsistent size".into());
        }
        let now = crate::web::now_s();
        run.rate.tick(now);
        let done = self.frames.len() + 1;
        let total = run.plan.len();
        let text = progress_text(done, total, run.rate.per_second());
        if self.colours != colours {
            self.set_colours(colours)?;
        }
        let mask = mask_canvas(&buffers.mask_rgb, &buffers.labels, width, height, &self.hidden)?;
        self.frames.insert(
            index,
            FrameResult {
                bitmap: bitmap.clone(),
                png: buffers.mask_png,
                rgb: buffers.mask_rgb,
                labels: buffers.labels,
                width,
                height,
                mask,
            },
        );
        self.shown = Some((index, bitmap));
        self.scrub.set_value(&index.to_string());
        if let Some(source) = &self.source {
            self.frame_label.set_text_content(Some(&format!("frame {} of {}", index + 1, source.count())));
        }
        self.draw(index)?;
        self.progress.set_value(done as f64);
        self.status.set_text_content(Some(&text));
        if done == total {
            let seconds = now - self.run.as_ref().map_or(now, |r| r.started);
            let rate = done as f64 / seconds.max(1e-9);
            self.end_run(worker, &format!("done: {done} frames in {seconds:.1} s ({rate:.2} frames/s)"))?;
        } else {
            self.send_next(worker)?;
        }
        Ok(())
    }

    /// The worker failed the session, or went away.
    pub fn fail(&mut self, worker: Option<&WorkerLink>, message: &str) -> Result<(), JsValue> {
        if self.run.is_some() {
            self.end_run(worker, &format!("stopped: {message}"))?;
        }
        Ok(())
    }

    fn end_run(&mut self, worker: Option<&WorkerLink>, status: &str) -> Result<(), JsValue> {
        if let Some(run) = self.run.take()
            && let Some(worker) = worker
        {
            worker.send(&ToWorker::VideoEnd { session: run.session })?;
        }
        self.status.set_text_content(Some(status));
        dispatch(Msg::VideoChanged);
        Ok(())
    }

    fn set_colours(&mut self, colours: Vec<[u8; 3]>) -> Result<(), JsValue> {
        self.toggle_listeners.clear();
        self.toggles.set_inner_html("");
        for (colour_index, colour) in colours.iter().enumerate() {
            self.toggle_listeners.push(colour_toggle(
                &self.toggles,
                *colour,
                colour_index + 1,
                "video-colour-toggle",
                move |shown| dispatch(Msg::Video(VideoMsg::Toggle { colour: colour_index, shown })),
            )?);
        }
        self.hidden = vec![false; colours.len()];
        self.colours = colours;
        Ok(())
    }

    /// Draws frame `index` with its mask (the official overlay, a multiply blend at the opacity) or,
    /// not segmented, the decoded frame alone.
    fn draw(&self, index: usize) -> Result<(), JsValue> {
        let frame = self.frames.get(&index);
        let bitmap = match (frame, &self.shown) {
            (Some(frame), _) => &frame.bitmap,
            (None, Some((shown, bitmap))) if *shown == index => bitmap,
            _ => return Ok(()),
        };
        let (w, h) = (bitmap.width(), bitmap.height());
        if self.canvas.width() != w || self.canvas.height() != h {
            self.canvas.set_width(w);
            self.canvas.set_height(h);
        }
        let ctx = context(&self.canvas)?;
        ctx.draw_image_with_image_bitmap(bitmap, 0.0, 0.0)?;
        self.canvas.set_attribute("data-frame", &index.to_string())?;
        self.canvas.set_attribute("data-masked", if frame.is_some() { "true" } else { "false" })?;
        if let Some(frame) = frame {
            overlay(&ctx, &frame.mask, self.opacity.value_as_number(), f64::from(w), f64::from(h))?;
        }
        Ok(())
    }

    fn start_playback(&mut self, recorder: Option<Recording>) -> Result<(), JsValue> {
        let source = self.source.as_ref().ok_or("open a clip first")?;
        let order: Vec<usize> = self.frames.keys().copied().collect();
        let step = order.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(1);
        // Real time: the clip's rate, divided by the step between segmented frames.
        let interval = (1000.0 * step as f64 / source.frames_per_second()).round().max(1.0) as i32;
        let tick = Closure::<dyn FnMut()>::new(|| dispatch(Msg::Video(VideoMsg::Tick)));
        let timer = window().set_interval_with_callback_and_timeout_and_arguments_0(
            tick.as_ref().unchecked_ref(),
            interval,
        )?;
        self.play.set_text_content(Some("Pause"));
        self.playback = Some(Playback { order, position: 0, timer, _tick: tick, recorder });
        self.tick()
    }

    fn tick(&mut self) -> Result<(), JsValue> {
        let Some(playback) = self.playback.as_mut() else { return Ok(()) };
        let Some(&index) = playback.order.get(playback.position) else {
            self.stop_playback();
            return Ok(());
        };
        playback.position += 1;
        if let Some(frame) = self.frames.get(&index) {
            self.shown = Some((index, frame.bitmap.clone()));
        }
        self.scrub.set_value(&index.to_string());
        if let Some(source) = &self.source {
            self.frame_label.set_text_content(Some(&format!("frame {} of {}", index + 1, source.count())));
        }
        self.draw(index)
    }

    fn stop_playback(&mut self) {
        if let Some(mut playback) = self.playback.take() {
            self.play.set_text_content(Some("Play"));
            if let Some(recording) = playback.recorder.take() {
                // The recorder's `stop` event hands the video over; its listeners live until then.
                let _ = recording.recorder.stop();
                self.recording = Some(recording);
            }
        }
    }

    /// A `MediaRecorder` on the canvas (WebM), which hands its video over as [`VideoMsg::Recorded`].
    fn record(&self) -> Result<Recording, JsValue> {
        let source = self.source.as_ref().ok_or("open a clip first")?;
        let stream = self.canvas.capture_stream_with_frame_request_rate(source.frames_per_second())?;
        let options = MediaRecorderOptions::new();
        options.set_mime_type("video/webm");
        let recorder = MediaRecorder::new_with_media_stream_and_media_recorder_options(&stream, &options)?;
        let chunks = Array::new();
        let kept = chunks.clone();
        let data = Listener::new(&recorder, "dataavailable", move |event| {
            if let Some(data) = event.dyn_ref::<BlobEvent>().and_then(|e| e.data()) {
                kept.push(&data);
            }
        })?;
        let stopped = Listener::new(&recorder, "stop", move |_| {
            let options = web_sys::BlobPropertyBag::new();
            options.set_type("video/webm");
            let video = Blob::new_with_blob_sequence_and_options(&chunks, &options).map_err(|e| js_text(&e));
            for track in stream.get_tracks() {
                track.unchecked_into::<web_sys::MediaStreamTrack>().stop();
            }
            dispatch(Msg::Video(VideoMsg::Recorded(video)));
        })?;
        recorder.start()?;
        Ok(Recording { recorder, _listeners: vec![data, stopped] })
    }
}

/// The official overlay `frame * (a * mask / 255 + 1 - a)` (docs/MODEL.md §8): a multiply blend of
/// the mask at alpha `a`; hidden colours are white, the blend's identity.
pub fn overlay(
    ctx: &CanvasRenderingContext2d,
    mask: &HtmlCanvasElement,
    opacity: f64,
    width: f64,
    height: f64,
) -> Result<(), JsValue> {
    ctx.set_global_alpha(opacity);
    ctx.set_global_composite_operation("multiply")?;
    ctx.draw_image_with_html_canvas_element_and_dw_and_dh(mask, 0.0, 0.0, width, height)?;
    ctx.set_global_alpha(1.0);
    ctx.set_global_composite_operation("source-over")
}

/// The mask with hidden colours white, on a canvas of its own.
pub fn mask_canvas(
    rgb: &[u8],
    labels: &[u8],
    width: u32,
    height: u32,
    hidden: &[bool],
) -> Result<HtmlCanvasElement, JsValue> {
    let rgba = visible_mask_rgba(rgb, labels, hidden);
    let canvas: HtmlCanvasElement = element("canvas", "")?;
    canvas.set_width(width);
    canvas.set_height(height);
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), width, height)?;
    context(&canvas)?.put_image_data(&image, 0.0, 0.0)?;
    Ok(canvas)
}

/// The segmented frames decoded again (decoding is exact, so they are the frames the worker got)
/// as PNGs named like `seggpt video --frames` reads them: `<stem>.png`.
async fn frames_zip(source: &Source, indices: &[usize]) -> Result<(), String> {
    let mut entries = Vec::new();
    for &index in indices {
        let png = match source.frame(index).await?.input {
            FrameInput::File(file) => super::dom::blob_bytes(&file).await.map_err(|e| js_text(&e))?,
            FrameInput::Pixels { rgba, width, height } => {
                let rgb = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
                let image = RgbImage::new(width, height, rgb).map_err(|e| e.to_string())?;
                encode_rgb_png(&image).map_err(|e| e.to_string())?
            }
        };
        let extension = match source {
            Source::Images(files) => files
                .get(index)
                .and_then(|f| f.name().rsplit_once('.').map(|(_, ext)| ext.to_string()))
                .unwrap_or_else(|| "png".into()),
            Source::Clip(_) => "png".into(),
        };
        entries.push((format!("{}.{extension}", source.stem(index)), png));
    }
    let zip = crate::archive::zip_stored(&entries)?;
    let name = format!("{}.frames.zip", stem(&source.name()));
    save(&blob(&zip, "application/zip").map_err(|e| js_text(&e))?, &name).map_err(|e| js_text(&e))
}

impl Drop for VideoPanel {
    fn drop(&mut self) {
        self.stop_playback();
    }
}
