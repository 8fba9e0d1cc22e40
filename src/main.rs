//! `seggpt`: the native command line over the same library the browser runs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use clap::{Parser, Subcommand, ValueEnum};

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
    /// Segment target images from prompt (image, mask) pairs; writes DIR/<stem>.mask.png and,
    /// with --num-labels, DIR/<stem>.classes.png.
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
        /// Number of classes: masks that are 8-bit class-index PNGs are coloured with the
        /// palette, and class maps are written.
        #[arg(long)]
        num_labels: Option<usize>,
        #[command(flatten)]
        forward: ForwardArgs,
    },
    /// Rewrite any accepted checkpoint as HF-named safetensors.
    Convert {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
        dtype: DTypeArg,
    },
    /// Time the forward pass of a model with random weights (the released ViT-L by default).
    Bench {
        /// A config.json; default: the released ViT-L.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        #[arg(long, default_value_t = 1)]
        prompts: usize,
        #[arg(long, default_value_t = 3)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infer { model, inputs, output, forward } => infer(&model, &inputs, &output, &forward),
        Command::Segment { model, prompt, target, out_dir, num_labels, forward } => {
            segment(&model, &prompt, &target, &out_dir, num_labels, &forward)
        }
        Command::Convert { model, output, dtype } => convert(&model, &output, dtype),
        Command::Bench { config, backend, prompts, runs } => bench(config.as_deref(), backend, prompts, runs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
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

fn infer(model_args: &ModelArgs, inputs: &Path, output: &Path, forward: &ForwardArgs) -> CliResult<()> {
    let (model, device) = load_model(model_args)?;
    let source = SafetensorsSource::from_file(inputs).map_err(|e| format!("{}: {e}", inputs.display()))?;
    let input = |name: &str| -> CliResult<Tensor<4>> {
        let shape =
            source.shape(name).ok_or_else(|| format!("{} has no tensor `{name}`", inputs.display()))?;
        let dims: [usize; 4] = shape
            .clone()
            .try_into()
            .map_err(|_| format!("`{name}` has shape {shape:?}; expected (K, 3, H, W)"))?;
        let values = source.read_f32(name).map_err(|e| e.to_string())?;
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
    let mut out = HostTensors::new();
    out.insert("pred_masks".into(), (dims, values));
    write_file(output, &weights::write_safetensors(&out, StoreDType::F32)?)
}

fn segment(
    model_args: &ModelArgs,
    prompt: &[PathBuf],
    targets: &[PathBuf],
    out_dir: &Path,
    num_labels: Option<usize>,
    forward: &ForwardArgs,
) -> CliResult<()> {
    use seggpt::segment::{Prompt, Segmenter, Target};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let named = |p: &Path| p.display().to_string();
    // Decode every input before the slow model load, so a bad file fails fast.
    let prompts = prompt
        .chunks(2)
        .map(|pair| {
            Prompt::decode(&read(&pair[0])?, &named(&pair[0]), &read(&pair[1])?, &named(&pair[1]), num_labels)
                .map_err(|e| e.to_string())
        })
        .collect::<CliResult<Vec<_>>>()?;
    let decoded = targets
        .iter()
        .map(|t| Target::decode(&read(t)?, &named(t)).map_err(|e| e.to_string()))
        .collect::<CliResult<Vec<_>>>()?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let (model, device) = load_model(model_args)?;
    let segmenter =
        Segmenter::new(&model, &device, &prompts, forward.options()).map_err(|e| e.to_string())?;
    for (path, target) in targets.iter().zip(&decoded) {
        let start = Instant::now();
        let result = segmenter.run(target, num_labels, &mut progress_printer()).map_err(|e| e.to_string())?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("target");
        let mask_path = out_dir.join(format!("{stem}.mask.png"));
        write_file(&mask_path, &result.mask_png().map_err(|e| e.to_string())?)?;
        eprintln!("{} ({:.2} s)", mask_path.display(), start.elapsed().as_secs_f64());
        if let Some(png) = result.classes_png().map_err(|e| e.to_string())? {
            write_file(&out_dir.join(format!("{stem}.classes.png")), &png)?;
        }
    }
    Ok(())
}

fn convert(model: &Path, output: &Path, dtype: DTypeArg) -> CliResult<()> {
    let files = weights::open_model(model).map_err(|e| e.to_string())?;
    // Loading checks names and shapes against the config, so only valid checkpoints convert.
    SegGpt::load(files.source.as_ref(), files.config.clone(), &Device::flex(), MemoryBudget::DEFAULT)
        .map_err(|e| e.to_string())?;
    let tensors = weights::read_all(files.source.as_ref()).map_err(|e| e.to_string())?;
    let dtype = match dtype {
        DTypeArg::F32 => StoreDType::F32,
        DTypeArg::F16 => StoreDType::F16,
    };
    write_file(output, &weights::write_safetensors(&tensors, dtype)?)?;
    let config_path = output.with_file_name("config.json");
    if !config_path.exists() {
        let text = serde_json::to_string_pretty(&files.config).map_err(|e| e.to_string())?;
        write_file(&config_path, text.as_bytes())?;
    }
    eprintln!("wrote {} ({} tensors)", output.display(), tensors.len());
    Ok(())
}

fn bench(config: Option<&Path>, backend: Backend, prompts: usize, runs: usize) -> CliResult<()> {
    let config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            SegGptConfig::from_json(&text).map_err(|e| e.to_string())?
        }
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
        let label = if run == 0 { "warm-up".to_string() } else { format!("run {run}") };
        eprintln!("{label}: {secs:.3} s (checksum {:.4})", values.iter().map(|v| *v as f64).sum::<f64>());
        if run > 0 {
            times.push(secs);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
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

fn write_file(path: &Path, bytes: &[u8]) -> CliResult<()> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
