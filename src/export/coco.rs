//! COCO instance annotations (docs/MODEL.md §18.4): the file, its categories, the annotations of
//! one class map, and the merge of several files into one.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::components::Components;
use super::polygon::outline;
use super::rle::Rle;
use super::shard::Shard;

/// A COCO file as `seggpt` writes it: the fields COCO loaders read (pycocotools, Detectron2,
/// mmdetection), and an `info` that says where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoFile {
    pub info: Info,
    pub images: Vec<CocoImage>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub description: String,
    /// The share of the targets this file covers, for a run with `--shard`; `merge` checks that
    /// every share of a sharded run is there exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    /// The image's path relative to the dataset's folder, `/`-separated.
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u32,
    pub segmentation: Segmentation,
    /// Pixels of the instance (`pycocotools.mask.area` of its RLE), also with polygons.
    pub area: f64,
    /// `[x, y, width, height]` (`pycocotools.mask.toBbox`).
    pub bbox: [f64; 4],
    /// Always 0: each annotation is one instance, whichever form its segmentation takes.
    pub iscrowd: u8,
}

/// An instance's pixels: COCO's compressed RLE, or polygons (`[x1, y1, x2, y2, ...]` each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Segmentation {
    Rle { size: [u32; 2], counts: String },
    Polygons(Vec<Vec<f64>>),
}

/// What `seggpt` writes into `info.description`.
pub const DESCRIPTION: &str = "SegGPT labels (seggpt)";

/// Category names `class_1, class_2, ...` for `count` classes.
pub fn default_class_names(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("class_{i}")).collect()
}

/// Categories with ids `1, 2, ...` (the class indices of the class map) named `names`.
pub fn categories(names: &[String]) -> Vec<Category> {
    names.iter().enumerate().map(|(i, name)| Category { id: i as u32 + 1, name: name.clone() }).collect()
}

/// One annotation per component, category = the component's class, ids `1, 2, ...` and image
/// id 1 (a merge renumbers both); RLE segmentation, or the outline polygon with `polygons`.
pub fn image_annotations(components: &Components, polygons: bool) -> Vec<Annotation> {
    let rles = if polygons { Vec::new() } else { Rle::of_components(components) };
    components
        .list
        .iter()
        .enumerate()
        .map(|(i, component)| {
            let segmentation = if polygons {
                let points = outline(components, i as u32 + 1);
                Segmentation::Polygons(vec![
                    points.iter().flat_map(|&(x, y)| [f64::from(x), f64::from(y)]).collect(),
                ])
            } else {
                let rle = &rles[i];
                Segmentation::Rle { size: [rle.height, rle.width], counts: rle.to_coco_string() }
            };
            Annotation {
                id: i as u64 + 1,
                image_id: 1,
                category_id: u32::from(component.class),
                segmentation,
                area: component.area as f64,
                bbox: component.bbox(),
                iscrowd: 0,
            }
        })
        .collect()
}

impl CocoFile {
    /// A file with no image.
    pub fn empty(categories: Vec<Category>) -> Self {
        CocoFile {
            info: Info { description: DESCRIPTION.into(), shard: None },
            images: Vec::new(),
            categories,
            annotations: Vec::new(),
        }
    }

    /// A file for one image (id 1) and its annotations.
    pub fn single(
        file_name: &str,
        components: &Components,
        categories: Vec<Category>,
        polygons: bool,
    ) -> Self {
        CocoFile {
            info: Info { description: DESCRIPTION.into(), shard: None },
            images: vec![CocoImage {
                id: 1,
                file_name: file_name.into(),
                width: components.width,
                height: components.height,
            }],
            categories,
            annotations: image_annotations(components, polygons),
        }
    }
}

/// Merges COCO files (`(name for messages, file)`) into one: the images of all of them, sorted by
/// `file_name`, with ids `1, 2, ...`; their annotations in that image order, with ids `1, 2, ...`
/// and `image_id` following their image. Refused: files whose categories differ, an image
/// (`file_name`) in two files or twice in one, an annotation of an image its file lacks, and for
/// files of a sharded run (`info.shard`) a share missing, given twice, or from a run with
/// another number of shares; and any file that [`check_file`] refuses. The result's `info` has
/// no shard.
pub fn merge(files: &[(String, CocoFile)]) -> Result<CocoFile, String> {
    let Some((first_name, first)) = files.first() else {
        return Err("nothing to merge: give at least one COCO file".into());
    };
    for (name, file) in files {
        check_file(name, file)?;
    }
    check_shards(files)?;
    let mut images: BTreeMap<&str, (&str, &CocoImage, Vec<&Annotation>)> = BTreeMap::new();
    for (name, file) in files {
        if file.categories != first.categories {
            return Err(format!(
                "{name} has other categories than {first_name}; merge only files of runs with the same \
                 prompts and --classes"
            ));
        }
        let mut by_id: HashMap<u64, &str> = HashMap::new();
        for image in &file.images {
            if by_id.insert(image.id, &image.file_name).is_some() {
                return Err(format!("{name} has two images with id {}", image.id));
            }
            if let Some((other, ..)) = images.insert(&image.file_name, (name, image, Vec::new())) {
                return Err(format!(
                    "the image {} is in {other} and in {name}: the files overlap (was a share run twice \
                     or with another --shard?)",
                    image.file_name
                ));
            }
        }
        for annotation in &file.annotations {
            // `check_file` found every annotation's image.
            if let Some((_, _, list)) = by_id.get(&annotation.image_id).and_then(|n| images.get_mut(n)) {
                list.push(annotation);
            }
        }
    }
    let mut merged = CocoFile {
        info: Info { description: DESCRIPTION.into(), shard: None },
        images: Vec::with_capacity(images.len()),
        categories: first.categories.clone(),
        annotations: Vec::new(),
    };
    for (i, (_, image, annotations)) in images.into_values().enumerate() {
        let id = i as u64 + 1;
        merged.images.push(CocoImage { id, ..image.clone() });
        for annotation in annotations {
            let next = merged.annotations.len() as u64 + 1;
            merged.annotations.push(Annotation { id: next, image_id: id, ..annotation.clone() });
        }
    }
    Ok(merged)
}

/// Shares of a sharded run: all there, once each, of one run's count.
fn check_shards(files: &[(String, CocoFile)]) -> Result<(), String> {
    let sharded: Vec<(&String, Shard)> =
        files.iter().filter_map(|(name, file)| Some((name, file.info.shard?))).collect();
    let Some(&(first_name, first)) = sharded.first() else { return Ok(()) };
    if let Some((name, _)) = files.iter().find(|(_, file)| file.info.shard.is_none()) {
        return Err(format!("{first_name} is one share of a sharded run, but {name} is not"));
    }
    let mut seen: Vec<Option<&String>> = vec![None; first.count as usize];
    for (name, shard) in sharded {
        if shard.count != first.count {
            return Err(format!(
                "{name} is share {shard} but {first_name} is share {first}: the runs split the targets \
                 differently"
            ));
        }
        if let Some(other) = seen[shard.index as usize].replace(name) {
            return Err(format!("{other} and {name} are both share {shard}"));
        }
    }
    let missing: Vec<Shard> = seen
        .iter()
        .enumerate()
        .filter(|(_, name)| name.is_none())
        .map(|(i, _)| Shard { index: i as u32, count: first.count })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "share(s) {} missing: run them (or wait for them to finish) before merging",
            a_few(&missing)
        ));
    }
    Ok(())
}

/// Shares named in a message: the first few, and how many more (a run of thousands of shares
/// with most missing must not print them all).
fn a_few(shares: &[Shard]) -> String {
    const NAMED: usize = 4;
    let named: Vec<String> = shares.iter().take(NAMED).map(Shard::to_string).collect();
    match shares.len().checked_sub(NAMED) {
        Some(more) if more > 0 => format!("{} and {more} more", named.join(", ")),
        _ => named.join(", "),
    }
}

/// Refuses a COCO file that a loader could not use, or that points outside the dataset: share
/// metadata out of bounds ([`Shard::check`]), two categories with one id, an image with a name
/// that is empty, absolute or climbs out with `..`, or of no pixels; an image id twice; an
/// annotation of an image or category the file lacks, with a box or area negative, not finite
/// or beyond its image, an RLE that does not decode to its image's pixels, or a polygon of
/// fewer than 3 points or beyond its image. Each error names the file (`name`) and the image or
/// annotation.
pub fn check_file(name: &str, file: &CocoFile) -> Result<(), String> {
    if let Some(shard) = file.info.shard {
        // Before `check_shards` indexes and allocates a slot per share.
        shard.check().map_err(|e| format!("{name}: {e} (`info.shard`)"))?;
    }
    let mut category_ids = HashSet::new();
    for category in &file.categories {
        if !category_ids.insert(category.id) {
            return Err(format!("{name}: two categories have the id {}", category.id));
        }
    }
    let mut images: HashMap<u64, &CocoImage> = HashMap::new();
    for image in &file.images {
        check_file_name(&image.file_name).map_err(|why| {
            format!("{name}: image {} is named `{}`, {why}", image.id, image.file_name.escape_debug())
        })?;
        if image.width == 0 || image.height == 0 {
            return Err(format!(
                "{name}: image {} ({}) is {} x {} pixels; an image has at least one",
                image.id, image.file_name, image.width, image.height
            ));
        }
        if images.insert(image.id, image).is_some() {
            return Err(format!("{name} has two images with id {}", image.id));
        }
    }
    for annotation in &file.annotations {
        let image = images.get(&annotation.image_id).ok_or_else(|| {
            format!(
                "{name}: annotation {} is of image {}, which it lacks",
                annotation.id, annotation.image_id
            )
        })?;
        if !category_ids.contains(&annotation.category_id) {
            return Err(format!(
                "{name}: annotation {} (of {}) is of category {}, which is not among the file's \
                 categories",
                annotation.id, image.file_name, annotation.category_id
            ));
        }
        check_annotation(annotation, image)
            .map_err(|why| format!("{name}: annotation {} (of {}) {why}", annotation.id, image.file_name))?;
    }
    Ok(())
}

/// A COCO `file_name` is a path relative to the dataset's folder: a loader joins it to that
/// folder, so an absolute name or a `..` would read (and a later tool write) outside it.
fn check_file_name(file_name: &str) -> Result<(), &'static str> {
    let bytes = file_name.as_bytes();
    if file_name.is_empty() {
        return Err("which is empty; name the image by its path below the dataset's folder");
    }
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if bytes[0] == b'/' || bytes[0] == b'\\' || drive {
        return Err("an absolute path; COCO names images by their path below the dataset's folder");
    }
    if file_name.split(['/', '\\']).any(|part| part == "..") {
        return Err("which climbs out of the dataset's folder with `..`");
    }
    Ok(())
}

/// An annotation's box, area and segmentation against its image.
fn check_annotation(annotation: &Annotation, image: &CocoImage) -> Result<(), String> {
    let (width, height) = (f64::from(image.width), f64::from(image.height));
    let [x, y, w, h] = annotation.bbox;
    if !annotation.bbox.iter().all(|v| v.is_finite() && *v >= 0.0) || x + w > width || y + h > height {
        return Err(format!(
            "has the box {:?}, which is not within its {} x {} image (boxes are [x, y, width, \
             height], none negative)",
            annotation.bbox, image.width, image.height
        ));
    }
    if !(annotation.area.is_finite() && annotation.area >= 0.0) {
        return Err(format!("has the area {}; an area is a count of pixels", annotation.area));
    }
    match &annotation.segmentation {
        Segmentation::Rle { size, counts } => {
            if *size != [image.height, image.width] {
                return Err(format!(
                    "has an RLE of size {:?}, but its image is {} x {} ([height, width] = [{}, {}])",
                    size, image.width, image.height, image.height, image.width
                ));
            }
            Rle::from_coco_string(counts, image.height, image.width)
                .map(drop)
                .map_err(|why| format!("has an RLE that does not decode: {why}"))
        }
        Segmentation::Polygons(polygons) => check_polygons(polygons, width, height),
    }
}

/// COCO polygons: at least one, each `[x1, y1, x2, y2, ...]` of at least 3 points within the
/// image (corners lie on the pixel grid, from 0 to the width and height).
fn check_polygons(polygons: &[Vec<f64>], width: f64, height: f64) -> Result<(), String> {
    if polygons.is_empty() {
        return Err("has no polygon".into());
    }
    for (i, polygon) in polygons.iter().enumerate() {
        if polygon.len() < 6 || polygon.len() % 2 != 0 {
            return Err(format!(
                "has polygon {} of {} numbers; a polygon is x, y pairs of at least 3 points",
                i + 1,
                polygon.len()
            ));
        }
        let inside =
            polygon.chunks(2).all(|p| (0.0..=width).contains(&p[0]) && (0.0..=height).contains(&p[1]));
        if !inside {
            return Err(format!("has polygon {} with a point outside its image", i + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClassMap;

    fn file(names: &[&str], shard: Option<Shard>) -> CocoFile {
        let map = ClassMap::new(3, 1, vec![1, 0, 2]).unwrap();
        let components = Components::of(&map, 1);
        let mut merged = merge(
            &names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        CocoFile::single(n, &components, categories(&default_class_names(2)), false),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        merged.info.shard = shard;
        merged
    }

    #[test]
    fn a_merge_sorts_images_and_renumbers_images_and_annotations() {
        let merged =
            merge(&[("b".into(), file(&["z.png", "b.png"], None)), ("a".into(), file(&["a.png"], None))])
                .unwrap();
        let names: Vec<&str> = merged.images.iter().map(|i| i.file_name.as_str()).collect();
        assert_eq!(names, ["a.png", "b.png", "z.png"]);
        assert_eq!(merged.images.iter().map(|i| i.id).collect::<Vec<_>>(), [1, 2, 3]);
        let ids: Vec<(u64, u64, u32)> =
            merged.annotations.iter().map(|a| (a.id, a.image_id, a.category_id)).collect();
        assert_eq!(ids, [(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2), (5, 3, 1), (6, 3, 2)]);
    }

    #[test]
    fn overlapping_files_other_categories_and_missing_shares_are_refused() {
        let error = merge(&[("x".into(), file(&["a.png"], None)), ("y".into(), file(&["a.png"], None))]);
        assert!(error.unwrap_err().contains("a.png is in x and in y"));

        let mut other = file(&["b.png"], None);
        other.categories[0].name = "cat".into();
        let error = merge(&[("x".into(), file(&["a.png"], None)), ("y".into(), other)]).unwrap_err();
        assert!(error.contains("y has other categories than x"), "{error}");

        let share = |index| Some(Shard { index, count: 3 });
        let error =
            merge(&[("s0".into(), file(&["a.png"], share(0))), ("s2".into(), file(&["b.png"], share(2)))])
                .unwrap_err();
        assert!(error.contains("share(s) 1/3 missing"), "{error}");
        let error =
            merge(&[("s0".into(), file(&["a.png"], share(0))), ("t0".into(), file(&["b.png"], share(0)))])
                .unwrap_err();
        assert!(error.contains("s0 and t0 are both share 0/3"), "{error}");
        let error = merge(&[("s0".into(), file(&["a.png"], share(0))), ("p".into(), file(&["b.png"], None))])
            .unwrap_err();
        assert!(error.contains("p is not"), "{error}");
        let all = [0, 1, 2].map(|i| (format!("s{i}"), file(&[&format!("{i}.png")], share(i))));
        assert_eq!(merge(&all).unwrap().images.len(), 3);
    }

    #[test]
    fn shares_out_of_bounds_are_refused_and_only_a_few_missing_ones_named() {
        let shard = |index, count| Some(Shard { index, count });
        for (index, count) in [(3, 3), (0, 0), (0, u32::MAX)] {
            let error = merge(&[("s".into(), file(&["a.png"], shard(index, count)))]).unwrap_err();
            assert!(error.starts_with("s: share"), "{error}");
        }
        let error = merge(&[("s".into(), file(&["a.png"], shard(2, 100_000)))]).unwrap_err();
        assert!(error.contains("share(s) 0/100000, 1/100000, 3/100000, 4/100000 and 99995 more missing"));
        assert!(error.len() < 200, "{error}");
    }

    #[test]
    fn annotations_no_loader_could_use_are_refused_by_file_and_annotation() {
        type Spoil = fn(&mut CocoFile);
        let cases: [(&str, Spoil); 9] = [
            ("annotation 1 (of a.png) is of category 7", |f| f.annotations[0].category_id = 7),
            ("annotation 2 (of a.png) has the box", |f| f.annotations[1].bbox[2] = -1.0),
            ("annotation 2 (of a.png) has the box", |f| f.annotations[1].bbox[0] = f64::NAN),
            ("annotation 1 (of a.png) has the box", |f| f.annotations[0].bbox[2] = 9.0),
            ("annotation 1 (of a.png) has the area", |f| f.annotations[0].area = f64::INFINITY),
            ("annotation 2 (of a.png) has an RLE that does not decode: its runs cover 4 pixels", |f| {
                f.annotations[1].segmentation = Segmentation::Rle { size: [1, 3], counts: "22".into() }
            }),
            ("annotation 1 (of a.png) has an RLE of size [3, 1]", |f| {
                f.annotations[0].segmentation = Segmentation::Rle { size: [3, 1], counts: "12".into() }
            }),
            ("image 1 is named `../a.png`, which climbs out", |f| f.images[0].file_name = "../a.png".into()),
            ("image 1 is named `/data/a.png`, an absolute path", |f| {
                f.images[0].file_name = "/data/a.png".into()
            }),
        ];
        for (needle, spoil) in cases {
            let mut bad = file(&["a.png"], None);
            spoil(&mut bad);
            let error =
                merge(&[("x.json".into(), file(&["b.png"], None)), ("y.json".into(), bad)]).unwrap_err();
            assert!(error.starts_with("y.json: ") && error.contains(needle), "{needle}: {error}");
        }
        let mut polygons = file(&["a.png"], None);
        polygons.annotations[0].segmentation = Segmentation::Polygons(vec![vec![0.0, 0.0, 1.0, 1.0]]);
        let error = merge(&[("p".into(), polygons)]).unwrap_err();
        assert!(error.contains("annotation 1 (of a.png) has polygon 1 of 4 numbers"), "{error}");
    }

    #[test]
    fn rle_annotations_serialise_as_coco_expects() {
        let json = serde_json::to_value(file(&["a.png"], None)).unwrap();
        let annotation = &json["annotations"][1];
        assert_eq!(annotation["segmentation"], serde_json::json!({"size": [1, 3], "counts": "21"}));
        assert_eq!(annotation["bbox"], serde_json::json!([2.0, 0.0, 1.0, 1.0]));
        assert_eq!(annotation["iscrowd"], 0);
        assert_eq!(json["categories"][1], serde_json::json!({"id": 2, "name": "class_2"}));
        let back: CocoFile = serde_json::from_value(json).unwrap();
        assert_eq!(back, file(&["a.png"], None));
    }
}
