//! SAM's image encoder (docs/MODEL.md §25.1): patch embedding, absolute position embedding, ViT
//! blocks (windowed, and global at `global_attn_indexes`) and the neck that narrows the features to
//! the image embedding. The blocks are SegGPT's building blocks: the same attention (with a
//! window), LayerNorm and MLP.

use burn::tensor::{Device, Tensor, module::conv2d, ops::ConvOptions};

use super::config::SamConfig;
use crate::model::attention::{Attention, AttentionShape};
use crate::model::layer::{Activation, Mlp};
use crate::model::load::{Loader, Store};
use crate::model::nn::{LayerNorm, Linear};
use crate::model::{AttentionKernel, MemoryBudget};
use crate::weights::LoadError;

/// LayerNorm eps of the neck's channel norms (`SamLayerNorm`'s default, not the config's).
const NECK_EPS: f64 = 1e-6;

struct Block<S: Store = Device> {
    layer_norm1: LayerNorm<S>,
    attn: Attention<S>,
    layer_norm2: LayerNorm<S>,
    mlp: Mlp<S>,
}

pub struct VisionEncoder<S: Store = Device> {
    patch_weight: S::Tensor<4>,
    patch_bias: S::Tensor<1>,
    patch_size: usize,
    /// `(1, g, g, D)`, added to the patch grid.
    pos_embed: Option<S::Tensor<4>>,
    blocks: Vec<Block<S>>,
    /// The neck's 1x1 conv, a linear map over channels (no bias).
    neck_conv1: Linear<S>,
    neck_norm1: LayerNorm<S>,
    /// The neck's 3x3 conv `(C, C, 3, 3)`, no bias.
    neck_conv2: S::Tensor<4>,
    neck_norm2: LayerNorm<S>,
}

impl<S: Store> VisionEncoder<S> {
    pub fn load(loader: &mut Loader<S>, config: &SamConfig) -> Result<Self, LoadError> {
        let v = &config.vision_config;
        let (d, p, g, c) = (v.hidden_size, v.patch_size, config.embedding_grid(), v.output_channels);
        let prefix = "vision_encoder";
        let patch_weight = loader.tensor(&format!("{prefix}.patch_embed.projection.weight"), [d, 3, p, p])?;
        let patch_bias = loader.tensor(&format!("{prefix}.patch_embed.projection.bias"), [d])?;
        let pos_embed = if v.use_abs_pos {
            Some(loader.tensor(&format!("{prefix}.pos_embed"), [1, g, g, d])?)
        } else {
            None
        };
        let blocks = (0..v.num_hidden_layers)
            .map(|i| {
                let b = format!("{prefix}.layers.{i}");
                let window = v.window_of(i);
                let grid = window.unwrap_or(g);
                let shape = AttentionShape {
                    hidden: d,
                    heads: v.num_attention_heads,
                    qkv_bias: v.qkv_bias,
                    rel_pos_grid: v.use_rel_pos.then_some((grid, grid)),
                    window,
                };
                Ok(Block {
                    layer_norm1: LayerNorm::load(loader, &format!("{b}.layer_norm1"), d, v.layer_norm_eps)?,
                    attn: Attention::load(loader, &format!("{b}.attn"), shape)?,
                    layer_norm2: LayerNorm::load(loader, &format!("{b}.layer_norm2"), d, v.layer_norm_eps)?,
                    mlp: Mlp::load(loader, &format!("{b}.mlp"), d, v.mlp_dim(), Activation::Gelu)?,
                })
            })
            .collect::<Result<_, LoadError>>()?;
        let neck = format!("{prefix}.neck");
        let conv1 = loader.tensor_as(&format!("{neck}.conv1.weight"), &[c, d, 1, 1], [c, d], |w| w)?;
        Ok(Self {
            patch_weight,
            patch_bias,
            patch_size: p,
            pos_embed,
            blocks,
            neck_conv1: Linear::from_parts(conv1, None),
            neck_norm1: LayerNorm::load(loader, &format!("{neck}.layer_norm1"), c, NECK_EPS)?,
            neck_conv2: loader.tensor(&format!("{neck}.conv2.weight"), [c, c, 3, 3])?,
            neck_norm2: LayerNorm::load(loader, &format!("{neck}.layer_norm2"), c, NECK_EPS)?,
        })
    }
}

impl VisionEncoder {
    /// `pixels` `(1, 3, S, S)`, normalised and padded -> the image embedding `(1, C, g, g)`.
    pub fn forward(&self, pixels: Tensor<4>, budget: MemoryBudget, kernel: AttentionKernel) -> Tensor<4> {
        let p = self.patch_size;
        let patches = conv2d(
            pixels,
            self.patch_weight.clone(),
            Some(self.patch_bias.clone()),
            ConvOptions::new([p, p], [0, 0], [1, 1], 1),
        );
        let mut h = patches.permute([0, 2, 3, 1]);
        if let Some(pos) = &self.pos_embed {
            h = h + pos.clone();
        }
        for block in &self.blocks {
            h = h.clone() + block.attn.forward(block.layer_norm1.forward(h), budget, kernel);
            h = h.clone() + block.mlp.forward(block.layer_norm2.forward(h));
        }
        // The neck's channel norms are LayerNorms over the last axis while the grid is channels-last.
        let h = self.neck_norm1.forward(self.neck_conv1.forward(h)).permute([0, 3, 1, 2]);
        let h = conv2d(h, self.neck_conv2.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        self.neck_norm2.forward(h.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }
}
