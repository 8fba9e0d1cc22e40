//! Tiled inference for large targets (docs/MODEL.md §27): the target is cut into overlapping
//! square tiles, each tile is segmented on its own with the same prompts, and the tiles' results
//! are put back together. The model sees every target at its 448 x 448 half-canvas, so a
//! 4000-pixel photo loses objects a few pixels wide; a tile of 512 pixels keeps them.
//!
//! **Layout.** Along each axis, tiles of `size` pixels start every `size - overlap` pixels from 0;
//! the last one is moved back to end at the image's edge, so every tile is whole and the last
//! overlap may be larger. An axis no longer than `size` has one tile of the image's length.
//!
//! **Stitching.** Each pixel takes its value from the tile whose centre is nearest to the
//! pixel's centre, decided per axis (so the owners form a grid); a tie goes to the earlier tile.
//! Inside an overlap this cuts in the middle, away from both tiles' edges, where each tile saw
//! the least context. The nearest tile always holds the pixel (its centre is at most half a tile
//! away). Plain pixels, no blending: the masks' colours and the class maps stay exactly those the
//! model's tiles gave.

use super::{ClassMap, InputError, RgbImage};

/// The smallest tile side accepted: smaller tiles show the model almost nothing.
pub const MIN_TILE: u32 = 32;

/// How to cut a target into tiles: `--tile SIZE[,OVERLAP]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tiling {
    /// A tile's side, in the target's pixels.
    pub size: u32,
    /// Pixels shared by neighbouring tiles (at least this many; the last tile may share more).
    pub overlap: u32,
}

/// One tile: a rectangle of the target, in its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Tiling {
    /// `SIZE` or `SIZE,OVERLAP` (pixels); without OVERLAP, a quarter of SIZE.
    pub fn parse(text: &str) -> Result<Self, String> {
        let number = |part: &str, what: &str| {
            part.trim().parse::<u32>().map_err(|_| format!("{what} {part:?} is not a whole number of pixels"))
        };
        let tiling = match text.split_once(',') {
            Some((size, overlap)) => {
                Tiling { size: number(size, "SIZE")?, overlap: number(overlap, "OVERLAP")? }
            }
            None => {
                let size = number(text, "SIZE")?;
                Tiling { size, overlap: size / 4 }
            }
        };
        tiling.check()?;
        Ok(tiling)
    }

    /// Refuses tiles under [`MIN_TILE`] pixels and an overlap that leaves no step between tiles.
    pub fn check(&self) -> Result<(), String> {
        if self.size < MIN_TILE {
            return Err(format!("a tile of {} pixels is too small: use at least {MIN_TILE}", self.size));
        }
        if self.overlap >= self.size {
            return Err(format!(
                "an overlap of {} pixels needs tiles larger than that (the tile is {}); use SIZE,OVERLAP \
                 with OVERLAP < SIZE",
                self.overlap, self.size
            ));
        }
        Ok(())
    }

    /// The tiles of a `width` x `height` image, rows top to bottom, each row left to right.
    pub fn tiles(&self, width: u32, height: u32) -> Vec<Tile> {
        let (columns, rows) = (self.starts(width), self.starts(height));
        let mut tiles = Vec::with_capacity(columns.len() * rows.len());
        for &y in &rows {
            for &x in &columns {
                tiles.push(Tile { x, y, width: self.size.min(width), height: self.size.min(height) });
            }
        }
        tiles
    }

    /// Where the tiles along an axis of `length` pixels start.
    fn starts(&self, length: u32) -> Vec<u32> {
        if length <= self.size {
            return vec![0];
        }
        let stride = self.size - self.overlap;
        let last = length - self.size;
        let mut starts: Vec<u32> = (0..last).step_by(stride as usize).collect();
        starts.push(last);
        starts
    }
}

/// For each pixel along an axis of `length`, the index of the tile (among `starts`, all `side`
/// long) whose centre is nearest to the pixel's; ties go to the earlier tile.
fn owners(starts: &[u32], side: u32, length: u32) -> Vec<usize> {
    // Doubled coordinates keep centres whole: pixel p's centre is 2p + 1, a tile's 2s + side.
    let centre = |start: u32| 2 * u64::from(start) + u64::from(side);
    (0..length)
        .map(|p| {
            let at = 2 * u64::from(p) + 1;
            let mut best = 0;
            for (i, &start) in starts.iter().enumerate() {
                if at.abs_diff(centre(start)) < at.abs_diff(centre(starts[best])) {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// The `tile` of an RGB image.
pub fn crop(image: &RgbImage, tile: Tile) -> Result<RgbImage, InputError> {
    let stride = image.width() as usize * 3;
    let mut data = Vec::with_capacity(tile.width as usize * tile.height as usize * 3);
    for y in tile.y..tile.y + tile.height {
        let row = y as usize * stride + tile.x as usize * 3;
        data.extend_from_slice(&image.as_raw()[row..row + tile.width as usize * 3]);
    }
    RgbImage::new(tile.width, tile.height, data)
}

/// Puts the tiles' results (each `channels` bytes a pixel, in `tiles`' order, as
/// [`Tiling::tiles`] gave them for this size) back into one `width` x `height` image.
fn stitch(tiling: &Tiling, width: u32, height: u32, channels: usize, parts: &[&[u8]]) -> Vec<u8> {
    let tiles = tiling.tiles(width, height);
    let columns = tiling.starts(width);
    let rows = tiling.starts(height);
    let column_of = owners(&columns, tiles[0].width, width);
    let row_of = owners(&rows, tiles[0].height, height);
    let mut out = Vec::with_capacity(width as usize * height as usize * channels);
    for y in 0..height {
        for x in 0..width {
            let index = row_of[y as usize] * columns.len() + column_of[x as usize];
            let tile = tiles[index];
            let at = ((y - tile.y) as usize * tile.width as usize + (x - tile.x) as usize) * channels;
            out.extend_from_slice(&parts[index][at..at + channels]);
        }
    }
    out
}

/// The tiles' painted masks as one mask of the target's size.
pub fn stitch_rgb(
    tiling: &Tiling,
    width: u32,
    height: u32,
    parts: &[RgbImage],
) -> Result<RgbImage, InputError> {
    let raw: Vec<&[u8]> = parts.iter().map(RgbImage::as_raw).collect();
    RgbImage::new(width, height, stitch(tiling, width, height, 3, &raw))
}

/// The tiles' class maps as one map of the target's size.
pub fn stitch_classes(
    tiling: &Tiling,
    width: u32,
    height: u32,
    parts: &[ClassMap],
) -> Result<ClassMap, InputError> {
    let raw: Vec<&[u8]> = parts.iter().map(ClassMap::as_raw).collect();
    ClassMap::new(width, height, stitch(tiling, width, height, 1, &raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_size_and_overlap_and_refuses_what_cannot_tile() {
        assert_eq!(Tiling::parse("512").unwrap(), Tiling { size: 512, overlap: 128 });
        assert_eq!(Tiling::parse("512,64").unwrap(), Tiling { size: 512, overlap: 64 });
        assert_eq!(Tiling::parse("64,0").unwrap(), Tiling { size: 64, overlap: 0 });
        assert!(Tiling::parse("16").unwrap_err().contains("at least 32"));
        assert!(Tiling::parse("64,64").unwrap_err().contains("OVERLAP < SIZE"));
        assert!(Tiling::parse("big").unwrap_err().contains("\"big\""));
        assert!(Tiling::parse("64,-1").unwrap_err().contains("OVERLAP"));
    }

    #[test]
    fn tiles_cover_the_image_whole_and_end_at_its_edges() {
        let tiling = Tiling { size: 100, overlap: 20 };
        assert_eq!(tiling.starts(100), [0]);
        assert_eq!(tiling.starts(60), [0]);
        assert_eq!(tiling.starts(250), [0, 80, 150]);
        assert_eq!(tiling.starts(260), [0, 80, 160]);
        let tiles = tiling.tiles(250, 60);
        assert_eq!(tiles.len(), 3);
        assert_eq!(tiles[2], Tile { x: 150, y: 0, width: 100, height: 60 });
    }

    #[test]
    fn each_pixel_belongs_to_the_tile_with_the_nearest_centre() {
        // Tiles [0, 100) and [80, 180) and [150, 250): centres 50, 130, 200.
        let owner = owners(&[0, 80, 150], 100, 250);
        assert_eq!(&owner[..90], &[0; 90][..], "up to 89.5, centre 50 is nearer than 130");
        assert_eq!(owner[89], 0);
        assert_eq!(owner[90], 1, "pixel 90's centre 90.5 is 40.5 from 50 and 39.5 from 130");
        assert_eq!((owner[164], owner[165]), (1, 2), "165.5 is 35.5 from 130 and 34.5 from 200");
        assert_eq!(owner[249], 2);
        // Centres 50 and 131: pixel 90's centre is 40.5 from both, and the earlier tile keeps it.
        let tie = owners(&[0, 81], 100, 181);
        assert_eq!((tie[90], tie[91]), (0, 1));
    }

    #[test]
    fn stitching_one_tile_gives_it_back_and_stitching_crops_gives_the_image() {
        let (w, h) = (70, 45);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = RgbImage::new(w, h, data).unwrap();
        let tiling = Tiling { size: 32, overlap: 8 };
        let parts: Vec<RgbImage> = tiling.tiles(w, h).into_iter().map(|t| crop(&image, t).unwrap()).collect();
        assert_eq!(parts.len(), 3 * 2);
        assert_eq!(stitch_rgb(&tiling, w, h, &parts).unwrap(), image);
        let whole = Tiling { size: 100, overlap: 0 };
        assert_eq!(stitch_rgb(&whole, w, h, std::slice::from_ref(&image)).unwrap(), image);
    }

    #[test]
    fn in_an_overlap_the_nearer_tile_wins() {
        // Two 40-pixel tiles over 60 columns, at 0 and 20: columns up to 29 from the first.
        let tiling = Tiling { size: 40, overlap: 20 };
        let first = ClassMap::new(40, 1, vec![1; 40]).unwrap();
        let second = ClassMap::new(40, 1, vec![2; 40]).unwrap();
        let stitched = stitch_classes(&tiling, 60, 1, &[first, second]).unwrap();
        let expected: Vec<u8> = (0..60).map(|x| if x < 30 { 1 } else { 2 }).collect();
        assert_eq!(stitched.as_raw(), &expected[..]);
    }
}
