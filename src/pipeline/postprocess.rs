//! The model's predicted mask back to pixels and classes (docs/MODEL.md §8).
//!
//! The input is the query half of the prediction: a planar `(3, 448, 448)` [`ChwImage`],
//! ImageNet-normalised. Arithmetic follows HF's `post_process_semantic_segmentation` in `f32`
//! (docs/MODEL.md §8.1); the official code denormalises in `f64`, which can move a value
//! that lands within about 1e-5 of an integer across it.

use super::image_io::{ClassMap, RgbImage};
use super::preprocess::ChwImage;
use super::resize::interpolate_nearest;
use super::{IMAGENET_MEAN, IMAGENET_STD, InputError};

fn assert_rgb(values: &ChwImage) {
    assert_eq!(values.channels(), 3, "expected a 3-channel (RGB) planar image");
}

/// Undoes the ImageNet normalisation and scales to 0..=255:
/// `clip((v * std + mean) * 255, 0, 255)` per channel, in `f32` and in that order
/// (docs/MODEL.md §8.1). The result stays fractional; see [`to_rgb_u8`].
///
/// Panics if `pred` does not have 3 channels.
pub fn denormalize(pred: &ChwImage) -> ChwImage {
    assert_rgb(pred);
    let mut data = Vec::with_capacity(pred.as_slice().len());
    for c in 0..3 {
        data.extend(
            pred.plane(c)
                .iter()
                .map(|&v| ((v * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0).clamp(0.0, 255.0)),
        );
    }
    ChwImage::new(3, pred.height(), pred.width(), data).expect("same shape as a valid ChwImage")
}

/// Brings values back to the input image's size with torch's legacy
/// `F.interpolate(mode="nearest", size=(height, width))`, as both reference post-processors do
/// (docs/MODEL.md §8.2). Fails only for a zero size.
pub fn upsample(values: &ChwImage, height: u32, width: u32) -> Result<ChwImage, InputError> {
    let data = interpolate_nearest(
        values.as_slice(),
        values.channels(),
        values.height(),
        values.width(),
        height as usize,
        width as usize,
    );
    ChwImage::new(values.channels(), height as usize, width as usize, data)
}

/// Denormalised values (0..=255) to 8-bit RGB by truncation, like torch's `.to(torch.uint8)`
/// and numpy's `.astype(np.uint8)` (docs/MODEL.md §8.1). Values outside 0..=255 saturate.
///
/// Panics if `values` does not have 3 channels.
pub fn to_rgb_u8(values: &ChwImage) -> RgbImage {
    assert_rgb(values);
    let (r, g, b) = (values.plane(0), values.plane(1), values.plane(2));
    let data = r.iter().zip(g).zip(b).flat_map(|((&r, &g), &b)| [r as u8, g as u8, b as u8]).collect();
    RgbImage::new(values.width() as u32, values.height() as u32, data)
        .expect("same shape as a valid ChwImage")
}

/// Maps each pixel of denormalised values (0..=255) to the nearest palette colour: the class
/// index minimising `((r - pr)^2 + (g - pg)^2) + (b - pb)^2` in `f32`, ties to the lowest index
/// (HF `post_process_semantic_segmentation` with `num_labels`, docs/MODEL.md §8.3). Pass
/// `build_palette(num_labels)`.
///
/// Fails with [`InputError::TooManyLabels`] when the palette has more than 256 entries (class
/// maps are 8-bit). Panics if `values` does not have 3 channels.
pub fn class_map(values: &ChwImage, palette: &[[u8; 3]]) -> Result<ClassMap, InputError> {
    assert_rgb(values);
    if palette.len() > 256 {
        return Err(InputError::TooManyLabels { num_labels: palette.len() - 1 });
    }
    let colours: Vec<[f32; 3]> =
        palette.iter().map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]).collect();
    let (r, g, b) = (values.plane(0), values.plane(1), values.plane(2));
    let data = r
        .iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| {
            let mut best = 0usize;
            let mut best_dist = f32::INFINITY;
            for (i, p) in colours.iter().enumerate() {
                let (dr, dg, db) = (r - p[0], g - p[1], b - p[2]);
                let dist = (dr * dr + dg * dg) + db * db;
                if dist < best_dist {
                    best = i;
                    best_dist = dist;
                }
            }
            best as u8
        })
        .collect();
    ClassMap::new(values.width() as u32, values.height() as u32, data)
}

/// The per-pixel channel mean of denormalised values, truncated to an integer: what HF returns
/// without `num_labels` (`mask.mean(dim=0).int()`, docs/MODEL.md §8.3), computed like torch's CPU
/// mean as `((r + g) + b) / 3` in `f32`. The official video path thresholds this at 128 (§8.5).
///
/// Panics if `values` does not have 3 channels.
pub fn mean_intensity(values: &ChwImage) -> ClassMap {
    assert_rgb(values);
    let (r, g, b) = (values.plane(0), values.plane(1), values.plane(2));
    let data = r.iter().zip(g).zip(b).map(|((&r, &g), &b)| (((r + g) + b) / 3.0) as i32 as u8).collect();
    ClassMap::new(values.width() as u32, values.height() as u32, data)
        .expect("same shape as a valid ChwImage")
}

#[cfg(test)]
mod tests {
    use super::super::palette::build_palette;
    use super::*;

    fn chw(h: usize, w: usize, r: &[f32], g: &[f32], b: &[f32]) -> ChwImage {
        ChwImage::new(3, h, w, [r, g, b].concat()).unwrap()
    }

    #[test]
    fn denormalize_inverts_normalisation_and_clips() {
        // Normalised black and white, plus values far outside the range.
        let v = |x: f32, c: usize| (x - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let pred = chw(1, 4, &[v(0.0, 0), v(1.0, 0), -100.0, 100.0], &[0.0; 4], &[0.0; 4]);
        let out = denormalize(&pred);
        let r = out.plane(0);
        assert!(r[0].abs() < 1e-4 && (r[1] - 255.0).abs() < 1e-3);
        assert_eq!((r[2], r[3]), (0.0, 255.0));
        // Exactly the f32 formula for a zero prediction: mean * 255.
        assert_eq!(out.plane(1)[0], (0.0 * IMAGENET_STD[1] + IMAGENET_MEAN[1]) * 255.0);
    }

    #[test]
    fn to_rgb_u8_truncates() {
        let values = chw(1, 2, &[0.99, 254.999], &[12.5, 255.0], &[1.0, 0.0]);
        let rgb = to_rgb_u8(&values);
        assert_eq!(rgb.as_raw(), &[0, 12, 1, 254, 255, 0]);
    }

    #[test]
    fn upsample_uses_legacy_nearest() {
        let values = chw(1, 4, &[0.0, 1.0, 2.0, 3.0], &[0.0; 4], &[0.0; 4]);
        let up = upsample(&values, 1, 3).unwrap();
        assert_eq!(up.plane(0), &[0.0, 1.0, 2.0]);
        assert!(upsample(&values, 0, 3).is_err());
    }

    #[test]
    fn class_map_picks_the_nearest_palette_colour() {
        let palette = build_palette(3); // black, white, (255,255,127), (255,127,255)
        let values = chw(
            1,
            4,
            &[10.0, 250.0, 250.0, 240.0],
            &[10.0, 250.0, 250.0, 130.0],
            &[10.0, 250.0, 120.0, 250.0],
        );
        let map = class_map(&values, &palette).unwrap();
        assert_eq!(map.as_raw(), &[0, 1, 2, 3]);
    }

    #[test]
    fn class_map_ties_go_to_the_lowest_index() {
        // Exactly half way between black (0) and white (1): both at distance 3 * 127.5^2.
        let palette = build_palette(1);
        let values = chw(1, 1, &[127.5], &[127.5], &[127.5]);
        assert_eq!(class_map(&values, &palette).unwrap().as_raw(), &[0]);
        // (255, 191, 191) is 2 * 64^2 from entries 1, 2 and 3 of the 3-label palette: 1 wins.
        let palette = build_palette(3);
        let values = chw(1, 1, &[255.0], &[191.0], &[191.0]);
        assert_eq!(class_map(&values, &palette).unwrap().as_raw(), &[1]);
        // (255, 255, 191) is 64^2 from entries 1 and 2: 1 wins; (255, 191, 255) ties 1 and 3.
        let values = chw(1, 2, &[255.0, 255.0], &[255.0, 191.0], &[191.0, 255.0]);
        assert_eq!(class_map(&values, &palette).unwrap().as_raw(), &[1, 1]);
        // Entries 2 and 3 alone tie at (255, 191, 191) too: the lower one, 2, wins.
        let values = chw(1, 1, &[255.0], &[191.0], &[191.0]);
        assert_eq!(class_map(&values, &palette[2..]).unwrap().as_raw(), &[0]);
    }

    #[test]
    fn class_map_refuses_palettes_beyond_eight_bits() {
        let values = chw(1, 1, &[0.0], &[0.0], &[0.0]);
        let err = class_map(&values, &build_palette(256)).unwrap_err();
        assert!(matches!(err, InputError::TooManyLabels { num_labels: 256 }));
        assert!(class_map(&values, &build_palette(255)).is_ok());
    }

    #[test]
    fn mean_intensity_truncates_the_channel_mean() {
        let values = chw(1, 3, &[255.0, 1.0, 100.0], &[255.0, 1.0, 100.5], &[254.0, 0.5, 100.0]);
        assert_eq!(mean_intensity(&values).as_raw(), &[254, 0, 100]);
    }
}
