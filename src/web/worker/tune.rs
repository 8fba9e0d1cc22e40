//! The worker's side of tuning a prompt in the page (docs/MODEL.md §19): the same loop as
//! `seggpt tune` ([`Tuner`], burn's autodiff on WebGPU), one step at a time with a read-back that
//! does not block; tuned prompt files checked and previewed; tuned prompts for a run.

use js_sys::Array;
use wasm_bindgen::JsValue;
use web_sys::File;

use super::{Loaded, MODEL, next_task, post, post_with, prompts, read_bytes, requeue_first};
use crate::pipeline::{ChwImage, denormalize, encode_rgb_png, to_rgb_u8};
use crate::segment::TunedPrompt;
use crate::tune::{
    self, Activations, PromptMetadata, TrainingPair, TuneSettings, Tuner, config_hash, decode_prompt,
    encode_prompt, step_memory,
};
use crate::web::now_s;
use crate::web::protocol::{
    self, RunOptions, SegmentFiles, ToPage, ToWorker, TuneInfo, TuneParams, TunedFileBytes, TunedFiles,
    TunedPreviewPngs,
};
use crate::{MemoryBudget, largest_buffer_bytes};

/// How the page's steps get their activations: recomputed block by block (docs/MODEL.md §23).
/// WebGPU does not tell a page how much memory the GPU has, so the page cannot know whether a step
/// that keeps every activation would fit; recomputing costs about one forward pass more per step
/// and brings the released model's step from about 13 GB to a few GB.
const ACTIVATIONS: Activations = Activations::Recompute;

/// The largest batch the page offers; [`TuneInfo::step_bytes`] covers `1..=MAX_BATCH`.
const MAX_BATCH: usize = 8;

/// `seggpt tune`'s defaults, for the page's fields.
fn defaults() -> TuneParams {
    TuneParams {
        steps: tune::DEFAULT_STEPS,
        lr: tune::DEFAULT_LR,
        weight_decay: tune::DEFAULT_WEIGHT_DECAY,
        batch: tune::DEFAULT_BATCH,
        seed: tune::DEFAULT_SEED,
    }
}

/// What tuning takes on `loaded`, posted after `Ready`.
pub(super) fn info(loaded: &Loaded) -> ToPage {
    let config = loaded.model.config();
    let fits = |batch: usize| {
        largest_buffer_bytes(config, batch, MemoryBudget::DEFAULT) <= loaded.engine.max_binding
    };
    ToPage::TuneInfo(TuneInfo {
        defaults: defaults(),
        step_bytes: (1..=MAX_BATCH)
            .map(|b| step_memory(config, b, ACTIVATIONS).activation_bytes as f64)
            .collect(),
        weight_bytes: step_memory(config, 1, ACTIVATIONS).weight_bytes as f64,
        max_batch: (1..=MAX_BATCH).take_while(|&b| fits(b)).last().unwrap_or(0),
        max_binding: loaded.engine.max_binding as f64,
    })
}

fn loaded() -> Result<std::rc::Rc<Loaded>, String> {
    MODEL.with(|m| m.borrow().clone()).ok_or_else(|| "the model is not loaded yet".to_string())
}

/// A tuned prompt's tensor as a PNG, denormalised and clipped (what `seggpt tune` writes beside it).
fn preview_png(values: &ChwImage) -> Result<Vec<u8>, String> {
    encode_rgb_png(&to_rgb_u8(&denormalize(values))).map_err(|e| e.to_string())
}

/// Reads and checks a tuned prompt file against the loaded model (its shape, as `segment
/// --tuned-prompt` does).
fn read_tuned(file: &File, loaded: &Loaded) -> Result<(TunedPrompt, PromptMetadata), String> {
    let bytes = read_bytes(file)?;
    decode_prompt(&bytes, &file.name(), loaded.model.config().half_image_size()).map_err(|e| e.to_string())
}

/// The tuned prompts of a `Segment` message (none when it has no `tuned` field).
pub(super) fn tuned_prompts(data: &JsValue, loaded: &Loaded) -> Result<Vec<TunedPrompt>, String> {
    let files = TunedFiles::from_js(data).map_err(|why| format!("the page sent unreadable inputs: {why}"))?;
    files.0.iter().map(|file| read_tuned(file, loaded).map(|(prompt, _)| prompt)).collect()
}

/// Answers `InspectTuned`: the previews of the file, or why this model cannot use it.
pub(super) fn inspect(card: u32, data: &JsValue) {
    let previews = || -> Result<(TunedPreviewPngs, PromptMetadata), String> {
        let loaded = loaded()?;
        let files = TunedFiles::from_js(data)?;
        let file = files.0.first().ok_or("no tuned prompt file was sent")?;
        let (prompt, metadata) = read_tuned(file, &loaded)?;
        let pngs = TunedPreviewPngs {
            image_png: preview_png(&prompt.pixel_values)?,
            mask_png: preview_png(&prompt.masks)?,
        };
        Ok((pngs, metadata))
    };
    match previews() {
        Ok((pngs, metadata)) => {
            let msg = ToPage::TunedPreview {
                card,
                steps: metadata.steps,
                loss: metadata.train_losses.last().copied(),
            };
            post_with(&msg, |envelope| pngs.to_js(envelope));
        }
        Err(message) => post(&ToPage::TunedRefused { card, message }),
    }
}

/// The next queued message, if one has arrived (never waits).
fn queued() -> Option<JsValue> {
    super::QUEUE.with(|q| q.borrow_mut().waiting.pop_front())
}

/// Tunes a prompt on the training pairs of `data`; posts a `TuneStep` per step and then the file.
pub(super) async fn session(
    session: u32,
    params: TuneParams,
    run: RunOptions,
    data: &JsValue,
) -> Result<(), String> {
    let loaded = loaded()?;
    let config = loaded.model.config();
    let files =
        SegmentFiles::from_js(data).map_err(|why| format!("the page sent unreadable pairs: {why}"))?;
    if files.prompts.is_empty() {
        return Err("add a training pair: an image and its mask".into());
    }
    if params.steps == 0 {
        return Err("the number of steps must be 1 or more".into());
    }
    if !(params.lr.is_finite() && params.lr > 0.0) {
        return Err("the learning rate must be a number above 0".into());
    }
    if !(params.weight_decay.is_finite() && params.weight_decay >= 0.0) {
        return Err("the weight decay must be a number, 0 or more".into());
    }
    if params.batch == 0 || params.batch > files.prompts.len() {
        return Err(format!(
            "the batch ({}) must be between 1 and the number of training pairs ({})",
            params.batch,
            files.prompts.len()
        ));
    }
    if largest_buffer_bytes(config, params.batch, MemoryBudget::DEFAULT) > loaded.engine.max_binding {
        return Err(too_large(config, params.batch, loaded.engine.max_binding));
    }
    let (pairs, _) = prompts(&files.prompts, &run)?;
    let (h, w) = config.half_image_size();
    let train = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (image, label) = p.prepare(h, w).map_err(|e| format!("training pair {}: {e}", i + 1))?;
            Ok(TrainingPair { image, label })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // As `seggpt tune` without --init: the prompt starts from the first training pair.
    let init = TunedPrompt { pixel_values: train[0].image.clone(), masks: train[0].label.clone() };
    let settings = TuneSettings {
        lr: params.lr,
        weight_decay: params.weight_decay,
        batch: params.batch,
        seed: params.seed,
        embedding_type: run.embedding,
        activations: ACTIVATIONS,
    };
    let mut metadata = PromptMetadata {
        config_hash: config_hash(config),
        image_size: config.image_size.hw(),
        steps: 0,
        lr: params.lr,
        weight_decay: params.weight_decay,
        batch: params.batch,
        seed: params.seed,
        embedding_type: run.embedding,
        train_losses: Vec::new(),
        val_losses: Vec::new(),
    };
    let mut tuner = Tuner::new(&init, settings);
    let mut stopped = false;
    while tuner.steps() < params.steps && !stopped {
        let start = now_s();
        let loss = tuner
            .step_async(&loaded.model, &loaded.engine.device, &train)
            .await
            .map_err(|e| format!("step {}: {e}", tuner.steps() + 1))?;
        metadata.train_losses.push(loss);
        metadata.steps = tuner.steps();
        post(&ToPage::TuneStep { session, step: tuner.steps(), loss, seconds: now_s() - start });
        // Messages that came during the step: Stop ends the run here, a tuned file is checked
        // at once, anything else ends the run and is handled next, in its place.
        next_task().await;
        while let Some(data) = queued() {
            match protocol::message::<ToWorker>(&data) {
                Ok(ToWorker::TuneStop { session: of }) => stopped |= of == session,
                Ok(ToWorker::InspectTuned { card }) => inspect(card, &data),
                _ => {
                    requeue_first(data);
                    stopped = true;
                    break;
                }
            }
        }
    }
    let bytes = TunedFileBytes(encode_prompt(&tuner.prompt(), &metadata));
    let msg = ToPage::TuneDone { session, steps: tuner.steps(), stopped: tuner.steps() < params.steps };
    post_with(&msg, |envelope| -> Array { bytes.to_js(envelope) });
    Ok(())
}

/// Why a step of `batch` pairs cannot run on this GPU, in plain words.
fn too_large(config: &crate::SegGptConfig, batch: usize, max_binding: u64) -> String {
    let need = largest_buffer_bytes(config, batch, MemoryBudget::DEFAULT);
    format!(
        "Your GPU cannot hold one tuning step of {batch} pair(s): it needs GPU buffers of {} MiB, and this GPU \
         (in this browser) allows {} MiB. Use fewer pairs per step.",
        need.div_ceil(1 << 20),
        max_binding >> 20
    )
}
