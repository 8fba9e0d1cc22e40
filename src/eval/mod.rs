//! Scores of the paper's benchmarks, as the literature computes them (docs/MODEL.md §15): few-shot
//! segmentation (HSNet's accumulation: per-class IoU, mIoU, FB-IoU) and semi-supervised video object
//! segmentation (the DAVIS 2017 toolkit's region J and boundary F), and the seeded episode draw.
//! Plain Rust over pixel masks: no files, no model, no browser.

pub mod davis;
pub mod episodes;
pub mod fewshot;

/// Two masks that must cover the same pixels do not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what}: the prediction has {actual} pixels, the ground truth {expected}; they must be the same size"
)]
pub struct SizeMismatch {
    pub what: String,
    pub expected: usize,
    pub actual: usize,
}

pub(crate) fn same_size(what: &str, expected: usize, actual: usize) -> Result<(), SizeMismatch> {
    if expected == actual { Ok(()) } else { Err(SizeMismatch { what: what.to_owned(), expected, actual }) }
}
