//! `seggpt`: the native command line over the same library the browser runs.

mod cli {
    pub mod eval;
    pub mod interrupt;
    pub mod memory;
    pub mod output;
    pub mod record;
    pub mod sam;
    pub mod segment;
    pub mod tune;
    pub mod video;
}

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use clap::{Parser, Subcommand, ValueEnum};

use cli::{output, record};

use seggpt::bench::{BenchReport, BenchSetup, RunTimes, SYNTHETIC_SEEDS, synthetic_values};
use seggpt::model::{Samples, Stage, stage_flops};
use seggpt::pipeline::{InputError, MAX_FILE_BYTES, MAX_LABELS};
use seggpt::segment::Prompt;
use seggpt::weights::{self, HostTensors, SafetensorsSource, StoreDType, TensorSource};
use seggpt::{AttentionKernel, EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt, SegGptConfig};

#[derive(Parser)]
#[command(name = "seggpt", version, about = "SegGPT: segment anything from in-context examples")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// HF directory (config.json + model.safetensors), a .safetensors file or an official .pth.
    #[arg(long)]
    model: PathBuf,
    /// Compute backend: burn's CPU backend (flex) or wgpu (Vulkan/Metal/DX12 GPU).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
}

#[derive(clap::Args)]
struct ForwardArgs {
    /// Feature ensemble over prompts [default: official].
    #[arg(long, value_enum)]
    ensemble: Option<Ensemble>,
    #[arg(long, value_enum, default_value_t = EmbeddingType::Instance)]
    embedding_type: EmbeddingType,
}

#[derive(Subcommand)]
enum Command {
    /// Raw forward pass: IN holds pixel_values, prompt_pixel_values, prompt_masks (K,3,H/2,W);
    /// OUT gets pred_masks (K,3,H,W).
    Infer {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        forward: ForwardArgs,
    },
    /// Segment target images from prompt (image, mask) pairs. Each target's results go to
    /// DIR/<path>.mask.png and, with --num-labels, DIR/<path>.classes.png (or what --export
    /// asks for), where <path> is the target's path below the folder common to all targets. Safe
    /// to interrupt (Ctrl-C) and to run again: every file is written whole or not at all.
    Segment(cli::segment::SegmentArgs),
    /// A mask from clicks or a box with SAM (Segment Anything): --point X,Y (on the object),
    /// --point X,Y,0 (off it), --box X0,Y0,X1,Y1; prints the predicted IoU of each mask.
    Sam(cli::sam::SamArgs),
    /// Merge the COCO files of `segment --export coco` runs (every share of a --shard run) into one.
    MergeLabels(cli::segment::MergeArgs),
    Video(cli::video::VideoArgs),
    /// Score the model on a benchmark's protocol (few-shot: FSS-1000 / episode lists; video: DAVIS 2017).
    Eval(cli::eval::EvalArgs),
    /// Rewrite any accepted checkpoint as HF-named safetensors: one file, or with --shard-size a
    /// folder of shards and their `model.safetensors.index.json` (the hub's layout).
    Convert {
        #[arg(long)]
        model: PathBuf,
        /// The output file; with --shard-size, the output folder.
        #[arg(long)]
        output: PathBuf,
        /// Shards of at most this size (e.g. 90MB, 25MiB; a tensor larger than that is a shard of its
        /// own), so that no file passes a static host's limit.
        #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
        shard_size: Option<u64>,
        #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
        dtype: DTypeArg,
        /// With --dtype f16 or q8: clamp values stored as f16 beyond its range (65504) instead of
        /// refusing them.
        #[arg(long)]
        clamp_f16: bool,
    },
    /// Time the forward pass of a model with random weights (the released ViT-L by default).
    Bench {
        /// A config.json; default: the released ViT-L.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// Prompts per forward pass (1 to 64).
        #[arg(long, default_value_t = 1, value_parser = parse_bench_prompts)]
        prompts: usize,
        /// Timed runs after the warm-up (at least 1).
        #[arg(long, default_value_t = 3, value_parser = parse_runs)]
        runs: usize,
        /// Also time each stage (embeddings, blocks, decoder), waiting for the device after each.
        #[arg(long)]
        profile: bool,
        /// The encoder blocks' attention: the fused kernel (wgpu only; the CPU backend always takes
        /// the reference path) or the reference path (docs/MODEL.md §21).
        #[arg(long, value_enum, default_value_t = AttentionKernel::default())]
        attention: AttentionKernel,
        /// Time these weights (as `infer --model`) instead of random ones of --config.
        #[arg(long, conflicts_with = "config")]
        model: Option<PathBuf>,
        /// Time on these inputs (as `infer --inputs`; K from the file) instead of synthetic ones.
        #[arg(long)]
        inputs: Option<PathBuf>,
        /// Write the last run's `pred_masks` (sample 0, f32) here, to compare with another runtime.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Learn a prompt pair from training pairs, the model frozen (in-context tuning).
    Tune(cli::tune::TuneArgs),
    /// Time SAM (click to select): the image embedding and one click's decoding, with random
    /// weights of a SAM config (default: sam-vit-base's) or a SAM directory's weights.
    BenchSam(cli::sam::BenchSamArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Cpu,
    Wgpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum DTypeArg {
    F32,
    F16,
    /// Int8 weight matrices with per-row f32 scales, the rest f16: a quarter of f32's size
    /// (docs/MODEL.md §17).
    Q8,
}

impl ForwardArgs {
    fn options(&self) -> ForwardOptions {
        ForwardOptions {
            ensemble: self.ensemble,
            embedding_type: self.embedding_type,
            budget: MemoryBudget::DEFAULT,
            ..ForwardOptions::default()
        }
    }
}

type CliResult<T> = Result<T, String>;

/// Most prompts `bench` stacks, as the prompt-count search of the model does.
const MAX_BENCH_PROMPTS: usize = 64;
/// Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
const EXIT_INTERRUPTED: u8 = 130;

fn parse_count(text: &str, min: usize, max: usize, why: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(format!("must be a whole number, at least {min}{why}")),
        _ => Err(format!("must be a whole number from {min} to {max}{why}")),
    }
}

fn parse_num_labels(text: &str) -> Result<usize, String> {
    parse_count(text, 1, MAX_LABELS, " (class maps are 8-bit, and 0 is the background)")
}

fn parse_runs(text: &str) -> Result<usize, String> {
    parse_count(text, 1, usize::MAX, "")
}

fn parse_bench_prompts(text: &str) -> Result<usize, String> {
    parse_count(text, 1, MAX_BENCH_PROMPTS, "")
}

/// How a `segment` run ended without an error.
enum Finished {
    All,
    Interrupted {
        written: usize,
        total: usize,
    },
    InterruptedFrames {
        written: usize,
        total: usize,
    },
    /// An `eval` run stopped by Ctrl-C: the same command resumes it.
    Resumable {
        done: usize,
        total: usize,
    },
}

fn main() -> ExitCode {
    cli::memory::reuse_freed_memory();
    let cli = Cli::parse();
    let uses_wgpu = match &cli.command {
        Command::Infer { model, .. } => matches!(model.backend, Backend::Wgpu),
        Command::Segment(args) => args.uses_wgpu(),
        Command::Sam(args) => args.uses_wgpu(),
        Command::Bench { backend, .. } => matches!(backend, Backend::Wgpu),
        Command::Video(args) => matches!(args.model.backend, Backend::Wgpu),
        Command::Tune(args) => args.uses_wgpu(),
        Command::BenchSam(args) => args.uses_wgpu(),
        Command::Eval(args) => matches!(args.model().backend, Backend::Wgpu),
        Command::Convert { .. } | Command::MergeLabels(_) => false,
    };
    if uses_wgpu {
        quiet_wayland_probe();
    }
    let result = match cli.command {
        Command::Infer { model, inputs, output, forward } => {
            infer(&model, &inputs, &output, &forward).map(|()| Finished::All)
        }
        Command::Segment(args) => cli::segment::run(args),
        Command::Sam(args) => cli::sam::run(&args).map(|()| Finished::All),
        Command::MergeLabels(args) => cli::segment::merge_labels(args),
        Command::Video(args) => cli::video::run(&args),
        Command::Tune(args) => cli::tune::run(&args).map(|()| Finished::All),
        Command::BenchSam(args) => cli::sam::bench(&args).map(|()| Finished::All),
        Command::Eval(args) => cli::eval::run(&args),
        Command::Convert { model, output, shard_size, dtype, clamp_f16 } => {
            convert(&model, &output, shard_size, dtype, clamp_f16).map(|()| Finished::All)
        }
        Command::Bench { config, backend, prompts, runs, profile, attention, model, inputs, output } => {
            let files = BenchFiles { model, inputs, output };
            bench(BenchRequest { config, backend, prompts, runs, profile, attention, files })
                .map(|()| Finished::All)
        }
    };
    match result {
        Ok(Finished::All) => ExitCode::SUCCESS,
        Ok(Finished::Interrupted { written, total }) => {
            eprintln!("interrupted: {written} of {total} targets written");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Ok(Finished::InterruptedFrames { written, total }) => {
            eprintln!("interrupted: {written} of {total} frames written");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Ok(Finished::Resumable { done, total }) => {
            eprintln!("interrupted: {done} of {total} done; run the same command again to resume");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan device-selection layer asks the Wayland compositor for the default GPU whenever
/// an instance enables Wayland surfaces, which wgpu always does; without `XDG_RUNTIME_DIR`
/// libwayland then prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
/// once per instance. Without that variable no compositor can be reached anyway, so the layer
/// (whose `disable_environment` is `NODEVICE_SELECT=1`) is switched off for this process only.
/// A user who picks a GPU through the layer (`MESA_VK_DEVICE_SELECT`, `DRI_PRIME`) keeps it.
fn quiet_wayland_probe() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if ["XDG_RUNTIME_DIR", "NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT", "DRI_PRIME"].into_iter().all(unset) {
        // SAFETY: called from `main` before anything has started a thread.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn device(backend: Backend) -> Device {
    match backend {
        Backend::Cpu => Device::flex(),
        Backend::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
    }
}

fn load_model(args: &ModelArgs) -> CliResult<(SegGpt, Device)> {
    let start = Instant::now();
    eprintln!("loading {} ...", args.model.display());
    let files = weights::open_model(&args.model).map_err(|e| e.to_string())?;
    let device = device(args.backend);
    let model = SegGpt::load(files.source.as_ref(), files.config, &device, MemoryBudget::DEFAULT)
        .map_err(|e| e.to_string())?;
    eprintln!("loaded in {:.1} s", start.elapsed().as_secs_f64());
    Ok((model, device))
}

/// Per-block progress: one updating line on a terminal, a line per quarter otherwise.
fn progress_printer() -> impl FnMut(usize, usize) {
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        if terminal {
            eprint!("\rforward: block {done}/{total}{}", if done == total { "\n" } else { "" });
        } else if done * 4 % total < 4 || done == total {
            eprintln!("forward: block {done}/{total}");
        }
    }
}

fn count_non_finite(values: &[f32]) -> usize {
    values.iter().filter(|v| !v.is_finite()).count()
}

/// Errors unless every value is finite: NaN or infinity in an output means broken weights or
/// config, and would be written as black pixels or garbage numbers.
fn check_finite_output(values: &[f32]) -> CliResult<()> {
    match count_non_finite(values) {
        0 => Ok(()),
        count => Err(format!(
            "the model's output holds {count} non-finite value(s) (NaN or infinity) of {}; the weights or \
             the config are broken, so nothing is written",
            values.len()
        )),
    }
}

fn infer(model_args: &ModelArgs, inputs: &Path, output: &Path, forward: &ForwardArgs) -> CliResult<()> {
    let mut read = record::model_files(&model_args.model);
    read.push(inputs.to_path_buf());
    record::refuse_output_over_inputs(output, &read)?;
    let source = SafetensorsSource::from_file(inputs).map_err(|e| format!("{}: {e}", inputs.display()))?;
    check_writable(output)?;
    let (model, device) = load_model(model_args)?;
    let [pixel_values, prompt_pixel_values, prompt_masks] = read_inputs(&source, inputs, &device)?;
    let start = Instant::now();
    let pred = model
        .forward(pixel_values, prompt_pixel_values, prompt_masks, forward.options(), &mut progress_printer())
        .map_err(|e| e.to_string())?;
    let dims = pred.dims().to_vec();
    let values = pred.into_data().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    eprintln!("forward in {:.2} s", start.elapsed().as_secs_f64());
    check_finite_output(&values)?;
    let mut out = HostTensors::new();
    out.insert("pred_masks".into(), (dims, values));
    write_atomically(output, &weights::write_safetensors(&out, StoreDType::F32)?)
}

/// `pixel_values`, `prompt_pixel_values` and `prompt_masks` of an inputs file (`path`), checked finite.
fn read_inputs(source: &SafetensorsSource, path: &Path, device: &Device) -> CliResult<[Tensor<4>; 3]> {
    let input = |name: &str| -> CliResult<Tensor<4>> {
        let shape = source.shape(name).ok_or_else(|| format!("{} has no tensor `{name}`", path.display()))?;
        let dims: [usize; 4] = shape
            .clone()
            .try_into()
            .map_err(|_| format!("`{name}` has shape {shape:?}; expected (K, 3, H, W)"))?;
        let values = source.read_f32(name).map_err(|e| e.to_string())?;
        match count_non_finite(&values) {
            0 => {}
            count => {
                return Err(format!("{}: `{name}` holds {count} NaN or infinite value(s)", path.display()));
            }
        }
        Ok(Tensor::from_data(TensorData::new(values, dims), device))
    };
    Ok([input("pixel_values")?, input("prompt_pixel_values")?, input("prompt_masks")?])
}

/// Decodes `--prompt IMAGE MASK` pairs (`paths` holds them in order), naming the file on error.
fn decode_prompts(paths: &[PathBuf], num_labels: Option<usize>) -> CliResult<Vec<Prompt>> {
    paths
        .chunks(2)
        .map(|pair| {
            let (image, mask) = (&pair[0], &pair[1]);
            Prompt::decode(
                &read_image_file(image)?,
                &named(image),
                &read_image_file(mask)?,
                &named(mask),
                num_labels,
            )
            .map_err(|e| e.to_string())
        })
        .collect()
}

/// Reads an input image file: a regular file of at most [`MAX_FILE_BYTES`], so that a named
/// pipe, a device or a huge file is refused before it is opened or read.
fn read_image_file(path: &Path) -> CliResult<Vec<u8>> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let len = weights::regular_file_len(path).map_err(|e| e.to_string())?;
    let too_large = |bytes| InputError::FileTooLarge { name: named(path), bytes, max: MAX_FILE_BYTES };
    if len > MAX_FILE_BYTES {
        return Err(too_large(len).to_string());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64).to_string());
    }
    Ok(bytes)
}

fn named(path: &Path) -> String {
    path.display().to_string()
}

fn convert(
    model: &Path,
    output: &Path,
    shard_size: Option<u64>,
    dtype: DTypeArg,
    clamp_f16: bool,
) -> CliResult<()> {
    let inputs = record::model_files(model);
    record::refuse_output_over_inputs(output, &inputs)?;
    // Opening checks the config and every tensor name and shape; reading checks every value.
    let files = weights::open_model(model).map_err(|e| e.to_string())?;
    let config_path = match shard_size {
        None => {
            check_writable(output)?;
            output.with_file_name("config.json")
        }
        Some(_) => {
            check_shard_folder(output, &inputs)?;
            output.join("config.json")
        }
    };
    let mut tensors = weights::read_all(files.source.as_ref()).map_err(|e| e.to_string())?;
    let dtype = match dtype {
        DTypeArg::F32 => StoreDType::F32,
        DTypeArg::F16 => StoreDType::F16,
        DTypeArg::Q8 => StoreDType::Q8,
    };
    if dtype != StoreDType::F32 && clamp_f16 {
        // q8 stores its matrices as int8, which hold any finite value: only the f16 part is clamped.
        let mut stored_f16: weights::HostTensors = tensors
            .extract_if(.., |name, (shape, _)| {
                dtype == StoreDType::F16 || !weights::q8::is_quantized(name, shape)
            })
            .collect();
        for overflow in weights::f16_overflows(&stored_f16) {
            eprintln!("clamped to f16's range: {overflow}");
        }
        weights::clamp_to_f16(&mut stored_f16);
        tensors.append(&mut stored_f16);
    }
    let written = match shard_size {
        None => {
            write_atomically(output, &checkpoint_bytes(&tensors, dtype)?)?;
            output.display().to_string()
        }
        Some(max) => write_shards(output, &tensors, dtype, max)?,
    };
    if !config_path.exists() {
        let text = serde_json::to_string_pretty(&files.config).map_err(|e| e.to_string())?;
        write_atomically(&config_path, text.as_bytes())?;
    }
    eprintln!("wrote {written} ({} tensors)", tensors.len());
    Ok(())
}

/// One safetensors file of `tensors` in `dtype`, refusing values f16 cannot hold.
fn checkpoint_bytes(tensors: &weights::HostTensors, dtype: StoreDType) -> CliResult<Vec<u8>> {
    weights::write_safetensors(tensors, dtype).map_err(|e| {
        if dtype != StoreDType::F32 {
            format!("{e}; keep --dtype f32, or pass --clamp-f16 to clamp them")
        } else {
            e
        }
    })
}

/// The shards' folder: created if missing; refused if it holds a `model.safetensors`, which every
/// reader takes before an index, or if it is one of the inputs' folders (the shards would replace
/// what this run reads).
fn check_shard_folder(folder: &Path, inputs: &[PathBuf]) -> CliResult<()> {
    if folder.exists() && !folder.is_dir() {
        return Err(format!("with --shard-size the output is a folder, and {} is a file", folder.display()));
    }
    let resolved = output::resolve(folder);
    if inputs.iter().any(|input| output::resolve(folder_of(input)) == resolved) {
        return Err(format!(
            "the output folder {} holds the model this run reads: choose another folder",
            folder.display()
        ));
    }
    if folder.join("model.safetensors").exists() {
        return Err(format!(
            "{} holds a model.safetensors, which readers take before shards: choose an empty folder",
            folder.display()
        ));
    }
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    output::temp_file_in(folder).map(drop).map_err(|e| format!("cannot write in {}: {e}", folder.display()))
}

/// Bytes a tensor takes in a checkpoint of `dtype` (q8 matrices: a byte a value and an f32 scale a row).
fn stored_bytes(name: &str, shape: &[usize], dtype: StoreDType) -> u64 {
    let count: u64 = shape.iter().map(|&d| d as u64).product();
    match dtype {
        StoreDType::F32 => 4 * count,
        StoreDType::F16 => 2 * count,
        StoreDType::Q8 if weights::q8::is_quantized(name, shape) => count + 4 * shape[0] as u64,
        StoreDType::Q8 => 2 * count,
    }
}

/// The tensors as shards of at most `max` bytes of data each, written one by one, then the index
/// (last, so that a run stopped half-way leaves no index naming a shard that is not there).
fn write_shards(
    folder: &Path,
    tensors: &weights::HostTensors,
    dtype: StoreDType,
    max: u64,
) -> CliResult<String> {
    let sizes: Vec<(String, u64)> =
        tensors.iter().map(|(name, (shape, _))| (name.clone(), stored_bytes(name, shape, dtype))).collect();
    let groups = weights::plan_shards(&sizes, max);
    for (name, bytes) in sizes.iter().filter(|(_, bytes)| *bytes > max) {
        eprintln!(
            "note: {name} alone is {bytes} bytes, more than --shard-size: its shard holds it alone and is larger"
        );
    }
    let mut weight_map = std::collections::BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let file = weights::shard_file_name(i, groups.len());
        let part: weights::HostTensors =
            group.iter().map(|name| (name.clone(), tensors[name].clone())).collect();
        write_atomically(&folder.join(&file), &checkpoint_bytes(&part, dtype)?)?;
        weight_map.extend(group.iter().map(|name| (name.clone(), file.clone())));
    }
    let total: u64 = sizes.iter().map(|(_, b)| b).sum();
    let index = weights::ShardIndex {
        metadata: [("total_size".to_string(), serde_json::json!(total))].into_iter().collect(),
        weight_map,
    };
    let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
    write_atomically(&folder.join(weights::INDEX_FILE), text.as_bytes())?;
    Ok(format!("{} shards and {} in {}", groups.len(), weights::INDEX_FILE, folder.display()))
}

/// `90MB`, `25MiB`, `100KB`, `1GB`, or bytes.
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err("a size such as 90MB, 25MiB or 500000 (bytes)".into()),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n * factor as f64 >= 1.0 => Ok((n * factor as f64) as u64),
        _ => Err("a size such as 90MB, 25MiB or 500000 (bytes), at least one byte".into()),
    }
}

/// Real weights, inputs and an output file for `bench`, instead of random ones and no output.
struct BenchFiles {
    model: Option<PathBuf>,
    inputs: Option<PathBuf>,
    output: Option<PathBuf>,
}

/// What `bench` was asked to time.
struct BenchRequest {
    config: Option<PathBuf>,
    backend: Backend,
    prompts: usize,
    runs: usize,
    profile: bool,
    attention: AttentionKernel,
    files: BenchFiles,
}

/// The timed forward passes of one `bench` run.
struct BenchTimes {
    times: Vec<f64>,
    runs: Vec<RunTimes>,
    last_values: Vec<f32>,
}

/// `seggpt bench`: checks, the model, the timed forward passes, the optional output, the report.
fn bench(request: BenchRequest) -> CliResult<()> {
    // The kernel is a cubecl shader: the CPU backend takes the reference path whatever was asked,
    // and the report says so.
    let attention = match request.backend {
        Backend::Cpu => AttentionKernel::Reference,
        Backend::Wgpu => request.attention,
    };
    check_bench_output(&request)?;
    let (model, device) = bench_model(&request)?;
    let given = match &request.files.inputs {
        Some(path) => {
            let source =
                SafetensorsSource::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(read_inputs(&source, path, &device)?)
        }
        None => None,
    };
    let prompts = given.as_ref().map_or(request.prompts, |inputs| inputs[0].dims()[0]);
    let options = ForwardOptions { attention, ..ForwardOptions::default() };
    let timed = time_forwards(&model, &device, &request, given, options)?;
    let (h, w) = model.config().half_image_size();
    if let Some(output) = &request.files.output {
        let mut out = HostTensors::new();
        out.insert("pred_masks".into(), (vec![1, 3, 2 * h, w], timed.last_values.clone()));
        write_atomically(output, &weights::write_safetensors(&out, StoreDType::F32)?)?;
    }
    report_bench(&request, model.config(), prompts, attention, &timed)
}

/// The output file (if any) must be writable and must not be one of the files read.
fn check_bench_output(request: &BenchRequest) -> CliResult<()> {
    let Some(output) = &request.files.output else { return Ok(()) };
    let mut read: Vec<PathBuf> = request.files.model.as_deref().map(record::model_files).unwrap_or_default();
    read.extend(request.files.inputs.iter().chain(&request.config).cloned());
    record::refuse_output_over_inputs(output, &read)?;
    check_writable(output)
}

/// The model to time: the given weights, or random ones of the config (the released ViT-L by default).
fn bench_model(request: &BenchRequest) -> CliResult<(SegGpt, Device)> {
    if let Some(path) = &request.files.model {
        return load_model(&ModelArgs { model: path.clone(), backend: request.backend });
    }
    let config = match &request.config {
        Some(path) => weights::read_config(path).map_err(|e| e.to_string())?,
        None => SegGptConfig::default(),
    };
    let device = device(request.backend);
    let start = Instant::now();
    let random = weights::RandomSource::new(&config, 0).map_err(|e| e.to_string())?;
    let model = SegGpt::load(&random, config, &device, MemoryBudget::DEFAULT).map_err(|e| e.to_string())?;
    eprintln!("random weights loaded in {:.1} s", start.elapsed().as_secs_f64());
    Ok((model, device))
}

/// A warm-up and `request.runs` timed forward passes, each on fresh inputs, with the output's
/// values taken inside the timed region (native reads are lazy: the copy would run later).
fn time_forwards(
    model: &SegGpt,
    device: &Device,
    request: &BenchRequest,
    given: Option<[Tensor<4>; 3]>,
    options: ForwardOptions,
) -> CliResult<BenchTimes> {
    let (h, w) = model.config().half_image_size();
    let prompts = request.prompts;
    let synthetic = |seed: f32| {
        let values = synthetic_values(prompts * 3 * h * w, seed);
        Tensor::<4>::from_data(TensorData::new(values, [prompts, 3, h, w]), device)
    };
    let input = || given.clone().unwrap_or_else(|| SYNTHETIC_SEEDS.map(synthetic));
    let mut timed = BenchTimes { times: Vec::new(), runs: Vec::new(), last_values: Vec::new() };
    for run in 0..=request.runs {
        let inputs = input();
        let start = Instant::now();
        let mut stages = [0.0f64; 3];
        let mut last = start;
        let mut stage_done = |stage: Stage| {
            if request.profile {
                if let Err(e) = device.sync() {
                    eprintln!("waiting for the device failed: {e:?}");
                }
                let now = Instant::now();
                stages[stage as usize] = (now - last).as_secs_f64();
                last = now;
            }
        };
        // What `segment` runs with the default (official) ensemble: sample 0 decoded alone.
        let pred = model
            .forward_stages(inputs, options, Samples::First, &mut |_, _| {}, &mut stage_done)
            .map_err(|e| e.to_string())?;
        let values = pred.into_data().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        let secs = start.elapsed().as_secs_f64();
        check_finite_output(&values)?;
        let label = if run == 0 { "warm-up".to_string() } else { format!("run {run}") };
        let checksum = values.iter().map(|v| *v as f64).sum::<f64>();
        let per_stage: Vec<String> = Stage::ALL
            .iter()
            .filter(|_| request.profile)
            .map(|s| format!(" {} {:.3} s", s.name(), stages[*s as usize]))
            .collect();
        eprintln!("{label}: {secs:.3} s{} (checksum {checksum:.4})", per_stage.concat());
        if run > 0 {
            timed.times.push(secs);
            timed.runs.push(RunTimes { total_s: secs, stages_s: stages.to_vec() });
        }
        timed.last_values = values;
    }
    Ok(timed)
}

/// The per-stage table (with --profile) and the summary line.
fn report_bench(
    request: &BenchRequest,
    config: &SegGptConfig,
    prompts: usize,
    attention: AttentionKernel,
    timed: &BenchTimes,
) -> CliResult<()> {
    let flops = stage_flops(config, prompts, Samples::First);
    // `runs` is at least 1, so `times` is never empty.
    let mean = timed.times.iter().sum::<f64>() / timed.times.len() as f64;
    let min = timed.times.iter().cloned().fold(f64::INFINITY, f64::min);
    let total_flops: u64 = flops.iter().map(|(_, f)| f).sum();
    let backend_name = match request.backend {
        Backend::Cpu => "cpu(flex)",
        Backend::Wgpu => "wgpu",
    };
    if request.profile {
        let stage_flops: Vec<(&str, u64)> = flops.iter().map(|(stage, f)| (stage.name(), *f)).collect();
        let setup = BenchSetup {
            adapter: backend_name.to_string(),
            dtype: "f32".into(),
            attention,
            prompts,
            canvas: config.image_size.hw().into(),
        };
        for line in BenchReport::new(setup, &stage_flops, &timed.runs)?.lines() {
            println!("{line}");
        }
    }
    println!(
        "seggpt bench: backend={backend_name} attention={} prompts={prompts} runs={} mean={mean:.3}s \
         min={min:.3}s flops={:.3}GFLOP rate={:.2}GFLOP/s",
        attention.name(),
        request.runs,
        total_flops as f64 / 1e9,
        total_flops as f64 / 1e9 / mean
    );
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Errors unless a file can be created beside `path`, so that an output that cannot be written
/// fails before the work, not after it.
fn check_writable(path: &Path) -> CliResult<()> {
    if path.is_dir() {
        return Err(format!("the output {} is a folder", path.display()));
    }
    output::temp_file_in(folder_of(path))
        .map(drop)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `bytes` to a temporary file in `path`'s folder, flushes it to disk and renames it over
/// `path`: the file is there whole or not at all, and an earlier result under that name
/// survives anything that stops this write (Ctrl-C, a full disk, a crash).
fn write_atomically(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = output::temp_file_in(folder_of(path)).map_err(cannot)?;
    file.write_all(bytes).map_err(cannot)?;
    file.as_file().sync_all().map_err(cannot)?;
    file.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}
