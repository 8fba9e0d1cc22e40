//! Semi-supervised video object segmentation scores as the DAVIS 2017 toolkit computes them
//! (docs/MODEL.md §15.2): per object and frame, the region similarity J (IoU) and the boundary
//! F-measure F; per object, the mean, recall and decay of each over the frames between the first
//! and the last; J&F = (mean J + mean F) / 2 with the means taken over all objects.

use serde::{Deserialize, Serialize};

use super::{SizeMismatch, same_size};

/// The boundary tolerance as a fraction of the image diagonal (the toolkit's `bound_th`).
pub const BOUNDARY_FRACTION: f64 = 0.008;

/// The label the DAVIS annotations use for "void" pixels, left out of J and F.
pub const VOID_LABEL: u8 = 255;

/// A label map: one object id per pixel (0 = background), row-major.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub width: usize,
    pub height: usize,
    pub ids: &'a [u8],
}

/// Region similarity: |pred & truth| / |pred | truth| over the pixels not in `void`; 1 when both
/// are empty (the toolkit's rule, so that an absent object predicted absent scores perfectly).
pub fn jaccard(truth: &[bool], pred: &[bool], void: Option<&[bool]>) -> Result<f64, SizeMismatch> {
    same_size("frame", truth.len(), pred.len())?;
    let (mut intersection, mut union) = (0u64, 0u64);
    for (i, (&t, &p)) in truth.iter().zip(pred).enumerate() {
        if void.is_some_and(|v| v[i]) {
            continue;
        }
        intersection += u64::from(t && p);
        union += u64::from(t || p);
    }
    Ok(if union == 0 { 1.0 } else { intersection as f64 / union as f64 })
}

/// The toolkit's one-pixel boundary map (`seg2bmap`): a pixel is on the boundary when it differs
/// from its right, lower or lower-right neighbour; in the last row only the right neighbour counts,
/// in the last column only the lower one, and the bottom-right pixel never is.
pub fn boundary_map(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let at = |x: usize, y: usize| mask[y * width + x];
    let mut map = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let v = at(x, y);
            let last_row = y + 1 == height;
            let last_col = x + 1 == width;
            map[y * width + x] = match (last_row, last_col) {
                (true, true) => false,
                (true, false) => v != at(x + 1, y),
                (false, true) => v != at(x, y + 1),
                (false, false) => v != at(x + 1, y) || v != at(x, y + 1) || v != at(x + 1, y + 1),
            };
        }
    }
    map
}

/// The dilation radius in pixels: `ceil(0.008 * diagonal)` (8 for 480 x 854 frames).
pub fn boundary_radius(width: usize, height: usize) -> usize {
    (BOUNDARY_FRACTION * (width as f64).hypot(height as f64)).ceil() as usize
}

/// Dilation by skimage's `disk(radius)` (offsets with dx² + dy² <= r²), pixels outside the image
/// left out, as OpenCV's `dilate` does with its default border. Stamped from the set pixels only,
/// since boundary maps are sparse.
pub fn dilate(map: &[bool], width: usize, height: usize, radius: usize) -> Vec<bool> {
    let r = radius as i64;
    // Half-width of the disk in each row offset dy.
    let spans: Vec<i64> =
        (-r..=r).map(|dy| (0..=r).take_while(|dx| dx * dx + dy * dy <= r * r).count() as i64 - 1).collect();
    let mut out = vec![false; map.len()];
    for (i, _) in map.iter().enumerate().filter(|(_, set)| **set) {
        let (x, y) = ((i % width) as i64, (i / width) as i64);
        for (dy, &half) in (-r..=r).zip(&spans) {
            let row = y + dy;
            if row < 0 || row >= height as i64 {
                continue;
            }
            let from = (x - half).max(0) as usize;
            let to = (x + half).min(width as i64 - 1) as usize;
            let base = row as usize * width;
            out[base + from..=base + to].fill(true);
        }
    }
    out
}

/// The boundary F-measure of `pred` against `truth` (the toolkit's `f_measure`, `bound_th` 0.008):
/// boundary pixels of each within [`boundary_radius`] of the other's count as matched;
/// F = 2PR / (P + R). Void pixels are cleared from both masks first.
pub fn f_measure(
    truth: &[bool],
    pred: &[bool],
    width: usize,
    height: usize,
    void: Option<&[bool]>,
) -> Result<f64, SizeMismatch> {
    same_size("frame", truth.len(), pred.len())?;
    same_size("frame size", width * height, truth.len())?;
    let keep = |mask: &[bool]| -> Vec<bool> {
        mask.iter().enumerate().map(|(i, &v)| v && !void.is_some_and(|void| void[i])).collect()
    };
    let pred_boundary = boundary_map(&keep(pred), width, height);
    let truth_boundary = boundary_map(&keep(truth), width, height);
    let radius = boundary_radius(width, height);
    let pred_dilated = dilate(&pred_boundary, width, height, radius);
    let truth_dilated = dilate(&truth_boundary, width, height, radius);
    let count = |map: &[bool]| map.iter().filter(|&&v| v).count();
    let matched =
        |boundary: &[bool], other: &[bool]| boundary.iter().zip(other).filter(|(b, o)| **b && **o).count();
    let (n_pred, n_truth) = (count(&pred_boundary), count(&truth_boundary));
    let (precision, recall) = match (n_pred, n_truth) {
        (0, 0) => (1.0, 1.0),
        (0, _) => (1.0, 0.0),
        (_, 0) => (0.0, 1.0),
        _ => (
            matched(&pred_boundary, &truth_dilated) as f64 / n_pred as f64,
            matched(&truth_boundary, &pred_dilated) as f64 / n_truth as f64,
        ),
    };
    Ok(if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) })
}

/// Mean, recall (fraction of frames above 0.5) and decay of one object's per-frame scores, as the
/// toolkit's `db_statistics` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub mean: f64,
    pub recall: f64,
    /// Mean of the first quarter of the frames minus the mean of the last quarter (quarters as
    /// the toolkit cuts them, overlapping by one frame); NaN with fewer than 4 frames.
    pub decay: f64,
}

impl Statistics {
    pub fn of(values: &[f64]) -> Self {
        let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        let above: Vec<f64> = values.iter().map(|&v| f64::from(u8::from(v > 0.5))).collect();
        // ids = round(linspace(1, n, 5) + 1e-10) - 1; bin i = values[ids[i]..=ids[i + 1]].
        let n = values.len() as f64;
        let ids: Vec<usize> = (0..5)
            .map(|i| ((1.0 + i as f64 * (n - 1.0) / 4.0) + 1e-10).round().max(1.0) as usize - 1)
            .collect();
        let bin = |i: usize| {
            let end = (ids[i + 1] + 1).min(values.len());
            &values[ids[i].min(end)..end]
        };
        Self { mean: mean(values), recall: mean(&above), decay: mean(bin(0)) - mean(bin(3)) }
    }
}

/// One object's scores over a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectScores {
    pub j: Statistics,
    pub f: Statistics,
    /// Per evaluated frame (the second to the second-to-last).
    pub j_frames: Vec<f64>,
    pub f_frames: Vec<f64>,
}

/// Why a sequence cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error("{0}")]
    Size(#[from] SizeMismatch),
    #[error("a sequence needs at least 3 frames (the first and the last are not scored), got {0}")]
    TooShort(usize),
    #[error("{predictions} predicted frames for {annotations} annotated ones")]
    FrameCount { annotations: usize, predictions: usize },
    #[error("the first frame's annotation holds no object")]
    NoObject,
}

/// The number of objects of a sequence: the largest id in its first annotation (void excluded),
/// as the toolkit counts them.
pub fn object_count(first: &Labels<'_>) -> usize {
    first.ids.iter().filter(|&&v| v != VOID_LABEL).max().copied().map_or(0, usize::from)
}

/// J and F for every object `1..=object_count(truth[0])` over frames `1..n-1`. Void pixels (255)
/// of each annotation are left out; ids in the prediction above the object count are background.
pub fn score_sequence(truth: &[Labels<'_>], pred: &[Labels<'_>]) -> Result<Vec<ObjectScores>, SequenceError> {
    if truth.len() != pred.len() {
        return Err(SequenceError::FrameCount { annotations: truth.len(), predictions: pred.len() });
    }
    if truth.len() < 3 {
        return Err(SequenceError::TooShort(truth.len()));
    }
    let objects = object_count(&truth[0]);
    if objects == 0 {
        return Err(SequenceError::NoObject);
    }
    let mut scores: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); objects];
    for (t, p) in truth.iter().zip(pred).take(truth.len() - 1).skip(1) {
        same_size("frame", t.ids.len(), p.ids.len())?;
        same_size("frame size", t.width * t.height, t.ids.len())?;
        let void: Vec<bool> = t.ids.iter().map(|&v| v == VOID_LABEL).collect();
        let void = void.contains(&true).then_some(void.as_slice());
        for (object, (j, f)) in scores.iter_mut().enumerate() {
            let id = object as u8 + 1;
            let truth_mask: Vec<bool> = t.ids.iter().map(|&v| v == id).collect();
            let pred_mask: Vec<bool> = p.ids.iter().map(|&v| v == id).collect();
            j.push(jaccard(&truth_mask, &pred_mask, void)?);
            f.push(f_measure(&truth_mask, &pred_mask, t.width, t.height, void)?);
        }
    }
    Ok(scores
        .into_iter()
        .map(|(j_frames, f_frames)| ObjectScores {
            j: Statistics::of(&j_frames),
            f: Statistics::of(&f_frames),
            j_frames,
            f_frames,
        })
        .collect())
}

/// The toolkit's global row: each statistic averaged over all objects of all sequences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub jf_mean: f64,
    pub j: Statistics,
    pub f: Statistics,
}

impl Summary {
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a ObjectScores>) -> Option<Self> {
        let objects: Vec<&ObjectScores> = objects.into_iter().collect();
        if objects.is_empty() {
            return None;
        }
        let mean = |pick: &dyn Fn(&ObjectScores) -> f64| {
            objects.iter().map(|o| pick(o)).sum::<f64>() / objects.len() as f64
        };
        let j = Statistics {
            mean: mean(&|o| o.j.mean),
            recall: mean(&|o| o.j.recall),
            decay: mean(&|o| o.j.decay),
        };
        let f = Statistics {
            mean: mean(&|o| o.f.mean),
            recall: mean(&|o| o.f.recall),
            decay: mean(&|o| o.f.decay),
        };
        Some(Self { jf_mean: (j.mean + f.mean) / 2.0, j, f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(width: usize, height: usize, x0: usize, y0: usize, side: usize) -> Vec<bool> {
        (0..width * height)
            .map(|i| (x0..x0 + side).contains(&(i % width)) && (y0..y0 + side).contains(&(i / width)))
            .collect()
    }

    #[test]
    fn jaccard_of_two_empty_masks_is_one() {
        assert_eq!(jaccard(&[false; 4], &[false; 4], None).unwrap(), 1.0);
        assert_eq!(
            jaccard(&[true, true, false, false], &[true, false, true, false], None).unwrap(),
            1.0 / 3.0
        );
        let void = [false, true, true, false];
        assert_eq!(
            jaccard(&[true, true, false, false], &[true, false, true, false], Some(&void)).unwrap(),
            1.0
        );
    }

    #[test]
    fn boundary_is_the_inner_edge_toward_the_origin() {
        // A 2 x 2 square at (1, 1) in 4 x 4: seg2bmap marks pixels whose right, lower or
        // lower-right neighbour differs.
        let map = boundary_map(&square(4, 4, 1, 1, 2), 4, 4);
        let marked: Vec<usize> = map.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect();
        assert_eq!(marked, vec![0, 1, 2, 4, 6, 8, 9, 10]);
    }

    #[test]
    fn dilation_is_a_disk() {
        let mut map = vec![false; 49];
        map[24] = true;
        let out = dilate(&map, 7, 7, 2);
        // Radius 2: 13 pixels (5 + 3 + 3 + 1 + 1), the corners of the 5 x 5 square excluded.
        assert_eq!(out.iter().filter(|&&v| v).count(), 13);
        assert!(out[24 - 2] && out[24 + 14] && out[24 + 8] && !out[24 + 16]);
        assert_eq!(boundary_radius(854, 480), 8);
    }

    #[test]
    fn f_measure_rewards_a_shift_within_the_tolerance_only() {
        // 128 x 128: radius ceil(0.008 * 181.02) = 2.
        let truth = square(128, 128, 40, 40, 30);
        assert_eq!(f_measure(&truth, &truth, 128, 128, None).unwrap(), 1.0);
        let near = square(128, 128, 42, 40, 30);
        assert_eq!(f_measure(&truth, &near, 128, 128, None).unwrap(), 1.0);
        let far = square(128, 128, 50, 40, 30);
        assert!(f_measure(&truth, &far, 128, 128, None).unwrap() < 0.6);
        assert_eq!(f_measure(&truth, &vec![false; 128 * 128], 128, 128, None).unwrap(), 0.0);
    }

    #[test]
    fn statistics_follow_the_toolkit_bins() {
        // 5 frames: ids = [0, 1, 2, 3, 4]; first bin values[0..=1], last values[3..=4].
        let s = Statistics::of(&[1.0, 0.8, 0.6, 0.4, 0.2]);
        assert!((s.mean - 0.6).abs() < 1e-12);
        assert!((s.recall - 0.6).abs() < 1e-12);
        assert!((s.decay - (0.9 - 0.3)).abs() < 1e-12);
    }

    #[test]
    fn sequences_skip_the_first_and_last_frames_and_count_objects_from_the_first() {
        let frames: Vec<Vec<u8>> =
            vec![vec![1, 2, 0, 0], vec![1, 2, 0, 0], vec![1, 0, 2, 0], vec![0, 0, 0, 0]];
        let truth: Vec<Labels> = frames.iter().map(|ids| Labels { width: 2, height: 2, ids }).collect();
        let wrong = vec![0u8; 4];
        let mut pred = truth.clone();
        pred[0] = Labels { width: 2, height: 2, ids: &wrong };
        pred[3] = Labels { width: 2, height: 2, ids: &wrong };
        let scores = score_sequence(&truth, &pred).unwrap();
        assert_eq!(scores.len(), 2);
        assert_eq!(scores[0].j_frames, vec![1.0, 1.0]);
        let summary = Summary::of(&scores).unwrap();
        assert_eq!(summary.jf_mean, 1.0);
        assert!(matches!(score_sequence(&truth[..2], &pred[..2]), Err(SequenceError::TooShort(2))));
        assert!(matches!(score_sequence(&truth, &pred[..3]), Err(SequenceError::FrameCount { .. })));
    }
}
