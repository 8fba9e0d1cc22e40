//! The two parameterised primitives every component uses, loaded from PyTorch layouts.

use burn::tensor::{DType, FloatDType, Tensor, module};

use crate::weights::{LoadError, Loader};

/// `y = x W^T + b` with PyTorch's `(out, in)` weight, stored transposed as `(in, out)` for burn.
pub struct Linear {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn load(
        loader: &mut Loader,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self, LoadError> {
        let weight = transpose(&loader.host(&format!("{prefix}.weight"), &[d_out, d_in])?, d_out, d_in);
        let weight = loader.upload(weight, [d_in, d_out]);
        let bias = if bias { Some(loader.tensor(&format!("{prefix}.bias"), [d_out])?) } else { None };
        Ok(Self { weight, bias })
    }

    /// From burn-layout parts: `weight` is `(in, out)`.
    pub fn from_parts(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self { weight, bias }
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        module::linear(x, self.weight.clone(), self.bias.clone())
    }
}

/// A linear layer whose weight is split by output columns into pieces of at most `max_bytes`,
/// so that no single GPU buffer exceeds a small device's binding limit (`decoder_embed` is
/// 256 MiB in f32; WebGPU's default `maxStorageBufferBindingSize` is 128 MiB).
pub struct ColumnChunkedLinear {
    pieces: Vec<Linear>,
}

impl ColumnChunkedLinear {
    pub fn load(
        loader: &mut Loader,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        max_bytes: usize,
    ) -> Result<Self, LoadError> {
        let weight = loader.host(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let bias = loader.host(&format!("{prefix}.bias"), &[d_out])?;
        let cols_per_piece = (max_bytes / (4 * d_in)).clamp(1, d_out);
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < d_out {
            let end = (start + cols_per_piece).min(d_out);
            let rows = &weight[start * d_in..end * d_in];
            let w = loader.upload(transpose(rows, end - start, d_in), [d_in, end - start]);
            let b = loader.upload(bias[start..end].to_vec(), [end - start]);
            pieces.push(Linear { weight: w, bias: Some(b) });
            start = end;
        }
        Ok(Self { pieces })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.pieces.len() == 1 {
            return self.pieces[0].forward(x);
        }
        let outs = self.pieces.iter().map(|p| p.forward(x.clone())).collect();
        Tensor::cat(outs, D - 1)
    }
}

/// LayerNorm over the last axis (biased variance), PyTorch `nn.LayerNorm`.
pub struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(loader: &mut Loader, prefix: &str, dim: usize, eps: f64) -> Result<Self, LoadError> {
        Ok(Self {
            weight: loader.tensor(&format!("{prefix}.weight"), [dim])?,
            bias: loader.tensor(&format!("{prefix}.bias"), [dim])?,
            eps,
        })
    }

    /// In half precision the statistics are taken in f32: the variance of ViT activations in the
    /// hundreds overflows f16 (max 65504).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let half = match x.dtype() {
            DType::F16 => Some(FloatDType::F16),
            DType::BF16 => Some(FloatDType::BF16),
            _ => None,
        };
        match half {
            None => module::layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps),
            Some(half) => {
                let f32 = FloatDType::F32;
                let weight = self.weight.clone().cast(f32);
                let bias = self.bias.clone().cast(f32);
                module::layer_norm(x.cast(f32), weight, Some(bias), self.eps).cast(half)
            }
        }
    }
}

/// Transposes a row-major `rows x cols` matrix.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}
