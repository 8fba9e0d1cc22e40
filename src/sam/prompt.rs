//! SAM's prompt encoder (docs/MODEL.md §25.2): points and a box become "sparse" tokens, each the
//! random-Fourier encoding of its position plus a learnt embedding of what it is. The same encoding
//! of every cell's centre is the image's positional embedding. A prompt is a handful of tokens, so
//! this runs on the CPU, in f32, in transformers' order of operations.

use std::f64::consts::PI;

use super::config::SamConfig;
use crate::model::load::{Loader, Store};
use crate::weights::LoadError;

/// Where the point is, relative to the object to select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    /// On the object (SAM's label 1).
    Foreground,
    /// Off the object (label 0).
    Background,
}

/// A point in model-input pixels (the image resized and padded to the model's square side). In
/// `f64`: transformers' processor hands the model `float64` coordinates, which the prompt encoder
/// normalises in `f64` before it casts them to `f32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: PointLabel,
}

/// What the user gave: points, a box `[x0, y0, x1, y1]`, or both, in model-input pixels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub points: Vec<Point>,
    pub bbox: Option<[f64; 4]>,
}

pub(super) const TIED_POSITIONAL: &str = "prompt_encoder.shared_embedding.positional_embedding";
const POSITIONAL: &str = "shared_image_embedding.positional_embedding";

pub struct PromptEncoder {
    /// The random Fourier matrix `(2, F)`, row-major: row 0 multiplies x, row 1 y.
    gaussian: Vec<f32>,
    /// Added to a point's encoding: `[off, on, box top-left, box bottom-right]`.
    point_embed: [Vec<f32>; 4],
    /// Replaces the encoding of the padding point added when there is no box.
    not_a_point: Vec<f32>,
    /// The dense embedding without a mask input, one value per channel.
    pub no_mask: Vec<f32>,
    /// The side prompt coordinates are divided by (the model input's).
    input_size: f32,
    width: usize,
}

impl PromptEncoder {
    pub fn load<S: Store>(loader: &mut Loader<S>, config: &SamConfig) -> Result<Self, LoadError> {
        let p = &config.prompt_encoder_config;
        let (c, f) = (p.hidden_size, config.vision_config.num_pos_feats);
        let gaussian = loader.values(POSITIONAL, &[2, f])?;
        // transformers ties the prompt encoder's copy to the image's; a checkpoint that stores both
        // must store the same values.
        if loader.holds(TIED_POSITIONAL) && loader.values(TIED_POSITIONAL, &[2, f])? != gaussian {
            return Err(LoadError::Config(format!(
                "`{TIED_POSITIONAL}` differs from `{POSITIONAL}`, to which transformers ties it: the checkpoint is inconsistent"
            )));
        }
        let mut one = |name: &str| loader.values(&format!("prompt_encoder.{name}.weight"), &[1, c]);
        let point_embed =
            [one("point_embed.0")?, one("point_embed.1")?, one("point_embed.2")?, one("point_embed.3")?];
        let not_a_point = one("not_a_point_embed")?;
        let no_mask = one("no_mask_embed")?;
        // The mask-input path (a previous low-resolution mask as a prompt) is not offered: its
        // weights are checked, not read.
        let (m, q) = (p.mask_input_channels, p.mask_input_channels / 4);
        for (name, shape) in [
            ("conv1.weight", vec![q, 1, 2, 2]),
            ("conv1.bias", vec![q]),
            ("conv2.weight", vec![m, q, 2, 2]),
            ("conv2.bias", vec![m]),
            ("conv3.weight", vec![c, m, 1, 1]),
            ("conv3.bias", vec![c]),
            ("layer_norm1.weight", vec![q]),
            ("layer_norm1.bias", vec![q]),
            ("layer_norm2.weight", vec![m]),
            ("layer_norm2.bias", vec![m]),
        ] {
            loader.check_unused(&format!("prompt_encoder.mask_embed.{name}"), &shape)?;
        }
        Ok(Self { gaussian, point_embed, not_a_point, no_mask, input_size: p.image_size as f32, width: c })
    }

    /// The encoding of a position already mapped to `[-1, 1]^2`: `[sin(2 pi u G), cos(2 pi u G)]`.
    fn fourier(&self, u: f32, v: f32) -> Vec<f32> {
        let f = self.width / 2;
        let two_pi = (2.0 * PI) as f32;
        let angles: Vec<f32> =
            (0..f).map(|i| two_pi * (u * self.gaussian[i] + v * self.gaussian[f + i])).collect();
        angles.iter().map(|a| a.sin()).chain(angles.iter().map(|a| a.cos())).collect()
    }

    /// A position in model-input pixels, shifted to the pixel's centre and mapped to `[-1, 1]`
    /// in `f64` (as the processor's `float64` points are), then encoded in `f32`.
    fn encode_pixel(&self, x: f64, y: f64) -> Vec<f32> {
        let size = f64::from(self.input_size);
        let unit = |c: f64| (2.0 * ((c + 0.5) / size) - 1.0) as f32;
        self.fourier(unit(x), unit(y))
    }

    /// The sparse tokens `(n, C)` row-major, and `n`: the points (with a padding point when there
    /// is no box), then the box's two corners.
    pub fn sparse(&self, prompt: &Prompt) -> (Vec<f32>, usize) {
        let add = |mut a: Vec<f32>, b: &[f32]| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        };
        let mut tokens = Vec::new();
        for point in &prompt.points {
            let kind = match point.label {
                PointLabel::Background => &self.point_embed[0],
                PointLabel::Foreground => &self.point_embed[1],
            };
            tokens.push(add(self.encode_pixel(point.x, point.y), kind));
        }
        match prompt.bbox {
            None => tokens.push(self.not_a_point.clone()),
            Some([x0, y0, x1, y1]) => {
                tokens.push(add(self.encode_pixel(x0, y0), &self.point_embed[2]));
                tokens.push(add(self.encode_pixel(x1, y1), &self.point_embed[3]));
            }
        }
        let n = tokens.len();
        (tokens.concat(), n)
    }

    /// The positional embedding of the image embedding's `g x g` cells, `(C, g, g)` row-major.
    pub fn image_positional(&self, g: usize) -> Vec<f32> {
        let cells: Vec<Vec<f32>> = (0..g * g)
            .map(|k| {
                let (row, col) = (k / g, k % g);
                // transformers builds the centres as `cumsum(ones) - 0.5`, then divides by `g`.
                let unit = |i: usize| 2.0 * (((i + 1) as f32 - 0.5) / g as f32) - 1.0;
                self.fourier(unit(col), unit(row))
            })
            .collect();
        (0..self.width).flat_map(|ch| cells.iter().map(move |cell| cell[ch])).collect()
    }
}
