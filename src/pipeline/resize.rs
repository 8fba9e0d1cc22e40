//! Resampling that reproduces the reference libraries exactly (docs/MODEL.md §3.4, §3.5, §8.2).
//!
//! - [`resize_bicubic`]: Pillow `Image.resize(size, BICUBIC)` on 8-bit images, byte for byte
//!   (`ImagingResample`, `src/libImaging/Resample.c`).
//! - [`resize_nearest`]: Pillow `Image.resize(size, NEAREST)`, byte for byte (`_resize` in
//!   `src/_imaging.c` -> `ImagingTransformAffine` -> `ImagingScaleAffine`, `Geometry.c`).
//! - [`interpolate_nearest`]: torch's legacy `F.interpolate(x, size=..., mode="nearest")` on
//!   planar `f32` (`nearest_idx` / `nearest_neighbor_compute_source_index`, `UpSample.h`).
//!
//! Buffers are interleaved HWC with any channel count (Pillow runs the same integer arithmetic
//! on every band), or planar CHW for the torch path. A zero output size yields an empty buffer.

/// Fixed-point precision of Pillow's 8-bit resampler: `32 - 8 - 2` bits.
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel with `a = -0.5`, evaluated in `f64` in Pillow's operation order.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per-output-pixel source windows and fixed-point weights along one axis.
struct Coefficients {
    /// Coefficient slots per output pixel (the stride of `weights`).
    ksize: usize,
    /// `(first source index, number of source pixels)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// Weights in fixed point, `ksize` per output pixel.
    weights: Vec<i32>,
    /// Fractional bits of the weights (Pillow's are always [`PRECISION_BITS`]).
    precision: u32,
}

/// One of Pillow's resampling filters: its kernel and the kernel's half-width at scale 1.
#[derive(Clone, Copy)]
struct Filter {
    support: f64,
    kernel: fn(f64) -> f64,
}

const BICUBIC: Filter = Filter { support: 2.0, kernel: bicubic_filter };
const BILINEAR: Filter = Filter { support: 1.0, kernel: bilinear_filter };

/// Pillow's triangle (`bilinear_filter`).
fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `precompute_coeffs` for `filter` over the whole axis (box `0..in_size`), followed by
/// `normalize_coeffs_8bpc`.
fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    // Pillow's box is a C float: `(double)(in1 - in0) / outSize` with `in0 = 0.0f`.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;

    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `(int)` truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let (xmin, xmax) = (xmin as usize, xmax.max(0) as usize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = (filter.kernel)((((x + xmin) as f64 - center) + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (slot, &w) in row.iter_mut().zip(&k).take(xmax) {
            let w = if ww != 0.0 { w / ww } else { w };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *slot = if w < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients { ksize, bounds, weights, precision: PRECISION_BITS }
}

/// `clip8(ss)`: the accumulator back to a byte (Pillow's lookup table covers -640..639).
fn clip8(ss: i32, precision: u32) -> u8 {
    (ss >> precision).clamp(0, 255) as u8
}

/// Pillow's horizontal 8-bit pass: `rows` output rows, reading source rows from `offset` on.
fn horizontal_pass(
    src: &[u8],
    width: usize,
    channels: usize,
    offset: usize,
    rows: usize,
    coeffs: &Coefficients,
) -> Vec<u8> {
    let out_width = coeffs.bounds.len();
    let mut out = vec![0u8; out_width * rows * channels];
    for yy in 0..rows {
        let in_row = &src[(yy + offset) * width * channels..][..width * channels];
        let out_row = &mut out[yy * out_width * channels..][..out_width * channels];
        for (xx, &(xmin, xmax)) in coeffs.bounds.iter().enumerate() {
            let k = &coeffs.weights[xx * coeffs.ksize..][..xmax];
            for c in 0..channels {
                let mut ss: i32 = 1 << (coeffs.precision - 1);
                for (x, &kx) in k.iter().enumerate() {
                    ss += i32::from(in_row[(x + xmin) * channels + c]) * kx;
                }
                out_row[xx * channels + c] = clip8(ss, coeffs.precision);
            }
        }
    }
    out
}

/// Pillow's vertical 8-bit pass over rows of `stride` bytes; `bounds` index `src`'s rows.
fn vertical_pass(src: &[u8], stride: usize, coeffs: &Coefficients) -> Vec<u8> {
    let mut out = vec![0u8; coeffs.bounds.len() * stride];
    for (yy, &(ymin, ymax)) in coeffs.bounds.iter().enumerate() {
        let k = &coeffs.weights[yy * coeffs.ksize..][..ymax];
        let out_row = &mut out[yy * stride..][..stride];
        for (i, o) in out_row.iter_mut().enumerate() {
            let mut ss: i32 = 1 << (coeffs.precision - 1);
            for (y, &ky) in k.iter().enumerate() {
                ss += i32::from(src[(y + ymin) * stride + i]) * ky;
            }
            *o = clip8(ss, coeffs.precision);
        }
    }
    out
}

/// Pillow `Image.resize((out_width, out_height), Image.BICUBIC)` of an 8-bit image stored as
/// interleaved HWC with `channels` bands; byte-equal to Pillow 13 (docs/MODEL.md §3.4).
///
/// Pillow's algorithm (`ImagingResampleInner`): fixed-point weights with 22 fractional bits,
/// accumulators starting at `1 << 21`, one separable pass per axis through an 8-bit temporary
/// image. A pass whose size is unchanged is skipped; an unchanged size is a copy.
///
/// The pass order matters, because the temporary image is rounded to bytes. Pillow 13 runs
/// the vertical pass first when the height shrinks by more than twice as many pixels as the
/// width does (`in_h - out_h > 0 && in_h - out_h > (in_w - out_w) * 2`), and the horizontal
/// pass first otherwise, restricted to the source rows the vertical pass reads. Older Pillow
/// releases always ran the horizontal pass first; where the rule picks vertical-first, their
/// output differs from Pillow 13's by a level or so at some pixels.
///
/// Panics if `src.len() != width * height * channels`.
pub fn resize_bicubic(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    resize_pillow(src, (width, height, channels), (out_width, out_height), BICUBIC)
}

/// Pillow `Image.resize((out_width, out_height), Image.BILINEAR)` of an 8-bit image stored as
/// interleaved HWC with `channels` bands, byte-equal to Pillow 13: [`resize_bicubic`]'s algorithm
/// and pass order with Pillow's triangle filter (support 1). transformers' PIL image processor for
/// SAM resizes this way (docs/MODEL.md §25.4).
///
/// Panics if `src.len() != width * height * channels`.
pub fn resize_bilinear(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    resize_pillow(src, (width, height, channels), (out_width, out_height), BILINEAR)
}

fn resize_pillow(
    src: &[u8],
    (width, height, channels): (usize, usize, usize),
    (out_width, out_height): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "buffer does not match its size");
    if out_width == 0 || out_height == 0 || width == 0 || height == 0 || channels == 0 {
        return Vec::new();
    }
    let need_horizontal = out_width != width;
    let need_vertical = out_height != height;
    let shrink_y = height as i64 - out_height as i64;
    let shrink_x = width as i64 - out_width as i64;
    let horizontal_first = !(shrink_y > 0 && shrink_y > shrink_x * 2);

    if horizontal_first {
        let mut vert = precompute_coeffs(height, out_height, filter);
        let mut image = std::borrow::Cow::Borrowed(src);
        let mut cur_width = width;
        if need_horizontal {
            // Only the source rows the vertical pass reads are resampled horizontally.
            let first = vert.bounds[0].0;
            let (ymin, ylen) = vert.bounds[out_height - 1];
            let last = ymin + ylen;
            for b in &mut vert.bounds {
                b.0 -= first;
            }
            let horiz = precompute_coeffs(width, out_width, filter);
            image =
                std::borrow::Cow::Owned(horizontal_pass(src, width, channels, first, last - first, &horiz));
            cur_width = out_width;
        }
        if need_vertical { vertical_pass(&image, cur_width * channels, &vert) } else { image.into_owned() }
    } else {
        // Vertical first: here the height always changes.
        let vert = precompute_coeffs(height, out_height, filter);
        let image = vertical_pass(src, width * channels, &vert);
        if need_horizontal {
            let horiz = precompute_coeffs(width, out_width, filter);
            horizontal_pass(&image, width, channels, 0, out_height, &horiz)
        } else {
            image
        }
    }
}

/// Source index of every output pixel along one axis of Pillow's `NEAREST` resize, or `None`
/// where Pillow leaves the pixel at 0 (outside the source; does not happen for plain resizes).
///
/// Pillow (`_resize` -> `ImagingScaleAffine`) uses the step `a = (double)(float)in / out` and
/// **accumulates** the position in `f64`: `xo = a * 0.5`, then `xo += a` per pixel, taking
/// `(int)xo`. That running sum is not always `floor((i + 0.5) * a)`: the two can differ where
/// the product is (nearly) an integer, so the accumulation is reproduced step for step.
/// An unchanged size is the identity (Pillow copies). docs/MODEL.md §3.5.
pub fn pillow_nearest_indices(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    if in_size == out_size {
        return (0..out_size).map(Some).collect();
    }
    let a = f64::from(in_size as f32) / out_size as f64;
    let mut xo = a * 0.5;
    let mut indices = Vec::with_capacity(out_size);
    for _ in 0..out_size {
        // COORD(v): negative -> -1 (outside), else truncation.
        let index = if xo < 0.0 { None } else { Some(xo as usize) };
        indices.push(index.filter(|&i| i < in_size));
        xo += a;
    }
    indices
}

/// Pillow `Image.resize((out_width, out_height), Image.NEAREST)` of an interleaved HWC 8-bit
/// image; byte-equal to Pillow (docs/MODEL.md §3.2: HF forces NEAREST for prompt masks; §3.1: the
/// official code resizes RGB masks with NEAREST). See [`pillow_nearest_indices`].
///
/// Panics if `src.len() != width * height * channels`.
pub fn resize_nearest(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "buffer does not match its size");
    let xs = pillow_nearest_indices(width, out_width);
    let ys = pillow_nearest_indices(height, out_height);
    let mut out = vec![0u8; out_width * out_height * channels];
    for (yy, y) in ys.iter().enumerate() {
        let Some(y) = *y else { continue };
        let in_row = &src[y * width * channels..][..width * channels];
        let out_row = &mut out[yy * out_width * channels..][..out_width * channels];
        for (xx, x) in xs.iter().enumerate() {
            if let Some(x) = *x {
                out_row[xx * channels..][..channels].copy_from_slice(&in_row[x * channels..][..channels]);
            }
        }
    }
    out
}

/// Source index of every output pixel along one axis of torch's legacy nearest interpolation
/// with an explicit `size` (docs/MODEL.md §8.2):
/// `min(floor(dst * scale), in - 1)` with `scale = (float)in / out`, all in `f32`
/// (`compute_scales_value<float>` and `nearest_neighbor_compute_source_index`; the CPU
/// `nearest_idx` shortcuts `out == in` and `out == 2 * in` give the same indices).
pub fn torch_nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    if out_size == in_size {
        return (0..out_size).collect();
    }
    if out_size == 2 * in_size {
        return (0..out_size).map(|i| i >> 1).collect();
    }
    let scale = in_size as f32 / out_size as f32;
    (0..out_size).map(|dst| ((dst as f32 * scale).floor() as usize).min(in_size.saturating_sub(1))).collect()
}

/// torch `F.interpolate(x, size=(out_height, out_width), mode="nearest")` of a planar CHW `f32`
/// buffer: the legacy (not `nearest-exact`) indexing both reference post-processors use to
/// bring the 448x448 prediction back to the input size (docs/MODEL.md §8.2).
///
/// Panics if `src.len() != channels * height * width`.
pub fn interpolate_nearest(
    src: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<f32> {
    assert_eq!(src.len(), channels * height * width, "buffer does not match its size");
    let xs = torch_nearest_indices(width, out_width);
    let ys = torch_nearest_indices(height, out_height);
    let mut out = Vec::with_capacity(channels * out_height * out_width);
    for c in 0..channels {
        let plane = &src[c * height * width..][..height * width];
        for &y in &ys {
            let row = &plane[y * width..][..width];
            out.extend(xs.iter().map(|&x| row[x]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize, channels: usize) -> Vec<u8> {
        (0..width * height * channels).map(|i| (i * 37 % 251) as u8).collect()
    }

    #[test]
    fn same_size_is_a_copy() {
        let src = ramp(7, 5, 3);
        assert_eq!(resize_bicubic(&src, 7, 5, 3, 7, 5), src);
        assert_eq!(resize_nearest(&src, 7, 5, 3, 7, 5), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        // Weights sum to 1 << 22 up to rounding; the +0.5 bias keeps the constant exact.
        for &(w, h, ow, oh) in &[(37, 23, 448, 448), (1000, 3, 448, 448), (5, 9, 2, 20)] {
            for value in [0u8, 1, 127, 200, 255] {
                let src = vec![value; w * h * 3];
                let out = resize_bicubic(&src, w, h, 3, ow, oh);
                assert_eq!(out.len(), ow * oh * 3);
                assert!(out.iter().all(|&v| v == value), "{w}x{h} -> {ow}x{oh}, {value}");
            }
        }
    }

    #[test]
    fn one_by_one_resizes_to_constant_and_back() {
        let src = [10u8, 20, 30];
        let big = resize_bicubic(&src, 1, 1, 3, 4, 3);
        assert_eq!(big, [10, 20, 30].repeat(12));
        let near = resize_nearest(&src, 1, 1, 3, 4, 3);
        assert_eq!(near, [10, 20, 30].repeat(12));
        let ramp = ramp(9, 6, 3);
        assert_eq!(resize_bicubic(&ramp, 9, 6, 3, 1, 1).len(), 3);
        assert_eq!(resize_nearest(&ramp, 9, 6, 3, 1, 1), ramp[(3 * 9 + 4) * 3..][..3]);
    }

    #[test]
    fn single_axis_resizes_skip_the_other_pass() {
        // Only the width changes: every row is resized on its own.
        let src = ramp(10, 4, 1);
        let out = resize_bicubic(&src, 10, 4, 1, 6, 4);
        for y in 0..4 {
            let row = resize_bicubic(&src[y * 10..][..10], 10, 1, 1, 6, 1);
            assert_eq!(&out[y * 6..][..6], &row[..]);
        }
    }

    #[test]
    fn bicubic_matches_hand_computed_pillow_values() {
        // 4x1 -> 2x1 downscale of [0, 100, 200, 255]; Pillow 13 gives [60, 221]. By hand:
        // scale 2, support 4, taps K((x - 0.5) / 2) = .8672, .8672, .2266, -.0703 normalised
        // by their sum 1.8906 -> 100 * .4587 + 200 * .1198 - 255 * .0372 = 60.35.
        let out = resize_bicubic(&[0, 100, 200, 255], 4, 1, 1, 2, 1);
        assert_eq!(out, [60, 221]);
    }

    #[test]
    fn zero_output_size_is_empty() {
        assert!(resize_bicubic(&ramp(3, 3, 3), 3, 3, 3, 0, 5).is_empty());
        assert!(resize_nearest(&ramp(3, 3, 3), 3, 3, 3, 5, 0).is_empty());
    }

    #[test]
    fn pillow_nearest_indices_follow_the_accumulated_position() {
        // Downscale by 2: centres 1, 3, 5, ...
        let idx: Vec<usize> = pillow_nearest_indices(8, 4).into_iter().flatten().collect();
        assert_eq!(idx, [1, 3, 5, 7]);
        // Upscale 2 -> 5: positions 0.2, 0.6, 1.0, 1.4, 1.8.
        let idx: Vec<usize> = pillow_nearest_indices(2, 5).into_iter().flatten().collect();
        assert_eq!(idx, [0, 0, 1, 1, 1]);
        // 300 -> 448 (an official example mask's width): every index is inside the source.
        let idx = pillow_nearest_indices(300, 448);
        assert!(idx.iter().all(|i| i.is_some_and(|i| i < 300)));
    }

    #[test]
    fn pillow_nearest_accumulation_differs_from_the_direct_product() {
        // The running f64 sum and the product (i + 0.5) * a truncate differently somewhere
        // for 2048 -> 1536 (a = 4/3): the emulation must follow the sum.
        let a = 2048.0f64 / 1536.0;
        let direct: Vec<usize> = (0..1536).map(|i| ((i as f64 + 0.5) * a) as usize).collect();
        let acc: Vec<usize> = pillow_nearest_indices(2048, 1536).into_iter().flatten().collect();
        assert_eq!(acc.len(), 1536);
        assert_ne!(acc, direct);
    }

    #[test]
    fn torch_nearest_indices_use_floor_of_dst_times_scale() {
        // 448 -> 300: scale = 448/300 in f32.
        let idx = torch_nearest_indices(448, 300);
        let scale = 448f32 / 300f32;
        for (dst, &i) in idx.iter().enumerate() {
            assert_eq!(i, ((dst as f32 * scale).floor() as usize).min(447));
        }
        // 3 -> 7 upsample: floor(d * 3/7) = 0,0,0,1,1,2,2.
        assert_eq!(torch_nearest_indices(3, 7), [0, 0, 0, 1, 1, 2, 2]);
        // Legacy nearest is not nearest-exact: 4 -> 3 picks 0,1,2 (exact would pick 0,2,3).
        assert_eq!(torch_nearest_indices(4, 3), [0, 1, 2]);
        assert_eq!(torch_nearest_indices(5, 10), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn interpolate_nearest_maps_each_plane() {
        // 2 channels, 2x2 -> 3x3.
        let src = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        let out = interpolate_nearest(&src, 2, 2, 2, 3, 3);
        assert_eq!(
            out,
            [
                1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0, //
                10.0, 10.0, 20.0, 10.0, 10.0, 20.0, 30.0, 30.0, 40.0
            ]
        );
    }
}
