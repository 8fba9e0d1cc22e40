//! Segment Anything (SAM, transformers' `SamModel`), the model behind click to select (docs/MODEL.md
//! §25): an image embedding computed once per image, then per prompt (points, a box) a few tokens
//! and a small decoder. Like [`crate::SegGpt`] it knows nothing of files or pixels: it maps the
//! normalised, padded `(1, 3, S, S)` input and a prompt in model-input pixels to low-resolution
//! mask logits and IoU scores; `crate::pipeline::sam` does the pixels on both sides.
//!
//! Its ViT blocks are SegGPT's building blocks (`crate::model::{attention, layer, nn}`): one
//! attention with an optional window, one MLP, one LayerNorm.

mod config;
mod decoder;
mod prompt;
mod vision;

pub use config::{MaskDecoderConfig, PromptEncoderConfig, SamConfig, VisionConfig};
pub use prompt::{Point, PointLabel, Prompt};

use burn::tensor::{Device, Tensor};

use crate::model::load::{Loader, Store};
use crate::model::{AttentionKernel, MemoryBudget};
use crate::weights::{LoadError, TensorSource};
use decoder::{MaskDecoder, upload};
use prompt::PromptEncoder;
use vision::VisionEncoder;

struct Parts<S: Store> {
    vision: VisionEncoder<S>,
    prompt: PromptEncoder,
    decoder: MaskDecoder<S>,
}

fn load_parts<S: Store>(loader: &mut Loader<S>, config: &SamConfig) -> Result<Parts<S>, LoadError> {
    Ok(Parts {
        vision: VisionEncoder::load(loader, config)?,
        prompt: PromptEncoder::load(loader, config)?,
        decoder: MaskDecoder::load(loader, config)?,
    })
}

/// Every `(name, shape)` a SAM checkpoint of `config` holds (the tied copy of the positional
/// matrix, which some checkpoints also hold, aside).
pub fn parameter_shapes(config: &SamConfig) -> Result<Vec<(String, Vec<usize>)>, LoadError> {
    let mut loader = Loader::dry_run();
    load_parts(&mut loader, config)?;
    loader.finish()
}

/// The image embedding of one image, computed once and reused for every prompt on it.
#[derive(Clone)]
pub struct ImageEmbedding(Tensor<4>);

impl ImageEmbedding {
    /// `(1, C, g, g)`.
    pub fn tensor(&self) -> &Tensor<4> {
        &self.0
    }
}

/// The decoder's answer to one prompt.
pub struct MaskLogits {
    /// `(1, M, 4g, 4g)`: the low-resolution logits (positive inside), in model-input space.
    pub low_res: Tensor<4>,
    /// `(1, M)`: the predicted IoU of each mask.
    pub iou_scores: Tensor<2>,
}

pub struct Sam {
    config: SamConfig,
    vision: VisionEncoder,
    prompt: PromptEncoder,
    decoder: MaskDecoder,
    /// `(1, C, g, g)`, the positional embedding of the image embedding's cells.
    image_pe: Tensor<4>,
    /// `(1, C, 1, 1)`, added to the image embedding when no mask is given.
    no_mask: Tensor<4>,
    device: Device,
}

impl Sam {
    /// Loads a checkpoint after checking its tensor names and shapes against `config` from the
    /// header alone; every tensor read is checked for non-finite values.
    pub fn load(source: &dyn TensorSource, config: SamConfig, device: &Device) -> Result<Self, LoadError> {
        check_layout(source, &config)?;
        let mut loader = Loader::new(source, device);
        let Parts { vision, prompt, decoder } = load_parts(&mut loader, &config)?;
        loader.finish()?;
        let (c, g) = (config.prompt_encoder_config.hidden_size, config.embedding_grid());
        let image_pe = upload(prompt.image_positional(g), [1, c, g, g], device);
        let no_mask = upload(prompt.no_mask.clone(), [1, c, 1, 1], device);
        Ok(Self { config, vision, prompt, decoder, image_pe, no_mask, device: device.clone() })
    }

    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `pixels` `(1, 3, S, S)`: the image resized, normalised and padded to the model's side.
    pub fn embed_image(&self, pixels: Tensor<4>) -> ImageEmbedding {
        ImageEmbedding(self.vision.forward(pixels, MemoryBudget::DEFAULT, AttentionKernel::Reference))
    }

    /// The masks for `prompt` on an embedded image: the three candidates with `multimask`, else one.
    pub fn predict(&self, embedding: &ImageEmbedding, prompt: &Prompt, multimask: bool) -> MaskLogits {
        let (sparse, n) = self.prompt.sparse(prompt);
        let c = self.config.prompt_encoder_config.hidden_size;
        let sparse = upload(sparse, [1, n, c], &self.device);
        let (low_res, iou_scores) = self.decoder.forward(
            embedding.0.clone(),
            self.image_pe.clone(),
            sparse,
            self.no_mask.clone(),
            multimask,
        );
        MaskLogits { low_res, iou_scores }
    }
}

/// The checkpoint's names and shapes against what `config` needs, before any tensor is read.
fn check_layout(source: &dyn TensorSource, config: &SamConfig) -> Result<(), LoadError> {
    check_names(source.names(), |name| source.shape(name), config)
}

/// A checkpoint's tensor `names` and shapes (from a header alone, as the page checks a download
/// before it is stored) against what `config` needs: every tensor present with its shape, nothing else.
pub fn check_names(
    mut names: Vec<String>,
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
    config: &SamConfig,
) -> Result<(), LoadError> {
    let expected = parameter_shapes(config)?;
    names.retain(|n| n != prompt::TIED_POSITIONAL);
    crate::weights::compare_layout(names, shape_of, &expected)
}
