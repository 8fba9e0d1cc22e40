//! Messages between the page and the worker.
//!
//! Every message is one JS object: `msg` holds a [`ToWorker`] or [`ToPage`] (serde, through
//! `serde-wasm-bindgen`), and files and byte buffers, which serde cannot carry, travel beside it in
//! named fields. The typed helpers here are the only code that writes or reads those fields:
//!
//! | message                  | field         | content                                                  |
//! |--------------------------|---------------|----------------------------------------------------------|
//! | `Load { Files }`         | `model_files` | [`ModelFiles`]: `[File]`, a `.safetensors` and maybe its `config.json` |
//! | `Segment`                | `prompts`     | [`SegmentFiles`]: `[{ image: File, mask: File }]` or, painted, `mask: { rgb: Uint8Array, width, height }` |
//! | `Segment`                | `targets`     | [`SegmentFiles`]: `[File]`, in the order results come back |
//! | `Result`                 | `mask_png`    | [`ResultBuffers`]: the mask PNG, byte for byte what `seggpt segment` writes |
//! | `Result`                 | `mask_rgb`    | [`ResultBuffers`]: the same mask as raw RGB, `width * height * 3` bytes |
//! | `Result`                 | `labels`      | [`ResultBuffers`]: per pixel 0 (background) or 1 + the index in `colours` of its nearest colour |
//! | `VideoStart`             | `prompts`     | [`SegmentFiles`] (no targets): the prompts of a propagation or of the Live mode |
//! | `VideoFrame`             | `frame`       | [`FrameInput`]: an image file, or a decoded frame `{ rgba: ArrayBuffer, width, height }` |
//! | `VideoResult`            | as `Result`   | [`ResultBuffers`]: the frame's mask PNG (what `seggpt video` writes), RGB and labels |
//! | `Segment`                | `tuned`       | [`TunedFiles`]: `[File]`, tuned prompt files (`seggpt tune`'s), after the prompts |
//! | `TuneStart`              | `prompts`     | [`SegmentFiles`] (no targets): the training pairs, as prompts |
//! | `InspectTuned`           | `tuned`       | [`TunedFiles`]: the one tuned prompt file to check and preview |
//! | `TunedPreview`           | `image_png`, `mask_png` | [`TunedPreviewPngs`]: the prompt's image and mask, denormalised |
//! | `TuneDone`               | `tuned_file`  | [`TunedFileBytes`]: the tuned prompt file, what `seggpt tune` writes |
//! | `SamPrepare`, `SamSelect`| `image`       | [`SamImage`]: the image file clicks are made on          |
//! | `SamSelection`           | `masks`       | [`SamMasks`]: per candidate `width * height` bytes, 1 inside, 0 outside |
//!
//! The worker's buffers are transferred, not copied (they are detached on the worker side).
//! The readers of what the page sends and the writers of what the worker sends are under feature
//! `burn`: the page's wasm, built without it, has only its own side.

use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::File;

use crate::bench::BenchReport;
use crate::clicks::ClickPrompt;
use crate::clip::Propagate;
use crate::pipeline::Tiling;
use crate::{AttentionKernel, EmbeddingType, Ensemble};

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ModelSource {
    /// A directory URL (`config.json` + `model.safetensors`) or a `.safetensors` URL (with
    /// `config.json` beside it). Absolute.
    Url { url: String },
    /// Files the user picked or dropped, in the `model_files` field ([`ModelFiles`]).
    Files,
}

/// Where the worker runs the model, as the page's address asks (`?device=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// WebGPU where the browser offers an adapter, else the CPU (the default).
    #[default]
    Auto,
    /// WebGPU or nothing (`?device=webgpu`): no silent fall-back to the CPU.
    Webgpu,
    /// The CPU even where WebGPU exists (`?device=cpu`).
    Cpu,
}

impl DeviceChoice {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Webgpu, DeviceChoice::Cpu];

    /// The name in the page's address.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Webgpu => "webgpu",
            DeviceChoice::Cpu => "cpu",
        }
    }

    /// The choice named `name` ([`DeviceChoice::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|choice| choice.name() == name)
    }
}

/// Options of a run, as the page's controls give them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub embedding: EmbeddingType,
    pub ensemble: Ensemble,
    /// Mask files are class-index PNGs (8-bit grey or palette) rather than colours.
    pub class_masks: bool,
    /// With `class_masks`: the number of classes, which sets the palette the masks are coloured
    /// with (the CLI's `--num-labels`). `None`: the largest index in the prompt masks + 1, which the
    /// worker reports back in [`ToPage::Result`].
    pub num_classes: Option<u32>,
    /// Image targets in tiles (the CLI's `--tile`, docs/MODEL.md §27); `None`: each target whole.
    /// Video frames are always whole.
    #[serde(default)]
    pub tile: Option<Tiling>,
}

/// Options of a propagation or of the Live mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VideoSettings {
    pub run: RunOptions,
    /// The number of previous frames (and their predicted masks) each frame is prompted with, after
    /// the user's prompts: the CLI's `--num-frames`.
    pub previous_frames: usize,
    pub propagate: Propagate,
}

/// Page -> worker. Handled strictly one after the other, in the order they are posted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWorker {
    /// Is there a complete copy of this model in browser storage, and how large is it? Answered
    /// with [`ToPage::Inspected`]; downloads nothing, so the page can ask before the big download.
    Inspect { source: ModelSource },
    /// Loads the model (from storage, the network or the picked files).
    /// `half`: compute in f16 where the adapter has `shader-f16` (default; `?dtype=f32` turns it
    /// off; takes effect when the worker first starts its GPU device).
    /// `cache`: look for, and keep, a copy in browser storage (default; `?cache=off` turns it off).
    /// `device`: WebGPU or the CPU (`?device=`; takes effect when the worker first starts a device).
    Load { source: ModelSource, half: bool, cache: bool, device: DeviceChoice },
    /// Segments every target of the `prompts` / `targets` fields ([`SegmentFiles`]) with every
    /// prompt: one [`ToPage::Running`] then one [`ToPage::Result`] or [`ToPage::Error`] per target.
    Segment { options: RunOptions },
    /// Starts a propagation (the Video panel) or the Live mode: the prompts of the `prompts` field
    /// ([`SegmentFiles`]) and, per frame, `settings.previous_frames` previous frames and their
    /// predicted masks (docs/MODEL.md §13). The frames follow as [`ToWorker::VideoFrame`]s of the same
    /// `session`, each answered with one [`ToPage::VideoResult`]; the session ends with
    /// [`ToWorker::VideoEnd`] or any other message. A failure ends it with [`ToPage::VideoFailed`].
    VideoStart { session: u32, settings: VideoSettings },
    /// The next frame of `session` (in the `frame` field, [`FrameInput`]); `index` names it in the answer.
    VideoFrame { session: u32, index: usize },
    /// The end of `session`: the worker frees its cached frames.
    VideoEnd { session: u32 },
    /// Removes every cached model from browser storage. Posted during a download, it runs once the
    /// download is over (messages are handled in order), so it never meets an open file.
    ClearCache,
    /// Tunes a prompt (docs/MODEL.md §19) from the training pairs of the `prompts` field
    /// ([`SegmentFiles`], no targets), starting from the first pair, as `seggpt tune` does: one
    /// [`ToPage::TuneStep`] per step, then [`ToPage::TuneDone`] (or [`ToPage::TuneFailed`]). It
    /// stops after the current step at [`ToWorker::TuneStop`] or any message other than
    /// [`ToWorker::InspectTuned`] (which is answered meanwhile).
    TuneStart { session: u32, params: TuneParams, run: RunOptions },
    /// Stops tuning `session` after the current step; its prompt so far comes back in `TuneDone`.
    TuneStop { session: u32 },
    /// Checks the tuned prompt file of the `tuned` field ([`TunedFiles`]) against the model and
    /// answers with [`ToPage::TunedPreview`] or [`ToPage::TunedRefused`] for `card`.
    InspectTuned { card: u32 },
    /// Times the loaded model on fixed synthetic inputs (one prompt, docs/MODEL.md §22) with
    /// `attention` in its encoder blocks: a warm-up, then `runs` timed forward passes. Answered with
    /// a [`ToPage::BenchProgress`] per pass, then [`ToPage::Bench`] or [`ToPage::BenchFailed`].
    Bench { runs: u32, attention: AttentionKernel },
    /// Is there a stored copy of the SAM checkpoint at `url` (click to select, docs/MODEL.md §25), and
    /// how large is it? Answered with [`ToPage::SamInspected`]; downloads nothing.
    SamInspect { url: String },
    /// Loads SAM from `url` (a directory with `config.json` and `model.safetensors`), from browser
    /// storage when it holds a current copy: [`ToPage::SamProgress`], then [`ToPage::SamReady`] or
    /// [`ToPage::SamLoadFailed`]. `cache`, `half` and `device` as in [`ToWorker::Load`] (the device is
    /// the one SegGPT runs on, started here if SegGPT has not started it).
    SamLoad { url: String, cache: bool, half: bool, device: DeviceChoice },
    /// Computes the image embedding of the `image` field ([`SamImage`]) for clicks on it, unless image
    /// `key` is the one embedded last: answered with [`ToPage::SamPrepared`] or [`ToPage::SamFailed`].
    SamPrepare { key: u32 },
    /// SAM's masks for `prompt` on image `key` (the `image` field, embedded first unless it is the one
    /// embedded last), three candidates when `prompt` asks for them ([`ClickPrompt::wants_multimask`]):
    /// answered with [`ToPage::SamSelection`] or [`ToPage::SamFailed`].
    SamSelect { key: u32, prompt: ClickPrompt },
    /// Makes the next run panic at its first target, as a GPU out-of-memory error does (cubecl
    /// panics on uncaptured WebGPU errors): lets the tests check the restart path. Only in builds
    /// with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    DebugPanic,
}

/// Worker -> page.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToPage {
    /// The worker's wasm runs and listens; the page sends nothing before this.
    Started,
    /// The answer to [`ToWorker::Inspect`]: `stored` when browser storage holds a complete copy;
    /// `bytes` the size of the weights when known (stored, or the server's `Content-Length`);
    /// `note` a sentence for the page (or empty).
    Inspected { stored: bool, bytes: Option<f64>, note: String },
    /// Loading progress: `done` of `total` bytes (`total` 0 when unknown), shown with `text`.
    Progress { text: String, done: f64, total: f64 },
    /// The model is on its device: `adapter` names it (a GPU adapter, or the CPU). `note` says where
    /// the model came from and how it is stored (or why not), e.g. "offline: using the copy in
    /// browser storage", and on the CPU what a forward pass takes. `max_prompts`: the most prompts
    /// one run may have on this device.
    Ready { adapter: String, dtype: String, seconds: f64, note: String, max_prompts: usize },
    /// Target `index` is being segmented.
    Running { index: usize },
    /// Target `index` is done; its pixels are in the [`ResultBuffers`] fields. `colours`: the
    /// prompts' mask colours, most frequent first (for per-colour toggles). `num_classes`: the
    /// number of classes used for class-index masks (given, or inferred), else `None`.
    Result {
        index: usize,
        seconds: f64,
        width: u32,
        height: u32,
        colours: Vec<[u8; 3]>,
        num_classes: Option<u32>,
    },
    /// A run's error (bad input, too many prompts...); `index` names the target if it concerns one
    /// (then the run goes on with the next target), else the run is over.
    Error { message: String, index: Option<usize> },
    /// Frame `index` of video `session` is segmented; its pixels are in the [`ResultBuffers`] fields.
    VideoResult { session: u32, index: usize, seconds: f64, width: u32, height: u32, colours: Vec<[u8; 3]> },
    /// Video `session` cannot go on (a bad prompt, too many previous frames, a frame that is not an
    /// image); the worker has ended it.
    VideoFailed { session: u32, message: String },
    /// Sent after `Ready`: what tuning a prompt takes on this GPU and model (docs/MODEL.md §19).
    TuneInfo(TuneInfo),
    /// Step `step` of tuning `session` is done; `loss` is its batch's loss before the update.
    TuneStep { session: u32, step: u64, loss: f32, seconds: f64 },
    /// Tuning `session` is over after `steps` steps (`stopped`: by Stop, before the steps asked
    /// for); the file is in the `tuned_file` field ([`TunedFileBytes`]).
    TuneDone { session: u32, steps: u64, stopped: bool },
    /// Tuning `session` could not start or go on.
    TuneFailed { session: u32, message: String },
    /// The tuned prompt file of `card` fits the model; its previews are in the
    /// [`TunedPreviewPngs`] fields. `steps`: how long it was tuned; `loss`: its last training loss.
    TunedPreview { card: u32, steps: u64, loss: Option<f32> },
    /// The tuned prompt file of `card` cannot be used with this model, and why.
    TunedRefused { card: u32, message: String },
    /// The model could not be loaded (bad URL, network, wrong or corrupt weights, small GPU).
    LoadFailed { message: String },
    /// The cache was cleared.
    CacheCleared,
    /// The benchmark has done pass `done` of `total` (pass 0 is the warm-up).
    BenchProgress { done: u32, total: u32 },
    /// The benchmark's result.
    Bench { report: BenchReport },
    /// The benchmark could not run (no model loaded, a GPU error).
    BenchFailed { message: String },
    /// The answer to [`ToWorker::SamInspect`], as [`ToPage::Inspected`] is to `Inspect`.
    SamInspected { stored: bool, bytes: Option<f64>, note: String },
    /// SAM's loading progress, as [`ToPage::Progress`].
    SamProgress { text: String, done: f64, total: f64 },
    /// SAM is loaded; `note` says where it came from (storage, download).
    SamReady { seconds: f64, note: String },
    /// SAM could not be loaded.
    SamLoadFailed { message: String },
    /// Image `key` is embedded: clicks on it now cost only the prompt encoder and the decoder.
    SamPrepared { key: u32, seconds: f64 },
    /// SAM's masks for the last [`ToWorker::SamSelect`] on image `key`, in the [`SamMasks`] field:
    /// one per entry of `iou_scores` (SAM's predicted IoU of each), `best` the highest. `seconds`: the
    /// prompt's time, `embed_seconds` the embedding's when this message needed one.
    SamSelection {
        key: u32,
        width: u32,
        height: u32,
        iou_scores: Vec<f32>,
        best: usize,
        seconds: f64,
        embed_seconds: Option<f64>,
    },
    /// A click on image `key` could not be answered (SAM not loaded, an image that cannot be read).
    SamFailed { key: u32, message: String },
    /// The worker cannot go on (wasm panic, GPU out of memory, device lost): the page restarts it.
    Fatal { message: String },
}

/// The settings of a tuning run, as the page's fields give them (the CLI's flags of `seggpt tune`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TuneParams {
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    /// Training pairs per step.
    pub batch: usize,
    pub seed: u64,
}

/// What tuning takes on the loaded model and this GPU, for the page to say before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneInfo {
    /// The defaults of `seggpt tune`'s flags.
    pub defaults: TuneParams,
    /// `step_bytes[b - 1]`: the GPU memory (bytes) one step of `b` pairs needs beside the weights.
    pub step_bytes: Vec<f64>,
    /// The model's weights on the GPU (bytes).
    pub weight_bytes: f64,
    /// The largest batch whose every buffer fits the adapter's `maxStorageBufferBindingSize`
    /// (0: not even one pair).
    pub max_batch: usize,
    /// The adapter's `maxStorageBufferBindingSize` (bytes).
    pub max_binding: f64,
}

/// The human label of an ensemble choice, for the page's `<select>`.
pub fn ensemble_label(ensemble: Ensemble) -> &'static str {
    match ensemble {
        Ensemble::Official => "official feature ensemble",
        Ensemble::Hf => "transformers feature ensemble",
        Ensemble::None => "independent, averaged",
        Ensemble::Spatial => "spatial ensemble (prompts tiled into one)",
    }
}

/// The human label of an embedding choice, for the page's `<select>`.
pub fn embedding_label(embedding: EmbeddingType) -> &'static str {
    match embedding {
        EmbeddingType::Instance => "instance (each colour one object)",
        EmbeddingType::Semantic => "semantic (each colour one class)",
    }
}

fn get(object: &JsValue, field: &str) -> JsValue {
    Reflect::get(object, &field.into()).unwrap_or(JsValue::UNDEFINED)
}

fn set(object: &Object, field: &str, value: &JsValue) {
    // Setting a property on a plain, non-frozen object cannot fail.
    let _ = Reflect::set(object, &field.into(), value);
}

#[cfg(feature = "burn")]
fn files_of(value: JsValue, field: &str) -> Result<Vec<File>, String> {
    let array: Array = value.dyn_into().map_err(|_| format!("`{field}` is not a list"))?;
    array
        .iter()
        .map(|file| {
            file.dyn_into::<File>().map_err(|_| format!("`{field}` holds something that is not a file"))
        })
        .collect()
}

/// A message ready to post: `{ msg }`, to which the helpers below add their named fields.
pub fn envelope<M: Serialize>(msg: &M) -> Result<Object, String> {
    let value = serde_wasm_bindgen::to_value(msg).map_err(|e| format!("cannot encode a message: {e}"))?;
    let envelope = Object::new();
    set(&envelope, "msg", &value);
    Ok(envelope)
}

/// The `msg` of a posted message.
pub fn message<M: DeserializeOwned>(data: &JsValue) -> Result<M, String> {
    serde_wasm_bindgen::from_value(get(data, "msg"))
        .map_err(|e| format!("a message that cannot be read: {e}"))
}

/// The `model_files` field of `Load { source: Files }`.
pub struct ModelFiles(pub Vec<File>);

impl ModelFiles {
    pub fn to_js(&self, envelope: &Object) {
        set(envelope, "model_files", &self.0.iter().collect::<Array>());
    }

    #[cfg(feature = "burn")]
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        Ok(Self(files_of(get(data, "model_files"), "model_files")?))
    }
}

/// A prompt's mask: a file, or painted in the page.
pub enum MaskFile {
    File(File),
    /// `width * height * 3` RGB bytes, at the prompt image's size.
    Painted {
        rgb: Vec<u8>,
        width: u32,
        height: u32,
    },
}

/// One prompt: an example image and its mask.
pub struct PromptFiles {
    pub image: File,
    pub mask: MaskFile,
}

/// The `prompts` and `targets` fields of `Segment`.
pub struct SegmentFiles {
    pub prompts: Vec<PromptFiles>,
    pub targets: Vec<File>,
}

impl SegmentFiles {
    pub fn to_js(&self, envelope: &Object) {
        let prompts = Array::new();
        for prompt in &self.prompts {
            let entry = Object::new();
            set(&entry, "image", &prompt.image);
            let mask: JsValue = match &prompt.mask {
                MaskFile::File(file) => file.clone().into(),
                MaskFile::Painted { rgb, width, height } => {
                    let painted = Object::new();
                    set(&painted, "rgb", &Uint8Array::from(rgb.as_slice()));
                    set(&painted, "width", &(*width).into());
                    set(&painted, "height", &(*height).into());
                    painted.into()
                }
            };
            set(&entry, "mask", &mask);
            prompts.push(&entry);
        }
        set(envelope, "prompts", &prompts);
        set(envelope, "targets", &self.targets.iter().collect::<Array>());
    }

    #[cfg(feature = "burn")]
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        let list: Array =
            get(data, "prompts").dyn_into().map_err(|_| "`prompts` is not a list".to_string())?;
        let mut prompts = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let which = format!("prompt {}", i + 1);
            let image =
                get(&entry, "image").dyn_into::<File>().map_err(|_| format!("{which}: no image file"))?;
            let mask = get(&entry, "mask");
            let mask = match mask.dyn_into::<File>() {
                Ok(file) => MaskFile::File(file),
                Err(painted) => {
                    let rgb = get(&painted, "rgb")
                        .dyn_into::<Uint8Array>()
                        .map_err(|_| format!("{which}: the mask is neither a file nor painted pixels"))?
                        .to_vec();
                    let size = |field: &str| {
                        get(&painted, field)
                            .as_f64()
                            .filter(|v| v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v))
                            .map(|v| v as u32)
                            .ok_or_else(|| format!("{which}: the painted mask has no {field}"))
                    };
                    MaskFile::Painted { rgb, width: size("width")?, height: size("height")? }
                }
            };
            prompts.push(PromptFiles { image, mask });
        }
        Ok(Self { prompts, targets: files_of(get(data, "targets"), "targets")? })
    }
}

/// The pixels of one `Result` (see the table at the top).
pub struct ResultBuffers {
    pub mask_png: Vec<u8>,
    pub mask_rgb: Vec<u8>,
    pub labels: Vec<u8>,
}

impl ResultBuffers {
    #[cfg(feature = "burn")]
    const FIELDS: [&'static str; 3] = ["mask_png", "mask_rgb", "labels"];

    #[cfg(feature = "burn")]
    /// Adds the three buffers to `envelope`; returns them as the transfer list for `postMessage`.
    pub fn to_js(&self, envelope: &Object) -> Array {
        let transfer = Array::new();
        for (field, bytes) in Self::FIELDS.into_iter().zip([&self.mask_png, &self.mask_rgb, &self.labels]) {
            let buffer = Uint8Array::from(bytes.as_slice()).buffer();
            set(envelope, field, &buffer);
            transfer.push(&buffer);
        }
        transfer
    }

    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        let read = |field: &str| -> Result<Vec<u8>, String> {
            let buffer: ArrayBuffer =
                get(data, field).dyn_into().map_err(|_| format!("the result has no `{field}` buffer"))?;
            Ok(Uint8Array::new(&buffer).to_vec())
        };
        Ok(Self { mask_png: read("mask_png")?, mask_rgb: read("mask_rgb")?, labels: read("labels")? })
    }
}

/// One frame of a video session: an image file (a frame picked as a file, decoded by the worker as
/// the CLI decodes it), or a frame the page decoded from a video, as RGBA.
pub enum FrameInput {
    File(File),
    Pixels { rgba: Vec<u8>, width: u32, height: u32 },
}

impl FrameInput {
    /// Adds the `frame` field to `envelope`; returns the transfer list (the decoded pixels).
    pub fn to_js(&self, envelope: &Object) -> Array {
        let transfer = Array::new();
        match self {
            FrameInput::File(file) => set(envelope, "frame", file),
            FrameInput::Pixels { rgba, width, height } => {
                let pixels = Object::new();
                let buffer = Uint8Array::from(rgba.as_slice()).buffer();
                set(&pixels, "rgba", &buffer);
                set(&pixels, "width", &(*width).into());
                set(&pixels, "height", &(*height).into());
                set(envelope, "frame", &pixels);
                transfer.push(&buffer);
            }
        }
        transfer
    }

    #[cfg(feature = "burn")]
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        let frame = get(data, "frame");
        if let Some(file) = frame.dyn_ref::<File>() {
            return Ok(FrameInput::File(file.clone()));
        }
        let rgba: ArrayBuffer = get(&frame, "rgba")
            .dyn_into()
            .map_err(|_| "the frame is neither a file nor pixels".to_string())?;
        let size = |field: &str| {
            get(&frame, field)
                .as_f64()
                .filter(|v| v.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(v))
                .map(|v| v as u32)
                .ok_or_else(|| format!("the frame has no {field}"))
        };
        Ok(FrameInput::Pixels {
            rgba: Uint8Array::new(&rgba).to_vec(),
            width: size("width")?,
            height: size("height")?,
        })
    }
}

/// The `tuned` field: tuned prompt files (`Segment`: every tuned prompt card; `InspectTuned`: one).
pub struct TunedFiles(pub Vec<File>);

impl TunedFiles {
    pub fn to_js(&self, envelope: &Object) {
        set(envelope, "tuned", &self.0.iter().collect::<Array>());
    }

    /// Absent means none (a run with ordinary prompts only).
    #[cfg(feature = "burn")]
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        let field = get(data, "tuned");
        if field.is_undefined() {
            return Ok(Self(Vec::new()));
        }
        Ok(Self(files_of(field, "tuned")?))
    }
}

fn buffer_field(data: &JsValue, field: &str) -> Result<Vec<u8>, String> {
    let buffer: ArrayBuffer =
        get(data, field).dyn_into().map_err(|_| format!("the message has no `{field}` buffer"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Adds `bytes` to `envelope` as the `field` ArrayBuffer and to `transfer`.
#[cfg(feature = "burn")]
fn attach_buffer(envelope: &Object, transfer: &Array, field: &str, bytes: &[u8]) {
    let buffer = Uint8Array::from(bytes).buffer();
    set(envelope, field, &buffer);
    transfer.push(&buffer);
}

/// The `image_png` and `mask_png` fields of `TunedPreview`.
pub struct TunedPreviewPngs {
    pub image_png: Vec<u8>,
    pub mask_png: Vec<u8>,
}

impl TunedPreviewPngs {
    /// Adds both PNGs to `envelope`; returns the transfer list.
    #[cfg(feature = "burn")]
    pub fn to_js(&self, envelope: &Object) -> Array {
        let transfer = Array::new();
        attach_buffer(envelope, &transfer, "image_png", &self.image_png);
        attach_buffer(envelope, &transfer, "mask_png", &self.mask_png);
        transfer
    }

    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        Ok(Self { image_png: buffer_field(data, "image_png")?, mask_png: buffer_field(data, "mask_png")? })
    }
}

/// The `tuned_file` field of `TuneDone`: the safetensors bytes of the tuned prompt.
pub struct TunedFileBytes(pub Vec<u8>);

impl TunedFileBytes {
    /// Adds the file to `envelope`; returns the transfer list.
    #[cfg(feature = "burn")]
    pub fn to_js(&self, envelope: &Object) -> Array {
        let transfer = Array::new();
        attach_buffer(envelope, &transfer, "tuned_file", &self.0);
        transfer
    }

    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        Ok(Self(buffer_field(data, "tuned_file")?))
    }
}

/// The `image` field of `SamPrepare` and `SamSelect`: the image clicks are made on.
pub struct SamImage(pub File);

impl SamImage {
    pub fn to_js(&self, envelope: &Object) {
        set(envelope, "image", &self.0);
    }

    #[cfg(feature = "burn")]
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        Ok(Self(
            get(data, "image")
                .dyn_into::<File>()
                .map_err(|_| "the message has no `image` file".to_string())?,
        ))
    }
}

/// The `masks` field of `SamSelection`: the candidates one after the other, `width * height` bytes
/// each, 1 inside the mask and 0 outside.
pub struct SamMasks(pub Vec<u8>);

impl SamMasks {
    /// Adds the masks to `envelope`; returns the transfer list.
    #[cfg(feature = "burn")]
    pub fn to_js(&self, envelope: &Object) -> Array {
        let transfer = Array::new();
        attach_buffer(envelope, &transfer, "masks", &self.0);
        transfer
    }

    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        Ok(Self(buffer_field(data, "masks")?))
    }
}
