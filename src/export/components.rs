//! Connected components of a class map: every maximal 8-connected region of pixels that share a
//! class other than 0 (the background) is one instance (docs/MODEL.md §18.1).
//!
//! 8-connectivity (pixels touching at a corner belong together) keeps a thin diagonal structure,
//! a one-pixel line drawn at 45 degrees, as one instance rather than a chain of single pixels;
//! it is also what OpenCV's `connectedComponents` and scikit-image's `label` do by default.

use crate::pipeline::ClassMap;

/// One instance: a connected region of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The class index in the class map (1 or more).
    pub class: u8,
    /// Pixels in the region.
    pub area: u64,
    /// The tight bounding box, inclusive: leftmost and rightmost column, top and bottom row.
    pub x_min: u32,
    pub y_min: u32,
    pub x_max: u32,
    pub y_max: u32,
    /// Its first pixel in raster order (top row, then leftmost): a pixel on its outer boundary.
    pub first: (u32, u32),
}

impl Component {
    /// COCO's `bbox`: `[x, y, width, height]` in pixels, as `pycocotools.mask.toBbox` gives it.
    pub fn bbox(&self) -> [f64; 4] {
        [
            f64::from(self.x_min),
            f64::from(self.y_min),
            f64::from(self.x_max - self.x_min + 1),
            f64::from(self.y_max - self.y_min + 1),
        ]
    }
}

/// The components of one class map, and per pixel which one it belongs to.
#[derive(Debug, Clone)]
pub struct Components {
    pub width: u32,
    pub height: u32,
    /// Row-major: 0 for background and dropped regions, `i + 1` for `list[i]`.
    pub ids: Vec<u32>,
    /// In raster order of their first pixel.
    pub list: Vec<Component>,
}

/// Offsets of the 8 neighbours.
const NEIGHBOURS: [(i64, i64); 8] = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)];

impl Components {
    /// Splits `map` into components and keeps those of at least `min_area` pixels (the others
    /// become background here; the class map itself is not changed).
    pub fn of(map: &ClassMap, min_area: u64) -> Self {
        let (width, height) = (map.width(), map.height());
        let (w, h) = (width as usize, height as usize);
        let classes = map.as_raw();
        let mut ids = vec![0u32; w * h];
        let mut list = Vec::new();
        let mut stack = Vec::new();
        for start in 0..w * h {
            let class = classes[start];
            if class == 0 || ids[start] != 0 {
                continue;
            }
            let id = list.len() as u32 + 1;
            let (x0, y0) = ((start % w) as u32, (start / w) as u32);
            let mut component =
                Component { class, area: 0, x_min: x0, y_min: y0, x_max: x0, y_max: y0, first: (x0, y0) };
            ids[start] = id;
            stack.push(start);
            while let Some(at) = stack.pop() {
                let (x, y) = ((at % w) as i64, (at / w) as i64);
                component.area += 1;
                component.x_min = component.x_min.min(x as u32);
                component.x_max = component.x_max.max(x as u32);
                component.y_max = component.y_max.max(y as u32);
                for (dx, dy) in NEIGHBOURS {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let next = ny as usize * w + nx as usize;
                    if classes[next] == class && ids[next] == 0 {
                        ids[next] = id;
                        stack.push(next);
                    }
                }
            }
            list.push(component);
        }
        if list.iter().any(|c| c.area < min_area) {
            // Renumber the kept components in order; dropped ones become 0.
            let mut renumbered = vec![0u32; list.len() + 1];
            let mut kept = Vec::new();
            for (i, component) in list.into_iter().enumerate() {
                if component.area >= min_area {
                    kept.push(component);
                    renumbered[i + 1] = kept.len() as u32;
                }
            }
            ids.iter_mut().for_each(|id| *id = renumbered[*id as usize]);
            list = kept;
        }
        Self { width, height, ids, list }
    }

    /// Whether pixel `(x, y)` belongs to component `id` (1-based); false outside the image.
    pub fn is(&self, id: u32, x: i64, y: i64) -> bool {
        x >= 0
            && y >= 0
            && x < i64::from(self.width)
            && y < i64::from(self.height)
            && self.ids[y as usize * self.width as usize + x as usize] == id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rows: &[&str]) -> ClassMap {
        let data: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| b - b'0')).collect();
        ClassMap::new(rows[0].len() as u32, rows.len() as u32, data).unwrap()
    }

    #[test]
    fn diagonal_neighbours_join_and_classes_stay_apart() {
        let found = Components::of(&map(&["1000", "0100", "0022", "0020"]), 1);
        assert_eq!(found.list.len(), 2);
        let (a, b) = (&found.list[0], &found.list[1]);
        assert_eq!((a.class, a.area, a.bbox()), (1, 2, [0.0, 0.0, 2.0, 2.0]));
        assert_eq!((b.class, b.area, b.bbox()), (2, 3, [2.0, 2.0, 2.0, 2.0]));
        // The 1s touch the 2s only at a corner, but are another class: two components.
        assert_eq!(found.ids, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 2, 0, 0, 2, 0]);
    }

    #[test]
    fn components_below_the_minimum_area_are_dropped_and_the_rest_renumbered() {
        let found = Components::of(&map(&["1001", "0001", "1101"]), 2);
        assert_eq!(found.list.iter().map(|c| c.area).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(found.ids, [0, 0, 0, 1, 0, 0, 0, 1, 2, 2, 0, 1]);
        assert_eq!(found.list[1].first, (0, 2));
        assert!(Components::of(&map(&["000"]), 1).list.is_empty());
    }
}
