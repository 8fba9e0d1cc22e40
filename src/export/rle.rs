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

    /// The mask of a compressed string (`pycocotools`' `rleFrString`, the inverse of
    /// [`Rle::to_coco_string`]) of `height x width` pixels. Refused, where pycocotools would read
    /// garbage: a character outside the encoding, a string that ends inside a count, a count too
    /// long for 64 bits or negative, and runs that do not cover exactly `height * width` pixels.
    pub fn from_coco_string(text: &str, height: u32, width: u32) -> Result<Rle, String> {
        let bytes = text.as_bytes();
        let mut counts: Vec<u64> = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let mut x: i64 = 0;
            let mut groups = 0;
            loop {
                let Some(&byte) = bytes.get(at) else {
                    return Err("its counts string ends inside a count".into());
                };
                if !(48..48 + 64).contains(&byte) {
                    return Err(format!(
                        "its counts string has `{}` at byte {at}, which is not a character of COCO's RLE \
                         encoding",
                        char::from(byte).escape_default()
                    ));
                }
                // Twelve 5-bit groups hold 60 bits: any count of an image fits in far fewer.
                if groups == 12 {
                    return Err(format!("count {} of its counts string is too long", counts.len() + 1));
                }
                let c = i64::from(byte - 48);
                x |= (c & 0x1f) << (5 * groups);
                at += 1;
                groups += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1 << (5 * groups);
                    }
                    break;
                }
            }
            if counts.len() > 2 {
                x = i64::try_from(counts[counts.len() - 2])
                    .ok()
                    .and_then(|before| x.checked_add(before))
                    .unwrap_or(-1);
            }
            let count = u64::try_from(x)
                .map_err(|_| format!("count {} of its counts string is negative", counts.len() + 1))?;
            counts.push(count);
        }
        let pixels = u64::from(height) * u64::from(width);
        let covered = counts.iter().try_fold(0u64, |sum, &count| sum.checked_add(count));
        if covered != Some(pixels) {
            let covered = covered.map_or("more than 2^64".into(), |n| n.to_string());
            return Err(format!(
                "its runs cover {covered} pixels, not the {pixels} of its size {height} x {width}"
            ));
        }
        Ok(Rle { height, width, counts })
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

    #[test]
    fn compressed_strings_decode_to_their_runs_and_broken_ones_are_refused() {
        let rle = Rle { height: 12, width: 12, counts: vec![100, 3, 40, 1] };
        assert_eq!(Rle::from_coco_string("T33X1N", 12, 12), Ok(rle));
        let map = ClassMap::new(3, 2, vec![1, 0, 1, 1, 0, 0]).unwrap();
        for rle in Rle::of_components(&Components::of(&map, 1)) {
            assert_eq!(Rle::from_coco_string(&rle.to_coco_string(), 2, 3), Ok(rle));
        }
        let error = |text: &str| Rle::from_coco_string(text, 2, 3).unwrap_err();
        assert!(error("023").contains("5 pixels, not the 6"), "{}", error("023"));
        assert!(error("T").contains("ends inside a count"));
        assert!(error("0~").contains("`~` at byte 1"));
        assert!(error("02ü").contains("at byte 2"));
        assert!(error("0o").contains("ends inside"), "{}", error("0o"));
        assert!(error("022@").contains("negative"), "{}", error("022@"));
        assert!(error(&"o".repeat(13)).contains("too long"));
    }
}
