//! Images and prompt masks to the model's input tensors (docs/MODEL.md §2, §3).
//!
//! The numbers follow HF's PIL backend (`SegGptImageProcessor`): Pillow resize on `uint8`, then
//! `rescale` (`(uint8 as f64 * (1/255)) as f32`), then `normalize` (`(x - mean) / std` in `f32`).
//! The official code does the same arithmetic in `f64` and casts at the end; the two differ by
//! at most one `f32` ulp.

use super::image_io::{ClassMap, RgbImage};
use super::palette::{build_palette, mask_to_rgb};
use super::resize::{resize_bicubic, resize_nearest};
use super::{IMAGENET_MEAN, IMAGENET_STD, InputError, check_buffer};

/// HF's `rescale_factor`, `1/255` as a Python float.
const RESCALE_FACTOR: f64 = 1.0 / 255.0;

/// A planar `f32` image, channel-major then row-major (CHW), as the model consumes and
/// produces it (docs/MODEL.md §2).
#[derive(Clone, Debug, PartialEq)]
pub struct ChwImage {
    channels: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

impl ChwImage {
    /// Wraps `channels * height * width` values in CHW order (sizes at least 1).
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Self, InputError> {
        check_buffer("planar image", width, height, channels, data.len())?;
        Ok(Self { channels, height, width, data })
    }

    /// Number of channels (3 for every image the pipeline makes).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// All values, CHW.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// One channel's `height * width` values, row-major.
    pub fn plane(&self, channel: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[channel * n..(channel + 1) * n]
    }
}

/// Rescales to [0, 1] and ImageNet-normalises an RGB image into CHW `f32` (docs/MODEL.md §3.3),
/// with HF's operation order and precision: `x = (v as f64 * (1/255)) as f32`, then
/// `(x - mean) / std` in `f32`.
pub fn normalize_image(image: &RgbImage) -> ChwImage {
    let plane = image.width() as usize * image.height() as usize;
    let mut data = vec![0f32; plane * 3];
    for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            let x = (f64::from(v) * RESCALE_FACTOR) as f32;
            data[c * plane + i] = (x - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    ChwImage { channels: 3, height: image.height() as usize, width: image.width() as usize, data }
}

/// A query or prompt image to model input: Pillow BICUBIC resize to `height x width` (448 x 448
/// for the released model), then [`normalize_image`] (docs/MODEL.md §3.3, §3.4).
///
/// Fails only for a zero target size.
pub fn prepare_image(image: &RgbImage, height: u32, width: u32) -> Result<ChwImage, InputError> {
    let resized = resize_bicubic(
        image.as_raw(),
        image.width() as usize,
        image.height() as usize,
        3,
        width as usize,
        height as usize,
    );
    Ok(normalize_image(&RgbImage::new(width, height, resized)?))
}

/// An RGB colour prompt mask (the official format: colour = class or instance, black =
/// background) to model input: Pillow NEAREST resize, then [`normalize_image`]
/// (docs/MODEL.md §3.1; HF with `do_convert_rgb=False`, §3.2).
///
/// Fails only for a zero target size.
pub fn prepare_mask_rgb(mask: &RgbImage, height: u32, width: u32) -> Result<ChwImage, InputError> {
    let resized = resize_nearest(
        mask.as_raw(),
        mask.width() as usize,
        mask.height() as usize,
        3,
        width as usize,
        height as usize,
    );
    Ok(normalize_image(&RgbImage::new(width, height, resized)?))
}

/// A class-index prompt mask to model input, as HF does with `do_convert_rgb=True`
/// (docs/MODEL.md §3.2, §3.7): [`mask_to_rgb`] through `build_palette(num_labels)` (or by repeating
/// the value when `num_labels` is `None`), then Pillow NEAREST resize and [`normalize_image`].
///
/// Fails with [`InputError::ClassOutOfRange`] when a value exceeds `num_labels`.
pub fn prepare_mask_classes(
    mask: &ClassMap,
    num_labels: Option<usize>,
    height: u32,
    width: u32,
) -> Result<ChwImage, InputError> {
    let palette = num_labels.map(build_palette);
    let rgb = mask_to_rgb(mask, palette.as_deref())?;
    prepare_mask_rgb(&rgb, height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_round_like_numpy_float32() {
        // np.array([0.485, ...], dtype=np.float32) rounds the Python doubles; Rust's f32
        // literals round the decimals directly. They must agree.
        let doubles = [0.485f64, 0.456, 0.406, 0.229, 0.224, 0.225];
        let singles = [IMAGENET_MEAN, IMAGENET_STD].concat();
        for (d, s) in doubles.iter().zip(singles) {
            assert_eq!(*d as f32, s);
        }
    }

    #[test]
    fn normalize_is_planar_and_uses_hf_arithmetic() {
        let img = RgbImage::new(2, 1, vec![0, 128, 255, 10, 20, 30]).unwrap();
        let out = normalize_image(&img);
        assert_eq!((out.channels(), out.height(), out.width()), (3, 1, 2));
        let expect = |v: u8, c: usize| ((f64::from(v) / 255.0) as f32 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert_eq!(out.plane(0), &[expect(0, 0), expect(10, 0)]);
        assert_eq!(out.plane(1), &[expect(128, 1), expect(20, 1)]);
        assert_eq!(out.plane(2), &[expect(255, 2), expect(30, 2)]);
        // Black is -mean/std.
        assert!((out.plane(0)[0] - (-0.485 / 0.229)).abs() < 1e-6);
    }

    #[test]
    fn prepare_image_resizes_to_the_target() {
        let img = RgbImage::new(3, 2, vec![50; 18]).unwrap();
        let out = prepare_image(&img, 448, 448).unwrap();
        assert_eq!((out.channels(), out.height(), out.width()), (3, 448, 448));
        let v = ((50.0f64 / 255.0) as f32 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
        assert!(out.plane(1).iter().all(|&x| x == v));
        assert!(prepare_image(&img, 0, 448).is_err());
    }

    #[test]
    fn class_mask_goes_through_the_palette() {
        let mask = ClassMap::new(2, 1, vec![0, 1]).unwrap();
        let out = prepare_mask_classes(&mask, Some(1), 1, 2).unwrap();
        // Class 1 with num_labels = 1 is white.
        let white = (1.0f32 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        let black = (0.0f32 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert_eq!(out.plane(0), &[black, white]);
        // Without num_labels the value 1 is repeated: nearly black.
        let out = prepare_mask_classes(&mask, None, 1, 2).unwrap();
        let one = ((1.0f64 / 255.0) as f32 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert_eq!(out.plane(0), &[black, one]);
    }

    #[test]
    fn class_mask_value_out_of_range_is_an_error() {
        let mask = ClassMap::new(2, 1, vec![0, 5]).unwrap();
        let err = prepare_mask_classes(&mask, Some(2), 448, 448).unwrap_err();
        assert!(matches!(err, InputError::ClassOutOfRange { value: 5, .. }), "{err}");
    }

    #[test]
    fn chw_image_checks_its_length() {
        assert!(ChwImage::new(3, 2, 2, vec![0.0; 12]).is_ok());
        assert!(ChwImage::new(3, 2, 2, vec![0.0; 11]).is_err());
    }
}
