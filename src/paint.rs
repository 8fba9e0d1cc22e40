//! Pixel work of the page that needs no browser, so it is tested natively: the painted prompt mask
//! (brush strokes, eraser, undo, clear) and the per-colour view of a result mask.

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

/// Undo depth: each stroke keeps a copy of the mask.
const UNDO_STEPS: usize = 20;

/// A pixel rectangle: what a stroke changed, so the page redraws only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    fn union(self, other: Option<Rect>) -> Rect {
        let Some(o) = other else { return self };
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        let right = (self.x + self.width).max(o.x + o.width);
        let bottom = (self.y + self.height).max(o.y + o.height);
        Rect { x, y, width: right - x, height: bottom - y }
    }
}

/// A mask painted at the prompt image's own size: RGB, black background, exact colours (no
/// anti-aliasing, so every painted pixel is one of the brush colours).
#[derive(Debug, Clone)]
pub struct PaintMask {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    undo: Vec<Vec<u8>>,
    last: Option<(f64, f64)>,
}

impl PaintMask {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
            undo: Vec::new(),
            last: None,
        }
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

    /// Starts a stroke at `(x, y)` (image pixels): saves an undo step and stamps one disc.
    /// Returns the changed area (`None` when the disc misses the image).
    pub fn begin(&mut self, x: f64, y: f64, radius: f64, colour: [u8; 3]) -> Option<Rect> {
        self.save_undo();
        self.last = Some((x, y));
        self.stamp(x, y, radius, colour)
    }

    /// Continues the stroke to `(x, y)`: discs every half radius along the segment, so fast moves
    /// leave no gaps. Without a started stroke it does nothing.
    pub fn extend(&mut self, x: f64, y: f64, radius: f64, colour: [u8; 3]) -> Option<Rect> {
        let (x0, y0) = self.last?;
        let length = ((x - x0).powi(2) + (y - y0).powi(2)).sqrt();
        let steps = (length / (radius / 2.0).max(0.5)).ceil().max(1.0) as usize;
        let mut changed: Option<Rect> = None;
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            if let Some(rect) = self.stamp(x0 + (x - x0) * t, y0 + (y - y0) * t, radius, colour) {
                changed = Some(rect.union(changed));
            }
        }
        self.last = Some((x, y));
        changed
    }

    pub fn end(&mut self) {
        self.last = None;
    }

    /// Back to the mask before the last stroke (or clear); false if there is none.
    pub fn undo(&mut self) -> bool {
        match self.undo.pop() {
            Some(previous) => {
                self.rgb = previous;
                true
            }
            None => false,
        }
    }

    /// Everything back to background (undoable).
    pub fn clear(&mut self) {
        self.save_undo();
        self.rgb.fill(0);
    }

    fn save_undo(&mut self) {
        if self.undo.len() == UNDO_STEPS {
            self.undo.remove(0);
        }
        self.undo.push(self.rgb.clone());
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
    fn undo_keeps_a_bounded_history() {
        let mut mask = PaintMask::new(4, 4);
        for i in 0..UNDO_STEPS + 5 {
            if i % 2 == 0 {
                mask.begin(1.0, 1.0, 1.0, [255, 0, 0]);
            } else {
                mask.clear();
            }
        }
        let mut undone = 0;
        while mask.undo() {
            undone += 1;
        }
        assert_eq!(undone, UNDO_STEPS);
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
}
