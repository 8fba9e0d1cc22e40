//! `--shard I/N`: which targets one of N workers labels (docs/MODEL.md §18.6).
//!
//! A target belongs to share `fnv1a64(path) % N`, its path taken relative to the targets' folder
//! with `/` separators. A target's share depends on its own path only, so every worker agrees on
//! it whatever order or listing it sees (a file added while a job runs changes no other file's
//! share), and the shares are disjoint and cover every target.

use serde::{Deserialize, Serialize};

use crate::fnv::fnv1a64;

/// The most shares a run may be split into: Kubernetes' limit on an indexed job's completions,
/// far beyond any Slurm array in use. The bound keeps what scales with the count small (a merge
/// tracks every share; a message names the missing ones) whatever a share file claims.
pub const MAX_SHARES: u32 = 100_000;

/// Share `index` of `count` (`0 <= index < count <= MAX_SHARES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N`: whole numbers, `N` at least 1 and `I` from 0 to `N - 1`, as Slurm array
    /// indices and Kubernetes' `JOB_COMPLETION_INDEX` count.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a share: write I/N, I from 0 to N - 1 (e.g. 0/4 to 3/4)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) =
            (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        let shard = Shard { index, count };
        shard.check()?;
        Ok(shard)
    }

    /// Refuses a share that [`Shard::parse`] would not give: a count of 0 or above
    /// [`MAX_SHARES`], an index not below the count (what a hand-edited file may claim).
    pub fn check(&self) -> Result<(), String> {
        let Shard { index, count } = *self;
        if count == 0 || count > MAX_SHARES {
            return Err(format!(
                "share {index}/{count} is of {count} shares; a run is split into 1 to {MAX_SHARES} shares"
            ));
        }
        if index >= count {
            return Err(format!(
                "share {index}/{count} is not a share: the index runs from 0 to {}",
                count - 1
            ));
        }
        Ok(())
    }

    /// Whether the target at `relative_path` (`/`-separated bytes) is in this share.
    pub fn takes(&self, relative_path: &[u8]) -> bool {
        fnv1a64(relative_path) % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_from_i_slash_n_and_refuse_anything_else() {
        assert_eq!(Shard::parse("0/4"), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(Shard::parse("3/4").unwrap().to_string(), "3/4");
        for bad in ["4/4", "1/0", "-1/4", "1", "a/b", "1/2/3", ""] {
            assert!(Shard::parse(bad).unwrap_err().contains("I from 0 to N - 1"), "{bad}");
        }
        assert!(Shard::parse("99999/100000").is_ok());
        for too_many in ["0/100001", "0/4294967295"] {
            assert!(Shard::parse(too_many).unwrap_err().contains("1 to 100000 shares"), "{too_many}");
        }
    }

    #[test]
    fn a_recorded_share_outside_its_count_or_bound_is_refused() {
        for (index, count) in [(3, 3), (0, 0), (0, u32::MAX), (u32::MAX, 7)] {
            assert!(Shard { index, count }.check().is_err(), "{index}/{count}");
        }
        assert!(Shard { index: 2, count: 3 }.check().is_ok());
    }

    #[test]
    fn every_path_is_in_exactly_one_share() {
        let paths: Vec<String> = (0..200).map(|i| format!("folder/{i}.png")).collect();
        let shares: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        let mut sizes = [0; 3];
        for path in &paths {
            let owners: Vec<u32> =
                shares.iter().filter(|s| s.takes(path.as_bytes())).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{path}: {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        // FNV spreads names that differ in a digit or two: no share is far from a third.
        assert!(sizes.iter().all(|&n| (45..=90).contains(&n)), "{sizes:?}");
    }
}
