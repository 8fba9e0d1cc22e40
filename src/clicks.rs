//! Click to select, as the page's pointer and keyboard give it: points on or off an object and a box,
//! in the image's own pixels, and the keyboard's crosshair. No pixels and no model here: the worker
//! turns a [`ClickPrompt`] into SAM's masks (`crate::select`), the page draws them.

use serde::{Deserialize, Serialize};

/// A pointer that moves less than this many CSS pixels between press and release clicked (a point);
/// further, it dragged (a box).
pub const DRAG_CSS_PX: f64 = 5.0;
/// How far one arrow key moves the crosshair, in image pixels; with Shift, [`CROSSHAIR_FAST`].
pub const CROSSHAIR_STEP: i64 = 1;
pub const CROSSHAIR_FAST: i64 = 10;

/// One click: the pixel `(x, y)` it landed on (its top-left corner, as `seggpt sam --point X,Y`
/// reads integers), on the object or off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickPoint {
    pub x: u32,
    pub y: u32,
    pub on: bool,
}

/// What the visitor has clicked on one image so far: any number of points and at most one box
/// (`[x0, y0, x1, y1]`, top-left and bottom-right, as `seggpt sam --box` takes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickPrompt {
    pub points: Vec<ClickPoint>,
    pub bbox: Option<[u32; 4]>,
}

impl ClickPrompt {
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.bbox.is_none()
    }

    /// Three candidates for a single point, which is ambiguous (a part, the object, the group); one
    /// mask once more points or a box say which (SAM's own advice for its multimask output).
    pub fn wants_multimask(&self) -> bool {
        self.points.len() == 1 && self.bbox.is_none()
    }

    /// The same prompt as `seggpt sam`'s flags, to say in the page and to repeat on the command line.
    pub fn cli_flags(&self) -> String {
        let mut flags: Vec<String> =
            self.points.iter().map(|p| format!("--point {},{},{}", p.x, p.y, u8::from(p.on))).collect();
        if let Some([x0, y0, x1, y1]) = self.bbox {
            flags.push(format!("--box {x0},{y0},{x1},{y1}"));
        }
        if self.wants_multimask() {
            flags.push("--multimask".into());
        }
        flags.join(" ")
    }
}

/// What one press-and-release of the pointer on a `width x height` image adds: a point where it was
/// pressed, or, dragged at least [`DRAG_CSS_PX`] on screen, the box it spanned (clamped to the image).
/// `css_distance`: how far it moved on screen; `off`: Shift or the right button (a point off the object).
pub fn gesture(
    (width, height): (u32, u32),
    down: (f64, f64),
    up: (f64, f64),
    css_distance: f64,
    off: bool,
) -> Option<Gesture> {
    let pixel = |(x, y): (f64, f64)| {
        let clamp = |v: f64, size: u32| v.floor().clamp(0.0, f64::from(size.max(1) - 1)) as u32;
        (clamp(x, width), clamp(y, height))
    };
    let inside = |(x, y): (f64, f64)| x >= 0.0 && y >= 0.0 && x < f64::from(width) && y < f64::from(height);
    if css_distance < DRAG_CSS_PX {
        return inside(down).then(|| {
            let (x, y) = pixel(down);
            Gesture::Point(ClickPoint { x, y, on: !off })
        });
    }
    let ((ax, ay), (bx, by)) = (pixel(down), pixel(up));
    let bbox = [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)];
    // A drag along one row or column spans no area: not a box SAM can take.
    (bbox[2] > bbox[0] && bbox[3] > bbox[1]).then_some(Gesture::Box(bbox))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    Point(ClickPoint),
    Box([u32; 4]),
}

impl ClickPrompt {
    /// Adds a point, or puts a box in place of the one before (SAM takes one box).
    pub fn add(&mut self, gesture: Gesture) {
        match gesture {
            Gesture::Point(point) => self.points.push(point),
            Gesture::Box(bbox) => self.bbox = Some(bbox),
        }
    }
}

/// The keyboard's way to click: a crosshair over the image, moved by the arrow keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crosshair {
    pub x: u32,
    pub y: u32,
}

/// An arrow key pressed over the image in click mode (Enter places a point at the crosshair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrow {
    Left,
    Right,
    Up,
    Down,
}

impl Arrow {
    /// The arrow of a `KeyboardEvent.key`.
    pub fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "ArrowLeft" => Arrow::Left,
            "ArrowRight" => Arrow::Right,
            "ArrowUp" => Arrow::Up,
            "ArrowDown" => Arrow::Down,
            _ => return None,
        })
    }
}

impl Crosshair {
    /// Starts at the image's centre.
    pub fn centre((width, height): (u32, u32)) -> Self {
        Self { x: width / 2, y: height / 2 }
    }

    /// The crosshair moved by `key` (by [`CROSSHAIR_FAST`] with Shift), kept on the image.
    pub fn moved(self, arrow: Arrow, fast: bool, (width, height): (u32, u32)) -> Self {
        let step = if fast { CROSSHAIR_FAST } else { CROSSHAIR_STEP };
        let (dx, dy) = match arrow {
            Arrow::Left => (-step, 0),
            Arrow::Right => (step, 0),
            Arrow::Up => (0, -step),
            Arrow::Down => (0, step),
        };
        let clamp =
            |v: u32, d: i64, size: u32| (i64::from(v) + d).clamp(0, i64::from(size.max(1)) - 1) as u32;
        Self { x: clamp(self.x, dx, width), y: clamp(self.y, dy, height) }
    }

    pub fn point(self, on: bool) -> ClickPoint {
        ClickPoint { x: self.x, y: self.y, on }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: (u32, u32) = (40, 30);

    #[test]
    fn a_short_press_is_a_point_on_the_pixel_under_it_and_shift_makes_it_off_the_object() {
        let on = gesture(IMAGE, (12.7, 3.2), (13.1, 3.9), 1.5, false);
        assert_eq!(on, Some(Gesture::Point(ClickPoint { x: 12, y: 3, on: true })));
        let off = gesture(IMAGE, (0.0, 29.99), (0.0, 29.99), 0.0, true);
        assert_eq!(off, Some(Gesture::Point(ClickPoint { x: 0, y: 29, on: false })));
        assert_eq!(gesture(IMAGE, (40.0, 3.0), (40.0, 3.0), 0.0, false), None, "just past the right edge");
        assert_eq!(gesture(IMAGE, (-0.5, 3.0), (-0.5, 3.0), 0.0, false), None);
    }

    #[test]
    fn a_drag_is_a_box_with_its_corners_ordered_and_clamped_to_the_image() {
        let drag = gesture(IMAGE, (30.5, 25.2), (-4.0, 2.9), DRAG_CSS_PX, false);
        assert_eq!(drag, Some(Gesture::Box([0, 2, 30, 25])));
        assert_eq!(gesture(IMAGE, (5.0, 5.0), (25.0, 5.5), 80.0, false), None, "one row spans no area");
    }

    #[test]
    fn points_add_up_a_box_replaces_the_last_and_one_point_alone_asks_for_three_candidates() {
        let mut prompt = ClickPrompt::default();
        assert!(prompt.is_empty());
        prompt.add(Gesture::Point(ClickPoint { x: 3, y: 4, on: true }));
        assert!(prompt.wants_multimask());
        assert_eq!(prompt.cli_flags(), "--point 3,4,1 --multimask");
        prompt.add(Gesture::Box([1, 1, 9, 9]));
        prompt.add(Gesture::Box([2, 2, 8, 7]));
        prompt.add(Gesture::Point(ClickPoint { x: 5, y: 6, on: false }));
        assert!(!prompt.wants_multimask());
        assert_eq!(prompt.points.len(), 2);
        assert_eq!(prompt.cli_flags(), "--point 3,4,1 --point 5,6,0 --box 2,2,8,7");
    }

    #[test]
    fn the_crosshair_starts_centred_moves_by_one_or_ten_and_stays_on_the_image() {
        let start = Crosshair::centre(IMAGE);
        assert_eq!(start, Crosshair { x: 20, y: 15 });
        assert_eq!(start.moved(Arrow::Right, false, IMAGE), Crosshair { x: 21, y: 15 });
        assert_eq!(start.moved(Arrow::Up, true, IMAGE), Crosshair { x: 20, y: 5 });
        let corner = Crosshair { x: 1, y: 28 };
        assert_eq!(corner.moved(Arrow::Left, true, IMAGE), Crosshair { x: 0, y: 28 });
        assert_eq!(corner.moved(Arrow::Down, true, IMAGE), Crosshair { x: 1, y: 29 });
        assert_eq!(corner.point(false), ClickPoint { x: 1, y: 28, on: false });
        assert_eq!(Arrow::from_key("ArrowUp"), Some(Arrow::Up));
        assert_eq!(Arrow::from_key("Enter"), None);
    }
}
