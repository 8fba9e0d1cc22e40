//! A tuning step whose backward pass recomputes the encoder's activations block by block
//! (docs/MODEL.md §23), so that only one block's activations exist at a time: the forward pass runs
//! without autodiff and keeps each block's input; the decoder and the loss run under autodiff with
//! the intermediate features as leaves; then each block, last to first, is run again under autodiff
//! from its kept input and back-propagates the gradient arriving at its output; last, the
//! embeddings give the gradients of the two prompt tensors. The chain rule makes these the gradients
//! of [`super::Activations::Keep`]'s single backward pass.

use burn::tensor::{Device, Tensor};

use super::loss::{batch_tensors, broadcast_prompt, prediction_loss, training_options};
use super::{PendingGradients, TrainingPair, TuneError, leaf, no_gradient, prompt_tensors};
use crate::EmbeddingType;
use crate::model::SegGpt;
use crate::segment::TunedPrompt;

/// The loss of `batch` under `prompt` and its gradients with respect to both prompt tensors,
/// computed but not read back, with the activations recomputed block by block.
pub(super) fn backward(
    model: &SegGpt,
    device: &Device,
    prompt: &TunedPrompt,
    batch: &[&TrainingPair],
    embedding_type: EmbeddingType,
) -> Result<PendingGradients, TuneError> {
    let options = training_options(embedding_type);
    let b = batch.len();
    let (queries, labels) = batch_tensors(batch, device);
    let (pixel_values, masks) = prompt_tensors(prompt, device);
    let embed = |pixel_values: Tensor<4>, masks: Tensor<4>| {
        let (pixel_values, masks) =
            (broadcast_prompt(model, pixel_values, b), broadcast_prompt(model, masks, b));
        model.embed([queries.clone(), pixel_values, masks], options)
    };

    // 1. The forward pass without autodiff, keeping each block's input up to the last block the
    // decoder reads (later blocks do not reach the loss). The features are in block order.
    let indices = &model.config().intermediate_hidden_state_indices;
    let last = *indices.last().expect("a validated config names at least one feature block");
    let mut inputs = Vec::with_capacity(last + 1);
    let mut features = Vec::new();
    let mut h = embed(pixel_values.clone(), masks.clone())?;
    for index in 0..=last {
        inputs.push(h.clone());
        h = model.encode_block(index, h, options);
        features.extend(model.block_feature(index, &h));
    }
    drop(h);

    // 2. The decoder and the loss under autodiff, from the features as leaves.
    let features: Vec<Tensor<4>> = features.into_iter().map(leaf).collect();
    let loss = prediction_loss(model, model.decode(&features), labels);
    let grads = loss.backward();
    let mut feature_grads =
        features.iter().map(|f| f.grad(&grads).ok_or_else(no_gradient)).collect::<Result<Vec<_>, _>>()?;
    drop((grads, features));

    // 3. The blocks backwards: block `index` again under autodiff from its kept input, and the
    // gradient at its output (from the next block, and from the decoder when the block is one
    // of its features, through the final norm) carried to its input as the gradient of
    // `sum(output * gradient)`. The stream merge after block `merge_index` is part of that block,
    // so its 2K inputs receive the gradient of its K outputs as autodiff would give it.
    let mut upstream: Option<Tensor<4>> = None;
    for index in (0..=last).rev() {
        let input = leaf(inputs.pop().expect("one kept input per block up to `last`"));
        let output = model.encode_block(index, input.clone(), options);
        let from_decoder = model.block_feature(index, &output).map(|feature| {
            let grad = feature_grads.pop().expect("one decoder gradient per feature block");
            (feature * grad).sum()
        });
        let from_next = upstream.take().map(|grad| (output * grad).sum());
        let objective = match (from_next, from_decoder) {
            (Some(a), Some(b)) => a + b,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => continue,
        };
        let grads = objective.backward();
        upstream = Some(input.grad(&grads).ok_or_else(no_gradient)?);
    }

    // 4. The embeddings: the prompt tensors as leaves, the gradient at the tokens carried to them.
    let (pixel_values, masks) = (leaf(pixel_values), leaf(masks));
    let tokens = embed(pixel_values.clone(), masks.clone())?;
    let grads = (tokens * upstream.ok_or_else(no_gradient)?).sum().backward();
    Ok(PendingGradients {
        pixel_values: pixel_values.grad(&grads).ok_or_else(no_gradient)?,
        masks: masks.grad(&grads).ok_or_else(no_gradient)?,
        loss: loss.inner(),
    })
}
