//! The dataset exports against pycocotools (tests/fixtures/export, written by
//! scripts/make_fixtures.py export): the same components, RLE strings, areas and boxes; and every
//! outline polygon, filled back, covers its component.

mod common;

use common::fixtures;
use seggpt::export::polygon::{Polygon, outline};
use seggpt::export::{Components, Rle, Segmentation, image_annotations, yolo};
use seggpt::pipeline::ClassMap;

struct Case {
    name: String,
    map: ClassMap,
    expected: Vec<serde_json::Value>,
}

fn cases() -> Vec<Case> {
    let path = fixtures().join("export/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["connectivity"], 8);
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let rows: Vec<&str> =
                case["rows"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            let data: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| b - b'0')).collect();
            let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
            Case {
                name: case["name"].as_str().unwrap().to_string(),
                map: ClassMap::new(w, h, data).unwrap(),
                expected: case["components"].as_array().unwrap().clone(),
            }
        })
        .collect()
}

#[test]
fn components_rle_area_and_bbox_equal_pycocotools() {
    let mut compared = 0;
    for case in cases() {
        let found = Components::of(&case.map, 1);
        assert_eq!(found.list.len(), case.expected.len(), "{}: number of components", case.name);
        let rles = Rle::of_components(&found);
        for (i, ((component, rle), expected)) in found.list.iter().zip(&rles).zip(&case.expected).enumerate()
        {
            let label = format!("{} component {i}", case.name);
            assert_eq!(u64::from(component.class), expected["class"].as_u64().unwrap(), "{label}: class");
            let first = [u64::from(component.first.0), u64::from(component.first.1)];
            assert_eq!(
                first.as_slice(),
                expected["first"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>(),
                "{label}: first pixel"
            );
            assert_eq!(rle.to_coco_string(), expected["counts"].as_str().unwrap(), "{label}: RLE");
            assert_eq!(rle.area(), expected["area"].as_u64().unwrap(), "{label}: RLE area");
            assert_eq!(component.area, expected["area"].as_u64().unwrap(), "{label}: area");
            let bbox: Vec<f64> =
                expected["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(component.bbox().as_slice(), bbox.as_slice(), "{label}: bbox");
            compared += 1;
        }
        // The COCO annotations carry the same values.
        for (annotation, expected) in image_annotations(&found, false).iter().zip(&case.expected) {
            let Segmentation::Rle { size, counts } = &annotation.segmentation else { panic!("RLE expected") };
            assert_eq!(*size, [case.map.height(), case.map.width()]);
            assert_eq!(counts, expected["counts"].as_str().unwrap());
            assert_eq!(annotation.area, expected["area"].as_f64().unwrap());
        }
    }
    assert!(compared > 500, "only {compared} components compared");
}

/// Fills `polygon` with the even-odd rule, sampling each pixel at its centre.
fn rasterise(polygon: &Polygon, width: u32, height: u32) -> Vec<bool> {
    let mut inside = vec![false; (width * height) as usize];
    for y in 0..height {
        let yc = f64::from(y) + 0.5;
        let mut crossings: Vec<f64> = (0..polygon.len())
            .filter_map(|k| {
                let (a, b) = (polygon[k], polygon[(k + 1) % polygon.len()]);
                let (ax, ay, bx, by) = (f64::from(a.0), f64::from(a.1), f64::from(b.0), f64::from(b.1));
                ((ay <= yc) != (by <= yc)).then(|| ax + (yc - ay) / (by - ay) * (bx - ax))
            })
            .collect();
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            for x in 0..width {
                let xc = f64::from(x) + 0.5;
                if pair[0] < xc && xc < pair[1] {
                    inside[(y * width + x) as usize] = true;
                }
            }
        }
    }
    inside
}

#[test]
fn every_outline_filled_back_covers_its_component() {
    let mut worst = 1.0f64;
    for case in cases() {
        let found = Components::of(&case.map, 1);
        for id in 1..=found.list.len() as u32 {
            let filled = rasterise(&outline(&found, id), found.width, found.height);
            let (mut both, mut either) = (0u64, 0u64);
            for (pixel, &inside) in filled.iter().enumerate() {
                let own = found.ids[pixel] == id;
                both += u64::from(own && inside);
                either += u64::from(own || inside);
            }
            let iou = both as f64 / either as f64;
            assert!(iou >= 0.99, "{} component {id}: IoU {iou}", case.name);
            worst = worst.min(iou);
        }
    }
    // The outline follows pixel edges, so the fill is exact.
    assert_eq!(worst, 1.0);
}

#[test]
fn yolo_lines_are_the_outlines_normalised() {
    let case = cases().into_iter().find(|c| c.name == "hand").unwrap();
    let found = Components::of(&case.map, 1);
    let text = yolo::label_text(&found);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), found.list.len());
    for (i, (line, component)) in lines.iter().zip(&found.list).enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], (component.class - 1).to_string());
        let points = outline(&found, i as u32 + 1);
        assert_eq!(fields.len(), 1 + 2 * points.len());
        for (k, (x, y)) in points.iter().enumerate() {
            let (fx, fy): (f64, f64) =
                (fields[1 + 2 * k].parse().unwrap(), fields[2 + 2 * k].parse().unwrap());
            assert!((fx - f64::from(*x) / f64::from(found.width)).abs() < 1e-6);
            assert!((fy - f64::from(*y) / f64::from(found.height)).abs() < 1e-6);
        }
    }
}
