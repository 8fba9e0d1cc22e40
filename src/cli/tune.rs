//! `seggpt tune`: learns a prompt pair from training pairs with the model frozen
//! (docs/MODEL.md §16), with progress, atomic checkpoints and `--resume`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use seggpt::pipeline::{ChwImage, denormalize, encode_rgb_png, to_rgb_u8};
use seggpt::segment::{Prompt, SegmentError, TunedPrompt};
use seggpt::tune::{
    self, Activations, PromptMetadata, TrainingPair, TuneSettings, Tuner, config_hash, decode_optimiser,
    decode_prompt, encode_optimiser, encode_prompt, evaluate,
};
use seggpt::weights;
use seggpt::{EmbeddingType, Ensemble};

use crate::cli::interrupt;
use crate::cli::output::{MASK_SUFFIX, resolve};
use crate::{CliResult, EXIT_INTERRUPTED, ModelArgs, load_model, named, parse_num_labels, read_image_file};
use crate::{check_writable, write_atomically};

/// Steps between checkpoints (and validations with `--val-pairs`).
const CHECKPOINT_EVERY: u64 = 10;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("training").required(true).args(["pairs", "pair"])))]
pub struct TuneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A folder of training pairs: every image NAME (.png, .jpg, .jpeg) with its mask NAME.mask.png
    /// (the name `seggpt segment` gives its masks), in name order.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// One training pair: an image and its mask (repeatable; the order given is kept).
    #[arg(long, num_args = 2, value_names = ["IMAGE", "MASK"])]
    pair: Vec<PathBuf>,
    /// The tuned prompt (safetensors); checkpoints are written to it as the run goes, with the
    /// optimiser state beside it (NAME.optim.safetensors) and PNG previews.
    #[arg(long)]
    out: PathBuf,
    /// The pair the prompt starts from [default: the first training pair].
    #[arg(long, num_args = 2, value_names = ["IMAGE", "MASK"])]
    init: Vec<PathBuf>,
    /// Total number of AdamW steps (with --resume, the total including those already taken).
    #[arg(long, default_value_t = tune::DEFAULT_STEPS, value_parser = parse_steps)]
    steps: u64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = tune::DEFAULT_LR, value_parser = parse_lr)]
    lr: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = tune::DEFAULT_WEIGHT_DECAY, value_parser = parse_weight_decay)]
    weight_decay: f64,
    /// Training pairs per step, drawn with --seed (all of them, in order, when equal to their count).
    #[arg(long, default_value_t = tune::DEFAULT_BATCH, value_parser = parse_batch)]
    batch: usize,
    /// Seeds the order the training pairs are drawn in.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out pairs (same layout as --pairs): their loss is reported every few steps.
    #[arg(long)]
    val_pairs: Option<PathBuf>,
    /// Continue the run saved in --out (its prompt and optimiser state) up to --steps.
    #[arg(long)]
    resume: bool,
    /// Number of classes (1 to 255): masks that are 8-bit class-index PNGs are coloured with the
    /// palette.
    #[arg(long, value_parser = parse_num_labels)]
    num_labels: Option<usize>,
    #[arg(long, value_enum, default_value_t = EmbeddingType::Instance)]
    embedding_type: EmbeddingType,
    /// How a step's backward pass gets the activations: `recompute` keeps only each encoder
    /// block's input and runs the blocks again one at a time (about one forward pass more per
    /// step; the released model's step then fits a few GB), `keep` keeps them all (faster; about
    /// 12 GB per pair for the released model in f32) (docs/MODEL.md §23).
    #[arg(long, value_enum, default_value_t = Activations::default())]
    activations: Activations,
}

impl TuneArgs {
    pub fn uses_wgpu(&self) -> bool {
        matches!(self.model.backend, crate::Backend::Wgpu)
    }
}

fn parse_steps(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

fn parse_batch(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

fn parse_lr(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("must be a number above 0".into()),
    }
}

fn parse_weight_decay(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("must be a number, 0 or more".into()),
    }
}

/// Where a run writes: the prompt, the optimiser state and the two previews.
struct Outputs {
    prompt: PathBuf,
    optimiser: PathBuf,
    preview_pixel_values: PathBuf,
    preview_masks: PathBuf,
}

impl Outputs {
    fn all(&self) -> [&PathBuf; 4] {
        [&self.prompt, &self.optimiser, &self.preview_pixel_values, &self.preview_masks]
    }

    fn beside(prompt: &Path) -> Self {
        let stem = prompt.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let sibling = |suffix: &str| prompt.with_file_name(format!("{stem}{suffix}"));
        Self {
            prompt: prompt.to_path_buf(),
            optimiser: sibling(".optim.safetensors"),
            preview_pixel_values: sibling(".prompt_pixel_values.png"),
            preview_masks: sibling(".prompt_masks.png"),
        }
    }
}

/// The (image, mask) paths of a pairs folder: every image file with its `NAME.mask.png`.
fn folder_pairs(dir: &Path) -> CliResult<Vec<(PathBuf, PathBuf)>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the folder {}: {e}", dir.display()))?;
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the folder {}: {e}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let is_image = |n: &str| {
        let lower = n.to_ascii_lowercase();
        [".png", ".jpg", ".jpeg"].iter().any(|ext| lower.ends_with(ext))
    };
    let mut pairs = Vec::new();
    for name in names.iter().filter(|n| is_image(n) && !n.ends_with(MASK_SUFFIX)) {
        let mask = format!("{name}{MASK_SUFFIX}");
        if !names.contains(&mask) {
            return Err(format!("{} has no mask {mask} beside it", dir.join(name).display()));
        }
        pairs.push((dir.join(name), dir.join(mask)));
    }
    for mask in names.iter().filter(|n| n.ends_with(MASK_SUFFIX)) {
        let image = &mask[..mask.len() - MASK_SUFFIX.len()];
        if !names.iter().any(|n| n == image) {
            return Err(format!("{} is a mask without its image {image}", dir.join(mask).display()));
        }
    }
    if pairs.is_empty() {
        return Err(format!(
            "{} holds no training pairs (images NAME.png or NAME.jpg, each with its mask NAME{MASK_SUFFIX})",
            dir.display()
        ));
    }
    Ok(pairs)
}

fn decode_pair(image: &Path, mask: &Path, num_labels: Option<usize>) -> CliResult<Prompt> {
    Prompt::decode(&read_image_file(image)?, &named(image), &read_image_file(mask)?, &named(mask), num_labels)
        .map_err(|e| e.to_string())
}

fn as_paths(flat: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

fn prepare(prompts: &[Prompt], (h, w): (usize, usize)) -> CliResult<Vec<TrainingPair>> {
    prompts
        .iter()
        .map(|p| {
            let (image, label) = p.prepare(h, w).map_err(|e| e.to_string())?;
            Ok(TrainingPair { image, label })
        })
        .collect()
}

fn preview_png(values: &ChwImage) -> CliResult<Vec<u8>> {
    encode_rgb_png(&to_rgb_u8(&denormalize(values))).map_err(|e| e.to_string())
}

/// Writes the optimiser state, the previews and then the prompt, each atomically. The prompt's
/// step count is checked against the optimiser's on `--resume`, so a run stopped between the
/// writes is recognised.
fn save(outputs: &Outputs, tuner: &Tuner, metadata: &PromptMetadata) -> CliResult<()> {
    let prompt = tuner.prompt();
    let p = &prompt.pixel_values;
    write_atomically(
        &outputs.optimiser,
        &encode_optimiser(tuner.optimiser(), [p.channels(), p.height(), p.width()]),
    )?;
    write_atomically(&outputs.preview_pixel_values, &preview_png(&prompt.pixel_values)?)?;
    write_atomically(&outputs.preview_masks, &preview_png(&prompt.masks)?)?;
    write_atomically(&outputs.prompt, &encode_prompt(&prompt, metadata))
}

fn read_file(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The `--tuned-prompt` files of `segment`, `video` and `eval`, read and checked before anything
/// is written: refused with the spatial ensemble (its grid is tiled from images and masks), each
/// refused unless it is a tuned prompt file for the half canvas of the model at `model` (read
/// from its config, before the weights load).
pub fn read_tuned_prompts(
    paths: &[PathBuf],
    model: &Path,
    ensemble: Option<Ensemble>,
) -> CliResult<Vec<TunedPrompt>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    if ensemble == Some(Ensemble::Spatial) {
        return Err(SegmentError::SpatialTunedPrompt.to_string());
    }
    let half = weights::open_model(model).map_err(|e| e.to_string())?.config.half_image_size();
    paths
        .iter()
        .map(|path| {
            let bytes = read_image_file(path)?;
            decode_prompt(&bytes, &named(path), half).map(|(prompt, _)| prompt).map_err(|e| e.to_string())
        })
        .collect()
}

pub fn run(args: &TuneArgs) -> CliResult<()> {
    // Every input is read and checked before the model loads.
    let train_paths = match &args.pairs {
        Some(dir) => folder_pairs(dir)?,
        None => as_paths(&args.pair),
    };
    let train =
        train_paths.iter().map(|(i, m)| decode_pair(i, m, args.num_labels)).collect::<CliResult<Vec<_>>>()?;
    if args.batch > train.len() {
        return Err(format!("--batch {} is more than the {} training pair(s)", args.batch, train.len()));
    }
    let val_paths = match &args.val_pairs {
        Some(dir) => folder_pairs(dir)?,
        None => Vec::new(),
    };
    let val =
        val_paths.iter().map(|(i, m)| decode_pair(i, m, args.num_labels)).collect::<CliResult<Vec<_>>>()?;
    let init = match args.init.as_slice() {
        [image, mask] => decode_pair(image, mask, args.num_labels)?,
        _ => train[0].clone(),
    };
    let outputs = Outputs::beside(&args.out);
    // The prompt and the files beside it are rewritten at every checkpoint: none may be a file
    // the run reads (`--out x.safetensors` writes x.prompt_masks.png, which may be a mask).
    let (weights_path, config_path) = weights::model_paths(&args.model.model);
    let inputs = train_paths
        .iter()
        .chain(&val_paths)
        .flat_map(|(image, mask)| [image, mask])
        .chain(&args.init)
        .chain([&args.model.model, &weights_path, &config_path]);
    for input in inputs {
        if let Some(output) = outputs.all().into_iter().find(|o| resolve(o) == resolve(input)) {
            return Err(format!(
                "the output {} would overwrite the input {}; choose another --out",
                output.display(),
                input.display()
            ));
        }
    }
    check_writable(&outputs.prompt)?;
    if args.resume {
        for path in [&outputs.prompt, &outputs.optimiser] {
            if !path.is_file() {
                return Err(format!("--resume: {} does not exist; start without --resume", path.display()));
            }
        }
    } else if outputs.prompt.exists() {
        return Err(format!(
            "{} exists; pass --resume to continue that run, or choose another --out",
            outputs.prompt.display()
        ));
    }

    let (model, device) = load_model(&args.model)?;
    let config = model.config();
    let half = config.half_image_size();
    let hash = config_hash(config);
    let settings = TuneSettings {
        lr: args.lr,
        weight_decay: args.weight_decay,
        batch: args.batch,
        seed: args.seed,
        embedding_type: args.embedding_type,
        activations: args.activations,
    };
    let mut metadata = PromptMetadata {
        config_hash: hash.clone(),
        image_size: config.image_size.hw(),
        steps: 0,
        lr: args.lr,
        weight_decay: args.weight_decay,
        batch: args.batch,
        seed: args.seed,
        embedding_type: args.embedding_type,
        train_losses: Vec::new(),
        val_losses: Vec::new(),
    };
    let mut tuner = if args.resume {
        let file = named(&outputs.prompt);
        let (prompt, saved) =
            decode_prompt(&read_file(&outputs.prompt)?, &file, half).map_err(|e| e.to_string())?;
        if saved.config_hash != hash {
            return Err(format!(
                "{file} was tuned with another model (config hash {}, this model {hash})",
                saved.config_hash
            ));
        }
        let optimiser = decode_optimiser(
            &read_file(&outputs.optimiser)?,
            &named(&outputs.optimiser),
            [3, half.0, half.1],
        )
        .map_err(|e| e.to_string())?;
        if optimiser.steps != saved.steps {
            return Err(format!(
                "{file} is at step {} but {} at step {}; the run stopped between the two writes, start it again",
                saved.steps,
                outputs.optimiser.display(),
                optimiser.steps
            ));
        }
        metadata.train_losses = saved.train_losses;
        metadata.val_losses = saved.val_losses;
        metadata.steps = saved.steps;
        eprintln!("resuming {file} at step {}", saved.steps);
        Tuner::resume(&prompt, optimiser, settings)
    } else {
        let (pixel_values, masks) = init.prepare(half.0, half.1).map_err(|e| e.to_string())?;
        Tuner::new(&TunedPrompt { pixel_values, masks }, settings)
    };
    let train = prepare(&train, half)?;
    let val = prepare(&val, half)?;
    if tuner.steps() >= args.steps {
        eprintln!("{} is already at step {} of {}", outputs.prompt.display(), tuner.steps(), args.steps);
        return Ok(());
    }

    interrupt::stop_after_current_target()?;
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let first = tuner.steps();
    while tuner.steps() < args.steps {
        let loss =
            tuner.step(&model, &device, &train).map_err(|e| format!("step {}: {e}", tuner.steps() + 1))?;
        metadata.train_losses.push(loss);
        metadata.steps = tuner.steps();
        let step = tuner.steps();
        let last = step == args.steps;
        let mut line = format!("step {step}/{}  loss {loss:.5}", args.steps);
        if !val.is_empty() && (step % CHECKPOINT_EVERY == 0 || last) {
            let val_loss = evaluate(&model, &device, &tuner.prompt(), &val, args.batch, args.embedding_type)
                .map_err(|e| format!("validation at step {step}: {e}"))?;
            metadata.val_losses.push((step, val_loss));
            line += &format!("  val {val_loss:.5}");
        }
        let rate = (step - first) as f64 / start.elapsed().as_secs_f64();
        line += &format!("  {rate:.3} steps/s  {} left", clock((args.steps - step) as f64 / rate));
        let stopping = interrupt::requested();
        if step % CHECKPOINT_EVERY == 0 || last || stopping {
            save(&outputs, &tuner, &metadata)?;
            line += "  (saved)";
        }
        if terminal && !last {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{}{line}", if terminal { "\r" } else { "" });
        }
        if stopping && !last {
            eprintln!(
                "\ninterrupted at step {step}; {} holds it, and --resume continues",
                outputs.prompt.display()
            );
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
    eprintln!(
        "wrote {} (and {}, {}, {})",
        outputs.prompt.display(),
        outputs.optimiser.display(),
        outputs.preview_pixel_values.display(),
        outputs.preview_masks.display()
    );
    Ok(())
}
