//! Class maps as the DAVIS benchmark stores its annotations: 8-bit palette ("P" mode) PNGs whose
//! pixel values are object indices (0 = background), so the scoring tools read them as they are.

use super::InputError;
use super::image_io::ClassMap;

/// The colour table of DAVIS (and PASCAL VOC) annotations, all 256 entries: index `i`'s bits
/// `(b2 b1 b0)`, `(b5 b4 b3)`, ... are spread over the top bits of red, green and blue, so
/// 0 is black, 1 is (128, 0, 0), 2 is (0, 128, 0), 3 is (128, 128, 0).
pub fn davis_palette() -> [[u8; 3]; 256] {
    let mut palette = [[0u8; 3]; 256];
    for (index, colour) in palette.iter_mut().enumerate() {
        let mut bits = index;
        for shift in (0..8).rev() {
            for (channel, value) in colour.iter_mut().enumerate() {
                *value |= (((bits >> channel) & 1) as u8) << shift;
            }
            bits >>= 3;
        }
    }
    palette
}

/// Encodes a class map as an 8-bit palette PNG with [`davis_palette`]: the DAVIS annotation
/// format (the pixel values are the class indices; the colours are for viewing).
pub fn encode_palette_png(map: &ClassMap) -> Result<Vec<u8>, InputError> {
    let (width, height) = (map.width(), map.height());
    let failed = |e: png::EncodingError| InputError::Encode { width, height, reason: e.to_string() };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(davis_palette().as_flattened().to_vec());
    encoder.write_header().and_then(|mut writer| writer.write_image_data(map.as_raw())).map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::image_io::decode_class_map;
    use super::*;

    #[test]
    fn palette_matches_the_davis_annotation_colours() {
        let palette = davis_palette();
        assert_eq!(palette[0], [0, 0, 0]);
        assert_eq!(palette[1], [128, 0, 0]);
        assert_eq!(palette[2], [0, 128, 0]);
        assert_eq!(palette[3], [128, 128, 0]);
        assert_eq!(palette[4], [0, 0, 128]);
        assert_eq!(palette[8], [64, 0, 0]);
        assert_eq!(palette[255], [224, 224, 192]);
    }

    #[test]
    fn palette_png_round_trips_the_indices() {
        let map = ClassMap::new(3, 2, vec![0, 1, 2, 3, 255, 0]).unwrap();
        let png = encode_palette_png(&map).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().color_type, png::ColorType::Indexed);
        assert_eq!(reader.info().palette.as_deref().map(<[u8]>::len), Some(768));
        assert_eq!(decode_class_map(&png, "classes.png").unwrap().as_raw(), map.as_raw());
    }
}
