//! The masks a video propagation keeps for its next frames (docs/MODEL.md §13): the official binary
//! threshold, and this project's snapping to the prompts' colours.

use std::collections::BTreeSet;

use super::image_io::RgbImage;
use super::postprocess::class_map;
use super::preprocess::ChwImage;
use super::{InputError, MAX_LABELS};

/// The channel-mean threshold of the official video loop: `mean over RGB > 128`.
pub const BINARY_THRESHOLD: f32 = 128.0;

/// The official propagated mask (docs/MODEL.md §13): white where the channel mean of the
/// denormalised prediction (0..=255) exceeds 128, black elsewhere. The mean is
/// `((r + g) + b) / 3` in `f32` (the official code works in `f64`: a mean within about 1e-5 of
/// 128 may land on the other side).
///
/// Panics if `values` does not have 3 channels.
pub fn binary_mask(values: &ChwImage) -> RgbImage {
    assert_eq!(values.channels(), 3, "expected a 3-channel (RGB) planar image");
    let (r, g, b) = (values.plane(0), values.plane(1), values.plane(2));
    let data = r
        .iter()
        .zip(g)
        .zip(b)
        .flat_map(|((&r, &g), &b)| {
            let v = if ((r + g) + b) / 3.0 > BINARY_THRESHOLD { 255 } else { 0 };
            [v, v, v]
        })
        .collect();
    RgbImage::new(values.width() as u32, values.height() as u32, data)
        .expect("same shape as a valid ChwImage")
}

/// The colours prompt masks are drawn in, for [`snap_to_colours`]: black (the background) first,
/// then every other colour that occurs in `masks`, in ascending `(r, g, b)` order.
///
/// `None` beyond [`MAX_LABELS`] colours besides black: such a mask is not a few flat colours (a
/// JPEG-compressed mask, say), and snapping to it would keep its noise.
pub fn mask_colours<'a>(masks: impl IntoIterator<Item = &'a RgbImage>) -> Option<Vec<[u8; 3]>> {
    let mut colours = BTreeSet::new();
    for mask in masks {
        for px in mask.as_raw().chunks_exact(3) {
            if px != [0, 0, 0] && colours.insert([px[0], px[1], px[2]]) && colours.len() > MAX_LABELS {
                return None;
            }
        }
    }
    Some(std::iter::once([0, 0, 0]).chain(colours).collect())
}

/// Every pixel of the denormalised prediction (0..=255) replaced by the nearest of `colours` by
/// squared RGB distance, ties to the earlier colour: the rule of [`class_map`] with `colours` as
/// the palette. Pass [`mask_colours`] of the prompts, so that each object keeps its own colour
/// from frame to frame.
///
/// Fails with [`InputError::TooManyLabels`] for more than 256 colours. Panics if `values` does
/// not have 3 channels.
pub fn snap_to_colours(values: &ChwImage, colours: &[[u8; 3]]) -> Result<RgbImage, InputError> {
    let classes = class_map(values, colours)?;
    let data = classes.as_raw().iter().flat_map(|&c| colours[usize::from(c)]).collect();
    RgbImage::new(values.width() as u32, values.height() as u32, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chw(r: &[f32], g: &[f32], b: &[f32]) -> ChwImage {
        ChwImage::new(3, 1, r.len(), [r, g, b].concat()).unwrap()
    }

    #[test]
    fn binary_mask_thresholds_the_channel_mean_strictly() {
        // Means: 128 (not above), 128.33, 255, 85 (one bright channel is not enough).
        let values =
            chw(&[128.0, 129.0, 255.0, 255.0], &[128.0, 128.0, 255.0, 0.0], &[128.0, 128.0, 255.0, 0.0]);
        let mask = binary_mask(&values);
        assert_eq!(mask.as_raw(), &[0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn mask_colours_lists_black_then_the_others_in_order() {
        let a = RgbImage::new(3, 1, vec![255, 0, 0, 0, 0, 0, 0, 255, 0]).unwrap();
        let b = RgbImage::new(2, 1, vec![255, 0, 0, 0, 0, 255]).unwrap();
        assert_eq!(mask_colours([&a, &b]).unwrap(), vec![[0, 0, 0], [0, 0, 255], [0, 255, 0], [255, 0, 0]]);
        // A black mask has the background only.
        let black = RgbImage::new(1, 1, vec![0, 0, 0]).unwrap();
        assert_eq!(mask_colours([&black]).unwrap(), vec![[0, 0, 0]]);
    }

    #[test]
    fn mask_colours_refuses_a_noisy_mask() {
        let data: Vec<u8> =
            (0..=MAX_LABELS as u32).flat_map(|i| [1 + (i % 250) as u8, (i / 250) as u8, 0]).collect();
        let noisy = RgbImage::new(MAX_LABELS as u32 + 1, 1, data).unwrap();
        assert_eq!(mask_colours([&noisy]), None);
        let fewer = RgbImage::new(MAX_LABELS as u32, 1, noisy.as_raw()[3..].to_vec()).unwrap();
        assert_eq!(mask_colours([&fewer]).map(|c| c.len()), Some(MAX_LABELS + 1));
    }

    #[test]
    fn snap_picks_the_nearest_prompt_colour() {
        let colours = [[0, 0, 0], [0, 0, 255], [255, 0, 0]];
        let values = chw(&[20.0, 200.0, 90.0], &[10.0, 40.0, 0.0], &[30.0, 60.0, 200.0]);
        let snapped = snap_to_colours(&values, &colours).unwrap();
        assert_eq!(snapped.as_raw(), &[0, 0, 0, 255, 0, 0, 0, 0, 255]);
    }
}
