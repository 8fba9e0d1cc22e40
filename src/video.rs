//! Video object segmentation by propagation, shared by the CLI and the browser worker: the official
//! `inference_video` loop (docs/MODEL.md §13). The user's prompts lead every batch, followed by up to
//! K earlier frames of the clip with the masks predicted for them, so the model follows the objects
//! from frame to frame.
//!
//! A [`Propagator`] is fed the frames in order. Each frame takes two steps, so that the browser can
//! read the prediction back from the GPU asynchronously in between:
//!
//! ```text
//! predict(frame) ──▶ (3, H/2, W) query half on the device ──read back──▶ finish(values, frame)
//!                                                                         │ the frame's Segmentation
//!                                                                         └▶ frame + its mask into the caches
//! ```
//!
//! Natively, [`Propagator::run`] does both with a blocking read-back. Nothing here reads files:
//! the caller decodes the frames (and, for the official "first frame is the prompt" mode, builds
//! the prompt from the first frame and its given mask, then feeds the frames after it).

use std::collections::VecDeque;

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::SegGptConfig;
use crate::model::{Ensemble, ForwardOptions, MemoryBudget, SegGpt, max_prompts};
use crate::pipeline::resize::{resize_bicubic, resize_nearest};
use crate::pipeline::{
    ChwImage, InputError, MAX_LABELS, RgbImage, binary_mask, build_palette, class_map, denormalize,
    mask_colours, mask_to_rgb, normalize_image, snap_to_colours, spatial_grid, to_rgb_u8, upsample,
};
use crate::segment::{Prompt, PromptMask, SegmentError, Segmentation, TunedPrompt};

pub use crate::clip::{DEFAULT_NUM_FRAMES, Propagate};

/// Options of a propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoOptions {
    /// K: how many of the latest segmented frames (with their masks) follow the user's prompts in
    /// every batch; 0 uses the user's prompts only.
    pub num_frames: usize,
    /// What a segmented frame's cached mask is.
    pub propagate: Propagate,
    /// Ensemble and embedding type of every forward pass. The official loop is
    /// `ensemble: None` (the official schedule, switched on from two prompts up) and the
    /// instance embedding.
    pub forward: ForwardOptions,
    /// With `Some(n)`: each [`Segmentation`] also has the class map over `build_palette(n)`.
    pub num_labels: Option<usize>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            num_frames: DEFAULT_NUM_FRAMES,
            propagate: Propagate::default(),
            forward: ForwardOptions::default(),
            num_labels: None,
        }
    }
}

impl VideoOptions {
    /// Refuses user prompts these options cannot propagate from (`prompts` ordinary ones,
    /// `tuned` tuned ones): none at all, or tuned prompts with the spatial ensemble or, without an
    /// ordinary prompt, with colour propagation. The spatial grid is tiled from images and masks,
    /// and colour propagation keeps the colours of masks; a tuned prompt is model input and has
    /// neither. Cheap, so that a caller can check before it writes anything.
    pub fn check_prompts(&self, prompts: usize, tuned: usize) -> Result<(), VideoError> {
        if prompts == 0 && tuned == 0 {
            return Err(SegmentError::NoPrompt.into());
        }
        if tuned > 0 && self.forward.ensemble == Some(Ensemble::Spatial) {
            return Err(SegmentError::SpatialTunedPrompt.into());
        }
        if tuned > 0 && prompts == 0 && self.propagate == Propagate::Colour {
            return Err(VideoError::ColourWithoutMask);
        }
        Ok(())
    }

    /// Refuses prompt masks these options cannot propagate: with colour propagation, masks with
    /// more than [`MAX_LABELS`] colours besides black. Needs no model, so that a caller can check
    /// before the slow model load; [`Propagator::with_tuned`] checks the same.
    pub fn check_prompt_masks(&self, prompts: &[Prompt]) -> Result<(), VideoError> {
        let masks = prompts.iter().map(|p| rgb_mask(&p.mask)).collect::<Result<Vec<_>, _>>()?;
        self.propagation_colours(&masks).map(drop)
    }

    /// The colours a frame's prediction is snapped to: with colour propagation black, then the
    /// prompt masks' colours; none for binary propagation.
    fn propagation_colours(&self, masks: &[RgbImage]) -> Result<Vec<[u8; 3]>, VideoError> {
        match self.propagate {
            Propagate::Binary => Ok(Vec::new()),
            Propagate::Colour => mask_colours(masks).ok_or(VideoError::TooManyColours),
        }
    }
}

/// A prompt mask in colours: class indices are painted with their palette.
fn rgb_mask(mask: &PromptMask) -> Result<RgbImage, InputError> {
    match mask {
        PromptMask::Rgb(rgb) => Ok(rgb.clone()),
        PromptMask::Classes { map, num_labels } => mask_to_rgb(map, Some(&build_palette(*num_labels))),
    }
}

/// Why a propagation cannot start.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Colour propagation needs masks of a few flat colours.
    #[error(
        "the prompt masks hold more than {MAX_LABELS} colours besides black, so they cannot be \
         propagated by colour; save the masks as PNG with a few flat colours (not JPEG), or \
         propagate binary masks"
    )]
    TooManyColours,
    /// Colour propagation with tuned prompts only.
    #[error(
        "colour propagation keeps the colours of the prompt masks, and a tuned prompt has no mask \
         colours (its mask is learned model input); add an ordinary prompt (an image and its \
         mask), or propagate binary masks"
    )]
    ColourWithoutMask,
}

impl From<InputError> for VideoError {
    fn from(error: InputError) -> Self {
        Self::Segment(error.into())
    }
}

/// One resized frame and the mask propagated from its prediction, both at the half-canvas size.
struct CachedFrame {
    image: RgbImage,
    mask: RgbImage,
}

/// The propagation state of one clip: the user's prompts, prepared once, and the FIFO of the
/// latest K segmented frames with their masks.
pub struct Propagator<'m> {
    model: &'m SegGpt,
    device: Device,
    options: VideoOptions,
    /// The user's prompt images and masks, resized and normalised as model input, then those of
    /// the tuned prompts.
    prompt_images: Vec<ChwImage>,
    prompt_masks: Vec<ChwImage>,
    /// The same prompts resized but not normalised, from which the spatial ensemble tiles its
    /// grid together with the cached frames (docs/MODEL.md §14).
    resized_prompts: Vec<CachedFrame>,
    /// With [`Propagate::Colour`]: black, then the prompt masks' colours.
    colours: Vec<[u8; 3]>,
    /// Oldest first; at most `options.num_frames`.
    cache: VecDeque<CachedFrame>,
}

impl<'m> Propagator<'m> {
    /// Prepares the user's prompts (at least one). For the official "first frame is the prompt"
    /// mode, pass `[Prompt { image: first_frame, mask }]` and feed the frames after it.
    pub fn new(
        model: &'m SegGpt,
        device: &Device,
        prompts: &[Prompt],
        options: VideoOptions,
    ) -> Result<Self, VideoError> {
        Self::with_tuned(model, device, prompts, &[], options)
    }

    /// [`Self::new`] with tuned prompts too (docs/MODEL.md §16): user prompts that follow
    /// `prompts` in every batch, before the cached frames.
    pub fn with_tuned(
        model: &'m SegGpt,
        device: &Device,
        prompts: &[Prompt],
        tuned: &[TunedPrompt],
        options: VideoOptions,
    ) -> Result<Self, VideoError> {
        options.check_prompts(prompts.len(), tuned.len())?;
        let (h, w) = model.config().half_image_size();
        let mut prompt_images = Vec::with_capacity(prompts.len());
        let mut prompt_masks = Vec::with_capacity(prompts.len());
        let mut rgb_masks = Vec::with_capacity(prompts.len());
        let mut resized_prompts = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let image = resize_image(&prompt.image, h, w)?;
            prompt_images.push(normalize_image(&image));
            let rgb = rgb_mask(&prompt.mask)?;
            // Pillow NEAREST, as the official loop resizes its prompt target (docs/MODEL.md §3.5).
            let resized = resize_nearest(rgb.as_raw(), rgb.width() as usize, rgb.height() as usize, 3, w, h);
            let mask = RgbImage::new(w as u32, h as u32, resized)?;
            prompt_masks.push(normalize_image(&mask));
            resized_prompts.push(CachedFrame { image, mask });
            rgb_masks.push(rgb);
        }
        for prompt in tuned {
            prompt.check_shape((h, w))?;
            prompt_images.push(prompt.pixel_values.clone());
            prompt_masks.push(prompt.masks.clone());
        }
        let colours = options.propagation_colours(&rgb_masks)?;
        Ok(Self {
            model,
            device: device.clone(),
            options,
            prompt_images,
            prompt_masks,
            resized_prompts,
            colours,
            cache: VecDeque::with_capacity(options.num_frames),
        })
    }

    /// The options this propagation runs with.
    pub fn options(&self) -> &VideoOptions {
        &self.options
    }

    /// How many previous frames the next batch holds (grows to K as the clip goes on).
    pub fn cached_frames(&self) -> usize {
        self.cache.len()
    }

    /// Forgets the previous frames (a new clip with the same prompts, or a jump in a live
    /// stream); the user's prompts stay.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Runs the forward pass for the next frame of the clip: the batch is the user's prompts,
    /// then the cached frames oldest first, each over `frame` resized to the half canvas
    /// (docs/MODEL.md §13). Returns the answer's query half `(3, H/2, W)`, still on the device;
    /// pass its values and the same `frame` to [`Self::finish`]. `progress(done, total)` is called
    /// after each encoder block.
    pub fn predict(
        &self,
        frame: &RgbImage,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<3>, SegmentError> {
        let (h, w) = self.model.config().half_image_size();
        let query = normalize_image(&resize_image(frame, h, w)?);
        if self.options.forward.ensemble == Some(Ensemble::Spatial) {
            // The user's prompts and the cached frames tiled into one grid prompt, oldest frame
            // last, as the batch would order them; the model runs K = 1 (docs/MODEL.md §14).
            let pairs: Vec<(&RgbImage, &RgbImage)> =
                self.resized_prompts.iter().chain(&self.cache).map(|c| (&c.image, &c.mask)).collect();
            let (image, mask) = spatial_grid(&pairs, h as u32, w as u32)?;
            let upload = |image: &ChwImage| {
                Tensor::from_data(TensorData::new(image.as_slice().to_vec(), [1, 3, h, w]), &self.device)
            };
            let answer = self.model.answer(
                upload(&query),
                upload(&normalize_image(&image)),
                upload(&normalize_image(&mask)),
                self.options.forward,
                progress,
            )?;
            return Ok(answer.reshape([3, h, w]));
        }
        let cached_images: Vec<ChwImage> = self.cache.iter().map(|c| normalize_image(&c.image)).collect();
        let cached_masks: Vec<ChwImage> = self.cache.iter().map(|c| normalize_image(&c.mask)).collect();
        let k = self.prompt_images.len() + cached_images.len();
        let upload = |images: Vec<&ChwImage>| -> Tensor<4> {
            let mut values = Vec::with_capacity(k * 3 * h * w);
            for image in images {
                values.extend_from_slice(image.as_slice());
            }
            Tensor::from_data(TensorData::new(values, [k, 3, h, w]), &self.device)
        };
        let query_half = self.model.answer(
            upload(vec![&query; k]),
            upload(self.prompt_images.iter().chain(&cached_images).collect()),
            upload(self.prompt_masks.iter().chain(&cached_masks).collect()),
            self.options.forward,
            progress,
        )?;
        Ok(query_half.reshape([3, h, w]))
    }

    /// Makes the frame's result from the predicted query half (the `(3, H/2, W)` values of
    /// [`Self::predict`], read back) and moves the caches on: `frame` (resized) and its propagated
    /// mask become the newest cached pair, and the oldest leaves beyond K.
    ///
    /// The result is the same as `Segmenter::finish` gives for an image (docs/MODEL.md §8.1): the
    /// prediction at the frame's size in the prompts' colours, and with `num_labels` its class map.
    /// The cached mask is made from the prediction at the half-canvas size, before upsampling, as
    /// in the official loop. A failed frame leaves the caches as they were.
    pub fn finish(&mut self, values: Vec<f32>, frame: &RgbImage) -> Result<Segmentation, SegmentError> {
        let count = values.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(SegmentError::NonFinite { count, total: values.len() });
        }
        let (h, w) = self.model.config().half_image_size();
        let prediction = denormalize(&ChwImage::new(3, h, w, values)?);
        let full = upsample(&prediction, frame.height(), frame.width())?;
        let classes = self.options.num_labels.map(|n| class_map(&full, &build_palette(n))).transpose()?;
        let segmentation = Segmentation { mask: to_rgb_u8(&full), classes };
        if self.options.num_frames > 0 {
            let mask = match self.options.propagate {
                Propagate::Binary => binary_mask(&prediction),
                Propagate::Colour => snap_to_colours(&prediction, &self.colours)?,
            };
            let image = resize_image(frame, h, w)?;
            if self.cache.len() == self.options.num_frames {
                self.cache.pop_front();
            }
            self.cache.push_back(CachedFrame { image, mask });
        }
        Ok(segmentation)
    }

    /// [`Self::predict`] and [`Self::finish`] with a blocking read-back (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &mut self,
        frame: &RgbImage,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Segmentation, SegmentError> {
        let pred = self.predict(frame, progress)?;
        let values =
            pred.into_data().try_into_vec::<f32>().map_err(|e| SegmentError::Readback(format!("{e:?}")))?;
        self.finish(values, frame)
    }
}

/// How many previous frames K fit beside `user_prompts` prompts on a device whose largest storage
/// binding is `limit` bytes: the prompt count [`max_prompts`] allows, less the user's prompts
/// (0 when even those do not fit).
pub fn max_cached_frames(
    config: &SegGptConfig,
    user_prompts: usize,
    limit: u64,
    budget: MemoryBudget,
) -> usize {
    max_prompts(config, limit, budget).saturating_sub(user_prompts)
}

/// A frame or prompt image resized to `height x width` with Pillow's BICUBIC, as the official loop
/// does before it divides by 255 (docs/MODEL.md §3.4).
fn resize_image(image: &RgbImage, height: usize, width: usize) -> Result<RgbImage, InputError> {
    let resized =
        resize_bicubic(image.as_raw(), image.width() as usize, image.height() as usize, 3, width, height);
    RgbImage::new(width as u32, height as u32, resized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::RandomSource;

    /// The smallest model the loader accepts quickly: 4x4 patches on a 16x8 canvas.
    fn tiny_model(device: &Device) -> SegGpt {
        let config: SegGptConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "mlp_dim": 32,
            "patch_size": 4, "image_size": [16, 8], "pretrain_image_size": 8, "decoder_hidden_size": 4,
            "merge_index": 1, "intermediate_hidden_state_indices": [1, 2]
        }))
        .unwrap();
        let source = RandomSource::new(&config, 3).unwrap();
        SegGpt::load(&source, config, device, MemoryBudget::DEFAULT).unwrap()
    }

    fn image(width: u32, height: u32, seed: u32) -> RgbImage {
        let data = (0..width * height * 3).map(|i| ((i * 37 + seed * 101) % 256) as u8).collect();
        RgbImage::new(width, height, data).unwrap()
    }

    fn prompt(colours: &[[u8; 3]]) -> Prompt {
        let mask: Vec<u8> = (0..12 * 10).flat_map(|i| colours[i % colours.len()]).collect();
        Prompt { image: image(12, 10, 1), mask: PromptMask::Rgb(RgbImage::new(12, 10, mask).unwrap()) }
    }

    #[test]
    fn names_are_the_serde_names() {
        for p in Propagate::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
    }

    #[test]
    fn the_cache_holds_the_latest_k_frames_and_grows_the_batch() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let options = VideoOptions { num_frames: 2, num_labels: Some(1), ..VideoOptions::default() };
        let mut propagator =
            Propagator::new(&model, &device, &[prompt(&[[0, 0, 0], [255, 255, 255]])], options).unwrap();
        for (i, expected_cache) in [1, 2, 2].into_iter().enumerate() {
            let frame = image(7, 5, i as u32);
            // The batch is the prompt plus the frames cached so far.
            let pred = propagator.predict(&frame, &mut |_, _| {}).unwrap();
            assert_eq!(pred.dims(), [3, 8, 8]);
            let values = pred.into_data().try_into_vec::<f32>().unwrap();
            let result = propagator.finish(values, &frame).unwrap();
            assert_eq!((result.mask.width(), result.mask.height()), (7, 5));
            assert!(result.classes.is_some());
            assert_eq!(propagator.cached_frames(), expected_cache);
            // The newest cached frame is this one, resized; its mask is black or white.
            let newest = propagator.cache.back().unwrap();
            assert_eq!(newest.image.as_raw(), resize_image(&frame, 8, 8).unwrap().as_raw());
            assert!(newest.mask.as_raw().iter().all(|&v| v == 0 || v == 255));
        }
        propagator.clear_cache();
        assert_eq!(propagator.cached_frames(), 0);
    }

    #[test]
    fn k_zero_keeps_nothing_and_every_frame_is_a_one_shot_segmentation() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let prompts = [prompt(&[[0, 0, 0], [255, 0, 0]])];
        let options = VideoOptions { num_frames: 0, ..VideoOptions::default() };
        let mut propagator = Propagator::new(&model, &device, &prompts, options).unwrap();
        let segmenter =
            crate::segment::Segmenter::new(&model, &device, &prompts, ForwardOptions::default()).unwrap();
        for seed in 0..2 {
            let frame = image(9, 6, seed);
            let result = propagator.run(&frame, &mut |_, _| {}).unwrap();
            assert_eq!(propagator.cached_frames(), 0);
            let target = crate::segment::Target { image: frame };
            let single = segmenter.run(&target, None, &mut |_, _| {}).unwrap();
            assert_eq!(result.mask.as_raw(), single.mask.as_raw());
        }
    }

    #[test]
    fn colour_propagation_caches_prompt_colours_only() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let colours = [[0, 0, 0], [255, 0, 0], [0, 0, 255]];
        let options = VideoOptions { num_frames: 1, propagate: Propagate::Colour, ..VideoOptions::default() };
        let mut propagator = Propagator::new(&model, &device, &[prompt(&colours)], options).unwrap();
        assert_eq!(propagator.colours, vec![[0, 0, 0], [0, 0, 255], [255, 0, 0]]);
        propagator.run(&image(8, 8, 5), &mut |_, _| {}).unwrap();
        let mask = &propagator.cache.back().unwrap().mask;
        assert!(mask.as_raw().chunks_exact(3).all(|px| colours.iter().any(|c| c == px)));
    }

    #[test]
    fn a_non_finite_prediction_fails_and_leaves_the_cache_alone() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let mut propagator =
            Propagator::new(&model, &device, &[prompt(&[[255, 255, 255]])], VideoOptions::default()).unwrap();
        let mut values = vec![0.0; 3 * 8 * 8];
        values[5] = f32::NAN;
        let err = propagator.finish(values, &image(4, 4, 0)).unwrap_err();
        assert!(matches!(err, SegmentError::NonFinite { count: 1, .. }), "{err}");
        assert_eq!(propagator.cached_frames(), 0);
    }

    #[test]
    fn no_prompt_and_noisy_colour_masks_are_refused() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let err = Propagator::new(&model, &device, &[], VideoOptions::default()).err().unwrap();
        assert!(matches!(err, VideoError::Segment(SegmentError::NoPrompt)));
        let noisy: Vec<u8> = (0..30 * 30).flat_map(|i| [(i % 256) as u8, (i / 256) as u8 + 1, 0]).collect();
        let prompts = [Prompt {
            image: image(30, 30, 0),
            mask: PromptMask::Rgb(RgbImage::new(30, 30, noisy).unwrap()),
        }];
        let options = VideoOptions { propagate: Propagate::Colour, ..VideoOptions::default() };
        let err = Propagator::new(&model, &device, &prompts, options).err().unwrap();
        assert!(matches!(err, VideoError::TooManyColours), "{err}");
        // The same check without a model, for callers that check before they load one.
        let err = options.check_prompt_masks(&prompts).unwrap_err();
        assert!(matches!(err, VideoError::TooManyColours), "{err}");
        // Binary propagation does not need the colours.
        assert!(VideoOptions::default().check_prompt_masks(&prompts).is_ok());
        assert!(Propagator::new(&model, &device, &prompts, VideoOptions::default()).is_ok());
    }

    /// A tuned prompt of the tiny model's half canvas: any values, as a learned one has.
    fn tuned(seed: usize) -> TunedPrompt {
        let values =
            |k: usize| (0..3 * 8 * 8).map(move |i| ((i * 7 + seed * 13 + k) % 17) as f32 / 8.0 - 1.0);
        let image = |k| ChwImage::new(3, 8, 8, values(k).collect()).unwrap();
        TunedPrompt { pixel_values: image(0), masks: image(5) }
    }

    #[test]
    fn tuned_prompts_lead_the_batch_like_in_segment() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let prompts = [prompt(&[[0, 0, 0], [255, 0, 0]])];
        let tuned = [tuned(1)];
        for ordinary in [&prompts[..], &[]] {
            // K = 0: every frame is the segmentation of `segment` with the same prompts.
            let options = VideoOptions { num_frames: 0, ..VideoOptions::default() };
            let mut propagator = Propagator::with_tuned(&model, &device, ordinary, &tuned, options).unwrap();
            let segmenter = crate::segment::Segmenter::with_tuned(
                &model,
                &device,
                ordinary,
                &tuned,
                ForwardOptions::default(),
            )
            .unwrap();
            let frame = image(9, 6, 2);
            let result = propagator.run(&frame, &mut |_, _| {}).unwrap();
            let single =
                segmenter.run(&crate::segment::Target { image: frame }, None, &mut |_, _| {}).unwrap();
            assert_eq!(result.mask.as_raw(), single.mask.as_raw());
        }
        // Cached frames follow the tuned prompt.
        let options = VideoOptions { num_frames: 2, ..VideoOptions::default() };
        let mut propagator = Propagator::with_tuned(&model, &device, &[], &tuned, options).unwrap();
        for _ in 0..3 {
            propagator.run(&image(9, 6, 3), &mut |_, _| {}).unwrap();
        }
        assert_eq!(propagator.cached_frames(), 2);
    }

    #[test]
    fn tuned_prompts_of_another_shape_spatial_or_colour_alone_are_refused() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let small = ChwImage::new(3, 4, 8, vec![0.0; 3 * 4 * 8]).unwrap();
        let other = TunedPrompt { pixel_values: small.clone(), masks: small };
        let err =
            Propagator::with_tuned(&model, &device, &[], &[other], VideoOptions::default()).err().unwrap();
        assert!(
            matches!(err, VideoError::Segment(SegmentError::TunedPromptShape { found: [3, 4, 8], .. })),
            "{err}"
        );
        let spatial = VideoOptions {
            forward: ForwardOptions { ensemble: Some(Ensemble::Spatial), ..ForwardOptions::default() },
            ..VideoOptions::default()
        };
        let err =
            Propagator::with_tuned(&model, &device, &[prompt(&[[255, 255, 255]])], &[tuned(0)], spatial)
                .err()
                .unwrap();
        assert!(matches!(err, VideoError::Segment(SegmentError::SpatialTunedPrompt)), "{err}");
        let colour = VideoOptions { propagate: Propagate::Colour, ..VideoOptions::default() };
        let err = Propagator::with_tuned(&model, &device, &[], &[tuned(0)], colour).err().unwrap();
        assert!(matches!(err, VideoError::ColourWithoutMask), "{err}");
        // With an ordinary prompt, its mask gives the colours.
        let with_mask = [prompt(&[[0, 0, 0], [0, 255, 0]])];
        assert!(Propagator::with_tuned(&model, &device, &with_mask, &[tuned(0)], colour).is_ok());
    }

    #[test]
    fn cached_frames_are_the_prompt_count_left_over() {
        let config = SegGptConfig::default();
        // WebGPU's default 128 MiB binding holds 10 prompts of the released model (docs/MODEL.md
        // §17): one user prompt and the paper's best K = 8 fit, with one to spare.
        assert_eq!(max_cached_frames(&config, 1, 128 << 20, MemoryBudget::DEFAULT), 9);
        assert_eq!(max_cached_frames(&config, 6, 128 << 20, MemoryBudget::DEFAULT), 4);
        assert_eq!(max_cached_frames(&config, 11, 128 << 20, MemoryBudget::DEFAULT), 0);
    }
}
