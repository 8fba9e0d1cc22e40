//! `seggpt eval fss` and `seggpt eval vos`: the paper's few-shot and video protocols, scored as the
//! literature scores them (`seggpt::eval`, docs/MODEL.md §15).
//!
//! Each run owns an output folder: `run.json` (the settings, the command line, the model's SHA-256),
//! the work done so far (`results.jsonl` of episode counts for `fss`, the DAVIS-format predictions
//! for `vos`), and at the end `report.json` with the scores; the table goes to standard output. A
//! run started again with the same settings resumes from what the folder holds; other settings in
//! the same folder are refused, so results of two protocols never mix.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use seggpt::SegGpt;
use seggpt::eval::davis::{Labels, ObjectScores, Summary, VOID_LABEL, object_count, score_sequence};
use seggpt::eval::episodes::{Episode, Sample, draw_class};
use seggpt::eval::fewshot::{EpisodeAreas, FewShotScores};
use seggpt::pipeline::{ClassMap, RgbImage, decode_class_map, decode_rgb, encode_palette_png};
use seggpt::segment::{Prompt, PromptMask, Segmenter, Target, TunedPrompt};
use seggpt::video::{DEFAULT_NUM_FRAMES, Propagate, Propagator, VideoOptions};

use crate::cli::interrupt;
use crate::cli::tune::read_tuned_prompts;
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
    /// Episodes drawn per class.
    #[arg(long, default_value_t = 10, value_parser = parse_positive)]
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
    #[arg(long, default_value = "val")]
    split: String,
    /// The resolution folder under JPEGImages/ and Annotations/.
    #[arg(long, default_value = "480p")]
    resolution: String,
    /// K, previous frames with their predicted masks added to every batch.
    #[arg(long, default_value_t = DEFAULT_NUM_FRAMES)]
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

fn parse_positive(text: &str) -> Result<usize, String> {
    crate::parse_count(text, 1, usize::MAX, "")
}

pub fn run(args: &EvalArgs) -> CliResult<Finished> {
    match &args.benchmark {
        Benchmark::Fss(args) => fss(args),
        Benchmark::Vos(args) => vos(args),
    }
}

// ---------------------------------------------------------------------------------------------
// The run folder

/// `run.json`: what makes two runs the same (`settings`) and what is only recorded.
#[derive(Serialize, Deserialize)]
struct RunRecord {
    settings: Value,
    command: Vec<String>,
}

/// The SHA-256 of a file, in hex.
fn sha256_file(path: &Path) -> CliResult<String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(cannot)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The settings of the model and its prompts: with tuned prompts, their SHA-256s too (a run
/// without keeps the record it always had, so that its folder still resumes).
fn model_settings(model: &ModelArgs, forward: &ForwardArgs, tuned_prompts: &[PathBuf]) -> CliResult<Value> {
    let (weights, config) = seggpt::weights::model_paths(&model.model);
    let config_sha256 = if config.exists() { Some(sha256_file(&config)?) } else { None };
    let options = forward.options();
    let mut settings = json!({
        "model_sha256": sha256_file(&weights)?,
        "config_sha256": config_sha256,
        "ensemble": options.ensemble.unwrap_or(seggpt::Ensemble::Official).name(),
        "embedding_type": options.embedding_type.name(),
    });
    if !tuned_prompts.is_empty() {
        let hashes = tuned_prompts.iter().map(|p| sha256_file(p)).collect::<CliResult<Vec<_>>>()?;
        settings["tuned_prompts_sha256"] = json!(hashes);
    }
    Ok(settings)
}

/// Creates `out` with its `run.json`, or checks that the run it holds has the same settings.
fn open_run_folder(out: &Path, settings: &Value) -> CliResult<()> {
    let record_path = out.join("run.json");
    if record_path.exists() {
        let text = std::fs::read_to_string(&record_path)
            .map_err(|e| format!("cannot read {}: {e}", record_path.display()))?;
        let record: RunRecord = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a run record ({e}); use another --out", record_path.display()))?;
        if &record.settings != settings {
            return Err(format!(
                "{} holds a run with other settings ({}); use another --out, or remove the folder to start over",
                out.display(),
                differences(&record.settings, settings)
            ));
        }
        eprintln!("resuming the run in {}", out.display());
        return Ok(());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let record = RunRecord { settings: settings.clone(), command: std::env::args().collect() };
    write_json(&record_path, &record)
}

/// The settings that differ, as `name: old -> new`.
fn differences(old: &Value, new: &Value) -> String {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return "format".into() };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            format!("{k}: {} -> {}", old.get(k).unwrap_or(&Value::Null), new.get(k).unwrap_or(&Value::Null))
        })
        .collect::<Vec<_>>()
        .join(", ")
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

fn fss(args: &FssArgs) -> CliResult<Finished> {
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    if args.shots == 0 && tuned.is_empty() {
        return Err("--shots 0 leaves an episode without a prompt; give a --tuned-prompt, or shots".into());
    }
    let (base, episodes, source) = match (&args.data, &args.episodes) {
        (Some(data), _) => {
            let episodes =
                draw_fss(data, args.classes.as_deref(), args.shots, args.episodes_per_class, args.seed)?;
            (data.clone(), episodes, json!({ "data": absolute(data) }))
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
            (base, list.episodes, json!({ "episodes": absolute(file) }))
        }
        (None, None) => return Err("give --data DIR or --episodes FILE".into()),
    };
    // Every file of every episode is checked before the model loads: present, a whole image.
    let mut seen = std::collections::HashSet::new();
    for episode in &episodes {
        for sample in std::iter::once(&episode.query).chain(&episode.supports) {
            if seen.insert(sample.clone()) {
                check_pair(&base.join(&sample.image), &base.join(&sample.mask))?;
            }
        }
    }
    let episodes_text =
        serde_json::to_string(&EpisodeList { episodes: episodes.clone() }).map_err(|e| e.to_string())?;
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
    open_run_folder(&args.out, &settings)?;
    let episodes_path = args.out.join("episodes.json");
    if !episodes_path.exists() {
        write_json(&episodes_path, &EpisodeList { episodes: episodes.clone() })?;
    }

    let results_path = args.out.join("results.jsonl");
    let mut done = read_results(&results_path, &episodes)?;
    let todo: Vec<usize> = (0..episodes.len()).filter(|i| !done.contains_key(i)).collect();
    if !todo.is_empty() {
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
                return Ok(Finished::Resumable { done: done.len(), total: episodes.len() });
            }
            let episode = &episodes[index];
            let areas = run_episode(&model, &device, &base, episode, &tuned, &args.forward)?;
            let line = EpisodeResult {
                index,
                class: episode.class.clone(),
                query: episode.query.image.clone(),
                areas,
            };
            let mut text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
            text.push('\n');
            results
                .write_all(text.as_bytes())
                .and_then(|()| results.sync_data())
                .map_err(|e| format!("cannot write {}: {e}", results_path.display()))?;
            done.insert(index, line);
            progress.step();
        }
    }

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
        "settings": settings,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    write_json(&args.out.join("report.json"), &report)?;
    Ok(Finished::All)
}

/// Checks an image and its mask without decoding their pixels: both whole images of one size.
fn check_pair(image: &Path, mask: &Path) -> CliResult<()> {
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
    Ok(())
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
/// match the episodes is an error.
fn read_results(path: &Path, episodes: &[Episode]) -> CliResult<BTreeMap<usize, EpisodeResult>> {
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
        match episodes.get(result.index) {
            Some(e) if e.query.image == result.query && e.class == result.class => {}
            _ => {
                return Err(format!(
                    "{} line {} does not belong to these episodes; remove the folder to start over",
                    path.display(),
                    n + 1
                ));
            }
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

fn davis_sequences(args: &VosArgs) -> CliResult<Vec<Sequence>> {
    let list = args.davis.join("ImageSets/2017").join(format!("{}.txt", args.split));
    let text = std::fs::read_to_string(&list).map_err(|e| {
        format!("cannot read the sequence list {}: {e}; --davis must be a DAVIS-2017 root", list.display())
    })?;
    let names: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if names.is_empty() {
        return Err(format!("{} lists no sequences", list.display()));
    }
    let mut sequences = Vec::new();
    for name in names {
        let frames_dir = args.davis.join("JPEGImages").join(&args.resolution).join(name);
        let annotations_dir = args.davis.join("Annotations").join(&args.resolution).join(name);
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
        sequences.push(Sequence { name: name.to_owned(), frames, annotations });
    }
    Ok(sequences)
}

fn read_labels(path: &Path) -> CliResult<ClassMap> {
    decode_class_map(&read_image_file(path)?, &named(path)).map_err(|e| e.to_string())
}

fn prediction_path(out: &Path, sequence: &Sequence, frame: &Path) -> PathBuf {
    out.join(&sequence.name).join(frame.with_extension("png").file_name().unwrap_or_default())
}

fn vos(args: &VosArgs) -> CliResult<Finished> {
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    let sequences = davis_sequences(args)?;
    // Cheap checks of every file before the model loads.
    for sequence in &sequences {
        for (frame, annotation) in sequence.frames.iter().zip(&sequence.annotations) {
            check_pair(frame, annotation)?;
        }
    }
    let mut settings = model_settings(&args.model, &args.forward, &args.tuned_prompt)?;
    let fields = settings.as_object_mut().expect("model settings are an object");
    fields.insert("benchmark".into(), json!("vos"));
    fields.insert("davis".into(), json!(absolute(&args.davis)));
    fields.insert("split".into(), json!(args.split));
    fields.insert("resolution".into(), json!(args.resolution));
    fields.insert("num_frames".into(), json!(args.num_frames));
    fields.insert("propagate".into(), json!(args.propagate.name()));
    open_run_folder(&args.out, &settings)?;

    // A sequence is done when every one of its predictions is there (each is written whole);
    // propagation carries state from frame to frame, so an unfinished one runs again from its start.
    let todo: Vec<&Sequence> = sequences
        .iter()
        .filter(|s| !s.frames.iter().all(|f| prediction_path(&args.out, s, f).is_file()))
        .collect();
    if !todo.is_empty() {
        interrupt::stop_after_current_target()?;
        let (model, device) = load_model(&args.model)?;
        let total_frames = todo.iter().map(|s| s.frames.len() - 1).sum();
        let mut progress = Progress::new("frames", total_frames);
        for (done, sequence) in todo.iter().enumerate() {
            if interrupt::requested() {
                let finished = sequences.len() - todo.len() + done;
                return Ok(Finished::Resumable { done: finished, total: sequences.len() });
            }
            run_sequence(&model, &device, args, sequence, &tuned, &mut progress)?;
        }
    }

    let mut rows = Vec::new();
    let mut all: Vec<ObjectScores> = Vec::new();
    println!("{:<24} {:>6} {:>8} {:>8} {:>8}", "sequence", "object", "J %", "F %", "J&F %");
    for sequence in &sequences {
        let truth = sequence.annotations.iter().map(|p| read_labels(p)).collect::<CliResult<Vec<_>>>()?;
        let pred = sequence
            .frames
            .iter()
            .map(|f| read_labels(&prediction_path(&args.out, sequence, f)))
            .collect::<CliResult<Vec<_>>>()?;
        for (f, (t, p)) in sequence.annotations.iter().zip(&pred).enumerate() {
            let t_map = &truth[f];
            if (t_map.width(), t_map.height()) != (p.width(), p.height()) {
                return Err(format!(
                    "{} is {}x{} pixels but the prediction {} is {}x{}",
                    t.display(),
                    t_map.width(),
                    t_map.height(),
                    prediction_path(&args.out, sequence, &sequence.frames[f]).display(),
                    p.width(),
                    p.height()
                ));
            }
        }
        let scores =
            score_sequence(&view(&truth), &view(&pred)).map_err(|e| format!("{}: {e}", sequence.name))?;
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
        sequences.len()
    );
    let report = json!({
        "benchmark": "vos",
        "units": "percent",
        "jf_mean": summary.jf_mean * 100.0,
        "j": percent_stats(&summary.j),
        "f": percent_stats(&summary.f),
        "objects": rows,
        "settings": settings,
        "command": std::env::args().collect::<Vec<_>>(),
    });
    write_json(&args.out.join("report.json"), &report)?;
    Ok(Finished::All)
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

/// Propagates the first annotation through the sequence and writes every prediction (the first
/// frame's is its annotation, as the semi-supervised protocol gives it).
fn run_sequence(
    model: &SegGpt,
    device: &Device,
    args: &VosArgs,
    sequence: &Sequence,
    tuned: &[TunedPrompt],
    progress: &mut Progress,
) -> CliResult<()> {
    let first = decode_rgb(&read_image_file(&sequence.frames[0])?, &named(&sequence.frames[0]))
        .map_err(|e| e.to_string())?;
    let first_labels = read_labels(&sequence.annotations[0])?;
    let objects = object_count(&Labels {
        width: first_labels.width() as usize,
        height: first_labels.height() as usize,
        ids: first_labels.as_raw(),
    });
    if objects == 0 {
        return Err(format!("{}: the first annotation marks no object", sequence.annotations[0].display()));
    }
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
        let frame =
            decode_rgb(&read_image_file(frame_path)?, &named(frame_path)).map_err(|e| e.to_string())?;
        let result =
            propagator.run(&frame, &mut |_, _| {}).map_err(|e| format!("{}: {e}", frame_path.display()))?;
        let classes = result.classes.ok_or("the propagator made no class map")?;
        write(frame_path, &classes)?;
        progress.step();
    }
    Ok(())
}
