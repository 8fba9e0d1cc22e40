//! The image pipeline: bytes in, model tensors out, and model output back to pixels.
//!
//! Data flows one way (docs/MODEL.md §2, §3, §8):
//!
//! ```text
//! bytes ──image_io──▶ RgbImage / ClassMap ──preprocess──▶ ChwImage (3,448,448, ImageNet-normalised)
//!                                                            │ model
//! PNG bytes ◀──image_io── RgbImage / ClassMap ◀──postprocess─┘ ChwImage (3,448,448)
//! ```
//!
//! Everything here is plain Rust over byte and `f32` buffers, shared by the CLI and the browser
//! so that both feed the model the same numbers. The reference pipelines are the official
//! SegGPT code and Hugging Face's `SegGptImageProcessor` (PIL backend); each step reproduces
//! them exactly where that is possible:
//!
//! - [`resize`]: Pillow's `BICUBIC` and `NEAREST` resizes byte for byte, and torch's legacy
//!   `F.interpolate(mode="nearest")` index for index (docs/MODEL.md §3.4, §3.5, §8.2).
//! - [`preprocess`]: HF's float32 rescale-then-normalise (docs/MODEL.md §3.3).
//! - [`palette`]: HF's `build_palette` / `mask_to_rgb` (docs/MODEL.md §3.7).
//! - [`spatial`]: the spatial ensemble's grid prompt (docs/MODEL.md §14).
//! - [`postprocess`]: HF's `post_process_semantic_segmentation`
//!   (docs/MODEL.md §8.1, §8.3).
//! - [`tiles`]: tiled inference for large targets: the tiles' layout and how their results are
//!   put back together (docs/MODEL.md §27).
//! - [`overlay`], [`propagation`], [`davis`]: the official overlay, the masks a video keeps for
//!   its next frames, and class maps in the DAVIS annotation format (docs/MODEL.md §13).
//! - [`image_io`]: decoding like PIL's `Image.open(f).convert("RGB")` (docs/MODEL.md §3.6). JPEG
//!   is the one input that is not bit-exact: `zune-jpeg` is not libjpeg-turbo (IDCT and chroma
//!   upsampling differ; a few levels at some pixels).
//!
//! Every fallible step returns an [`InputError`] that says what is wrong and what to do.

pub mod davis;
pub mod image_io;
pub mod overlay;
pub mod palette;
pub mod postprocess;
pub mod preprocess;
pub mod propagation;
pub mod resize;
pub mod sam;
pub mod spatial;
pub mod tiles;

pub use davis::{davis_palette, encode_palette_png};
pub use image_io::{
    ClassMap, RgbImage, check_image, decode_class_map, decode_rgb, encode_gray_png, encode_rgb_png,
};
pub use overlay::{OFFICIAL_OPACITY, overlay};
pub use palette::{build_palette, mask_to_rgb};
pub use postprocess::{class_map, denormalize, mean_intensity, to_rgb_u8, upsample};
pub use preprocess::{ChwImage, normalize_image, prepare_image, prepare_mask_classes, prepare_mask_rgb};
pub use propagation::{BINARY_THRESHOLD, binary_mask, mask_colours, snap_to_colours};
pub use spatial::{grid_side, spatial_grid};
pub use tiles::{Tile, Tiling};

/// ImageNet channel means (R, G, B) applied after scaling to [0, 1] (docs/MODEL.md §3).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B) (docs/MODEL.md §3).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest width or height accepted from a file, in pixels.
pub const MAX_DIMENSION: u32 = 16_384;
/// Largest total pixel count accepted from a file (64 Mi pixels, e.g. 8192 x 8192).
pub const MAX_PIXELS: u64 = 1 << 26;
/// Most classes a class map can hold: it is 8-bit, and 0 is the background.
pub const MAX_LABELS: usize = 255;
/// Largest image file accepted, in bytes: far above any photo of [`MAX_PIXELS`], and a bound on
/// what is read into memory for one input.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest buffer a decoder may allocate (64 Mi pixels of 16-bit RGBA).
pub const MAX_DECODE_BYTES: u64 = MAX_PIXELS * 8;

/// Why an input could not be turned into model tensors or output pixels.
///
/// `name` fields carry the caller's label for the input (a file name, or "prompt mask"), so
/// the message can point at the file the user has to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The bytes are not a PNG or JPEG that can be decoded.
    #[error("{name}: not a readable image ({reason}); supply a PNG or JPEG file")]
    NotAnImage { name: String, reason: String },

    /// The file ends before the image does: decoders would fill the missing part with grey.
    #[error(
        "{name}: the image file is truncated ({detail}); its missing part would be filled with grey, \
         so it is refused. Copy or export the file again"
    )]
    Truncated { name: String, detail: String },

    /// The file is larger than any image accepted ([`MAX_FILE_BYTES`]).
    #[error("{name}: {bytes} bytes is too large for an image file (limit: {max} bytes)")]
    FileTooLarge { name: String, bytes: u64, max: u64 },

    /// The header announces more pixels than are decoded safely.
    #[error(
        "{name}: {width}x{height} pixels is too large to decode safely (limits: {max_side} pixels \
         per side, {max_pixels} pixels in total); downscale the image first"
    )]
    TooLarge { name: String, width: u64, height: u64, max_side: u32, max_pixels: u64 },

    /// The image decodes, but its pixel format cannot be converted to RGB the way PIL would
    /// without destroying it.
    #[error("{name}: unsupported pixel format: {detail}")]
    UnsupportedFormat { name: String, detail: String },

    /// The file is not a usable class-index mask (wrong colour type, bit depth or format).
    #[error("{name}: unsupported class-index mask: {detail}")]
    UnsupportedMask { name: String, detail: String },

    /// A class-index mask holds a value that the palette for `num_labels` cannot colour.
    #[error(
        "class-index mask: value {value} at pixel (x={x}, y={y}) is larger than num_labels = \
         {num_labels}; pass num_labels >= {value}, or fix the mask (0 is background, classes are \
         1..=num_labels)"
    )]
    ClassOutOfRange { value: u8, x: u32, y: u32, num_labels: usize },

    /// Class maps are 8-bit, so a palette can have at most 256 entries (background + 255).
    #[error("num_labels = {num_labels} is too many: class maps are 8-bit, so at most 255 labels")]
    TooManyLabels { num_labels: usize },

    /// A raw buffer does not hold `width * height * channels` values, or a size is zero.
    #[error(
        "{what}: a {width}x{height} image with {channels} channel(s) needs {expected} values, got \
         {actual} (width and height must be at least 1)"
    )]
    BadBuffer { what: String, width: usize, height: usize, channels: usize, expected: usize, actual: usize },

    /// A prompt's mask is not the size of its image: stretching it would move every edge.
    #[error(
        "{mask} is {mask_width}x{mask_height} pixels but its image {image} is {width}x{height}; a prompt's \
         mask must be its image's size"
    )]
    PromptMaskSize { mask: String, mask_width: u32, mask_height: u32, image: String, width: u32, height: u32 },

    /// A prompt mask that marks nothing: every output made from it would be meaningless.
    #[error("{name}: the prompt mask marks no object ({detail})")]
    EmptyPromptMask { name: String, detail: String },

    /// A grey mask of small values read as colours: a class-index mask given without its class
    /// count, which would be read as near-black colours.
    #[error(
        "{name}: the mask holds only grey values 0 to {largest}, which read as colours are near-black; \
         it looks like a class-index mask: pass the number of classes (--num-labels {largest}), or paint \
         the mask in colours"
    )]
    ClassIndexMaskAsColours { name: String, largest: u8 },

    /// PNG encoding failed (only for sizes the PNG format cannot express).
    #[error("could not encode a {width}x{height} PNG: {reason}")]
    Encode { width: u32, height: u32, reason: String },
}

/// Rejects sizes beyond [`MAX_DIMENSION`] / [`MAX_PIXELS`] before any pixel buffer is allocated.
pub(crate) fn check_dimensions(name: &str, width: u32, height: u32) -> Result<(), InputError> {
    let too_large =
        width > MAX_DIMENSION || height > MAX_DIMENSION || u64::from(width) * u64::from(height) > MAX_PIXELS;
    if too_large {
        return Err(InputError::TooLarge {
            name: name.to_owned(),
            width: u64::from(width),
            height: u64::from(height),
            max_side: MAX_DIMENSION,
            max_pixels: MAX_PIXELS,
        });
    }
    if width == 0 || height == 0 {
        return Err(InputError::NotAnImage {
            name: name.to_owned(),
            reason: format!("it declares an empty {width}x{height} image"),
        });
    }
    Ok(())
}

/// Checks that `len == width * height * channels` with non-zero sizes.
pub(crate) fn check_buffer(
    what: &str,
    width: usize,
    height: usize,
    channels: usize,
    len: usize,
) -> Result<(), InputError> {
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    match expected {
        Some(expected) if expected == len && width > 0 && height > 0 && channels > 0 => Ok(()),
        _ => Err(InputError::BadBuffer {
            what: what.to_owned(),
            width,
            height,
            channels,
            expected: expected.unwrap_or(usize::MAX),
            actual: len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_over_the_side_limit_are_too_large() {
        let err = check_dimensions("big.png", MAX_DIMENSION + 1, 1).unwrap_err();
        assert!(matches!(err, InputError::TooLarge { width, .. } if width == 16_385));
        assert!(err.to_string().contains("big.png"));
        assert!(err.to_string().contains("downscale"));
    }

    #[test]
    fn dimensions_over_the_pixel_limit_are_too_large() {
        // 16384 x 8192 = 128 Mi pixels: each side is allowed, the total is not.
        let err = check_dimensions("wide.png", 16_384, 8_192).unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }));
        assert!(check_dimensions("ok.png", 8_192, 8_192).is_ok());
    }

    #[test]
    fn buffer_length_must_match_the_shape() {
        assert!(check_buffer("x", 2, 3, 3, 18).is_ok());
        assert!(matches!(
            check_buffer("x", 2, 3, 3, 17),
            Err(InputError::BadBuffer { expected: 18, actual: 17, .. })
        ));
        assert!(check_buffer("x", 0, 3, 3, 0).is_err());
    }
}
