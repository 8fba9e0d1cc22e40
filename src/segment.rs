//! Segmentation end to end, shared by the CLI and the browser: decoded prompts and targets ->
//! model tensors -> one painted mask (and class map) per target (docs/MODEL.md §1.1, §3, §8).

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::{Ensemble, ForwardOptions, SegGpt, ShapeError};
pub use crate::pipeline::Tiling;
use crate::pipeline::{
    ChwImage, ClassMap, InputError, RgbImage, build_palette, class_map, decode_class_map, decode_rgb,
    denormalize, encode_gray_png, encode_rgb_png, mask_to_rgb, normalize_image, prepare_image,
    prepare_mask_rgb, spatial_grid, tiles, to_rgb_u8, upsample,
};

/// A prompt mask as the user gave it.
#[derive(Debug, Clone)]
pub enum PromptMask {
    /// Colours mark classes or instances, black is background (the official format).
    Rgb(RgbImage),
    /// 8-bit class indices, coloured with the palette of `num_labels` classes (docs/MODEL.md §3.7).
    Classes { map: ClassMap, num_labels: usize },
}

/// One in-context example: an image and its mask.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub image: RgbImage,
    pub mask: PromptMask,
}

impl Prompt {
    /// Decodes a prompt from file bytes. With `num_labels`, a grayscale or palette PNG mask is
    /// read as class indices; any other mask is read as colours (like PIL's `convert("RGB")`).
    pub fn decode(
        image: &[u8],
        image_name: &str,
        mask: &[u8],
        mask_name: &str,
        num_labels: Option<usize>,
    ) -> Result<Self, InputError> {
        let image = decode_rgb(image, image_name)?;
        let mask = match num_labels {
            Some(num_labels) => match decode_class_map(mask, mask_name) {
                Ok(map) => PromptMask::Classes { map, num_labels },
                Err(InputError::UnsupportedMask { .. }) => PromptMask::Rgb(decode_rgb(mask, mask_name)?),
                Err(other) => return Err(other),
            },
            None => PromptMask::Rgb(decode_rgb(mask, mask_name)?),
        };
        let prompt = Self { image, mask };
        prompt.check_mask(image_name, mask_name, num_labels.is_some())?;
        Ok(prompt)
    }

    /// Refuses a mask of another size than its image, a mask that marks nothing, and (without a
    /// class count) a grey class-index mask that would be read as near-black colours.
    fn check_mask(&self, image_name: &str, mask_name: &str, has_labels: bool) -> Result<(), InputError> {
        let (mask_width, mask_height) = match &self.mask {
            PromptMask::Rgb(rgb) => (rgb.width(), rgb.height()),
            PromptMask::Classes { map, .. } => (map.width(), map.height()),
        };
        let (width, height) = (self.image.width(), self.image.height());
        if (mask_width, mask_height) != (width, height) {
            return Err(InputError::PromptMaskSize {
                mask: mask_name.to_owned(),
                mask_width,
                mask_height,
                image: image_name.to_owned(),
                width,
                height,
            });
        }
        let values = match &self.mask {
            PromptMask::Rgb(rgb) => rgb.as_raw(),
            PromptMask::Classes { map, .. } => map.as_raw(),
        };
        let largest = values.iter().copied().max().unwrap_or(0);
        if largest == 0 {
            let detail =
                if has_labels { "every class index is 0, the background" } else { "every pixel is black" };
            return Err(InputError::EmptyPromptMask {
                name: mask_name.to_owned(),
                detail: detail.to_owned(),
            });
        }
        let grey = |px: &[u8]| px[0] == px[1] && px[1] == px[2];
        if let PromptMask::Rgb(rgb) = &self.mask
            && largest <= MAX_CLASS_INDEX_LOOKALIKE
            && rgb.as_raw().chunks_exact(3).all(grey)
        {
            return Err(InputError::ClassIndexMaskAsColours { name: mask_name.to_owned(), largest });
        }
        Ok(())
    }
}

/// The largest grey value of a mask that is taken for class indices given without a class
/// count: painted colours are bright, and no colour mask is drawn in greys this dark.
const MAX_CLASS_INDEX_LOOKALIKE: u8 = 31;

impl Prompt {
    /// The model inputs of this prompt at the half-canvas size `height x width`: the normalised
    /// image and the normalised mask (docs/MODEL.md §3.3).
    pub fn prepare(&self, height: usize, width: usize) -> Result<(ChwImage, ChwImage), InputError> {
        let (h, w) = (height as u32, width as u32);
        let image = prepare_image(&self.image, h, w)?;
        let mask = prepare_mask_rgb(self.rgb_mask()?.as_ref(), h, w)?;
        Ok((image, mask))
    }

    /// The mask as colours: class indices through the palette of `num_labels` classes
    /// (docs/MODEL.md §3.7), colour masks as they are.
    pub fn rgb_mask(&self) -> Result<std::borrow::Cow<'_, RgbImage>, InputError> {
        match &self.mask {
            PromptMask::Rgb(rgb) => Ok(std::borrow::Cow::Borrowed(rgb)),
            PromptMask::Classes { map, num_labels } => {
                Ok(std::borrow::Cow::Owned(mask_to_rgb(map, Some(&build_palette(*num_labels)))?))
            }
        }
    }
}

/// A prompt that is already model input: the normalised `(3, H/2, W)` image and mask a
/// `seggpt tune` run learned (docs/MODEL.md §16). It is used as it is, for this model shape only.
#[derive(Debug, Clone)]
pub struct TunedPrompt {
    pub pixel_values: ChwImage,
    pub masks: ChwImage,
}

impl TunedPrompt {
    /// Refuses a prompt that is not `(3, height, width)`, the half canvas of the model it joins.
    pub fn check_shape(&self, (height, width): (usize, usize)) -> Result<(), SegmentError> {
        let expected = [3, height, width];
        for part in [&self.pixel_values, &self.masks] {
            let found = [part.channels(), part.height(), part.width()];
            if found != expected {
                return Err(SegmentError::TunedPromptShape { found, expected });
            }
        }
        Ok(())
    }
}

/// A target image to segment.
#[derive(Debug, Clone)]
pub struct Target {
    pub image: RgbImage,
}

impl Target {
    pub fn decode(bytes: &[u8], name: &str) -> Result<Self, InputError> {
        Ok(Self { image: decode_rgb(bytes, name)? })
    }

    /// The targets a run segments for this one (docs/MODEL.md §27): its tiles in
    /// [`Tiling::tiles`]' order, or the target itself without tiling or where one tile covers it.
    pub fn tiles(&self, tiling: Option<&Tiling>) -> Result<Vec<Target>, InputError> {
        let (width, height) = (self.image.width(), self.image.height());
        match tiling.map(|t| t.tiles(width, height)) {
            Some(tiles) if tiles.len() > 1 => {
                tiles.into_iter().map(|tile| Ok(Target { image: tiles::crop(&self.image, tile)? })).collect()
            }
            _ => Ok(vec![self.clone()]),
        }
    }
}

/// Why a segmentation failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("segmenting needs at least one prompt (an image and its mask)")]
    NoPrompt,
    #[error(
        "the tuned prompt is {found:?} (channels, height, width) but this model takes {expected:?}; it was tuned for another model shape"
    )]
    TunedPromptShape { found: [usize; 3], expected: [usize; 3] },
    #[error(
        "a tuned prompt cannot join the spatial ensemble (its grid is made of images and masks, and a \
         tuned prompt is already model input); use another ensemble"
    )]
    SpatialTunedPrompt,
    #[error("reading the result back from the device failed: {0}")]
    Readback(String),
    /// The weights or the config make the model overflow: a mask from these values would be
    /// black or arbitrary, so none is made.
    #[error(
        "the model's output holds {count} non-finite value(s) (NaN or infinity) out of {total}; \
         the weights or the config are broken, so no mask is made"
    )]
    NonFinite { count: usize, total: usize },
}

/// The result for one target.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// The painted mask at the target's size, in the prompts' colours.
    pub mask: RgbImage,
    /// With `num_labels`: per pixel the index of the nearest palette colour (0 = background).
    pub classes: Option<ClassMap>,
}

impl Segmentation {
    /// `target`'s result from the results of its [`Target::tiles`], in their order: each pixel
    /// from the tile whose centre is nearest (docs/MODEL.md §27). A single part is the result.
    pub fn stitch(
        tiling: Option<&Tiling>,
        target: &Target,
        mut parts: Vec<Segmentation>,
    ) -> Result<Self, InputError> {
        let (width, height) = (target.image.width(), target.image.height());
        let Some(tiling) = tiling.filter(|_| parts.len() > 1) else {
            return Ok(parts.remove(0));
        };
        let masks: Vec<RgbImage> = parts.iter().map(|p| p.mask.clone()).collect();
        let classes: Option<Vec<ClassMap>> = parts.into_iter().map(|p| p.classes).collect();
        Ok(Segmentation {
            mask: tiles::stitch_rgb(tiling, width, height, &masks)?,
            classes: classes.map(|maps| tiles::stitch_classes(tiling, width, height, &maps)).transpose()?,
        })
    }

    pub fn mask_png(&self) -> Result<Vec<u8>, InputError> {
        encode_rgb_png(&self.mask)
    }

    pub fn classes_png(&self) -> Result<Option<Vec<u8>>, InputError> {
        self.classes.as_ref().map(encode_gray_png).transpose()
    }
}

/// Prompts prepared once on the device, reused for every target.
pub struct Segmenter<'m> {
    model: &'m SegGpt,
    device: Device,
    prompt_pixel_values: Tensor<4>,
    prompt_masks: Tensor<4>,
    options: ForwardOptions,
}

impl<'m> Segmenter<'m> {
    /// Prepares `prompts` for the model: each resized on its own, or, with the spatial ensemble,
    /// tiled into one grid prompt.
    pub fn new(
        model: &'m SegGpt,
        device: &Device,
        prompts: &[Prompt],
        options: ForwardOptions,
    ) -> Result<Self, SegmentError> {
        Self::with_tuned(model, device, prompts, &[], options)
    }

    /// [`Self::new`] with tuned prompts too, which join the ensemble after `prompts`.
    pub fn with_tuned(
        model: &'m SegGpt,
        device: &Device,
        prompts: &[Prompt],
        tuned: &[TunedPrompt],
        options: ForwardOptions,
    ) -> Result<Self, SegmentError> {
        if prompts.is_empty() && tuned.is_empty() {
            return Err(SegmentError::NoPrompt);
        }
        let (h, w) = model.config().half_image_size();
        let (mut images, mut masks) = if options.ensemble == Some(Ensemble::Spatial) {
            if !tuned.is_empty() {
                return Err(SegmentError::SpatialTunedPrompt);
            }
            // One grid prompt (docs/MODEL.md §14): the model runs K = 1.
            let rgb_masks = prompts.iter().map(Prompt::rgb_mask).collect::<Result<Vec<_>, _>>()?;
            let pairs: Vec<_> = prompts.iter().zip(&rgb_masks).map(|(p, m)| (&p.image, m.as_ref())).collect();
            let (image, mask) = spatial_grid(&pairs, h as u32, w as u32)?;
            (vec![normalize_image(&image)], vec![normalize_image(&mask)])
        } else {
            let mut images = Vec::new();
            let mut masks = Vec::new();
            for prompt in prompts {
                let (image, mask) = prompt.prepare(h, w)?;
                images.push(image);
                masks.push(mask);
            }
            (images, masks)
        };
        for prompt in tuned {
            prompt.check_shape((h, w))?;
            images.push(prompt.pixel_values.clone());
            masks.push(prompt.masks.clone());
        }
        Ok(Self {
            model,
            device: device.clone(),
            prompt_pixel_values: stack(&images, device),
            prompt_masks: stack(&masks, device),
            options,
        })
    }

    /// Runs the forward pass for `target` and returns the query half `(3, H/2, W)` of the
    /// prediction, still on the device; read it back with [`Self::finish`]'s input.
    pub fn predict(
        &self,
        target: &Target,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<3>, SegmentError> {
        let (h, w) = self.model.config().half_image_size();
        let k = self.prompt_pixel_values.dims()[0];
        let query = prepare_image(&target.image, h as u32, w as u32)?;
        let query = stack(&vec![query; k], &self.device);
        let (prompt_pixel_values, prompt_masks) =
            (self.prompt_pixel_values.clone(), self.prompt_masks.clone());
        let query_half =
            self.model.answer(query, prompt_pixel_values, prompt_masks, self.options, progress)?;
        Ok(query_half.reshape([3, h, w]))
    }

    /// Pixels from the predicted query half (`(3, H/2, W)` values read back from the device).
    pub fn finish(
        &self,
        query_half: Vec<f32>,
        target: &Target,
        num_labels: Option<usize>,
    ) -> Result<Segmentation, SegmentError> {
        let count = query_half.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(SegmentError::NonFinite { count, total: query_half.len() });
        }
        let (h, w) = self.model.config().half_image_size();
        let values = denormalize(&ChwImage::new(3, h, w, query_half)?);
        let (tw, th) = (target.image.width(), target.image.height());
        let full = upsample(&values, th, tw)?;
        let classes = num_labels.map(|n| class_map(&full, &build_palette(n))).transpose()?;
        Ok(Segmentation { mask: to_rgb_u8(&full), classes })
    }

    /// [`Self::predict`] and [`Self::finish`] with a blocking read-back (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        target: &Target,
        num_labels: Option<usize>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Segmentation, SegmentError> {
        let pred = self.predict(target, progress)?;
        let values =
            pred.into_data().try_into_vec::<f32>().map_err(|e| SegmentError::Readback(format!("{e:?}")))?;
        self.finish(values, target, num_labels)
    }

    /// [`Self::run`] tile by tile with `tiling` (docs/MODEL.md §27): [`Target::tiles`], each
    /// segmented with the same prompts, then [`Segmentation::stitch`]. `progress` counts blocks
    /// over all tiles.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_tiled(
        &self,
        target: &Target,
        tiling: Option<&Tiling>,
        num_labels: Option<usize>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Segmentation, SegmentError> {
        let tiles = target.tiles(tiling)?;
        let mut parts = Vec::with_capacity(tiles.len());
        for (i, tile) in tiles.iter().enumerate() {
            let mut tile_progress = |block, blocks| progress(i * blocks + block, tiles.len() * blocks);
            parts.push(self.run(tile, num_labels, &mut tile_progress)?);
        }
        Ok(Segmentation::stitch(tiling, target, parts)?)
    }
}

/// Stacks same-sized CHW images into a `(K, C, H, W)` device tensor.
fn stack(images: &[ChwImage], device: &Device) -> Tensor<4> {
    let (c, h, w) = (images[0].channels(), images[0].height(), images[0].width());
    let mut values = Vec::with_capacity(images.len() * c * h * w);
    for image in images {
        values.extend_from_slice(image.as_slice());
    }
    Tensor::from_data(TensorData::new(values, [images.len(), c, h, w]), device)
}
