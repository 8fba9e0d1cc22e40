//! The two parameterised primitives every component uses, loaded from PyTorch layouts.

use burn::tensor::{DType, Device, FloatDType, Tensor, activation, module};

use crate::model::budget::MemoryBudget;
use crate::model::load::{Loader, Store};
use crate::weights::LoadError;

/// `y = x W^T + b` with PyTorch's `(out, in)` weight, kept in that layout: the matmul reads it
/// transposed in place (both backends' matmuls take strided operands), so loading copies no weight
/// into another layout (docs/MODEL.md §20).
pub struct Linear<S: Store = Device> {
    weight: S::Tensor<2>,
    bias: Option<S::Tensor<1>>,
}

impl<S: Store> Linear<S> {
    pub fn load(
        loader: &mut Loader<S>,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self, LoadError> {
        let weight = loader.tensor(&format!("{prefix}.weight"), [d_out, d_in])?;
        let bias = if bias { Some(loader.tensor(&format!("{prefix}.bias"), [d_out])?) } else { None };
        Ok(Self { weight, bias })
    }

    /// From parts in PyTorch's layout: `weight` is `(out, in)`.
    pub fn from_parts(weight: S::Tensor<2>, bias: Option<S::Tensor<1>>) -> Self {
        Self { weight, bias }
    }
}

impl Linear {
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        module::linear(x, self.weight.clone().transpose(), self.bias.clone())
    }
}

/// A linear layer whose weight is split by output columns into pieces within a memory budget,
/// so that no single GPU buffer exceeds a small device's binding limit (`decoder_embed` is
/// 256 MiB in f32; WebGPU's default `maxStorageBufferBindingSize` is 128 MiB). The split is made
/// when the weight is uploaded, since the whole weight must never be one buffer. An output column
/// is a row of PyTorch's `(out, in)` weight, so each piece is a contiguous run of it.
pub struct ColumnChunkedLinear<S: Store = Device> {
    pieces: Vec<Linear<S>>,
}

impl<S: Store> ColumnChunkedLinear<S> {
    pub fn load(
        loader: &mut Loader<S>,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        budget: MemoryBudget,
    ) -> Result<Self, LoadError> {
        let split = budget.split(d_out, column_bytes(d_in));
        let ranges: Vec<_> = split.ranges().collect();
        let weight_shapes: Vec<[usize; 2]> = ranges.iter().map(|r| [r.len(), d_in]).collect();
        let weights = loader.pieces(&format!("{prefix}.weight"), &[d_out, d_in], &weight_shapes, |w| {
            split_rows(w, &ranges, d_in)
        })?;
        let bias_shapes: Vec<[usize; 1]> = ranges.iter().map(|r| [r.len()]).collect();
        let biases = loader
            .pieces(&format!("{prefix}.bias"), &[d_out], &bias_shapes, |b| split_rows(b, &ranges, 1))?;
        let pieces = weights.into_iter().zip(biases).map(|(w, b)| Linear::from_parts(w, Some(b))).collect();
        Ok(Self { pieces })
    }
}

/// The rows `ranges` of a row-major matrix with `row_len` values a row, one buffer each; a single
/// range is the matrix itself, not a copy.
fn split_rows(m: Vec<f32>, ranges: &[std::ops::Range<usize>], row_len: usize) -> Vec<Vec<f32>> {
    match ranges {
        [_] => vec![m],
        _ => ranges.iter().map(|r| m[r.start * row_len..r.end * row_len].to_vec()).collect(),
    }
}

impl ColumnChunkedLinear {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let [one] = self.pieces.as_slice() {
            return one.forward(x);
        }
        let outs = self.pieces.iter().map(|p| p.forward(x.clone())).collect();
        Tensor::cat(outs, D - 1)
    }
}

/// Bytes of one output column of a linear layer's f32 weight with `d_in` inputs.
pub fn column_bytes(d_in: usize) -> usize {
    4 * d_in
}

/// LayerNorm over the last axis (biased variance), PyTorch `nn.LayerNorm`.
pub struct LayerNorm<S: Store = Device> {
    weight: S::Tensor<1>,
    bias: S::Tensor<1>,
    eps: f64,
}

impl<S: Store> LayerNorm<S> {
    pub fn load(loader: &mut Loader<S>, prefix: &str, dim: usize, eps: f64) -> Result<Self, LoadError> {
        Ok(Self {
            weight: loader.tensor(&format!("{prefix}.weight"), [dim])?,
            bias: loader.tensor(&format!("{prefix}.bias"), [dim])?,
            eps,
        })
    }
}

impl LayerNorm {
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

/// GELU, erf form (PyTorch's default). Under autodiff (prompt tuning, docs/MODEL.md §16) it is
/// written out from `erf`, whose backward is exact: burn's own `gelu` backward is the derivative
/// of the tanh approximation on every backend that does not override it (wgpu among them), which
/// put the prompt gradients 5e-4 (relative) off PyTorch's. Inference keeps burn's fused `gelu`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.is_autodiff() {
        let cdf = x.clone().div_scalar(std::f64::consts::SQRT_2).erf().add_scalar(1.0);
        (x * cdf).div_scalar(2.0)
    } else {
        activation::gelu(x)
    }
}
