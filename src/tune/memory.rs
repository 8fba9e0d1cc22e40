//! GPU memory of one tuning step (docs/MODEL.md §19), from the config alone, so that the page can
//! say before it starts what a step needs.

use crate::SegGptConfig;
use crate::model::parameter_shapes;

/// Memory (bytes, f32) of one tuning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// The model's weights (held before and after the step).
    pub weight_bytes: u64,
    /// What the step allocates beside them: the activations kept for the backward pass under
    /// balanced checkpointing and the backward pass's own buffers.
    pub activation_bytes: u64,
}

/// Values kept per encoder block, per training pair, per canvas token and hidden unit. Together
/// with [`HEAD_VALUES_PER_PIXEL`] this reproduces the peak of one step of the released model on
/// the CPU backend (12.3 GiB with 1.48 GB of weights, docs/MODEL.md §16): the patch embedding and
/// the decoder, counted from their shapes, take about 0.7 GB of it, and the rest is spread over the
/// 24 blocks.
const BLOCK_VALUES_PER_TOKEN_UNIT: u64 = 71;
/// Values per canvas pixel, per pair, of the patch embedding, the decoder and the loss (the
/// decoder's full-resolution maps and the `decoder_embed` output), counted from their shapes.
const HEAD_VALUES_PER_PIXEL: u64 = 436;

/// The memory one step of `batch` training pairs needs on `config`'s model, in f32. Every pair is
/// its own sample, so the activations grow linearly with the batch.
pub fn step_memory(config: &SegGptConfig, batch: usize) -> StepMemory {
    let (hp, wp) = config.patch_grid();
    let tokens = (hp * wp) as u64;
    let (h, w) = config.image_size.hw();
    let pixels = (h * w) as u64;
    let per_pair =
        config.num_hidden_layers as u64 * BLOCK_VALUES_PER_TOKEN_UNIT * tokens * config.hidden_size as u64
            + HEAD_VALUES_PER_PIXEL * pixels;
    let weights: u64 = parameter_shapes(config)
        .map(|shapes| shapes.iter().map(|(_, shape)| shape.iter().product::<usize>() as u64).sum())
        .unwrap_or(0);
    StepMemory { weight_bytes: weights * 4, activation_bytes: batch as u64 * per_pair * 4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The released model: 1.48 GB of weights and, with one pair, the CPU backend's measured
    /// 12.3 GiB peak in all (within 5 %).
    #[test]
    fn one_pair_of_the_released_model_matches_the_measured_peak() {
        let memory = step_memory(&SegGptConfig::default(), 1);
        let gb = |bytes: u64| bytes as f64 / 1e9;
        assert!((gb(memory.weight_bytes) - 1.48).abs() < 0.02, "{}", gb(memory.weight_bytes));
        let total_gib = (memory.weight_bytes + memory.activation_bytes) as f64 / f64::from(1u32 << 30);
        assert!((total_gib - 12.3).abs() < 0.05 * 12.3, "{total_gib} GiB");
    }

    #[test]
    fn activations_grow_with_the_batch_and_the_blocks() {
        let config = SegGptConfig::default();
        let one = step_memory(&config, 1).activation_bytes;
        assert_eq!(step_memory(&config, 3).activation_bytes, 3 * one);
        let fewer = SegGptConfig { num_hidden_layers: 12, ..SegGptConfig::default() };
        assert!(step_memory(&fewer, 1).activation_bytes < one);
    }
}
