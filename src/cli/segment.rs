//! `seggpt segment` (prompts + targets -> masks and labels) and `seggpt merge-labels` (the COCO
//! files of a sharded run -> one). Targets come one by one (`--target`), from folders
//! (`--targets`) or from lists (`--targets-from`); `--shard I/N` keeps one worker's share; the
//! exports (docs/MODEL.md §18) are written per target, and the COCO file of the run at the end.
//! A run over folders or lists records what shaped its outputs in the out-dir (`seggpt-run.json`:
//! the model's and prompts' SHA-256s, the options, the folder the outputs are laid out from), so
//! that a resumed run never keeps an output made otherwise; `run` is four steps: [`plan`],
//! [`check_outputs`], [`segment_targets`], [`write_run_coco`].

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::ValueEnum;
use serde_json::{Value, json};

use seggpt::export::coco::{self, Category, CocoFile};
use seggpt::export::{Components, Shard, yolo};
use seggpt::paint::{MAX_MASK_COLOURS, frequent_mask_colours, mask_colours, nearest_colour_labels};
use seggpt::pipeline::{ClassMap, MAX_FILE_BYTES, Tiling, check_image, encode_gray_png};
use seggpt::segment::{Prompt, Segmenter, Target, TunedPrompt};
use seggpt::weights;

use super::interrupt;
use super::output::{self, CLASSES_SUFFIX, MASK_SUFFIX, Naming, Planned};
use super::record::{self, RunRecord};
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
    /// below --out-dir. Targets whose outputs all exist and are whole are skipped (see
    /// --overwrite); the settings that made them are recorded in --out-dir (seggpt-run.json), and
    /// a run with other settings is refused, naming them.
    #[arg(long, value_name = "DIR")]
    targets: Vec<PathBuf>,
    /// A text file with one target path a line (relative to the current folder; empty lines
    /// skipped). Outputs go to each target's path below the deepest folder holding every target;
    /// the out-dir keeps the folder of its first run (recorded in seggpt-run.json), so a later
    /// list with fewer files leaves their outputs where they are, and a file outside that folder
    /// is refused rather than moving every output. Targets whose outputs all exist and are whole
    /// are skipped (see --overwrite).
    #[arg(long, value_name = "LIST")]
    targets_from: Vec<PathBuf>,
    /// Segment the targets of --targets and --targets-from again even where their outputs exist,
    /// with this run's settings and layout, which the out-dir then records.
    #[arg(long)]
    overwrite: bool,
    /// Only share I of N (I from 0 to N - 1, N at most 100000): a target's share follows from
    /// its path alone.
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
    /// Segment each target in overlapping square tiles of SIZE pixels (OVERLAP shared between
    /// neighbours, default SIZE/4), each with the same prompts, and stitch them back: each pixel
    /// from the tile whose centre is nearest. For targets much larger than the model's 448 x 448
    /// view, whose small objects it would miss; a target no larger than a tile is segmented whole.
    #[arg(long, value_name = "SIZE[,OVERLAP]", value_parser = Tiling::parse)]
    tile: Option<Tiling>,
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

/// Everything about a run decided and checked before its out-dir is read: what to write, the
/// prompts and classes, and this worker's share of the targets with their outputs.
struct Job {
    exports: Vec<Export>,
    prompts: Vec<Prompt>,
    tuned: Vec<TunedPrompt>,
    class_source: ClassSource,
    class_count: usize,
    categories: Vec<Category>,
    min_area: u64,
    /// Targets found, all shares.
    found: usize,
    /// This worker's share: each target's outputs, and whether it came from a folder or list
    /// (only those may be skipped as done).
    share: Vec<(Planned, bool)>,
    run_coco: PathBuf,
    record: RecordPlan,
}

impl Job {
    fn wants(&self, kind: Export) -> bool {
        self.exports.contains(&kind)
    }

    /// Whether pixels must become classes (every export but the painted mask).
    fn needs_classes(&self) -> bool {
        self.wants(Export::Classes) || self.wants(Export::Coco) || self.wants(Export::Yolo)
    }
}

/// The record of what shaped the outputs in the out-dir (see [`RECORD_NAME`]), for this run.
struct RecordPlan {
    /// This run's record file.
    path: PathBuf,
    /// This run's settings; `None` for a run of `--target` files only into a folder without a
    /// record (nothing there to agree with, and nothing it writes is resumed).
    settings: Option<Value>,
    /// The records already in the out-dir this run must agree with.
    existing: Vec<(PathBuf, RunRecord)>,
    /// Whether this run has targets from folders or lists: only such a run resumes, so only it
    /// writes a record (a run of `--target` files redoes them all, and checks against a record).
    bulk: bool,
    /// Whether this run may redo every output and replace the record: `--overwrite` with
    /// targets from folders or lists (a run of `--target` files redoes only those).
    redo_all: bool,
}

/// What is left to do once the out-dir is read.
struct Work {
    todo: Vec<Planned>,
    done: usize,
}

pub fn run(args: SegmentArgs) -> CliResult<Finished> {
    let job = plan(&args)?;
    let work = check_outputs(&args, &job)?;
    eprintln!(
        "{} target(s){}: {} to segment, {} already done",
        job.share.len(),
        args.shard.map(|s| format!(" in share {s} of {}", job.found)).unwrap_or_default(),
        work.todo.len(),
        work.done
    );
    interrupt::stop_after_current_target()?;
    if let Some(interrupted) = segment_targets(&args, &job, &work)? {
        return Ok(interrupted);
    }
    if job.wants(Export::Coco) {
        write_run_coco(&args, &job)?;
    }
    Ok(Finished::All)
}

/// Step 1, before the slow model load: everything that can be checked is checked. Prompts are
/// decoded whole (they are few and needed anyway); targets are found and their outputs planned
/// (the cheap checks on each target come in [`check_outputs`], for those left to do); the
/// out-dir's record is read and compared. Nothing is written.
fn plan(args: &SegmentArgs) -> CliResult<Job> {
    let exports = chosen_exports(args)?;
    let prompts = decode_prompts(&args.prompt, args.num_labels)?;
    let (class_source, class_count, names) = classes(args, &prompts, &exports)?;
    let found = find_targets(&args.target, &args.targets, &args.targets_from)?;
    if found.is_empty() {
        return Err("no targets: give --target FILE, --targets DIR or --targets-from LIST".into());
    }
    refuse_out_dir_in_targets(args)?;
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    let target_paths: Vec<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
    let inputs = run_inputs(args, &target_paths);
    let (record, root) = plan_record(args, &found, &exports, &names, &inputs)?;

    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let plan = output::plan(&target_paths, &[root], &args.out_dir, &namings(&exports), &inputs)?;
    let run_coco = args.out_dir.join(match args.shard {
        Some(shard) => format!("coco.shard-{}-of-{}.json", shard.index, shard.count),
        None => "coco.json".into(),
    });
    if exports.contains(&Export::Coco) {
        check_coco_names(&plan, &inputs, &run_coco)?;
    }
    // This worker's share.
    let share: Vec<(Planned, bool)> = plan
        .into_iter()
        .zip(found.iter().map(|f| f.bulk))
        .filter(|(planned, _)| args.shard.is_none_or(|shard| shard.takes(&path_key(&planned.relative))))
        .collect();
    Ok(Job {
        exports,
        prompts,
        tuned,
        class_source,
        class_count,
        categories: coco::categories(&names),
        min_area: args.min_area.unwrap_or(1),
        found: found.len(),
        share,
        run_coco,
        record,
    })
}

/// How pixels become classes, how many there are, and their names (`--classes`, or
/// `class_1...`); refused where an export needs classes and the prompts mark none.
fn classes(
    args: &SegmentArgs,
    prompts: &[Prompt],
    exports: &[Export],
) -> CliResult<(ClassSource, usize, Vec<String>)> {
    let needs_classes = exports.iter().any(|k| *k != Export::Masks);
    let source = match args.num_labels {
        Some(_) => ClassSource::Palette,
        None => ClassSource::Colours(colour_classes(prompts, needs_classes)?),
    };
    let count = match &source {
        ClassSource::Palette => args.num_labels.unwrap_or_default(),
        ClassSource::Colours(colours) => colours.len(),
    };
    if needs_classes && count == 0 {
        return Err("the prompt masks have no colour but black, so there is no class to export".into());
    }
    let names = match &args.classes {
        Some(path) => read_class_names(path, count, args.num_labels.is_some())?,
        None => coco::default_class_names(count),
    };
    Ok((source, count, names))
}

/// The prompts' colours as classes. Where an export needs classes, more colours than
/// [`MAX_MASK_COLOURS`] are refused: the rarest would silently become other classes.
fn colour_classes(prompts: &[Prompt], needs_classes: bool) -> CliResult<Vec<[u8; 3]>> {
    let colours = frequent_mask_colours(prompts);
    if needs_classes && colours.len() > MAX_MASK_COLOURS {
        return Err(format!(
            "the prompt masks hold {} colours (each covering at least 0.2% of their pixels), and at most \
             {MAX_MASK_COLOURS} classes are told apart by colour: paint fewer colours, or give class-index \
             masks with --num-labels N",
            colours.len()
        ));
    }
    Ok(mask_colours(prompts))
}

/// Every file the run reads: no output may be one of them.
fn run_inputs(args: &SegmentArgs, targets: &[PathBuf]) -> Vec<PathBuf> {
    let (weights_path, config_path) = weights::model_paths(&args.model.model);
    let mut inputs: Vec<PathBuf> =
        args.prompt.iter().chain(targets).chain(&args.tuned_prompt).cloned().collect();
    inputs.extend([args.model.model.clone(), weights_path, config_path]);
    inputs.extend(args.classes.clone());
    inputs
}

/// The out-dir's records read and this run's settings compared with them; and the folder the
/// outputs are laid out from (the recorded one where there is one).
fn plan_record(
    args: &SegmentArgs,
    found: &[Found],
    exports: &[Export],
    names: &[String],
    inputs: &[PathBuf],
) -> CliResult<(RecordPlan, PathBuf)> {
    let bulk = found.iter().any(|f| f.bulk);
    let path = args.out_dir.join(record_name(args.shard));
    record::refuse_output_over_inputs(&path, inputs)?;
    let redo_all = args.overwrite && bulk;
    let existing = read_records(&args.out_dir, &path, redo_all)?;
    let recorded = existing.first().and_then(|(path, record)| Some((path, recorded_root(record)?)));
    let root = layout_root(found, &args.targets, recorded, &args.out_dir, redo_all)?;
    // A run of `--target` files into a folder without a record needs no settings: hashing the
    // model would only cost time.
    let settings = match bulk || !existing.is_empty() {
        true => Some(output_settings(args, exports, names, &root)?),
        false => None,
    };
    let record = RecordPlan { path, settings, existing, bulk, redo_all };
    check_settings(&args.out_dir, &record)?;
    Ok((record, root))
}

/// `--export` without repeats, or the default; and the export options each need their export.
fn chosen_exports(args: &SegmentArgs) -> CliResult<Vec<Export>> {
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
    let needs = |flag: &str, kinds: &[Export]| -> CliResult<()> {
        match kinds.iter().any(|k| exports.contains(k)) {
            true => Ok(()),
            false => Err(format!(
                "{flag} only changes {}; add --export {}",
                kinds
                    .iter()
                    .map(|k| format!("the {k:?} export").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" or "),
                export_name(kinds[0])
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
    Ok(exports)
}

fn export_name(kind: Export) -> String {
    kind.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

/// How each export names its file.
fn namings(exports: &[Export]) -> Vec<Naming> {
    exports
        .iter()
        .map(|kind| match kind {
            Export::Masks => Naming::Suffix(MASK_SUFFIX),
            Export::Classes => Naming::Suffix(CLASSES_SUFFIX),
            Export::Coco => Naming::Suffix(COCO_SUFFIX),
            Export::Yolo => Naming::Stem(YOLO_EXTENSION),
        })
        .collect()
}

/// An out-dir inside a `--targets` folder: a later run would take the outputs for targets.
fn refuse_out_dir_in_targets(args: &SegmentArgs) -> CliResult<()> {
    let out_resolved = output::resolve(&args.out_dir);
    for dir in &args.targets {
        if out_resolved.starts_with(output::resolve(dir)) {
            return Err(format!(
                "the output folder {} is inside the targets folder {}: a later run would take the \
                 outputs for targets; choose an --out-dir outside it",
                args.out_dir.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The run's COCO file may not be an input, and COCO names images in UTF-8.
fn check_coco_names(plan: &[Planned], inputs: &[&Path], run_coco: &Path) -> CliResult<()> {
    let inputs: Vec<PathBuf> = inputs.iter().map(|i| i.to_path_buf()).collect();
    record::refuse_output_over_inputs(run_coco, &inputs)?;
    if let Some(bad) = plan.iter().find(|p| p.relative.to_str().is_none()) {
        return Err(format!(
            "{}: a COCO file names images in UTF-8, and this name is not; rename it",
            bad.target.display()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The record of what shaped the outputs

/// The record of a run's settings in its out-dir: `seggpt-run.json`, or per share
/// `seggpt-run.shard-I-of-N.json` (shares run at once into one folder, and each keeps its own,
/// so that a share redone with other settings leaves the others' records to refuse a stale
/// resume). No output is ever named so: outputs end in `.png`, `.coco.json` or `.txt`.
const RECORD_NAME: &str = "seggpt-run";

fn record_name(shard: Option<Shard>) -> String {
    match shard {
        Some(shard) => format!("{RECORD_NAME}.shard-{}-of-{}.json", shard.index, shard.count),
        None => format!("{RECORD_NAME}.json"),
    }
}

/// Whether `name` is a record file's name (of any share).
fn is_record_name(name: &str) -> bool {
    let Some(middle) = name.strip_prefix(RECORD_NAME).and_then(|rest| rest.strip_suffix(".json")) else {
        return false;
    };
    let share = middle.strip_prefix(".shard-").and_then(|s| s.split_once("-of-"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    middle.is_empty() || share.is_some_and(|(i, n)| digits(i) && digits(n))
}

/// The records this run must agree with: its own if there is one, else every other share's
/// (a share that has not run yet must match the ones that have). With `redo_all` a record that
/// cannot be read is passed over: this run replaces its own, and redoes everything.
fn read_records(out_dir: &Path, own: &Path, redo_all: bool) -> CliResult<Vec<(PathBuf, RunRecord)>> {
    let read = |path: &Path| -> CliResult<Option<RunRecord>> {
        match RunRecord::read(path) {
            Err(_) if redo_all => Ok(None),
            Err(e) => Err(format!("{e}: give --overwrite to redo every output, or choose another --out-dir")),
            ok => ok,
        }
    };
    if let Some(record) = read(own)? {
        return Ok(vec![(own.to_path_buf(), record)]);
    }
    let Ok(entries) = std::fs::read_dir(out_dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_str().is_some_and(is_record_name))
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    let mut records = Vec::new();
    for path in paths {
        if let Some(record) = read(&path)? {
            records.push((path, record));
        }
    }
    Ok(records)
}

/// The folder a record's outputs are laid out from.
fn recorded_root(record: &RunRecord) -> Option<PathBuf> {
    record.settings.get("layout_root")?.as_str().map(PathBuf::from)
}

/// The folder outputs are laid out from: each target's outputs go to its path below it. On a
/// first run, the deepest folder holding every target and `--targets` folder. An out-dir keeps
/// the folder of its record, so that a later run over fewer targets, or a list with one more
/// file elsewhere, cannot move every output: a target outside it is refused (with `redo_all`,
/// `--overwrite`, the folder is laid out again from the new common folder).
fn layout_root(
    found: &[Found],
    dirs: &[PathBuf],
    recorded: Option<(&PathBuf, PathBuf)>,
    out_dir: &Path,
    redo_all: bool,
) -> CliResult<PathBuf> {
    let canonical =
        |path: &Path| path.canonicalize().map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut folders: Vec<(&Path, PathBuf)> = Vec::with_capacity(found.len() + dirs.len());
    for target in found {
        canonical(&target.path)?;
        let parent = target.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        folders.push((&target.path, canonical(parent)?));
    }
    for dir in dirs {
        folders.push((dir, canonical(dir)?));
    }
    let common = output::common_ancestor(folders.iter().map(|(_, folder)| folder.as_path()));
    let Some((record, root)) = recorded else { return Ok(common) };
    match folders.iter().find(|(_, folder)| !folder.starts_with(&root)) {
        None => Ok(root),
        Some(_) if redo_all => Ok(common),
        Some((outside, _)) => Err(format!(
            "{} is outside {}, the folder the outputs in {} are laid out from (recorded in {}); \
             taking it in would move every other output. Label it into another --out-dir, or give \
             --overwrite to lay the folder out again from {}",
            outside.display(),
            root.display(),
            out_dir.display(),
            record.display(),
            common.display()
        )),
    }
}

/// What shapes the outputs, as the out-dir's record keeps it: the model, prompts and forward
/// options (every mask), the classes and exports (the label files), and the layout root (every
/// path). The backend is not in it: CPU and GPU give the same masks up to rounding. Named after
/// the options, so that a refusal's `name: old -> new` says which to change.
fn output_settings(
    args: &SegmentArgs,
    exports: &[Export],
    names: &[String],
    root: &Path,
) -> CliResult<Value> {
    let mut settings = record::model_identity(&args.model.model)?;
    let options = args.forward.options();
    let hashes =
        |paths: &[PathBuf]| paths.iter().map(|p| record::sha256_file(p)).collect::<CliResult<Vec<_>>>();
    let mut kinds: Vec<Export> = exports.to_vec();
    kinds.sort_by_key(|k| *k as u8);
    settings["ensemble"] = json!(options.ensemble.unwrap_or(seggpt::Ensemble::Official).name());
    settings["embedding_type"] = json!(options.embedding_type.name());
    settings["prompt_sha256"] = json!(hashes(&args.prompt)?);
    settings["tuned_prompt_sha256"] = json!(hashes(&args.tuned_prompt)?);
    settings["num_labels"] = json!(args.num_labels);
    settings["export"] = json!(kinds.into_iter().map(export_name).collect::<Vec<_>>());
    settings["polygons"] = json!(args.polygons);
    settings["class_names"] = json!(names);
    settings["min_area"] = json!(args.min_area.unwrap_or(1));
    // Only when given, so that the records of runs without tiles stay the same as before it existed.
    if let Some(tiling) = args.tile {
        settings["tile"] = json!(tiling);
    }
    settings["layout_root"] = json!(root.to_string_lossy());
    Ok(settings)
}

/// Refuses a run whose settings differ from a record in the out-dir, naming each difference,
/// unless it redoes every output (`--overwrite` with targets from folders or lists): resuming
/// would keep outputs made with the old settings.
fn check_settings(out_dir: &Path, record: &RecordPlan) -> CliResult<()> {
    let Some(settings) = &record.settings else { return Ok(()) };
    if record.redo_all {
        return Ok(());
    }
    for (path, old) in &record.existing {
        if old.settings == *settings {
            continue;
        }
        return Err(format!(
            "the outputs in {} were made with other settings than this run's ({}; recorded in {}), \
             and resuming would keep them: give --overwrite (with --targets or --targets-from) to \
             redo every output with this run's settings, or choose another --out-dir",
            out_dir.display(),
            record::differences(&old.settings, settings),
            path.display()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resume

/// Step 2: which targets are left, each checked cheaply (a regular file, a complete PNG or JPEG
/// of an acceptable size); the output folders made and tried; the record written. A bulk target
/// is done when every output is there and whole: an output that is not (cut, edited, another
/// run's) is reported and redone, never trusted. Targets are decoded one at a time later, so
/// memory does not grow with their number.
fn check_outputs(args: &SegmentArgs, job: &Job) -> CliResult<Work> {
    if job.record.bulk && job.record.existing.is_empty() && !job.record.redo_all {
        refuse_unrecorded_outputs(&args.out_dir, job)?;
    }
    let mut todo = Vec::new();
    let mut broken = Vec::new();
    for (planned, bulk) in &job.share {
        if !bulk || job.record.redo_all {
            todo.push(planned.clone());
            continue;
        }
        match whole_outputs(planned, job) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(why) => broken.push(why),
        }
        todo.push(planned.clone());
    }
    report_broken(&broken);
    for planned in &todo {
        check_image(&read_image_file(&planned.target)?, &named(&planned.target))
            .map_err(|e| e.to_string())?;
    }
    let share_plan: Vec<Planned> = job.share.iter().map(|(p, _)| p.clone()).collect();
    output::prepare_folders(&args.out_dir, &share_plan)?;
    write_record(&job.record)?;
    Ok(Work { done: job.share.len() - todo.len(), todo })
}

/// A bulk run into a folder with outputs but no record: nothing says which settings made them
/// (an older seggpt, or runs of `--target` files), so none may count as done.
fn refuse_unrecorded_outputs(out_dir: &Path, job: &Job) -> CliResult<()> {
    let existing =
        job.share.iter().filter(|(_, bulk)| *bulk).flat_map(|(p, _)| &p.outputs).find(|o| o.exists());
    match existing {
        None => Ok(()),
        Some(output) => Err(format!(
            "{} holds {}, but no record of the settings that made it ({}): it cannot count as done. \
             Give --overwrite to redo every output, or choose another --out-dir",
            out_dir.display(),
            output.display(),
            job.record.path.display()
        )),
    }
}

/// Writes this run's record where it has none, or where it redoes every output.
fn write_record(record: &RecordPlan) -> CliResult<()> {
    let Some(settings) = record.settings.as_ref().filter(|_| record.bulk) else { return Ok(()) };
    let own = record.existing.iter().any(|(path, old)| *path == record.path && old.settings == *settings);
    if own {
        return Ok(());
    }
    RunRecord::new(settings.clone()).write(&record.path)
}

/// Most outputs named when several are redone for being broken.
const NAMED_BROKEN: usize = 5;

fn report_broken(broken: &[String]) {
    for why in broken.iter().take(NAMED_BROKEN) {
        eprintln!("{why}; its target is segmented again");
    }
    if broken.len() > NAMED_BROKEN {
        eprintln!(
            "... and {} more output(s) not whole; their targets are segmented again",
            broken.len() - NAMED_BROKEN
        );
    }
}

/// Whether every output of a target is there (`Ok(false)` where one is missing) and whole: an
/// image export a complete PNG, a COCO file valid and of this target and categories, a YOLO
/// file of lines this run could have written. `Err` names the first output that is not.
fn whole_outputs(planned: &Planned, job: &Job) -> Result<bool, String> {
    if !planned.outputs.iter().all(|o| o.is_file()) {
        return Ok(false);
    }
    for (kind, path) in job.exports.iter().zip(&planned.outputs) {
        let name = named(path);
        let whole = match kind {
            Export::Masks | Export::Classes => read_image_file(path)
                .and_then(|bytes| check_image(&bytes, &name).map(drop).map_err(|e| e.to_string())),
            Export::Coco => read_coco(path).and_then(|(_, file)| check_target_coco(&file, planned, job)),
            Export::Yolo => {
                read_text(path, "YOLO label file").and_then(|text| check_yolo(&text, job.class_count))
            }
        };
        whole.map_err(|why| format!("{name} is not a whole {} output: {why}", export_name(*kind)))?;
    }
    Ok(true)
}

/// A target's COCO file: valid, of this one image, with this run's categories.
fn check_target_coco(file: &CocoFile, planned: &Planned, job: &Job) -> CliResult<()> {
    coco::check_file("it", file)?;
    let expected = relative_name(&planned.relative);
    match file.images.as_slice() {
        [image] if image.file_name == expected => {}
        _ => return Err(format!("it is not the file of the one image {expected}")),
    }
    if file.categories != job.categories {
        return Err("its categories are not this run's".into());
    }
    Ok(())
}

/// YOLO segmentation lines: a class below `classes`, then x, y pairs (at least 3 points) in 0-1.
fn check_yolo(text: &str, classes: usize) -> CliResult<()> {
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split(' ');
        let class_ok = fields.next().and_then(|c| c.parse::<usize>().ok()).is_some_and(|c| c < classes);
        let values: Option<Vec<f64>> = fields.map(|v| v.parse::<f64>().ok()).collect();
        let points_ok = values
            .is_some_and(|v| v.len() >= 6 && v.len() % 2 == 0 && v.iter().all(|x| (0.0..=1.0).contains(x)));
        if !(class_ok && points_ok) {
            return Err(format!("line {} is not a class below {classes} and a polygon in 0-1", i + 1));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Work and report

/// Step 3: loads the model (only when there is work) and segments what is left, writing each
/// target's outputs. `Some` when Ctrl-C stopped it after a target.
fn segment_targets(args: &SegmentArgs, job: &Job, work: &Work) -> CliResult<Option<Finished>> {
    if work.todo.is_empty() {
        return Ok(None);
    }
    let total = job.share.len();
    let (model, device) = load_model(&args.model)?;
    let segmenter = Segmenter::with_tuned(&model, &device, &job.prompts, &job.tuned, args.forward.options())
        .map_err(|e| e.to_string())?;
    let mut progress = Progress::new(work.todo.len());
    for (count, planned) in work.todo.iter().enumerate() {
        if interrupt::requested() {
            progress.end();
            return Ok(Some(Finished::Interrupted { written: work.done + count, total }));
        }
        let start = Instant::now();
        segment_one(args, job, &segmenter, planned, &mut progress)
            .map_err(|e| format!("{e} ({} of {total} targets written)", work.done + count))?;
        progress.target(&planned.outputs[0], start.elapsed().as_secs_f64());
    }
    progress.end();
    Ok(None)
}

/// One target: segmented, its classes and instances found where an export needs them, and each
/// output written whole.
fn segment_one(
    args: &SegmentArgs,
    job: &Job,
    segmenter: &Segmenter,
    planned: &Planned,
    progress: &mut Progress,
) -> CliResult<()> {
    let name = named(&planned.target);
    let target = Target::decode(&read_image_file(&planned.target)?, &name).map_err(|e| e.to_string())?;
    let result = segmenter
        .run_tiled(&target, args.tile.as_ref(), args.num_labels, &mut |block, blocks| {
            progress.block(block, blocks)
        })
        .map_err(|e| format!("{name}: {e}"))?;
    let class_map = match (&job.class_source, job.needs_classes()) {
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
    let components = match (&class_map, job.wants(Export::Coco) || job.wants(Export::Yolo)) {
        (Some(map), true) => Some(Components::of(map, job.min_area)),
        _ => None,
    };
    for (kind, path) in job.exports.iter().zip(&planned.outputs) {
        let bytes = match (kind, &class_map, &components) {
            (Export::Masks, ..) => result.mask_png().map_err(|e| e.to_string())?,
            (Export::Classes, Some(map), _) => encode_gray_png(map).map_err(|e| e.to_string())?,
            (Export::Coco, _, Some(components)) => {
                let file_name = relative_name(&planned.relative);
                let file = CocoFile::single(&file_name, components, job.categories.clone(), args.polygons);
                serde_json::to_vec(&file).map_err(|e| e.to_string())?
            }
            (Export::Yolo, _, Some(components)) => yolo::label_text(components).into_bytes(),
            _ => unreachable!("class maps and components are made for the exports that need them"),
        };
        write_atomically(path, &bytes)?;
    }
    Ok(())
}

/// Step 4: the run's (or share's) COCO file from every target's, and what it holds.
fn write_run_coco(args: &SegmentArgs, job: &Job) -> CliResult<()> {
    let position = job.exports.iter().position(|k| *k == Export::Coco).unwrap_or_default();
    let pieces = job
        .share
        .iter()
        .map(|(planned, _)| read_coco(&planned.outputs[position]))
        .collect::<CliResult<Vec<_>>>()?;
    // A share may hold no target (a small set over many workers): its file is then empty.
    let mut file = match pieces.is_empty() {
        true => CocoFile::empty(job.categories.clone()),
        false => coco::merge(&pieces)?,
    };
    file.info.shard = args.shard;
    write_atomically(&job.run_coco, &serde_json::to_vec(&file).map_err(|e| e.to_string())?)?;
    eprintln!(
        "{}: {} image(s), {} annotation(s)",
        job.run_coco.display(),
        file.images.len(),
        file.annotations.len()
    );
    Ok(())
}

/// `merge-labels`: the COCO files of a run's shares (or any of `segment`'s COCO files) into one.
pub fn merge_labels(args: MergeArgs) -> CliResult<Finished> {
    record::refuse_output_over_inputs(&args.output, &args.inputs)?;
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
