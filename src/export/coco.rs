//! COCO instance annotations (docs/MODEL.md §18.4): the file, its categories, the annotations of
//! one class map, and the merge of several files into one.

use std::collections::{BTreeMap, HashMap};

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
/// another number of shares. The result's `info` has no shard.
pub fn merge(files: &[(String, CocoFile)]) -> Result<CocoFile, String> {
    let Some((first_name, first)) = files.first() else {
        return Err("nothing to merge: give at least one COCO file".into());
    };
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
            let file_name = by_id.get(&annotation.image_id).ok_or_else(|| {
                format!(
                    "{name}: annotation {} is of image {}, which it lacks",
                    annotation.id, annotation.image_id
                )
            })?;
            if let Some((_, _, list)) = images.get_mut(file_name) {
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
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, name)| name.is_none())
        .map(|(i, _)| Shard { index: i as u32, count: first.count }.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "share(s) {} missing: run them (or wait for them to finish) before merging",
            missing.join(", ")
        ));
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
