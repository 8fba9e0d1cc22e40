//! One pre-norm encoder block (docs/MODEL.md §5.1) with the feature-ensemble hook of §6.

use burn::tensor::{Device, Tensor};

use crate::config::SegGptConfig;
use crate::model::AttentionKernel;
use crate::model::attention::{Attention, AttentionShape};
use crate::model::budget::{MemoryBudget, Split};
use crate::model::load::{Loader, Store};
use crate::model::nn::{LayerNorm, Linear, gelu};
use crate::weights::LoadError;

/// How a block's attention output is averaged over the query half of the grid (docs/MODEL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    None,
    /// Mean over the K prompts, separately for the image and the mask stream (batch 2K).
    PerStream,
    /// Mean over the whole batch.
    All,
}

/// The transformer MLP, `lin2(act(lin1(x)))`: GELU in every ViT block (SegGPT's and SAM's image
/// encoder), ReLU in SAM's mask decoder.
pub struct Mlp<S: Store = Device> {
    lin1: Linear<S>,
    lin2: Linear<S>,
    activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The erf form (PyTorch's default `gelu`).
    Gelu,
    Relu,
}

impl<S: Store> Mlp<S> {
    pub fn load(
        loader: &mut Loader<S>,
        prefix: &str,
        d: usize,
        hidden: usize,
        activation: Activation,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            lin1: Linear::load(loader, &format!("{prefix}.lin1"), d, hidden, true)?,
            lin2: Linear::load(loader, &format!("{prefix}.lin2"), hidden, d, true)?,
            activation,
        })
    }
}

impl Mlp {
    pub fn hidden(&self) -> usize {
        self.lin1.out_features()
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = self.lin1.forward(x);
        let h = match self.activation {
            Activation::Gelu => gelu(h),
            Activation::Relu => burn::tensor::activation::relu(h),
        };
        self.lin2.forward(h)
    }
}

pub struct Layer<S: Store = Device> {
    layernorm_before: LayerNorm<S>,
    attention: Attention<S>,
    layernorm_after: LayerNorm<S>,
    mlp: Mlp<S>,
}

/// Bytes of one sample's widest f32 activation in a block of `tokens`: the fused qkv
/// projection (`3 * hidden`) or the MLP hidden layer (`mlp`), whichever is wider.
pub fn sample_bytes(tokens: usize, hidden: usize, mlp: usize) -> usize {
    4 * tokens * (3 * hidden).max(mlp)
}

impl<S: Store> Layer<S> {
    pub fn load(loader: &mut Loader<S>, index: usize, config: &SegGptConfig) -> Result<Self, LoadError> {
        let p = format!("model.encoder.layers.{index}");
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        Ok(Self {
            layernorm_before: LayerNorm::load(loader, &format!("{p}.layernorm_before"), d, eps)?,
            attention: Attention::load(loader, &format!("{p}.attention"), AttentionShape::seggpt(config))?,
            layernorm_after: LayerNorm::load(loader, &format!("{p}.layernorm_after"), d, eps)?,
            mlp: Mlp::load(loader, &format!("{p}.mlp"), d, config.mlp_dim(), Activation::Gelu)?,
        })
    }
}

impl Layer {
    /// `h`: `(B, Hp, Wp, D)`.
    /// The batch is processed in pieces of whole samples so that no activation (qkv, MLP hidden)
    /// passes the budget (at least one sample per piece); only the ensemble merge sees all.
    pub fn forward(
        &self,
        h: Tensor<4>,
        merge: Merge,
        budget: MemoryBudget,
        kernel: AttentionKernel,
    ) -> Tensor<4> {
        let [b, hp, wp, d] = h.dims();
        let pieces = budget.split(b, sample_bytes(hp * wp, d, self.mlp.hidden()));
        let a = by_pieces(self.layernorm_before.forward(h.clone()), pieces, |x| {
            self.attention.forward(x, budget, kernel)
        });
        let h = h + merge_query_half(a, merge);
        let m = by_pieces(self.layernorm_after.forward(h.clone()), pieces, |x| self.mlp.forward(x));
        h + m
    }
}

/// `f` applied to each piece of samples of `x`, concatenated back.
fn by_pieces(x: Tensor<4>, pieces: Split, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    if pieces.pieces() == 1 {
        return f(x);
    }
    let outs = pieces.ranges().map(|r| f(x.clone().narrow(0, r.start, r.len()))).collect();
    Tensor::cat(outs, 0)
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
