//! The model's side of the app: starting (and restarting) the worker, asking before the download,
//! loading, and what the worker reports.

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{JsFuture, spawn_local};

use super::bench_panel::BenchMsg;
use super::dom::{self, image_bitmap, window};
use super::result_card::{ResultState, Segmented};
use super::worker_link::WorkerLink;
use super::{App, Msg, dispatch};
use crate::web::js_text;
use crate::web::protocol::{self, DeviceChoice, ModelFiles, ModelSource, ResultBuffers, ToPage, ToWorker};

impl App {
    pub(super) fn worker(&self) -> Result<&WorkerLink, JsValue> {
        self.worker.as_ref().ok_or_else(|| JsValue::from_str("The model worker is not running: press Retry."))
    }

    pub(super) fn running(&self) -> bool {
        self.results.any_open()
    }

    /// Starts a fresh worker (first load, after a crash, new weights); it asks for the model once it listens.
    pub(super) fn start_worker(&mut self) -> Result<(), JsValue> {
        self.model.set_status("starting the worker ...");
        self.worker = None; // terminates the old one
        self.generation += 1;
        self.worker = Some(WorkerLink::start(self.generation)?);
        self.ready = false;
        self.tune.worker_gone("the model worker restarted");
        self.sam.worker_restarted();
        self.render_run()
    }

    pub(super) fn send_load(&mut self) -> Result<(), JsValue> {
        let label = match &self.settings.source {
            ModelSource::Url { url } => url.clone(),
            ModelSource::Files => "the chosen files".into(),
        };
        self.model.set_status(&format!("loading {label} ..."));
        self.model.set_note("");
        self.model.set_loading(true);
        self.ready = false;
        let s = &self.settings;
        let load =
            ToWorker::Load { source: s.source.clone(), half: s.half, cache: s.cache, device: s.device };
        let envelope = protocol::envelope(&load)?;
        if s.source == ModelSource::Files {
            ModelFiles(s.model_files.clone()).to_js(&envelope);
        }
        self.worker()?.post(&envelope)?;
        self.render_run()
    }

    pub(super) fn on_worker_message(&mut self, data: &JsValue) -> Result<(), JsValue> {
        let msg: ToPage = protocol::message(data)?;
        match msg {
            ToPage::Started => {
                if self.consented || self.settings.source == ModelSource::Files {
                    self.send_load()?;
                } else {
                    self.model.set_status("looking for the model in browser storage ...");
                    self.worker()?.send(&ToWorker::Inspect { source: self.settings.source.clone() })?;
                }
            }
            ToPage::Inspected { stored, bytes, note } => {
                if stored && self.settings.cache {
                    self.consented = true;
                    self.send_load()?;
                } else {
                    let device = self.settings.device;
                    spawn_local(async move {
                        let outlook = device_outlook(device).await;
                        dispatch(Msg::OfferDownload { bytes, note, outlook });
                    });
                }
            }
            ToPage::Progress { text, done, total } => self.model.show_progress(&text, done, total),
            ToPage::Ready { adapter, dtype, seconds, note, max_prompts } => {
                self.ready = true;
                self.max_prompts = max_prompts;
                self.model.set_loading(false);
                self.model.set_status(&format!("ready on {adapter} ({dtype}, loaded in {seconds:.1} s)"));
                self.model.set_note(&note);
                self.error.hide();
                self.ask_persistence();
                self.render_run()?;
                if std::mem::take(&mut self.settings.bench_when_ready) {
                    dispatch(Msg::Bench(BenchMsg::Run));
                }
            }
            ToPage::Running { index } => {
                self.results.set_state(index, ResultState::Running)?;
                let total = self.results.count();
                self.run_status.set_text_content(Some(&format!("segmenting {} of {total} ...", index + 1)));
            }
            ToPage::Result { index, seconds, width, height, colours, num_classes } => {
                let buffers = ResultBuffers::from_js(data)?;
                let result = Segmented {
                    png: buffers.mask_png,
                    rgb: buffers.mask_rgb,
                    labels: buffers.labels,
                    colours,
                    width,
                    height,
                    seconds,
                };
                if num_classes.is_some() {
                    // The worker's count agrees with the page's; it also covers masks read only there.
                    self.options.render(num_classes);
                }
                let target = self.results.target(index).ok_or("a result for a target that does not exist")?;
                let run = self.run;
                spawn_local(async move {
                    let target = image_bitmap(&target).await.map_err(|e| js_text(&e));
                    dispatch(Msg::ResultDecoded { run, index, result, target });
                });
            }
            ToPage::Error { message, index } => {
                self.error.show(&message, false);
                match index {
                    Some(index) => self.results.set_state(index, ResultState::Failed(message))?,
                    // A run-level error (bad prompt, too many prompts...): the run is over.
                    None => self.results.fail_open(&message)?,
                }
                self.render_run()?;
            }
            ToPage::VideoResult { session, index, width, height, colours, .. } => {
                self.on_video_result(session, index, (width, height), colours, ResultBuffers::from_js(data)?)?
            }
            ToPage::VideoFailed { session, message } => self.on_video_failed(session, &message)?,
            ToPage::LoadFailed { message } => {
                self.model.set_loading(false);
                self.model.set_status("failed: retry, or load other weights from files");
                self.error.show(&message, true);
                self.render_run()?;
            }
            ToPage::CacheCleared => {
                self.model.set_note("Browser storage cleared: the next visit downloads the model again.")
            }
            ToPage::Fatal { message } => self.worker_died(&message)?,
            ToPage::TuneInfo(_)
            | ToPage::TuneStep { .. }
            | ToPage::TuneDone { .. }
            | ToPage::TuneFailed { .. }
            | ToPage::TunedPreview { .. }
            | ToPage::TunedRefused { .. } => self.on_tune_message(&msg, data)?,
            ToPage::SamInspected { .. }
            | ToPage::SamProgress { .. }
            | ToPage::SamReady { .. }
            | ToPage::SamLoadFailed { .. }
            | ToPage::SamPrepared { .. }
            | ToPage::SamSelection { .. }
            | ToPage::SamFailed { .. } => self.on_sam_message(msg, data)?,
            ToPage::BenchProgress { done, total } => self.bench.progress(done, total),
            ToPage::Bench { report } => {
                self.bench.show(report)?;
                self.render_run()?;
            }
            ToPage::BenchFailed { message } => {
                self.bench.failed(&message);
                self.render_run()?;
            }
        }
        Ok(())
    }

    /// The worker is gone (crash, GPU out of memory, device lost): stop it, keep everything the user
    /// gave, offer Retry (a new worker reloads the model, from browser storage when it is there).
    pub(super) fn worker_died(&mut self, message: &str) -> Result<(), JsValue> {
        self.worker = None;
        self.ready = false;
        self.results.fail_open(message)?;
        self.end_video_sessions(message)?;
        self.tune.worker_gone(message);
        self.bench.failed(message);
        self.model.set_loading(false);
        self.model.set_status("stopped");
        self.error.show(message, true);
        self.render_run()
    }

    /// Asks the browser once to keep the stored model (not evict it when space runs low).
    pub(super) fn ask_persistence(&mut self) {
        if !self.settings.cache || self.settings.source == ModelSource::Files || self.persist_asked {
            return;
        }
        self.persist_asked = true;
        spawn_local(async {
            let answer = match window().navigator().storage().persist() {
                Ok(promise) => JsFuture::from(promise).await.ok().and_then(|v| v.as_bool()),
                Err(_) => None,
            };
            dispatch(Msg::PersistAnswered(answer));
        });
    }
}

/// Which device will run the model, said before the download is offered: `Ok` with a sentence for
/// the offer when it can run here (on the CPU where WebGPU is missing), `Err` why it cannot.
async fn device_outlook(device: DeviceChoice) -> Result<Option<&'static str>, &'static str> {
    match device {
        DeviceChoice::Cpu => Ok(Some(
            "It will run on the CPU (?device=cpu): much slower than on a GPU; the page says how slow once loaded.",
        )),
        DeviceChoice::Auto => Ok(match dom::webgpu_adapter().await {
            Some(false) => None,
            Some(true) => Some(
                "This browser's only WebGPU adapter is a software one, so it will run on the CPU, which is \
                 faster than that but much slower than a GPU; the page says how slow once loaded.",
            ),
            None => Some(
                "This browser offers no WebGPU adapter, so it will run on the CPU: much slower than on a GPU; \
                 the page says how slow once loaded.",
            ),
        }),
        DeviceChoice::Webgpu if dom::webgpu_adapter().await.is_some() => Ok(None),
        DeviceChoice::Webgpu => Err(
            "This browser offers no WebGPU adapter, which the page's address asks for (?device=webgpu): use \
             a recent Chrome or Edge (or enable WebGPU) on a machine with a GPU, or open the page without \
             ?device=webgpu to run on the CPU.",
        ),
    }
}
