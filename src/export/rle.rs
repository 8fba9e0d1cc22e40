//! COCO's run-length encoding of a binary mask (docs/MODEL.md §18.2), as `pycocotools.mask.encode`
//! makes it: pixels in column-major order (down each column, then the next column), alternating
//! run lengths starting with a run of zeros (0 when the first pixel is set), and the compressed
//! string form of `pycocotools`' `rleToString`.

use super::components::Components;

/// A column-major run-length encoded mask of `height x width` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    /// Alternating runs of 0s and 1s, starting with 0s; they sum to `height * width`.
    pub counts: Vec<u64>,
}

impl Rle {
    /// One RLE per component of `components`, in their order, from a single column-major pass.
    pub fn of_components(components: &Components) -> Vec<Rle> {
        let (w, h) = (components.width as usize, components.height as usize);
        // Per component: its runs of ones as (start, length) in column-major positions.
        let mut runs: Vec<Vec<(u64, u64)>> = vec![Vec::new(); components.list.len()];
        for x in 0..w {
            for y in 0..h {
                let id = components.ids[y * w + x];
                if id == 0 {
                    continue;
                }
                let position = (x * h + y) as u64;
                let own = &mut runs[id as usize - 1];
                match own.last_mut() {
                    Some((start, length)) if *start + *length == position => *length += 1,
                    _ => own.push((position, 1)),
                }
            }
        }
        let total = (w * h) as u64;
        runs.into_iter()
            .map(|ones| {
                let mut counts = Vec::with_capacity(ones.len() * 2 + 1);
                let mut end = 0;
                for (start, length) in ones {
                    counts.push(start - end);
                    counts.push(length);
                    end = start + length;
                }
                if end < total {
                    counts.push(total - end);
                }
                Rle { height: components.height, width: components.width, counts }
            })
            .collect()
    }

    /// Pixels set (`pycocotools.mask.area`).
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).sum()
    }

    /// The compressed string of `pycocotools`' `rleToString`: each count from the third on is
    /// stored as its difference to the count two before, then written 5 bits at a time, low bits
    /// first, as characters `48 + c` where bit `0x20` of `c` says another group follows and bit
    /// `0x10` of the last group is the sign.
    pub fn to_coco_string(&self) -> String {
        let mut out = String::new();
        for (i, &count) in self.counts.iter().enumerate() {
            let mut x = count as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = x & 0x1f;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                out.push(char::from(48 + c as u8));
                if !more {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClassMap;

    #[test]
    fn runs_go_down_the_columns_and_start_with_zeros() {
        // 3 x 2 (width 3, height 2):  1 0 1
        //                             1 0 0
        let map = ClassMap::new(3, 2, vec![1, 0, 1, 1, 0, 0]).unwrap();
        let rle = Rle::of_components(&Components::of(&map, 1));
        // 4-connected or not, the left column and the top-right pixel are apart.
        assert_eq!(rle.len(), 2);
        assert_eq!(rle[0].counts, [0, 2, 4]);
        assert_eq!(rle[1].counts, [4, 1, 1]);
        assert_eq!((rle[0].area(), rle[1].area()), (2, 1));
        // Small counts are one character each: 48 + count.
        assert_eq!(rle[0].to_coco_string(), "024");
    }

    #[test]
    fn large_and_negative_differences_use_several_groups() {
        let rle = Rle { height: 1, width: 1, counts: vec![100, 3, 40, 1] };
        // 100 = 0b11_00100: group 4 with "more" -> 48 + 0x24 = 'T', then 3 -> '3'; 3 -> '3';
        // 40: 8 | 0x20 -> 'X', then 1 -> '1'; the fourth is 1 - 3 = -2: 0x1e, sign set -> 'N'.
        // (pycocotools gives "T33X1N" for this mask.)
        assert_eq!(rle.to_coco_string(), "T33X1N");
    }
}
