//! One pre-norm encoder block (docs/MODEL.md §5.1) with the feature-ensemble hook of §6.

use burn::tensor::{Tensor, activation::gelu};

use crate::config::SegGptConfig;
use crate::model::attention::Attention;
use crate::model::nn::{LayerNorm, Linear};
use crate::weights::{LoadError, Loader};

/// How a block's attention output is averaged over the query half of the grid (docs/MODEL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    None,
    /// Mean over the K prompts, separately for the image and the mask stream (batch 2K).
    PerStream,
    /// Mean over the whole batch.
    All,
}

pub struct Mlp {
    lin1: Linear,
    lin2: Linear,
}

pub struct Layer {
    layernorm_before: LayerNorm,
    attention: Attention,
    layernorm_after: LayerNorm,
    mlp: Mlp,
}

impl Layer {
    pub fn load(loader: &mut Loader, index: usize, config: &SegGptConfig) -> Result<Self, LoadError> {
        let p = format!("model.encoder.layers.{index}");
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        Ok(Self {
            layernorm_before: LayerNorm::load(loader, &format!("{p}.layernorm_before"), d, eps)?,
            attention: Attention::load(loader, &format!("{p}.attention"), config)?,
            layernorm_after: LayerNorm::load(loader, &format!("{p}.layernorm_after"), d, eps)?,
            mlp: Mlp {
                lin1: Linear::load(loader, &format!("{p}.mlp.lin1"), d, config.mlp_dim(), true)?,
                lin2: Linear::load(loader, &format!("{p}.mlp.lin2"), config.mlp_dim(), d, true)?,
            },
        })
    }

    /// `h`: `(B, Hp, Wp, D)`.
    /// The batch is processed in pieces of whole samples so that no activation (qkv, MLP hidden)
    /// passes `chunk_bytes` (at least one sample per piece); only the ensemble merge sees all.
    pub fn forward(&self, h: Tensor<4>, merge: Merge, chunk_bytes: usize) -> Tensor<4> {
        let [b, hp, wp, d] = h.dims();
        let widest = (3 * d).max(self.mlp.lin1.out_features());
        let per_piece = (chunk_bytes / (hp * wp * widest * 4)).clamp(1, b);
        let a = by_pieces(self.layernorm_before.forward(h.clone()), per_piece, |x| self.attention.forward(x));
        let h = h + merge_query_half(a, merge);
        let m = by_pieces(self.layernorm_after.forward(h.clone()), per_piece, |x| {
            self.mlp.lin2.forward(gelu(self.mlp.lin1.forward(x)))
        });
        h + m
    }
}

/// `f` applied to pieces of at most `per_piece` samples of `x`, concatenated back.
fn by_pieces(x: Tensor<4>, per_piece: usize, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    let b = x.dims()[0];
    if per_piece >= b {
        return f(x);
    }
    let pieces = (0..b)
        .step_by(per_piece)
        .map(|start| f(x.clone().narrow(0, start, per_piece.min(b - start))))
        .collect();
    Tensor::cat(pieces, 0)
}

/// Replaces the query (bottom) half rows of `a` by their mean over prompts.
fn merge_query_half(a: Tensor<4>, merge: Merge) -> Tensor<4> {
    if merge == Merge::None {
        return a;
    }
    let [b, hp, wp, d] = a.dims();
    let half = hp / 2;
    let top = a.clone().narrow(1, 0, half);
    let bottom = a.narrow(1, half, hp - half);
    let bottom = match merge {
        Merge::PerStream => {
            let k = b / 2;
            bottom
                .reshape([2, k, (hp - half) * wp * d])
                .mean_dim(1)
                .expand([2, k, (hp - half) * wp * d])
                .reshape([b, hp - half, wp, d])
        }
        Merge::All => bottom.mean_dim(0).expand([b, hp - half, wp, d]),
        Merge::None => unreachable!(),
    };
    Tensor::cat(vec![top, bottom], 1)
}
