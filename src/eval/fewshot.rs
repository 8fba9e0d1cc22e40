//! Few-shot segmentation scores as HSNet (Min et al., 2021) accumulates them, which the few-shot
//! literature and SegGPT's FSS-1000 / COCO-20i numbers follow (docs/MODEL.md §15.1):
//!
//! - per episode, the intersection and the union of the foreground and of the background;
//! - per class, IoU = (summed foreground intersections) / max(summed foreground unions, 1) over
//!   that class's episodes; mIoU = the mean of the class IoUs;
//! - FB-IoU = the mean of the foreground IoU and the background IoU, each from the intersections
//!   and unions summed over every episode of every class.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SizeMismatch, same_size};

/// Pixel counts of one episode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeAreas {
    pub fg_intersection: u64,
    pub fg_union: u64,
    pub bg_intersection: u64,
    pub bg_union: u64,
}

impl EpisodeAreas {
    /// Counts from per-pixel foreground flags; pixels where `ignore` is set count in neither
    /// intersection nor union (PASCAL-5i's boundary label 255, as HSNet leaves it out).
    pub fn measure(pred: &[bool], truth: &[bool], ignore: Option<&[bool]>) -> Result<Self, SizeMismatch> {
        same_size("episode mask", truth.len(), pred.len())?;
        if let Some(ignore) = ignore {
            same_size("ignore mask", truth.len(), ignore.len())?;
        }
        let mut areas = Self::default();
        for (i, (&p, &t)) in pred.iter().zip(truth).enumerate() {
            if ignore.is_some_and(|ignore| ignore[i]) {
                continue;
            }
            areas.fg_intersection += u64::from(p && t);
            areas.fg_union += u64::from(p || t);
            areas.bg_intersection += u64::from(!p && !t);
            areas.bg_union += u64::from(!p || !t);
        }
        Ok(areas)
    }

    /// Checks counts read back (a resumed run's results file) against what [`Self::measure`] can
    /// give for a mask of `pixels` pixels: each intersection within its union, and the
    /// foreground and background sides each covering the same scored pixels (`fg_union +
    /// bg_intersection` and `bg_union + fg_intersection` both count every scored pixel once),
    /// at most `pixels`.
    pub fn check(&self, pixels: u64) -> Result<(), ImpossibleCounts> {
        let impossible = |why: String| Err(ImpossibleCounts(why));
        for (side, intersection, union) in
            [("fg", self.fg_intersection, self.fg_union), ("bg", self.bg_intersection, self.bg_union)]
        {
            if intersection > union {
                return impossible(format!(
                    "{side}_intersection {intersection} is more than {side}_union {union}"
                ));
            }
        }
        let fg_side = self.fg_union.checked_add(self.bg_intersection);
        let bg_side = self.bg_union.checked_add(self.fg_intersection);
        match (fg_side, bg_side) {
            (Some(a), Some(b)) if a != b => impossible(format!(
                "fg_union + bg_intersection is {a} but bg_union + fg_intersection is {b}; both count \
                 the scored pixels"
            )),
            (Some(a), Some(_)) if a > pixels => {
                impossible(format!("the counts cover {a} pixels but the query has {pixels}"))
            }
            (Some(_), Some(_)) => Ok(()),
            _ => impossible("the counts overflow".into()),
        }
    }

    fn add(&mut self, other: &Self) {
        self.fg_intersection += other.fg_intersection;
        self.fg_union += other.fg_union;
        self.bg_intersection += other.bg_intersection;
        self.bg_union += other.bg_union;
    }
}

/// Counts no episode can give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("impossible counts: {0}")]
pub struct ImpossibleCounts(String);

/// `intersection / max(union, 1)`: HSNet's guard, which scores a class no episode ever marked as 0.
fn iou(intersection: u64, union: u64) -> f64 {
    intersection as f64 / union.max(1) as f64
}

/// Sums of [`EpisodeAreas`] per class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FewShotScores {
    classes: BTreeMap<String, (EpisodeAreas, usize)>,
}

impl FewShotScores {
    pub fn add(&mut self, class: &str, areas: &EpisodeAreas) {
        let (sum, episodes) = self.classes.entry(class.to_owned()).or_default();
        sum.add(areas);
        *episodes += 1;
    }

    /// `(class, IoU, episodes)` in class-name order.
    pub fn class_ious(&self) -> Vec<(&str, f64, usize)> {
        self.classes
            .iter()
            .map(|(name, (sum, episodes))| (name.as_str(), iou(sum.fg_intersection, sum.fg_union), *episodes))
            .collect()
    }

    /// The mean of the class IoUs; `None` before any episode.
    pub fn miou(&self) -> Option<f64> {
        let ious = self.class_ious();
        (!ious.is_empty()).then(|| ious.iter().map(|(_, iou, _)| iou).sum::<f64>() / ious.len() as f64)
    }

    /// The mean of the foreground and background IoU over all episodes; `None` before any.
    pub fn fb_iou(&self) -> Option<f64> {
        if self.classes.is_empty() {
            return None;
        }
        let mut total = EpisodeAreas::default();
        for (sum, _) in self.classes.values() {
            total.add(sum);
        }
        Some((iou(total.fg_intersection, total.fg_union) + iou(total.bg_intersection, total.bg_union)) / 2.0)
    }

    pub fn episodes(&self) -> usize {
        self.classes.values().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_count_both_classes_and_skip_ignored_pixels() {
        let pred = [true, true, false, false];
        let truth = [true, false, true, false];
        let areas = EpisodeAreas::measure(&pred, &truth, None).unwrap();
        assert_eq!(areas, EpisodeAreas { fg_intersection: 1, fg_union: 3, bg_intersection: 1, bg_union: 3 });
        let ignore = [false, true, false, false];
        let areas = EpisodeAreas::measure(&pred, &truth, Some(&ignore)).unwrap();
        assert_eq!(areas, EpisodeAreas { fg_intersection: 1, fg_union: 2, bg_intersection: 1, bg_union: 2 });
        assert!(EpisodeAreas::measure(&pred, &truth[..3], None).is_err());
    }

    #[test]
    fn counts_read_back_are_checked_against_what_measure_gives() {
        let pred = [true, true, false, false, true];
        let truth = [true, false, true, false, false];
        let areas = EpisodeAreas::measure(&pred, &truth, None).unwrap();
        assert_eq!(areas.check(5), Ok(()));
        assert!(areas.check(4).unwrap_err().to_string().contains("query has 4"));
        let more = EpisodeAreas { fg_intersection: 9, ..areas };
        assert!(more.check(5).unwrap_err().to_string().contains("fg_intersection 9 is more than fg_union"));
        let uneven = EpisodeAreas { bg_union: areas.bg_union + 1, ..areas };
        assert!(uneven.check(5).unwrap_err().to_string().contains("both count"));
        let huge = EpisodeAreas { fg_union: u64::MAX, bg_intersection: 1, bg_union: u64::MAX, ..areas };
        assert!(huge.check(5).unwrap_err().to_string().contains("overflow"));
    }

    #[test]
    fn class_iou_sums_before_dividing() {
        // Two episodes of one class: 1/1 and 0/3 average to 0.5 per episode, but HSNet sums
        // first: 1/4.
        let mut scores = FewShotScores::default();
        scores.add("cat", &EpisodeAreas { fg_intersection: 1, fg_union: 1, bg_intersection: 3, bg_union: 3 });
        scores.add("cat", &EpisodeAreas { fg_intersection: 0, fg_union: 3, bg_intersection: 1, bg_union: 4 });
        scores.add("dog", &EpisodeAreas { fg_intersection: 0, fg_union: 0, bg_intersection: 4, bg_union: 4 });
        let ious = scores.class_ious();
        assert_eq!(ious, vec![("cat", 0.25, 2), ("dog", 0.0, 1)]);
        assert_eq!(scores.miou(), Some(0.125));
        // Foreground 1/4, background 8/11.
        assert!((scores.fb_iou().unwrap() - (0.25 + 8.0 / 11.0) / 2.0).abs() < 1e-15);
        assert_eq!(scores.episodes(), 3);
        assert_eq!(FewShotScores::default().miou(), None);
    }
}
