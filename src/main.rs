//! `seggpt`: the native command line over the same library the browser runs.

mod cli {
    pub mod interrupt;
    pub mod output;
    pub mod video;
}

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use clap::{Parser, Subcommand, ValueEnum};

use cli::{interrupt, output};

use seggpt::pipeline::{InputError, MAX_FILE_BYTES, MAX_LABELS, check_image};
use seggpt::segment::{Prompt, Segmenter, Target};
use seggpt::weights::{self, HostTensors, SafetensorsSource, StoreDType, TensorSource};
use seggpt::{EmbeddingType, Ensemble, ForwardOptions, MemoryBudget, SegGpt, SegGptConfig};

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
    /// DIR/<path>.mask.png and, with --num-labels, DIR/<path>.classes.png, where <path> is the
    /// target's path below the folder common to all targets. Safe to interrupt (Ctrl-C) and
    /// to run again: every file is written whole or not at all.
    Segment {
        #[command(flatten)]
        model: ModelArgs,
        /// A prompt image and its mask (RGB colours, or class indices with --num-labels).
        #[arg(long, num_args = 2, value_names = ["IMAGE", "MASK"], required = true)]
        prompt: Vec<PathBuf>,
        #[arg(long, required = true)]
        target: Vec<PathBuf>,
        #[arg(long)]
        out_dir: PathBuf,
        /// Number of classes (1 to 255): masks that are 8-bit class-index PNGs are coloured
        /// with the palette, and class maps are written.
        #[arg(long, value_parser = parse_num_labels)]
        num_labels: Option<usize>,
        #[command(flatten)]
        forward: ForwardArgs,
    },
    Video(cli::video::VideoArgs),
    /// Rewrite any accepted checkpoint as HF-named safetensors.
    Convert {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
        dtype: DTypeArg,
        /// With --dtype f16: clamp values beyond f16's range (65504) instead of refusing them.
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
    },
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
}

impl ForwardArgs {
    fn options(&self) -> ForwardOptions {
        ForwardOptions {
            ensemble: self.ensemble,
            embedding_type: self.embedding_type,
            budget: MemoryBudget::DEFAULT,
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
    Interrupted { written: usize, total: usize },
    InterruptedFrames { written: usize, total: usize },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let uses_wgpu = match &cli.command {
        Command::Infer { model, .. } | Command::Segment { model, .. } => {
            matches!(model.backend, Backend::Wgpu)
        }
        Command::Bench { backend, .. } => matches!(backend, Backend::Wgpu),
        Command::Video(args) => matches!(args.model.backend, Backend::Wgpu),
        Command::Convert { .. } => false,
    };
    if uses_wgpu {
        quiet_wayland_probe();
    }
    let result = match cli.command {
        Command::Infer { model, inputs, output, forward } => {
            infer(&model, &inputs, &output, &forward).map(|()| Finished::All)
        }
        Command::Segment { model, prompt, target, out_dir, num_labels, forward } => {
            segment(&model, &prompt, &target, &out_dir, num_labels, &forward)
        }
        Command::Video(args) => cli::video::run(&args),
        Command::Convert { model, output, dtype, clamp_f16 } => {
            convert(&model, &output, dtype, clamp_f16).map(|()| Finished::All)
        }
        Command::Bench { config, backend, prompts, runs } => {
            bench(config.as_deref(), backend, prompts, runs).map(|()| Finished::All)
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
    let source = SafetensorsSource::from_file(inputs).map_err(|e| format!("{}: {e}", inputs.display()))?;
    check_writable(output)?;
    let (model, device) = load_model(model_args)?;
    let input = |name: &str| -> CliResult<Tensor<4>> {
        let shape =
            source.shape(name).ok_or_else(|| format!("{} has no tensor `{name}`", inputs.display()))?;
        let dims: [usize; 4] = shape
            .clone()
            .try_into()
            .map_err(|_| format!("`{name}` has shape {shape:?}; expected (K, 3, H, W)"))?;
        let values = source.read_f32(name).map_err(|e| e.to_string())?;
        match count_non_finite(&values) {
            0 => {}
            count => {
                return Err(format!("{}: `{name}` holds {count} NaN or infinite value(s)", inputs.display()));
            }
        }
        Ok(Tensor::from_data(TensorData::new(values, dims), &device))
    };
    let (pixel_values, prompt_pixel_values, prompt_masks) =
        (input("pixel_values")?, input("prompt_pixel_values")?, input("prompt_masks")?);
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

fn segment(
    model_args: &ModelArgs,
    prompt: &[PathBuf],
    targets: &[PathBuf],
    out_dir: &Path,
    num_labels: Option<usize>,
    forward: &ForwardArgs,
) -> CliResult<Finished> {
    // Everything that can be checked is checked before the slow model load: prompts are decoded
    // whole (they are few and needed anyway), targets get the cheap checks (a regular file, a
    // complete PNG or JPEG of an acceptable size), outputs are planned and their folders made
    // and tried. Targets are decoded one at a time later, so memory does not grow with their
    // number.
    let prompts = prompt
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
        .collect::<CliResult<Vec<_>>>()?;
    for target in targets {
        check_image(&read_image_file(target)?, &named(target)).map_err(|e| e.to_string())?;
    }
    let (weights_path, config_path) = weights::model_paths(&model_args.model);
    let inputs: Vec<&Path> = prompt
        .iter()
        .chain(targets)
        .map(PathBuf::as_path)
        .chain([model_args.model.as_path(), &weights_path, &config_path])
        .collect();
    let plan = output::plan(targets, out_dir, num_labels.is_some(), &inputs)?;
    output::prepare_folders(out_dir, &plan)?;

    interrupt::stop_after_current_target()?;
    let (model, device) = load_model(model_args)?;
    let segmenter =
        Segmenter::new(&model, &device, &prompts, forward.options()).map_err(|e| e.to_string())?;
    let total = plan.len();
    for (written, planned) in plan.iter().enumerate() {
        if interrupt::requested() {
            return Ok(Finished::Interrupted { written, total });
        }
        let start = Instant::now();
        let name = named(&planned.target);
        let run_one = || -> CliResult<()> {
            let target =
                Target::decode(&read_image_file(&planned.target)?, &name).map_err(|e| e.to_string())?;
            let result = segmenter
                .run(&target, num_labels, &mut progress_printer())
                .map_err(|e| format!("{name}: {e}"))?;
            write_atomically(&planned.mask, &result.mask_png().map_err(|e| e.to_string())?)?;
            if let (Some(path), Some(png)) =
                (&planned.classes, result.classes_png().map_err(|e| e.to_string())?)
            {
                write_atomically(path, &png)?;
            }
            Ok(())
        };
        run_one().map_err(|e| format!("{e} ({written} of {total} targets written)"))?;
        eprintln!("{} ({:.2} s)", planned.mask.display(), start.elapsed().as_secs_f64());
    }
    Ok(Finished::All)
}

fn convert(model: &Path, output: &Path, dtype: DTypeArg, clamp_f16: bool) -> CliResult<()> {
    // Opening checks the config and every tensor name and shape; reading checks every value.
    let files = weights::open_model(model).map_err(|e| e.to_string())?;
    check_writable(output)?;
    let mut tensors = weights::read_all(files.source.as_ref()).map_err(|e| e.to_string())?;
    let dtype = match dtype {
        DTypeArg::F32 => StoreDType::F32,
        DTypeArg::F16 => StoreDType::F16,
    };
    if dtype == StoreDType::F16 && clamp_f16 {
        for overflow in weights::f16_overflows(&tensors) {
            eprintln!("clamped to f16's range: {overflow}");
        }
        weights::clamp_to_f16(&mut tensors);
    }
    let bytes = weights::write_safetensors(&tensors, dtype).map_err(|e| {
        if dtype == StoreDType::F16 {
            format!("{e}; keep --dtype f32, or pass --clamp-f16 to clamp them")
        } else {
            e
        }
    })?;
    write_atomically(output, &bytes)?;
    let config_path = output.with_file_name("config.json");
    if !config_path.exists() {
        let text = serde_json::to_string_pretty(&files.config).map_err(|e| e.to_string())?;
        write_atomically(&config_path, text.as_bytes())?;
    }
    eprintln!("wrote {} ({} tensors)", output.display(), tensors.len());
    Ok(())
}

fn bench(config: Option<&Path>, backend: Backend, prompts: usize, runs: usize) -> CliResult<()> {
    let config = match config {
        Some(path) => weights::read_config(path).map_err(|e| e.to_string())?,
        None => SegGptConfig::default(),
    };
    let device = device(backend);
    let start = Instant::now();
    let random = weights::RandomSource::new(&config, 0).map_err(|e| e.to_string())?;
    let model =
        SegGpt::load(&random, config.clone(), &device, MemoryBudget::DEFAULT).map_err(|e| e.to_string())?;
    eprintln!("random weights loaded in {:.1} s", start.elapsed().as_secs_f64());
    let (h, w) = config.half_image_size();
    let input = |seed: f32| {
        let n = prompts * 3 * h * w;
        let values: Vec<f32> = (0..n).map(|i| ((i as f32 * 0.618 + seed).fract() - 0.5) * 4.0).collect();
        Tensor::<4>::from_data(TensorData::new(values, [prompts, 3, h, w]), &device)
    };
    let mut times = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let pred = model
            .forward(input(0.1), input(0.2), input(0.3), ForwardOptions::default(), &mut |_, _| {})
            .map_err(|e| e.to_string())?;
        let values = pred.into_data().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        let secs = start.elapsed().as_secs_f64();
        check_finite_output(&values)?;
        let label = if run == 0 { "warm-up".to_string() } else { format!("run {run}") };
        eprintln!("{label}: {secs:.3} s (checksum {:.4})", values.iter().map(|v| *v as f64).sum::<f64>());
        if run > 0 {
            times.push(secs);
        }
    }
    // `runs` is at least 1, so `times` is never empty.
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "seggpt bench: backend={} prompts={prompts} runs={runs} mean={mean:.3}s min={min:.3}s",
        match backend {
            Backend::Cpu => "cpu(flex)",
            Backend::Wgpu => "wgpu",
        }
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
