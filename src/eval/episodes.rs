//! Few-shot episodes: one query and N supports of the same class, drawn with a seed so that a
//! protocol can be repeated anywhere (docs/MODEL.md §15.1).
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, 2014), integers in a range by rejection so
//! that no value is favoured: plain 64-bit integer arithmetic, the same numbers on every platform
//! and in every build. Each class draws from its own stream, seeded by the run's seed and the
//! class name, so adding or removing a class leaves the other classes' episodes unchanged.

use serde::{Deserialize, Serialize};

use crate::fnv::fnv1a64;

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n >= 1`): draws above the largest multiple of `n` are
    /// rejected, so every value is equally likely.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "an empty range has no value");
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fisher-Yates: `items` in a uniformly random order.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// An image and its mask, as paths relative to the data folder (or absolute).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sample {
    pub image: String,
    pub mask: String,
}

/// One few-shot episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub class: String,
    pub query: Sample,
    pub supports: Vec<Sample>,
    /// The mask value that marks the class (class-index masks: COCO-20i, PASCAL-5i); without it,
    /// a mask pixel is foreground when its grey level is at least 128 (binary masks: FSS-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// A mask value left out of the score (PASCAL's boundary label 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<u8>,
}

/// Why episodes cannot be drawn for a class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "class `{class}` has {available} image(s); an episode needs {needed} (a query and {shots} support(s))"
)]
pub struct TooFewSamples {
    pub class: String,
    pub available: usize,
    pub needed: usize,
    pub shots: usize,
}

/// `per_class` episodes of `class`: the queries are the class's samples in a seeded random order
/// (cycling through all before any repeats, so `per_class` = the class size uses each image once
/// as the query, as HSNet's FSS-1000 protocol does); each query's `shots` supports are drawn
/// without replacement from the class's other samples.
pub fn draw_class(
    class: &str,
    samples: &[Sample],
    shots: usize,
    per_class: usize,
    seed: u64,
) -> Result<Vec<Episode>, TooFewSamples> {
    if samples.len() < shots + 1 {
        return Err(TooFewSamples {
            class: class.to_owned(),
            available: samples.len(),
            needed: shots + 1,
            shots,
        });
    }
    let mut rng = SplitMix64::new(seed ^ fnv1a64(class.as_bytes()));
    let mut order: Vec<usize> = (0..samples.len()).collect();
    rng.shuffle(&mut order);
    Ok((0..per_class)
        .map(|i| {
            let query = order[i % order.len()];
            let mut others: Vec<usize> = (0..samples.len()).filter(|&s| s != query).collect();
            // A partial shuffle: the first `shots` places are a uniform draw without replacement.
            for place in 0..shots {
                let pick = place + rng.below((others.len() - place) as u64) as usize;
                others.swap(place, pick);
            }
            Episode {
                class: class.to_owned(),
                query: samples[query].clone(),
                supports: others[..shots].iter().map(|&s| samples[s].clone()).collect(),
                label: None,
                ignore: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<Sample> {
        (1..=n).map(|i| Sample { image: format!("{i}.jpg"), mask: format!("{i}.png") }).collect()
    }

    #[test]
    fn splitmix64_matches_its_reference_sequence() {
        // The first outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn episodes_are_repeatable_and_never_support_their_query() {
        let a = draw_class("cat", &samples(10), 5, 25, 7).unwrap();
        assert_eq!(a, draw_class("cat", &samples(10), 5, 25, 7).unwrap());
        assert_ne!(a, draw_class("cat", &samples(10), 5, 25, 8).unwrap());
        for episode in &a {
            assert_eq!(episode.supports.len(), 5);
            assert!(!episode.supports.contains(&episode.query));
            let mut names: Vec<_> = episode.supports.iter().map(|s| &s.image).collect();
            names.dedup();
            assert_eq!(names.len(), 5, "supports are distinct");
        }
    }

    #[test]
    fn as_many_episodes_as_images_uses_each_image_once_as_the_query() {
        let episodes = draw_class("dog", &samples(10), 1, 10, 3).unwrap();
        let mut queries: Vec<_> = episodes.iter().map(|e| e.query.image.clone()).collect();
        queries.sort();
        queries.dedup();
        assert_eq!(queries.len(), 10);
    }

    #[test]
    fn a_class_too_small_for_the_shots_is_an_error() {
        let err = draw_class("bird", &samples(3), 3, 1, 0).unwrap_err();
        assert_eq!(err.needed, 4);
        assert!(err.to_string().contains("`bird` has 3 image(s)"), "{err}");
        assert!(draw_class("bird", &[], 1, 1, 0).is_err());
    }
}
