//! Where `segment` writes, decided and checked before any work: every target's results are
//! named after its full file name (`x.png` -> `x.png.mask.png`), at its path below the folder
//! common to all targets, so that no two targets share an output and a run is repeatable.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Appended to a target's file name for its painted mask.
pub const MASK_SUFFIX: &str = ".mask.png";
/// Appended to a target's file name for its class map.
pub const CLASSES_SUFFIX: &str = ".classes.png";
/// Longest file name most file systems accept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// How an output's file name is made from its target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The full file name and a suffix: `x.png` -> `x.png.mask.png`.
    Suffix(&'static str),
    /// The name without its extension and another one: `x.png` -> `x.txt` (where a tool
    /// finds labels by the image's stem, as YOLO trainers do).
    Stem(&'static str),
}

/// One target and the files its results go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub target: PathBuf,
    /// The target's path below the folder common to all targets.
    pub relative: PathBuf,
    /// One per [`Naming`] asked for, in that order.
    pub outputs: Vec<PathBuf>,
}

/// Plans every output and refuses, before anything is written: a target given twice, an
/// output name too long for the file system, and an output that would overwrite an input
/// (`inputs`: every file the run reads) or another output. Outputs go to the target's path below
/// the folder common to all targets' folders and `roots` (the folders given to search).
pub fn plan(
    targets: &[PathBuf],
    roots: &[PathBuf],
    out_dir: &Path,
    namings: &[Naming],
    inputs: &[&Path],
) -> Result<Vec<Planned>, String> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let mut located = Vec::with_capacity(targets.len());
    for target in targets {
        if let Some(first) = seen.insert(canonical(target)?, target) {
            return Err(format!(
                "{} and {} are the same target file; give each target once",
                first.display(),
                target.display()
            ));
        }
        let name = target
            .file_name()
            .ok_or_else(|| format!("{} does not name a file", target.display()))?
            .to_os_string();
        let folder =
            canonical(target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
        located.push((target, folder, name));
    }
    let roots = roots.iter().map(|root| canonical(root)).collect::<Result<Vec<_>, _>>()?;
    let root = common_ancestor(
        located.iter().map(|(_, folder, _)| folder.as_path()).chain(roots.iter().map(PathBuf::as_path)),
    );
    let out_dir = resolve(out_dir);

    let inputs: HashMap<PathBuf, &Path> =
        inputs.iter().filter_map(|p| Some((p.canonicalize().ok()?, *p))).collect();
    let mut outputs = HashSet::new();
    let mut plan = Vec::with_capacity(located.len());
    for (target, folder, name) in located {
        let below = folder.strip_prefix(&root).unwrap_or(Path::new("")).to_path_buf();
        let folder = out_dir.join(&below);
        let mut output = |naming: Naming| -> Result<PathBuf, String> {
            let file = match naming {
                Naming::Suffix(suffix) => {
                    let mut file = OsString::from(&name);
                    file.push(suffix);
                    file
                }
                Naming::Stem(extension) => {
                    let mut file = Path::new(&name).file_stem().unwrap_or(&name).to_os_string();
                    file.push(extension);
                    file
                }
            };
            if file.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "the output name for {} would be {} bytes long; file systems take at most \
                     {MAX_NAME_BYTES}: rename the target",
                    target.display(),
                    file.len()
                ));
            }
            let path = folder.join(file);
            let resolved = resolve(&path);
            if let Some(input) = inputs.get(&resolved) {
                return Err(format!(
                    "the output {} would overwrite the input {}; choose another --out-dir",
                    path.display(),
                    input.display()
                ));
            }
            if resolved.is_dir() {
                return Err(format!("the output {} is a folder", path.display()));
            }
            if !outputs.insert(resolved) {
                return Err(format!("two targets would write {}", path.display()));
            }
            Ok(path)
        };
        let outputs = namings.iter().map(|&naming| output(naming)).collect::<Result<Vec<_>, _>>()?;
        plan.push(Planned { target: target.clone(), relative: below.join(&name), outputs });
    }
    Ok(plan)
}

/// Creates `out_dir` and every output folder, and checks each can be written to by creating and
/// removing a temporary file there.
pub fn prepare_folders(out_dir: &Path, plan: &[Planned]) -> Result<(), String> {
    let folders: HashSet<&Path> = std::iter::once(out_dir)
        .chain(plan.iter().flat_map(|p| p.outputs.iter().filter_map(|o| o.parent())))
        .collect();
    for folder in folders {
        std::fs::create_dir_all(folder)
            .and_then(|()| temp_file_in(folder).map(drop))
            .map_err(|e| format!("cannot write to the output folder {}: {e}", folder.display()))?;
    }
    Ok(())
}

/// A temporary file in `folder`, removed on drop unless persisted. It is created readable by
/// others as far as the umask allows, like any file the program writes, since it becomes the
/// output when it is renamed.
pub fn temp_file_in(folder: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".seggpt-").suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder)
}

fn canonical(path: &Path) -> Result<PathBuf, String> {
    path.canonicalize().map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `path` made absolute with links resolved as far as it exists; the part that does not exist
/// yet (a new output folder or file) is appended as given.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(mut resolved) = existing.canonicalize() {
            resolved.extend(missing.iter().rev());
            return resolved;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// The deepest folder that contains every one of `folders` (all absolute).
pub fn common_ancestor<'a>(mut folders: impl Iterator<Item = &'a Path>) -> PathBuf {
    let Some(first) = folders.next() else { return PathBuf::new() };
    let mut root = first.to_path_buf();
    for folder in folders {
        while !folder.starts_with(&root) && root.pop() {}
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ancestor_is_component_wise() {
        let paths = [Path::new("/data/a/x"), Path::new("/data/ab"), Path::new("/data/a")];
        assert_eq!(common_ancestor(paths.into_iter()), Path::new("/data"));
        assert_eq!(common_ancestor([Path::new("/d/a")].into_iter()), Path::new("/d/a"));
        assert_eq!(common_ancestor([Path::new("/d/a"), Path::new("/e")].into_iter()), Path::new("/"));
    }

    #[test]
    fn resolve_keeps_the_part_that_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        assert_eq!(resolve(&dir.path().join("new/out.png")), base.join("new/out.png"));
        assert_eq!(resolve(dir.path()), base);
    }
}
