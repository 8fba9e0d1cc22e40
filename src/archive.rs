//! "Download all": the result files in one uncompressed ZIP (PNGs do not compress further), since
//! browsers block a page that starts many downloads at once.

use std::io::{Cursor, Write};

use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};

/// A stored (uncompressed) ZIP of `(name, bytes)` entries, in order.
pub fn zip_stored(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options).map_err(|e| format!("{name}: {e}"))?;
        writer.write_all(bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(writer.finish().map_err(|e| e.to_string())?.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn entries_read_back_in_order_with_their_bytes() {
        let files =
            vec![("a.mask.png".to_string(), vec![1u8, 2, 3]), ("b.overlay.png".to_string(), vec![9u8; 1000])];
        let bytes = zip_stored(&files).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        for (i, (name, data)) in files.iter().enumerate() {
            let mut entry = archive.by_index(i).unwrap();
            assert_eq!(entry.name(), name);
            assert_eq!(entry.compression(), CompressionMethod::Stored);
            let mut back = Vec::new();
            entry.read_to_end(&mut back).unwrap();
            assert_eq!(&back, data);
        }
    }
}
