//! The spatial ensemble's prompt (docs/MODEL.md §14): K prompts tiled into one n x n grid and
//! shrunk back to one prompt's size, so that the model runs a single prompt.

use super::InputError;
use super::image_io::RgbImage;
use super::resize::{resize_bicubic, resize_nearest};

/// The side `n` of the grid for `k` prompts: the smallest `n` with `n * n >= k`
/// (`ceil(sqrt(k))`, computed in integers so that no rounding can pick the wrong side).
pub fn grid_side(k: usize) -> usize {
    let mut n = 0;
    while n * n < k {
        n += 1;
    }
    n
}

/// Tiles `prompts` (image, RGB mask) into one prompt of `height x width`:
///
/// 1. each image is resized to `height x width` with Pillow's BICUBIC and each mask with NEAREST,
///    as a single prompt would be;
/// 2. they are placed row-major in an `n x n` grid (`n = grid_side(K)`), prompt `i` at row
///    `i / n`, column `i % n`; cells left over are black in both the image and the mask;
/// 3. the grid image is resized back to `height x width` with BICUBIC, the grid mask with
///    NEAREST (so the mask keeps only the prompts' own colours).
///
/// One prompt gives that prompt's own resized image and mask (a 1 x 1 grid, resized to its own
/// size, which is a copy).
pub fn spatial_grid(
    prompts: &[(&RgbImage, &RgbImage)],
    height: u32,
    width: u32,
) -> Result<(RgbImage, RgbImage), InputError> {
    let n = grid_side(prompts.len());
    let (h, w) = (height as usize, width as usize);
    let row_bytes = n * w * 3;
    let mut grid_image = vec![0u8; n * h * row_bytes];
    let mut grid_mask = vec![0u8; n * h * row_bytes];
    for (i, (image, mask)) in prompts.iter().enumerate() {
        let cell_image =
            resize_bicubic(image.as_raw(), image.width() as usize, image.height() as usize, 3, w, h);
        let cell_mask = resize_nearest(mask.as_raw(), mask.width() as usize, mask.height() as usize, 3, w, h);
        let (row, col) = (i / n, i % n);
        for y in 0..h {
            let at = (row * h + y) * row_bytes + col * w * 3;
            grid_image[at..at + w * 3].copy_from_slice(&cell_image[y * w * 3..(y + 1) * w * 3]);
            grid_mask[at..at + w * 3].copy_from_slice(&cell_mask[y * w * 3..(y + 1) * w * 3]);
        }
    }
    let image = resize_bicubic(&grid_image, n * w, n * h, 3, w, h);
    let mask = resize_nearest(&grid_mask, n * w, n * h, 3, w, h);
    Ok((RgbImage::new(width, height, image)?, RgbImage::new(width, height, mask)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(width, height, rgb.repeat((width * height) as usize)).unwrap()
    }

    #[test]
    fn grid_side_is_the_ceiling_of_the_square_root() {
        let sides: Vec<usize> = (1..=10).map(grid_side).collect();
        assert_eq!(sides, [1, 2, 2, 2, 3, 3, 3, 3, 3, 4]);
    }

    #[test]
    fn one_prompt_is_its_own_resized_image_and_mask() {
        let image = RgbImage::new(3, 2, (0..18).map(|v| v * 10).collect()).unwrap();
        let mask = RgbImage::new(3, 2, [255, 0, 0, 0, 0, 0, 0, 255, 0].repeat(2)).unwrap();
        let (grid_image, grid_mask) = spatial_grid(&[(&image, &mask)], 4, 6).unwrap();
        let expected_image = resize_bicubic(image.as_raw(), 3, 2, 3, 6, 4);
        let expected_mask = resize_nearest(mask.as_raw(), 3, 2, 3, 6, 4);
        assert_eq!(grid_image.as_raw(), expected_image.as_slice());
        assert_eq!(grid_mask.as_raw(), expected_mask.as_slice());
    }

    #[test]
    fn prompts_fill_the_grid_row_major_and_empty_cells_are_black() {
        // Three flat prompts in a 2 x 2 grid of 4 x 4 cells, shrunk by NEAREST to 4 x 4: each
        // cell becomes a 2 x 2 quadrant; the fourth (bottom right) is empty.
        let colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
        let images: Vec<RgbImage> = colours.iter().map(|&c| flat(5, 3, c)).collect();
        let prompts: Vec<(&RgbImage, &RgbImage)> = images.iter().map(|m| (m, m)).collect();
        let (grid_image, grid_mask) = spatial_grid(&prompts, 4, 4).unwrap();
        let pixel = |img: &RgbImage, x: usize, y: usize| -> [u8; 3] {
            let at = (y * 4 + x) * 3;
            img.as_raw()[at..at + 3].try_into().unwrap()
        };
        assert_eq!(pixel(&grid_mask, 0, 0), colours[0]);
        assert_eq!(pixel(&grid_mask, 3, 0), colours[1]);
        assert_eq!(pixel(&grid_mask, 0, 3), colours[2]);
        assert_eq!(pixel(&grid_mask, 3, 3), [0, 0, 0]);
        // BICUBIC keeps a flat quadrant's colour at its far corner.
        assert_eq!(pixel(&grid_image, 0, 0), colours[0]);
        assert_eq!(pixel(&grid_image, 3, 3), [0, 0, 0]);
        assert_eq!((grid_image.width(), grid_image.height()), (4, 4));
    }
}
