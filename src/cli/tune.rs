//! `seggpt tune`: learns a prompt pair from training pairs with the model frozen
//! (docs/MODEL.md §16), with progress, atomic checkpoints and `--resume`. What shaped the prompt
//! (the model, the pairs' contents, the hyper-parameters) is recorded beside it (NAME.run.json),
//! and a resume with other settings is refused, so the metadata never claims settings that
//! some steps did not have.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use seggpt::pipeline::{ChwImage, denormalize, encode_rgb_png, to_rgb_u8};
use seggpt::segment::{Prompt, SegmentError, TunedPrompt};
use seggpt::tune::{
    self, Activations, AdamW, PromptMetadata, TrainingPair, TuneSettings, Tuner, check_prompt_values,
    config_hash, decode_optimiser, decode_prompt, encode_optimiser, encode_prompt, evaluate,
};
use seggpt::weights;
use seggpt::{EmbeddingType, Ensemble, SegGpt};

use crate::cli::interrupt;
use crate::cli::output::{MASK_SUFFIX, resolve};
use crate::cli::record::{self, RunRecord};
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

/// Appended to the prompt's stem for its previews, PNG images a pairs folder must not take for
/// training images.
const PREVIEW_SUFFIXES: [&str; 2] = [".prompt_pixel_values.png", ".prompt_masks.png"];
/// The extension of a tuned prompt file, whose previews are beside it.
const PROMPT_EXTENSION: &str = "safetensors";

/// Where a run writes: the prompt, the optimiser state, the two previews and the run record.
struct Outputs {
    prompt: PathBuf,
    optimiser: PathBuf,
    preview_pixel_values: PathBuf,
    preview_masks: PathBuf,
    record: PathBuf,
}

impl Outputs {
    fn all(&self) -> [&PathBuf; 5] {
        [&self.prompt, &self.optimiser, &self.preview_pixel_values, &self.preview_masks, &self.record]
    }

    fn beside(prompt: &Path) -> Self {
        let stem = prompt.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let sibling = |suffix: &str| prompt.with_file_name(format!("{stem}{suffix}"));
        Self {
            prompt: prompt.to_path_buf(),
            optimiser: sibling(".optim.safetensors"),
            preview_pixel_values: sibling(PREVIEW_SUFFIXES[0]),
            preview_masks: sibling(PREVIEW_SUFFIXES[1]),
            record: sibling(".run.json"),
        }
    }
}

/// Whether `name` is a preview this tool wrote: a preview name with its prompt beside it.
fn is_own_preview(name: &str, names: &[String]) -> bool {
    PREVIEW_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|stem| names.iter().any(|n| *n == format!("{stem}.{PROMPT_EXTENSION}")))
    })
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
    // Earlier versions let --out be a pairs folder; the previews they wrote there are not pairs.
    let previews: Vec<String> = names.iter().filter(|n| is_own_preview(n, &names)).cloned().collect();
    if !previews.is_empty() {
        eprintln!(
            "{}: skipping {}, written by `seggpt tune` beside its prompt (not training pairs)",
            dir.display(),
            previews.join(", ")
        );
        names.retain(|n| !previews.contains(n));
    }
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

/// Writes the optimiser state, the previews, the run record and then the prompt, each
/// atomically. The prompt's step count is checked against the optimiser's on `--resume`, so a
/// run stopped between the writes is recognised. A prompt whose values grew past what any
/// command reads back (a diverging run) is not written.
fn save(outputs: &Outputs, tuner: &Tuner, metadata: &PromptMetadata, record: &RunRecord) -> CliResult<()> {
    let prompt = tuner.prompt();
    check_prompt_values(&prompt, &named(&outputs.prompt)).map_err(|e| {
        format!(
            "step {}: {e}; the tuning diverged, lower --lr (nothing was saved at this step)",
            tuner.steps()
        )
    })?;
    let p = &prompt.pixel_values;
    write_atomically(
        &outputs.optimiser,
        &encode_optimiser(tuner.optimiser(), [p.channels(), p.height(), p.width()]),
    )?;
    write_atomically(&outputs.preview_pixel_values, &preview_png(&prompt.pixel_values)?)?;
    write_atomically(&outputs.preview_masks, &preview_png(&prompt.masks)?)?;
    record.write(&outputs.record)?;
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
/// from its config, before the weights load), tuned with that model's config (a prompt learned
/// for one model is noise to another of the same shape, so it is refused, not warned about).
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
    let config = weights::open_model(model).map_err(|e| e.to_string())?.config;
    let (half, hash) = (config.half_image_size(), config_hash(&config));
    paths
        .iter()
        .map(|path| {
            let bytes = read_image_file(path)?;
            let (prompt, metadata) = decode_prompt(&bytes, &named(path), half).map_err(|e| e.to_string())?;
            if metadata.config_hash != hash {
                return Err(format!(
                    "{} was tuned for another model (config hash {}), not {} (config hash {hash}); tune a \
                     prompt for this model",
                    path.display(),
                    metadata.config_hash,
                    model.display()
                ));
            }
            Ok(prompt)
        })
        .collect()
}

/// What a tuning run reads and writes, read and checked before the model loads.
struct TunePlan {
    train: Vec<Prompt>,
    val: Vec<Prompt>,
    init: Prompt,
    outputs: Outputs,
    /// The model's half canvas, the prompt's size, and its full canvas (from its config).
    half: (usize, usize),
    image_size: (usize, usize),
    config_hash: String,
    /// What shapes the prompt: a resumed run must have the same.
    record: RunRecord,
}

/// A saved run to continue (`--resume`), read and checked before the model loads.
struct Checkpoint {
    prompt: TunedPrompt,
    optimiser: AdamW,
    saved: PromptMetadata,
}

/// `seggpt tune`: the plan and its checks, the checkpoint to resume, the model, the steps.
pub fn run(args: &TuneArgs) -> CliResult<()> {
    let plan = plan_tune(args)?;
    let checkpoint = if args.resume { Some(read_checkpoint(&plan)?) } else { None };
    let (mut tuner, mut metadata) = start(args, &plan, checkpoint)?;
    if tuner.steps() >= args.steps {
        eprintln!("{} is already at step {} of {}", plan.outputs.prompt.display(), tuner.steps(), args.steps);
        return Ok(());
    }
    let train = prepare(&plan.train, plan.half)?;
    let val = prepare(&plan.val, plan.half)?;
    let (model, device) = load_model(&args.model)?;
    train_steps(args, &plan, &model, &device, (&train, &val), &mut tuner, &mut metadata)?;
    let outputs = &plan.outputs;
    eprintln!(
        "wrote {} (and {}, {}, {}, {})",
        outputs.prompt.display(),
        outputs.optimiser.display(),
        outputs.preview_pixel_values.display(),
        outputs.preview_masks.display(),
        outputs.record.display()
    );
    Ok(())
}

/// Reads every input and checks every output before the model loads.
fn plan_tune(args: &TuneArgs) -> CliResult<TunePlan> {
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
    check_outputs(args, &outputs, &train_paths, &val_paths)?;
    // The config alone gives the prompt's size and the model's hash; the weights load later.
    let config = weights::open_model(&args.model.model).map_err(|e| e.to_string())?.config;
    let record = RunRecord::new(tune_settings(args, &train_paths, &val_paths)?);
    Ok(TunePlan {
        train,
        val,
        init,
        outputs,
        half: config.half_image_size(),
        image_size: config.image_size.hw(),
        config_hash: config_hash(&config),
        record,
    })
}

/// The prompt and the files beside it are rewritten at every checkpoint: none may be a file the
/// run reads (`--out x.safetensors` writes x.prompt_masks.png, which may be a mask), none may be
/// in a pairs folder (the next run would read the previews as images without masks), and the
/// prompt exists exactly when resuming.
fn check_outputs(
    args: &TuneArgs,
    outputs: &Outputs,
    train_paths: &[(PathBuf, PathBuf)],
    val_paths: &[(PathBuf, PathBuf)],
) -> CliResult<()> {
    let (weights_path, config_path) = weights::model_paths(&args.model.model);
    let inputs = train_paths
        .iter()
        .chain(val_paths)
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
    let because = "the previews written beside the prompt would be read as training pairs";
    for (folder, flag) in [(&args.pairs, "--pairs"), (&args.val_pairs, "--val-pairs")] {
        if let Some(folder) = folder {
            record::refuse_output_inside(&args.out, "--out", folder, flag, because)?;
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
    Ok(())
}

/// What shapes the tuned prompt, for the run record: the model, the pairs' contents (in their
/// order, which the batches follow), the initial pair and the hyper-parameters. The number of
/// steps is left out (a resumed run goes on to more), as is how activations are kept (the same
/// gradients either way).
fn tune_settings(
    args: &TuneArgs,
    train_paths: &[(PathBuf, PathBuf)],
    val_paths: &[(PathBuf, PathBuf)],
) -> CliResult<Value> {
    let mut settings = record::model_identity(&args.model.model)?;
    let init = match args.init.as_slice() {
        [image, mask] => json!(pairs_sha256(&[(image.clone(), mask.clone())])?),
        _ => Value::Null,
    };
    let pairs = |paths: &[(PathBuf, PathBuf)]| -> CliResult<Value> {
        if paths.is_empty() {
            return Ok(Value::Null);
        }
        Ok(json!({ "count": paths.len(), "sha256": pairs_sha256(paths)? }))
    };
    let fields = settings.as_object_mut().expect("a model identity is an object");
    fields.insert("pairs".into(), pairs(train_paths)?);
    fields.insert("val_pairs".into(), pairs(val_paths)?);
    fields.insert("init".into(), init);
    fields.insert("num_labels".into(), json!(args.num_labels));
    fields.insert("lr".into(), json!(args.lr));
    fields.insert("weight_decay".into(), json!(args.weight_decay));
    fields.insert("batch".into(), json!(args.batch));
    fields.insert("seed".into(), json!(args.seed));
    fields.insert("embedding_type".into(), json!(args.embedding_type.name()));
    Ok(settings)
}

/// One SHA-256 over the pairs' files, in order: the digest of each image and mask in turn.
fn pairs_sha256(paths: &[(PathBuf, PathBuf)]) -> CliResult<String> {
    let mut hasher = Sha256::new();
    for (image, mask) in paths {
        for file in [image, mask] {
            hasher.update(record::sha256_file(file)?.as_bytes());
            hasher.update(b"\n");
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the saved prompt, its optimiser state and its run record, and refuses, naming the
/// file, one that cannot continue this run: not a checkpoint, another model, a run stopped
/// between its writes, or other settings (the metadata would claim them for every step).
fn read_checkpoint(plan: &TunePlan) -> CliResult<Checkpoint> {
    let outputs = &plan.outputs;
    let file = named(&outputs.prompt);
    let (prompt, saved) =
        decode_prompt(&read_file(&outputs.prompt)?, &file, plan.half).map_err(|e| e.to_string())?;
    if saved.config_hash != plan.config_hash {
        return Err(format!(
            "{file} was tuned with another model (config hash {}, this model {})",
            saved.config_hash, plan.config_hash
        ));
    }
    let optimiser = decode_optimiser(
        &read_file(&outputs.optimiser)?,
        &named(&outputs.optimiser),
        [3, plan.half.0, plan.half.1],
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
    let Some(recorded) = RunRecord::read(&outputs.record)? else {
        return Err(format!(
            "--resume: {} has no run record {} beside it, so the settings it was tuned with cannot be \
             checked; start again without --resume",
            file,
            outputs.record.display()
        ));
    };
    if recorded.settings != plan.record.settings {
        return Err(format!(
            "--resume: {file} was tuned with other settings ({}); give the same ones, or start again \
             with another --out",
            record::differences(&recorded.settings, &plan.record.settings)
        ));
    }
    Ok(Checkpoint { prompt, optimiser, saved })
}

/// The tuner and the prompt's metadata: fresh from the initial pair, or where the checkpoint
/// stopped.
fn start(
    args: &TuneArgs,
    plan: &TunePlan,
    checkpoint: Option<Checkpoint>,
) -> CliResult<(Tuner, PromptMetadata)> {
    let settings = TuneSettings {
        lr: args.lr,
        weight_decay: args.weight_decay,
        batch: args.batch,
        seed: args.seed,
        embedding_type: args.embedding_type,
        activations: args.activations,
    };
    let mut metadata = PromptMetadata {
        config_hash: plan.config_hash.clone(),
        image_size: plan.image_size,
        steps: 0,
        lr: args.lr,
        weight_decay: args.weight_decay,
        batch: args.batch,
        seed: args.seed,
        embedding_type: args.embedding_type,
        train_losses: Vec::new(),
        val_losses: Vec::new(),
    };
    let tuner = match checkpoint {
        Some(Checkpoint { prompt, optimiser, saved }) => {
            eprintln!("resuming {} at step {}", plan.outputs.prompt.display(), saved.steps);
            metadata.train_losses = saved.train_losses;
            metadata.val_losses = saved.val_losses;
            metadata.steps = saved.steps;
            Tuner::resume(&prompt, optimiser, settings)
        }
        None => {
            let (pixel_values, masks) =
                plan.init.prepare(plan.half.0, plan.half.1).map_err(|e| e.to_string())?;
            Tuner::new(&TunedPrompt { pixel_values, masks }, settings)
        }
    };
    Ok((tuner, metadata))
}

/// The AdamW steps up to --steps, with a progress line, validations and checkpoints; Ctrl-C
/// saves and stops after the current step.
fn train_steps(
    args: &TuneArgs,
    plan: &TunePlan,
    model: &SegGpt,
    device: &Device,
    (train, val): (&[TrainingPair], &[TrainingPair]),
    tuner: &mut Tuner,
    metadata: &mut PromptMetadata,
) -> CliResult<()> {
    interrupt::stop_after_current_target()?;
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let first = tuner.steps();
    while tuner.steps() < args.steps {
        let loss =
            tuner.step(model, device, train).map_err(|e| format!("step {}: {e}", tuner.steps() + 1))?;
        metadata.train_losses.push(loss);
        metadata.steps = tuner.steps();
        let step = tuner.steps();
        let last = step == args.steps;
        let mut line = format!("step {step}/{}  loss {loss:.5}", args.steps);
        if !val.is_empty() && (step.is_multiple_of(CHECKPOINT_EVERY) || last) {
            let val_loss = evaluate(model, device, &tuner.prompt(), val, args.batch, args.embedding_type)
                .map_err(|e| format!("validation at step {step}: {e}"))?;
            metadata.val_losses.push((step, val_loss));
            line += &format!("  val {val_loss:.5}");
        }
        let rate = (step - first) as f64 / start.elapsed().as_secs_f64();
        line += &format!("  {rate:.3} steps/s  {} left", clock((args.steps - step) as f64 / rate));
        let stopping = interrupt::requested();
        if step.is_multiple_of(CHECKPOINT_EVERY) || last || stopping {
            save(&plan.outputs, tuner, metadata, &plan.record)?;
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
                plan.outputs.prompt.display()
            );
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
    Ok(())
}
