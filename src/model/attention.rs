//! Multi-head self-attention over a token grid with decomposed relative position terms (MViTv2 /
//! ViTDet style): global in every SegGPT block (docs/MODEL.md §5.2, §5.3), and either global or
//! within square windows in SAM's image encoder (docs/MODEL.md §25), which is the same maths on
//! the windows as a batch.

use burn::tensor::{Device, Tensor, activation::softmax};

use crate::config::SegGptConfig;
use crate::model::AttentionKernel;
use crate::model::budget::MemoryBudget;
use crate::model::fused_attention::fused_attention;
use crate::model::load::{Loader, Store};
use crate::model::nn::Linear;
use crate::weights::LoadError;

/// What an attention layer's parameters look like, and over which grid it attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub hidden: usize,
    pub heads: usize,
    pub qkv_bias: bool,
    /// The `(rows, columns)` of tokens the relative position tables span (the whole grid, or one
    /// window); `None` without relative position terms.
    pub rel_pos_grid: Option<(usize, usize)>,
    /// Square windows of this side, the grid zero-padded to whole windows first; `None`: global.
    pub window: Option<usize>,
}

impl AttentionShape {
    /// SegGPT's: global, over the whole patch grid.
    pub fn seggpt(config: &SegGptConfig) -> Self {
        Self {
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            qkv_bias: config.qkv_bias,
            rel_pos_grid: config.use_relative_position_embeddings.then(|| config.patch_grid()),
            window: None,
        }
    }
}

pub struct Attention<S: Store = Device> {
    qkv: Linear<S>,
    proj: Linear<S>,
    /// `rel_pos_h` gathered to `(Hp, Hp, head_dim)`: entry `[qh, kh]` = `rel_pos_h[qh - kh + Hp - 1]`.
    rel_h: Option<S::Tensor<3>>,
    /// `rel_pos_w` gathered to `(Wp, Wp, head_dim)`.
    rel_w: Option<S::Tensor<3>>,
    num_heads: usize,
    head_dim: usize,
    scale: f64,
    window: Option<usize>,
}

/// Bytes of the f32 attention scores `(N, N)` of one `(sample, head)` sequence of `tokens`; the
/// released model's 1568 tokens make 9.4 MiB per sequence, 157 MiB for all 16 heads of a sample.
pub fn score_bytes(tokens: usize) -> usize {
    4 * tokens * tokens
}

impl<S: Store> Attention<S> {
    pub fn load(loader: &mut Loader<S>, prefix: &str, shape: AttentionShape) -> Result<Self, LoadError> {
        let d = shape.hidden;
        let head_dim = d / shape.heads;
        let qkv = Linear::load(loader, &format!("{prefix}.qkv"), d, 3 * d, shape.qkv_bias)?;
        let proj = Linear::load(loader, &format!("{prefix}.proj"), d, d, true)?;
        let (rel_h, rel_w) = match shape.rel_pos_grid {
            Some((hp, wp)) => {
                let mut gathered = |axis: &str, size: usize| {
                    let name = format!("{prefix}.rel_pos_{axis}");
                    loader.tensor_as(&name, &[2 * size - 1, head_dim], [size, size, head_dim], |table| {
                        gather_relative(&table, size, head_dim)
                    })
                };
                (Some(gathered("h", hp)?), Some(gathered("w", wp)?))
            }
            None => (None, None),
        };
        Ok(Self {
            qkv,
            proj,
            rel_h,
            rel_w,
            num_heads: shape.heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
            window: shape.window,
        })
    }
}

impl Attention {
    /// `x`: `(B, Hp, Wp, D)` -> `(B, Hp, Wp, D)`, after the output projection. The `B * heads`
    /// sequences (times the windows, with windows) are attended by the fused kernel where `kernel`
    /// asks for it and it can run (docs/MODEL.md §21), otherwise in groups whose scores stay
    /// within `budget`.
    pub fn forward(&self, x: Tensor<4>, budget: MemoryBudget, kernel: AttentionKernel) -> Tensor<4> {
        match self.window {
            None => self.forward_grid(x, budget, kernel),
            Some(window) => {
                let [_, hp, wp, _] = x.dims();
                let windows = window_partition(x, window);
                window_unpartition(self.forward_grid(windows, budget, kernel), window, (hp, wp))
            }
        }
    }

    fn forward_grid(&self, x: Tensor<4>, budget: MemoryBudget, kernel: AttentionKernel) -> Tensor<4> {
        let [b, hp, wp, d] = x.dims();
        let (nh, hd) = (self.num_heads, self.head_dim);
        let n = hp * wp;
        // (B, N, 3, nh, hd) -> (3, B*nh, N, hd): q rows first, then k, then v; head h owns
        // columns h*hd..(h+1)*hd within each (docs/MODEL.md §5.3).
        let qkv = self
            .qkv
            .forward(x.reshape([b, n, d]))
            .reshape([b, n, 3, nh, hd])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * nh, n, hd]);
        let q = qkv.clone().narrow(0, 0, 1).reshape([b * nh, n, hd]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b * nh, n, hd]);
        let v = qkv.narrow(0, 2, 1).reshape([b * nh, n, hd]);

        let fused = match (kernel, &self.rel_h, &self.rel_w) {
            (AttentionKernel::Fused, Some(rel_h), Some(rel_w)) => {
                fused_attention(&q, &k, &v, rel_h, rel_w, self.scale)
            }
            _ => None,
        };
        let groups = budget.split(b * nh, score_bytes(n));
        let out = if let Some(out) = fused {
            out
        } else if groups.pieces() == 1 {
            self.attend(q, k, v, hp, wp)
        } else {
            let outs = groups
                .ranges()
                .map(|r| {
                    let part = |t: &Tensor<3>| t.clone().narrow(0, r.start, r.len());
                    self.attend(part(&q), part(&k), part(&v), hp, wp)
                })
                .collect();
            Tensor::cat(outs, 0)
        };
        let out = out.reshape([b, nh, hp, wp, hd]).permute([0, 2, 3, 1, 4]).reshape([b, hp, wp, d]);
        self.proj.forward(out)
    }

    /// Attention of `n` (sample, head) sequences: `q, k, v` `(n, N, hd)` -> `(n, N, hd)`.
    fn attend(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, hp: usize, wp: usize) -> Tensor<3> {
        let [n, tokens, hd] = q.dims();
        let mut scores = q.clone().mul_scalar(self.scale).matmul(k.swap_dims(1, 2));
        if let (Some(rel_h), Some(rel_w)) = (&self.rel_h, &self.rel_w) {
            // The relative terms use the unscaled q (docs/MODEL.md §5.3).
            let q = q.reshape([n, hp, wp, hd]);
            // rel_h[s, qh, qw, kh] = sum_c q[s, qh, qw, c] * Rh[qh, kh, c]: one matmul per qh.
            let by_row = q.clone().permute([1, 0, 2, 3]).reshape([hp, n * wp, hd]);
            let term_h = by_row
                .matmul(rel_h.clone().swap_dims(1, 2))
                .reshape([hp, n, wp, hp])
                .permute([1, 0, 2, 3])
                .reshape([n, hp, wp, hp, 1]);
            // rel_w[s, qh, qw, kw] = sum_c q[s, qh, qw, c] * Rw[qw, kw, c]: one matmul per qw.
            let by_col = q.permute([2, 0, 1, 3]).reshape([wp, n * hp, hd]);
            let term_w = by_col
                .matmul(rel_w.clone().swap_dims(1, 2))
                .reshape([wp, n, hp, wp])
                .permute([1, 2, 0, 3])
                .reshape([n, hp, wp, 1, wp]);
            scores = (scores.reshape([n, hp, wp, hp, wp]) + term_h + term_w).reshape([n, tokens, tokens]);
        }
        softmax(scores, 2).matmul(v)
    }
}

/// `(B, H, W, D)` -> `(B * windows, window, window, D)`: the grid zero-padded at the bottom and the
/// right to whole windows, then cut into windows row by row (SAM's `window_partition`).
fn window_partition(x: Tensor<4>, window: usize) -> Tensor<4> {
    let [b, h, w, d] = x.dims();
    let (ph, pw) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
    let device = x.device();
    let mut x = x;
    if ph > h {
        x = Tensor::cat(vec![x, Tensor::zeros([b, ph - h, w, d], &device)], 1);
    }
    if pw > w {
        x = Tensor::cat(vec![x, Tensor::zeros([b, ph, pw - w, d], &device)], 2);
    }
    let (rows, cols) = (ph / window, pw / window);
    x.reshape([b, rows, window, cols, window, d]).permute([0, 1, 3, 2, 4, 5]).reshape([
        b * rows * cols,
        window,
        window,
        d,
    ])
}

/// The inverse of [`window_partition`]: the windows put back in place and the padding dropped.
fn window_unpartition(windows: Tensor<4>, window: usize, (h, w): (usize, usize)) -> Tensor<4> {
    let [n, _, _, d] = windows.dims();
    let (rows, cols) = (h.div_ceil(window), w.div_ceil(window));
    let b = n / (rows * cols);
    windows
        .reshape([b, rows, cols, window, window, d])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, rows * window, cols * window, d])
        .narrow(1, 0, h)
        .narrow(2, 0, w)
}

/// `get_rel_pos` for equal query and key sizes: `out[i, j] = table[i - j + size - 1]`
/// (docs/MODEL.md §5.3; the linear resize transformers applies first is the identity here).
fn gather_relative(table: &[f32], size: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(size * size * dim);
    for i in 0..size {
        for j in 0..size {
            let r = i + size - 1 - j;
            out.extend_from_slice(&table[r * dim..(r + 1) * dim]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_gather_indexes_by_offset() {
        // table rows hold their own index: row r = [r, r]
        let table: Vec<f32> = (0..5).flat_map(|r| [r as f32, r as f32]).collect();
        let g = gather_relative(&table, 3, 2);
        // [i=0, j=0] -> row 2; [0, 2] -> row 0; [2, 0] -> row 4
        assert_eq!(g[0], 2.0);
        assert_eq!(g[2 * 2], 0.0);
        assert_eq!(g[(2 * 3) * 2], 4.0);
    }
}
