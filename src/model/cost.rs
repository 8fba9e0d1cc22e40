//! The work of a forward pass per stage, in FLOPs (docs/MODEL.md §11.1): the one count the benchmark
//! reports GFLOP/s from and the docs' table is checked against. 1 multiply-add = 2 FLOPs; LayerNorm,
//! softmax, GELU and additions are left out.

use crate::config::SegGptConfig;
use crate::model::Samples;

/// The three stages of a forward pass, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Patch embeddings, tokens and position embeddings (`(2K, Hp, Wp, D)`).
    Embeddings,
    /// The encoder blocks, the stream merge and the normed features.
    Blocks,
    /// `decoder_embed`, the 3 x 3 conv, LayerNorm, GELU and the head, per decoded sample.
    Decoder,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Embeddings, Stage::Blocks, Stage::Decoder];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Embeddings => "embeddings",
            Stage::Blocks => "blocks",
            Stage::Decoder => "decoder",
        }
    }
}

/// FLOPs of one block on one sequence of the whole canvas.
pub fn block_flops(config: &SegGptConfig) -> u64 {
    let (hp, wp) = config.patch_grid();
    let n = (hp * wp) as u64;
    let d = config.hidden_size as u64;
    let m = config.mlp_dim() as u64;
    let qkv = 2 * n * d * 3 * d;
    let scores = 2 * n * n * d; // q k^T over all heads
    let weighted = 2 * n * n * d; // scores x v
    let proj = 2 * n * d * d;
    let mlp = 2 * 2 * n * d * m;
    // Per query and head, q . Rh[qh, :] over hp keys and q . Rw[qw, :] over wp (docs/MODEL.md §5.3).
    let relative = 2 * n * d * (hp + wp) as u64;
    qkv + scores + weighted + proj + mlp + relative
}

/// FLOPs of each stage of a forward pass with `k` prompts that decodes `samples`.
pub fn stage_flops(config: &SegGptConfig, k: usize, samples: Samples) -> [(Stage, u64); 3] {
    let k = k as u64;
    let (hp, wp) = config.patch_grid();
    let n = (hp * wp) as u64;
    let d = config.hidden_size as u64;
    let p = config.patch_size as u64;
    let patch = 2 * config.num_channels as u64 * p * p * d;
    // The image stream embeds the whole canvas, the mask stream only the prompt half (its query
    // half is the mask token, docs/MODEL.md §4).
    let mask_tokens = (config.half_image_size().0 as u64 / p) * wp as u64;
    let embeddings = k * (n + mask_tokens) * patch;
    // Blocks up to the merge run both streams (2K sequences), the rest K.
    let layers = config.num_hidden_layers as u64;
    let merged = (config.merge_index as u64 + 1).min(layers);
    let blocks = k * (2 * merged + (layers - merged)) * block_flops(config);
    let one_sample = decoder_flops(config, hp as u64, hp as u64);
    let decoded = match samples {
        Samples::All => k,
        Samples::First => 1,
    };
    [(Stage::Embeddings, embeddings), (Stage::Blocks, blocks), (Stage::Decoder, decoded * one_sample)]
}

/// FLOPs of the decoder on one sample that decodes `token_rows` of the patch grid, of which
/// `kept_rows` go on past the 3 x 3 conv.
fn decoder_flops(config: &SegGptConfig, token_rows: u64, kept_rows: u64) -> u64 {
    let (_, wp) = config.patch_grid();
    let p = config.patch_size as u64;
    let d = config.hidden_size as u64;
    let features = config.intermediate_hidden_state_indices.len() as u64;
    let c = config.decoder_hidden_size as u64;
    let row_pixels = p * p * wp as u64;
    2 * token_rows * wp as u64 * features * d * p * p * c    // decoder_embed
        + 2 * token_rows * row_pixels * c * c * 9            // 3 x 3 conv
        + 2 * kept_rows * row_pixels * c * config.num_channels as u64 // head
}

/// FLOPs of [`SegGpt::decode_query`](crate::model::SegGpt::decode_query) on one sample: the query
/// half's token rows and the one above them (the conv's halo), the head on the query half only.
pub fn query_decoder_flops(config: &SegGptConfig) -> u64 {
    let (hp, _) = config.patch_grid();
    decoder_flops(config, (hp / 2 + 1) as u64, (hp / 2) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gflop(flops: u64) -> f64 {
        flops as f64 / 1e9
    }

    /// The table of docs/MODEL.md §11.1.
    #[test]
    fn released_model_matches_the_docs_table() {
        let config = SegGptConfig::default();
        assert!((gflop(block_flops(&config)) - 49.80).abs() < 0.01, "{}", gflop(block_flops(&config)));
        let [(_, embeddings), (_, blocks), (_, decoder)] = stage_flops(&config, 1, Samples::First);
        // 27 sequence-blocks; 1568 + 784 embedded patches; decoder_embed 210.5 + conv 29.6 + head 0.15.
        assert!((gflop(blocks) - 1344.6).abs() < 0.1, "{}", gflop(blocks));
        assert!((gflop(embeddings) - 3.70).abs() < 0.01, "{}", gflop(embeddings));
        assert!((gflop(decoder) - 240.2).abs() < 0.1, "{}", gflop(decoder));
        let total = gflop(embeddings + blocks + decoder);
        assert!((total - 1588.5).abs() < 0.5, "{total}");
    }

    #[test]
    fn the_query_half_costs_its_rows_and_one_more() {
        let config = SegGptConfig::default();
        let [.., (_, canvas)] = stage_flops(&config, 1, Samples::First);
        // 29 of the 56 token rows through decoder_embed and the conv, 28 through the head.
        let query = query_decoder_flops(&config);
        assert!((gflop(query) - (210.5 + 29.6) * 29.0 / 56.0 - 0.15 / 2.0).abs() < 0.1, "{}", gflop(query));
        assert!(query < canvas);
    }

    #[test]
    fn only_the_decoded_samples_pay_for_the_decoder() {
        let config = SegGptConfig::default();
        let first = stage_flops(&config, 9, Samples::First);
        let all = stage_flops(&config, 9, Samples::All);
        assert_eq!(first[1], all[1]);
        assert_eq!(all[2].1, 9 * first[2].1);
        assert_eq!(first[2], stage_flops(&config, 1, Samples::First)[2]);
        assert_eq!(first[1].1, 9 * stage_flops(&config, 1, Samples::First)[1].1);
    }
}
