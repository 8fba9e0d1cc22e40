//! "Download all": the result files in one uncompressed ZIP (PNGs do not compress further), since
//! browsers block a page that starts many downloads at once.

use std::collections::HashSet;
use std::io::{Cursor, Write};

use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};

/// Distinct names for files that may share one (every pasted image is `image.png`): the first of
/// a name keeps it, the next get `-2`, `-3`, ... before the extension (`image-2.png`), skipping any
/// name already taken. Names differing only in case count as the same (they are one file once
/// unpacked on Windows or macOS). The result depends only on the names and their order, so a name
/// stays the same for every download of the same list.
pub fn unique_names<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let unique = if taken.contains(&name.to_lowercase()) {
            // Only the file name's own extension; a dot in a folder name is not one.
            let file_start = name.rfind('/').map_or(0, |i| i + 1);
            let (stem, extension) = match name[file_start..].rfind('.') {
                Some(dot) if dot > 0 => name.split_at(file_start + dot),
                _ => (name, ""),
            };
            (2..)
                .map(|n| format!("{stem}-{n}{extension}"))
                .find(|candidate| !taken.contains(&candidate.to_lowercase()))
                .unwrap_or_default()
        } else {
            name.to_string()
        };
        taken.insert(unique.to_lowercase());
        out.push(unique);
    }
    out
}

/// A stored (uncompressed) ZIP of `(name, bytes)` entries, in order; entries that share a name
/// are renamed as [`unique_names`] says, so a duplicate never fails the archive.
pub fn zip_stored(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let names = unique_names(&files.iter().map(|(name, _)| name).collect::<Vec<_>>());
    for (name, (_, bytes)) in names.iter().zip(files) {
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

    #[test]
    fn entries_that_share_a_name_get_unique_stable_names() {
        let names =
            ["image.png", "image.png", "a.png", "IMAGE.png", "image-2.png", "noext", "noext", "d.x/img"];
        let expected = [
            "image.png",
            "image-2.png",
            "a.png",
            "IMAGE-3.png",
            "image-2-2.png",
            "noext",
            "noext-2",
            "d.x/img",
        ];
        assert_eq!(unique_names(&names), expected);
        assert_eq!(unique_names(&names), expected, "the same list gives the same names");
        assert_eq!(unique_names(&[".hidden", ".hidden"]), [".hidden", ".hidden-2"]);

        // Two pasted images: the archive used to fail on the second `image.mask.png`.
        let files =
            vec![("image.mask.png".to_string(), vec![1u8]), ("image.mask.png".to_string(), vec![2u8])];
        let mut archive = zip::ZipArchive::new(Cursor::new(zip_stored(&files).unwrap())).unwrap();
        let entries: Vec<(String, Vec<u8>)> = (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index(i).unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                (entry.name().to_string(), bytes)
            })
            .collect();
        assert_eq!(entries, [("image.mask.png".into(), vec![1]), ("image.mask-2.png".into(), vec![2])]);
    }
}
