//! The page side of the app, as components that each own their elements, state and listeners:
//! [`model_panel`] (status, consent, weights from files, errors), [`examples`] (the gallery),
//! [`prompt_card`] (+ [`painter`]), [`targets`], [`options`], [`results`] (+ [`result_card`]), and
//! [`bench_panel`] (the Benchmark) and [`worker_link`] (the worker). Everything that happens, a click, a worker message, a decoded image,
//! becomes one [`Msg`]; [`App::update`] is the one place that changes state, and each component
//! renders its part. Listeners only dispatch; removing a component drops its listeners and revokes
//! its object URLs.

mod bench_panel;
// Click to select (SAM, docs/MODEL.md §25).
mod click_tool;
mod clicks_app;
pub(super) mod dom;
mod examples;
mod model_panel;
mod options;
mod painter;
mod prompt_card;
mod result_card;
mod results;
mod run;
mod session;
mod targets;
// Tuning a prompt in the page (docs/MODEL.md §19).
mod tune;
mod tuned_prompts;
mod video;
mod video_app;
mod video_live;
mod video_source;
pub(super) mod worker_link;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use wasm_bindgen::{JsCast, JsValue, prelude::*};
use wasm_bindgen_futures::spawn_local;
use web_sys::{DragEvent, Element, Event, File, ImageBitmap, Url, UrlSearchParams};

use self::bench_panel::{BenchMsg, BenchPanel};
use self::dom::{Listener, document, files, find, window};
use self::examples::{Example, ExampleFiles, Gallery};
use self::model_panel::{ErrorBanner, ModelPanel};
use self::options::OptionsPanel;
use self::prompt_card::{PromptCard, PromptId, PromptMsg};
use self::result_card::{ResultMsg, ResultState, Segmented};
use self::results::ResultsPanel;
use self::targets::TargetsPanel;
use self::tune::{TuneMsg, TunePanel};
use self::tuned_prompts::{TunedMsg, TunedPrompts};
use self::video::{VideoMsg, VideoPanel};
use self::video_live::{LiveMsg, LivePanel};
use self::worker_link::WorkerLink;
use super::js_text;
use super::protocol::{DeviceChoice, ModelSource, ToWorker};
use crate::AttentionKernel;

/// Where the model comes from without `?model=`: the released ViT-L on the Hugging Face hub.
const DEFAULT_MODEL: &str = "https://huggingface.co/BAAI/seggpt-vit-large/resolve/main/";

/// Everything that happens on the page.
pub enum Msg {
    FromWorker {
        generation: u32,
        data: JsValue,
    },
    WorkerCrashed {
        generation: u32,
        message: String,
    },
    /// The model is not stored; `outlook`: a sentence on the device that will run it, or why this
    /// browser could not run it anyway.
    OfferDownload {
        bytes: Option<f64>,
        note: String,
        outlook: Result<Option<&'static str>, &'static str>,
    },
    LoadModel,
    ModelFilesPicked,
    ModelFilesDropped(Vec<File>),
    ClearCache,
    Retry,
    PersistAnswered(Option<bool>),
    AddPrompt,
    RemovePrompt(PromptId),
    Prompt(PromptId, PromptMsg),
    TargetsChanged,
    TargetsAdded(Vec<File>),
    RemoveTarget(File),
    ClassMasksChanged,
    NumClassesEdited,
    ClassCountRead {
        generation: u32,
        count: Option<u32>,
    },
    Segment,
    ResultDecoded {
        run: u32,
        index: usize,
        result: Segmented,
        target: Result<ImageBitmap, String>,
    },
    Result(usize, ResultMsg),
    Opacity,
    DownloadAll,
    ExamplesLoaded(Result<Vec<Example>, String>),
    ExampleClicked(usize),
    ExampleFetched(Result<ExampleFiles, String>),
    Pasted(Vec<File>),
    /// Work done outside `update` (a download, a zip) failed: show why.
    Failed(String),
    Video(VideoMsg),
    Propagate,
    /// A propagation or the camera started or stopped: the video controls change.
    VideoChanged,
    Live(LiveMsg),
    LiveRun,
    /// The picture of a live frame sent to the worker, for drawing its mask over.
    LiveFrameKept {
        session: u32,
        index: usize,
        bitmap: ImageBitmap,
    },
    /// A video frame or camera frame made into a PNG, to become prompt 1's image.
    FrameForPrompt(Result<File, String>),
    /// The tuning panel.
    Tune(TuneMsg),
    /// The tuned prompt cards.
    Tuned(TunedMsg),
    Bench(BenchMsg),
    /// A card turned click to select on, or its image changed while on.
    SamWanted(PromptId),
    /// The visitor asked for SAM's download.
    SamConsent,
    /// A card's clicks changed: ask SAM for its masks.
    SamAsk(PromptId),
}

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
    static QUEUE: RefCell<VecDeque<Msg>> = const { RefCell::new(VecDeque::new()) };
    static UPDATING: Cell<bool> = const { Cell::new(false) };
}

/// Handles `msg` now, or, when it comes from inside an update (setting a file input fires `change`
/// at once), right after that update.
pub fn dispatch(msg: Msg) {
    QUEUE.with(|queue| queue.borrow_mut().push_back(msg));
    if UPDATING.with(|u| u.replace(true)) {
        return;
    }
    while let Some(msg) = QUEUE.with(|queue| queue.borrow_mut().pop_front()) {
        APP.with(|app| {
            if let Some(app) = app.borrow_mut().as_mut()
                && let Err(err) = app.update(msg)
            {
                app.error.show(&js_text(&err), false);
            }
        });
    }
    UPDATING.with(|u| u.set(false));
}

/// The files of a drop, and the browser's default (opening them) prevented.
fn dropped_files(event: &Event) -> Option<Vec<File>> {
    event.prevent_default();
    event.stop_propagation();
    let files = files(event.dyn_ref::<DragEvent>()?.data_transfer()?.files());
    (!files.is_empty()).then_some(files)
}

/// Choices made by the page's URL.
struct Settings {
    source: ModelSource,
    model_files: Vec<File>,
    /// Half precision where the GPU has `shader-f16` (the default; `?dtype=f32` turns it off).
    half: bool,
    /// WebGPU or the CPU (`?device=auto|webgpu|cpu`; WebGPU where there is an adapter by default).
    device: DeviceChoice,
    /// Keep downloaded weights in browser storage (the default; `?cache=off` turns it off).
    cache: bool,
    /// `?bench`: run the benchmark once the model is ready.
    bench_when_ready: bool,
    /// `?debug=panic`: the next run also makes the worker panic (tests the restart path).
    #[cfg(feature = "test-hooks")]
    debug_panic: bool,
}

struct App {
    settings: Settings,
    worker: Option<WorkerLink>,
    generation: u32,
    /// The visitor asked for the model (or it was stored): a restarted worker loads it at once.
    consented: bool,
    persist_asked: bool,
    ready: bool,
    max_prompts: usize,
    run: u32,
    model: ModelPanel,
    error: ErrorBanner,
    gallery: Gallery,
    prompt_list: Element,
    prompts: Vec<PromptCard>,
    next_prompt: u32,
    targets: TargetsPanel,
    options: OptionsPanel,
    class_count_generation: u32,
    segment: Element,
    run_status: Element,
    results: ResultsPanel,
    video: VideoPanel,
    live: LivePanel,
    /// The last video session (a propagation or the Live mode) started in the worker.
    video_session: u32,
    tune: TunePanel,
    tuned: TunedPrompts,
    bench: BenchPanel,
    sam: clicks_app::Sam,
    _listeners: Vec<Listener>,
}

/// Entry point of `www/main.js`.
#[wasm_bindgen]
pub fn run_page() -> Result<(), JsValue> {
    std::panic::set_hook(Box::new(|info| {
        if let (Ok(Some(banner)), Ok(Some(text))) = (
            document().query_selector("[data-testid=error]"),
            document().query_selector("[data-testid=error-text]"),
        ) {
            text.set_text_content(Some(&format!("The page failed: {info}. Reload the page.")));
            let _ = banner.remove_attribute("hidden");
        }
        console_error_panic_hook::hook(info);
    }));
    let app = App::new()?;
    APP.with(|slot| *slot.borrow_mut() = Some(app));
    dispatch(Msg::AddPrompt);
    dispatch(Msg::Retry);
    Ok(())
}

impl App {
    fn new() -> Result<Self, JsValue> {
        let doc = document();
        let query = UrlSearchParams::new_with_str(&window().location().search()?)?;
        let settings = Settings {
            source: ModelSource::Url { url: model_url(&query)? },
            model_files: Vec::new(),
            half: query.get("dtype").as_deref() != Some("f32"),
            // An unknown `?device=` value leaves the default (WebGPU, else the CPU).
            device: query.get("device").and_then(|name| DeviceChoice::from_name(&name)).unwrap_or_default(),
            cache: query.get("cache").as_deref() != Some("off"),
            bench_when_ready: query.has("bench"),
            #[cfg(feature = "test-hooks")]
            debug_panic: query.get("debug").as_deref() == Some("panic"),
        };
        let add_prompt: Element = find(&doc, "add-prompt")?;
        let segment: Element = find(&doc, "segment")?;
        let listeners = vec![
            Listener::new(&add_prompt, "click", |_| dispatch(Msg::AddPrompt))?,
            Listener::new(&segment, "click", |_| dispatch(Msg::Segment))?,
            // A file dropped outside a drop zone must not navigate away from the app.
            Listener::new(&doc, "dragover", |event| event.prevent_default())?,
            Listener::new(&doc, "drop", |event| event.prevent_default())?,
            Listener::new(&doc, "paste", |event| {
                let event: &web_sys::ClipboardEvent = event.unchecked_ref();
                let pasted = files(event.clipboard_data().and_then(|d| d.files()));
                if !pasted.is_empty() {
                    event.prevent_default();
                    dispatch(Msg::Pasted(pasted));
                }
            })?,
        ];
        Ok(App {
            settings,
            worker: None,
            generation: 0,
            consented: false,
            persist_asked: false,
            ready: false,
            max_prompts: usize::MAX,
            run: 0,
            model: ModelPanel::new(&doc)?,
            error: ErrorBanner::new(&doc)?,
            gallery: Gallery::new(&doc)?,
            prompt_list: find(&doc, "prompts")?,
            prompts: Vec::new(),
            next_prompt: 0,
            targets: TargetsPanel::new(&doc)?,
            options: OptionsPanel::new(&doc)?,
            class_count_generation: 0,
            segment,
            run_status: find(&doc, "run-status")?,
            results: ResultsPanel::new(&doc)?,
            video: VideoPanel::new(&doc)?,
            live: LivePanel::new(&doc)?,
            video_session: 0,
            tune: TunePanel::new(&doc)?,
            tuned: TunedPrompts::new(&doc)?,
            // An unknown `?attention=` value leaves the default, which the report then names.
            bench: BenchPanel::new(
                &doc,
                query.get("attention").and_then(|name| AttentionKernel::from_name(&name)).unwrap_or_default(),
            )?,
            sam: clicks_app::Sam::new(&query)?,
            _listeners: listeners,
        })
    }

    fn update(&mut self, msg: Msg) -> Result<(), JsValue> {
        match msg {
            Msg::FromWorker { generation, data } if generation == self.generation => {
                self.on_worker_message(&data)?
            }
            Msg::WorkerCrashed { generation, message } if generation == self.generation => {
                self.worker_died(&message)?
            }
            Msg::FromWorker { .. } | Msg::WorkerCrashed { .. } => {} // a replaced worker
            Msg::OfferDownload { outlook: Err(why), .. } => {
                self.model.set_status("cannot run here");
                self.error.show(why, false);
            }
            Msg::OfferDownload { bytes, note, outlook: Ok(device_note) } => {
                let note = [device_note.unwrap_or_default(), note.as_str()].join(" ");
                self.model.ask_consent(bytes, note.trim())
            }
            Msg::LoadModel => {
                self.consented = true;
                self.send_load()?;
            }
            Msg::ModelFilesPicked => {
                let picked = self.model.take_files();
                if !picked.is_empty() {
                    self.settings.source = ModelSource::Files;
                    self.settings.model_files = picked;
                    self.consented = true;
                    // A fresh worker: it cancels a load or run in flight and frees the old model.
                    self.error.hide();
                    self.results.fail_open("stopped: other weights were chosen")?;
                    self.start_worker()?;
                }
            }
            Msg::ModelFilesDropped(dropped) => self.model.put_files(&dropped)?,
            Msg::ClearCache if !self.model.loading() => self.worker()?.send(&ToWorker::ClearCache)?,
            Msg::ClearCache => {}
            Msg::Retry => {
                self.error.hide();
                self.start_worker()?;
            }
            Msg::PersistAnswered(granted) => self.model.show_persistence(granted),
            Msg::AddPrompt => {
                self.next_prompt += 1;
                self.prompts.push(PromptCard::new(PromptId(self.next_prompt), &self.prompt_list)?);
                self.render_prompts();
            }
            Msg::RemovePrompt(id) => {
                self.remove_pair(id);
                self.prompts.retain(|card| card.id != id);
                self.render_prompts();
                self.count_classes();
            }
            Msg::Prompt(id, msg) => {
                let mask_changed = matches!(msg, PromptMsg::MaskPicked);
                if let Some(card) = self.prompts.iter_mut().find(|card| card.id == id) {
                    card.update(msg)?;
                } else if self.tune_prompt_msg(id, msg)? {
                    return Ok(());
                }
                if mask_changed {
                    self.count_classes();
                }
            }
            Msg::TargetsChanged => self.targets.render()?,
            Msg::TargetsAdded(more) => self.targets.add(more)?,
            Msg::RemoveTarget(file) => self.targets.remove(&file)?,
            Msg::ClassMasksChanged => self.count_classes(),
            Msg::NumClassesEdited => self.options.num_classes_edited(),
            Msg::ClassCountRead { generation, count } if generation == self.class_count_generation => {
                self.options.render(count);
            }
            Msg::ClassCountRead { .. } => {}
            Msg::Segment => {
                self.error.hide();
                // The worker runs one thing at a time: an image run ends a video session.
                self.end_video_sessions("the image run took the model")?;
                self.start_run()?;
            }
            Msg::ResultDecoded { run, index, result, target } if run == self.run => {
                match target {
                    Ok(bitmap) => self.results.finish(index, result, bitmap)?,
                    Err(why) => {
                        let message = format!("cannot show result {}: {why}", index + 1);
                        self.results.set_state(index, ResultState::Failed(message.clone()))?;
                        self.error.show(&message, false);
                    }
                }
                self.render_run()?;
            }
            Msg::ResultDecoded { .. } => {}
            Msg::Result(index, ResultMsg::UseAsPrompt) => self.use_result_as_prompt(index)?,
            Msg::Result(index, msg) => self.results.update_card(index, msg)?,
            Msg::Opacity => self.results.render()?,
            Msg::DownloadAll => self.results.download_all()?,
            Msg::ExamplesLoaded(Ok(examples)) => self.gallery.show(examples)?,
            Msg::ExamplesLoaded(Err(why)) => {
                web_sys::console::warn_1(&format!("no example gallery: {why}").into());
            }
            Msg::ExampleClicked(index) => {
                if let Some(example) = self.gallery.get(index).cloned() {
                    self.run_status
                        .set_text_content(Some(&format!("loading the example {} ...", example.title)));
                    spawn_local(async move {
                        dispatch(Msg::ExampleFetched(examples::fetch_example(example).await));
                    });
                }
            }
            Msg::ExampleFetched(fetched) => {
                self.run_status.set_text_content(Some(""));
                self.fill_example(fetched?)?;
            }
            Msg::Pasted(pasted) => {
                // Onto the prompt that has the focus, else to the targets.
                let focused =
                    document().active_element().and_then(|e| e.closest(".prompt-card").ok().flatten());
                match self.prompts.iter_mut().find(|card| Some(card.root()) == focused.as_ref()) {
                    Some(card) => card.update(PromptMsg::Dropped(pasted))?,
                    None => self.targets.add(pasted)?,
                }
            }
            Msg::Failed(message) => self.error.show(&message, false),
            Msg::Video(msg) => self.video_msg(msg)?,
            Msg::Propagate => {
                self.error.hide();
                self.start_propagation()?;
            }
            Msg::VideoChanged => self.render_video(),
            Msg::Live(msg) => self.live_msg(msg)?,
            Msg::LiveRun => {
                self.error.hide();
                self.start_live()?;
            }
            Msg::LiveFrameKept { session, index, bitmap } => self.live.keep_frame(session, index, bitmap),
            Msg::FrameForPrompt(file) => self.frame_for_prompt(file?)?,
            Msg::Tune(msg) => self.tune_msg(msg)?,
            Msg::Tuned(msg) => self.tuned_msg(msg)?,
            Msg::Bench(BenchMsg::Run) => self.start_bench()?,
            Msg::Bench(msg) => self.bench.update(msg),
            Msg::SamWanted(id) => self.sam_wanted(id)?,
            Msg::SamConsent => self.load_sam()?,
            Msg::SamAsk(id) => self.sam_ask(id)?,
        }
        Ok(())
    }
}

/// The `<meta name="seggpt-model">` a host's copy of the page names its own weights with
/// (`scripts/deploy.sh` writes it).
const HOST_MODEL_META: &str = "meta[name=seggpt-model]";

/// `?model=URL`, else the host's model (the page's `seggpt-model` meta tag), resolved against the
/// page (so `/model/` and `./model/` work), else [`DEFAULT_MODEL`].
fn model_url(query: &UrlSearchParams) -> Result<String, JsValue> {
    let host_model = || {
        let meta = window().document()?.query_selector(HOST_MODEL_META).ok()??;
        meta.get_attribute("content").filter(|c| !c.trim().is_empty())
    };
    match query.get("model").or_else(host_model) {
        Some(model) => Ok(Url::new_with_base(&model, &window().location().href()?)
            .map_err(|_| JsValue::from_str(&format!("?model={model} is not a URL")))?
            .href()),
        None => Ok(DEFAULT_MODEL.into()),
    }
}
