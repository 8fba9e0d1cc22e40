//! The class palette that turns class-index masks into RGB prompts and back (docs/MODEL.md §3.7).

use super::InputError;
use super::image_io::{ClassMap, RgbImage};

/// HF's `build_palette(num_labels)` (from Painter's `define_colors_by_mean_sep`), docs/MODEL.md §3.7:
/// entry 0 is black (background), entry `c = loc + 1` for `loc in 0..num_labels` is
/// `(255 - r * margin, 255 - g * margin, 255 - b * margin)` with
/// `r = loc / base^2`, `g = (loc % base^2) / base`, `b = loc % base`, `margin = 256 / base`,
/// `base = int(num_labels ** (1/3)) + 1`.
///
/// Returns `num_labels + 1` colours.
///
/// Worked values: `num_labels = 1` -> black, white; `num_labels = 3` -> black, white,
/// (255,255,127), (255,127,255).
pub fn build_palette(num_labels: usize) -> Vec<[u8; 3]> {
    let base = python_int_cube_root(num_labels) + 1;
    let margin = 256 / base;
    let channel = |steps: usize| -> u8 {
        // steps < base, so steps * margin <= 256 - margin <= 255 whenever margin > 0.
        255 - u8::try_from(steps * margin).unwrap_or(255)
    };
    let mut palette = Vec::with_capacity(num_labels + 1);
    palette.push([0, 0, 0]);
    for loc in 0..num_labels {
        let r = loc / (base * base);
        let g = (loc % (base * base)) / base;
        let b = loc % base;
        palette.push([channel(r), channel(g), channel(b)]);
    }
    palette
}

/// `int(n ** (1/3))` exactly as CPython computes it, without floating point.
///
/// `1/3` as a double is `1/3 - 1/(3 * 2^54)`, so `n ** (1/3)` lands slightly below the true cube
/// root. For a perfect cube `k^3` the correctly rounded result is `k` only for `k <= 3`
/// (`64 ** (1/3) = 3.9999999999999996`, `125 ** (1/3) = 4.999999999999999`): the shortfall
/// `k ln k / 2^54` exceeds half an ulp of `k` from `k = 4` on. Elsewhere the integer part is the
/// integer cube root (for `n` below about `10^15`). Doing this in integers keeps the palette
/// identical on every platform, whatever its `pow` rounds to; the rule was checked against
/// CPython for every `n < 2_000_000`.
fn python_int_cube_root(n: usize) -> usize {
    let n = n as u128;
    let mut k = (n as f64).cbrt() as u128;
    while k * k * k > n {
        k -= 1;
    }
    while (k + 1) * (k + 1) * (k + 1) <= n {
        k += 1;
    }
    let k = if k * k * k == n && k >= 4 { k - 1 } else { k };
    k as usize
}

/// HF's `mask_to_rgb` (docs/MODEL.md §3.7): every pixel of class `c` becomes `palette[c]`; without a
/// palette the class value is repeated into R, G and B (so a 0/1 mask becomes nearly black,
/// which is why `num_labels` should be given).
///
/// A class value with no palette entry (greater than `num_labels = palette.len() - 1`) is an
/// [`InputError::ClassOutOfRange`]; HF fails with an `IndexError` there.
pub fn mask_to_rgb(mask: &ClassMap, palette: Option<&[[u8; 3]]>) -> Result<RgbImage, InputError> {
    let values = mask.as_raw();
    let mut data = Vec::with_capacity(values.len() * 3);
    match palette {
        Some(palette) => {
            for (i, &v) in values.iter().enumerate() {
                let Some(colour) = palette.get(usize::from(v)) else {
                    let width = mask.width() as usize;
                    return Err(InputError::ClassOutOfRange {
                        value: v,
                        x: (i % width) as u32,
                        y: (i / width) as u32,
                        num_labels: palette.len().saturating_sub(1),
                    });
                };
                data.extend_from_slice(colour);
            }
        }
        None => data.extend(values.iter().flat_map(|&v| [v, v, v])),
    }
    RgbImage::new(mask.width(), mask.height(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_worked_values_from_the_spec() {
        assert_eq!(build_palette(1), [[0, 0, 0], [255, 255, 255]]);
        assert_eq!(build_palette(3), [[0, 0, 0], [255, 255, 255], [255, 255, 127], [255, 127, 255]]);
        assert_eq!(build_palette(0), [[0, 0, 0]]);
    }

    #[test]
    fn palette_for_64_labels_uses_base_4() {
        // 64 ** (1/3) = 3.9999999999999996 in Python -> base 4, margin 64.
        let p = build_palette(64);
        assert_eq!(p.len(), 65);
        assert_eq!(p[1], [255, 255, 255]);
        assert_eq!(p[2], [255, 255, 191]);
        assert_eq!(p[64], [63, 63, 63]);
    }

    #[test]
    fn cube_root_matches_python_at_perfect_cubes() {
        // Values printed by CPython: int(n ** (1/3)).
        let python = [
            (0, 0),
            (1, 1),
            (7, 1),
            (8, 2),
            (26, 2),
            (27, 3),
            (63, 3),
            (64, 3),
            (65, 4),
            (125, 4),
            (216, 5),
            (343, 6),
            (1000, 9),
        ];
        for (n, expected) in python {
            assert_eq!(python_int_cube_root(n), expected, "n = {n}");
        }
    }

    #[test]
    fn palette_colours_are_distinct() {
        for n in [1, 2, 7, 8, 20, 64, 150, 255] {
            let p = build_palette(n);
            let mut sorted = p.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), n + 1, "num_labels = {n}");
        }
    }

    #[test]
    fn mask_to_rgb_uses_the_palette_or_repeats_values() {
        let mask = ClassMap::new(3, 1, vec![0, 2, 1]).unwrap();
        let palette = build_palette(3);
        let rgb = mask_to_rgb(&mask, Some(&palette)).unwrap();
        assert_eq!(rgb.as_raw(), &[0, 0, 0, 255, 255, 127, 255, 255, 255]);
        let rgb = mask_to_rgb(&mask, None).unwrap();
        assert_eq!(rgb.as_raw(), &[0, 0, 0, 2, 2, 2, 1, 1, 1]);
    }

    #[test]
    fn class_value_above_num_labels_is_out_of_range() {
        let mask = ClassMap::new(2, 2, vec![0, 1, 1, 4]).unwrap();
        let err = mask_to_rgb(&mask, Some(&build_palette(3))).unwrap_err();
        assert!(matches!(err, InputError::ClassOutOfRange { value: 4, x: 1, y: 1, num_labels: 3 }), "{err}");
        assert!(err.to_string().contains("num_labels"));
    }
}
