//! Decoding user files into pixels and encoding results as PNG (docs/MODEL.md §3.6, §8.1).
//!
//! Functions take bytes, not paths: the browser hands over the file's bytes, the CLI reads the
//! file first, and both end up here.

use std::io::Cursor;

use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat};
use image::{ImageReader, Limits};

use super::{InputError, MAX_DECODE_BYTES, MAX_DIMENSION, MAX_FILE_BYTES, check_buffer, check_dimensions};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R, G, B` (HWC): what PIL's
/// `convert("RGB")` yields and `np.array` sees (docs/MODEL.md §3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps an HWC byte buffer of `width * height * 3` bytes (sizes at least 1).
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, InputError> {
        check_buffer("RGB image", width as usize, height as usize, 3, data.len())?;
        Ok(Self { width, height, data })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The HWC bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }
}

/// A single-channel 8-bit map, rows top to bottom: class indices (a prompt mask or a predicted
/// segmentation), or the mean intensity HF returns without `num_labels` (docs/MODEL.md §3.7, §8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassMap {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl ClassMap {
    /// Wraps a row-major buffer of `width * height` values (sizes at least 1).
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, InputError> {
        check_buffer("class map", width as usize, height as usize, 1, data.len())?;
        Ok(Self { width, height, data })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The row-major values.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }
}

/// Decodes a PNG or JPEG into RGB exactly as PIL's `Image.open(f).convert("RGB")` does, which
/// is how both the official code and HF read every image and RGB mask (docs/MODEL.md §3.1, §3.2).
///
/// - RGBA / LA: the alpha channel is dropped, not composited (PIL ignores it on conversion).
/// - L / LA: the gray value is replicated to R, G and B; 1/2/4-bit gray is scaled to 0..=255.
/// - Palette: expanded through the palette (transparency ignored).
/// - 16-bit RGB(A) and gray+alpha: the high byte of each sample, as PIL's `;16B` unpackers.
/// - 16-bit gray: PIL clips to 255 on conversion; that is kept when every value is at most
///   255 (then it is exact) and refused otherwise, since clipping would whiten the image.
/// - EXIF orientation is not applied (PIL's `open` does not either).
///
/// JPEG goes through `zune-jpeg`, not libjpeg: pixels may differ from PIL by a level or two.
///
/// `name` labels the input in error messages (a file name or e.g. "prompt image").
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage, InputError> {
    check_image(bytes, name)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InputError::NotAnImage { name: name.to_owned(), reason: e.to_string() })?;
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(name, None, e))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(name, width, height)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    decoder.set_limits(limits).map_err(|e| image_error(name, Some((width, height)), e))?;
    let dynamic =
        DynamicImage::from_decoder(decoder).map_err(|e| image_error(name, Some((width, height)), e))?;

    let data = match dynamic {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageRgba8(buf) => drop_alpha(buf.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma8(buf) => replicate_gray(buf.as_raw(), 1, |v| v),
        DynamicImage::ImageLumaA8(buf) => replicate_gray(buf.as_raw(), 2, |v| v),
        DynamicImage::ImageRgb16(buf) => drop_alpha(buf.as_raw(), 3, high_byte),
        DynamicImage::ImageRgba16(buf) => drop_alpha(buf.as_raw(), 4, high_byte),
        DynamicImage::ImageLuma16(buf) => clipped_gray16(name, buf.as_raw(), 1)?,
        // A 16-bit gray PNG with a tRNS chunk also arrives here; PIL opens it as plain 16-bit
        // gray ("I;16", clipped on conversion), while true gray+alpha opens as RGBA from the
        // high bytes.
        DynamicImage::ImageLumaA16(buf) if png_color_type(bytes) == Some(PNG_GRAYSCALE) => {
            clipped_gray16(name, buf.as_raw(), 2)?
        }
        DynamicImage::ImageLumaA16(buf) => replicate_gray(buf.as_raw(), 2, high_byte),
        other => {
            return Err(InputError::UnsupportedFormat {
                name: name.to_owned(),
                detail: format!(
                    "{:?} pixels cannot be converted to 8-bit RGB; save the image as an 8-bit PNG",
                    other.color()
                ),
            });
        }
    };
    RgbImage::new(width, height, data)
}

/// The cheap checks of an image file, without decoding its pixels: at most [`MAX_FILE_BYTES`],
/// a PNG or JPEG, complete (its chunks or markers run to the end-of-image mark), and a declared
/// size within [`MAX_DIMENSION`] / [`MAX_PIXELS`](super::MAX_PIXELS). Returns `(width, height)`.
///
/// The completeness check matters because decoders fill a cut-off JPEG with grey and say
/// nothing; PIL refuses such files ("image file is truncated"), and so does this.
pub fn check_image(bytes: &[u8], name: &str) -> Result<(u32, u32), InputError> {
    check_file_size(bytes, name)?;
    let not_an_image = |reason: String| InputError::NotAnImage { name: name.to_owned(), reason };
    let truncated = |detail: String| InputError::Truncated { name: name.to_owned(), detail };
    match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => {
            // A PNG's size is read straight from its IHDR chunk, which always comes first; an
            // absurd size is the better message even when the file is also cut.
            if let Some((width, height)) = png_dimensions(bytes) {
                check_dimensions(name, width, height)?;
            }
            png_structure(bytes).map_err(truncated)?;
            png_dimensions(bytes).ok_or_else(|| not_an_image("its IHDR chunk is missing".to_owned()))
        }
        Ok(ImageFormat::Jpeg) => {
            jpeg_structure(bytes).map_err(truncated)?;
            let reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Jpeg);
            let (width, height) = reader.into_dimensions().map_err(|e| image_error(name, None, e))?;
            check_dimensions(name, width, height)?;
            Ok((width, height))
        }
        Ok(other) => Err(not_an_image(format!(
            "{} files are not supported",
            other.extensions_str().first().unwrap_or(&"this kind of")
        ))),
        Err(_) => Err(not_an_image("the file format is not recognised".to_owned())),
    }
}

fn check_file_size(bytes: &[u8], name: &str) -> Result<(), InputError> {
    let len = bytes.len() as u64;
    if len > MAX_FILE_BYTES {
        return Err(InputError::FileTooLarge { name: name.to_owned(), bytes: len, max: MAX_FILE_BYTES });
    }
    Ok(())
}

/// Walks a PNG's chunks from the signature to `IEND`; errors where the file ends first.
fn png_structure(bytes: &[u8]) -> Result<(), String> {
    let mut at = PNG_SIGNATURE.len();
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Err(format!("it ends after {} bytes, before its IEND chunk", bytes.len()));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
        // Length, type, data, CRC.
        let end = at.saturating_add(12).saturating_add(len);
        if end > bytes.len() {
            return Err(format!(
                "its {kind} chunk at byte {at} needs {} bytes, the file has {}",
                end - at,
                bytes.len() - at
            ));
        }
        if kind == "IEND" {
            return Ok(());
        }
        at = end;
    }
}

/// Walks a JPEG's marker segments and entropy-coded scans from SOI to EOI, as a decoder does;
/// errors where the file ends first. Bytes after EOI (some cameras pad files) are allowed, and
/// an EXIF thumbnail's own EOI is skipped with its segment.
fn jpeg_structure(bytes: &[u8]) -> Result<(), String> {
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    let ended = |what: &str| Err(format!("it ends after {} bytes, {what}", bytes.len()));
    let is_restart = |m: u8| (0xD0..=0xD7).contains(&m);
    let mut at = 2; // past SOI
    loop {
        // A marker: 0xFF (any number of fill bytes), then its code. Stray bytes between
        // segments are skipped, as libjpeg does.
        match bytes[at.min(bytes.len())..].iter().position(|&b| b == 0xFF) {
            Some(offset) => at += offset,
            None => return ended("before its end-of-image marker"),
        }
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at) else { return ended("before its end-of-image marker") };
        at += 1;
        if marker == EOI {
            return Ok(());
        }
        if marker == 0x01 || is_restart(marker) {
            continue; // stand-alone markers carry no length
        }
        let Some(len) = bytes.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return ended("inside a marker segment");
        };
        at += len;
        if at > bytes.len() {
            return ended(&format!("inside a marker segment that needs {} more", at - bytes.len()));
        }
        if marker == SOS {
            // Entropy-coded data runs to the next marker that is neither a stuffed 0xFF00 nor a
            // restart marker.
            loop {
                match bytes[at..].iter().position(|&b| b == 0xFF) {
                    Some(offset) => at += offset,
                    None => return ended("inside the compressed image data"),
                }
                match bytes.get(at + 1) {
                    None => return ended("inside the compressed image data"),
                    Some(&next) if next == 0x00 || is_restart(next) => at += 2,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Decodes a class-index mask: a PNG whose pixel values are class indices (0 = background), as
/// HF's `prompt_masks` with `do_convert_rgb=True` expects (docs/MODEL.md §3.7).
///
/// Accepted, matching what `np.array(PIL.Image.open(f))` yields:
/// - 8-bit grayscale ('L'): the gray values;
/// - palette ('P', 1/2/4/8-bit): the raw palette **indices**, never the palette colours;
/// - 1-bit grayscale ('1'): 0 and 1.
///
/// Refused with [`InputError::UnsupportedMask`]: JPEG (lossy, indices would not survive),
/// RGB(A) and gray+alpha PNGs (pass those as colour masks), and 2/4/16-bit grayscale (PIL would
/// rescale or widen the values; save the mask as 8-bit).
pub fn decode_class_map(bytes: &[u8], name: &str) -> Result<ClassMap, InputError> {
    let unsupported =
        |detail: &str| InputError::UnsupportedMask { name: name.to_owned(), detail: detail.to_owned() };
    let not_an_image = |reason: String| InputError::NotAnImage { name: name.to_owned(), reason };
    check_file_size(bytes, name)?;
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(match image::guess_format(bytes) {
            Ok(ImageFormat::Jpeg) => unsupported(
                "it is a JPEG; JPEG compression changes pixel values, so class indices do not \
                 survive. Save the mask as an 8-bit grayscale or palette PNG",
            ),
            Ok(_) => {
                unsupported("class-index masks must be PNG files (8-bit grayscale or palette); convert it")
            }
            Err(_) => not_an_image("the file format is not recognised".to_owned()),
        });
    }

    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits { bytes: usize::try_from(MAX_DECODE_BYTES).unwrap_or(usize::MAX) },
    );
    // No expansion: palette images must keep their raw indices.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let info = decoder.read_header_info().map_err(|e| not_an_image(e.to_string()))?;
    let (width, height) = (info.width, info.height);
    check_dimensions(name, width, height)?;
    png_structure(bytes).map_err(|detail| InputError::Truncated { name: name.to_owned(), detail })?;
    let (color_type, bit_depth) = (info.color_type, info.bit_depth);
    let bits = match (color_type, bit_depth) {
        (png::ColorType::Grayscale, png::BitDepth::Eight) => 8,
        (png::ColorType::Grayscale, png::BitDepth::One) => 1,
        (png::ColorType::Indexed, depth) => depth as usize,
        (png::ColorType::Grayscale, png::BitDepth::Sixteen) => {
            return Err(unsupported(
                "it is a 16-bit grayscale PNG; class-index masks must be 8-bit. Save it as an \
                 8-bit grayscale ('L') or palette ('P') PNG",
            ));
        }
        (png::ColorType::Grayscale, _) => {
            return Err(unsupported(
                "it is a 2- or 4-bit grayscale PNG, whose values PIL rescales to 0..255; save it \
                 as an 8-bit grayscale ('L') or palette ('P') PNG",
            ));
        }
        (png::ColorType::Rgb | png::ColorType::Rgba, _) => {
            return Err(unsupported(
                "it is an RGB colour image, not a map of class indices; use it as a colour mask \
                 instead, or save the class indices as an 8-bit grayscale or palette PNG",
            ));
        }
        (png::ColorType::GrayscaleAlpha, _) => {
            return Err(unsupported(
                "it has an alpha channel; save the class indices as an 8-bit grayscale ('L') or \
                 palette ('P') PNG without alpha",
            ));
        }
    };

    let mut reader = decoder.read_info().map_err(|e| png_error(name, width, height, e))?;
    let size = reader.output_buffer_size().ok_or_else(|| InputError::TooLarge {
        name: name.to_owned(),
        width: u64::from(width),
        height: u64::from(height),
        max_side: MAX_DIMENSION,
        max_pixels: super::MAX_PIXELS,
    })?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| png_error(name, width, height, e))?;

    let (w, h) = (width as usize, height as usize);
    let mut data = Vec::with_capacity(w * h);
    for row in buf.chunks(frame.line_size).take(h) {
        if bits == 8 {
            data.extend_from_slice(&row[..w]);
        } else {
            let mask = (1u8 << bits) - 1;
            for x in 0..w {
                let bit = x * bits;
                let shift = 8 - bits - bit % 8;
                data.push((row[bit / 8] >> shift) & mask);
            }
        }
    }
    ClassMap::new(width, height, data)
}

/// Encodes an RGB image as an 8-bit truecolour PNG (the official output format, docs/MODEL.md §8.1).
pub fn encode_rgb_png(image: &RgbImage) -> Result<Vec<u8>, InputError> {
    encode_png(image.as_raw(), image.width(), image.height(), ExtendedColorType::Rgb8)
}

/// Encodes a class or intensity map as an 8-bit grayscale ('L') PNG (docs/MODEL.md §8.3).
pub fn encode_gray_png(map: &ClassMap) -> Result<Vec<u8>, InputError> {
    encode_png(map.as_raw(), map.width(), map.height(), ExtendedColorType::L8)
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_GRAYSCALE: u8 = 0;

/// The IHDR chunk's fields, which always come first in a PNG: width, height, depth, colour type.
fn png_ihdr(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.starts_with(PNG_SIGNATURE) && bytes.get(12..16) == Some(b"IHDR") {
        bytes.get(16..26)
    } else {
        None
    }
}

/// A PNG's declared size, from its IHDR chunk.
fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = png_ihdr(bytes)?;
    let width = u32::from_be_bytes(ihdr[0..4].try_into().ok()?);
    let height = u32::from_be_bytes(ihdr[4..8].try_into().ok()?);
    Some((width, height))
}

/// A PNG's colour type byte, from its IHDR chunk.
fn png_color_type(bytes: &[u8]) -> Option<u8> {
    png_ihdr(bytes).map(|ihdr| ihdr[9])
}

fn encode_png(data: &[u8], width: u32, height: u32, color: ExtendedColorType) -> Result<Vec<u8>, InputError> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(data, width, height, color).map_err(|e| InputError::Encode {
        width,
        height,
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Keeps the first three of every `stride` samples.
fn drop_alpha<T: Copy>(samples: &[T], stride: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    samples.chunks_exact(stride).flat_map(|p| [to_u8(p[0]), to_u8(p[1]), to_u8(p[2])]).collect()
}

/// Replicates the first of every `stride` samples into R, G and B.
fn replicate_gray<T: Copy>(samples: &[T], stride: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    samples
        .chunks_exact(stride)
        .flat_map(|p| {
            let v = to_u8(p[0]);
            [v, v, v]
        })
        .collect()
}

/// PIL's `I;16 -> RGB` conversion clips at 255; accepted only when nothing is clipped.
fn clipped_gray16(name: &str, samples: &[u16], stride: usize) -> Result<Vec<u8>, InputError> {
    if let Some(&max) = samples.iter().step_by(stride).max()
        && max > 255
    {
        return Err(InputError::UnsupportedFormat {
            name: name.to_owned(),
            detail: format!(
                "16-bit grayscale with values up to {max}: PIL's convert(\"RGB\") clips every \
                 value above 255, which would turn the image white; save it as an 8-bit PNG"
            ),
        });
    }
    Ok(replicate_gray(samples, stride, |v| v as u8))
}

fn image_error(name: &str, size: Option<(u32, u32)>, err: ImageError) -> InputError {
    match (err, size) {
        (ImageError::Limits(_), Some((width, height))) => InputError::TooLarge {
            name: name.to_owned(),
            width: u64::from(width),
            height: u64::from(height),
            max_side: MAX_DIMENSION,
            max_pixels: super::MAX_PIXELS,
        },
        (err, _) => InputError::NotAnImage { name: name.to_owned(), reason: err.to_string() },
    }
}

fn png_error(name: &str, width: u32, height: u32, err: png::DecodingError) -> InputError {
    match err {
        png::DecodingError::LimitsExceeded => InputError::TooLarge {
            name: name.to_owned(),
            width: u64::from(width),
            height: u64::from(height),
            max_side: MAX_DIMENSION,
            max_pixels: super::MAX_PIXELS,
        },
        err => InputError::NotAnImage { name: name.to_owned(), reason: err.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes raw samples as a PNG of the given colour type and depth.
    fn png_bytes(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        palette: Option<Vec<u8>>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(color);
            enc.set_depth(depth);
            if let Some(p) = palette {
                enc.set_palette(p);
            }
            let mut writer = enc.write_header().unwrap();
            writer.write_image_data(data).unwrap();
        }
        out
    }

    #[test]
    fn garbage_bytes_are_not_an_image() {
        let err = decode_rgb(b"definitely not an image", "junk.bin").unwrap_err();
        assert!(matches!(err, InputError::NotAnImage { .. }), "{err}");
        assert!(err.to_string().contains("junk.bin"));
        let err = decode_class_map(b"garbage", "junk.bin").unwrap_err();
        assert!(matches!(err, InputError::NotAnImage { .. }), "{err}");
    }

    /// A small JPEG with real scan data (a gradient), as an encoder writes it.
    fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
            .unwrap();
        jpeg
    }

    #[test]
    fn every_cut_of_a_png_is_refused_as_truncated() {
        let bytes = png_bytes(4, 4, png::ColorType::Rgb, png::BitDepth::Eight, None, &[7; 48]);
        for len in 8..bytes.len() {
            let err = decode_rgb(&bytes[..len], "cut.png").unwrap_err();
            assert!(matches!(err, InputError::Truncated { .. }), "{len}: {err}");
            assert!(err.to_string().contains("cut.png"), "{err}");
        }
        let gray = png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, None, &[1, 2]);
        // Without IEND only: every pixel is there, yet the file was cut.
        let err = decode_class_map(&gray[..gray.len() - 12], "mask.png").unwrap_err();
        assert!(matches!(err, InputError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("IEND"), "{err}");
    }

    #[test]
    fn every_cut_of_a_jpeg_is_refused_as_truncated() {
        let bytes = jpeg_bytes(32, 24);
        decode_rgb(&bytes, "whole.jpg").unwrap();
        for len in 3..bytes.len() {
            let err = decode_rgb(&bytes[..len], "cut.jpg").unwrap_err();
            assert!(matches!(err, InputError::Truncated { .. }), "{len}: {err}");
            assert!(err.to_string().contains("cut.jpg"), "{err}");
        }
        // Padding after the end-of-image marker is allowed.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 100]);
        decode_rgb(&padded, "padded.jpg").unwrap();
    }

    #[test]
    fn a_thumbnail_end_marker_does_not_hide_a_cut_photo() {
        // An APP1 segment holding a whole JPEG (as an EXIF thumbnail does), then a cut scan.
        let thumbnail = jpeg_bytes(8, 8);
        let photo = jpeg_bytes(64, 48);
        let mut bytes = photo[..2].to_vec();
        bytes.extend_from_slice(&[0xFF, 0xE1]);
        bytes.extend_from_slice(&u16::try_from(thumbnail.len() + 2).unwrap().to_be_bytes());
        bytes.extend_from_slice(&thumbnail);
        bytes.extend_from_slice(&photo[2..]);
        decode_rgb(&bytes, "exif.jpg").unwrap();
        let err = decode_rgb(&bytes[..bytes.len() - 40], "exif.jpg").unwrap_err();
        assert!(matches!(err, InputError::Truncated { .. }), "{err}");
    }

    #[test]
    fn check_image_reads_the_size_without_decoding() {
        assert_eq!(check_image(&jpeg_bytes(32, 24), "a.jpg").unwrap(), (32, 24));
        let png = png_bytes(5, 3, png::ColorType::Rgb, png::BitDepth::Eight, None, &[0; 45]);
        assert_eq!(check_image(&png, "a.png").unwrap(), (5, 3));
        let err = check_image(&header_only_png(20_000, 10), "huge.png").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn files_over_the_size_limit_are_refused_unread() {
        // Zeroed pages cost no memory until touched, and nothing here touches them.
        let huge = vec![0u8; MAX_FILE_BYTES as usize + 1];
        let err = decode_rgb(&huge, "huge.png").unwrap_err();
        assert!(matches!(err, InputError::FileTooLarge { .. }), "{err}");
        let err = decode_class_map(&huge, "huge.png").unwrap_err();
        assert!(matches!(err, InputError::FileTooLarge { .. }), "{err}");
    }

    /// A PNG header announcing `width x height`, with no pixel data behind it.
    fn header_only_png(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&ihdr);
        let crc = crc32(&chunk);
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn oversized_dimensions_are_refused_before_decoding() {
        let bytes = header_only_png(20_000, 10);
        let err = decode_rgb(&bytes, "huge.png").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { width: 20_000, height: 10, .. }), "{err}");
        let err = decode_class_map(&bytes, "huge.png").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }), "{err}");
        let err = decode_rgb(&header_only_png(10_000, 10_000), "big.png").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn rgba_drops_alpha_without_compositing() {
        let bytes = png_bytes(
            2,
            1,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            None,
            &[10, 20, 30, 0, 40, 50, 60, 128],
        );
        let img = decode_rgb(&bytes, "a.png").unwrap();
        assert_eq!(img.as_raw(), &[10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn gray_is_replicated_and_low_depths_are_scaled() {
        let l8 = png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, None, &[3, 250]);
        assert_eq!(decode_rgb(&l8, "l.png").unwrap().as_raw(), &[3, 3, 3, 250, 250, 250]);
        let la8 = png_bytes(1, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, None, &[77, 0]);
        assert_eq!(decode_rgb(&la8, "la.png").unwrap().as_raw(), &[77, 77, 77]);
        // 2-bit gray 0,1,2,3 -> PIL's "L;2" scaling 0,85,170,255.
        let l2 = png_bytes(4, 1, png::ColorType::Grayscale, png::BitDepth::Two, None, &[0b0001_1011]);
        let img = decode_rgb(&l2, "l2.png").unwrap();
        assert_eq!(img.as_raw().iter().step_by(3).copied().collect::<Vec<_>>(), [0, 85, 170, 255]);
    }

    #[test]
    fn palette_is_expanded_to_its_colours() {
        let palette = vec![0, 0, 0, 200, 100, 50];
        let bytes = png_bytes(2, 1, png::ColorType::Indexed, png::BitDepth::Eight, Some(palette), &[1, 0]);
        assert_eq!(decode_rgb(&bytes, "p.png").unwrap().as_raw(), &[200, 100, 50, 0, 0, 0]);
    }

    #[test]
    fn sixteen_bit_rgb_keeps_the_high_byte() {
        let samples: [u16; 3] = [0x12FF, 0xAB00, 0x00FF];
        let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = png_bytes(1, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, None, &data);
        assert_eq!(decode_rgb(&bytes, "16.png").unwrap().as_raw(), &[0x12, 0xAB, 0x00]);
    }

    #[test]
    fn sixteen_bit_gray_is_clipped_like_pil_or_refused() {
        let small: Vec<u8> = [5u16, 255].iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen, None, &small);
        assert_eq!(decode_rgb(&bytes, "g16.png").unwrap().as_raw(), &[5, 5, 5, 255, 255, 255]);
        let big: Vec<u8> = [5u16, 256].iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen, None, &big);
        let err = decode_rgb(&bytes, "g16.png").unwrap_err();
        assert!(matches!(err, InputError::UnsupportedFormat { .. }), "{err}");
    }

    #[test]
    fn palette_mask_keeps_raw_indices() {
        let palette = vec![0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255];
        let bytes =
            png_bytes(3, 1, png::ColorType::Indexed, png::BitDepth::Eight, Some(palette.clone()), &[2, 0, 3]);
        assert_eq!(decode_class_map(&bytes, "p.png").unwrap().as_raw(), &[2, 0, 3]);
        // 2-bit palette, 5 pixels: 3,2,1,0 | 1 (padded row).
        let bytes = png_bytes(
            5,
            2,
            png::ColorType::Indexed,
            png::BitDepth::Two,
            Some(palette),
            &[0b1110_0100, 0b0100_0000, 0b0001_1011, 0b1100_0000],
        );
        let map = decode_class_map(&bytes, "p2.png").unwrap();
        assert_eq!(map.as_raw(), &[3, 2, 1, 0, 1, 0, 1, 2, 3, 3]);
    }

    #[test]
    fn gray_mask_keeps_values_and_one_bit_reads_as_zero_one() {
        let bytes = png_bytes(2, 2, png::ColorType::Grayscale, png::BitDepth::Eight, None, &[0, 1, 7, 255]);
        let map = decode_class_map(&bytes, "l.png").unwrap();
        assert_eq!((map.width(), map.height()), (2, 2));
        assert_eq!(map.as_raw(), &[0, 1, 7, 255]);
        let bytes = png_bytes(3, 1, png::ColorType::Grayscale, png::BitDepth::One, None, &[0b1010_0000]);
        assert_eq!(decode_class_map(&bytes, "1.png").unwrap().as_raw(), &[1, 0, 1]);
    }

    #[test]
    fn class_mask_refuses_rgb_sixteen_bit_and_jpeg() {
        let rgb = png_bytes(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, None, &[1, 2, 3]);
        let err = decode_class_map(&rgb, "rgb.png").unwrap_err();
        assert!(matches!(err, InputError::UnsupportedMask { .. }), "{err}");
        assert!(err.to_string().contains("colour mask"));
        let g16 = png_bytes(1, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen, None, &[0, 1]);
        let err = decode_class_map(&g16, "g16.png").unwrap_err();
        assert!(matches!(err, InputError::UnsupportedMask { .. }), "{err}");
        assert!(err.to_string().contains("8-bit"));
        let err = decode_class_map(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", "m.jpg").unwrap_err();
        assert!(matches!(err, InputError::UnsupportedMask { .. }), "{err}");
    }

    #[test]
    fn png_round_trips() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let back = decode_rgb(&encode_rgb_png(&img).unwrap(), "rt.png").unwrap();
        assert_eq!(back, img);
        let map = ClassMap::new(3, 1, vec![0, 9, 255]).unwrap();
        let back = decode_class_map(&encode_gray_png(&map).unwrap(), "rt.png").unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn jpeg_decodes_to_rgb() {
        let img = RgbImage::new(8, 8, vec![128; 8 * 8 * 3]).unwrap();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(img.as_raw(), 8, 8, ExtendedColorType::Rgb8)
            .unwrap();
        let back = decode_rgb(&jpeg, "x.jpg").unwrap();
        assert_eq!((back.width(), back.height()), (8, 8));
        assert!(back.as_raw().iter().all(|&v| v.abs_diff(128) <= 2));
    }
}
