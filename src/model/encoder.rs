//! The block stack: stream merge after `merge_index`, intermediate features through the shared
//! final norm (docs/MODEL.md §5.4), and the feature-ensemble schedules (§6).

use burn::tensor::{Device, Tensor};

use crate::config::SegGptConfig;
use crate::model::AttentionKernel;
use crate::model::budget::MemoryBudget;
use crate::model::layer::{Layer, Merge};
use crate::model::load::{Loader, Store};
use crate::model::nn::LayerNorm;
use crate::model::{Ensemble, Samples};
use crate::weights::LoadError;

impl Ensemble {
    /// The averaging applied after block `index` attention, for `k` prompts.
    pub fn merge_at(self, index: usize, merge_index: usize, k: usize) -> Merge {
        match self {
            // Spatial: the prompts were composed into one before the model, so there is nothing
            // to average (the model refuses K > 1 with it).
            Ensemble::None | Ensemble::Spatial => Merge::None,
            Ensemble::Official if k < 2 => Merge::None,
            Ensemble::Official if index <= merge_index => Merge::PerStream,
            Ensemble::Official => Merge::All,
            // transformers: `ensemble_cond = 2 if merge_index > i else 1`, applied iff
            // `batch // 2 >= ensemble_cond`; batch is 2K up to merge_index, K after.
            Ensemble::Hf if index < merge_index => {
                if k >= 2 {
                    Merge::PerStream
                } else {
                    Merge::None
                }
            }
            Ensemble::Hf if index == merge_index => Merge::All,
            Ensemble::Hf => {
                if k >= 2 {
                    Merge::All
                } else {
                    Merge::None
                }
            }
        }
    }
}

pub struct Encoder<S: Store = Device> {
    layers: Vec<Layer<S>>,
    layernorm: LayerNorm<S>,
    merge_index: usize,
    feature_indices: Vec<usize>,
}

impl<S: Store> Encoder<S> {
    pub fn load(loader: &mut Loader<S>, config: &SegGptConfig) -> Result<Self, LoadError> {
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(loader, i, config))
            .collect::<Result<_, _>>()?;
        let layernorm =
            LayerNorm::load(loader, "model.encoder.layernorm", config.hidden_size, config.layer_norm_eps)?;
        Ok(Self {
            layers,
            layernorm,
            merge_index: config.merge_index,
            feature_indices: config.intermediate_hidden_state_indices.clone(),
        })
    }
}

impl Encoder {
    /// `h`: `(2K, Hp, Wp, D)` embeddings -> the decoder's input: the normed intermediate features
    /// in index order, each `(K, Hp, Wp, D)` (or `(1, Hp, Wp, D)`, sample 0's, for
    /// [`Samples::First`]). They stay separate tensors: concatenated on channels they would be one
    /// buffer of 4 x 6.1 MiB per prompt for the released model (docs/MODEL.md §17).
    pub fn forward(
        &self,
        mut h: Tensor<4>,
        ensemble: Ensemble,
        budget: MemoryBudget,
        kernel: AttentionKernel,
        samples: Samples,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Vec<Tensor<4>> {
        let mut features = Vec::with_capacity(self.feature_indices.len());
        for i in 0..self.layers.len() {
            h = self.block(i, h, ensemble, budget, kernel);
            if self.is_feature(i) {
                let kept = match samples {
                    Samples::All => h.clone(),
                    Samples::First => h.clone().narrow(0, 0, 1),
                };
                features.push(self.feature_norm(kept));
            }
            progress(i + 1, self.layers.len());
        }
        features
    }

    /// Block `index` on `h`, followed by the stream merge when it is block `merge_index`: `(2K, Hp,
    /// Wp, D)` in up to the merge block, `(K, Hp, Wp, D)` out from it on (docs/MODEL.md §5.4).
    pub fn block(
        &self,
        index: usize,
        h: Tensor<4>,
        ensemble: Ensemble,
        budget: MemoryBudget,
        kernel: AttentionKernel,
    ) -> Tensor<4> {
        let b = h.dims()[0];
        let k = if index <= self.merge_index { b / 2 } else { b };
        let h = self.layers[index].forward(h, ensemble.merge_at(index, self.merge_index, k), budget, kernel);
        if index != self.merge_index {
            return h;
        }
        let image = h.clone().narrow(0, 0, k);
        let mask = h.narrow(0, k, k);
        (image + mask).mul_scalar(0.5)
    }

    /// Whether block `index`'s output is one of the decoder's features.
    pub fn is_feature(&self, index: usize) -> bool {
        self.feature_indices.contains(&index)
    }

    /// A block output as the decoder reads it: through the shared final norm.
    pub fn feature_norm(&self, h: Tensor<4>) -> Tensor<4> {
        self.layernorm.forward(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_schedule_matches_the_spec_table() {
        let e = Ensemble::Official;
        assert_eq!(e.merge_at(0, 2, 1), Merge::None);
        assert_eq!(e.merge_at(2, 2, 3), Merge::PerStream);
        assert_eq!(e.merge_at(3, 2, 3), Merge::All);
    }

    #[test]
    fn hf_schedule_averages_both_streams_at_merge_index_even_for_one_prompt() {
        let e = Ensemble::Hf;
        assert_eq!(e.merge_at(1, 2, 1), Merge::None);
        assert_eq!(e.merge_at(1, 2, 2), Merge::PerStream);
        assert_eq!(e.merge_at(2, 2, 1), Merge::All);
        assert_eq!(e.merge_at(3, 2, 1), Merge::None);
        assert_eq!(e.merge_at(3, 2, 2), Merge::All);
    }
}
