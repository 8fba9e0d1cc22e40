//! SAM's pixels on both sides of the model, as transformers' `SamProcessor` does them with its
//! PIL image processor (`SamImageProcessorPil`, docs/MODEL.md §25.4): the longest side resized to
//! the model's side (Pillow BILINEAR), rescaled, normalised and zero-padded at the bottom and the
//! right; prompt coordinates scaled the same way; the low-resolution logits upscaled to the padded
//! side, cropped to the resized image, resized to the original and thresholded at 0.

use super::image_io::RgbImage;
use super::preprocess::{ChwImage, normalize_image};
use super::resize::resize_bilinear;

/// Where an image sits in the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamFrame {
    /// `(height, width)` of the image as given.
    pub original: (usize, usize),
    /// `(height, width)` after the resize: the longest side equals `side`.
    pub resized: (usize, usize),
    /// The model input's side (1024 for the released models).
    pub side: usize,
}

impl SamFrame {
    /// `_get_preprocess_shape`: `scale = side / longest` and each side `int(size * scale + 0.5)`,
    /// in `f64`.
    pub fn new((height, width): (usize, usize), side: usize) -> Self {
        let scale = side as f64 / height.max(width) as f64;
        let round = |v: usize| (v as f64 * scale + 0.5) as usize;
        Self { original: (height, width), resized: (round(height), round(width)), side }
    }

    /// A point of the original image in model-input pixels: `x * new_w / old_w`, `y * new_h /
    /// old_h`, in `f64`, as the processor scales points and box corners.
    pub fn to_model(&self, x: f64, y: f64) -> (f64, f64) {
        let (oh, ow) = self.original;
        let (nh, nw) = self.resized;
        (x * (nw as f64 / ow as f64), y * (nh as f64 / oh as f64))
    }
}

/// The model input `(3, side, side)`: the image resized (Pillow BILINEAR on 8-bit values),
/// rescaled and normalised as for SegGPT ([`normalize_image`]), and zero-padded at the bottom and
/// the right.
pub fn sam_input(image: &RgbImage, frame: &SamFrame) -> ChwImage {
    let (h, w) = frame.resized;
    let resized = resize_bilinear(image.as_raw(), image.width() as usize, image.height() as usize, 3, w, h);
    let resized = RgbImage::new(w as u32, h as u32, resized).expect("the resize gives w x h pixels");
    let normalized = normalize_image(&resized);
    let side = frame.side;
    let mut data = vec![0f32; 3 * side * side];
    for c in 0..3 {
        for (y, row) in normalized.plane(c).chunks_exact(w).enumerate() {
            data[(c * side + y) * side..][..w].copy_from_slice(row);
        }
    }
    ChwImage::new(3, side, side, data).expect("a non-empty square image")
}

/// torch's `F.interpolate(mode="bilinear", align_corners=False)` (no antialias) of one `f32`
/// plane, in its `f32` arithmetic: source `max((i + 0.5) * in / out - 0.5, 0)`, the lower index
/// and its weight, the upper index clamped to the edge.
pub fn interpolate_bilinear(
    src: &[f32],
    (height, width): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    let taps = |input: usize, output: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|i| {
                let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let lower = (real as usize).min(input - 1);
                let upper = (lower + 1).min(input - 1);
                let lambda1 = (real - lower as f32).min(1.0);
                (lower, upper, 1.0 - lambda1, lambda1)
            })
            .collect()
    };
    let rows = taps(height, out_h);
    let cols = taps(width, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, hy0, hy1) in &rows {
        for &(x0, x1, wx0, wx1) in &cols {
            let at = |y: usize, x: usize| src[y * width + x];
            out.push(
                hy0 * (wx0 * at(y0, x0) + wx1 * at(y0, x1)) + hy1 * (wx0 * at(y1, x0) + wx1 * at(y1, x1)),
            );
        }
    }
    out
}

/// `post_process_masks` without the threshold: one mask's low-resolution logits (`low_side`
/// square) to logits over the original image, row-major.
pub fn mask_logits_at_original(low_res: &[f32], low_side: usize, frame: &SamFrame) -> Vec<f32> {
    let side = frame.side;
    let padded = interpolate_bilinear(low_res, (low_side, low_side), (side, side));
    let (h, w) = frame.resized;
    let cropped: Vec<f32> = (0..h).flat_map(|y| padded[y * side..y * side + w].iter().copied()).collect();
    interpolate_bilinear(&cropped, (h, w), frame.original)
}

/// Inside the mask: the logit above 0 (the processor's `mask_threshold`).
pub fn threshold(logits: &[f32]) -> Vec<bool> {
    logits.iter().map(|&v| v > 0.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_side_becomes_the_model_side() {
        let frame = SamFrame::new((37, 50), 64);
        assert_eq!(frame.resized, (47, 64)); // 37 * 1.28 = 47.36
        assert_eq!(SamFrame::new((1500, 2250), 1024).resized, (683, 1024));
        let (x, y) = frame.to_model(50.0, 37.0);
        assert_eq!((x, y), (64.0, 47.0));
    }

    #[test]
    fn bilinear_interpolation_keeps_constants_and_corners() {
        let src = vec![2.5f32; 12];
        assert!(interpolate_bilinear(&src, (3, 4), (7, 9)).iter().all(|&v| v == 2.5));
        // Upscaling by two: the first output sits a quarter pixel before the first input's
        // centre, clamped to it.
        let src = [0.0f32, 4.0];
        assert_eq!(interpolate_bilinear(&src, (1, 2), (1, 4)), vec![0.0, 1.0, 3.0, 4.0]);
    }
}
