//! The Benchmark panel (docs/MODEL.md §22): runs the worker's benchmark on the loaded model with the
//! chosen attention (the fused kernel or the reference path, `?attention=` preselects one) and shows its
//! report (adapter, dtype, attention, time per forward pass and per stage, GFLOP/s), with "Copy as JSON".

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Document, Element, HtmlSelectElement};

use super::dom::{Listener, element, fill_select, find, set_disabled, set_hidden, window};
use super::{App, Msg, dispatch};
use crate::bench::{BenchReport, Timing, three_digits};
use crate::model::AttentionKernel;
use crate::web::js_text;
use crate::web::protocol::ToWorker;

/// Timed forward passes per benchmark (after one warm-up).
pub const BENCH_RUNS: u32 = 3;

pub enum BenchMsg {
    Run,
    Copy,
    Copied(Result<(), String>),
}

pub struct BenchPanel {
    run: Element,
    attention: HtmlSelectElement,
    copy: Element,
    status: Element,
    table: Element,
    setup: Element,
    rows: Element,
    details: Element,
    json: Element,
    running: bool,
    /// SAM was loaded when this run started: its times follow SegGPT's passes.
    with_sam: bool,
    report: Option<BenchReport>,
    _listeners: Vec<Listener>,
}

impl BenchPanel {
    /// The panel, its attention choice set to `attention`.
    pub fn new(doc: &Document, attention: AttentionKernel) -> Result<Self, JsValue> {
        let run: Element = find(doc, "bench-run")?;
        let attention_select: HtmlSelectElement = find(doc, "bench-attention")?;
        let kernels = AttentionKernel::ALL.map(|kernel| {
            let label = match kernel {
                AttentionKernel::Fused => "fused kernel",
                AttentionKernel::Reference => "reference (score matrices)",
            };
            (kernel.name(), label)
        });
        fill_select(&attention_select, &kernels, attention.name())?;
        let copy: Element = find(doc, "bench-copy")?;
        let listeners = vec![
            Listener::new(&run, "click", |_| dispatch(Msg::Bench(BenchMsg::Run)))?,
            Listener::new(&copy, "click", |_| dispatch(Msg::Bench(BenchMsg::Copy)))?,
        ];
        Ok(Self {
            run,
            attention: attention_select,
            copy,
            status: find(doc, "bench-status")?,
            table: find(doc, "bench-table")?,
            setup: find(doc, "bench-setup")?,
            rows: find(doc, "bench-rows")?,
            details: find(doc, "bench-details")?,
            json: find(doc, "bench-json")?,
            running: false,
            with_sam: false,
            report: None,
            _listeners: listeners,
        })
    }

    /// Enables Run when the model is ready and nothing else runs.
    pub fn render(&self, can_run: bool) {
        set_disabled(&self.run, !can_run || self.running);
        set_disabled(&self.attention, self.running);
        set_disabled(&self.copy, self.report.is_none());
    }

    pub fn running(&self) -> bool {
        self.running
    }

    /// The attention chosen for the next run.
    pub fn attention(&self) -> AttentionKernel {
        AttentionKernel::from_name(&self.attention.value()).unwrap_or_default()
    }

    /// The benchmark was sent to the worker (`with_sam`: SAM is loaded, and is timed after SegGPT).
    pub fn started(&mut self, with_sam: bool) {
        self.running = true;
        self.with_sam = with_sam;
        self.status.set_text_content(Some("warming up (the first pass compiles the GPU's shaders) ..."));
    }

    pub fn progress(&self, done: u32, total: u32) {
        if done < total {
            self.status.set_text_content(Some(&format!("timed pass {} of {total} ...", done + 1)));
        } else if self.with_sam {
            self.status
                .set_text_content(Some("timing Click to select (SAM): an image embedding and a click ..."));
        }
    }

    pub fn show(&mut self, report: BenchReport) -> Result<(), JsValue> {
        self.running = false;
        let setup = &report.setup;
        let sam_setup = match &report.sam {
            Some(sam) => {
                format!("; Click to select: SAM {}, a click at the centre of a synthetic image", sam.model)
            }
            None => "; Click to select is timed too once SAM is loaded".to_string(),
        };
        self.setup.set_text_content(Some(&format!(
            "{} ({}, {} attention), {} prompt, canvas {} x {}, mean of {} passes{sam_setup}",
            setup.adapter,
            setup.dtype,
            setup.attention.name(),
            setup.prompts,
            setup.canvas[0],
            setup.canvas[1],
            report.runs
        )));
        self.rows.set_inner_html("");
        for timing in report.stages.iter().chain([&report.forward]) {
            let tr = row(timing, std::ptr::eq(timing, &report.forward))?;
            self.rows.append_child(&tr)?;
        }
        for timing in report.sam.iter().flat_map(|sam| [&sam.embedding, &sam.click]) {
            let tr = row(timing, false)?;
            self.rows.append_child(&tr)?;
        }
        self.json.set_text_content(Some(&report.to_json()));
        let sam_status = report.sam.as_ref().map_or(String::new(), |sam| {
            format!(
                "; Click to select: {:.3} s per image, {:.4} s per click",
                sam.embedding.mean_s, sam.click.mean_s
            )
        });
        self.status.set_text_content(Some(&format!(
            "{:.3} s per forward pass, {} GFLOP/s{sam_status}",
            report.forward.mean_s,
            three_digits(report.forward.gflop_per_s)
        )));
        set_hidden(&self.table, false);
        set_hidden(&self.details, false);
        self.report = Some(report);
        Ok(())
    }

    /// The benchmark failed, or the worker that ran it is gone.
    pub fn failed(&mut self, message: &str) {
        if std::mem::take(&mut self.running) {
            self.status.set_text_content(Some(&format!("failed: {message}")));
        }
    }

    pub fn update(&mut self, msg: BenchMsg) {
        match msg {
            // Run is handled by the app (it needs the worker).
            BenchMsg::Run => {}
            BenchMsg::Copy => {
                let Some(report) = &self.report else { return };
                let json = report.to_json();
                spawn_local(async move {
                    let promise = window().navigator().clipboard().write_text(&json);
                    let copied = JsFuture::from(promise).await.map(drop).map_err(|e| js_text(&e));
                    dispatch(Msg::Bench(BenchMsg::Copied(copied)));
                });
            }
            BenchMsg::Copied(Ok(())) => {
                self.status.set_text_content(Some("copied the JSON to the clipboard"))
            }
            // Without clipboard access the JSON stays readable (and selectable) below the table.
            BenchMsg::Copied(Err(why)) => {
                self.status.set_text_content(Some(&format!("cannot copy ({why}): select the JSON below")));
            }
        }
    }
}

/// One table row: the stage, its mean and minimum time, its work and its achieved rate (a dash where
/// no FLOPs are counted, as for SAM).
fn row(timing: &Timing, total: bool) -> Result<Element, JsValue> {
    let tr: Element = element("tr", if total { "total" } else { "" })?;
    tr.set_attribute("data-testid", &format!("bench-row-{}", timing.name))?;
    let counted = |value: f64| if timing.gflop > 0.0 { three_digits(value) } else { "\u{2013}".to_string() };
    let cells = [
        timing.name.clone(),
        format!("{:.3} s", timing.mean_s),
        format!("{:.3} s", timing.min_s),
        counted(timing.gflop),
        counted(timing.gflop_per_s),
    ];
    for text in cells {
        let td: Element = element("td", "")?;
        td.set_text_content(Some(&text));
        tr.append_child(&td)?;
    }
    Ok(tr)
}

impl App {
    /// Sends the benchmark to the worker, which runs one thing at a time: it ends a video session.
    pub(super) fn start_bench(&mut self) -> Result<(), JsValue> {
        if !self.ready || self.running() || self.bench.running() {
            return Ok(());
        }
        self.error.hide();
        self.end_video_sessions("the benchmark took the model")?;
        let attention = self.bench.attention();
        self.worker()?.send(&ToWorker::Bench { runs: BENCH_RUNS, attention })?;
        self.bench.started(self.sam.ready());
        self.render_run()
    }
}
