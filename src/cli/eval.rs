//! `seggpt eval fss` and `seggpt eval vos`: the paper's few-shot and video protocols, scored as the
//! literature scores them (`seggpt::eval`, docs/MODEL.md §15).
//!
//! Each run owns an output folder: `run.json` (the settings, the command line, the model's SHA-256),
//! the work done so far (`results.jsonl` of episode counts for `fss`, the DAVIS-format predictions
//! for `vos`), and at the end `report.json` with the scores; the table goes to standard output. A
//! run started again with the same settings resumes from what the folder holds; other settings in
//! the same folder are refused, so results of two protocols never mix, and so is a folder that
//! holds files but no `run.json` (or lies in the dataset): only what a run of this tool wrote
//! with these settings may count.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use seggpt::SegGpt;
use seggpt::eval::davis::{Labels, ObjectScores, Summary, VOID_LABEL, object_count, score_sequence};
use seggpt::eval::episodes::{Episode, Sample, draw_class};
use seggpt::eval::fewshot::{EpisodeAreas, FewShotScores};
use seggpt::pipeline::{ClassMap, RgbImage, decode_class_map, decode_rgb, encode_palette_png};
use seggpt::segment::{Prompt, PromptMask, Segmenter, Target, TunedPrompt};
use seggpt::video::{DEFAULT_NUM_FRAMES, Propagate, Propagator, VideoOptions};

use crate::cli::interrupt;
use crate::cli::record::{self, RunRecord};
use crate::cli::tune::read_tuned_prompts;
use crate::cli::video::parse_num_frames;
use crate::{
    CliResult, Finished, ForwardArgs, ModelArgs, load_model, named, read_image_file, write_atomically,
};

/// Score SegGPT on a benchmark's protocol; results and a report go to --out.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(clap::Subcommand)]
enum Benchmark {
    /// Few-shot segmentation (FSS-1000 folders, or any set as a JSON episode list): per-class
    /// IoU, mIoU and FB-IoU as HSNet accumulates them.
    Fss(FssArgs),
    /// Semi-supervised video object segmentation on a DAVIS-2017 folder: J, F and J&F as the
    /// DAVIS toolkit computes them; predictions written in the DAVIS format.
    Vos(VosArgs),
}

#[derive(clap::Args)]
struct FssArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// FSS-1000 layout: DIR/<class>/<n>.jpg with its binary mask DIR/<class>/<n>.png.
    #[arg(long, value_name = "DIR", required_unless_present = "episodes", conflicts_with = "episodes")]
    data: Option<PathBuf>,
    /// Only these classes of --data (one name a line), e.g. a benchmark's test split.
    #[arg(long, value_name = "FILE", requires = "data")]
    classes: Option<PathBuf>,
    /// A JSON episode list instead of drawing: {"episodes": [{"class", "query": {"image", "mask"},
    /// "supports": [...], "label"?, "ignore"?}]}, paths relative to the file's folder.
    #[arg(long, value_name = "FILE")]
    episodes: Option<PathBuf>,
    /// Supports per episode (0: the tuned prompts alone, which needs --tuned-prompt).
    #[arg(long, default_value_t = 1, value_parser = parse_shots)]
    shots: usize,
    /// Episodes drawn per class (at most 1000).
    #[arg(long, default_value_t = 10, value_parser = parse_episodes_per_class)]
    episodes_per_class: usize,
    /// Seed of the episode draw (SplitMix64; the same episodes on every platform).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run's folder: run.json, episodes.json, results.jsonl, report.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A prompt learned by `seggpt tune`, joining every episode's supports in the ensemble.
    #[arg(long, value_name = "FILE")]
    tuned_prompt: Vec<PathBuf>,
    #[command(flatten)]
    forward: ForwardArgs,
}

#[derive(clap::Args)]
struct VosArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// DAVIS-2017 root: JPEGImages/480p/<seq>/, Annotations/480p/<seq>/, ImageSets/2017/<split>.txt.
    #[arg(long, value_name = "ROOT")]
    davis: PathBuf,
    /// The sequence list ImageSets/2017/<SPLIT>.txt.
    #[arg(long, default_value = "val", value_parser = parse_folder_name)]
    split: String,
    /// The resolution folder under JPEGImages/ and Annotations/.
    #[arg(long, default_value = "480p", value_parser = parse_folder_name)]
    resolution: String,
    /// K, previous frames with their predicted masks added to every batch (as `video --num-frames`).
    #[arg(long, default_value_t = DEFAULT_NUM_FRAMES, value_parser = parse_num_frames)]
    num_frames: usize,
    /// The masks kept for the next frames: colour keeps one colour per object (needed for
    /// several objects), binary is the official single-object rule.
    #[arg(long, value_enum, default_value_t = Propagate::Colour)]
    propagate: Propagate,
    /// The run's folder: run.json, <sequence>/<frame>.png predictions (DAVIS format), report.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A prompt learned by `seggpt tune`, following the first frame's in every batch (before the
    /// previous frames).
    #[arg(long, value_name = "FILE")]
    tuned_prompt: Vec<PathBuf>,
    #[command(flatten)]
    forward: ForwardArgs,
}

impl EvalArgs {
    pub fn model(&self) -> &ModelArgs {
        match &self.benchmark {
            Benchmark::Fss(args) => &args.model,
            Benchmark::Vos(args) => &args.model,
        }
    }
}

fn parse_shots(text: &str) -> Result<usize, String> {
    crate::parse_count(text, 0, 64, "")
}

/// Most episodes drawn per class. Each is a forward pass, and every drawn episode is held and
/// written to episodes.json before the first runs: FSS-1000's protocol takes 10 a class (each
/// image the query once), and a thousand classes of this many are already a million episodes.
const MAX_EPISODES_PER_CLASS: usize = 1000;

fn parse_episodes_per_class(text: &str) -> Result<usize, String> {
    crate::parse_count(text, 1, MAX_EPISODES_PER_CLASS, "")
}

/// A name that is one folder: paths made from it (split lists, resolutions, sequences) stay in
/// the folder they are joined to, so that predictions never leave --out and frames, annotations
/// and predictions never share a folder.
fn check_folder_name(name: &str) -> Result<(), String> {
    let mut components = Path::new(name).components();
    let single = matches!((components.next(), components.next()), (Some(Component::Normal(_)), None));
    if single && !name.contains(['/', '\\']) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a folder name (one name, without `/`, `\\`, `.` or `..`)"))
    }
}

fn parse_folder_name(text: &str) -> Result<String, String> {
    check_folder_name(text).map(|()| text.to_owned())
}

pub fn run(args: &EvalArgs) -> CliResult<Finished> {
    match &args.benchmark {
        Benchmark::Fss(args) => fss(args),
        Benchmark::Vos(args) => vos(args),
    }
}

// ---------------------------------------------------------------------------------------------
// The run folder

/// The settings of the model and its prompts: with tuned prompts, their SHA-256s too (a run
/// without keeps the record it always had, so that its folder still resumes).
fn model_settings(model: &ModelArgs, forward: &ForwardArgs, tuned_prompts: &[PathBuf]) -> CliResult<Value> {
    let options = forward.options();
    let mut settings = record::model_identity(&model.model)?;
    settings["ensemble"] = json!(options.ensemble.unwrap_or(seggpt::Ensemble::Official).name());
    settings["embedding_type"] = json!(options.embedding_type.name());
    if !tuned_prompts.is_empty() {
        let hashes = tuned_prompts.iter().map(|p| record::sha256_file(p)).collect::<CliResult<Vec<_>>>()?;
        settings["tuned_prompts_sha256"] = json!(hashes);
    }
    Ok(settings)
}

/// Creates `out` with its `run.json`, or checks that the run it holds has the same settings.
fn open_run_folder(out: &Path, settings: &Value) -> CliResult<()> {
    let record_path = out.join("run.json");
    if let Some(record) = RunRecord::read(&record_path).map_err(|e| format!("{e}; use another --out"))? {
        if &record.settings != settings {
            return Err(format!(
                "{} holds a run with other settings ({}); use another --out, or remove the folder to start over",
                out.display(),
                record::differences(&record.settings, settings)
            ));
        }
        eprintln!("resuming the run in {}", out.display());
        return Ok(());
    }
    refuse_foreign_folder(out)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    RunRecord::new(settings.clone()).write(&record_path)
}

/// A run resumes from what its folder holds, so a folder without `run.json` must be new or
/// empty: files there were not written by a run of this tool with these settings, and counting
/// them would score whatever they are (the ground truth itself scores 100 %).
fn refuse_foreign_folder(out: &Path) -> CliResult<()> {
    if out.exists() && !out.is_dir() {
        return Err(format!("--out {} is a file; give a folder", out.display()));
    }
    let mut entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", out.display())),
    };
    if entries.next().is_some() {
        return Err(format!(
            "--out {} already holds files but no run.json, so no run of this tool wrote them and none \
             can count; give a new or empty folder",
            out.display()
        ));
    }
    Ok(())
}

fn write_json(path: &Path, value: &impl Serialize) -> CliResult<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// Progress over a run's units (episodes, frames): one updating line with a bar, the rate and
/// the time left on a terminal, a line every tenth of the work otherwise.
struct Progress {
    terminal: bool,
    unit: &'static str,
    total: usize,
    done: usize,
    start: Instant,
}

impl Progress {
    fn new(unit: &'static str, total: usize) -> Self {
        Self { terminal: std::io::stderr().is_terminal(), unit, total, done: 0, start: Instant::now() }
    }

    fn step(&mut self) {
        self.done += 1;
        let secs = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-9);
        let left = (self.total - self.done) as f64 / rate;
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let line = format!(
            "[{}{}] {}/{} {}, {rate:.2}/s, {} left",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total,
            self.unit,
            clock(left)
        );
        if self.terminal {
            eprint!("\r{line}\x1b[K{}", if self.done == self.total { "\n" } else { "" });
        } else if self.done == self.total
            || (self.done * 10 / self.total) > ((self.done - 1) * 10 / self.total)
        {
            eprintln!("{line}");
        }
    }
}

fn clock(secs: f64) -> String {
    let secs = secs.round() as u64;
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

// ---------------------------------------------------------------------------------------------
// Few-shot segmentation

/// One line of `results.jsonl`: the counts of one finished episode.
#[derive(Serialize, Deserialize)]
struct EpisodeResult {
    index: usize,
    class: String,
    query: String,
    areas: EpisodeAreas,
}

/// The episode list of a JSON file.
#[derive(Serialize, Deserialize)]
struct EpisodeList {
    episodes: Vec<Episode>,
}

/// Image files are JPEG or PNG by extension; in an FSS-1000 class folder each JPEG `<n>.jpg` has
/// its mask `<n>.png`.
const IMAGE_EXTENSIONS: [&str; 2] = ["jpg", "jpeg"];

/// What an `fss` run reads and records, decided and checked before anything is written.
struct FssPlan {
    tuned: Vec<TunedPrompt>,
    /// The folder the episodes' paths are relative to.
    base: PathBuf,
    episodes: Vec<Episode>,
    /// Pixels of each episode's query, to check the counts a resumed run reads back.
    query_pixels: Vec<u64>,
    settings: Value,
}

/// How the work of a run ended.
enum Worked<T> {
    All(T),
    Stopped(Finished),
}

/// `eval fss`: plan and checks, the run folder, the episodes not yet run, the report.
fn fss(args: &FssArgs) -> CliResult<Finished> {
    let plan = plan_fss(args)?;
    open_run_folder(&args.out, &plan.settings)?;
    let episodes_path = args.out.join("episodes.json");
    if !episodes_path.exists() {
        write_json(&episodes_path, &EpisodeList { episodes: plan.episodes.clone() })?;
    }
    match run_episodes(args, &plan)? {
        Worked::All(done) => report_fss(args, &plan, &done),
        Worked::Stopped(finished) => Ok(finished),
    }
}

fn plan_fss(args: &FssArgs) -> CliResult<FssPlan> {
    if let Some(data) = &args.data {
        record::refuse_output_inside(
            &args.out,
            "--out",
            data,
            "--data",
            "its folder would be read as a class of the data by the run that resumes it",
        )?;
    }
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    if args.shots == 0 && tuned.is_empty() {
        return Err("--shots 0 leaves an episode without a prompt; give a --tuned-prompt, or shots".into());
    }
    let (base, episodes, source) = fss_episodes(args, &tuned)?;
    let query_pixels = check_episode_files(&base, &episodes)?;
    let settings = fss_settings(args, &episodes, source)?;
    Ok(FssPlan { tuned, base, episodes, query_pixels, settings })
}

/// The episodes (drawn from --data or read from --episodes), the folder their paths are relative
/// to, and where they came from for the record.
fn fss_episodes(args: &FssArgs, tuned: &[TunedPrompt]) -> CliResult<(PathBuf, Vec<Episode>, Value)> {
    match (&args.data, &args.episodes) {
        (Some(data), _) => {
            let episodes =
                draw_fss(data, args.classes.as_deref(), args.shots, args.episodes_per_class, args.seed)?;
            Ok((data.clone(), episodes, json!({ "data": absolute(data) })))
        }
        (None, Some(file)) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let list: EpisodeList = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not an episode list ({e})", file.display()))?;
            if list.episodes.is_empty() {
                return Err(format!("{} holds no episodes", file.display()));
            }
            if let Some(e) = list.episodes.iter().find(|e| e.supports.is_empty() && tuned.is_empty()) {
                return Err(format!(
                    "{}: the episode of {} has no support (and there is no --tuned-prompt)",
                    file.display(),
                    e.query.image
                ));
            }
            let base =
                file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            Ok((base, list.episodes, json!({ "episodes": absolute(file) })))
        }
        (None, None) => Err("give --data DIR or --episodes FILE".into()),
    }
}

/// Checks every file of every episode before the model loads (present, a whole image, a mask of
/// its image's size) and returns each query's pixel count.
fn check_episode_files(base: &Path, episodes: &[Episode]) -> CliResult<Vec<u64>> {
    let mut sizes: HashMap<&Sample, (u32, u32)> = HashMap::new();
    for episode in episodes {
        for sample in std::iter::once(&episode.query).chain(&episode.supports) {
            if !sizes.contains_key(sample) {
                let size = check_pair(&base.join(&sample.image), &base.join(&sample.mask))?;
                sizes.insert(sample, size);
            }
        }
    }
    Ok(episodes
        .iter()
        .map(|e| {
            let (w, h) = sizes[&e.query];
            u64::from(w) * u64::from(h)
        })
        .collect())
}

/// What makes two `fss` runs the same: the model, the protocol and the episodes themselves.
fn fss_settings(args: &FssArgs, episodes: &[Episode], source: Value) -> CliResult<Value> {
    let episodes_text =
        serde_json::to_string(&EpisodeList { episodes: episodes.to_vec() }).map_err(|e| e.to_string())?;
    let mut settings = model_settings(&args.model, &args.forward, &args.tuned_prompt)?;
    let fields = settings.as_object_mut().expect("model settings are an object");
    fields.insert("benchmark".into(), json!("fss"));
    fields.insert("shots".into(), json!(args.shots));
    fields.insert("episodes_per_class".into(), json!(args.data.as_ref().map(|_| args.episodes_per_class)));
    fields.insert("seed".into(), json!(args.data.as_ref().map(|_| args.seed)));
    fields.insert(
        "episodes_fnv1a64".into(),
        json!(format!("{:016x}", seggpt::fnv::fnv1a64(episodes_text.as_bytes()))),
    );
    fields.extend(source.as_object().cloned().unwrap_or_default());
    Ok(settings)
}

/// Runs the episodes that `results.jsonl` does not hold yet, appending each one's counts as it
/// finishes; Ctrl-C stops after the current episode.
fn run_episodes(args: &FssArgs, plan: &FssPlan) -> CliResult<Worked<BTreeMap<usize, EpisodeResult>>> {
    let results_path = args.out.join("results.jsonl");
    let mut done = read_results(&results_path, &plan.episodes, &plan.query_pixels)?;
    let todo: Vec<usize> = (0..plan.episodes.len()).filter(|i| !done.contains_key(i)).collect();
    if todo.is_empty() {
        return Ok(Worked::All(done));
    }
    interrupt::stop_after_current_target()?;
    let (model, device) = load_model(&args.model)?;
    let mut results = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)
        .map_err(|e| format!("cannot write {}: {e}", results_path.display()))?;
    let mut progress = Progress::new("episodes", todo.len());
    for &index in &todo {
        if interrupt::requested() {
            return Ok(Worked::Stopped(Finished::Resumable { done: done.len(), total: plan.episodes.len() }));
        }
        let episode = &plan.episodes[index];
        let areas = run_episode(&model, &device, &plan.base, episode, &plan.tuned, &args.forward)?;
        let line =
            EpisodeResult { index, class: episode.class.clone(), query: episode.query.image.clone(), areas };
        let mut text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
        text.push('\n');
        results
            .write_all(text.as_bytes())
            .and_then(|()| results.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", results_path.display()))?;
        done.insert(index, line);
        progress.step();
    }
    Ok(Worked::All(done))
}

/// The table on standard output and report.json.
fn report_fss(args: &FssArgs, plan: &FssPlan, done: &BTreeMap<usize, EpisodeResult>) -> CliResult<Finished> {
    let mut scores = FewShotScores::default();
    for result in done.values() {
        scores.add(&result.class, &result.areas);
    }
    let percent = |v: Option<f64>| v.map(|v| v * 100.0);
    let classes: Vec<Value> = scores
        .class_ious()
        .iter()
        .map(|(class, iou, n)| json!({ "class": class, "iou": iou * 100.0, "episodes": n }))
        .collect();
    println!("{:<40} {:>8} {:>8}", "class", "episodes", "IoU %");
    for (class, iou, n) in scores.class_ious() {
        println!("{class:<40} {n:>8} {:>8.2}", iou * 100.0);
    }
    let (miou, fb_iou) = (percent(scores.miou()), percent(scores.fb_iou()));
    println!(
        "mIoU {:.2} %, FB-IoU {:.2} % over {} classes, {} episodes",
        miou.unwrap_or(f64::NAN),
        fb_iou.unwrap_or(f64::NAN),
        classes.len(),
        scores.episodes()
    );
    let report = json!({
        "benchmark": "fss",
        "units": "percent",
        "miou": miou,
        "fb_iou": fb_iou,
        "classes": classes,
        "episodes": scores.episodes(),
        "settings": plan.settings,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    write_json(&args.out.join("report.json"), &report)?;
    Ok(Finished::All)
}

/// Checks an image and its mask without decoding their pixels: both whole images of one size,
/// which it returns.
fn check_pair(image: &Path, mask: &Path) -> CliResult<(u32, u32)> {
    let size = |path: &Path| -> CliResult<(u32, u32)> {
        seggpt::pipeline::check_image(&read_image_file(path)?, &named(path)).map_err(|e| e.to_string())
    };
    let ((iw, ih), (mw, mh)) = (size(image)?, size(mask)?);
    if (iw, ih) != (mw, mh) {
        return Err(format!(
            "{} is {mw}x{mh} pixels but its image {} is {iw}x{ih}; a mask must be its image's size",
            mask.display(),
            image.display()
        ));
    }
    Ok((iw, ih))
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// Episodes of an FSS-1000 folder: classes are the sub-folders (or the `classes` file's names),
/// in name order; samples are each class's JPEGs with their PNG masks, in name order.
fn draw_fss(
    data: &Path,
    classes_file: Option<&Path>,
    shots: usize,
    per_class: usize,
    seed: u64,
) -> CliResult<Vec<Episode>> {
    let cannot = |path: &Path, e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let classes: Vec<String> = match classes_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| cannot(file, e))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(data).map_err(|e| cannot(data, e))? {
                let entry = entry.map_err(|e| cannot(data, e))?;
                if entry.path().is_dir() {
                    let name = entry.file_name();
                    names.push(
                        name.to_str()
                            .ok_or_else(|| format!("{}: not a UTF-8 name", entry.path().display()))?
                            .to_owned(),
                    );
                }
            }
            names.sort();
            names
        }
    };
    if classes.is_empty() {
        return Err(format!("{} holds no class folders", data.display()));
    }
    let mut episodes = Vec::new();
    for class in &classes {
        let folder = data.join(class);
        let mut samples = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(|e| cannot(&folder, e))? {
            let path = entry.map_err(|e| cannot(&folder, e))?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|ext| IMAGE_EXTENSIONS.iter().any(|i| i.eq_ignore_ascii_case(ext)));
            if !is_image {
                continue;
            }
            let mask = path.with_extension("png");
            if !mask.is_file() {
                return Err(format!("{} has no mask {}", path.display(), mask.display()));
            }
            let relative =
                |p: &Path| format!("{class}/{}", p.file_name().unwrap_or_default().to_string_lossy());
            samples.push(Sample { image: relative(&path), mask: relative(&mask) });
        }
        samples.sort_by_key(|a| natural_key(&a.image));
        episodes.extend(
            draw_class(class, &samples, shots, per_class, seed)
                .map_err(|e| format!("{}: {e}", data.display()))?,
        );
    }
    Ok(episodes)
}

/// FSS-1000 numbers its images 1..10: `2.jpg` sorts before `10.jpg`.
fn natural_key(name: &str) -> (String, u64, String) {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let digits_at = stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let number = stem[digits_at..].parse().unwrap_or(0);
    (stem[..digits_at].to_owned(), number, name.to_owned())
}

/// The finished episodes of `results.jsonl`, by index. A last line cut short (the run stopped
/// while writing it) is dropped and the file rewritten without it; anything else that does not
/// match the episodes, or counts no episode can give (a hand-edited line), is an error naming
/// the line: the scores would silently be wrong.
fn read_results(
    path: &Path,
    episodes: &[Episode],
    query_pixels: &[u64],
) -> CliResult<BTreeMap<usize, EpisodeResult>> {
    let mut done = BTreeMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut cut_short = false;
    for (n, line) in lines.iter().enumerate() {
        let result: EpisodeResult = match serde_json::from_str(line) {
            Ok(result) => result,
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => {
                cut_short = true;
                break;
            }
            Err(e) => {
                return Err(format!(
                    "{} line {}: {e}; remove the folder to start over",
                    path.display(),
                    n + 1
                ));
            }
        };
        let bad_line = |why: String| {
            format!("{} line {}: {why}; remove the folder to start over", path.display(), n + 1)
        };
        match episodes.get(result.index) {
            Some(e) if e.query.image == result.query && e.class == result.class => {}
            _ => return Err(bad_line("it does not belong to these episodes".into())),
        }
        result.areas.check(query_pixels[result.index]).map_err(|e| bad_line(e.to_string()))?;
        if done.contains_key(&result.index) {
            return Err(bad_line(format!("episode {} is there twice", result.index)));
        }
        done.insert(result.index, result);
    }
    if cut_short {
        let mut kept = String::new();
        for result in done.values() {
            kept.push_str(&serde_json::to_string(result).map_err(|e| e.to_string())?);
            kept.push('\n');
        }
        write_atomically(path, kept.as_bytes())?;
    }
    Ok(done)
}

/// A mask read for scoring: its size, foreground pixels and pixels left out of the score.
struct MaskPixels {
    width: u32,
    height: u32,
    foreground: Vec<bool>,
    ignore: Option<Vec<bool>>,
}

/// A mask's foreground (and ignored pixels): with `label`, the pixels of that value (class-index
/// masks); without, grey level >= 128 (Pillow's `convert("L")`, then HSNet's threshold).
fn foreground(bytes: &[u8], name: &str, episode: &Episode) -> CliResult<MaskPixels> {
    let (width, height, values) = match episode.label {
        Some(_) => {
            let map = decode_class_map(bytes, name).map_err(|e| e.to_string())?;
            (map.width(), map.height(), map.as_raw().to_vec())
        }
        None => {
            let rgb = decode_rgb(bytes, name).map_err(|e| e.to_string())?;
            (rgb.width(), rgb.height(), rgb.as_raw().chunks_exact(3).map(luma).collect())
        }
    };
    let foreground = match episode.label {
        Some(label) => values.iter().map(|&v| v == label).collect(),
        None => values.iter().map(|&v| v >= 128).collect(),
    };
    let ignore = episode.ignore.map(|i| values.iter().map(|&v| v == i).collect());
    Ok(MaskPixels { width, height, foreground, ignore })
}

/// Pillow's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded.
fn luma(p: &[u8]) -> u8 {
    ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8
}

/// An image and its mask as a prompt (white foreground on black), or as the query's truth.
fn load_sample(base: &Path, sample: &Sample, episode: &Episode) -> CliResult<(RgbImage, MaskPixels)> {
    let (image_path, mask_path) = (base.join(&sample.image), base.join(&sample.mask));
    let image = decode_rgb(&read_image_file(&image_path)?, &named(&image_path)).map_err(|e| e.to_string())?;
    let mask = foreground(&read_image_file(&mask_path)?, &named(&mask_path), episode)?;
    if (mask.width, mask.height) != (image.width(), image.height()) {
        return Err(format!(
            "{} is {}x{} pixels but its image {} is {}x{}; a mask must be its image's size",
            mask_path.display(),
            mask.width,
            mask.height,
            image_path.display(),
            image.width(),
            image.height()
        ));
    }
    Ok((image, mask))
}

fn run_episode(
    model: &SegGpt,
    device: &Device,
    base: &Path,
    episode: &Episode,
    tuned: &[TunedPrompt],
    forward: &ForwardArgs,
) -> CliResult<EpisodeAreas> {
    let mut prompts = Vec::with_capacity(episode.supports.len());
    for support in &episode.supports {
        let (image, mask) = load_sample(base, support, episode)?;
        let map = ClassMap::new(
            image.width(),
            image.height(),
            mask.foreground.iter().map(|&f| u8::from(f)).collect(),
        )
        .map_err(|e| e.to_string())?;
        // One class: palette colour 1 of 1 is white (docs/MODEL.md §3.7).
        prompts.push(Prompt { image, mask: PromptMask::Classes { map, num_labels: 1 } });
    }
    let (query, truth) = load_sample(base, &episode.query, episode)?;
    let segmenter = Segmenter::with_tuned(model, device, &prompts, tuned, forward.options())
        .map_err(|e| e.to_string())?;
    let result = segmenter
        .run(&Target { image: query }, Some(1), &mut |_, _| {})
        .map_err(|e| format!("{}: {e}", episode.query.image))?;
    let classes = result.classes.ok_or("the segmenter made no class map")?;
    let pred: Vec<bool> = classes.as_raw().iter().map(|&c| c == 1).collect();
    EpisodeAreas::measure(&pred, &truth.foreground, truth.ignore.as_deref()).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Video object segmentation

/// One DAVIS sequence: its frames and their annotations, in frame order.
struct Sequence {
    name: String,
    frames: Vec<PathBuf>,
    annotations: Vec<PathBuf>,
}

/// What a `vos` run reads and records, decided and checked before anything is written.
struct VosPlan {
    tuned: Vec<TunedPrompt>,
    sequences: Vec<Sequence>,
    settings: Value,
}

/// `eval vos`: plan and checks, the run folder, the sequences not yet predicted, the scores.
fn vos(args: &VosArgs) -> CliResult<Finished> {
    let plan = plan_vos(args)?;
    open_run_folder(&args.out, &plan.settings)?;
    match predict_sequences(args, &plan)? {
        Worked::All(()) => report_vos(args, &plan),
        Worked::Stopped(finished) => Ok(finished),
    }
}

fn plan_vos(args: &VosArgs) -> CliResult<VosPlan> {
    record::refuse_output_inside(
        &args.out,
        "--out",
        &args.davis,
        "--davis",
        "predictions must not be written among the dataset's frames and annotations",
    )?;
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    let sequences = davis_sequences(args)?;
    for sequence in &sequences {
        check_sequence(sequence)?;
    }
    let mut settings = model_settings(&args.model, &args.forward, &args.tuned_prompt)?;
    let fields = settings.as_object_mut().expect("model settings are an object");
    fields.insert("benchmark".into(), json!("vos"));
    fields.insert("davis".into(), json!(absolute(&args.davis)));
    fields.insert("split".into(), json!(args.split));
    fields.insert("resolution".into(), json!(args.resolution));
    fields.insert("num_frames".into(), json!(args.num_frames));
    fields.insert("propagate".into(), json!(args.propagate.name()));
    Ok(VosPlan { tuned, sequences, settings })
}

/// The sequence names of the split list: each one folder name, listed once.
fn sequence_names(list: &Path) -> CliResult<Vec<String>> {
    let text = std::fs::read_to_string(list).map_err(|e| {
        format!("cannot read the sequence list {}: {e}; --davis must be a DAVIS-2017 root", list.display())
    })?;
    let mut names: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        // A name is joined to the frames', annotations' and predictions' folders.
        check_folder_name(name).map_err(|e| format!("{} line {}: {e}", list.display(), n + 1))?;
        if names.iter().any(|seen| seen == name) {
            return Err(format!("{} line {}: `{name}` is listed twice", list.display(), n + 1));
        }
        names.push(name.to_owned());
    }
    if names.is_empty() {
        return Err(format!("{} lists no sequences", list.display()));
    }
    Ok(names)
}

fn davis_sequences(args: &VosArgs) -> CliResult<Vec<Sequence>> {
    let list = args.davis.join("ImageSets/2017").join(format!("{}.txt", args.split));
    let mut sequences = Vec::new();
    for name in sequence_names(&list)? {
        let frames_dir = args.davis.join("JPEGImages").join(&args.resolution).join(&name);
        let annotations_dir = args.davis.join("Annotations").join(&args.resolution).join(&name);
        let mut frames = Vec::new();
        let entries = std::fs::read_dir(&frames_dir)
            .map_err(|e| format!("cannot read the frames of `{name}` in {}: {e}", frames_dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot read {}: {e}", frames_dir.display()))?.path();
            if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("jpg")) {
                frames.push(path);
            }
        }
        frames.sort();
        if frames.len() < 3 {
            return Err(format!(
                "{}: {} frame(s); the DAVIS protocol scores the frames between the first and the last, so \
                 a sequence needs at least 3",
                frames_dir.display(),
                frames.len()
            ));
        }
        let annotations = frames
            .iter()
            .map(|f| {
                let a = annotations_dir.join(f.with_extension("png").file_name().unwrap_or_default());
                if a.is_file() { Ok(a) } else { Err(format!("the annotation {} is missing", a.display())) }
            })
            .collect::<CliResult<Vec<_>>>()?;
        sequences.push(Sequence { name, frames, annotations });
    }
    Ok(sequences)
}

/// Checks a sequence before the model loads, as its scoring will read it: every frame a whole
/// image, every annotation a class map of its frame's size, the first one marking an object.
fn check_sequence(sequence: &Sequence) -> CliResult<()> {
    for (i, (frame, annotation)) in sequence.frames.iter().zip(&sequence.annotations).enumerate() {
        let (width, height) = seggpt::pipeline::check_image(&read_image_file(frame)?, &named(frame))
            .map_err(|e| e.to_string())?;
        let labels = read_labels(annotation)?;
        if (labels.width(), labels.height()) != (width, height) {
            return Err(format!(
                "{} is {}x{} pixels but its image {} is {width}x{height}; a mask must be its image's size",
                annotation.display(),
                labels.width(),
                labels.height(),
                frame.display()
            ));
        }
        if i == 0 && object_count(&view(std::slice::from_ref(&labels))[0]) == 0 {
            return Err(format!("{}: the first annotation marks no object", annotation.display()));
        }
    }
    Ok(())
}

fn read_labels(path: &Path) -> CliResult<ClassMap> {
    decode_class_map(&read_image_file(path)?, &named(path)).map_err(|e| e.to_string())
}

fn prediction_path(out: &Path, sequence: &Sequence, frame: &Path) -> PathBuf {
    out.join(&sequence.name).join(frame.with_extension("png").file_name().unwrap_or_default())
}

/// Predicts the sequences whose predictions are not all there; Ctrl-C stops after the current
/// frame. A sequence is done when every one of its predictions is there (each is written whole);
/// propagation carries state from frame to frame, so an unfinished one runs again from its start.
fn predict_sequences(args: &VosArgs, plan: &VosPlan) -> CliResult<Worked<()>> {
    let todo: Vec<&Sequence> = plan
        .sequences
        .iter()
        .filter(|s| !s.frames.iter().all(|f| prediction_path(&args.out, s, f).is_file()))
        .collect();
    if todo.is_empty() {
        return Ok(Worked::All(()));
    }
    interrupt::stop_after_current_target()?;
    let (model, device) = load_model(&args.model)?;
    let total_frames = todo.iter().map(|s| s.frames.len() - 1).sum();
    let mut progress = Progress::new("frames", total_frames);
    for (done, sequence) in todo.iter().enumerate() {
        if run_sequence(&model, &device, args, sequence, &plan.tuned, &mut progress)? == Ended::Stopped {
            let finished = plan.sequences.len() - todo.len() + done;
            return Ok(Worked::Stopped(Finished::Resumable { done: finished, total: plan.sequences.len() }));
        }
    }
    Ok(Worked::All(()))
}

/// How a sequence's propagation ended.
#[derive(PartialEq, Eq)]
enum Ended {
    AllFrames,
    /// Ctrl-C: the frames so far are written; the sequence runs again from its start on resume.
    Stopped,
}

/// Propagates the first annotation through the sequence and writes every prediction (the first
/// frame's is its annotation, as the semi-supervised protocol gives it); stops after the current
/// frame on Ctrl-C.
fn run_sequence(
    model: &SegGpt,
    device: &Device,
    args: &VosArgs,
    sequence: &Sequence,
    tuned: &[TunedPrompt],
    progress: &mut Progress,
) -> CliResult<Ended> {
    if interrupt::requested() {
        return Ok(Ended::Stopped);
    }
    let first = decode_rgb(&read_image_file(&sequence.frames[0])?, &named(&sequence.frames[0]))
        .map_err(|e| e.to_string())?;
    let first_labels = read_labels(&sequence.annotations[0])?;
    let objects = object_count(&view(std::slice::from_ref(&first_labels))[0]);
    // Void pixels are background in the prompt.
    let prompt_map = ClassMap::new(
        first_labels.width(),
        first_labels.height(),
        first_labels.as_raw().iter().map(|&v| if v == VOID_LABEL { 0 } else { v }).collect(),
    )
    .map_err(|e| e.to_string())?;
    let options = VideoOptions {
        num_frames: args.num_frames,
        propagate: args.propagate,
        forward: args.forward.options(),
        num_labels: Some(objects),
    };
    let prompt =
        Prompt { image: first, mask: PromptMask::Classes { map: prompt_map.clone(), num_labels: objects } };
    let mut propagator = Propagator::with_tuned(model, device, &[prompt], tuned, options)
        .map_err(|e| format!("{}: {e}", sequence.name))?;
    let folder = args.out.join(&sequence.name);
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let write = |frame: &Path, map: &ClassMap| -> CliResult<()> {
        write_atomically(
            &prediction_path(&args.out, sequence, frame),
            &encode_palette_png(map).map_err(|e| e.to_string())?,
        )
    };
    write(&sequence.frames[0], &prompt_map)?;
    for frame_path in &sequence.frames[1..] {
        if interrupt::requested() {
            return Ok(Ended::Stopped);
        }
        let frame =
            decode_rgb(&read_image_file(frame_path)?, &named(frame_path)).map_err(|e| e.to_string())?;
        let result =
            propagator.run(&frame, &mut |_, _| {}).map_err(|e| format!("{}: {e}", frame_path.display()))?;
        let classes = result.classes.ok_or("the propagator made no class map")?;
        write(frame_path, &classes)?;
        progress.step();
    }
    Ok(Ended::AllFrames)
}

/// Scores every sequence's predictions: the table on standard output and report.json.
fn report_vos(args: &VosArgs, plan: &VosPlan) -> CliResult<Finished> {
    let mut rows = Vec::new();
    let mut all: Vec<ObjectScores> = Vec::new();
    println!("{:<24} {:>6} {:>8} {:>8} {:>8}", "sequence", "object", "J %", "F %", "J&F %");
    for sequence in &plan.sequences {
        let scores = score_predictions(&args.out, sequence)?;
        for (i, object) in scores.iter().enumerate() {
            let jf = (object.j.mean + object.f.mean) / 2.0;
            println!(
                "{:<24} {:>6} {:>8.2} {:>8.2} {:>8.2}",
                sequence.name,
                i + 1,
                object.j.mean * 100.0,
                object.f.mean * 100.0,
                jf * 100.0
            );
            rows.push(json!({
                "sequence": sequence.name,
                "object": i + 1,
                "j": percent_stats(&object.j),
                "f": percent_stats(&object.f),
                "jf_mean": jf * 100.0,
            }));
        }
        all.extend(scores);
    }
    let summary = Summary::of(&all).ok_or("no object was scored")?;
    println!(
        "J&F-Mean {:.2} %: J-Mean {:.2}, J-Recall {:.2}, J-Decay {:.2}; F-Mean {:.2}, F-Recall {:.2}, F-Decay {:.2} \
         ({} objects in {} sequences)",
        summary.jf_mean * 100.0,
        summary.j.mean * 100.0,
        summary.j.recall * 100.0,
        summary.j.decay * 100.0,
        summary.f.mean * 100.0,
        summary.f.recall * 100.0,
        summary.f.decay * 100.0,
        all.len(),
        plan.sequences.len()
    );
    let report = json!({
        "benchmark": "vos",
        "units": "percent",
        "jf_mean": summary.jf_mean * 100.0,
        "j": percent_stats(&summary.j),
        "f": percent_stats(&summary.f),
        "objects": rows,
        "settings": plan.settings,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    write_json(&args.out.join("report.json"), &report)?;
    Ok(Finished::All)
}

/// J and F of every object of one sequence, from its annotations and the predictions in `out`.
fn score_predictions(out: &Path, sequence: &Sequence) -> CliResult<Vec<ObjectScores>> {
    let truth = sequence.annotations.iter().map(|p| read_labels(p)).collect::<CliResult<Vec<_>>>()?;
    let pred = sequence
        .frames
        .iter()
        .map(|f| read_labels(&prediction_path(out, sequence, f)))
        .collect::<CliResult<Vec<_>>>()?;
    for (f, (t, p)) in sequence.annotations.iter().zip(&pred).enumerate() {
        let t_map = &truth[f];
        if (t_map.width(), t_map.height()) != (p.width(), p.height()) {
            return Err(format!(
                "{} is {}x{} pixels but the prediction {} is {}x{}",
                t.display(),
                t_map.width(),
                t_map.height(),
                prediction_path(out, sequence, &sequence.frames[f]).display(),
                p.width(),
                p.height()
            ));
        }
    }
    score_sequence(&view(&truth), &view(&pred)).map_err(|e| format!("{}: {e}", sequence.name))
}

fn percent_stats(s: &seggpt::eval::davis::Statistics) -> Value {
    // NaN (decay of fewer than 4 frames) is not JSON: written as null.
    let finite = |v: f64| if v.is_finite() { json!(v * 100.0) } else { Value::Null };
    json!({ "mean": finite(s.mean), "recall": finite(s.recall), "decay": finite(s.decay) })
}

fn view(maps: &[ClassMap]) -> Vec<Labels<'_>> {
    maps.iter()
        .map(|m| Labels { width: m.width() as usize, height: m.height() as usize, ids: m.as_raw() })
        .collect()
}
