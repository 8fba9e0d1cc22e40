//! GPU memory of one tuning step (docs/MODEL.md §19), from the config alone, so that the page can
//! say before it starts whether the adapter can hold a step.

use crate::SegGptConfig;
use crate::model::parameter_shapes;

/// GPU memory (bytes, f32) of one tuning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// The model's weights (held before and after the step).
    pub weight_bytes: u64,
    /// Everything the step allocates (activations kept for the backward pass and the backward
    /// pass's own buffers), as measured on wgpu in f32.
    pub activation_bytes: u64,
}

/// Activation values kept per encoder block, per training pair, per canvas token and hidden unit
/// (f32): measured on wgpu with the released model's width (tests/tune_memory.rs).
const BLOCK_VALUES_PER_TOKEN_UNIT: u64 = 40;
/// Values per canvas pixel, per pair, of the patch embedding and the decoder.
const HEAD_VALUES_PER_PIXEL: u64 = 200;

/// The memory one step of `batch` training pairs needs on `config`'s model, in f32.
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
