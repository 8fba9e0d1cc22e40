//! `seggpt sam`: a mask from clicks or a box with SAM (docs/MODEL.md §25), written as a PNG.

use std::path::{Path, PathBuf};
use std::time::Instant;

use seggpt::bench::SamTimes;
use seggpt::pipeline::{RgbImage, check_image, decode_rgb, encode_rgb_png};
use seggpt::sam::{PointLabel, Sam, SamConfig, parameter_shapes};
use seggpt::select::{BenchClick, ImagePrompt, Selection, embed, select};
use seggpt::weights::{self, RandomSource, SafetensorsSource, ShardedSource, TensorSource};

use super::record::{model_files, refuse_output_over_inputs};
use crate::{Backend, CliResult, device, write_atomically};

#[derive(clap::Args)]
pub struct SamArgs {
    /// A SAM directory (transformers' `SamModel`: config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// The image to select in (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// A point X,Y in image pixels, on the object; X,Y,0 is a point off it (X,Y,1 on it). Repeatable.
    #[arg(long = "point", value_name = "X,Y[,0|1]", value_parser = parse_point)]
    points: Vec<(f64, f64, PointLabel)>,
    /// A box X0,Y0,X1,Y1: the top-left and bottom-right corners, in image pixels.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", value_parser = parse_box)]
    bbox: Option<[f64; 4]>,
    /// Three candidate masks instead of one; --out keeps the one SAM rates best.
    #[arg(long)]
    multimask: bool,
    /// The mask as a PNG: the --colour on black.
    #[arg(long, required_unless_present = "out_dir", conflicts_with = "out_dir")]
    out: Option<PathBuf>,
    /// With --multimask: every candidate, as DIR/<image stem>.sam-<n>.png.
    #[arg(long, requires = "multimask")]
    out_dir: Option<PathBuf>,
    /// The mask's colour R,G,B.
    #[arg(long, value_name = "R,G,B", value_parser = parse_colour, default_value = "255,255,255")]
    colour: [u8; 3],
}

impl SamArgs {
    pub fn uses_wgpu(&self) -> bool {
        matches!(self.backend, Backend::Wgpu)
    }
}

/// What one run reads and writes, decided before anything is loaded.
struct Plan {
    prompt: ImagePrompt,
    image: RgbImage,
    /// Where each candidate goes: `(candidate, path)`; `None` for `--out`: the best one.
    outputs: Vec<(Option<usize>, PathBuf)>,
    multimask: bool,
}

pub fn run(args: &SamArgs) -> CliResult<()> {
    let plan = plan(args)?;
    let model = load(args)?;
    let selection = work(&model, &plan);
    report(args, &plan, &selection)
}

/// The image decoded, the prompt checked against it and the outputs named, before the model loads.
fn plan(args: &SamArgs) -> CliResult<Plan> {
    let prompt = ImagePrompt { points: args.points.clone(), bbox: args.bbox };
    let name = args.image.display().to_string();
    let bytes = std::fs::read(&args.image).map_err(|e| format!("{name}: {e}"))?;
    check_image(&bytes, &name).map_err(|e| e.to_string())?;
    let image = decode_rgb(&bytes, &name).map_err(|e| e.to_string())?;
    prompt.check(image.width(), image.height()).map_err(|e| format!("{name}: {e}"))?;
    let outputs = match (&args.out, &args.out_dir) {
        (Some(out), _) => vec![(None, out.clone())],
        (None, Some(dir)) => {
            let stem = args.image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (0..3).map(|i| (Some(i), dir.join(format!("{stem}.sam-{}.png", i + 1)))).collect()
        }
        (None, None) => unreachable!("clap requires --out or --out-dir"),
    };
    let mut read = model_files(&args.model);
    read.push(args.image.clone());
    for (_, path) in &outputs {
        refuse_output_over_inputs(path, &read)?;
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(Plan { prompt, image, outputs, multimask: args.multimask })
}

fn load(args: &SamArgs) -> CliResult<Sam> {
    load_dir(&args.model, args.backend)
}

fn read_config(path: &Path) -> CliResult<SamConfig> {
    let text = weights::read_config_text(path).map_err(|e| e.to_string())?;
    SamConfig::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A SAM directory (config.json and the weights, one file or shards).
fn load_dir(model: &Path, backend: Backend) -> CliResult<Sam> {
    let start = Instant::now();
    eprintln!("loading {} ...", model.display());
    let (weights_path, config_path) = weights::model_paths(model);
    let config = read_config(&config_path)?;
    let source: Box<dyn TensorSource> = if weights_path.to_string_lossy().ends_with(".index.json") {
        Box::new(ShardedSource::open(&weights_path).map_err(|e| e.to_string())?)
    } else {
        Box::new(SafetensorsSource::from_file(&weights_path).map_err(|e| e.to_string())?)
    };
    let model = Sam::load(source.as_ref(), config, &device(backend))
        .map_err(|e| format!("{}: {e}", weights_path.display()))?;
    eprintln!("loaded in {:.1} s", start.elapsed().as_secs_f64());
    Ok(model)
}

fn work(model: &Sam, plan: &Plan) -> Selection {
    let start = Instant::now();
    let embedded = embed(model, &plan.image);
    let embedded_in = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let selection = select(model, &embedded, &plan.prompt, plan.multimask);
    eprintln!("image embedding in {embedded_in:.2} s; prompt in {:.3} s", start.elapsed().as_secs_f64());
    selection
}

fn report(args: &SamArgs, plan: &Plan, selection: &Selection) -> CliResult<()> {
    let scores: Vec<String> = selection.iou_scores.iter().map(|s| format!("{s:.4}")).collect();
    println!("iou scores: {}", scores.join(" "));
    for (candidate, path) in &plan.outputs {
        let index = candidate.unwrap_or_else(|| selection.best());
        let mask = &selection.masks[index];
        let pixels = mask.iter().flat_map(|&inside| if inside { args.colour } else { [0, 0, 0] }).collect();
        let image = RgbImage::new(selection.width as u32, selection.height as u32, pixels)
            .map_err(|e| e.to_string())?;
        write_atomically(path, &encode_rgb_png(&image).map_err(|e| e.to_string())?)?;
        let area = mask.iter().filter(|&&m| m).count();
        println!(
            "{}: candidate {} (iou {:.4}), {area} px",
            path.display(),
            index + 1,
            selection.iou_scores[index]
        );
    }
    Ok(())
}

fn numbers<const N: usize>(text: &str, what: &str) -> Result<[f64; N], String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{what}: numbers separated by commas"))?;
    let values: [f64; N] =
        values.try_into().map_err(|_| format!("{what}: {N} numbers separated by commas"))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!("{what}: finite numbers"));
    }
    Ok(values)
}

fn parse_point(text: &str) -> Result<(f64, f64, PointLabel), String> {
    let parts = text.split(',').count();
    match parts {
        2 => numbers::<2>(text, "X,Y").map(|[x, y]| (x, y, PointLabel::Foreground)),
        3 => {
            let [x, y, label] = numbers::<3>(text, "X,Y,LABEL")?;
            let label = match label {
                1.0 => PointLabel::Foreground,
                0.0 => PointLabel::Background,
                _ => return Err("the third number is 1 (on the object) or 0 (off it)".into()),
            };
            Ok((x, y, label))
        }
        _ => Err("give X,Y or X,Y,0 or X,Y,1".into()),
    }
}

fn parse_box(text: &str) -> Result<[f64; 4], String> {
    numbers::<4>(text, "X0,Y0,X1,Y1")
}

fn parse_colour(text: &str) -> Result<[u8; 3], String> {
    let [r, g, b] = numbers::<3>(text, "R,G,B")?;
    let byte = |v: f64| {
        if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
            Ok(v as u8)
        } else {
            Err("R,G,B: whole numbers from 0 to 255".to_string())
        }
    };
    Ok([byte(r)?, byte(g)?, byte(b)?])
}

#[derive(clap::Args)]
pub struct BenchSamArgs {
    /// A SAM config.json to time with random weights; default: sam-vit-base's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A SAM directory whose weights are timed instead.
    #[arg(long, conflicts_with = "config")]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Timed runs after the warm-up (at least 1).
    #[arg(long, default_value_t = 3, value_parser = crate::parse_runs)]
    runs: usize,
}

impl BenchSamArgs {
    pub fn uses_wgpu(&self) -> bool {
        matches!(self.backend, Backend::Wgpu)
    }
}

/// [`BenchClick`]'s image and click: one warm-up, then `runs` timed image embeddings and `runs` timed
/// clicks (each read back, so the device has finished).
pub fn bench(args: &BenchSamArgs) -> CliResult<()> {
    let model = bench_model(args)?;
    let input = BenchClick::new(&model);
    let mut embedding_s = Vec::new();
    let mut click_s = Vec::new();
    for run in 0..=args.runs {
        let start = Instant::now();
        let embedded = embed(&model, &input.image);
        let _ = embedded.embedding.tensor().clone().into_data();
        let embedded_in = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let selection = select(&model, &embedded, &input.prompt, true);
        let clicked_in = start.elapsed().as_secs_f64();
        if run > 0 {
            embedding_s.push(embedded_in);
            click_s.push(clicked_in);
        }
        std::hint::black_box(selection.best());
    }
    let times = SamTimes::new(input.model, &embedding_s, &click_s)?;
    let on = if args.uses_wgpu() { "wgpu" } else { "the CPU" };
    println!("on {on}: {}", times.summary());
    Ok(())
}

/// The SAM to time: a directory's weights, or random weights of a config (sam-vit-base's by default).
fn bench_model(args: &BenchSamArgs) -> CliResult<Sam> {
    if let Some(dir) = &args.model {
        return load_dir(dir, args.backend);
    }
    let config = match &args.config {
        Some(path) => read_config(path)?,
        None => SamConfig::from_json(r#"{"vision_config": {}}"#).map_err(|e| e.to_string())?,
    };
    let source = RandomSource::from_shapes(parameter_shapes(&config).map_err(|e| e.to_string())?, 7);
    Sam::load(&source, config, &device(args.backend)).map_err(|e| e.to_string())
}
