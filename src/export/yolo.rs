//! YOLO segmentation labels (docs/MODEL.md §18.5): one line per instance,
//! `class x1 y1 x2 y2 ...`, the class 0-based (category id - 1) and the outline's vertices divided
//! by the image's width and height, as Ultralytics reads them.

use std::fmt::Write;

use super::components::Components;
use super::polygon::outline;

/// The label file's text for `components`: a line per component, in their order (an image with
/// none gives an empty file, which Ultralytics reads as an image of background only).
pub fn label_text(components: &Components) -> String {
    let (w, h) = (f64::from(components.width), f64::from(components.height));
    let mut text = String::new();
    for (i, component) in components.list.iter().enumerate() {
        let _ = write!(text, "{}", component.class - 1);
        for (x, y) in outline(components, i as u32 + 1) {
            let _ = write!(text, " {:.6} {:.6}", f64::from(x) / w, f64::from(y) / h);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClassMap;

    #[test]
    fn a_line_per_instance_with_a_zero_based_class_and_normalised_corners() {
        let map = ClassMap::new(4, 2, vec![0, 2, 0, 0, 0, 0, 0, 1]).unwrap();
        let text = label_text(&Components::of(&map, 1));
        assert_eq!(
            text,
            "1 0.500000 0.000000 0.500000 0.500000 0.250000 0.500000 0.250000 0.000000\n\
             0 1.000000 0.500000 1.000000 1.000000 0.750000 1.000000 0.750000 0.500000\n"
        );
    }
}
