//! Every parameter name and shape a config implies (HF names), and a source of random weights of
//! those shapes, for benchmarks of the full-size model without its checkpoint.

use std::collections::BTreeMap;

use super::{LoadError, TensorSource};
use crate::config::SegGptConfig;

/// `(HF name, shape)` of every tensor of `SegGptForImageSegmentation` under `config`.
pub fn parameter_shapes(config: &SegGptConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let p = config.patch_size;
    let c = config.decoder_hidden_size;
    let g = config.pretrain_grid();
    let (hp, wp) = config.patch_grid();
    let e = "model.embeddings";
    let mut out: Vec<(String, Vec<usize>)> = vec![
        (format!("{e}.patch_embeddings.projection.weight"), vec![d, config.num_channels, p, p]),
        (format!("{e}.patch_embeddings.projection.bias"), vec![d]),
        (format!("{e}.position_embeddings"), vec![1, g * g + 1, d]),
    ];
    for token in [
        "mask_token",
        "segment_token_input",
        "segment_token_prompt",
        "type_token_semantic",
        "type_token_instance",
    ] {
        out.push((format!("{e}.{token}"), vec![1, 1, 1, d]));
    }
    for i in 0..config.num_hidden_layers {
        let l = format!("model.encoder.layers.{i}");
        let m = config.mlp_dim();
        out.push((format!("{l}.attention.qkv.weight"), vec![3 * d, d]));
        if config.qkv_bias {
            out.push((format!("{l}.attention.qkv.bias"), vec![3 * d]));
        }
        out.push((format!("{l}.attention.proj.weight"), vec![d, d]));
        out.push((format!("{l}.attention.proj.bias"), vec![d]));
        if config.use_relative_position_embeddings {
            out.push((format!("{l}.attention.rel_pos_h"), vec![2 * hp - 1, config.head_dim()]));
            out.push((format!("{l}.attention.rel_pos_w"), vec![2 * wp - 1, config.head_dim()]));
        }
        for norm in ["layernorm_before", "layernorm_after"] {
            out.push((format!("{l}.{norm}.weight"), vec![d]));
            out.push((format!("{l}.{norm}.bias"), vec![d]));
        }
        out.push((format!("{l}.mlp.lin1.weight"), vec![m, d]));
        out.push((format!("{l}.mlp.lin1.bias"), vec![m]));
        out.push((format!("{l}.mlp.lin2.weight"), vec![d, m]));
        out.push((format!("{l}.mlp.lin2.bias"), vec![d]));
    }
    out.push(("model.encoder.layernorm.weight".into(), vec![d]));
    out.push(("model.encoder.layernorm.bias".into(), vec![d]));
    let f = d * config.intermediate_hidden_state_indices.len();
    out.push(("decoder.decoder_embed.weight".into(), vec![p * p * c, f]));
    out.push(("decoder.decoder_embed.bias".into(), vec![p * p * c]));
    out.push(("decoder.decoder_pred.conv.weight".into(), vec![c, c, 3, 3]));
    out.push(("decoder.decoder_pred.conv.bias".into(), vec![c]));
    out.push(("decoder.decoder_pred.layernorm.weight".into(), vec![c]));
    out.push(("decoder.decoder_pred.layernorm.bias".into(), vec![c]));
    out.push(("decoder.decoder_pred.head.weight".into(), vec![3, c, 1, 1]));
    out.push(("decoder.decoder_pred.head.bias".into(), vec![3]));
    out
}

/// Deterministic pseudo-random weights: uniform with the variance of `N(0, 1/fan_in)` for
/// matrices (activations stay O(1) through the stack) and small values around 1 / 0 for norms.
pub struct RandomSource {
    shapes: BTreeMap<String, Vec<usize>>,
    seed: u64,
}

impl RandomSource {
    pub fn new(config: &SegGptConfig, seed: u64) -> Self {
        Self { shapes: parameter_shapes(config).into_iter().collect(), seed }
    }
}

impl TensorSource for RandomSource {
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let shape = self.shapes.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
        let n: usize = shape.iter().product();
        let fan_in: usize = if shape.len() >= 2 { shape[1..].iter().product() } else { 1 };
        let mut state = self.seed ^ crate::fnv::fnv1a64(name.as_bytes());
        let mut uniform = move || {
            // xorshift64*: plenty for benchmark weights.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            ((state.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let is_norm_weight = name.contains("layernorm") && name.ends_with(".weight");
        let amplitude = if shape.len() >= 2 && !name.contains("token") && !name.contains("rel_pos") {
            (3.0 / fan_in as f32).sqrt()
        } else {
            0.1
        };
        Ok((0..n)
            .map(|_| if is_norm_weight { 1.0 + 0.1 * uniform() } else { amplitude * uniform() })
            .collect())
    }
}
