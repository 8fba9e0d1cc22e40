//! Labels for datasets from a segmentation's class map (docs/MODEL.md §18): the map is split into
//! connected components, one instance each, and written as COCO annotations (RLE or polygons) or
//! YOLO segmentation lines. Plain Rust, no files and no browser: the CLI and the page's
//! "Download all" call the same functions, so both write the same bytes for the same class map.
//!
//! - [`components`]: 8-connected components of each class, in raster order of their first pixel.
//! - [`rle`]: COCO's column-major run-length encoding and its compressed string form.
//! - [`polygon`]: each component's outline on the pixel-corner grid, holes joined in.
//! - [`coco`]: the COCO file, categories, and merging files into one.
//! - [`yolo`]: YOLO segmentation lines.
//! - [`download`]: the label files of the page's "Download all".
//! - [`shard`]: which targets one of several workers labels.

pub mod coco;
pub mod components;
pub mod download;
pub mod polygon;
pub mod rle;
pub mod shard;
pub mod yolo;

pub use coco::{Annotation, Category, CocoFile, CocoImage, Segmentation, categories, image_annotations};
pub use components::{Component, Components};
pub use rle::Rle;
pub use shard::Shard;
