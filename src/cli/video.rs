//! `seggpt video`: video object segmentation of a folder of frames by the official propagation
//! (docs/MODEL.md §13). Every frame's results are named after its file stem in the output folder:
//! `<stem>.mask.png`, with `--overlay` `<stem>.overlay.png`, and with class indices `<stem>.png`
//! (the DAVIS annotation format). Frames are taken in natural order (`2.png` before `10.png`, see
//! [`crate::cli::natural`]), and never from this tool's own outputs. Checked before the model loads:
//! the output folder, every frame, the prompts (colours included), every output name; written
//! atomically; Ctrl-C stops after the current frame.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use seggpt::SegGpt;
use seggpt::pipeline::{
    ChwImage, ClassMap, OFFICIAL_OPACITY, RgbImage, build_palette, check_image, class_map, decode_class_map,
    decode_rgb, encode_palette_png, encode_rgb_png, mask_to_rgb, overlay,
};
use seggpt::segment::{Prompt, PromptMask, Segmentation, TunedPrompt};
use seggpt::video::{DEFAULT_NUM_FRAMES, Propagate, Propagator, VideoOptions};

use crate::cli::tune::read_tuned_prompts;
use crate::cli::{interrupt, output};
use crate::{
    CliResult, Finished, ForwardArgs, ModelArgs, decode_prompts, load_model, named, read_image_file,
    write_atomically,
};
use seggpt::natural::natural_cmp;

/// Appended to a frame's stem for its painted mask (the name `segment` appends too).
const MASK_SUFFIX: &str = output::MASK_SUFFIX;
/// Appended to a frame's stem for its overlay.
const OVERLAY_SUFFIX: &str = ".overlay.png";
/// Appended to a frame's stem for its class indices (DAVIS names its annotations `<frame>.png`).
const CLASSES_SUFFIX: &str = ".png";
/// Frame files are the PNG and JPEG files of the folder, by extension (any case).
const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// The endings of the files this tool writes beside an image's name (`video`'s and `segment`'s):
/// such a file is never a frame, so that a folder holding earlier results still gives only its
/// frames. (`video`'s class maps, `<stem>.png`, cannot be told from frames; they are never
/// written into the frames folder, which --out-dir may not be.)
const OWN_OUTPUT_SUFFIXES: [&str; 3] = [MASK_SUFFIX, OVERLAY_SUFFIX, output::CLASSES_SUFFIX];
/// Most previous frames a batch may hold: with one prompt, 64 samples, the most `bench` stacks.
const MAX_NUM_FRAMES: usize = 63;
/// Longest file name most file systems accept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Segment every frame of a clip, following the prompt's objects from frame to frame.
///
/// Each batch holds the prompts and the last K frames with their predicted masks. Frames are the PNG
/// and JPEG files of DIR in natural order (2.png before 10.png; a DAVIS
/// `JPEGImages/480p/<sequence>` folder works as it is). Writes OUT/<frame stem>.mask.png, with --overlay OUT/<frame stem>.overlay.png, and
/// with --num-labels or a palette (class-index) first mask OUT/<frame stem>.png, 8-bit class
/// indices in the DAVIS format. Safe to interrupt (Ctrl-C) and to run again.
#[derive(clap::Args)]
pub struct VideoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The folder of frames: its PNG and JPEG files (not those of sub-folders), in natural order:
    /// runs of digits compare by their value, so 2.png comes before 10.png (as `ffmpeg -i clip.mp4
    /// %d.png` numbers them) and zero-padded names keep their order; other characters compare by
    /// their bytes, and names of equal value (7.png, 007.png) by their bytes. Files named like
    /// this tool's outputs (*.mask.png, *.overlay.png, *.classes.png) are never frames.
    #[arg(long, value_name = "DIR")]
    frames: PathBuf,
    /// The first frame's mask: the first frame and this mask are the prompt, and the first frame
    /// is not segmented (its outputs are this mask). A palette PNG (as DAVIS annotations are) is
    /// read as class indices.
    #[arg(
        long,
        value_name = "MASK",
        required_unless_present_any = ["prompt", "tuned_prompt"],
        conflicts_with = "prompt"
    )]
    first_mask: Option<PathBuf>,
    /// A prompt image and its mask; every frame is segmented. Repeat for several prompts, which
    /// all lead every batch.
    #[arg(long, num_args = 2, value_names = ["IMAGE", "MASK"])]
    prompt: Vec<PathBuf>,
    /// A prompt learned by `seggpt tune`: it leads every batch after the other prompts (the first
    /// frame's or --prompt's), before the previous frames. Alone, every frame is segmented.
    #[arg(long, value_name = "FILE")]
    tuned_prompt: Vec<PathBuf>,
    /// The output folder; not the frames folder (a folder inside it is fine).
    #[arg(long, value_name = "OUT")]
    out_dir: PathBuf,
    /// K, previous frames (with their predicted masks) added to every batch; 0 is the official
    /// default (the prompts only).
    #[arg(long, default_value_t = DEFAULT_NUM_FRAMES, value_parser = parse_num_frames)]
    num_frames: usize,
    /// The masks kept for the next frames: binary (official: channel mean > 128, white) or colour
    /// (snapped to the nearest prompt colour, so several objects keep their colours).
    #[arg(long, value_enum, default_value_t = Propagate::Binary)]
    propagate: Propagate,
    /// Also write OUT/<frame stem>.overlay.png: the frame * (0.6 * mask / 255 + 0.4).
    #[arg(long)]
    overlay: bool,
    /// Number of classes (1 to 255): 8-bit class-index masks are coloured with the palette, and
    /// class maps are written.
    #[arg(long, value_parser = crate::parse_num_labels)]
    num_labels: Option<usize>,
    #[command(flatten)]
    forward: ForwardArgs,
}

/// The bound of `--num-frames`, shared with `eval vos`.
pub(crate) fn parse_num_frames(text: &str) -> Result<usize, String> {
    crate::parse_count(text, 0, MAX_NUM_FRAMES, "")
}

/// One frame and the files its results go to.
struct PlannedFrame {
    frame: PathBuf,
    mask: PathBuf,
    overlay: Option<PathBuf>,
    classes: Option<PathBuf>,
}

/// The results of one frame, ready to be written.
struct FrameResult<'a> {
    frame: &'a RgbImage,
    mask: &'a RgbImage,
    classes: Option<&'a ClassMap>,
}

/// A run checked and planned, ready for the model.
struct Job {
    plan: Vec<PlannedFrame>,
    prompts: Vec<Prompt>,
    tuned: Vec<TunedPrompt>,
    options: VideoOptions,
    /// With `--first-mask`: the first frame's outputs (the given mask, and its class map with
    /// labels); the first frame is the prompt and is not segmented.
    first_outputs: Option<(RgbImage, Option<ClassMap>)>,
}

pub fn run(args: &VideoArgs) -> CliResult<Finished> {
    let job = prepare(args)?;
    interrupt::stop_after_current_target()?;
    let (model, device) = load_model(&args.model)?;
    propagate(&job, &model, &device)
}

/// Everything that can be checked is checked before the slow model load, as `segment` does: the
/// output folder, every frame's cheap checks, the prompts decoded (colours included), outputs
/// planned and their folder made and tried. Frames are decoded one at a time later.
fn prepare(args: &VideoArgs) -> CliResult<Job> {
    let frames = list_frames(&args.frames)?;
    check_out_dir(&args.frames, &args.out_dir)?;
    for frame in &frames {
        check_image(&read_image_file(frame)?, &named(frame)).map_err(|e| e.to_string())?;
    }
    let (prompts, num_labels) = match &args.first_mask {
        Some(mask) => {
            let prompt = first_frame_prompt(&frames[0], mask, args.num_labels)?;
            let num_labels = match &prompt.mask {
                PromptMask::Classes { num_labels, .. } => Some(*num_labels),
                PromptMask::Rgb(_) => args.num_labels,
            };
            (vec![prompt], num_labels)
        }
        None => (decode_prompts(&args.prompt, args.num_labels)?, args.num_labels),
    };
    let first_outputs = match args.first_mask {
        Some(_) => Some(first_mask_outputs(&prompts[0].mask, num_labels)?),
        None => None,
    };
    let tuned = read_tuned_prompts(&args.tuned_prompt, &args.model.model, args.forward.ensemble)?;
    let mut inputs: Vec<&Path> =
        frames.iter().chain(&args.prompt).chain(&args.tuned_prompt).map(PathBuf::as_path).collect();
    inputs.extend(args.first_mask.as_deref());
    let (weights_path, config_path) = seggpt::weights::model_paths(&args.model.model);
    inputs.extend([args.model.model.as_path(), &weights_path, &config_path]);
    let plan = plan(&frames, &args.out_dir, args.overlay, num_labels.is_some(), &inputs)?;
    let options = VideoOptions {
        num_frames: args.num_frames,
        propagate: args.propagate,
        forward: args.forward.options(),
        num_labels,
    };
    options.check_prompts(prompts.len(), tuned.len()).map_err(|e| e.to_string())?;
    options.check_prompt_masks(&prompts).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out_dir)
        .and_then(|()| output::temp_file_in(&args.out_dir).map(drop))
        .map_err(|e| format!("cannot write to the output folder {}: {e}", args.out_dir.display()))?;
    Ok(Job { plan, prompts, tuned, options, first_outputs })
}

/// Segments the planned frames in order, writing each frame's files as it is done.
fn propagate(job: &Job, model: &SegGpt, device: &Device) -> CliResult<Finished> {
    let mut propagator = Propagator::with_tuned(model, device, &job.prompts, &job.tuned, job.options)
        .map_err(|e| e.to_string())?;
    let total = job.plan.len();
    let mut to_segment = job.plan.iter().enumerate();
    if let Some((mask, classes)) = &job.first_outputs
        && let Some((_, planned)) = to_segment.next()
    {
        // The official loop does not segment the prompt frame; its outputs are the given mask.
        let image = &job.prompts[0].image;
        write(planned, FrameResult { frame: image, mask, classes: classes.as_ref() })?;
        eprintln!("{} (the given mask)", planned.mask.display());
    }
    let mut progress = Progress::new(total - usize::from(job.first_outputs.is_some()));
    for (written, planned) in to_segment {
        if interrupt::requested() {
            return Ok(Finished::InterruptedFrames { written, total });
        }
        let name = named(&planned.frame);
        let run_one = |propagator: &mut Propagator, progress: &mut Progress| -> CliResult<()> {
            let frame = decode_rgb(&read_image_file(&planned.frame)?, &name).map_err(|e| e.to_string())?;
            let Segmentation { mask, classes } = propagator
                .run(&frame, &mut |done, blocks| progress.block(done, blocks))
                .map_err(|e| format!("{name}: {e}"))?;
            write(planned, FrameResult { frame: &frame, mask: &mask, classes: classes.as_ref() })
        };
        run_one(&mut propagator, &mut progress)
            .map_err(|e| format!("{e} ({written} of {total} frames written)"))?;
        progress.frame_done(&planned.mask);
    }
    Ok(Finished::All)
}

/// Refuses an output folder that is the frames folder (by any spelling or link): the outputs
/// would sit among the frames, and a class map `<stem>.png` would read as a frame on the next
/// run. A folder inside it is fine, since frames are never taken from sub-folders.
fn check_out_dir(frames: &Path, out_dir: &Path) -> CliResult<()> {
    if output::resolve(out_dir) == output::resolve(frames) {
        return Err(format!(
            "--out-dir {} is the frames folder {}: the results would mix with the frames; choose \
             another output folder (one inside the frames folder is fine)",
            out_dir.display(),
            frames.display()
        ));
    }
    Ok(())
}

/// The frames of `folder`: its PNG and JPEG files (by extension), but not this tool's outputs,
/// in natural order. Says on stderr which frames come first and last, and what was skipped.
fn list_frames(folder: &Path) -> CliResult<Vec<PathBuf>> {
    let cannot = |e: std::io::Error| format!("cannot read the frames folder {}: {e}", folder.display());
    let mut frames = Vec::new();
    let mut skipped = 0;
    for entry in std::fs::read_dir(folder).map_err(cannot)? {
        let path = entry.map_err(cannot)?.path();
        if !is_image_file(&path) {
            continue;
        }
        if is_own_output(&path) {
            skipped += 1;
        } else {
            frames.push(path);
        }
    }
    let skipped_note = (skipped > 0).then(|| {
        format!(
            "skipped {skipped} file{} named like this tool's outputs ({})",
            if skipped == 1 { "" } else { "s" },
            OWN_OUTPUT_SUFFIXES.map(|suffix| format!("*{suffix}")).join(", ")
        )
    });
    if frames.is_empty() {
        let note = skipped_note.map(|note| format!("; {note}")).unwrap_or_default();
        return Err(format!("{} holds no PNG or JPEG frames{note}", folder.display()));
    }
    frames.sort_by(|a, b| natural_cmp(file_name(a), file_name(b)));
    eprintln!("{}", describe_order(&frames));
    if let Some(note) = skipped_note {
        eprintln!("{note}");
    }
    Ok(frames)
}

/// A file (not a folder) with a frame's extension.
fn is_image_file(path: &Path) -> bool {
    let is_frame = path
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| FRAME_EXTENSIONS.iter().any(|f| f.eq_ignore_ascii_case(ext)));
    is_frame && !path.is_dir()
}

/// Whether `path` is named like a file this tool writes.
fn is_own_output(path: &Path) -> bool {
    let name = file_name(path).as_encoded_bytes();
    OWN_OUTPUT_SUFFIXES.iter().any(|suffix| name.ends_with(suffix.as_bytes()))
}

fn file_name(path: &Path) -> &OsStr {
    path.file_name().unwrap_or_default()
}

/// The first and last of the frames, so that an order other than the one meant
/// shows before the run: `frames: 1.png ... 10.png (10 frames, in natural order)`.
fn describe_order(frames: &[PathBuf]) -> String {
    let name = |path: &PathBuf| file_name(path).to_string_lossy().into_owned();
    match frames {
        [] => "frames: none".to_string(),
        [only] => format!("frames: {} (1 frame)", name(only)),
        [first, .., last] => {
            format!("frames: {} ... {} ({} frames, in natural order)", name(first), name(last), frames.len())
        }
    }
}

/// The prompt of `--first-mask`: the first frame and the mask, which must be the frame's size.
/// Without `--num-labels`, a palette PNG mask (DAVIS annotations are) is read as class indices
/// with as many labels as its largest index.
fn first_frame_prompt(frame: &Path, mask_path: &Path, num_labels: Option<usize>) -> CliResult<Prompt> {
    let image = read_image_file(frame)?;
    let mask = read_image_file(mask_path)?;
    let mask_name = named(mask_path);
    let num_labels = match num_labels {
        Some(n) => Some(n),
        None if is_palette_png(&mask) => {
            let map = decode_class_map(&mask, &mask_name).map_err(|e| e.to_string())?;
            match map.as_raw().iter().max() {
                Some(&largest) if largest > 0 => Some(usize::from(largest)),
                _ => return Err(format!("{mask_name}: the first mask marks no object (every pixel is 0)")),
            }
        }
        None => None,
    };
    // `Prompt::decode` refuses a mask of another size than the frame, naming both sizes.
    Prompt::decode(&image, &named(frame), &mask, &mask_name, num_labels).map_err(|e| e.to_string())
}

fn is_palette_png(bytes: &[u8]) -> bool {
    png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .is_ok_and(|reader| reader.info().color_type == png::ColorType::Indexed)
}

/// The first frame's outputs with `--first-mask`: the given mask in colours and, with labels, its
/// class indices (a colour mask's nearest palette entries, as for a prediction).
fn first_mask_outputs(
    mask: &PromptMask,
    num_labels: Option<usize>,
) -> CliResult<(RgbImage, Option<ClassMap>)> {
    match mask {
        PromptMask::Classes { map, num_labels } => {
            let rgb = mask_to_rgb(map, Some(&build_palette(*num_labels))).map_err(|e| e.to_string())?;
            Ok((rgb, Some(map.clone())))
        }
        PromptMask::Rgb(rgb) => {
            let classes = num_labels
                .map(|n| class_map(&planar(rgb), &build_palette(n)))
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok((rgb.clone(), classes))
        }
    }
}

/// An 8-bit RGB image as planar `f32` values 0..=255.
fn planar(rgb: &RgbImage) -> ChwImage {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            data[c * w * h + i] = f32::from(v);
        }
    }
    ChwImage::new(3, h, w, data).expect("an RgbImage has a valid shape")
}

/// Plans every output and refuses, before anything is written: two frames with the same stem,
/// an output name too long for the file system, an output that is a folder or would overwrite an
/// input (`inputs`: every file the run reads).
fn plan(
    frames: &[PathBuf],
    out_dir: &Path,
    with_overlay: bool,
    with_classes: bool,
    inputs: &[&Path],
) -> CliResult<Vec<PlannedFrame>> {
    let inputs: HashMap<PathBuf, &Path> =
        inputs.iter().filter_map(|p| Some((p.canonicalize().ok()?, *p))).collect();
    // An output folder that does not exist yet holds no input.
    let out_resolved = out_dir.canonicalize().ok();
    let mut stems: HashMap<OsString, &Path> = HashMap::new();
    let mut outputs = HashSet::new();
    let mut plan = Vec::with_capacity(frames.len());
    for frame in frames {
        let stem = frame.file_stem().unwrap_or_default().to_os_string();
        if let Some(other) = stems.insert(stem.clone(), frame) {
            return Err(format!(
                "{} and {} have the same name before the extension, so their outputs would collide; \
                 rename one",
                other.display(),
                frame.display()
            ));
        }
        let mut output = |suffix: &str| -> CliResult<PathBuf> {
            let mut file = stem.clone();
            file.push(suffix);
            if file.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "the output name for {} would be {} bytes long; file systems take at most \
                     {MAX_NAME_BYTES}: rename the frame",
                    frame.display(),
                    file.len()
                ));
            }
            let path = out_dir.join(&file);
            if let Some(input) = out_resolved.as_ref().and_then(|dir| inputs.get(&dir.join(&file))) {
                return Err(format!(
                    "the output {} would overwrite the input {}; choose another --out-dir",
                    path.display(),
                    input.display()
                ));
            }
            if path.is_dir() {
                return Err(format!("the output {} is a folder", path.display()));
            }
            if !outputs.insert(file) {
                return Err(format!("two frames would write {}; rename one", path.display()));
            }
            Ok(path)
        };
        let mask = output(MASK_SUFFIX)?;
        let overlay = if with_overlay { Some(output(OVERLAY_SUFFIX)?) } else { None };
        let classes = if with_classes { Some(output(CLASSES_SUFFIX)?) } else { None };
        plan.push(PlannedFrame { frame: frame.clone(), mask, overlay, classes });
    }
    Ok(plan)
}

/// Writes a frame's files, each atomically: the mask, then the overlay and the class map.
fn write(planned: &PlannedFrame, result: FrameResult) -> CliResult<()> {
    write_atomically(&planned.mask, &encode_rgb_png(result.mask).map_err(|e| e.to_string())?)?;
    if let Some(path) = &planned.overlay {
        let blended = overlay(result.frame, result.mask, OFFICIAL_OPACITY).map_err(|e| e.to_string())?;
        write_atomically(path, &encode_rgb_png(&blended).map_err(|e| e.to_string())?)?;
    }
    if let (Some(path), Some(classes)) = (&planned.classes, result.classes) {
        write_atomically(path, &encode_palette_png(classes).map_err(|e| e.to_string())?)?;
    }
    Ok(())
}

/// Frame progress: on a terminal one updating line (frame i of n, the encoder block, frames/s,
/// time left); otherwise a plain line per frame.
struct Progress {
    terminal: bool,
    total: usize,
    done: usize,
    start: Instant,
    frame_start: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let now = Instant::now();
        Self { terminal: std::io::stderr().is_terminal(), total, done: 0, start: now, frame_start: now }
    }

    fn rate(&self) -> Option<f64> {
        let secs = self.start.elapsed().as_secs_f64();
        (self.done > 0 && secs > 0.0).then(|| self.done as f64 / secs)
    }

    fn status(&self) -> String {
        match self.rate() {
            Some(rate) => {
                let left = (self.total - self.done) as f64 / rate;
                // Two significant digits at least: the full-size model on a CPU runs well under
                // 0.1 frames/s.
                let decimals = (2.0 - rate.log10().floor()).max(2.0) as usize;
                format!("{rate:.decimals$} frames/s, {} left", clock(left))
            }
            None => "measuring speed".to_string(),
        }
    }

    fn block(&mut self, done: usize, blocks: usize) {
        if self.terminal {
            eprint!(
                "\rframe {} of {}: block {done}/{blocks}, {}\x1b[K",
                self.done + 1,
                self.total,
                self.status()
            );
        }
    }

    fn frame_done(&mut self, mask: &Path) {
        self.done += 1;
        let secs = self.frame_start.elapsed().as_secs_f64();
        self.frame_start = Instant::now();
        if self.terminal {
            eprint!("\rframe {} of {} done, {}\x1b[K", self.done, self.total, self.status());
            if self.done == self.total {
                eprintln!();
            }
        } else {
            eprintln!(
                "{} (frame {} of {}, {secs:.2} s, {})",
                mask.display(),
                self.done,
                self.total,
                self.status()
            );
        }
    }
}

/// Seconds as `m:ss` (or `h:mm:ss`).
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(75.0), "1:15");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn the_order_line_names_the_first_and_last_frames() {
        let frames: Vec<PathBuf> = ["d/1.png", "d/2.png", "d/10.png"].map(PathBuf::from).into();
        assert_eq!(describe_order(&frames), "frames: 1.png ... 10.png (3 frames, in natural order)");
        assert_eq!(describe_order(&frames[..1]), "frames: 1.png (1 frame)");
    }

    #[test]
    fn outputs_of_this_tool_are_not_frames() {
        for name in ["d/f00.mask.png", "d/f00.overlay.png", "d/f00.png.classes.png"] {
            assert!(is_own_output(Path::new(name)), "{name}");
        }
        for name in ["d/f00.png", "d/mask.png", "d/f00.MASK.jpg"] {
            assert!(!is_own_output(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn planar_spreads_the_channels() {
        let rgb = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(planar(&rgb).as_slice(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
