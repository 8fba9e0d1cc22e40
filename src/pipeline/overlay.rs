//! The official overlay: the frame or target darkened outside the mask and tinted inside it
//! (docs/MODEL.md §8.4, §13).

use super::InputError;
use super::image_io::RgbImage;

/// The mask's weight in the official overlay, `image * (0.6 * mask / 255 + 0.4)`.
pub const OFFICIAL_OPACITY: f64 = 0.6;

/// `image * (opacity * mask / 255 + (1 - opacity))` per channel in `f64`, truncated to 8 bits as
/// numpy's `astype(np.uint8)` does; with [`OFFICIAL_OPACITY`] this is the official engine's
/// overlay (`1 - 0.6` is exactly the double `0.4`). The official code blends the fractional
/// prediction; from the 8-bit mask the result is at most one level lower.
///
/// Fails when `mask` is not the size of `image`.
pub fn overlay(image: &RgbImage, mask: &RgbImage, opacity: f64) -> Result<RgbImage, InputError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    if (mask.width(), mask.height()) != (image.width(), image.height()) {
        return Err(InputError::BadBuffer {
            what: format!(
                "overlay mask of {}x{} pixels (it must be the image's size)",
                mask.width(),
                mask.height()
            ),
            width,
            height,
            channels: 3,
            expected: width * height * 3,
            actual: mask.as_raw().len(),
        });
    }
    let data = image
        .as_raw()
        .iter()
        .zip(mask.as_raw())
        .map(|(&v, &m)| (f64::from(v) * (opacity * f64::from(m) / 255.0 + (1.0 - opacity))) as u8)
        .collect();
    RgbImage::new(image.width(), image.height(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keeps_white_areas_and_darkens_black_ones() {
        let image = RgbImage::new(2, 1, vec![200, 100, 255, 200, 100, 255]).unwrap();
        let mask = RgbImage::new(2, 1, vec![255, 255, 255, 0, 128, 0]).unwrap();
        let out = overlay(&image, &mask, OFFICIAL_OPACITY).unwrap();
        // White keeps the pixel; black leaves 40 %; 128 gives 100 * (0.6 * 128 / 255 + 0.4) = 70.1.
        assert_eq!(out.as_raw(), &[200, 100, 255, 80, 70, 102]);
    }

    #[test]
    fn overlay_refuses_a_mask_of_another_size() {
        let image = RgbImage::new(2, 1, vec![0; 6]).unwrap();
        let mask = RgbImage::new(1, 2, vec![0; 6]).unwrap();
        let err = overlay(&image, &mask, OFFICIAL_OPACITY).unwrap_err();
        assert!(err.to_string().contains("1x2"), "{err}");
    }
}
