//! Run options: embedding type and ensemble (the `<select>`s are built from the model's enums), class-
//! index masks and their number of classes (the palette size, as the CLI's `--num-labels`), and
//! tiles for large targets (as the CLI's `--tile`).

use wasm_bindgen::JsValue;
use web_sys::{HtmlInputElement, HtmlSelectElement};

use super::dom::{Listener, fill_select, find, set_disabled};
use super::{Msg, dispatch};
use crate::model::{EmbeddingType, Ensemble};
use crate::pipeline::Tiling;
use crate::web::protocol::{RunOptions, embedding_label, ensemble_label};

pub struct OptionsPanel {
    embedding: HtmlSelectElement,
    ensemble: HtmlSelectElement,
    class_masks: HtmlInputElement,
    num_classes: HtmlInputElement,
    /// `SIZE` or `SIZE,OVERLAP`, as the CLI's `--tile`; empty: targets whole.
    tile: HtmlInputElement,
    /// The visitor typed a number of classes: it is no longer replaced by the inferred one.
    num_classes_edited: bool,
    _listeners: Vec<Listener>,
}

impl OptionsPanel {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let embedding: HtmlSelectElement = find(root, "embedding")?;
        let ensemble: HtmlSelectElement = find(root, "ensemble")?;
        fill_select(
            &embedding,
            &EmbeddingType::ALL.map(|e| (e.name(), embedding_label(e))),
            EmbeddingType::default().name(),
        )?;
        // Official is what "no choice" means in `ForwardOptions`, and the CLI's default.
        fill_select(
            &ensemble,
            &Ensemble::ALL.map(|e| (e.name(), ensemble_label(e))),
            Ensemble::Official.name(),
        )?;
        let class_masks: HtmlInputElement = find(root, "class-masks")?;
        let num_classes: HtmlInputElement = find(root, "num-classes")?;
        let tile: HtmlInputElement = find(root, "tile")?;
        let listeners = vec![
            Listener::new(&class_masks, "change", |_| dispatch(Msg::ClassMasksChanged))?,
            Listener::new(&num_classes, "input", |_| dispatch(Msg::NumClassesEdited))?,
        ];
        Ok(OptionsPanel {
            embedding,
            ensemble,
            class_masks,
            num_classes,
            tile,
            num_classes_edited: false,
            _listeners: listeners,
        })
    }

    pub fn class_masks(&self) -> bool {
        self.class_masks.checked()
    }

    pub fn set_class_masks(&self, on: bool) {
        self.class_masks.set_checked(on);
    }

    pub fn num_classes_edited(&mut self) {
        self.num_classes_edited = true;
    }

    /// The number of classes the masks imply (`None`: unknown yet); shown unless the visitor typed one.
    pub fn render(&self, inferred: Option<u32>) {
        set_disabled(&self.num_classes, !self.class_masks());
        if !self.num_classes_edited {
            self.num_classes.set_value(&inferred.map(|n| n.to_string()).unwrap_or_default());
        }
    }

    /// The options as chosen, or why they cannot be used.
    pub fn read(&self) -> Result<RunOptions, String> {
        let embedding = EmbeddingType::ALL
            .into_iter()
            .find(|e| e.name() == self.embedding.value())
            .ok_or("choose an embedding type")?;
        let ensemble = Ensemble::ALL
            .into_iter()
            .find(|e| e.name() == self.ensemble.value())
            .ok_or("choose an ensemble")?;
        let class_masks = self.class_masks();
        let num_classes = if class_masks && !self.num_classes.value().trim().is_empty() {
            let n: u32 = self.num_classes.value().trim().parse().map_err(|_| {
                format!("number of classes: `{}` is not a whole number", self.num_classes.value())
            })?;
            if !(2..=256).contains(&n) {
                return Err(format!("number of classes: {n} is outside 2 to 256"));
            }
            Some(n)
        } else {
            None
        };
        let tile = match self.tile.value().trim() {
            "" => None,
            text => Some(Tiling::parse(text).map_err(|why| format!("tiles: {why}"))?),
        };
        Ok(RunOptions { embedding, ensemble, class_masks, num_classes, tile })
    }
}
