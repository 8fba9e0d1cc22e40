//! GPU memory of one tuning step (docs/MODEL.md §19), from the config alone, so that the page can
//! say before it starts what a step needs.

use crate::SegGptConfig;
use crate::model::parameter_shapes;
use crate::tune::Activations;

/// Memory (bytes, f32) of one tuning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// The model's weights (held before and after the step).
    pub weight_bytes: u64,
    /// What the step allocates beside them: the activations kept for the backward pass under
    /// balanced checkpointing and the backward pass's own buffers.
    pub activation_bytes: u64,
}

/// Values kept per encoder block, per sequence it runs (two per training pair up to the stream
/// merge, one after it, docs/MODEL.md §5.4), per canvas token and hidden unit, with every
/// activation kept. Together with [`HEAD_VALUES_PER_PIXEL`] this reproduces the peak of one step of
/// the released model on the CPU backend (12.3 GiB with 1.48 GB of weights, docs/MODEL.md §16): the
/// patch embedding and the decoder, counted from their shapes, take about 0.7 GB of it, and the rest
/// is spread over the 27 block-sequences of a pair.
const BLOCK_VALUES_PER_TOKEN_UNIT: u64 = 63;
/// Values per canvas pixel, per pair, of the patch embedding, the decoder and the loss (the
/// decoder's full-resolution maps and the `decoder_embed` output), counted from their shapes.
const HEAD_VALUES_PER_PIXEL: u64 = 436;
/// Values per sequence, canvas token and hidden unit at the peak of a step that recomputes the
/// activations, beside the kept block inputs and the features: one block run again under autodiff
/// with its backward pass. Calibrated on the released model's step with one pair on the CPU
/// backend (2.70 GiB after loading, 1.48 GB of it weights; docs/MODEL.md §23), where it puts the
/// peak in a block before the merge, which runs two sequences per pair; which stage the measured
/// peak falls in was not observed.
const RECOMPUTED_BLOCK_VALUES_PER_TOKEN_UNIT: u64 = 93;

/// The memory one step of `batch` training pairs needs on `config`'s model, in f32, with the
/// activations kept or recomputed (docs/MODEL.md §19, §23). Every pair is its own sample, so the
/// activations grow linearly with the batch.
pub fn step_memory(config: &SegGptConfig, batch: usize, activations: Activations) -> StepMemory {
    let (hp, wp) = config.patch_grid();
    // One sequence's hidden state, in values.
    let sequence = (hp * wp * config.hidden_size) as u64;
    let (h, w) = config.image_size.hw();
    let head = HEAD_VALUES_PER_PIXEL * (h * w) as u64;
    // Sequences per pair that block `i` runs: both streams up to the merge, one after.
    let sequences = |i: usize| if i <= config.merge_index { 2 } else { 1 };
    let per_pair = match activations {
        Activations::Keep => {
            let all: u64 = (0..config.num_hidden_layers).map(sequences).sum();
            all * BLOCK_VALUES_PER_TOKEN_UNIT * sequence + head
        }
        // The kept block inputs and the features (and their gradients) beside the larger of the
        // decoder's step and the widest block's.
        Activations::Recompute => {
            let last = config.intermediate_hidden_state_indices.last().copied().unwrap_or(0);
            let inputs: u64 = (0..=last).map(sequences).sum::<u64>() * sequence;
            let features = 2 * config.intermediate_hidden_state_indices.len() as u64 * sequence;
            let widest = sequences(0) * RECOMPUTED_BLOCK_VALUES_PER_TOKEN_UNIT * sequence;
            inputs + features + head.max(widest)
        }
    };
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
        let memory = step_memory(&SegGptConfig::default(), 1, Activations::Keep);
        let gb = |bytes: u64| bytes as f64 / 1e9;
        assert!((gb(memory.weight_bytes) - 1.48).abs() < 0.02, "{}", gb(memory.weight_bytes));
        let total_gib = (memory.weight_bytes + memory.activation_bytes) as f64 / f64::from(1u32 << 30);
        assert!((total_gib - 12.3).abs() < 0.05 * 12.3, "{total_gib} GiB");
    }

    /// With recomputation: the measured 2.70 GiB after loading (within 5 %), and a quarter of
    /// the memory of keeping every activation.
    #[test]
    fn one_recomputed_pair_of_the_released_model_matches_the_measured_peak() {
        let config = SegGptConfig::default();
        let memory = step_memory(&config, 1, Activations::Recompute);
        let total_gib = (memory.weight_bytes + memory.activation_bytes) as f64 / f64::from(1u32 << 30);
        assert!((total_gib - 2.70).abs() < 0.05 * 2.70, "{total_gib} GiB");
        let keep = step_memory(&config, 1, Activations::Keep).activation_bytes;
        assert!(memory.activation_bytes * 4 < keep, "{} vs {keep}", memory.activation_bytes);
    }

    #[test]
    fn activations_grow_with_the_batch_and_the_blocks() {
        let config = SegGptConfig::default();
        let one = step_memory(&config, 1, Activations::Keep).activation_bytes;
        assert_eq!(step_memory(&config, 3, Activations::Keep).activation_bytes, 3 * one);
        let fewer = SegGptConfig { num_hidden_layers: 12, ..SegGptConfig::default() };
        assert!(step_memory(&fewer, 1, Activations::Keep).activation_bytes < one);
        let recomputed = step_memory(&config, 1, Activations::Recompute).activation_bytes;
        assert_eq!(step_memory(&config, 2, Activations::Recompute).activation_bytes, 2 * recomputed);
        // Blocks past the last feature are not run again, and earlier ones keep only an input.
        let past = SegGptConfig { num_hidden_layers: 30, ..SegGptConfig::default() };
        assert_eq!(step_memory(&past, 1, Activations::Recompute).activation_bytes, recomputed);
    }
}
