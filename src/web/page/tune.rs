//! The tuning panel (docs/MODEL.md §19): training pairs (prompt cards: files or painted), the
//! settings of `seggpt tune`, Start / Stop, a live loss curve, and the tuned prompt file, which can
//! be downloaded and becomes a tuned prompt card. The training runs in the worker.

use wasm_bindgen::JsValue;
use web_sys::{Document, Element, File, HtmlCanvasElement, HtmlInputElement};

use super::dom::{Listener, blob, context, find, save, set_disabled, set_hidden, window};
use super::prompt_card::{PromptCard, PromptId, PromptMsg};
use super::tuned_prompts::TunedMsg;
use super::{App, Msg, dispatch};
use crate::tune_page::{loss_polyline, step_memory_note};
use crate::web::protocol::{
    self, SegmentFiles, ToPage, ToWorker, TuneInfo, TuneParams, TunedFileBytes, TunedFiles, TunedPreviewPngs,
};

/// The name the page gives a tuned prompt file.
const TUNED_FILE: &str = "tuned-prompt.safetensors";
/// Pixels around the loss curve inside its canvas.
const PLOT_MARGIN: f64 = 8.0;

pub enum TuneMsg {
    AddPair,
    Start,
    Stop,
    Download,
    /// A setting changed: the memory note is said again.
    Edited,
}

pub struct TunePanel {
    pair_list: Element,
    pub(super) pairs: Vec<PromptCard>,
    steps: HtmlInputElement,
    lr: HtmlInputElement,
    weight_decay: HtmlInputElement,
    batch: HtmlInputElement,
    seed: HtmlInputElement,
    memory: Element,
    start: Element,
    stop: Element,
    status: Element,
    plot: HtmlCanvasElement,
    download: Element,
    info: Option<TuneInfo>,
    /// The last run started; `running` while the worker tunes it.
    session: u32,
    running: bool,
    total_steps: u64,
    losses: Vec<f32>,
    seconds: f64,
    file: Option<Vec<u8>>,
    _listeners: Vec<Listener>,
}

impl TunePanel {
    pub fn new(doc: &Document) -> Result<Self, JsValue> {
        let send = |msg: fn() -> TuneMsg| move |_: web_sys::Event| dispatch(Msg::Tune(msg()));
        let add: Element = find(doc, "tune-add-pair")?;
        let start: Element = find(doc, "tune-start")?;
        let stop: Element = find(doc, "tune-stop")?;
        let download: Element = find(doc, "tune-download")?;
        let batch: HtmlInputElement = find(doc, "tune-batch")?;
        let listeners = vec![
            Listener::new(&add, "click", send(|| TuneMsg::AddPair))?,
            Listener::new(&start, "click", send(|| TuneMsg::Start))?,
            Listener::new(&stop, "click", send(|| TuneMsg::Stop))?,
            Listener::new(&download, "click", send(|| TuneMsg::Download))?,
            Listener::new(&batch, "input", send(|| TuneMsg::Edited))?,
        ];
        Ok(Self {
            pair_list: find(doc, "tune-pairs")?,
            pairs: Vec::new(),
            steps: find(doc, "tune-steps")?,
            lr: find(doc, "tune-lr")?,
            weight_decay: find(doc, "tune-weight-decay")?,
            batch,
            seed: find(doc, "tune-seed")?,
            memory: find(doc, "tune-memory")?,
            start,
            stop,
            status: find(doc, "tune-status")?,
            plot: find(doc, "tune-plot")?,
            download,
            info: None,
            session: 0,
            running: false,
            total_steps: 0,
            losses: Vec::new(),
            seconds: 0.0,
            file: None,
            _listeners: listeners,
        })
    }

    /// The model is ready: `seggpt tune`'s defaults fill the fields the user has not set.
    fn set_info(&mut self, info: TuneInfo) {
        let d = info.defaults;
        for (input, value) in [
            (&self.steps, d.steps.to_string()),
            (&self.lr, d.lr.to_string()),
            (&self.weight_decay, d.weight_decay.to_string()),
            (&self.batch, d.batch.to_string()),
            (&self.seed, d.seed.to_string()),
        ] {
            if input.value().is_empty() {
                input.set_value(&value);
            }
        }
        self.info = Some(info);
        self.render();
    }

    /// The worker is gone (or restarting): no run, and nothing known about the GPU until it is ready.
    pub fn worker_gone(&mut self, why: &str) {
        if self.running {
            self.status.set_text_content(Some(&format!("stopped: {why}")));
        }
        self.running = false;
        self.info = None;
        self.render();
    }

    fn batch_value(&self) -> usize {
        self.batch.value().trim().parse().unwrap_or(1)
    }

    /// Whether a step fits this GPU, said in the panel.
    fn memory_fits(&self) -> bool {
        let Some(info) = &self.info else {
            self.memory.set_text_content(Some("Tuning starts once the model is ready."));
            return false;
        };
        let (fits, note) = step_memory_note(
            self.batch_value(),
            &info.step_bytes,
            info.weight_bytes,
            info.max_batch,
            info.max_binding,
        );
        self.memory.set_text_content(Some(&note));
        fits
    }

    fn render(&self) {
        let fits = self.memory_fits();
        set_disabled(&self.start, self.running || !fits);
        set_hidden(&self.stop, !self.running);
        set_disabled(&self.download, self.file.is_none() || self.running);
        let _ = self.draw();
    }

    fn params(&self) -> Result<TuneParams, String> {
        fn number<T: std::str::FromStr>(
            input: &HtmlInputElement,
            what: &str,
            ok: impl Fn(&T) -> bool,
        ) -> Result<T, String> {
            input
                .value()
                .trim()
                .parse()
                .ok()
                .filter(|v| ok(v))
                .ok_or_else(|| format!("{what}: {}", input.title()))
        }
        Ok(TuneParams {
            steps: number(&self.steps, "steps", |&n: &u64| n >= 1)?,
            lr: number(&self.lr, "learning rate", |&x: &f64| x.is_finite() && x > 0.0)?,
            weight_decay: number(&self.weight_decay, "weight decay", |&x: &f64| x.is_finite() && x >= 0.0)?,
            batch: number(&self.batch, "pairs per step", |&n: &usize| n >= 1)?,
            seed: number(&self.seed, "seed", |_: &u64| true)?,
        })
    }

    /// The loss curve: one point per step, the first and last loss written beside it.
    fn draw(&self) -> Result<(), JsValue> {
        let (width, height) = (f64::from(self.plot.width()), f64::from(self.plot.height()));
        let ctx = context(&self.plot)?;
        ctx.clear_rect(0.0, 0.0, width, height);
        let colour = window()
            .get_computed_style(&self.plot)?
            .map(|style| style.get_property_value("color"))
            .transpose()?
            .unwrap_or_else(|| "black".into());
        ctx.set_stroke_style_str(&colour);
        ctx.set_fill_style_str(&colour);
        ctx.set_line_width(1.0);
        ctx.stroke_rect(0.5, 0.5, width - 1.0, height - 1.0);
        let points = loss_polyline(&self.losses, width, height, PLOT_MARGIN);
        ctx.set_line_width(2.0);
        ctx.begin_path();
        for (i, &(x, y)) in points.iter().enumerate() {
            if i == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        if let [(x, y)] = points.as_slice() {
            ctx.arc(*x, *y, 2.0, 0.0, std::f64::consts::TAU)?;
        }
        ctx.stroke();
        ctx.set_font("12px sans-serif");
        if let (Some(first), Some(last)) = (self.losses.first(), self.losses.last()) {
            // A falling curve leaves the top-right and bottom-left corners free for the labels.
            ctx.set_text_align("right");
            ctx.fill_text(
                &format!("loss {first:.4} at step 1"),
                width - PLOT_MARGIN - 2.0,
                2.0 * PLOT_MARGIN + 4.0,
            )?;
            ctx.set_text_align("left");
            ctx.fill_text(
                &format!("{last:.4} at step {}", self.losses.len()),
                PLOT_MARGIN + 2.0,
                height - PLOT_MARGIN - 4.0,
            )?;
        }
        self.plot.set_attribute(
            "aria-label",
            &match (self.losses.first(), self.losses.last()) {
                (Some(first), Some(last)) => {
                    format!(
                        "Training loss per step: {first:.4} at step 1, {last:.4} at step {}",
                        self.losses.len()
                    )
                }
                _ => "Training loss per step (none yet)".into(),
            },
        )?;
        Ok(())
    }
}

impl App {
    pub(super) fn tune_msg(&mut self, msg: TuneMsg) -> Result<(), JsValue> {
        match msg {
            TuneMsg::AddPair => {
                self.next_prompt += 1;
                let card = PromptCard::new(PromptId(self.next_prompt), &self.tune.pair_list)?;
                // The card is the prompts' own component; here it holds a training pair.
                if let Some(legend) = card.root().query_selector("legend")? {
                    legend.set_text_content(Some(&format!("Training pair {}", self.tune.pairs.len() + 1)));
                }
                self.tune.pairs.push(card);
                self.render_pairs();
            }
            TuneMsg::Start => self.start_tuning()?,
            TuneMsg::Stop => {
                if self.tune.running {
                    self.worker()?.send(&ToWorker::TuneStop { session: self.tune.session })?;
                    self.tune.status.set_text_content(Some("stopping after this step ..."));
                }
            }
            TuneMsg::Download => {
                if let Some(bytes) = &self.tune.file {
                    save(&blob(bytes, "application/octet-stream")?, TUNED_FILE)?;
                }
            }
            TuneMsg::Edited => self.tune.render(),
        }
        Ok(())
    }

    fn render_pairs(&self) {
        let removable = self.tune.pairs.len() > 1;
        for (i, card) in self.tune.pairs.iter().enumerate() {
            card.render_position(i + 1, removable);
            if let Ok(Some(legend)) = card.root().query_selector("legend") {
                legend.set_text_content(Some(&format!("Training pair {}", i + 1)));
            }
        }
    }

    /// A prompt message for a training pair's card; `false` when `id` is not one.
    pub(super) fn tune_prompt_msg(&mut self, id: PromptId, msg: PromptMsg) -> Result<bool, JsValue> {
        match self.tune.pairs.iter_mut().find(|card| card.id == id) {
            Some(card) => card.update(msg).map(|()| true),
            None => Ok(false),
        }
    }

    pub(super) fn remove_pair(&mut self, id: PromptId) {
        self.tune.pairs.retain(|card| card.id != id);
        self.render_pairs();
    }

    fn start_tuning(&mut self) -> Result<(), JsValue> {
        self.error.hide();
        let params = self.tune.params()?;
        if self.tune.pairs.is_empty() {
            return Err("add a training pair: an image and its mask".into());
        }
        let pairs = self
            .tune
            .pairs
            .iter()
            .enumerate()
            .map(|(i, card)| card.files(i + 1).map_err(|e| format!("training {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if params.batch > pairs.len() {
            return Err(format!(
                "pairs per step ({}) is more than the {} training pair(s)",
                params.batch,
                pairs.len()
            )
            .into());
        }
        let run = self.options.read()?;
        self.end_video_sessions("tuning took the model")?;
        self.tune.session += 1;
        self.tune.running = true;
        self.tune.total_steps = params.steps;
        self.tune.losses.clear();
        self.tune.seconds = 0.0;
        self.tune.file = None;
        let envelope = protocol::envelope(&ToWorker::TuneStart { session: self.tune.session, params, run })?;
        SegmentFiles { prompts: pairs, targets: Vec::new() }.to_js(&envelope);
        self.worker()?.post(&envelope)?;
        self.tune.status.set_text_content(Some(&format!("starting: {} steps ...", params.steps)));
        self.tune.render();
        Ok(())
    }

    /// A tuned prompt file becomes a card; the worker checks it and sends its previews.
    pub(super) fn add_tuned(&mut self, file: File) -> Result<(), JsValue> {
        let card = self.tuned.add(file.clone())?;
        let envelope = protocol::envelope(&ToWorker::InspectTuned { card })?;
        TunedFiles(vec![file]).to_js(&envelope);
        self.worker()?.post(&envelope)
    }

    pub(super) fn tuned_msg(&mut self, msg: TunedMsg) -> Result<(), JsValue> {
        match msg {
            TunedMsg::Picked => {
                for file in self.tuned.take_picked() {
                    self.add_tuned(file)?;
                }
            }
            TunedMsg::Remove(id) => self.tuned.remove(id),
        }
        Ok(())
    }

    /// The worker's tuning messages; `Ok(false)` for any other message.
    pub(super) fn on_tune_message(&mut self, msg: &ToPage, data: &JsValue) -> Result<(), JsValue> {
        match msg {
            ToPage::TuneInfo(info) => self.tune.set_info(info.clone()),
            ToPage::TuneStep { session, step, loss, seconds } if *session == self.tune.session => {
                self.tune.losses.push(*loss);
                self.tune.seconds += seconds;
                let per_step = self.tune.seconds / *step as f64;
                let left = (self.tune.total_steps - step) as f64 * per_step;
                self.tune.status.set_text_content(Some(&format!(
                    "step {step} of {}, loss {loss:.5}, {per_step:.1} s per step, about {left:.0} s left",
                    self.tune.total_steps
                )));
                self.tune.render();
            }
            ToPage::TuneDone { session, steps, stopped } if *session == self.tune.session => {
                let bytes = TunedFileBytes::from_js(data)?.0;
                self.tune.running = false;
                let how = if *stopped { "stopped" } else { "done" };
                self.tune.status.set_text_content(Some(&format!(
                    "{how} after {steps} step(s): the tuned prompt is in the prompts above; download it to keep it"
                )));
                let file = super::dom::file(&bytes, TUNED_FILE, "application/octet-stream")?;
                self.tune.file = Some(bytes);
                self.tune.render();
                self.add_tuned(file)?;
            }
            ToPage::TuneFailed { session, message } if *session == self.tune.session => {
                self.tune.running = false;
                self.tune.status.set_text_content(Some("failed"));
                self.error.show(message, false);
                self.tune.render();
            }
            ToPage::TunedPreview { card, steps, loss } => {
                self.tuned.preview(*card, *steps, *loss, &TunedPreviewPngs::from_js(data)?)?
            }
            ToPage::TunedRefused { card, message } => {
                self.tuned.remove(*card);
                self.error
                    .show(&format!("This tuned prompt cannot be used with this model: {message}"), false);
            }
            // An older run's messages.
            _ => {}
        }
        Ok(())
    }
}
