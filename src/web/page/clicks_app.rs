//! The app's side of click to select (docs/MODEL.md §25): SAM is looked for in browser storage when a
//! visitor first turns the tool on, offered for download with its size when it is not there, loaded
//! once per worker; each card's image is prepared (embedded) once, and each click is sent as the
//! card's whole prompt so far. The worker's answers go back to the card whose image they are for.

use wasm_bindgen::JsValue;
use web_sys::{Url, UrlSearchParams};

use super::click_tool::SamNews;
use super::dom::window;
use super::prompt_card::{PromptCard, PromptId};
use super::{App, Msg, dispatch};
use crate::web::protocol::{self, SamImage, SamMasks, ToPage, ToWorker};
use crate::web::size_text;

/// Where SAM comes from without `?sam=`: SlimSAM-77 (a pruned SAM, 38.9 MB) on the Hugging Face hub.
const DEFAULT_SAM: &str = "https://huggingface.co/Zigeng/SlimSAM-uniform-77/resolve/main/";

/// Where SAM stands in this worker.
#[derive(PartialEq)]
enum Phase {
    /// Not asked for yet.
    Unknown,
    /// Looking for a stored copy.
    Inspecting,
    /// Not stored: the visitor is asked (the offer's text).
    Offered(String),
    /// Loading (the last progress line).
    Loading(String),
    Ready,
    Failed(String),
}

pub(super) struct Sam {
    url: String,
    phase: Phase,
    /// The visitor asked for SAM (or it was stored): a restarted worker loads it without asking.
    consented: bool,
    /// The last key given to an image prepared for clicks.
    last_key: u32,
}

impl Sam {
    /// `?sam=URL` (resolved against the page), else [`DEFAULT_SAM`].
    pub(super) fn new(query: &UrlSearchParams) -> Result<Self, JsValue> {
        let url = match query.get("sam") {
            Some(sam) => Url::new_with_base(&sam, &window().location().href()?)
                .map_err(|_| JsValue::from_str(&format!("?sam={sam} is not a URL")))?
                .href(),
            None => DEFAULT_SAM.into(),
        };
        Ok(Self { url, phase: Phase::Unknown, consented: false, last_key: 0 })
    }

    /// SAM is loaded in the worker (so the Benchmark times it too).
    pub(super) fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// A new worker holds no SAM.
    pub(super) fn worker_restarted(&mut self) {
        self.phase = Phase::Unknown;
    }
}

impl App {
    /// Every prompt card: the prompts, and the tuning panel's training pairs.
    fn cards_mut(&mut self) -> impl Iterator<Item = &mut PromptCard> {
        self.prompts.iter_mut().chain(self.tune.pairs.iter_mut())
    }

    fn card_mut(&mut self, id: PromptId) -> Option<&mut PromptCard> {
        self.cards_mut().find(|card| card.id == id)
    }

    /// A card turned click to select on (or its image changed while on).
    pub(super) fn sam_wanted(&mut self, id: PromptId) -> Result<(), JsValue> {
        match &self.sam.phase {
            Phase::Ready => self.prepare(id)?,
            Phase::Unknown if self.sam.consented => self.load_sam()?,
            Phase::Unknown => {
                self.sam.phase = Phase::Inspecting;
                self.worker()?.send(&ToWorker::SamInspect { url: self.sam.url.clone() })?;
            }
            _ => {}
        }
        self.render_sam();
        Ok(())
    }

    pub(super) fn load_sam(&mut self) -> Result<(), JsValue> {
        self.sam.consented = true;
        self.sam.phase = Phase::Loading("loading SAM ...".into());
        let s = &self.settings;
        let load =
            ToWorker::SamLoad { url: self.sam.url.clone(), cache: s.cache, half: s.half, device: s.device };
        self.worker()?.send(&load)?;
        self.render_sam();
        Ok(())
    }

    /// Asks the worker to embed card `id`'s image, under a new key.
    fn prepare(&mut self, id: PromptId) -> Result<(), JsValue> {
        self.sam.last_key += 1;
        let key = self.sam.last_key;
        let Some(card) = self.card_mut(id) else { return Ok(()) };
        let Some(image) = card.image_file() else { return Ok(()) };
        card.clicks_mut().preparing(key);
        let envelope = protocol::envelope(&ToWorker::SamPrepare { key })?;
        SamImage(image).to_js(&envelope);
        self.worker()?.post(&envelope)
    }

    /// Card `id`'s clicks changed: SAM's masks for all of them.
    pub(super) fn sam_ask(&mut self, id: PromptId) -> Result<(), JsValue> {
        if !matches!(self.sam.phase, Phase::Ready) {
            return self.sam_wanted(id);
        }
        let Some(card) = self.card_mut(id) else { return Ok(()) };
        let (Some(key), Some(image)) = (card.clicks_mut().key(), card.image_file()) else {
            return self.prepare(id);
        };
        let prompt = card.clicks_mut().prompt().clone();
        if prompt.is_empty() {
            return Ok(());
        }
        let envelope = protocol::envelope(&ToWorker::SamSelect { key, prompt })?;
        SamImage(image).to_js(&envelope);
        self.worker()?.post(&envelope)
    }

    /// What the worker says about SAM.
    pub(super) fn on_sam_message(&mut self, msg: ToPage, data: &JsValue) -> Result<(), JsValue> {
        match msg {
            ToPage::SamInspected { stored, bytes, note } => {
                if stored && self.settings.cache {
                    return self.load_sam();
                }
                let size = match bytes {
                    Some(bytes) => format!("a download of {}", size_text(bytes)),
                    None => "a download of unknown size".into(),
                };
                let mut text = format!(
                    "Click to select uses SAM ({}): {size}, once, kept in this browser. Your images stay on \
                     this device.",
                    self.sam.url
                );
                if !note.is_empty() {
                    text += &format!(" {note}");
                }
                self.sam.phase = Phase::Offered(text);
            }
            ToPage::SamProgress { text, .. } => self.sam.phase = Phase::Loading(text),
            ToPage::SamReady { seconds, note } => {
                self.sam.phase = Phase::Ready;
                let line = format!("SAM ready ({note}, {seconds:.1} s)");
                let waiting: Vec<PromptId> =
                    self.cards_mut().filter(|card| card.clicks().active()).map(|card| card.id).collect();
                for card in self.cards_mut() {
                    card.clicks_mut().unprepare();
                }
                self.render_sam();
                for id in waiting {
                    if let Some(card) = self.card_mut(id) {
                        card.clicks_mut().news(SamNews::Status(&line));
                    }
                    self.prepare(id)?;
                }
                return Ok(());
            }
            ToPage::SamLoadFailed { message } => {
                self.sam.phase = Phase::Failed(message.clone());
                self.error.show(&format!("Click to select: {message}"), false);
            }
            ToPage::SamPrepared { key, seconds } => {
                if let Some(card) = self.card_with_key(key) {
                    card.clicks_mut().prepared(seconds);
                    // Clicks made while the image was being read are answered now.
                    if !card.clicks_mut().prompt().is_empty() {
                        let id = card.id;
                        dispatch(Msg::SamAsk(id));
                    }
                }
                return Ok(());
            }
            ToPage::SamSelection { key, width, height, iou_scores, best, seconds, .. } => {
                let masks = SamMasks::from_js(data)?.0;
                if let Some(card) = self.card_with_key(key) {
                    let tool = card.clicks_mut();
                    let expected = (width as usize * height as usize) * iou_scores.len();
                    // An answer to clicks cleared since is dropped.
                    if !tool.prompt().is_empty() && masks.len() == expected {
                        tool.show(masks, iou_scores, best, seconds)?;
                    }
                }
                return Ok(());
            }
            ToPage::SamFailed { key, message } => {
                if let Some(card) = self.card_with_key(key) {
                    card.clicks_mut().failed(&message);
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        self.render_sam();
        Ok(())
    }

    fn card_with_key(&mut self, key: u32) -> Option<&mut PromptCard> {
        self.cards_mut().find(|card| card.clicks().key() == Some(key))
    }

    /// Tells every card in click mode where SAM stands.
    fn render_sam(&mut self) {
        let news = match &self.sam.phase {
            Phase::Unknown | Phase::Ready => return,
            Phase::Inspecting => SamNewsText::Status("looking for SAM in browser storage ...".into()),
            Phase::Offered(text) => SamNewsText::Offer(text.clone()),
            Phase::Loading(text) => SamNewsText::Status(text.clone()),
            Phase::Failed(message) => {
                SamNewsText::Offer(format!("SAM could not be loaded ({message}). Try again?"))
            }
        };
        for card in self.cards_mut().filter(|card| card.clicks().active()) {
            card.clicks_mut().news(match &news {
                SamNewsText::Offer(text) => SamNews::Offer(text),
                SamNewsText::Status(text) => SamNews::Status(text),
            });
        }
    }
}

enum SamNewsText {
    Offer(String),
    Status(String),
}
