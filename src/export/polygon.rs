//! The outline of a component as one polygon (docs/MODEL.md §18.3).
//!
//! Vertices lie on the pixel-corner grid: pixel `(x, y)` is the square from `(x, y)` to
//! `(x + 1, y + 1)`, as COCO polygons and `pycocotools` read them. The outline follows the
//! pixel edges between the component and everything else, so the polygon encloses exactly the
//! component's pixels; only the corners are kept. Each hole's outline is joined to the outer one
//! by a bridge walked there and back (a zero-width cut), which gives one polygon per instance,
//! as YOLO needs and COCO accepts: filled with the even-odd or the non-zero rule the holes stay
//! empty, since a bridge is crossed twice and a hole's outline runs the other way round.

use super::components::Components;

/// A polygon's vertices, `(x, y)` on the pixel-corner grid, in order; it closes by itself.
pub type Polygon = Vec<(u32, u32)>;

/// Edge directions in image coordinates (y down), clockwise: a right turn is `+1`.
const EAST: u8 = 0;
const SOUTH: u8 = 1;
const WEST: u8 = 2;
const NORTH: u8 = 3;

fn step(direction: u8) -> (i64, i64) {
    match direction {
        EAST => (1, 0),
        SOUTH => (0, 1),
        WEST => (-1, 0),
        _ => (0, -1),
    }
}

/// The outline of component `id` (1-based) of `components`.
pub fn outline(components: &Components, id: u32) -> Polygon {
    let component = &components.list[id as usize - 1];
    let (x0, y0) = (i64::from(component.x_min), i64::from(component.y_min));
    let grid_w = (component.x_max - component.x_min + 2) as usize;
    let grid_h = (component.y_max - component.y_min + 2) as usize;
    // Per corner of the bounding box's grid, a bit per direction of a boundary edge leaving it.
    // Edges run with the component on their right: clockwise round the outside, anticlockwise
    // round holes.
    let mut edges = vec![0u8; grid_w * grid_h];
    let corner = |x: i64, y: i64| (y - y0) as usize * grid_w + (x - x0) as usize;
    for y in y0..=i64::from(component.y_max) {
        for x in x0..=i64::from(component.x_max) {
            if !components.is(id, x, y) {
                continue;
            }
            let outside = |dx: i64, dy: i64| !components.is(id, x + dx, y + dy);
            if outside(0, -1) {
                edges[corner(x, y)] |= 1 << EAST;
            }
            if outside(1, 0) {
                edges[corner(x + 1, y)] |= 1 << SOUTH;
            }
            if outside(0, 1) {
                edges[corner(x + 1, y + 1)] |= 1 << WEST;
            }
            if outside(-1, 0) {
                edges[corner(x, y + 1)] |= 1 << NORTH;
            }
        }
    }
    let grid = Grid { edges: &edges, width: grid_w, origin: (x0, y0) };
    let mut unused = edges.clone();
    // The first pixel in raster order has nothing above it nor to its left: its top edge is on
    // the outer outline.
    let (fx, fy) = component.first;
    let mut polygon = grid.trace(&mut unused, corner(i64::from(fx), i64::from(fy)), EAST);
    for at in 0..unused.len() {
        while unused[at] != 0 {
            let direction = unused[at].trailing_zeros() as u8;
            let hole = grid.trace(&mut unused, at, direction);
            join_hole(&mut polygon, &hole);
        }
    }
    polygon
}

/// The boundary edges round one component, on the corner grid of its bounding box.
struct Grid<'a> {
    edges: &'a [u8],
    width: usize,
    /// The image coordinates of the grid's first corner.
    origin: (i64, i64),
}

impl Grid<'_> {
    /// Follows the edges from corner `start` in `start_direction` until it returns there,
    /// clearing each edge in `unused`; returns the corners where the direction changes.
    fn trace(&self, unused: &mut [u8], start: usize, start_direction: u8) -> Polygon {
        let mut points = Vec::new();
        let (mut at, mut direction) = (start, start_direction);
        loop {
            unused[at] &= !(1 << direction);
            let (dx, dy) = step(direction);
            let (x, y) = ((at % self.width) as i64 + dx, (at / self.width) as i64 + dy);
            at = y as usize * self.width + x as usize;
            // Where two edges leave a corner, two pixels of the component meet there diagonally
            // (they are one component by 8-connectivity): turning left keeps them in one outline.
            let next = [(direction + 3) % 4, direction, (direction + 1) % 4]
                .into_iter()
                .find(|d| self.edges[at] & (1 << d) != 0)
                .unwrap_or(direction);
            if next != direction {
                points.push(((x + self.origin.0) as u32, (y + self.origin.1) as u32));
            }
            if (at, next) == (start, start_direction) {
                return points;
            }
            direction = next;
        }
    }
}

/// Splices `hole` into `polygon` through a bridge between their closest vertices.
fn join_hole(polygon: &mut Polygon, hole: &Polygon) {
    let distance = |a: (u32, u32), b: (u32, u32)| {
        let (dx, dy) = (i64::from(a.0) - i64::from(b.0), i64::from(a.1) - i64::from(b.1));
        dx * dx + dy * dy
    };
    let mut best = (i64::MAX, 0, 0);
    for (i, &p) in polygon.iter().enumerate() {
        for (j, &h) in hole.iter().enumerate() {
            let d = distance(p, h);
            if d < best.0 {
                best = (d, i, j);
            }
        }
    }
    let (_, i, j) = best;
    let (p, h) = (polygon[i], hole[j]);
    // The bridge runs along pixel edges (across, then down or up), never through a pixel's
    // centre, where a diagonal one could make a rasteriser sampling centres drop that pixel.
    let bend = (h.0, p.1);
    let bend = if bend == p || bend == h { None } else { Some(bend) };
    // ..., P_i, [bend], H_j, H_j+1, ..., H_j-1, H_j, [bend], P_i, P_i+1, ...
    let mut spliced = Vec::with_capacity(polygon.len() + hole.len() + 4);
    spliced.extend_from_slice(&polygon[..=i]);
    spliced.extend(bend);
    spliced.extend(hole[j..].iter().chain(&hole[..=j]));
    spliced.extend(bend);
    spliced.extend_from_slice(&polygon[i..]);
    *polygon = spliced;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClassMap;

    fn components(rows: &[&str]) -> Components {
        let data: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| b - b'0')).collect();
        Components::of(&ClassMap::new(rows[0].len() as u32, rows.len() as u32, data).unwrap(), 1)
    }

    #[test]
    fn a_pixel_is_its_square_clockwise() {
        let found = components(&["000", "010", "000"]);
        assert_eq!(outline(&found, 1), [(2, 1), (2, 2), (1, 2), (1, 1)]);
    }

    #[test]
    fn an_l_shape_keeps_only_its_corners() {
        let found = components(&["10", "11"]);
        assert_eq!(outline(&found, 1), [(1, 0), (1, 1), (2, 1), (2, 2), (0, 2), (0, 0)]);
    }

    #[test]
    fn diagonal_pixels_are_one_outline_through_their_shared_corner() {
        let found = components(&["10", "01"]);
        assert_eq!(found.list.len(), 1);
        let polygon = outline(&found, 1);
        assert_eq!(polygon.iter().filter(|p| **p == (1, 1)).count(), 2, "{polygon:?}");
        assert_eq!(polygon.len(), 8);
    }

    #[test]
    fn a_hole_is_joined_by_a_bridge_and_runs_the_other_way() {
        let found = components(&["111", "101", "111"]);
        let polygon = outline(&found, 1);
        // Outer square (4 corners) + hole square (4 corners) + both bridge ends repeated, and
        // the bridge's bend there and back.
        assert_eq!(
            polygon,
            [(3, 0), (2, 0), (2, 1), (1, 1), (1, 2), (2, 2), (2, 1), (2, 0), (3, 0), (3, 3), (0, 3), (0, 0)]
        );
        // Signed area (shoelace, y down): outer 9 clockwise, hole 1 anticlockwise -> 8.
        let twice: i64 = (0..polygon.len())
            .map(|k| {
                let (a, b) = (polygon[k], polygon[(k + 1) % polygon.len()]);
                i64::from(a.0) * i64::from(b.1) - i64::from(b.0) * i64::from(a.1)
            })
            .sum();
        assert_eq!(twice, 16);
    }
}
