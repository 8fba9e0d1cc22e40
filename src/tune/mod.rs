//! In-context tuning (docs/MODEL.md §16): the model stays frozen and one prompt pair, the image
//! and the mask tensors in normalised space, is learned from labelled training pairs with the
//! model's own training loss and AdamW. Browser-free and shared by the front ends; the forward
//! pass is the model's, run on a device with burn's autodiff.

mod adamw;
mod batches;
mod file;
mod loss;
mod memory;
mod recompute;

use burn::tensor::{Device, GradientCheckpointingStrategy, Tensor, TensorData};

pub use adamw::{AdamW, BETAS, EPS, Moments};
pub use batches::batch_indices;
pub use file::{
    FileError, MAX_PROMPT_VALUE, PromptMetadata, check_prompt_values, config_hash, decode_optimiser,
    decode_prompt, encode_optimiser, encode_prompt,
};
pub use loss::{TrainingPair, batch_loss, masked_smooth_l1, prompt_tensors};
pub use memory::{StepMemory, step_memory};

use crate::EmbeddingType;
use crate::model::{SegGpt, ShapeError};
use crate::pipeline::ChwImage;
use crate::segment::TunedPrompt;

/// Default learning rate (see docs/MODEL.md §16 for how the defaults were chosen).
pub const DEFAULT_LR: f64 = 0.1;
/// Default AdamW weight decay (PyTorch's default).
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;
/// Default number of steps.
pub const DEFAULT_STEPS: u64 = 100;
/// Default training pairs per step.
pub const DEFAULT_BATCH: usize = 2;
/// Default seed of the order the pairs are drawn in.
pub const DEFAULT_SEED: u64 = 0;

/// The hyper-parameters of a tuning run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneSettings {
    pub lr: f64,
    pub weight_decay: f64,
    /// Training pairs per step (at most the number of pairs).
    pub batch: usize,
    /// Seeds the order the pairs are drawn in.
    pub seed: u64,
    pub embedding_type: EmbeddingType,
    pub activations: Activations,
}

/// How a tuning step gets the activations its backward pass needs (docs/MODEL.md §23).
///
/// The one definition of this choice: `seggpt tune --activations` parses it (`clap::ValueEnum`,
/// feature `cli`), as `"keep"` or `"recompute"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Activations {
    /// One forward pass under autodiff keeps every block's activations for the backward pass:
    /// the fastest step, and the most memory (about 11.6 GB per training pair for the released
    /// model in f32).
    Keep,
    /// The forward pass keeps only each block's input, and the backward pass runs each block
    /// again, one at a time: about one forward pass more, and one block's activations instead of
    /// all of them (the default: the step of the released model then fits a few gigabytes).
    #[default]
    Recompute,
}

impl Activations {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [Activations; 2] = [Activations::Keep, Activations::Recompute];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activations::Keep => "keep",
            Activations::Recompute => "recompute",
        }
    }
}

/// Why a tuning step failed.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("reading the gradients back from the device failed: {0}")]
    Readback(String),
    #[error("the loss became {0} (not finite); lower --lr, or check the training pairs")]
    NonFinite(f32),
    #[error("tuning needs at least one training pair")]
    NoPairs,
}

/// The loss of one batch and its gradients with respect to both prompt tensors.
#[derive(Debug, Clone)]
pub struct PromptGradients {
    pub loss: f32,
    /// `(3, H/2, W)` values, like the prompt's.
    pub pixel_values: Vec<f32>,
    pub masks: Vec<f32>,
}

/// A batch's loss and its gradients with respect to both prompt tensors, still on the device.
/// Native code reads them back with [`Self::read`]; the browser, where a blocking read-back
/// panics, with [`Self::read_async`]. Both then share [`Self::values`].
pub struct PendingGradients {
    loss: Tensor<1>,
    pixel_values: Tensor<4>,
    masks: Tensor<4>,
}

impl PendingGradients {
    /// Blocks until the device is done.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(self) -> Result<PromptGradients, TuneError> {
        Self::values(self.loss.into_data(), self.pixel_values.into_data(), self.masks.into_data())
    }

    /// Waits for the device without blocking (the only read-back WebGPU in a browser allows).
    pub async fn read_async(self) -> Result<PromptGradients, TuneError> {
        let read = |e: burn::tensor::ExecutionError| TuneError::Readback(format!("{e:?}"));
        let loss = self.loss.into_data_async().await.map_err(read)?;
        let pixel_values = self.pixel_values.into_data_async().await.map_err(read)?;
        let masks = self.masks.into_data_async().await.map_err(read)?;
        Self::values(loss, pixel_values, masks)
    }

    /// The values as `f32`, whatever float type the device computes in.
    fn values(
        loss: TensorData,
        pixel_values: TensorData,
        masks: TensorData,
    ) -> Result<PromptGradients, TuneError> {
        let vec =
            |d: TensorData| d.try_into_vec_as::<f32>().map_err(|e| TuneError::Readback(format!("{e:?}")));
        let loss = vec(loss)?[0];
        Ok(PromptGradients { loss, pixel_values: vec(pixel_values)?, masks: vec(masks)? })
    }
}

/// The loss of `batch` under `prompt` and its gradients, computed but not read back, with the
/// activations kept or recomputed. The model must live on `device` without autodiff; only the two
/// prompt tensors are tracked.
pub fn backward(
    model: &SegGpt,
    device: &Device,
    prompt: &TunedPrompt,
    batch: &[&TrainingPair],
    embedding_type: EmbeddingType,
    activations: Activations,
) -> Result<PendingGradients, TuneError> {
    match activations {
        Activations::Keep => backward_keeping(model, device, prompt, batch, embedding_type),
        Activations::Recompute => recompute::backward(model, device, prompt, batch, embedding_type),
    }
}

/// [`backward`] with one forward pass under autodiff, which keeps every activation.
fn backward_keeping(
    model: &SegGpt,
    device: &Device,
    prompt: &TunedPrompt,
    batch: &[&TrainingPair],
    embedding_type: EmbeddingType,
) -> Result<PendingGradients, TuneError> {
    let (pixel_values, masks) = prompt_tensors(prompt, device);
    let (pixel_values, masks) = (leaf(pixel_values), leaf(masks));
    let loss = batch_loss(model, device, pixel_values.clone(), masks.clone(), batch, embedding_type)?;
    let grads = loss.backward();
    Ok(PendingGradients {
        pixel_values: pixel_values.grad(&grads).ok_or_else(no_gradient)?,
        masks: masks.grad(&grads).ok_or_else(no_gradient)?,
        loss: loss.inner(),
    })
}

/// `t` as a leaf of a new autodiff graph whose gradient is kept. Balanced checkpointing
/// recomputes memory-bound intermediates (the softmax's exp and division, the additions of the
/// relative-position terms, GELU) in the backward pass instead of keeping them: without it one
/// step of the released model held over 17 GB on the CPU (docs/MODEL.md §16).
fn leaf<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.inner()
        .autodiff()
        .with_gradient_checkpointing_strategy(GradientCheckpointingStrategy::Balanced)
        .require_grad()
}

fn no_gradient() -> TuneError {
    TuneError::Readback("the backward pass gave no gradient".into())
}

/// The loss of `batch` under `prompt` and its gradients (native: blocking read-back).
#[cfg(not(target_arch = "wasm32"))]
pub fn prompt_gradients(
    model: &SegGpt,
    device: &Device,
    prompt: &TunedPrompt,
    batch: &[&TrainingPair],
    embedding_type: EmbeddingType,
    activations: Activations,
) -> Result<PromptGradients, TuneError> {
    backward(model, device, prompt, batch, embedding_type, activations)?.read()
}

/// The mean loss over `pairs` under `prompt`, without gradients, `chunk` pairs per forward pass.
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(
    model: &SegGpt,
    device: &Device,
    prompt: &TunedPrompt,
    pairs: &[TrainingPair],
    chunk: usize,
    embedding_type: EmbeddingType,
) -> Result<f32, TuneError> {
    if pairs.is_empty() {
        return Err(TuneError::NoPairs);
    }
    let mut total = 0.0f64;
    for part in pairs.chunks(chunk.max(1)) {
        let (pixel_values, masks) = prompt_tensors(prompt, device);
        let batch: Vec<&TrainingPair> = part.iter().collect();
        let loss = batch_loss(model, device, pixel_values, masks, &batch, embedding_type)?;
        // Every pair has the same number of elements, so the mean over all pairs is the mean
        // of the per-chunk means weighted by their pair counts.
        total += f64::from(read_scalar(loss)?) * part.len() as f64;
    }
    Ok((total / pairs.len() as f64) as f32)
}

#[cfg(not(target_arch = "wasm32"))]
fn read_scalar(t: Tensor<1>) -> Result<f32, TuneError> {
    let values = t.into_data().try_into_vec::<f32>().map_err(|e| TuneError::Readback(format!("{e:?}")))?;
    Ok(values[0])
}

/// A tuning run's state: the learned prompt and the optimiser.
#[derive(Debug, Clone)]
pub struct Tuner {
    /// `(channels, height, width)` of each prompt tensor.
    shape: [usize; 3],
    pixel_values: Vec<f32>,
    masks: Vec<f32>,
    optimiser: AdamW,
    settings: TuneSettings,
}

impl Tuner {
    /// A fresh run from `init`.
    pub fn new(init: &TunedPrompt, settings: TuneSettings) -> Self {
        let n = init.pixel_values.as_slice().len();
        let optimiser = AdamW::new(settings.lr, settings.weight_decay, &[n, n]);
        Self::resume(init, optimiser, settings)
    }

    /// A run continued from a saved prompt and optimiser state.
    pub fn resume(prompt: &TunedPrompt, mut optimiser: AdamW, settings: TuneSettings) -> Self {
        let p = &prompt.pixel_values;
        optimiser.lr = settings.lr;
        optimiser.weight_decay = settings.weight_decay;
        Self {
            shape: [p.channels(), p.height(), p.width()],
            pixel_values: p.as_slice().to_vec(),
            masks: prompt.masks.as_slice().to_vec(),
            optimiser,
            settings,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.optimiser.steps
    }

    pub fn optimiser(&self) -> &AdamW {
        &self.optimiser
    }

    pub fn prompt(&self) -> TunedPrompt {
        let [c, h, w] = self.shape;
        let image =
            |v: &[f32]| ChwImage::new(c, h, w, v.to_vec()).expect("the shape the prompt started with");
        TunedPrompt { pixel_values: image(&self.pixel_values), masks: image(&self.masks) }
    }

    /// The forward and backward pass of the next step on the batch drawn for it, with the
    /// activations kept or recomputed as the settings say; its gradients go to [`Self::apply`]
    /// once read back.
    pub fn backward(
        &self,
        model: &SegGpt,
        device: &Device,
        pairs: &[TrainingPair],
    ) -> Result<PendingGradients, TuneError> {
        if pairs.is_empty() {
            return Err(TuneError::NoPairs);
        }
        let batch = self.settings.batch.clamp(1, pairs.len());
        let indices = batch_indices(pairs.len(), batch, self.settings.seed, self.optimiser.steps);
        let batch: Vec<&TrainingPair> = indices.iter().map(|&i| &pairs[i]).collect();
        let settings = &self.settings;
        backward(model, device, &self.prompt(), &batch, settings.embedding_type, settings.activations)
    }

    /// The AdamW update from a step's gradients; returns the batch's loss before it.
    pub fn apply(&mut self, grads: PromptGradients) -> Result<f32, TuneError> {
        if !grads.loss.is_finite() {
            return Err(TuneError::NonFinite(grads.loss));
        }
        self.optimiser
            .update(&mut [&mut self.pixel_values, &mut self.masks], &[&grads.pixel_values, &grads.masks]);
        Ok(grads.loss)
    }

    /// One AdamW step on the batch drawn for this step (native: blocking read-back); returns
    /// the batch's loss before it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(
        &mut self,
        model: &SegGpt,
        device: &Device,
        pairs: &[TrainingPair],
    ) -> Result<f32, TuneError> {
        let grads = self.backward(model, device, pairs)?.read()?;
        self.apply(grads)
    }

    /// [`Self::step`] with a read-back that does not block (the browser's).
    pub async fn step_async(
        &mut self,
        model: &SegGpt,
        device: &Device,
        pairs: &[TrainingPair],
    ) -> Result<f32, TuneError> {
        let grads = self.backward(model, device, pairs)?.read_async().await?;
        self.apply(grads)
    }
}
