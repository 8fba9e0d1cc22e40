//! From the inputs to a run: prompt numbering, the run bar, checking and sending the inputs, the
//! number of classes class-index masks imply, and filling the inputs from an example.

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::File;

use super::dom::{self, set_disabled};
use super::examples::ExampleFiles;
use super::prompt_card::PromptCard;
use super::{App, Msg, dispatch};
use crate::web::protocol::{self, SegmentFiles, ToWorker, TunedFiles};

impl App {
    pub(super) fn render_prompts(&self) {
        let removable = self.prompts.len() > 1;
        for (i, card) in self.prompts.iter().enumerate() {
            card.render_position(i + 1, removable);
        }
    }

    pub(super) fn render_run(&mut self) -> Result<(), JsValue> {
        let running = self.running();
        set_disabled(&self.segment, !self.ready || running);
        if !running {
            self.run_status.set_text_content(Some(""));
        }
        self.results.set_busy(running);
        self.render_video();
        self.bench.render(self.ready && !running);
        Ok(())
    }

    /// Checks the inputs, sends them to the worker and makes one pending result card per target.
    pub(super) fn start_run(&mut self) -> Result<(), JsValue> {
        let options = self.options.read()?;
        // Tuned prompt cards join the run; with one, an untouched prompt card is left out.
        let tuned = self.tuned.files()?;
        let prompts = self
            .prompts
            .iter()
            .enumerate()
            .filter(|(_, card)| tuned.is_empty() || !card.is_blank())
            .map(|(i, card)| card.files(i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if options.ensemble.model_prompts(prompts.len() + tuned.len()) > self.max_prompts {
            return Err(format!("this device allows at most {} prompts at a time", self.max_prompts).into());
        }
        let targets = self.targets.files();
        if targets.is_empty() {
            return Err("choose at least one target image".into());
        }
        self.results.start(&targets)?;
        self.run += 1;
        // Sent first: the worker handles messages in order and panics inside the run that follows.
        #[cfg(feature = "test-hooks")]
        if std::mem::take(&mut self.settings.debug_panic) {
            self.worker()?.send(&ToWorker::DebugPanic)?;
        }
        let envelope = protocol::envelope(&ToWorker::Segment { options })?;
        SegmentFiles { prompts, targets }.to_js(&envelope);
        TunedFiles(tuned).to_js(&envelope);
        self.worker()?.post(&envelope)?;
        self.run_status.set_text_content(Some("starting ..."));
        self.render_run()
    }

    /// Class-index masks: reads the prompts' mask files for the largest index, the default number of
    /// classes (shown in the field).
    pub(super) fn count_classes(&mut self) {
        self.class_count_generation += 1;
        if !self.options.class_masks() {
            self.options.render(None);
            return;
        }
        let generation = self.class_count_generation;
        let masks: Vec<File> = self.prompts.iter().filter_map(PromptCard::class_mask_file).collect();
        spawn_local(async move {
            let mut maps = Vec::new();
            for mask in &masks {
                // A mask that cannot be read is reported when segmenting.
                let Ok(bytes) = dom::blob_bytes(mask).await else { continue };
                maps.extend(crate::pipeline::decode_class_map(&bytes, &mask.name()).ok());
            }
            let count = u32::try_from(crate::paint::inferred_num_classes(&maps)).ok();
            dispatch(Msg::ClassCountRead { generation, count });
        });
    }

    /// Fills the prompts and targets with an example's files, as picking them would.
    pub(super) fn fill_example(&mut self, files: ExampleFiles) -> Result<(), JsValue> {
        while self.prompts.len() < files.prompts.len() {
            self.update(Msg::AddPrompt)?;
        }
        self.prompts.truncate(files.prompts.len().max(1));
        self.render_prompts();
        self.options.set_class_masks(false); // the gallery's masks are colours
        self.count_classes();
        for (card, (image, mask)) in self.prompts.iter().zip(&files.prompts) {
            card.fill(image, mask)?;
        }
        self.targets.set(&files.targets)
    }

    /// A result becomes one more example: its target and mask go into a blank prompt card (a new one
    /// when none is blank), the mask open in the painter for correcting before the next run.
    pub(super) fn use_result_as_prompt(&mut self, index: usize) -> Result<(), JsValue> {
        let Some(found) = self.results.as_prompt(index) else { return Ok(()) };
        let (image, mask) = found.map_err(|e| JsValue::from_str(&e))?;
        if !self.prompts.iter().any(PromptCard::is_blank) {
            self.update(Msg::AddPrompt)?;
        }
        let card = self.prompts.iter_mut().find(|card| card.is_blank()).ok_or("no prompt card to fill")?;
        card.correct(&image, mask)?;
        self.count_classes();
        Ok(())
    }
}
