//! Which training pairs each step uses: a pure function of the seed and the step number, so a
//! resumed run draws exactly the batches an uninterrupted one would have.

/// The indices of the `batch` training pairs (of `pairs`) that step `step` (from 0) uses.
///
/// With `batch == pairs` every step uses all pairs in the order given. Otherwise the pairs are
/// gone through in epochs, each a permutation drawn from `(seed, epoch)`, `batch` at a time; a
/// batch that crosses an epoch's end continues into the next permutation.
pub fn batch_indices(pairs: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    assert!(pairs > 0 && (1..=pairs).contains(&batch), "1 <= batch <= pairs");
    if batch == pairs {
        return (0..pairs).collect();
    }
    let first = step * batch as u64;
    let mut epoch = u64::MAX;
    let mut order = Vec::new();
    (first..first + batch as u64)
        .map(|position| {
            if position / pairs as u64 != epoch {
                epoch = position / pairs as u64;
                order = permutation(pairs, seed, epoch);
            }
            order[(position % pairs as u64) as usize]
        })
        .collect()
}

/// A Fisher-Yates shuffle of `0..n` driven by SplitMix64 seeded from `(seed, epoch)`.
fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut state = seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (split_mix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// SplitMix64 (Steele, Lea and Flood): a small generator that is the same on every platform.
fn split_mix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_is_every_pair_in_order() {
        for step in 0..3 {
            assert_eq!(batch_indices(4, 4, 7, step), vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn each_epoch_uses_every_pair_once() {
        // 6 pairs, batches of 3: steps 2k and 2k+1 make epoch k.
        for epoch in 0..4 {
            let mut seen: Vec<usize> = (0..2).flat_map(|s| batch_indices(6, 3, 42, 2 * epoch + s)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..6).collect::<Vec<_>>());
        }
    }

    #[test]
    fn batches_depend_on_the_seed_and_repeat_for_the_same_seed() {
        let draw = |seed| (0..8).flat_map(|s| batch_indices(10, 3, seed, s)).collect::<Vec<_>>();
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn a_batch_crossing_an_epoch_continues_in_the_next_permutation() {
        // 5 pairs, batches of 2: step 2 takes the last of epoch 0 and the first of epoch 1.
        let epoch0 = permutation(5, 3, 0);
        let epoch1 = permutation(5, 3, 1);
        assert_eq!(batch_indices(5, 2, 3, 2), vec![epoch0[4], epoch1[0]]);
    }
}
