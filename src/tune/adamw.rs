//! AdamW on host buffers, step for step as `torch.optim.AdamW` (decoupled weight decay, no
//! amsgrad), so that a tuned prompt matches PyTorch's from the same gradients (docs/MODEL.md §16).
//!
//! The learnable prompt is two small tensors (2 x 3 x 448 x 448 for the released model), so the
//! update runs on the host: its cost is negligible next to a forward and backward pass, its
//! arithmetic is plain `f32` in PyTorch's order, and the state is ready to be saved as it is.

/// AdamW's `betas`, PyTorch's defaults.
pub const BETAS: (f64, f64) = (0.9, 0.999);
/// AdamW's `eps`, PyTorch's default.
pub const EPS: f64 = 1e-8;

/// The moving averages of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// `exp_avg`: the first moment.
    pub exp_avg: Vec<f32>,
    /// `exp_avg_sq`: the second moment.
    pub exp_avg_sq: Vec<f32>,
}

impl Moments {
    pub fn zeros(len: usize) -> Self {
        Self { exp_avg: vec![0.0; len], exp_avg_sq: vec![0.0; len] }
    }
}

/// AdamW over a fixed list of parameter tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub weight_decay: f64,
    /// Updates made so far (PyTorch's `state["step"]`).
    pub steps: u64,
    /// One entry per parameter tensor, in the order [`AdamW::update`] receives them.
    pub moments: Vec<Moments>,
}

impl AdamW {
    /// A fresh optimiser for parameters of `lens` values each.
    pub fn new(lr: f64, weight_decay: f64, lens: &[usize]) -> Self {
        Self { lr, weight_decay, steps: 0, moments: lens.iter().map(|&n| Moments::zeros(n)).collect() }
    }

    /// One step: `params[i] -= ...` from `grads[i]`, as PyTorch's single-tensor AdamW: decay,
    /// `exp_avg.lerp_(g, 1 - b1)`, `exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)`, then
    /// `p.addcdiv_(exp_avg, exp_avg_sq.sqrt() / sqrt(bc2) + eps, -lr / bc1)`. Scalars are
    /// computed in f64 and applied in f32, as PyTorch does for an f32 tensor.
    pub fn update(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        assert_eq!(params.len(), self.moments.len(), "one moment pair per parameter");
        assert_eq!(grads.len(), self.moments.len(), "one gradient per parameter");
        self.steps += 1;
        let (beta1, beta2) = BETAS;
        let step = self.steps as f64;
        let decay = (1.0 - self.lr * self.weight_decay) as f32;
        let lerp_weight = (1.0 - beta1) as f32;
        let beta2_f32 = beta2 as f32;
        let sq_weight = (1.0 - beta2) as f32;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - beta2.powf(step)).sqrt() as f32;
        let step_size = (self.lr / bias_correction1) as f32;
        let eps = EPS as f32;
        for ((param, grad), moments) in params.iter_mut().zip(grads).zip(&mut self.moments) {
            assert_eq!(param.len(), grad.len(), "a gradient has its parameter's size");
            assert_eq!(param.len(), moments.exp_avg.len(), "a parameter keeps its size");
            for (i, (p, &g)) in param.iter_mut().zip(grad.iter()).enumerate() {
                if self.weight_decay != 0.0 {
                    *p *= decay;
                }
                let m = &mut moments.exp_avg[i];
                *m = lerp(*m, g, lerp_weight);
                let v = &mut moments.exp_avg_sq[i];
                *v = *v * beta2_f32 + sq_weight * g * g;
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *p += -step_size * (*m / denom);
            }
        }
    }
}

/// PyTorch's `lerp` for one element: the form it picks depends on the weight, for accuracy.
fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 { start + weight * (end - start) } else { end - (end - start) * (1.0 - weight) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With zero decay the first step moves every value by `lr` against its gradient's sign
    /// (m / sqrt(v) = g / |g| after bias correction).
    #[test]
    fn first_step_moves_by_lr_against_the_gradient() {
        let mut opt = AdamW::new(0.1, 0.0, &[3]);
        let mut p = [1.0f32, -2.0, 0.5];
        opt.update(&mut [&mut p], &[&[0.3, -4.0, 1e-3]]);
        for (after, before) in p.iter().zip([0.9f32, -1.9, 0.4]) {
            assert!((after - before).abs() < 1e-4, "{after} vs {before}");
        }
        assert_eq!(opt.steps, 1);
    }

    #[test]
    fn weight_decay_shrinks_a_parameter_with_zero_gradient() {
        let mut opt = AdamW::new(0.1, 0.5, &[1]);
        let mut p = [2.0f32];
        opt.update(&mut [&mut p], &[&[0.0]]);
        assert!((p[0] - 2.0 * 0.95).abs() < 1e-6);
    }
}
