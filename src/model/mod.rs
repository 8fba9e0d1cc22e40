//! SegGPT (docs/MODEL.md §1.1, §4-§7): one file per component, and [`SegGpt`], the façade that loads them
//! and runs the forward pass. The model knows nothing of files, pixels or the DOM: it maps
//! normalised `(K, 3, H/2, W)` tensors to `pred_masks` `(K, 3, H, W)`.

// Without the `burn` feature (the page's wasm) only the user's choices.
#[cfg(feature = "burn")]
pub(crate) mod attention;
#[cfg(feature = "burn")]
mod budget;
mod choices;
#[cfg(feature = "burn")]
mod cost;
#[cfg(feature = "burn")]
mod decoder;
#[cfg(feature = "burn")]
mod embeddings;
#[cfg(feature = "burn")]
mod encoder;
#[cfg(feature = "burn")]
mod fused_attention;
#[cfg(feature = "burn")]
pub(crate) mod layer;
#[cfg(feature = "burn")]
pub(crate) mod load;
#[cfg(feature = "burn")]
pub(crate) mod nn;

#[cfg(feature = "burn")]
use burn::tensor::{Device, Tensor};

#[cfg(feature = "burn")]
pub use budget::{MemoryBudget, Split, SplitPlan, largest_buffer_bytes, max_prompts};
pub use choices::{AttentionKernel, EmbeddingType, Ensemble};
#[cfg(feature = "burn")]
pub use cost::{Stage, block_flops, query_decoder_flops, stage_flops};

#[cfg(feature = "burn")]
use crate::config::SegGptConfig;
#[cfg(feature = "burn")]
use crate::weights::{LoadError, TensorSource};
#[cfg(feature = "burn")]
use decoder::Decoder;
#[cfg(feature = "burn")]
use embeddings::Embeddings;
#[cfg(feature = "burn")]
use encoder::Encoder;
#[cfg(feature = "burn")]
use load::{Loader, Store};

/// Options of one forward pass.
#[cfg(feature = "burn")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardOptions {
    /// `None`: the official schedule (which is no ensemble for one prompt).
    pub ensemble: Option<Ensemble>,
    pub embedding_type: EmbeddingType,
    /// The largest piece the attention scores and the encoder blocks' activations are split into.
    pub budget: MemoryBudget,
    /// The fused attention kernel or the reference path (docs/MODEL.md §21).
    pub attention: AttentionKernel,
}

/// `(name, shape)` of every checkpoint tensor (HF names) that [`SegGpt::load`] reads under
/// `config`, in the order it reads them. Found by running the loading code itself without a
/// checkpoint (nothing is read or allocated), so a header checked against this list is exactly
/// what loading accepts.
#[cfg(feature = "burn")]
pub fn parameter_shapes(config: &SegGptConfig) -> Result<Vec<(String, Vec<usize>)>, LoadError> {
    config.validate()?;
    requested_parameters(config)
}

/// [`parameter_shapes`] without validating `config` first: for [`SegGptConfig::validate`] itself,
/// which counts the parameters once the sizes are known to be bounded.
#[cfg(feature = "burn")]
pub(crate) fn requested_parameters(config: &SegGptConfig) -> Result<Vec<(String, Vec<usize>)>, LoadError> {
    let mut loader = Loader::dry_run();
    // The budget only decides how loaded weights are split, not which are read.
    load_components(&mut loader, config, MemoryBudget::DEFAULT)?;
    loader.finish()
}

/// The three parts of the model, as one loading pass leaves them in a store `S`.
#[cfg(feature = "burn")]
struct Components<S: Store> {
    embeddings: Embeddings<S>,
    encoder: Encoder<S>,
    decoder: Decoder<S>,
}

#[cfg(feature = "burn")]
fn load_components<S: Store>(
    loader: &mut Loader<S>,
    config: &SegGptConfig,
    budget: MemoryBudget,
) -> Result<Components<S>, LoadError> {
    let embeddings = Embeddings::load(loader, config)?;
    let encoder = Encoder::load(loader, config)?;
    let decoder = Decoder::load(loader, config, budget)?;
    Ok(Components { embeddings, encoder, decoder })
}

/// Which samples of the batch a forward pass decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// All K (the `pred_masks` of `transformers`).
    All,
    /// Sample 0 only.
    First,
}

/// Inputs whose shapes do not fit the model.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

#[cfg(feature = "burn")]
pub struct SegGpt {
    config: SegGptConfig,
    embeddings: Embeddings,
    encoder: Encoder,
    decoder: Decoder,
}

#[cfg(feature = "burn")]
impl SegGpt {
    /// Loads every tensor the config needs from `source` onto `device`; fails on a missing,
    /// unexpected or wrongly shaped tensor. `budget` sizes the pieces of the weights too large
    /// for one device buffer (`decoder_embed`); use the budget the forward passes will use.
    pub fn load(
        source: &dyn TensorSource,
        config: SegGptConfig,
        device: &Device,
        budget: MemoryBudget,
    ) -> Result<Self, LoadError> {
        config.validate()?;
        let mut loader = Loader::new(source, device);
        let Components { embeddings, encoder, decoder } = load_components(&mut loader, &config, budget)?;
        loader.finish()?;
        Ok(Self { config, embeddings, encoder, decoder })
    }

    pub fn config(&self) -> &SegGptConfig {
        &self.config
    }

    /// The forward pass of transformers' `SegGptForImageSegmentation` (inference, default
    /// `bool_masked_pos`). All inputs are `(K, 3, H/2, W)`; the result is `pred_masks`
    /// `(K, 3, H, W)`, the prompt half on top. `progress(done, total)` is called after each block.
    pub fn forward(
        &self,
        pixel_values: Tensor<4>,
        prompt_pixel_values: Tensor<4>,
        prompt_masks: Tensor<4>,
        options: ForwardOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<4>, ShapeError> {
        let inputs = [pixel_values, prompt_pixel_values, prompt_masks];
        self.forward_stages(inputs, options, Samples::All, progress, &mut |_| {})
    }

    /// [`Self::forward`]'s sample 0 alone, `(1, 3, H, W)`: what the official and `transformers`
    /// ensembles return (docs/MODEL.md §6, §17). The encoder still runs all K prompts (the merges
    /// need them), but only sample 0's features are kept and decoded, so the decoder's work and the
    /// features' memory do not grow with K.
    pub fn forward_first(
        &self,
        pixel_values: Tensor<4>,
        prompt_pixel_values: Tensor<4>,
        prompt_masks: Tensor<4>,
        options: ForwardOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<4>, ShapeError> {
        let inputs = [pixel_values, prompt_pixel_values, prompt_masks];
        self.forward_stages(inputs, options, Samples::First, progress, &mut |_| {})
    }

    /// The query half `(1, 3, H/2, W)` of the one prediction that the K prompts give together:
    /// sample 0 for the official and `transformers` ensembles, as the reference code returns it
    /// (docs/MODEL.md §6, §8.1), decoded alone; for independent predictions (`none`) the mean of
    /// the K, so that every prompt counts. Only the query half is decoded ([`Self::decode_query`]):
    /// it is the lower half of [`Self::forward_first`]'s (or the mean of [`Self::forward`]'s).
    /// Images and video frames both take this answer.
    pub fn answer(
        &self,
        pixel_values: Tensor<4>,
        prompt_pixel_values: Tensor<4>,
        prompt_masks: Tensor<4>,
        options: ForwardOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<4>, ShapeError> {
        let k = pixel_values.dims()[0];
        let samples = match options.ensemble.unwrap_or(Ensemble::Official) {
            Ensemble::None if k > 1 => Samples::All,
            _ => Samples::First,
        };
        let tokens = self.embed([pixel_values, prompt_pixel_values, prompt_masks], options)?;
        let query = self.decode_query(&self.encode(tokens, options, samples, progress));
        Ok(match samples {
            Samples::All => query.mean_dim(0),
            Samples::First => query,
        })
    }

    /// The forward pass decoding `samples`, with `stage_done` called after each [`Stage`] has been
    /// queued (a profiler waits for the device there, see `seggpt bench --profile`).
    /// `[pixel_values, prompt_pixel_values, prompt_masks]` as for [`Self::forward`].
    pub fn forward_stages(
        &self,
        inputs: [Tensor<4>; 3],
        options: ForwardOptions,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
        stage_done: &mut dyn FnMut(Stage),
    ) -> Result<Tensor<4>, ShapeError> {
        let h = self.embed(inputs, options)?;
        stage_done(Stage::Embeddings);
        let features = self.encode(h, options, samples, progress);
        stage_done(Stage::Blocks);
        let pred = self.decode(&features);
        stage_done(Stage::Decoder);
        Ok(pred)
    }

    /// [`Stage::Embeddings`]: checks the inputs' shapes, then the tokens `(2K, Hp, Wp, D)`. With
    /// [`Self::encode`] and [`Self::decode`], the forward pass one stage at a time, for a caller that
    /// waits for the device between stages without blocking (the browser's benchmark).
    pub fn embed(
        &self,
        [pixel_values, prompt_pixel_values, prompt_masks]: [Tensor<4>; 3],
        options: ForwardOptions,
    ) -> Result<Tensor<4>, ShapeError> {
        let (h, w) = self.config.half_image_size();
        let expected = [pixel_values.dims()[0], self.config.num_channels, h, w];
        for (name, t) in [
            ("pixel_values", &pixel_values),
            ("prompt_pixel_values", &prompt_pixel_values),
            ("prompt_masks", &prompt_masks),
        ] {
            if t.dims() != expected || expected[0] == 0 {
                return Err(ShapeError(format!(
                    "{name} has shape {:?}; this model takes (K, 3, {h}, {w}) with the same K >= 1 for all inputs",
                    t.dims()
                )));
            }
        }
        let ensemble = options.ensemble.unwrap_or(Ensemble::Official);
        if ensemble.model_prompts(expected[0]) != expected[0] {
            return Err(ShapeError(format!(
                "the spatial ensemble tiles the prompts into one before the model (docs/MODEL.md §14), so \
                 the model takes K = 1 with it, not K = {}; compose them first (`segment` does)",
                expected[0]
            )));
        }
        Ok(self.embeddings.forward(pixel_values, prompt_pixel_values, prompt_masks, options.embedding_type))
    }

    /// [`Stage::Blocks`]: the features of the tokens [`Self::embed`] made, for the decoded `samples`.
    pub fn encode(
        &self,
        tokens: Tensor<4>,
        options: ForwardOptions,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Vec<Tensor<4>> {
        let ensemble = options.ensemble.unwrap_or(Ensemble::Official);
        self.encoder.forward(tokens, ensemble, options.budget, options.attention, samples, progress)
    }

    /// [`Stage::Decoder`]: `pred_masks` of the features [`Self::encode`] made.
    pub fn decode(&self, features: &[Tensor<4>]) -> Tensor<4> {
        self.decoder.forward(features)
    }

    /// The query (lower) half of [`Self::decode`], `(K, 3, H/2, W)`, for about half the decoder's
    /// work ([`query_decoder_flops`]): what an answer keeps.
    pub fn decode_query(&self, features: &[Tensor<4>]) -> Tensor<4> {
        self.decoder.forward_query(features)
    }

    /// Block `index` of [`Self::encode`] alone, with the stream merge after block `merge_index`
    /// (docs/MODEL.md §5.4), for a caller that runs the blocks one at a time: tuning with
    /// activations recomputed block by block (docs/MODEL.md §23).
    pub fn encode_block(&self, index: usize, h: Tensor<4>, options: ForwardOptions) -> Tensor<4> {
        let ensemble = options.ensemble.unwrap_or(Ensemble::Official);
        self.encoder.block(index, h, ensemble, options.budget, options.attention)
    }

    /// The decoder's feature made from the output `h` of block `index` (through the shared final
    /// norm), or `None` when the decoder does not read that block. With [`Self::encode_block`],
    /// the features [`Self::encode`] returns for [`Samples::All`], in block order.
    pub fn block_feature(&self, index: usize, h: &Tensor<4>) -> Option<Tensor<4>> {
        self.encoder.is_feature(index).then(|| self.encoder.feature_norm(h.clone()))
    }
}
