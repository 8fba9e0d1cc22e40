//! The block stack: stream merge after `merge_index`, intermediate features through the shared
//! final norm (docs/MODEL.md §5.4), and the feature-ensemble schedules (§6).

use burn::tensor::{Device, Tensor};

use crate::config::SegGptConfig;
use crate::model::budget::MemoryBudget;
use crate::model::fused_attention::AttentionKernel;
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
        let k = h.dims()[0] / 2;
        let mut features = Vec::with_capacity(self.feature_indices.len());
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, ensemble.merge_at(i, self.merge_index, k), budget, kernel);
            if i == self.merge_index {
                let image = h.clone().narrow(0, 0, k);
                let mask = h.narrow(0, k, k);
                h = (image + mask).mul_scalar(0.5);
            }
            if self.feature_indices.contains(&i) {
                let kept = match samples {
                    Samples::All => h.clone(),
                    Samples::First => h.clone().narrow(0, 0, 1),
                };
                features.push(self.layernorm.forward(kept));
            }
            progress(i + 1, self.layers.len());
        }
        features
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
