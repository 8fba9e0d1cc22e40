//! Click to select: SAM from an image and a prompt in the image's own pixels to masks at the
//! image's size, the one path the CLI (`seggpt sam`) and the page share. The image is embedded
//! once ([`embed`]); every prompt on it then costs only the prompt encoder and the decoder
//! ([`select`]).

use burn::tensor::{Tensor, TensorData};

use crate::pipeline::RgbImage;
use crate::pipeline::sam::{SamFrame, mask_logits_at_original, sam_input, threshold};
use crate::sam::{ImageEmbedding, MaskLogits, Point, PointLabel, Prompt, Sam};

/// A prompt in the pixels of the image as given: points (x, y, on or off the object) and a box.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagePrompt {
    pub points: Vec<(f64, f64, PointLabel)>,
    /// `[x0, y0, x1, y1]`, the top-left and bottom-right corners.
    pub bbox: Option<[f64; 4]>,
}

impl ImagePrompt {
    /// Refuses a prompt SAM cannot take on a `width x height` image, in the user's words: nothing
    /// given, a point or a box corner outside the image, a box whose corners are swapped.
    pub fn check(&self, width: u32, height: u32) -> Result<(), String> {
        if self.points.is_empty() && self.bbox.is_none() {
            return Err("give at least one point or a box".into());
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let inside = |x: f64, y: f64| (0.0..=w).contains(&x) && (0.0..=h).contains(&y);
        for &(x, y, _) in &self.points {
            if !inside(x, y) {
                return Err(format!("the point {x},{y} is outside the {width}x{height} image"));
            }
        }
        if let Some([x0, y0, x1, y1]) = self.bbox {
            if !inside(x0, y0) || !inside(x1, y1) {
                return Err(format!("the box {x0},{y0},{x1},{y1} is not inside the {width}x{height} image"));
            }
            if x1 <= x0 || y1 <= y0 {
                return Err(format!(
                    "the box {x0},{y0},{x1},{y1} is inverted or empty: give the top-left corner, then the bottom-right"
                ));
            }
        }
        Ok(())
    }
}

/// An image ready for prompts: where it sits in the model's input, and its embedding.
pub struct EmbeddedImage {
    pub frame: SamFrame,
    pub embedding: ImageEmbedding,
}

/// The masks SAM gives for one prompt, at the image's size.
pub struct Selection {
    pub width: usize,
    pub height: usize,
    /// One row-major mask per candidate (three with multimask, else one).
    pub masks: Vec<Vec<bool>>,
    /// The predicted IoU of each candidate.
    pub iou_scores: Vec<f32>,
}

impl Selection {
    /// The candidate SAM rates best (the first of equals).
    pub fn best(&self) -> usize {
        (0..self.iou_scores.len())
            .fold(0, |best, i| if self.iou_scores[i] > self.iou_scores[best] { i } else { best })
    }
}

/// The benchmark's fixed input for `model` (`seggpt bench-sam` and the page's Benchmark time the same):
/// a synthetic image of SAM's input side and one click at its centre (three candidates, as a first
/// click gives), with SAM's shape in words for the report.
pub struct BenchClick {
    pub image: RgbImage,
    pub prompt: ImagePrompt,
    pub model: String,
}

impl BenchClick {
    pub fn new(model: &Sam) -> Self {
        let vision = &model.config().vision_config;
        let side = vision.image_size as u32;
        let pixels = (0..side * side * 3).map(|i| (i * 37 % 251) as u8).collect();
        let image = RgbImage::new(side, side, pixels).expect("side x side x 3 bytes");
        let centre = f64::from(side) / 2.0;
        Self {
            image,
            prompt: ImagePrompt { points: vec![(centre, centre, PointLabel::Foreground)], bbox: None },
            model: format!("ViT {} wide, {} blocks, {side} px", vision.hidden_size, vision.num_hidden_layers),
        }
    }
}

/// Resizes, normalises and pads `image` and runs the image encoder once.
pub fn embed(model: &Sam, image: &RgbImage) -> EmbeddedImage {
    let side = model.config().vision_config.image_size;
    let frame = SamFrame::new((image.height() as usize, image.width() as usize), side);
    let input = sam_input(image, &frame);
    let pixels =
        Tensor::from_data(TensorData::new(input.as_slice().to_vec(), [1, 3, side, side]), model.device());
    EmbeddedImage { frame, embedding: model.embed_image(pixels) }
}

/// `prompt` in model-input pixels, scaled as the processor scales it.
pub fn model_prompt(prompt: &ImagePrompt, frame: &SamFrame) -> Prompt {
    let points = prompt
        .points
        .iter()
        .map(|&(x, y, label)| {
            let (x, y) = frame.to_model(x, y);
            Point { x, y, label }
        })
        .collect();
    // The processor reads box corners as float32 before it scales them (points stay float64).
    let corner = |x: f64, y: f64| frame.to_model(f64::from(x as f32), f64::from(y as f32));
    let bbox = prompt.bbox.map(|[x0, y0, x1, y1]| {
        let ((x0, y0), (x1, y1)) = (corner(x0, y0), corner(x1, y1));
        [x0, y0, x1, y1]
    });
    Prompt { points, bbox }
}

/// The masks for `prompt` (checked by the caller with [`ImagePrompt::check`]), read back at once.
#[cfg(not(target_arch = "wasm32"))]
pub fn select(model: &Sam, image: &EmbeddedImage, prompt: &ImagePrompt, multimask: bool) -> Selection {
    predict(model, image, prompt, multimask).read()
}

/// The decoder's answer to `prompt` on the device, not yet read back.
pub fn predict(
    model: &Sam,
    image: &EmbeddedImage,
    prompt: &ImagePrompt,
    multimask: bool,
) -> PendingSelection {
    let frame = image.frame;
    PendingSelection {
        logits: model.predict(&image.embedding, &model_prompt(prompt, &frame), multimask),
        frame,
    }
}

/// A selection still on the device: read it back blocking (natively) or awaiting (the browser).
pub struct PendingSelection {
    logits: MaskLogits,
    frame: SamFrame,
}

impl PendingSelection {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(self) -> Selection {
        let Self { logits, frame } = self;
        let dims = logits.low_res.dims();
        selection(logits.low_res.into_data(), dims, logits.iou_scores.into_data(), &frame)
    }

    /// Waits for the device without blocking (the only read-back WebGPU in a browser allows).
    pub async fn read_async(self) -> Result<Selection, String> {
        let Self { logits, frame } = self;
        let dims = logits.low_res.dims();
        let read = |e: burn::tensor::ExecutionError| format!("the device failed: {e:?}");
        let low_res = logits.low_res.into_data_async().await.map_err(read)?;
        let scores = logits.iou_scores.into_data_async().await.map_err(read)?;
        Ok(selection(low_res, dims, scores, &frame))
    }
}

/// The masks at the image's size from the low-resolution logits `(1, M, s, s)`, in whatever float
/// type the device computes in.
fn selection(
    low_res: TensorData,
    [_, count, low_side, _]: [usize; 4],
    scores: TensorData,
    frame: &SamFrame,
) -> Selection {
    let low_res = low_res.try_into_vec_as::<f32>().expect("float logits");
    let iou_scores = scores.try_into_vec_as::<f32>().expect("float scores");
    let plane = low_side * low_side;
    let masks = (0..count)
        .map(|i| threshold(&mask_logits_at_original(&low_res[i * plane..(i + 1) * plane], low_side, frame)))
        .collect();
    let (height, width) = frame.original;
    Selection { width, height, masks, iou_scores }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64) -> (f64, f64, PointLabel) {
        (x, y, PointLabel::Foreground)
    }

    #[test]
    fn prompts_sam_cannot_take_are_refused_in_plain_words() {
        let empty = ImagePrompt::default();
        assert!(empty.check(10, 10).unwrap_err().contains("at least one point"));
        let outside = ImagePrompt { points: vec![point(10.5, 3.0)], bbox: None };
        assert!(outside.check(10, 10).unwrap_err().contains("outside the 10x10 image"));
        let inverted = ImagePrompt { points: vec![], bbox: Some([8.0, 2.0, 3.0, 9.0]) };
        assert!(inverted.check(10, 10).unwrap_err().contains("inverted"));
        let good = ImagePrompt { points: vec![point(0.0, 10.0)], bbox: Some([1.0, 1.0, 9.0, 9.0]) };
        assert_eq!(good.check(10, 10), Ok(()));
    }
}
