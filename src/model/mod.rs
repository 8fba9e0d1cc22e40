//! SegGPT (docs/MODEL.md §1.1, §4-§7): one file per component, and [`SegGpt`], the façade that loads them
//! and runs the forward pass. The model knows nothing of files, pixels or the DOM: it maps
//! normalised `(K, 3, H/2, W)` tensors to `pred_masks` `(K, 3, H, W)`.

mod attention;
mod decoder;
mod embeddings;
mod encoder;
mod layer;
mod nn;

use burn::tensor::{Device, Tensor};

pub use embeddings::EmbeddingType;
pub use encoder::Ensemble;

use crate::config::SegGptConfig;
use crate::weights::{LoadError, Loader, TensorSource};
use decoder::Decoder;
use embeddings::Embeddings;
use encoder::Encoder;

/// Options of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardOptions {
    /// `None`: the official schedule (which is no ensemble for one prompt).
    pub ensemble: Option<Ensemble>,
    pub embedding_type: EmbeddingType,
    /// Largest activation (bytes) an encoder block computes in one piece; the batch is split by
    /// samples to stay below it. `None`: [`DEFAULT_CHUNK_BYTES`].
    pub chunk_bytes: Option<usize>,
}

/// Default for [`ForwardOptions::chunk_bytes`]: half of WebGPU's default 128 MiB binding limit.
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;

/// The largest single tensor (bytes, f32) a forward pass with `k` prompts allocates, with the
/// default chunking: what the device's `maxStorageBufferBindingSize` must hold.
pub fn largest_buffer_bytes(config: &SegGptConfig, k: usize) -> u64 {
    let (hp, wp) = config.patch_grid();
    let n = (hp * wp) as u64;
    let (k, d) = (k.max(1) as u64, config.hidden_size as u64);
    let features = config.intermediate_hidden_state_indices.len() as u64;
    let per_sample_block = n * (3 * d).max(config.mlp_dim() as u64) * 4;
    let chunked = DEFAULT_CHUNK_BYTES as u64;
    let (h, w) = config.image_size.hw();
    [
        (config.decoder_hidden_size * h * w * 4) as u64, // one sample's full-resolution decoder map
        2 * k * n * d * 4,                               // the hidden states of both streams
        k * n * features * d * 4,                        // the concatenated features the decoder reads
        per_sample_block.max(chunked),                   // one block piece (at least one sample)
        chunked,                                         // attention score groups and decoder_embed pieces
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// How many prompts fit a device whose largest storage binding is `limit` bytes.
pub fn max_prompts(config: &SegGptConfig, limit: u64) -> usize {
    (1..=64).take_while(|&k| largest_buffer_bytes(config, k) <= limit).last().unwrap_or(0)
}

/// Inputs whose shapes do not fit the model.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

pub struct SegGpt {
    config: SegGptConfig,
    embeddings: Embeddings,
    encoder: Encoder,
    decoder: Decoder,
}

impl SegGpt {
    /// Loads every tensor the config needs from `source` onto `device`; fails on a missing,
    /// unexpected or wrongly shaped tensor.
    pub fn load(source: &dyn TensorSource, config: SegGptConfig, device: &Device) -> Result<Self, LoadError> {
        config.validate()?;
        let mut loader = Loader::new(source, device);
        let embeddings = Embeddings::load(&mut loader, &config)?;
        let encoder = Encoder::load(&mut loader, &config)?;
        let decoder = Decoder::load(&mut loader, &config)?;
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
        let h =
            self.embeddings.forward(pixel_values, prompt_pixel_values, prompt_masks, options.embedding_type);
        let chunk = options.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES);
        let features = self.encoder.forward(h, ensemble, chunk, progress);
        Ok(self.decoder.forward(features))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn released_model_buffers_per_prompt_count() {
        let config = SegGptConfig::default();
        // 1568 tokens: features (K, N, 4 * 1024) f32 = 24.5 MiB per prompt, hidden states of both
        // streams 12.25 MiB per prompt; one block piece (N x 4096 f32) = 24.5 MiB < 64 MiB.
        // One decoder map (64 x 896 x 448 f32) is 98 MiB.
        assert_eq!(largest_buffer_bytes(&config, 1), 64 * 896 * 448 * 4);
        assert_eq!(largest_buffer_bytes(&config, 5), 5 * 1568 * 4096 * 4);
        // WebGPU's default 128 MiB binding: 5 prompts; a 1 GiB binding: 41 (the K-dependent
        // terms grow by 24.5 MiB each).
        assert_eq!(max_prompts(&config, 128 * MIB), 5);
        assert_eq!(max_prompts(&config, 1024 * MIB), 41);
        // Below the decoder map nothing fits.
        assert_eq!(max_prompts(&config, 97 * MIB), 0);
    }
}
