//! The app's side of video: starting a propagation or the Live mode as a session in the worker
//! (the prompts and options come from the image side's prompt cards and options), routing the
//! worker's answers to the panel that owns the session, and frames that become prompt images.

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::File;

use super::dom;
use super::video::VideoMsg;
use super::video_live::{LiveMsg, LivePanel};
use super::{App, Msg, dispatch};
use crate::web::js_text;
use crate::web::protocol::{self, ResultBuffers, SegmentFiles, ToWorker, VideoSettings};

impl App {
    pub(super) fn render_video(&self) {
        self.video.render_controls(self.ready, self.max_prompts, self.prompts.len());
        self.live.render(self.ready);
    }

    pub(super) fn video_msg(&mut self, msg: VideoMsg) -> Result<(), JsValue> {
        let result = match msg {
            VideoMsg::UseFrame => {
                let (bitmap, name) =
                    self.video.use_shown_frame().ok_or("open a clip and show a frame first")?;
                spawn_local(async move {
                    let file = dom::bitmap_png_file(&bitmap, &name).await.map_err(|e| js_text(&e));
                    dispatch(Msg::FrameForPrompt(file));
                });
                Ok(())
            }
            msg => self.video.update(msg, self.worker.as_ref()),
        };
        self.render_video();
        result
    }

    pub(super) fn live_msg(&mut self, msg: LiveMsg) -> Result<(), JsValue> {
        let result = match msg {
            LiveMsg::Capture => {
                let video = self.live.video().ok_or("start the camera first")?;
                spawn_local(async move {
                    let file = async {
                        let bitmap = LivePanel::capture(video).await?;
                        dom::bitmap_png_file(&bitmap, "camera-frame.png").await
                    };
                    dispatch(Msg::FrameForPrompt(file.await.map_err(|e| js_text(&e))));
                });
                Ok(())
            }
            msg => self.live.update(msg, self.worker.as_ref()),
        };
        self.render_video();
        result
    }

    /// A frame becomes prompt 1's image; its mask is painted or picked in the prompt card.
    pub(super) fn frame_for_prompt(&mut self, file: File) -> Result<(), JsValue> {
        let card = self.prompts.first().ok_or("there is no prompt to put the frame in")?;
        card.set_image(&file)?;
        card.root().scroll_into_view();
        Ok(())
    }

    /// Sends `VideoStart` with the prompts and options; returns the new session.
    fn open_video_session(&mut self) -> Result<u32, JsValue> {
        if !self.ready {
            return Err("the model is not loaded yet".into());
        }
        let (previous_frames, propagate) = self.video.settings()?;
        let prompts = self
            .prompts
            .iter()
            .enumerate()
            .map(|(i, card)| card.files(i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let run = self.options.read()?;
        self.end_video_sessions("another video run started")?;
        self.video_session += 1;
        let session = self.video_session;
        let settings = VideoSettings { run, previous_frames, propagate };
        let envelope = protocol::envelope(&ToWorker::VideoStart { session, settings })?;
        SegmentFiles { prompts, targets: Vec::new() }.to_js(&envelope);
        self.worker()?.post(&envelope)?;
        Ok(session)
    }

    pub(super) fn start_propagation(&mut self) -> Result<(), JsValue> {
        let plan = self.video.plan()?;
        let session = self.open_video_session()?;
        self.video.begin(session, plan);
        self.render_video();
        Ok(())
    }

    pub(super) fn start_live(&mut self) -> Result<(), JsValue> {
        if self.live.video().is_none() {
            return Err("start the camera first".into());
        }
        let session = self.open_video_session()?;
        let started = self.live.begin(session, self.worker.as_ref());
        self.render_video();
        started
    }

    /// Ends a propagation or live run in progress (the worker runs one session at a time).
    pub(super) fn end_video_sessions(&mut self, why: &str) -> Result<(), JsValue> {
        self.video.fail(self.worker.as_ref(), why)?;
        self.live.fail(self.worker.as_ref(), why)
    }

    pub(super) fn on_video_result(
        &mut self,
        session: u32,
        index: usize,
        size: (u32, u32),
        colours: Vec<[u8; 3]>,
        buffers: ResultBuffers,
    ) -> Result<(), JsValue> {
        if self.video.session() == Some(session) {
            self.video.on_result(self.worker.as_ref(), index, size, colours, buffers)?;
        } else if self.live.session() == Some(session) {
            self.live.on_result(self.worker.as_ref(), index, size, buffers)?;
        }
        self.render_video();
        Ok(())
    }

    pub(super) fn on_video_failed(&mut self, session: u32, message: &str) -> Result<(), JsValue> {
        if self.video.session() == Some(session) {
            // The worker has ended the session already.
            self.video.fail(None, message)?;
        } else if self.live.session() == Some(session) {
            self.live.fail(None, message)?;
        } else {
            return Ok(());
        }
        self.error.show(message, false);
        self.render_video();
        Ok(())
    }
}
