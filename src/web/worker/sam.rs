//! Click to select in the worker (docs/MODEL.md §25): SAM loaded when the visitor first asks for it
//! (from browser storage when a current copy is there, as SegGPT is), one image embedded at a time,
//! and each click's masks through `crate::select`, the path `seggpt sam` takes.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use super::{Engine, download_report, engine, post, post_with, read_bytes, resolve};
use crate::bench::SamTimes;
use crate::clicks::{ClickPoint, ClickPrompt};
use crate::model_fetch::{self, Freshness, OFFLINE_NOTE};
use crate::pipeline::{check_image, decode_rgb};
use crate::sam::{PointLabel, Sam, SamConfig};
use crate::select::{BenchClick, EmbeddedImage, ImagePrompt, embed, predict};
use crate::web::load::{self, BlobSource, HeaderCheck};
use crate::web::now_s;
use crate::web::protocol::{DeviceChoice, SamImage, SamMasks, ToPage};
use crate::web::storage::{self, Cached};

/// SAM and the image embedded last (its key and embedding).
struct Clicks {
    model: Sam,
    embedded: Option<(u32, Rc<EmbeddedImage>)>,
    /// A first click's kernels are compiled (see [`prepare`]).
    warm: bool,
}

thread_local! {
    static CLICKS: RefCell<Option<Clicks>> = const { RefCell::new(None) };
}

fn progress(text: impl Into<String>, done: f64, total: f64) {
    post(&ToPage::SamProgress { text: text.into(), done, total });
}

/// `SamLoad`: SAM onto the device SegGPT runs on.
pub async fn load(url: &str, cache: bool, half: bool, device: DeviceChoice) {
    CLICKS.with(|c| c.borrow_mut().take());
    let start = now_s();
    let loaded = match engine(device, half).await {
        Ok(engine) => load_from_url(url, cache, &engine).await,
        Err(message) => Err(message),
    };
    match loaded {
        Ok((model, note)) => {
            CLICKS.with(|c| *c.borrow_mut() = Some(Clicks { model, embedded: None, warm: false }));
            post(&ToPage::SamReady { seconds: now_s() - start, note });
        }
        Err(message) => post(&ToPage::SamLoadFailed { message }),
    }
}

/// The stored copy when it is current (or the server cannot be asked), else a download; a stored
/// copy that fails to load is removed and downloaded again.
async fn load_from_url(url: &str, cache: bool, engine: &Engine) -> Result<(Sam, String), String> {
    let urls = resolve(url)?;
    let mut why_downloaded = None;
    if cache && let Some(cached) = storage::lookup(&urls.weights).await.ok().flatten() {
        progress("asking the server whether the stored SAM is current ...", 0.0, 0.0);
        let freshness = model_fetch::freshness(&cached.validators, load::head(&urls.weights).await);
        let offline = freshness == Freshness::Offline;
        let note = match freshness {
            Freshness::Changed => None,
            Freshness::Current { note } => Some(note.unwrap_or_else(|| "loaded from browser storage".into())),
            Freshness::Offline => Some(OFFLINE_NOTE.to_string()),
        };
        match note {
            None => why_downloaded = Some("SAM changed on the server since it was stored".to_string()),
            Some(note) => match from_stored(cached, &urls.config, engine) {
                Ok(model) => return Ok((model, note)),
                Err(damage) => {
                    storage::remove_entry(&urls.weights).await;
                    if offline {
                        return Err(format!(
                            "The stored copy of SAM is damaged ({damage}) and the server cannot be reached to \
                             download it again: it was removed; try again when online."
                        ));
                    }
                    why_downloaded = Some(format!("the stored copy was damaged ({damage})"));
                }
            },
        }
    }
    progress(format!("fetching {} ...", urls.config), 0.0, 0.0);
    let config_json = load::fetch_text(&urls.config).await.map_err(|e| e.describe(&urls.config))?;
    let config = parse_config(&config_json, &urls.config)?;
    let name = urls.weights.rsplit('/').next().unwrap_or("weights").to_string();
    let mut report = download_report(name, progress);
    let downloaded =
        load::download(&urls.weights, HeaderCheck::Sam(&config), Some(&config_json), cache, &mut report)
            .await
            .map_err(|e| e.describe(&urls.weights))?;
    let model =
        to_device(&downloaded.source, config, engine).map_err(|e| format!("{}: {e}", urls.weights))?;
    let note = match (downloaded.stored, downloaded.note) {
        (true, _) => "downloaded and kept in browser storage".to_string(),
        (false, Some(why)) => why,
        (false, None) => "kept in memory".to_string(),
    };
    Ok((model, why_downloaded.map_or(note.clone(), |why| format!("{why}: {note}"))))
}

fn parse_config(text: &str, from: &str) -> Result<SamConfig, String> {
    SamConfig::from_json(text).map_err(|e| format!("{from}: {e}"))
}

/// SAM from a stored copy; `Err` when the copy is damaged.
fn from_stored(cached: Cached, config_url: &str, engine: &Engine) -> Result<Sam, String> {
    let text = cached.config_json.ok_or("its config.json is missing")?;
    let config = parse_config(&text, config_url)?;
    let source =
        BlobSource::open(cached.weights.into(), HeaderCheck::Sam(&config)).map_err(|e| e.to_string())?;
    to_device(&source, config, engine).map_err(|e| e.to_string())
}

fn to_device(
    source: &BlobSource,
    config: SamConfig,
    engine: &Engine,
) -> Result<Sam, crate::weights::LoadError> {
    progress("loading SAM's weights ...", 0.0, 0.0);
    Sam::load(source, config, &engine.device)
}

/// `SamPrepare`: the embedding of image `key`, unless it is the one embedded last. The first time,
/// also a click at the image's centre, whose answer is dropped: it compiles the kernels of the usual
/// first click (one point, three candidates), which on a GPU that compiles shaders slowly would
/// otherwise make the visitor's first click the slow one. Other prompt shapes (more points, a box)
/// compile theirs when first used.
pub async fn prepare(key: u32, data: &JsValue) {
    let start = now_s();
    let prepared = match embedded(key, data) {
        Ok((image, _)) => warm_up(&image).await,
        Err(message) => Err(message),
    };
    match prepared {
        Ok(()) => post(&ToPage::SamPrepared { key, seconds: now_s() - start }),
        Err(message) => post(&ToPage::SamFailed { key, message }),
    }
}

async fn warm_up(image: &EmbeddedImage) -> Result<(), String> {
    let (height, width) = image.frame.original;
    let centre = ClickPrompt {
        points: vec![ClickPoint { x: width as u32 / 2, y: height as u32 / 2, on: true }],
        bbox: None,
    };
    let pending = CLICKS.with(|c| {
        let mut clicks = c.borrow_mut();
        let clicks = clicks.as_mut().ok_or(NOT_LOADED)?;
        Ok::<_, String>(
            (!std::mem::replace(&mut clicks.warm, true))
                .then(|| predict(&clicks.model, image, &image_prompt(&centre), centre.wants_multimask())),
        )
    })?;
    if let Some(pending) = pending {
        pending.read_async().await?;
    }
    Ok(())
}

/// The page's Benchmark, once SAM is loaded (`None` before): [`BenchClick`]'s image embedded and its
/// click answered, one warm-up and `runs` timed, each read back before its clock stops, as `seggpt
/// bench-sam` does. The visitor's embedded image stays as it was.
pub async fn bench(runs: usize) -> Option<Result<SamTimes, String>> {
    let input = CLICKS.with(|c| c.borrow().as_ref().map(|clicks| BenchClick::new(&clicks.model)))?;
    let mut embedding_s = Vec::new();
    let mut click_s = Vec::new();
    for run in 0..=runs {
        let timed = async {
            let start = now_s();
            let embedded = CLICKS.with(|c| {
                let clicks = c.borrow();
                let clicks = clicks.as_ref().ok_or(NOT_LOADED)?;
                Ok::<_, String>(embed(&clicks.model, &input.image))
            })?;
            crate::web::worker_bench::wait_for(embedded.embedding.tensor()).await?;
            let embedded_at = now_s();
            let pending = CLICKS.with(|c| {
                let clicks = c.borrow();
                let clicks = clicks.as_ref().ok_or(NOT_LOADED)?;
                Ok::<_, String>(predict(&clicks.model, &embedded, &input.prompt, true))
            })?;
            pending.read_async().await?;
            Ok::<_, String>((embedded_at - start, now_s() - embedded_at))
        };
        match timed.await {
            Ok((embedding, click)) if run > 0 => {
                embedding_s.push(embedding);
                click_s.push(click);
            }
            Ok(_) => {}
            Err(message) => return Some(Err(message)),
        }
    }
    Some(SamTimes::new(input.model, &embedding_s, &click_s))
}

/// `SamSelect`: the masks for `prompt` on image `key`.
pub async fn select_masks(key: u32, prompt: &ClickPrompt, data: &JsValue) {
    if let Err(message) = try_select(key, prompt, data).await {
        post(&ToPage::SamFailed { key, message });
    }
}

async fn try_select(key: u32, prompt: &ClickPrompt, data: &JsValue) -> Result<(), String> {
    let (image, embed_seconds) = embedded(key, data)?;
    let (width, height) = (image.frame.original.1 as u32, image.frame.original.0 as u32);
    let multimask = prompt.wants_multimask();
    let prompt = image_prompt(prompt);
    prompt.check(width, height)?;
    let start = now_s();
    let pending = CLICKS.with(|c| {
        let clicks = c.borrow();
        let clicks = clicks.as_ref().ok_or(NOT_LOADED)?;
        Ok::<_, String>(predict(&clicks.model, &image, &prompt, multimask))
    })?;
    let selection = pending.read_async().await?;
    let seconds = now_s() - start;
    let masks: Vec<u8> = selection.masks.iter().flatten().map(|&inside| u8::from(inside)).collect();
    let msg = ToPage::SamSelection {
        key,
        width,
        height,
        best: selection.best(),
        iou_scores: selection.iou_scores,
        seconds,
        embed_seconds,
    };
    post_with(&msg, |envelope| SamMasks(masks).to_js(envelope));
    Ok(())
}

const NOT_LOADED: &str = "SAM is not loaded: choose Click to select again";

/// The embedding of image `key` (the `image` field), computed unless it is the one embedded last;
/// with the seconds it took when it was computed.
fn embedded(key: u32, data: &JsValue) -> Result<(Rc<EmbeddedImage>, Option<f64>), String> {
    if let Some(image) = CLICKS
        .with(|c| c.borrow().as_ref().and_then(|c| c.embedded.as_ref().filter(|(k, _)| *k == key).cloned()))
    {
        return Ok((image.1, None));
    }
    let file = SamImage::from_js(data)?.0;
    let (bytes, name) = (read_bytes(&file)?, file.name());
    // As `seggpt sam` reads it: the same checks, the same decoder.
    check_image(&bytes, &name).map_err(|e| e.to_string())?;
    let image = decode_rgb(&bytes, &name).map_err(|e| e.to_string())?;
    let start = now_s();
    let embedded = CLICKS.with(|c| {
        let mut clicks = c.borrow_mut();
        let clicks = clicks.as_mut().ok_or(NOT_LOADED)?;
        // The old embedding goes first: one image's activations at a time.
        clicks.embedded = None;
        let embedded = Rc::new(embed(&clicks.model, &image));
        clicks.embedded = Some((key, embedded.clone()));
        Ok::<_, String>(embedded)
    })?;
    Ok((embedded, Some(now_s() - start)))
}

fn image_prompt(prompt: &ClickPrompt) -> ImagePrompt {
    let label = |on: bool| if on { PointLabel::Foreground } else { PointLabel::Background };
    ImagePrompt {
        points: prompt.points.iter().map(|p| (f64::from(p.x), f64::from(p.y), label(p.on))).collect(),
        bbox: prompt.bbox.map(|b| b.map(f64::from)),
    }
}
