//! Patch embedding, the mask / segment / type tokens and the resized absolute position
//! embedding (docs/MODEL.md §4).

use burn::tensor::{Device, Tensor};

use crate::config::SegGptConfig;
use crate::model::EmbeddingType;
use crate::model::load::{Loader, Store};
use crate::model::nn::Linear;
use crate::weights::LoadError;

pub struct Embeddings<S: Store = Device> {
    /// Conv2d(k = s = patch) as a matmul over flattened `(c, py, px)` patches.
    patch_embeddings: Linear<S>,
    mask_token: S::Tensor<4>,
    segment_token_input: S::Tensor<4>,
    segment_token_prompt: S::Tensor<4>,
    type_token_semantic: S::Tensor<4>,
    type_token_instance: S::Tensor<4>,
    /// The position embedding already resized to the patch grid, `(1, Hp, Wp, D)`.
    position_embeddings: S::Tensor<4>,
    patch_size: usize,
    grid: (usize, usize),
}

impl<S: Store> Embeddings<S> {
    pub fn load(loader: &mut Loader<S>, config: &SegGptConfig) -> Result<Self, LoadError> {
        let d = config.hidden_size;
        let c = config.num_channels;
        let p = config.patch_size;
        let prefix = "model.embeddings";
        // The conv weight (D, C, p, p) is the linear weight (D, C*p*p) of a flattened patch.
        let name = format!("{prefix}.patch_embeddings.projection.weight");
        let weight = loader.tensor_as(&name, &[d, c, p, p], [d, c * p * p], |w| w)?;
        let bias = loader.tensor(&format!("{prefix}.patch_embeddings.projection.bias"), [d])?;
        let patch_embeddings = Linear::from_parts(weight, Some(bias));

        let mut token = |name: &str| loader.tensor(&format!("{prefix}.{name}"), [1, 1, 1, d]);
        let mask_token = token("mask_token")?;
        let segment_token_input = token("segment_token_input")?;
        let segment_token_prompt = token("segment_token_prompt")?;
        let type_token_semantic = token("type_token_semantic")?;
        let type_token_instance = token("type_token_instance")?;

        let g = config.pretrain_grid();
        let grid = config.patch_grid();
        // The table's first row is the class-token slot, which SegGPT has no token for.
        let name = format!("{prefix}.position_embeddings");
        let position_embeddings =
            loader.tensor_as(&name, &[1, g * g + 1, d], [1, grid.0, grid.1, d], |t| {
                resize_position_embeddings(&t[d..], g, grid, d)
            })?;

        Ok(Self {
            patch_embeddings,
            mask_token,
            segment_token_input,
            segment_token_prompt,
            type_token_semantic,
            type_token_instance,
            position_embeddings,
            patch_size: p,
            grid,
        })
    }
}

impl Embeddings {
    /// Embeds `K` (prompt, query) pairs into `(2K, Hp, Wp, D)`: the image stream of every sample
    /// first, then the mask stream, as the references' `cat([x, y], 0)` (docs/MODEL.md §4).
    ///
    /// `prompt_pixel_values`, `pixel_values`, `prompt_masks`: `(K, 3, H/2, W)`.
    pub fn forward(
        &self,
        pixel_values: Tensor<4>,
        prompt_pixel_values: Tensor<4>,
        prompt_masks: Tensor<4>,
        embedding_type: EmbeddingType,
    ) -> Tensor<4> {
        let (hp, wp) = self.grid;
        let k = pixel_values.dims()[0];
        let d = self.position_embeddings.dims()[3];
        let images = Tensor::cat(vec![prompt_pixel_values, pixel_values], 2);
        let x = self.patchify(images);
        // The query half of the mask stream is masked out entirely (bool_masked_pos,
        // docs/MODEL.md §4), so it is exactly `mask_token`: only the prompt mask half is embedded.
        let top = self.patchify(prompt_masks);
        let bottom = self.mask_token.clone().expand([k, hp - hp / 2, wp, d]);
        let y = Tensor::cat(vec![top, bottom], 1);

        let type_token = match embedding_type {
            EmbeddingType::Instance => self.type_token_instance.clone(),
            EmbeddingType::Semantic => self.type_token_semantic.clone(),
        };
        // Same addition order as the reference: segment, then position, then type.
        let x = x + self.segment_token_input.clone() + self.position_embeddings.clone() + type_token.clone();
        let y = y + self.segment_token_prompt.clone() + self.position_embeddings.clone() + type_token;
        Tensor::cat(vec![x, y], 0)
    }

    /// `(B, C, h, w)` pixels to `(B, h/p, w/p, D)` patch tokens.
    fn patchify(&self, pixels: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = pixels.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let patches =
            pixels.reshape([b, c, gh, p, gw, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, gh, gw, c * p * p]);
        self.patch_embeddings.forward(patches)
    }
}

/// PyTorch `F.interpolate(mode="bicubic", align_corners=False)` of the `g x g` position grid
/// (class slot already dropped) to `(Hp, Wp)`, channel-last in and out (docs/MODEL.md §4.1).
/// Computed once at load time.
pub(crate) fn resize_position_embeddings(
    table: &[f32],
    g: usize,
    (out_h, out_w): (usize, usize),
    d: usize,
) -> Vec<f32> {
    if (g, g) == (out_h, out_w) {
        return table.to_vec();
    }
    let taps_h = bicubic_taps(g, out_h);
    let taps_w = bicubic_taps(g, out_w);
    let mut out = vec![0.0f32; out_h * out_w * d];
    let mut row = vec![0.0f64; d];
    for (oy, (iy, wy)) in taps_h.iter().enumerate() {
        for (ox, (ix, wx)) in taps_w.iter().enumerate() {
            row.iter_mut().for_each(|v| *v = 0.0);
            for (a, &sy) in iy.iter().enumerate() {
                for (b, &sx) in ix.iter().enumerate() {
                    let weight = wy[a] * wx[b];
                    let src = &table[(sy * g + sx) * d..][..d];
                    row.iter_mut().zip(src).for_each(|(r, s)| *r += weight * f64::from(*s));
                }
            }
            let dst = &mut out[(oy * out_w + ox) * d..][..d];
            dst.iter_mut().zip(&row).for_each(|(o, r)| *o = *r as f32);
        }
    }
    out
}

/// Source indices (border-clamped) and weights of the 4 cubic taps of every output index.
fn bicubic_taps(input: usize, output: usize) -> Vec<([usize; 4], [f64; 4])> {
    const A: f64 = -0.75;
    let cc1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let real = scale * (o as f64 + 0.5) - 0.5; // not clamped at 0 for cubic
            let i0 = (real.floor() as isize).min(input as isize - 1);
            let t = (real - i0 as f64).clamp(0.0, 1.0);
            let idx = std::array::from_fn(|k| (i0 - 1 + k as isize).clamp(0, input as isize - 1) as usize);
            (idx, [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_weights_sum_to_one() {
        for (_, w) in bicubic_taps(14, 56).into_iter().chain(bicubic_taps(14, 28)) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    /// docs/MODEL.md §4.1: the H phase cycles (-1, .625), (-1, .875), (0, .125), (0, .375).
    #[test]
    fn bicubic_phase_matches_the_spec() {
        let taps = bicubic_taps(14, 56);
        assert_eq!(taps[0].0, [0, 0, 0, 1]); // i0 = -1, taps -2..1 clamped
        assert_eq!(taps[2].0, [0, 0, 1, 2]); // i0 = 0
        let cc1 = |x: f64| ((-0.75 + 2.0) * x - (-0.75 + 3.0)) * x * x + 1.0;
        assert!((taps[0].1[1] - cc1(0.625)).abs() < 1e-12);
    }

    #[test]
    fn same_size_is_identity() {
        let table: Vec<f32> = (0..3 * 3 * 2).map(|v| v as f32).collect();
        assert_eq!(resize_position_embeddings(&table, 3, (3, 3), 2), table);
    }

    #[test]
    fn constant_grid_stays_constant() {
        let table = vec![0.5f32; 4 * 4 * 3];
        for v in resize_position_embeddings(&table, 4, (10, 6), 3) {
            assert!((v - 0.5).abs() < 1e-6);
        }
    }
}
