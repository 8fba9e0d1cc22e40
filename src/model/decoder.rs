//! The decoder (docs/MODEL.md §7): features -> per-patch pixels -> conv3x3 -> LayerNorm2D -> GELU
//! -> conv1x1 to ImageNet-normalised RGB.

use burn::tensor::{Device, Tensor, module::conv2d, ops::ConvOptions};

use crate::config::SegGptConfig;
use crate::model::budget::MemoryBudget;
use crate::model::load::{Loader, Store};
use crate::model::nn::{ColumnChunkedLinear, LayerNorm, Linear, gelu};
use crate::weights::LoadError;

/// `(in, out)` features of `decoder_embed`: the concatenated intermediate features to one
/// patch of decoder channels.
pub fn decoder_embed_size(config: &SegGptConfig) -> (usize, usize) {
    let features = config.intermediate_hidden_state_indices.len();
    (config.hidden_size * features, config.patch_size * config.patch_size * config.decoder_hidden_size)
}

pub struct Decoder<S: Store = Device> {
    decoder_embed: ColumnChunkedLinear<S>,
    conv_weight: S::Tensor<4>,
    conv_bias: S::Tensor<1>,
    layernorm: LayerNorm<S>,
    /// The 1x1 head conv as a linear layer over channels.
    head: Linear<S>,
    patch_size: usize,
    channels: usize,
}

impl<S: Store> Decoder<S> {
    /// `budget` sizes the pieces `decoder_embed`'s weight is uploaded in.
    pub fn load(
        loader: &mut Loader<S>,
        config: &SegGptConfig,
        budget: MemoryBudget,
    ) -> Result<Self, LoadError> {
        let p = config.patch_size;
        let c = config.decoder_hidden_size;
        let (d_in, d_out) = decoder_embed_size(config);
        let decoder_embed = ColumnChunkedLinear::load(loader, "decoder.decoder_embed", d_in, d_out, budget)?;
        let conv_weight = loader.tensor("decoder.decoder_pred.conv.weight", [c, c, 3, 3])?;
        let conv_bias = loader.tensor("decoder.decoder_pred.conv.bias", [c])?;
        let layernorm = LayerNorm::load(loader, "decoder.decoder_pred.layernorm", c, config.layer_norm_eps)?;
        let head_w = loader.tensor_as("decoder.decoder_pred.head.weight", &[3, c, 1, 1], [3, c], |w| w)?;
        let head_b = loader.tensor("decoder.decoder_pred.head.bias", [3])?;
        Ok(Self {
            decoder_embed,
            conv_weight,
            conv_bias,
            layernorm,
            head: Linear::from_parts(head_w, Some(head_b)),
            patch_size: p,
            channels: c,
        })
    }
}

impl Decoder {
    /// `features`: the F intermediate features, each `(K, Hp, Wp, D)` -> `(K, 3, H, W)`. Samples
    /// are decoded one at a time, their features concatenated on channels only then, to bound the
    /// size of the full-resolution intermediates (98 MiB each for the released model) and of the
    /// decoder's input (24.5 MiB per sample) whatever K (docs/MODEL.md §17).
    pub fn forward(&self, features: &[Tensor<4>]) -> Tensor<4> {
        self.forward_rows(features, Rows::Canvas)
    }

    /// [`Self::forward`]'s query half alone, `(K, 3, H/2, W)`: the rows every answer keeps (the
    /// prompt half of a prediction is discarded by both reference implementations too). The same
    /// values as the lower half of [`Self::forward`], for about half the decoder's work.
    pub fn forward_query(&self, features: &[Tensor<4>]) -> Tensor<4> {
        self.forward_rows(features, Rows::QueryHalf)
    }

    fn forward_rows(&self, features: &[Tensor<4>], rows: Rows) -> Tensor<4> {
        let k = features.first().map_or(0, |f| f.dims()[0]);
        let sample = |i: usize| Tensor::cat(features.iter().map(|f| f.clone().narrow(0, i, 1)).collect(), 3);
        let mut outs: Vec<_> = (0..k).map(|i| self.forward_one(sample(i), rows)).collect();
        if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(outs, 0) }
    }

    fn forward_one(&self, features: Tensor<4>, rows: Rows) -> Tensor<4> {
        let [b, hp, wp, _] = features.dims();
        let (p, c) = (self.patch_size, self.channels);
        // The query half's top pixel row takes the 3x3 conv's input from the row above it, the last
        // pixel row of token row hp/2 - 1: so that token row is decoded too, and its pixels are
        // dropped after the conv (whose zero padding touched only them).
        let first = rows.first_token_row(hp);
        let token_rows = hp - first;
        let features = if first == 0 { features } else { features.narrow(1, first, token_rows) };
        // Output index (py*p + px)*c + ch goes to pixel (hy*p + py, wx*p + px), channel ch.
        let z = self
            .decoder_embed
            .forward(features)
            .reshape([b, token_rows, wp, p, p, c])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([b, c, token_rows * p, wp * p]);
        let z = conv2d(
            z,
            self.conv_weight.clone(),
            Some(self.conv_bias.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let z = if first == 0 { z } else { z.narrow(2, p, (token_rows - 1) * p) };
        // LayerNorm2D over channels == LayerNorm on the channel-last view.
        let z = gelu(self.layernorm.forward(z.permute([0, 2, 3, 1])));
        self.head.forward(z).permute([0, 3, 1, 2])
    }
}

/// Which rows of the canvas the decoder paints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// All of it: `pred_masks` as the reference implementations return it.
    Canvas,
    /// The query (lower) half, which is every answer's mask.
    QueryHalf,
}

impl Rows {
    /// The first token row decoded, of `hp`: for the query half, the one above it (the conv's halo).
    pub fn first_token_row(self, hp: usize) -> usize {
        match self {
            Rows::Canvas => 0,
            Rows::QueryHalf => hp / 2 - 1,
        }
    }
}
