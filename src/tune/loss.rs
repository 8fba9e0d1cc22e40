//! The training loss of SegGPT with a learnable prompt (docs/MODEL.md §16): transformers'
//! `SegGptLoss`, the official `forward_loss`.

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::{Ensemble, ForwardOptions, SegGpt, ShapeError};
use crate::pipeline::ChwImage;
use crate::segment::TunedPrompt;
use crate::{EmbeddingType, MemoryBudget};

/// One training (or validation) example at the model's half-canvas size: the normalised query
/// image and its normalised label mask, prepared like a target and a prompt mask.
#[derive(Debug, Clone)]
pub struct TrainingPair {
    pub image: ChwImage,
    pub label: ChwImage,
}

/// `SegGptLoss` with the default `bool_masked_pos`: smooth-L1 with `beta` between the predicted
/// canvas and the ground truth `cat(prompt_masks, labels)`, averaged over the masked patches.
/// The masked patches are exactly the query half, so this is the mean over the query half of
/// `pred` against `labels`; the prompt half of the ground truth never enters the loss.
///
/// `pred_query`, `labels`: `(B, 3, H/2, W)`. Returns a one-element tensor.
pub fn masked_smooth_l1(pred_query: Tensor<4>, labels: Tensor<4>, beta: f64) -> Tensor<1> {
    // PyTorch's smooth_l1_loss: n = |x - y|; n < beta ? 0.5 n^2 / beta : n - 0.5 beta.
    let n = (pred_query - labels).abs();
    let quadratic = n.clone().square().mul_scalar(0.5).div_scalar(beta);
    let small = n.clone().lower_elem(beta);
    n.sub_scalar(0.5 * beta).mask_where(small, quadratic).mean()
}

/// The loss of `batch` (each pair a query with the same prompt) under `prompt_pixel_values` and
/// `prompt_masks` (each `(1, 3, H/2, W)`), run on the pairs' device. The prompt tensors may be
/// tracked by autodiff: the model's parameters are plain tensors on the inner device, so the
/// backward pass treats them as constants and keeps no gradient for them.
///
/// Every pair is its own sample (no feature ensemble), as transformers' training forward.
pub fn batch_loss(
    model: &SegGpt,
    device: &Device,
    prompt_pixel_values: Tensor<4>,
    prompt_masks: Tensor<4>,
    batch: &[&TrainingPair],
    embedding_type: EmbeddingType,
) -> Result<Tensor<1>, ShapeError> {
    let (queries, labels) = batch_tensors(batch, device);
    let b = batch.len();
    let pred = model.forward(
        queries,
        broadcast_prompt(model, prompt_pixel_values, b),
        broadcast_prompt(model, prompt_masks, b),
        training_options(embedding_type),
        &mut |_, _| {},
    )?;
    Ok(prediction_loss(model, pred, labels))
}

/// The forward options of a training step: every pair its own sample (no feature ensemble), as
/// transformers' training forward.
pub(super) fn training_options(embedding_type: EmbeddingType) -> ForwardOptions {
    ForwardOptions {
        ensemble: Some(Ensemble::None),
        embedding_type,
        budget: MemoryBudget::DEFAULT,
        ..ForwardOptions::default()
    }
}

/// The queries and the labels of `batch`, each `(B, 3, H/2, W)` on `device`.
pub(super) fn batch_tensors(batch: &[&TrainingPair], device: &Device) -> (Tensor<4>, Tensor<4>) {
    (stack(batch.iter().map(|p| &p.image), device), stack(batch.iter().map(|p| &p.label), device))
}

/// A `(1, 3, H/2, W)` prompt tensor as the prompt of each of `b` samples (its gradient is then the
/// sum over them).
pub(super) fn broadcast_prompt(model: &SegGpt, prompt: Tensor<4>, b: usize) -> Tensor<4> {
    let (h, w) = model.config().half_image_size();
    prompt.expand([b, 3, h, w])
}

/// The loss of `pred_masks` `(B, 3, H, W)` against the `labels` of its query half.
pub(super) fn prediction_loss(model: &SegGpt, pred: Tensor<4>, labels: Tensor<4>) -> Tensor<1> {
    let h = model.config().half_image_size().0;
    masked_smooth_l1(pred.narrow(2, h, h), labels, model.config().beta)
}

/// A prompt as two `(1, 3, H/2, W)` tensors on `device`.
pub fn prompt_tensors(prompt: &TunedPrompt, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let one = |image: &ChwImage| {
        let shape = [1, image.channels(), image.height(), image.width()];
        Tensor::from_data(TensorData::new(image.as_slice().to_vec(), shape), device)
    };
    (one(&prompt.pixel_values), one(&prompt.masks))
}

/// Same-sized CHW images stacked into a `(B, C, H, W)` tensor.
fn stack<'a>(images: impl Iterator<Item = &'a ChwImage>, device: &Device) -> Tensor<4> {
    let mut values = Vec::new();
    let mut shape = [0, 0, 0, 0];
    for image in images {
        shape = [shape[0] + 1, image.channels(), image.height(), image.width()];
        values.extend_from_slice(image.as_slice());
    }
    Tensor::from_data(TensorData::new(values, shape), device)
}
