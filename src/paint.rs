//! Pixel work of the web app that needs no browser, so it is tested natively: the painted prompt mask
//! (brush strokes, eraser, undo, clear), the colours of the prompt masks and the per-colour view of a
//! result mask, and the number of classes class-index masks imply.

use std::collections::VecDeque;

use crate::pipeline::ClassMap;

/// Brush colours offered for painting (black is the background and the eraser).
pub const BRUSH_COLOURS: [[u8; 3]; 8] = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [255, 0, 255],
    [0, 255, 255],
    [255, 128, 0],
    [255, 255, 255],
];

/// Colours with a plain name, for labels and screen readers: the brush colours, the palette's
/// greys and a few common hues. A mask colour is called by the nearest of these.
const NAMED_COLOURS: [([u8; 3], &str); 15] = [
    ([255, 0, 0], "red"),
    ([0, 255, 0], "green"),
    ([0, 0, 255], "blue"),
    ([255, 255, 0], "yellow"),
    ([255, 0, 255], "magenta"),
    ([0, 255, 255], "cyan"),
    ([255, 128, 0], "orange"),
    ([255, 255, 255], "white"),
    ([0, 0, 0], "black"),
    ([128, 128, 128], "grey"),
    ([128, 0, 0], "dark red"),
    ([0, 128, 0], "dark green"),
    ([0, 0, 128], "navy"),
    ([128, 0, 128], "purple"),
    ([128, 64, 0], "brown"),
];

/// The plain name of the named colour nearest to `rgb` (squared distance in RGB): "cyan" reads
/// better in a label than `rgb(0, 255, 255)`.
pub fn colour_name(rgb: [u8; 3]) -> &'static str {
    let distance = |c: [u8; 3]| -> u32 {
        c.iter().zip(rgb).map(|(&a, b)| (i32::from(a) - i32::from(b)).pow(2) as u32).sum()
    };
    NAMED_COLOURS.iter().min_by_key(|(c, _)| distance(*c)).map_or("colour", |(_, name)| name)
}

/// Bytes of earlier pixels the undo history keeps. A step keeps only the rectangle it changed (a
/// brush stroke: kilobytes; a clear: the painted area, 36 MB at most for a 12-megapixel mask), and the
/// oldest steps go first; the newest step is kept whatever its size, so the last action can always be
/// undone.
const UNDO_BYTES: usize = 64 << 20;

/// A pixel rectangle: what a stroke changed, so the page redraws only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    fn pixels(self) -> usize {
        self.width as usize * self.height as usize
    }

    fn union(self, other: Option<Rect>) -> Rect {
        let Some(o) = other else { return self };
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        let right = (self.x + self.width).max(o.x + o.width);
        let bottom = (self.y + self.height).max(o.y + o.height);
        Rect { x, y, width: right - x, height: bottom - y }
    }
}

/// One undo step: the pixels of `rect` as they were before the step.
#[derive(Debug, Clone)]
struct UndoStep {
    rect: Rect,
    before: Vec<u8>,
}

/// The stroke being painted: the mask as it was when it began (to keep, when it ends, the part it
/// changed) and what it changed so far.
#[derive(Debug, Clone)]
struct Stroke {
    last: (f64, f64),
    before: Vec<u8>,
    changed: Option<Rect>,
}

/// A mask painted at the prompt image's own size: RGB, black background, exact colours (no
/// anti-aliasing, so every painted pixel is one of the brush colours).
#[derive(Debug, Clone)]
pub struct PaintMask {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    undo: VecDeque<UndoStep>,
    undo_bytes: usize,
    stroke: Option<Stroke>,
}

impl PaintMask {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
            undo: VecDeque::new(),
            undo_bytes: 0,
            stroke: None,
        }
    }

    /// A mask that starts as `rgb` (a result's mask, to correct it): `width * height` pixels of 3 bytes.
    /// What it started as is the bottom of the undo history, so Undo never goes below it.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, String> {
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(format!("a {width} x {height} mask has {expected} bytes of RGB, not {}", rgb.len()));
        }
        Ok(Self { rgb, ..Self::new(width, height) })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// Whether anything but background is painted.
    pub fn is_blank(&self) -> bool {
        self.rgb.iter().all(|&v| v == 0)
    }

    /// Starts a stroke at `(x, y)` (image pixels) and stamps one disc. Returns the changed area
    /// (`None` when the disc misses the image).
    pub fn begin(&mut self, x: f64, y: f64, radius: f64, colour: [u8; 3]) -> Option<Rect> {
        self.end();
        let before = self.rgb.clone();
        let changed = self.stamp(x, y, radius, colour);
        self.stroke = Some(Stroke { last: (x, y), before, changed });
        changed
    }

    /// Continues the stroke to `(x, y)`: discs every half radius along the segment, so fast moves
    /// leave no gaps. Without a started stroke it does nothing.
    pub fn extend(&mut self, x: f64, y: f64, radius: f64, colour: [u8; 3]) -> Option<Rect> {
        let (x0, y0) = self.stroke.as_ref()?.last;
        let length = ((x - x0).powi(2) + (y - y0).powi(2)).sqrt();
        let steps = (length / (radius / 2.0).max(0.5)).ceil().max(1.0) as usize;
        let mut changed: Option<Rect> = None;
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            if let Some(rect) = self.stamp(x0 + (x - x0) * t, y0 + (y - y0) * t, radius, colour) {
                changed = Some(rect.union(changed));
            }
        }
        if let Some(stroke) = self.stroke.as_mut() {
            stroke.last = (x, y);
            if let Some(rect) = changed {
                stroke.changed = Some(rect.union(stroke.changed));
            }
        }
        changed
    }

    /// Ends the stroke: what it changed becomes one undo step.
    pub fn end(&mut self) {
        if let Some(Stroke { before, changed: Some(rect), .. }) = self.stroke.take() {
            let before = self.crop(&before, rect);
            self.push_undo(UndoStep { rect, before });
        }
    }

    /// Back to the mask before the last stroke (or clear); false if there is none.
    pub fn undo(&mut self) -> bool {
        self.end();
        let Some(step) = self.undo.pop_back() else { return false };
        self.undo_bytes -= step.before.len();
        let row = step.rect.width as usize * 3;
        for (i, y) in (step.rect.y..step.rect.y + step.rect.height).enumerate() {
            let start = self.offset(step.rect.x, y);
            self.rgb[start..start + row].copy_from_slice(&step.before[i * row..(i + 1) * row]);
        }
        true
    }

    /// Everything back to background (undoable; clearing a blank mask is not a step).
    pub fn clear(&mut self) {
        self.end();
        if let Some(rect) = self.painted_area() {
            let before = self.crop(&self.rgb, rect);
            self.push_undo(UndoStep { rect, before });
            self.rgb.fill(0);
        }
    }

    /// Paints every pixel `selected` marks (a mask SAM gave, one byte per pixel, non-zero inside)
    /// in `colour`, or back to background with black (subtracting it), as one undo step. Returns the
    /// changed area; `None` when nothing changed (then no step is kept).
    pub fn apply_selection(&mut self, selected: &[u8], colour: [u8; 3]) -> Option<Rect> {
        self.end();
        assert_eq!(selected.len(), self.width as usize * self.height as usize, "a mask of this image's size");
        let before = self.rgb.clone();
        let mut changed: Option<Rect> = None;
        for (i, _) in selected.iter().enumerate().filter(|(_, s)| **s != 0) {
            let px = &mut self.rgb[i * 3..i * 3 + 3];
            if px != colour {
                px.copy_from_slice(&colour);
                let (x, y) = ((i % self.width as usize) as u32, (i / self.width as usize) as u32);
                changed = Some(Rect { x, y, width: 1, height: 1 }.union(changed));
            }
        }
        let rect = changed?;
        let before = self.crop(&before, rect);
        self.push_undo(UndoStep { rect, before });
        Some(rect)
    }

    /// Bytes the undo history holds now.
    pub fn undo_bytes(&self) -> usize {
        self.undo_bytes
    }

    fn push_undo(&mut self, step: UndoStep) {
        self.undo_bytes += step.before.len();
        self.undo.push_back(step);
        while self.undo_bytes > UNDO_BYTES && self.undo.len() > 1 {
            if let Some(oldest) = self.undo.pop_front() {
                self.undo_bytes -= oldest.before.len();
            }
        }
    }

    fn offset(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * 3
    }

    /// The pixels of `rect` in `rgb` (a mask of this size), row after row.
    fn crop(&self, rgb: &[u8], rect: Rect) -> Vec<u8> {
        let row = rect.width as usize * 3;
        let mut out = Vec::with_capacity(rect.pixels() * 3);
        for y in rect.y..rect.y + rect.height {
            let start = self.offset(rect.x, y);
            out.extend_from_slice(&rgb[start..start + row]);
        }
        out
    }

    /// The smallest rectangle holding every painted (non-black) pixel; `None` when blank.
    fn painted_area(&self) -> Option<Rect> {
        let mut area: Option<Rect> = None;
        for (y, row) in self.rgb.chunks_exact(self.width as usize * 3).enumerate() {
            let painted = |px: &[u8]| px != [0, 0, 0];
            let Some(first) = row.chunks_exact(3).position(painted) else { continue };
            let last = row.chunks_exact(3).rposition(painted).unwrap_or(first);
            let rect = Rect { x: first as u32, y: y as u32, width: (last - first + 1) as u32, height: 1 };
            area = Some(rect.union(area));
        }
        area
    }

    /// Pixels whose centre lies within `radius` of `(x, y)`.
    fn stamp(&mut self, x: f64, y: f64, radius: f64, colour: [u8; 3]) -> Option<Rect> {
        let r = radius.max(0.5);
        let (w, h) = (self.width as i64, self.height as i64);
        let x_lo = ((x - r).floor() as i64).max(0);
        let x_hi = ((x + r).ceil() as i64).min(w - 1);
        let y_lo = ((y - r).floor() as i64).max(0);
        let y_hi = ((y + r).ceil() as i64).min(h - 1);
        if x_lo > x_hi || y_lo > y_hi {
            return None;
        }
        for py in y_lo..=y_hi {
            for px in x_lo..=x_hi {
                let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
                if dx * dx + dy * dy <= r * r {
                    let i = (py * w + px) as usize * 3;
                    self.rgb[i..i + 3].copy_from_slice(&colour);
                }
            }
        }
        Some(Rect {
            x: x_lo as u32,
            y: y_lo as u32,
            width: (x_hi - x_lo + 1) as u32,
            height: (y_hi - y_lo + 1) as u32,
        })
    }

    /// The whole mask as a rectangle.
    pub fn full(&self) -> Rect {
        Rect { x: 0, y: 0, width: self.width, height: self.height }
    }

    /// RGBA of `rect` for showing the mask over the image: painted pixels at `alpha`, background
    /// transparent.
    pub fn overlay_rgba(&self, rect: Rect, alpha: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(rect.width as usize * rect.height as usize * 4);
        for y in rect.y..rect.y + rect.height {
            let start = (y as usize * self.width as usize + rect.x as usize) * 3;
            for px in self.rgb[start..start + rect.width as usize * 3].chunks_exact(3) {
                let a = if px == [0, 0, 0] { 0 } else { alpha };
                out.extend_from_slice(&[px[0], px[1], px[2], a]);
            }
        }
        out
    }
}

/// `rgb` (3 bytes a pixel) as opaque RGBA, for an `ImageData`.
pub fn opaque_rgba(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

/// RGBA for showing a candidate mask over its image: the pixels `selected` marks in `colour` at
/// `alpha`, the rest transparent.
pub fn selection_overlay_rgba(selected: &[u8], colour: [u8; 3], alpha: u8) -> Vec<u8> {
    selected
        .iter()
        .flat_map(|&s| if s != 0 { [colour[0], colour[1], colour[2], alpha] } else { [0; 4] })
        .collect()
}

/// Most prompt colours [`mask_colours`] returns: the page's per-colour toggles and the CLI's
/// colour classes. A run whose masks hold more refuses rather than dropping the rarest.
pub const MAX_MASK_COLOURS: usize = 16;

/// The distinct colours of the prompt masks (those covering at least 0.2% of all mask pixels),
/// black left out, at most [`MAX_MASK_COLOURS`], most frequent first: the page's per-colour
/// toggles. Class-index masks count with the colours of their palette. The worker's (the page gets
/// them in its results).
#[cfg(feature = "burn")]
pub fn mask_colours(prompts: &[crate::segment::Prompt]) -> Vec<[u8; 3]> {
    let mut colours = frequent_mask_colours(prompts);
    colours.truncate(MAX_MASK_COLOURS);
    colours
}

/// Every colour [`mask_colours`] would consider, most frequent first, without its cap: a caller
/// that must not drop a class checks the count.
#[cfg(feature = "burn")]
pub fn frequent_mask_colours(prompts: &[crate::segment::Prompt]) -> Vec<[u8; 3]> {
    use crate::pipeline::{build_palette, mask_to_rgb};
    use crate::segment::PromptMask;
    let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
    let mut total = 0;
    for prompt in prompts {
        let coloured;
        let rgb = match &prompt.mask {
            PromptMask::Rgb(rgb) => rgb.as_raw(),
            PromptMask::Classes { map, num_labels } => {
                match mask_to_rgb(map, Some(&build_palette(*num_labels))) {
                    Ok(rgb) => {
                        coloured = rgb;
                        coloured.as_raw()
                    }
                    Err(_) => continue,
                }
            }
        };
        for px in rgb.chunks_exact(3) {
            *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
        }
        total += rgb.len() / 3;
    }
    let mut colours: Vec<([u8; 3], usize)> =
        counts.into_iter().filter(|(c, n)| *c != [0, 0, 0] && *n * 500 >= total).collect();
    colours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    colours.into_iter().map(|(c, _)| c).collect()
}

/// The number of classes class-index masks imply when none is given: the largest index + 1, and 2
/// at least (background and one class). It sets the palette, as the CLI's `--num-labels` does.
pub fn inferred_num_classes<'a>(maps: impl IntoIterator<Item = &'a ClassMap>) -> usize {
    maps.into_iter()
        .filter_map(|map| map.as_raw().iter().copied().max())
        .max()
        .map_or(2, |max| (usize::from(max) + 1).max(2))
}

/// For each pixel of an RGB mask, `0` if it is nearest to black, else `1 + i` for the nearest of
/// `colours` (squared RGB distance; ties go to the earlier entry, black first).
pub fn nearest_colour_labels(rgb: &[u8], colours: &[[u8; 3]]) -> Vec<u8> {
    let dist =
        |p: &[u8], c: &[u8; 3]| -> i32 { (0..3).map(|k| (i32::from(p[k]) - i32::from(c[k])).pow(2)).sum() };
    rgb.chunks_exact(3)
        .map(|p| {
            let mut best = (dist(p, &[0, 0, 0]), 0u8);
            for (i, c) in colours.iter().enumerate().take(255) {
                let d = dist(p, c);
                if d < best.0 {
                    best = (d, i as u8 + 1);
                }
            }
            best.1
        })
        .collect()
}

/// The mask as RGBA for display, with the pixels of hidden colours painted white (white is the
/// identity of the multiply blend the overlay uses, so those areas show the target unchanged).
pub fn visible_mask_rgba(rgb: &[u8], labels: &[u8], hidden: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * 4);
    for (p, &label) in rgb.chunks_exact(3).zip(labels) {
        let hide = label > 0 && hidden.get(usize::from(label) - 1).copied().unwrap_or(false);
        if hide {
            out.extend_from_slice(&[255, 255, 255, 255]);
        } else {
            out.extend_from_slice(&[p[0], p[1], p[2], 255]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_from_a_results_rgb_is_painted_over_and_undone_back_to_it() {
        let start: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut mask = PaintMask::from_rgb(4, 3, start.clone()).unwrap();
        assert_eq!(mask.rgb(), start.as_slice());
        assert!(!mask.is_blank());
        let mut selected = vec![0u8; 12];
        selected[5] = 1;
        assert!(mask.apply_selection(&selected, [0, 0, 0]).is_some());
        assert_eq!(&mask.rgb()[15..18], &[0, 0, 0]);
        assert!(mask.undo());
        assert_eq!(mask.rgb(), start.as_slice());
        assert!(!mask.undo(), "nothing below the mask it started as");
        assert_eq!(mask.rgb(), start.as_slice());
        let err = PaintMask::from_rgb(4, 3, vec![0; 35]).err().unwrap();
        assert_eq!(err, "a 4 x 3 mask has 36 bytes of RGB, not 35");
    }

    #[test]
    fn opaque_rgba_adds_an_opaque_alpha_to_each_pixel() {
        assert_eq!(opaque_rgba(&[1, 2, 3, 4, 5, 6]), vec![1, 2, 3, 255, 4, 5, 6, 255]);
    }

    #[test]
    fn colours_are_called_by_the_nearest_plain_name() {
        for (colour, name) in
            BRUSH_COLOURS.iter().zip(["red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white"])
        {
            assert_eq!(colour_name(*colour), name);
        }
        assert_eq!(colour_name([250, 120, 10]), "orange");
        assert_eq!(colour_name([10, 240, 250]), "cyan");
        assert_eq!(colour_name([120, 130, 125]), "grey");
        assert_eq!(colour_name([0, 0, 0]), "black");
    }
    use crate::pipeline::{RgbImage, build_palette};
    use crate::segment::{Prompt, PromptMask};

    fn count(mask: &PaintMask, colour: [u8; 3]) -> usize {
        mask.rgb().chunks_exact(3).filter(|p| *p == colour).count()
    }

    #[test]
    fn a_dot_is_a_disc_of_the_brush_radius() {
        let mut mask = PaintMask::new(20, 20);
        let rect = mask.begin(10.0, 10.0, 3.0, [255, 0, 0]).unwrap();
        mask.end();
        // The changed area covers the disc, and the overlay of it shows exactly the painted pixels.
        assert!(
            rect.x <= 7 && rect.y <= 7 && rect.x + rect.width >= 13 && rect.y + rect.height >= 13,
            "{rect:?}"
        );
        let rgba = mask.overlay_rgba(rect, 200);
        assert_eq!(rgba.chunks_exact(4).filter(|p| *p == [255, 0, 0, 200]).count(), 32);
        assert_eq!(mask.begin(-10.0, -10.0, 2.0, [255, 0, 0]), None, "a dot off the image changes nothing");
        // Pixel centres within 3 px of (10, 10): offsets +-0.5, +-1.5, +-2.5 on each axis, all
        // 36 pairs but the 4 corners (2.5^2 + 2.5^2 > 9).
        assert_eq!(count(&mask, [255, 0, 0]), 32);
        assert_eq!(count(&mask, [0, 0, 0]), 400 - 32);
        assert!(!mask.is_blank());
    }

    #[test]
    fn a_fast_stroke_leaves_no_gaps_and_stays_inside_the_image() {
        let mut mask = PaintMask::new(50, 10);
        mask.begin(-5.0, 5.0, 1.0, [0, 255, 0]);
        mask.extend(60.0, 5.0, 1.0, [0, 255, 0]);
        mask.end();
        for x in 0..50usize {
            let i = (5 * 50 + x) * 3;
            assert_eq!(&mask.rgb()[i..i + 3], &[0, 255, 0], "gap at x = {x}");
        }
        // Without a stroke begun, moving paints nothing.
        let mut idle = PaintMask::new(5, 5);
        idle.extend(2.0, 2.0, 2.0, [0, 255, 0]);
        assert!(idle.is_blank());
    }

    #[test]
    fn eraser_undo_and_clear() {
        let mut mask = PaintMask::new(10, 10);
        mask.begin(5.0, 5.0, 4.0, [0, 0, 255]);
        mask.end();
        let painted = count(&mask, [0, 0, 255]);
        mask.begin(5.0, 5.0, 1.0, [0, 0, 0]); // the eraser paints background
        mask.end();
        assert!(count(&mask, [0, 0, 255]) < painted);
        assert!(mask.undo());
        assert_eq!(count(&mask, [0, 0, 255]), painted);
        mask.clear();
        assert!(mask.is_blank());
        assert!(mask.undo());
        assert_eq!(count(&mask, [0, 0, 255]), painted);
        assert!(mask.undo());
        assert!(mask.is_blank());
        assert!(!mask.undo());
    }

    #[test]
    fn a_stroke_keeps_only_the_rectangle_it_changed_for_undo() {
        // 12 megapixels: a full copy per step, as undo used to keep, is 36 MB.
        let mut mask = PaintMask::new(4000, 3000);
        for i in 0..100 {
            let x = 20.0 + 35.0 * i as f64;
            mask.begin(x, 100.0, 5.0, [255, 0, 0]);
            mask.extend(x + 10.0, 110.0, 5.0, [255, 0, 0]);
            mask.end();
        }
        // Each stroke spans at most 22 x 22 pixels.
        assert!(mask.undo_bytes() <= 100 * 22 * 22 * 3, "{} bytes", mask.undo_bytes());
        let painted = count(&mask, [255, 0, 0]);
        assert!(mask.undo());
        assert!(count(&mask, [255, 0, 0]) < painted);
        let mut undone = 1;
        while mask.undo() {
            undone += 1;
        }
        assert_eq!(undone, 100);
        assert!(mask.is_blank());
        assert_eq!(mask.undo_bytes(), 0);
    }

    #[test]
    fn a_selection_paints_or_subtracts_its_pixels_as_one_undo_step() {
        let mut mask = PaintMask::new(4, 3);
        let mut selected = vec![0u8; 12];
        for i in [1, 2, 5, 6] {
            selected[i] = 1;
        }
        let rect = mask.apply_selection(&selected, [255, 0, 0]);
        assert_eq!(rect, Some(Rect { x: 1, y: 0, width: 2, height: 2 }));
        assert_eq!(count(&mask, [255, 0, 0]), 4);
        assert_eq!(mask.apply_selection(&selected, [255, 0, 0]), None, "nothing new: no step");
        // Subtracting a selection that overlaps part of the painted area.
        let mut lower = vec![0u8; 12];
        lower[5] = 1;
        lower[9] = 1;
        assert_eq!(mask.apply_selection(&lower, [0, 0, 0]), Some(Rect { x: 1, y: 1, width: 1, height: 1 }));
        assert_eq!(count(&mask, [255, 0, 0]), 3);
        assert!(mask.undo());
        assert_eq!(count(&mask, [255, 0, 0]), 4);
        assert!(mask.undo());
        assert!(mask.is_blank());
        let overlay = selection_overlay_rgba(&lower, [0, 255, 0], 99);
        assert_eq!(&overlay[20..24], &[0, 255, 0, 99]);
        assert_eq!(&overlay[16..20], &[0, 0, 0, 0]);
    }

    #[test]
    fn undo_history_is_bounded_by_bytes_newest_steps_kept() {
        // 9 MB of pixels; each full repaint or clear is a 9 MB step.
        let mut mask = PaintMask::new(2000, 1500);
        for round in 0..20u8 {
            mask.begin(1000.0, 750.0, 3000.0, [255, round, 0]);
            mask.end();
            mask.clear();
        }
        assert!(mask.undo_bytes() <= UNDO_BYTES, "{} bytes", mask.undo_bytes());
        // Newest first: the clear of round 19, then its paint, revealing round 18's colour.
        assert!(mask.undo());
        assert_eq!(count(&mask, [255, 19, 0]), 2000 * 1500);
        assert!(mask.undo());
        assert!(mask.is_blank());
        assert!(mask.undo());
        assert_eq!(count(&mask, [255, 18, 0]), 2000 * 1500);
        let mut left = 0;
        while mask.undo() {
            left += 1;
        }
        assert!(left < 37, "{left} more steps: the oldest should have been dropped");
        assert_eq!(mask.undo_bytes(), 0);
        // Clearing a blank mask is not a step.
        mask.rgb.fill(0);
        mask.clear();
        assert!(!mask.undo());
    }

    #[test]
    fn labels_pick_the_nearest_colour_and_hidden_ones_turn_white() {
        let rgb = [0, 0, 0, 250, 10, 5, 10, 240, 20, 100, 100, 100];
        let colours = [[255, 0, 0], [0, 255, 0]];
        let labels = nearest_colour_labels(&rgb, &colours);
        assert_eq!(labels, vec![0, 1, 2, 0]);
        let shown = visible_mask_rgba(&rgb, &labels, &[true, false]);
        assert_eq!(&shown[4..8], &[255, 255, 255, 255]);
        assert_eq!(&shown[8..12], &[10, 240, 20, 255]);
        assert_eq!(&shown[0..4], &[0, 0, 0, 255]);
        let blank = PaintMask::new(1, 1);
        assert_eq!(blank.overlay_rgba(blank.full(), 160), vec![0, 0, 0, 0]);
    }

    fn rgb_prompt(width: u32, rgb: Vec<u8>) -> Prompt {
        let height = (rgb.len() / 3) as u32 / width;
        let image = RgbImage::new(width, height, vec![0; rgb.len()]).unwrap();
        Prompt { image, mask: PromptMask::Rgb(RgbImage::new(width, height, rgb).unwrap()) }
    }

    #[test]
    fn mask_colours_are_the_frequent_ones_most_frequent_first() {
        // 2000 mask pixels in two prompts, so 0.2% is 4 pixels. The first: 596 black, 300 green, 100
        // red, 4 blue (kept); the second: black but for 3 yellow pixels (noise, dropped).
        let mut first = Vec::new();
        for (colour, n) in [([0, 0, 0], 596), ([0, 255, 0], 300), ([255, 0, 0], 100), ([0, 0, 255], 4)] {
            for _ in 0..n {
                first.extend_from_slice(&colour);
            }
        }
        let mut second = vec![0u8; 3000];
        second[..9].copy_from_slice(&[255, 255, 0, 255, 255, 0, 255, 255, 0]);
        let prompts = [rgb_prompt(100, first), rgb_prompt(100, second)];
        assert_eq!(mask_colours(&prompts), vec![[0, 255, 0], [255, 0, 0], [0, 0, 255]]);
    }

    #[test]
    fn class_masks_give_palette_colours_and_imply_max_index_plus_one_classes() {
        let a = ClassMap::new(4, 1, vec![0, 1, 1, 3]).unwrap();
        let b = ClassMap::new(2, 1, vec![0, 2]).unwrap();
        assert_eq!(inferred_num_classes([&a, &b]), 4);
        let background = ClassMap::new(2, 1, vec![0, 0]).unwrap();
        assert_eq!(inferred_num_classes([&background]), 2);
        assert_eq!(inferred_num_classes([]), 2);
        let palette = build_palette(4);
        let image = RgbImage::new(4, 1, vec![0; 12]).unwrap();
        let prompt = Prompt { image, mask: PromptMask::Classes { map: a, num_labels: 4 } };
        assert_eq!(mask_colours(&[prompt]), vec![palette[1], palette[3]]);
    }
}
