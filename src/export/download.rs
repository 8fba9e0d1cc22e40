//! The labels the page's "Download all" puts beside the PNGs: the same COCO file and YOLO files
//! `seggpt segment --export coco,yolo` writes, from the page's per-colour labels (docs/MODEL.md
//! §18.1: class i is the i-th prompt colour, as without `--num-labels`).

use std::path::Path;

use super::coco::{self, CocoFile};
use super::components::Components;
use super::yolo;
use crate::pipeline::ClassMap;

/// The name of the COCO file in the zip.
pub const COCO_FILE: &str = "coco.json";

/// One finished target of the page.
pub struct PageResult<'a> {
    /// The target's name, unique among the run's targets.
    pub name: &'a str,
    pub width: u32,
    pub height: u32,
    /// Per pixel 0 (background) or 1 + the index of its nearest prompt colour.
    pub labels: &'a [u8],
    /// The number of prompt colours (classes).
    pub classes: usize,
}

/// `(file name, bytes)` of `coco.json` (with `coco`) and of `<stem>.txt` per target (with `yolo`).
pub fn label_files(results: &[PageResult], coco: bool, yolo: bool) -> Result<Vec<(String, Vec<u8>)>, String> {
    let classes = results.iter().map(|r| r.classes).max().unwrap_or(0);
    let categories = coco::categories(&coco::default_class_names(classes));
    let mut files = Vec::new();
    let mut pieces = Vec::new();
    for result in results {
        let map =
            ClassMap::new(result.width, result.height, result.labels.to_vec()).map_err(|e| e.to_string())?;
        let components = Components::of(&map, 1);
        if coco {
            pieces.push((
                result.name.to_string(),
                CocoFile::single(result.name, &components, categories.clone(), false),
            ));
        }
        if yolo {
            let stem = Path::new(result.name).file_stem().and_then(|s| s.to_str()).unwrap_or(result.name);
            files.push((format!("{stem}.txt"), yolo::label_text(&components).into_bytes()));
        }
    }
    if coco {
        let merged = coco::merge(&pieces)?;
        files.insert(0, (COCO_FILE.into(), serde_json::to_vec(&merged).map_err(|e| e.to_string())?));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_gets_the_cli_files_for_its_labels() {
        let labels = [0, 1, 1, 0, 2, 0];
        let results = [
            PageResult { name: "b.png", width: 3, height: 2, labels: &labels, classes: 2 },
            PageResult { name: "a.jpg", width: 2, height: 3, labels: &labels, classes: 2 },
        ];
        let files = label_files(&results, true, true).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["coco.json", "b.txt", "a.txt"]);
        let file: CocoFile = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(file.images.iter().map(|i| i.file_name.as_str()).collect::<Vec<_>>(), ["a.jpg", "b.png"]);
        assert_eq!(file.categories.len(), 2);
        let map = ClassMap::new(3, 2, labels.to_vec()).unwrap();
        assert_eq!(files[1].1, yolo::label_text(&Components::of(&map, 1)).into_bytes());
        assert!(label_files(&results, false, false).unwrap().is_empty());
    }
}
