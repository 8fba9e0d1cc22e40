//! `seggpt segment` (prompts + targets -> masks and labels) and `seggpt merge-labels` (the COCO
//! files of a sharded run -> one). Targets come one by one (`--target`), from folders
//! (`--targets`) or from lists (`--targets-from`); `--shard I/N` keeps one worker's share; the
//! exports (docs/MODEL.md §18) are written per target, and the COCO file of the run at the end.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::ValueEnum;

use seggpt::export::coco::{self, CocoFile};
use seggpt::export::{Components, Shard, yolo};
use seggpt::paint::{mask_colours, nearest_colour_labels};
use seggpt::pipeline::{ClassMap, MAX_FILE_BYTES, check_image, encode_gray_png};
use seggpt::segment::{Segmenter, Target};
use seggpt::weights;

use super::interrupt;
use super::output::{self, CLASSES_SUFFIX, MASK_SUFFIX, Naming, Planned};
use super::tune::read_tuned_prompts;
use crate::{
    CliResult, Finished, ForwardArgs, ModelArgs, decode_prompts, load_model, named, read_image_file,
    write_atomically,
};

/// Appended to a target's file name for its own COCO file (the pieces of the run's file).
const COCO_SUFFIX: &str = ".coco.json";
/// A target's YOLO label file: its stem and this extension.
const YOLO_EXTENSION: &str = ".txt";
/// Extensions of the images `--targets` picks up (the formats the decoder reads).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// What `segment` writes for each target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Export {
    /// `<name>.mask.png`: the painted mask in the prompts' colours.
    Masks,
    /// `<name>.classes.png`: 8-bit class indices.
    Classes,
    /// `<name>.coco.json` per target, and the run's `coco.json`: instances as COCO annotations.
    Coco,
    /// `<stem>.txt`: YOLO segmentation lines.
    Yolo,
}

#[derive(clap::Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A prompt image and its mask (RGB colours, or class indices with --num-labels).
    #[arg(long, num_args = 2, value_names = ["IMAGE", "MASK"], required_unless_present = "tuned_prompt")]
    prompt: Vec<PathBuf>,
    /// A prompt learned by `seggpt tune` (alone, or in the ensemble after the --prompt pairs).
    #[arg(long, value_name = "FILE")]
    tuned_prompt: Vec<PathBuf>,
    /// A target image; always segmented, even when its outputs exist.
    #[arg(long)]
    target: Vec<PathBuf>,
    /// A folder: every PNG and JPEG below it (hidden names skipped), outputs at the same paths
    /// below --out-dir. Targets whose outputs all exist are skipped (see --overwrite).
    #[arg(long, value_name = "DIR")]
    targets: Vec<PathBuf>,
    /// A text file with one target path a line (relative to the current folder; empty lines
    /// skipped). Targets whose outputs all exist are skipped (see --overwrite).
    #[arg(long, value_name = "LIST")]
    targets_from: Vec<PathBuf>,
    /// Segment the targets of --targets and --targets-from again even where their outputs exist.
    #[arg(long)]
    overwrite: bool,
    /// Only share I of N (I from 0 to N - 1): a target's share follows from its path alone.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    #[arg(long)]
    out_dir: PathBuf,
    /// Number of classes (1 to 255): masks that are 8-bit class-index PNGs are coloured
    /// with the palette, and class maps are written.
    #[arg(long, value_parser = crate::parse_num_labels)]
    num_labels: Option<usize>,
    /// What to write, comma-separated [default: masks, and classes with --num-labels].
    #[arg(long, value_enum, value_delimiter = ',')]
    export: Vec<Export>,
    /// With --export coco: polygon segmentations instead of RLE.
    #[arg(long)]
    polygons: bool,
    /// With --export coco: category names, one a line, line i naming class i.
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// With --export coco or yolo: the fewest pixels an instance may have [default: 1].
    #[arg(long, value_parser = parse_min_area)]
    min_area: Option<u64>,
    #[command(flatten)]
    forward: ForwardArgs,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The merged COCO file.
    #[arg(long)]
    output: PathBuf,
    /// COCO files written by `seggpt segment --export coco` (with --shard: every share's).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

impl SegmentArgs {
    pub fn uses_wgpu(&self) -> bool {
        matches!(self.model.backend, crate::Backend::Wgpu)
    }
}

fn parse_min_area(text: &str) -> Result<u64, String> {
    crate::parse_count(text, 1, usize::MAX, " (pixels)").map(|n| n as u64)
}

/// One target and where it came from: bulk targets (folders and lists) may be skipped.
struct Found {
    path: PathBuf,
    bulk: bool,
}

/// How pixels become classes for the exports (docs/MODEL.md §18.1).
enum ClassSource {
    /// The palette's class map of `--num-labels` (what `classes.png` has always held).
    Palette,
    /// Per pixel the nearest of black and the prompts' mask colours (`paint::mask_colours`):
    /// class i is the i-th colour, as in the page's per-colour toggles.
    Colours(Vec<[u8; 3]>),
}

pub fn run(args: SegmentArgs) -> CliResult<Finished> {
    let exports = if args.export.is_empty() {
        let mut default = vec![Export::Masks];
        default.extend(args.num_labels.map(|_| Export::Classes));
        default
    } else {
        let mut exports: Vec<Export> = Vec::new();
        for kind in &args.export {
            if !exports.contains(kind) {
                exports.push(*kind);
            }
        }
        exports
    };
    let wants = |kind| exports.contains(&kind);
    let needs = |flag: &str, kinds: &[Export]| -> CliResult<()> {
        match kinds.iter().any(|k| wants(*k)) {
            true => Ok(()),
            false => Err(format!(
                "{flag} only changes {}; add --export {}",
                kinds
                    .iter()
                    .map(|k| format!("the {k:?} export").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" or "),
                kinds[0].to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
            )),
        }
    };
    if args.polygons {
        needs("--polygons", &[Export::Coco])?;
    }
    if args.classes.is_some() {
        needs("--classes", &[Export::Coco])?;
    }
    if args.min_area.is_some() {
        needs("--min-area", &[Export::Coco, Export::Yolo])?;
    }
    let min_area = args.min_area.unwrap_or(1);

    // Everything that can be checked is checked before the slow model load: prompts are decoded
    // whole (they are few and needed anyway), targets get the cheap checks (a regular file, a
    // complete PNG or JPEG of an acceptable size), outputs are planned and their folders made
    // and tried. Targets are decoded one at a time later, so memory does not grow with their
    // number.
    let prompts = decode_prompts(&args.prompt, args.num_labels)?;
    let class_source = match args.num_labels {
        Some(_) => ClassSource::Palette,
        None => ClassSource::Colours(mask_colours(&prompts)),
    };
    let class_count = match &class_source {
        ClassSource::Palette => args.num_labels.unwrap_or_default(),
        ClassSource::Colours(colours) => colours.len(),
    };
    let needs_classes = wants(Export::Classes) || wants(Export::Coco) || wants(Export::Yolo);
    if needs_classes && class_count == 0 {
        return Err("the prompt masks have no colour but black, so there is no class to export".into());
    }
    let names = match &args.classes {
        Some(path) => read_class_names(path, class_count, args.num_labels.is_some())?,
        None => coco::default_class_names(class_count),
    };

    let found = find_targets(&args.target, &args.targets, &args.targets_from)?;
    if found.is_empty() {
        return Err("no targets: give --target FILE, --targets DIR or --targets-from LIST".into());
    }
    for dir in &args.targets {
        let (dir_resolved, out_resolved) = (output::resolve(dir), output::resolve(&args.out_dir));
        if out_resolved.starts_with(&dir_resolved) {
            return Err(format!(
                "the output folder {} is inside the targets folder {}: a later run would take the \
                 outputs for targets; choose an --out-dir outside it",
                args.out_dir.display(),
                dir.display()
            ));
        }
    }
    let namings: Vec<Naming> = exports
        .iter()
        .map(|kind| match kind {
            Export::Masks => Naming::Suffix(MASK_SUFFIX),
            Export::Classes => Naming::Suffix(CLASSES_SUFFIX),
            Export::Coco => Naming::Suffix(COCO_SUFFIX),
            Export::Yolo => Naming::Stem(YOLO_EXTENSION),
        })
        .collect();
    let run_coco = args.out_dir.join(match args.shard {
        Some(shard) => format!("coco.shard-{}-of-{}.json", shard.index, shard.count),
        None => "coco.json".into(),
    });
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    let (weights_path, config_path) = weights::model_paths(&args.model.model);
    let target_paths: Vec<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
    let mut inputs: Vec<&Path> = args
        .prompt
        .iter()
        .chain(&target_paths)
        .chain(&args.tuned_prompt)
        .map(PathBuf::as_path)
        .chain([args.model.model.as_path(), &weights_path, &config_path])
        .collect();
    if let Some(classes) = &args.classes {
        inputs.push(classes);
    }
    let plan = output::plan(&target_paths, &args.targets, &args.out_dir, &namings, &inputs)?;
    if wants(Export::Coco) {
        if let Some(input) = inputs.iter().find(|i| output::resolve(i) == output::resolve(&run_coco)) {
            return Err(format!(
                "the COCO file {} would overwrite the input {}",
                run_coco.display(),
                input.display()
            ));
        }
        if let Some(bad) = plan.iter().find(|p| p.relative.to_str().is_none()) {
            return Err(format!(
                "{}: a COCO file names images in UTF-8, and this name is not; rename it",
                bad.target.display()
            ));
        }
    }

    // This worker's share, then what is left to do.
    let share: Vec<(Planned, bool)> = plan
        .into_iter()
        .zip(found.iter().map(|f| f.bulk))
        .filter(|(planned, _)| args.shard.is_none_or(|shard| shard.takes(&path_key(&planned.relative))))
        .collect();
    let (todo, done): (Vec<_>, Vec<_>) = share.iter().partition(|(planned, bulk)| {
        !*bulk || args.overwrite || !planned.outputs.iter().all(|o| o.is_file())
    });
    for (planned, _) in &todo {
        check_image(&read_image_file(&planned.target)?, &named(&planned.target))
            .map_err(|e| e.to_string())?;
    }
    let todo: Vec<&Planned> = todo.into_iter().map(|(p, _)| p).collect();
    let share_plan: Vec<Planned> = share.iter().map(|(p, _)| p.clone()).collect();
    output::prepare_folders(&args.out_dir, &share_plan)?;
    eprintln!(
        "{} target(s){}: {} to segment, {} already done",
        share.len(),
        args.shard.map(|s| format!(" in share {s} of {}", found.len())).unwrap_or_default(),
        todo.len(),
        done.len()
    );

    interrupt::stop_after_current_target()?;
    let total = share.len();
    let categories = coco::categories(&names);
    if !todo.is_empty() {
        let (model, device) = load_model(&args.model)?;
        let segmenter = Segmenter::with_tuned(&model, &device, &prompts, &tuned, args.forward.options())
            .map_err(|e| e.to_string())?;
        let mut progress = Progress::new(todo.len());
        for (count, planned) in todo.iter().enumerate() {
            if interrupt::requested() {
                progress.end();
                return Ok(Finished::Interrupted { written: done.len() + count, total });
            }
            let start = Instant::now();
            let name = named(&planned.target);
            let run_one = |progress: &mut Progress| -> CliResult<()> {
                let target =
                    Target::decode(&read_image_file(&planned.target)?, &name).map_err(|e| e.to_string())?;
                let result = segmenter
                    .run(&target, args.num_labels, &mut |block, blocks| progress.block(block, blocks))
                    .map_err(|e| format!("{name}: {e}"))?;
                let class_map = match (&class_source, needs_classes) {
                    (_, false) => None,
                    (ClassSource::Palette, true) => result.classes.clone(),
                    (ClassSource::Colours(colours), true) => Some(
                        ClassMap::new(
                            result.mask.width(),
                            result.mask.height(),
                            nearest_colour_labels(result.mask.as_raw(), colours),
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                };
                let components = match (&class_map, wants(Export::Coco) || wants(Export::Yolo)) {
                    (Some(map), true) => Some(Components::of(map, min_area)),
                    _ => None,
                };
                for (kind, path) in exports.iter().zip(&planned.outputs) {
                    let bytes = match (kind, &class_map, &components) {
                        (Export::Masks, ..) => result.mask_png().map_err(|e| e.to_string())?,
                        (Export::Classes, Some(map), _) => encode_gray_png(map).map_err(|e| e.to_string())?,
                        (Export::Coco, _, Some(components)) => {
                            let file_name = relative_name(&planned.relative);
                            let file =
                                CocoFile::single(&file_name, components, categories.clone(), args.polygons);
                            serde_json::to_vec(&file).map_err(|e| e.to_string())?
                        }
                        (Export::Yolo, _, Some(components)) => yolo::label_text(components).into_bytes(),
                        _ => {
                            unreachable!("class maps and components are made for the exports that need them")
                        }
                    };
                    write_atomically(path, &bytes)?;
                }
                Ok(())
            };
            run_one(&mut progress)
                .map_err(|e| format!("{e} ({} of {total} targets written)", done.len() + count))?;
            progress.target(&planned.outputs[0], start.elapsed().as_secs_f64());
        }
        progress.end();
    }
    if wants(Export::Coco) {
        let position = exports.iter().position(|k| *k == Export::Coco).unwrap_or_default();
        let pieces = share_plan
            .iter()
            .map(|planned| read_coco(&planned.outputs[position]))
            .collect::<CliResult<Vec<_>>>()?;
        // A share may hold no target (a small set over many workers): its file is then empty.
        let mut file = match pieces.is_empty() {
            true => CocoFile::empty(categories),
            false => coco::merge(&pieces)?,
        };
        file.info.shard = args.shard;
        write_atomically(&run_coco, &serde_json::to_vec(&file).map_err(|e| e.to_string())?)?;
        eprintln!(
            "{}: {} image(s), {} annotation(s)",
            run_coco.display(),
            file.images.len(),
            file.annotations.len()
        );
    }
    Ok(Finished::All)
}

/// `merge-labels`: the COCO files of a run's shares (or any of `segment`'s COCO files) into one.
pub fn merge_labels(args: MergeArgs) -> CliResult<Finished> {
    let output = output::resolve(&args.output);
    if let Some(input) = args.inputs.iter().find(|i| output::resolve(i) == output) {
        return Err(format!("the output {} is also an input; write the merge elsewhere", input.display()));
    }
    crate::check_writable(&args.output)?;
    let files = args.inputs.iter().map(|path| read_coco(path)).collect::<CliResult<Vec<_>>>()?;
    let merged = coco::merge(&files)?;
    write_atomically(&args.output, &serde_json::to_vec(&merged).map_err(|e| e.to_string())?)?;
    eprintln!(
        "{}: {} image(s), {} annotation(s) from {} file(s)",
        args.output.display(),
        merged.images.len(),
        merged.annotations.len(),
        files.len()
    );
    Ok(Finished::All)
}

fn read_coco(path: &Path) -> CliResult<(String, CocoFile)> {
    let text = read_text(path, "COCO file")?;
    let file = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a COCO file written by seggpt: {e}", path.display()))?;
    Ok((named(path), file))
}

/// A text file the user gave: a regular file of at most [`MAX_FILE_BYTES`], in UTF-8.
fn read_text(path: &Path, what: &str) -> CliResult<String> {
    let cannot = |e: String| format!("cannot read the {what} {}: {e}", path.display());
    let len = weights::regular_file_len(path).map_err(|e| cannot(e.to_string()))?;
    if len > MAX_FILE_BYTES {
        return Err(cannot(format!("{len} bytes is more than {MAX_FILE_BYTES}")));
    }
    let bytes = std::fs::read(path).map_err(|e| cannot(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))
}

/// `--classes FILE`: one name a line for classes 1, 2, ...; exactly `count` of them.
fn read_class_names(path: &Path, count: usize, palette: bool) -> CliResult<Vec<String>> {
    let text = read_text(path, "class names file")?;
    let bad = |why: String| format!("{}: {why}", path.display());
    let names: Vec<String> = text.lines().map(|line| line.trim_end_matches('\r').to_string()).collect();
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(bad(format!("line {} is empty; write one class name a line", i + 1)));
        }
        if let Some(first) = names[..i].iter().position(|other| other == name) {
            return Err(bad(format!("lines {} and {} both name `{name}`", first + 1, i + 1)));
        }
    }
    if names.len() != count {
        let source = if palette { "--num-labels" } else { "the prompt masks' colours" };
        return Err(bad(format!("{} name(s) for {count} class(es) (from {source})", names.len())));
    }
    Ok(names)
}

/// The targets of `--target`, `--targets` and `--targets-from`, in that order.
fn find_targets(files: &[PathBuf], dirs: &[PathBuf], lists: &[PathBuf]) -> CliResult<Vec<Found>> {
    let mut found: Vec<Found> = files.iter().map(|path| Found { path: path.clone(), bulk: false }).collect();
    for dir in dirs {
        let start = found.len();
        walk(dir, &mut found)?;
        if found.len() == start {
            return Err(format!("the folder {} holds no PNG or JPEG image", dir.display()));
        }
    }
    for list in lists {
        let text = read_text(list, "target list")?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let path = PathBuf::from(line);
            if !path.is_file() {
                return Err(format!(
                    "{} (line {} of {}) is not a file that can be read",
                    path.display(),
                    i + 1,
                    list.display()
                ));
            }
            found.push(Found { path, bulk: true });
        }
    }
    Ok(found)
}

/// Every PNG and JPEG below `dir`, in name order. Names starting with `.` are skipped (hidden
/// files, and the `.seggpt-*.part` files of an interrupted write); folders reached through a
/// symbolic link are not entered, so a link cannot make a loop.
fn walk(dir: &Path, found: &mut Vec<Found>) -> CliResult<()> {
    let cannot = |e: std::io::Error| format!("cannot read the folder {}: {e}", dir.display());
    let mut entries = std::fs::read_dir(dir)
        .map_err(cannot)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(cannot)?;
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let link = std::fs::symlink_metadata(&path).map_err(cannot)?;
        if link.is_dir() {
            walk(&path, found)?;
        } else if path.is_file() && is_image_name(name) {
            found.push(Found { path, bulk: true });
        }
    }
    Ok(())
}

fn is_image_name(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| IMAGE_EXTENSIONS.iter().any(|known| ext.eq_ignore_ascii_case(known)))
}

/// A relative path as `/`-separated bytes: the shard key, the same on every platform.
fn path_key(relative: &Path) -> Vec<u8> {
    let mut key = Vec::new();
    for (i, part) in relative.iter().enumerate() {
        if i > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(part.as_encoded_bytes());
    }
    key
}

/// A relative path as a COCO `file_name` (checked to be UTF-8 before the run).
fn relative_name(relative: &Path) -> String {
    String::from_utf8_lossy(&path_key(relative)).into_owned()
}

/// One progress bar for the whole run: on a terminal a line redrawn in place (targets done,
/// the block of the target in progress, time per target, time left); otherwise a line per
/// target.
struct Progress {
    total: usize,
    done: usize,
    seconds: f64,
    terminal: bool,
}

/// Characters of the bar.
const BAR_WIDTH: usize = 24;

impl Progress {
    fn new(total: usize) -> Self {
        Progress { total, done: 0, seconds: 0.0, terminal: std::io::stderr().is_terminal() }
    }

    fn eta(&self) -> String {
        if self.done == 0 {
            return "ETA --".into();
        }
        let left = (self.seconds / self.done as f64 * (self.total - self.done) as f64).round() as u64;
        format!("ETA {}h{:02}m{:02}s", left / 3600, left / 60 % 60, left % 60)
    }

    fn block(&mut self, block: usize, blocks: usize) {
        if !self.terminal {
            return;
        }
        let fraction = (self.done as f64 + block as f64 / blocks.max(1) as f64) / self.total as f64;
        let filled = (fraction * BAR_WIDTH as f64) as usize;
        let per = if self.done > 0 {
            format!("{:.1} s/target", self.seconds / self.done as f64)
        } else {
            "".into()
        };
        eprint!(
            "\r[{}{}] {}/{} targets, block {block}/{blocks}, {per} {}   ",
            "#".repeat(filled.min(BAR_WIDTH)),
            ".".repeat(BAR_WIDTH - filled.min(BAR_WIDTH)),
            self.done,
            self.total,
            self.eta()
        );
    }

    fn target(&mut self, first_output: &Path, seconds: f64) {
        self.done += 1;
        self.seconds += seconds;
        if self.terminal {
            self.block(0, 1);
        } else {
            eprintln!(
                "{}/{} {} ({seconds:.2} s, {})",
                self.done,
                self.total,
                first_output.display(),
                self.eta()
            );
        }
    }

    fn end(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
