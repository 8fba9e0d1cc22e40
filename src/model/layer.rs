//! One pre-norm encoder block (MODEL-SPEC 4.2) with the feature-ensemble hook of 4.4.

use burn::tensor::{Tensor, activation::gelu};

use crate::config::SegGptConfig;
use crate::model::attention::Attention;
use crate::model::nn::{LayerNorm, Linear};
use crate::weights::{LoadError, Loader};

/// How a block's attention output is averaged over the query half of the grid (MODEL-SPEC 4.4).
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
    pub fn forward(&self, h: Tensor<4>, merge: Merge) -> Tensor<4> {
        let a = self.attention.forward(self.layernorm_before.forward(h.clone()));
        let h = h + merge_query_half(a, merge);
        let m = self.mlp.lin2.forward(gelu(self.mlp.lin1.forward(self.layernorm_after.forward(h.clone()))));
        h + m
    }
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
