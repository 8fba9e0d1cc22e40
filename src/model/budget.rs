//! One memory budget for every place the forward pass splits its work, and what it implies for the
//! largest GPU buffer (docs/MODEL.md §11).
//!
//! A WebGPU device binds at most `maxStorageBufferBindingSize` bytes (128 MiB by default) to one
//! shader, so no single tensor may grow past it. Three things would: the attention scores of all
//! heads, an encoder block's activations for all samples, and the `decoder_embed` weight. Each is
//! split into pieces of at most [`MemoryBudget::max_buffer_bytes`].

use std::ops::Range;

use crate::config::SegGptConfig;
use crate::model::decoder::decoder_embed_size;
use crate::model::{attention, layer, nn};

/// The largest buffer (bytes) the model creates in one piece when it can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub max_buffer_bytes: usize,
}

impl MemoryBudget {
    /// Half of WebGPU's default 128 MiB binding limit, leaving room for the buffers that cannot
    /// be split (see [`largest_buffer_bytes`]).
    pub const DEFAULT: MemoryBudget = MemoryBudget { max_buffer_bytes: 64 << 20 };

    /// How `count` items of `item_bytes` each are grouped so that a group stays within the
    /// budget; a group holds at least one item, however large.
    pub fn split(self, count: usize, item_bytes: usize) -> Split {
        let per_piece = (self.max_buffer_bytes / item_bytes.max(1)).clamp(1, count.max(1));
        Split { count, per_piece }
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `count` items processed `per_piece` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub count: usize,
    pub per_piece: usize,
}

impl Split {
    pub fn pieces(self) -> usize {
        self.count.div_ceil(self.per_piece)
    }

    /// The item range of every piece, in order.
    pub fn ranges(self) -> impl Iterator<Item = Range<usize>> {
        (0..self.count)
            .step_by(self.per_piece)
            .map(move |start| start..(start + self.per_piece).min(self.count))
    }
}

/// How a forward pass with `k` prompts divides its work under a budget: the same splits the
/// model makes, computed from the config alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPlan {
    /// Samples of the `2K` image and mask streams an encoder block processes at once.
    pub block: Split,
    /// `(sample, head)` attention sequences per score group, within one block piece.
    pub attention: Split,
    /// Output columns per `decoder_embed` weight piece (fixed when the model is loaded).
    pub decoder_embed: Split,
}

impl SplitPlan {
    pub fn new(config: &SegGptConfig, k: usize, budget: MemoryBudget) -> Self {
        let tokens = tokens(config);
        let block =
            budget.split(2 * k.max(1), layer::sample_bytes(tokens, config.hidden_size, config.mlp_dim()));
        let attention =
            budget.split(block.per_piece * config.num_attention_heads, attention::score_bytes(tokens));
        let (d_in, d_out) = decoder_embed_size(config);
        let decoder_embed = budget.split(d_out, nn::column_bytes(d_in));
        Self { block, attention, decoder_embed }
    }
}

/// Tokens of the whole canvas (prompt over query).
fn tokens(config: &SegGptConfig) -> usize {
    let (hp, wp) = config.patch_grid();
    hp * wp
}

/// The largest single tensor (bytes, f32) a forward pass with `k` prompts allocates under
/// `budget`: what the device's `maxStorageBufferBindingSize` must hold. The same for
/// [`SegGpt::forward`](crate::model::SegGpt::forward) and `forward_first`: both decode one sample
/// at a time, so only the hidden states (and, past ~27 prompts, all K predictions) grow with K
/// (docs/MODEL.md §17).
pub fn largest_buffer_bytes(config: &SegGptConfig, k: usize, budget: MemoryBudget) -> u64 {
    let n = tokens(config) as u64;
    let (k, d) = (k.max(1) as u64, config.hidden_size as u64);
    let features = config.intermediate_hidden_state_indices.len() as u64;
    let plan = SplitPlan::new(config, k as usize, budget);
    let block_piece = plan.block.per_piece * layer::sample_bytes(n as usize, d as usize, config.mlp_dim());
    let score_group = plan.attention.per_piece * attention::score_bytes(n as usize);
    let (d_in, _) = decoder_embed_size(config);
    let weight_piece = plan.decoder_embed.per_piece * nn::column_bytes(d_in);
    let (h, w) = config.image_size.hw();
    let pixels = (h * w) as u64;
    [
        config.decoder_hidden_size as u64 * pixels * 4, // one sample's full-resolution decoder map
        2 * k * n * d * 4, // the hidden states of both streams (each kept feature is half of it)
        n * features * d * 4, // one sample's concatenated features, the decoder's input
        k * config.num_channels as u64 * pixels * 4, // all K predictions (`forward` only)
        block_piece as u64,
        score_group as u64,
        weight_piece as u64,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// How many prompts fit a device whose largest storage binding is `limit` bytes.
pub fn max_prompts(config: &SegGptConfig, limit: u64, budget: MemoryBudget) -> usize {
    (1..=64).take_while(|&k| largest_buffer_bytes(config, k, budget) <= limit).last().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn split_groups_items_within_the_budget_and_covers_them_all() {
        let budget = MemoryBudget { max_buffer_bytes: 7 };
        let split = budget.split(10, 3);
        assert_eq!((split.per_piece, split.pieces()), (2, 5));
        let ranges: Vec<_> = split.ranges().collect();
        assert_eq!(ranges.first(), Some(&(0..2)));
        assert_eq!(ranges.last(), Some(&(8..10)));
        // An item over the budget still makes a piece of its own.
        assert_eq!(budget.split(3, 100).per_piece, 1);
        // A budget over everything is one piece.
        assert_eq!(MemoryBudget::DEFAULT.split(3, 100).pieces(), 1);
        assert_eq!(budget.split(5, 2).ranges().last(), Some(3..5));
    }

    #[test]
    fn released_model_splits_under_the_default_budget() {
        let plan = SplitPlan::new(&SegGptConfig::default(), 1, MemoryBudget::DEFAULT);
        // One sample's widest activation (1568 tokens x 4096 f32) is 24.5 MiB: 2 per piece.
        assert_eq!((plan.block.count, plan.block.per_piece), (2, 2));
        // One head's scores (1568 x 1568 f32) are 9.4 MiB: 6 of the 32 sequences per group.
        assert_eq!((plan.attention.per_piece, plan.attention.pieces()), (6, 6));
        // decoder_embed (4096 -> 16384 f32, 256 MiB) in four 64 MiB pieces.
        assert_eq!((plan.decoder_embed.per_piece, plan.decoder_embed.pieces()), (4096, 4));
    }

    #[test]
    fn released_model_buffers_per_prompt_count() {
        let config = SegGptConfig::default();
        let budget = MemoryBudget::DEFAULT;
        // 1568 tokens: the hidden states of both streams are 12.25 MiB per prompt; one decoder map
        // (64 x 896 x 448 f32) is 98 MiB; every split piece stays within 64 MiB.
        assert_eq!(largest_buffer_bytes(&config, 1, budget), 64 * 896 * 448 * 4);
        assert_eq!(largest_buffer_bytes(&config, 8, budget), 64 * 896 * 448 * 4);
        assert_eq!(largest_buffer_bytes(&config, 9, budget), 2 * 9 * 1568 * 1024 * 4);
        // WebGPU's default 128 MiB binding: 10 prompts (122.5 MiB of hidden states; 11 need
        // 134.75 MiB), enough for 8 previous video frames plus the user's prompt. It was 5 while
        // the features of all K samples were one (K, N, 4096) buffer (24.5 MiB per prompt).
        assert_eq!(max_prompts(&config, 128 * MIB, budget), 10);
        assert_eq!(largest_buffer_bytes(&config, 11, budget), 2 * 11 * 1568 * 1024 * 4);
        assert_eq!(max_prompts(&config, 512 * MIB, budget), 41);
        // Below the decoder map nothing fits.
        assert_eq!(max_prompts(&config, 97 * MIB, budget), 0);
        // A budget larger than the binding makes the pieces themselves too large.
        let loose = MemoryBudget { max_buffer_bytes: 256 << 20 };
        assert_eq!(largest_buffer_bytes(&config, 1, loose), 256 * MIB);
        assert_eq!(max_prompts(&config, 128 * MIB, loose), 0);
    }
}
