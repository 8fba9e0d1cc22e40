//! A source of random weights of the shapes a config implies, for benchmarks of the full-size
//! model without its checkpoint.

use std::collections::BTreeMap;

use super::{LoadError, TensorSource};
use crate::config::SegGptConfig;
use crate::model::parameter_shapes;

/// Deterministic pseudo-random weights: uniform with the variance of `N(0, 1/fan_in)` for
/// matrices (activations stay O(1) through the stack) and small values around 1 / 0 for norms.
pub struct RandomSource {
    shapes: BTreeMap<String, Vec<usize>>,
    seed: u64,
}

impl RandomSource {
    /// Fails on a config the model cannot be built from.
    pub fn new(config: &SegGptConfig, seed: u64) -> Result<Self, LoadError> {
        Ok(Self::from_shapes(parameter_shapes(config)?, seed))
    }

    /// Random weights of the given `(name, shape)` list (another model's, e.g. SAM's).
    pub fn from_shapes(shapes: Vec<(String, Vec<usize>)>, seed: u64) -> Self {
        Self { shapes: shapes.into_iter().collect(), seed }
    }
}

impl TensorSource for RandomSource {
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let shape = self.shapes.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
        let n: usize = shape.iter().product();
        let fan_in: usize = if shape.len() >= 2 { shape[1..].iter().product() } else { 1 };
        let mut state = self.seed ^ crate::fnv::fnv1a64(name.as_bytes());
        let mut uniform = move || {
            // xorshift64*: plenty for benchmark weights.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            ((state.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let is_norm_weight =
            (name.contains("layernorm") || name.contains("layer_norm")) && name.ends_with(".weight");
        let amplitude = if shape.len() >= 2 && !name.contains("token") && !name.contains("rel_pos") {
            (3.0 / fan_in as f32).sqrt()
        } else {
            0.1
        };
        Ok((0..n)
            .map(|_| if is_norm_weight { 1.0 + 0.1 * uniform() } else { amplitude * uniform() })
            .collect())
    }
}
