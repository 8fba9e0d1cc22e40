//! The results panel: one card per target of the last run, the overlay opacity and "Download all".

use wasm_bindgen::JsValue;
use web_sys::{Element, File, HtmlInputElement};

use super::dom::{Listener, blob, canvas_png, find, save, set_disabled};
use super::result_card::{ResultCard, ResultMsg, ResultState, Segmented};
use super::{Msg, dispatch};
use crate::archive::unique_names;

/// Overlay opacity when the slider cannot be read.
const DEFAULT_OPACITY: f64 = 0.6;

pub struct ResultsPanel {
    list: Element,
    opacity: HtmlInputElement,
    download_all: Element,
    /// "Download all" adds the COCO file / the YOLO files.
    with_coco: HtmlInputElement,
    with_yolo: HtmlInputElement,
    cards: Vec<ResultCard>,
    _listeners: Vec<Listener>,
}

impl ResultsPanel {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let opacity: HtmlInputElement = find(root, "opacity")?;
        let download_all: Element = find(root, "download-all")?;
        let listeners = vec![
            Listener::new(&opacity, "input", |_| dispatch(Msg::Opacity))?,
            Listener::new(&download_all, "click", |_| dispatch(Msg::DownloadAll))?,
        ];
        Ok(ResultsPanel {
            list: find(root, "results")?,
            opacity,
            download_all,
            with_coco: find(root, "download-coco")?,
            with_yolo: find(root, "download-yolo")?,
            cards: Vec::new(),
            _listeners: listeners,
        })
    }

    fn opacity(&self) -> f64 {
        self.opacity.value().parse().unwrap_or(DEFAULT_OPACITY)
    }

    /// Drops the old cards (their listeners and URLs with them) and makes one pending card per target.
    /// Targets that share a name (every pasted image is `image.png`) get distinct download names.
    pub fn start(&mut self, targets: &[File]) -> Result<(), JsValue> {
        self.cards.clear();
        let names: Vec<String> = targets.iter().map(File::name).collect();
        for (index, (target, name)) in targets.iter().zip(unique_names(&names)).enumerate() {
            self.cards.push(ResultCard::new(index, target.clone(), &name, &self.list)?);
        }
        Ok(())
    }

    pub fn target(&self, index: usize) -> Option<File> {
        self.cards.get(index).map(|card| card.target.clone())
    }

    pub fn count(&self) -> usize {
        self.cards.len()
    }

    pub fn any_open(&self) -> bool {
        self.cards.iter().any(ResultCard::is_open)
    }

    pub fn any_done(&self) -> bool {
        self.cards.iter().any(|card| matches!(card.state, ResultState::Done(_)))
    }

    pub fn set_state(&mut self, index: usize, state: ResultState) -> Result<(), JsValue> {
        let opacity = self.opacity();
        if let Some(card) = self.cards.get_mut(index) {
            card.state = state;
            card.render(opacity)?;
        }
        Ok(())
    }

    /// Fails every card still waiting or running (the run stopped: a run error, a crash).
    pub fn fail_open(&mut self, reason: &str) -> Result<(), JsValue> {
        let opacity = self.opacity();
        for card in self.cards.iter_mut().filter(|card| card.is_open()) {
            card.state = ResultState::Failed(reason.to_string());
            card.render(opacity)?;
        }
        Ok(())
    }

    pub fn finish(
        &mut self,
        index: usize,
        result: Segmented,
        target: web_sys::ImageBitmap,
    ) -> Result<(), JsValue> {
        let opacity = self.opacity();
        let Some(card) = self.cards.get_mut(index) else { return Ok(()) };
        card.finish(index, result, target)?;
        card.render(opacity)
    }

    pub fn update_card(&mut self, index: usize, msg: ResultMsg) -> Result<(), JsValue> {
        let opacity = self.opacity();
        match self.cards.get_mut(index) {
            Some(card) => card.update(msg, opacity),
            None => Ok(()),
        }
    }

    /// Result `index`'s target and mask to correct as a prompt (`None` while it is not done).
    pub fn as_prompt(
        &self,
        index: usize,
    ) -> Option<Result<(web_sys::File, crate::paint::PaintMask), String>> {
        self.cards.get(index)?.as_prompt()
    }

    /// Redraws every card (the opacity changed).
    pub fn render(&self) -> Result<(), JsValue> {
        let opacity = self.opacity();
        self.cards.iter().try_for_each(|card| card.render(opacity))
    }

    /// "Download all" waits for the run to end.
    pub fn set_busy(&self, running: bool) {
        set_disabled(&self.download_all, running || !self.any_done());
    }

    /// Every finished result's mask and overlay PNGs in one ZIP (`archive` keeps names unique),
    /// and with the boxes ticked the COCO file and YOLO files of `seggpt segment --export`.
    pub fn download_all(&self) -> Result<(), JsValue> {
        let opacity = self.opacity();
        let labelled: Vec<_> = self.cards.iter().filter_map(ResultCard::labelled).collect();
        let labels = crate::export::download::label_files(
            &labelled,
            self.with_coco.checked(),
            self.with_yolo.checked(),
        )
        .map_err(|e| JsValue::from_str(&e))?;
        let mut masks = Vec::new();
        let mut overlays = Vec::new();
        for card in &self.cards {
            if let (Some((png, name)), Some(overlay)) = (card.mask_png(), card.overlay(opacity)?) {
                masks.push((name, png.to_vec()));
                overlays.push(overlay);
            }
        }
        wasm_bindgen_futures::spawn_local(async move {
            let zipped = async {
                let mut entries = Vec::new();
                for (mask, (canvas, name)) in masks.into_iter().zip(overlays) {
                    entries.push(mask);
                    entries.push((name, canvas_png(&canvas).await?));
                }
                entries.extend(labels);
                let zip = crate::archive::zip_stored(&entries).map_err(|e| JsValue::from_str(&e))?;
                save(&blob(&zip, "application/zip")?, "seggpt-results.zip")
            };
            if let Err(err) = zipped.await {
                dispatch(Msg::Failed(format!("cannot make the zip: {}", crate::web::js_text(&err))));
            }
        });
        Ok(())
    }
}
