//! Model hyper-parameters, read from a Hugging Face `config.json` (`SegGptConfig`).
//!
//! Every field has the default of the released ViT-L (docs/MODEL.md §1), so an empty `{}` is the
//! released model, and small test configurations run through exactly the same code.

use serde::{Deserialize, Serialize};

use crate::weights::LoadError;

/// A size given either as one number (square) or as `[height, width]`, as transformers accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    Square(usize),
    HeightWidth([usize; 2]),
}

impl Size2 {
    /// `(height, width)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::Square(s) => (s, s),
            Size2::HeightWidth([h, w]) => (h, w),
        }
    }
}

/// `SegGptConfig` of transformers, field for field (docs/MODEL.md §1). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegGptConfig {
    /// Token width D (1024).
    pub hidden_size: usize,
    /// Number of encoder blocks (24).
    pub num_hidden_layers: usize,
    /// Attention heads per block (16); head_dim = hidden_size / heads.
    pub num_attention_heads: usize,
    /// Activation of the MLP and the decoder: only exact-erf `gelu` is supported.
    pub hidden_act: String,
    /// Training only; kept so a config round-trips.
    pub hidden_dropout_prob: f64,
    /// Training only; kept so a config round-trips.
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm (1e-6).
    pub layer_norm_eps: f64,
    /// Model input, prompt and query stacked along the height: `[896, 448]`.
    pub image_size: Size2,
    /// Patch size of the patch embedding and of the decoder's pixel shuffle (16).
    pub patch_size: usize,
    /// Image channels (3).
    pub num_channels: usize,
    /// Whether the fused qkv projection has a bias.
    pub qkv_bias: bool,
    /// MLP hidden width; `None` means 4 x hidden_size.
    pub mlp_dim: Option<usize>,
    /// Training only.
    pub drop_path_rate: f64,
    /// Image size the absolute position embedding was trained at (224 -> a 14x14 grid).
    pub pretrain_image_size: Size2,
    /// Channels of the decoder head (64).
    pub decoder_hidden_size: usize,
    /// Decomposed relative position terms in every block.
    pub use_relative_position_embeddings: bool,
    /// Block after which the image and mask streams are averaged into one (2).
    pub merge_index: usize,
    /// Blocks whose outputs (through the final norm) feed the decoder ([5, 11, 17, 23]).
    pub intermediate_hidden_state_indices: Vec<usize>,
    /// Smooth-L1 beta of the training loss; unused at inference.
    pub beta: f64,
}

impl Default for SegGptConfig {
    fn default() -> Self {
        Self {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-6,
            image_size: Size2::HeightWidth([896, 448]),
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            mlp_dim: None,
            drop_path_rate: 0.1,
            pretrain_image_size: Size2::Square(224),
            decoder_hidden_size: 64,
            use_relative_position_embeddings: true,
            merge_index: 2,
            intermediate_hidden_state_indices: vec![5, 11, 17, 23],
            beta: 0.01,
        }
    }
}

/// Largest encoder token count `Hp * Wp` accepted (the released model has 56 x 28 = 1568): one
/// head's attention scores are `N^2` f32, 1 GiB at this bound.
pub const MAX_TOKENS: u64 = 1 << 14;
/// Largest parameter count accepted (8 GiB of f32; the released model has 0.37 G).
pub const MAX_PARAMETERS: u64 = 1 << 31;
/// Largest single activation accepted, in bytes (the decoder's full-resolution map is the
/// largest: 98 MiB for the released model, docs/MODEL.md §11).
pub const MAX_ACTIVATION_BYTES: u64 = 4 << 30;
/// Largest value of any one size field: far above any SegGPT, and small enough that the shape
/// arithmetic on it cannot overflow.
pub const MAX_SIZE_FIELD: usize = 1 << 20;
/// Most encoder blocks accepted (the released model has 24).
pub const MAX_LAYERS: usize = 1024;

impl SegGptConfig {
    /// Parses `config.json` text and checks that the model it describes can be built.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LoadError::Config(format!("config.json: {e}")))?;
        // serde would read a JSON array as the fields in order; a config is always an object.
        if !value.is_object() {
            return Err(LoadError::Config(format!(
                "config.json must be a JSON object of named fields, not {}",
                json_kind(&value)
            )));
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| LoadError::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the forward pass can be built from this config, with checked arithmetic and
    /// before anything is allocated: every size is positive and bounded, the token count, the
    /// parameter count and the largest activation stay below [`MAX_TOKENS`],
    /// [`MAX_PARAMETERS`] and [`MAX_ACTIVATION_BYTES`].
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: String| Err(LoadError::Config(msg));
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act {:?} is not supported (only \"gelu\")", self.hidden_act));
        }
        if self.num_channels != 3 {
            return bad(format!("num_channels {} is not supported (only 3)", self.num_channels));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!("layer_norm_eps {} must be a positive number", self.layer_norm_eps));
        }
        let (h, w) = self.image_size.hw();
        let (ph, pw) = self.pretrain_image_size.hw();
        let mut sizes = vec![
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("patch_size", self.patch_size),
            ("decoder_hidden_size", self.decoder_hidden_size),
            ("image_size height", h),
            ("image_size width", w),
            ("pretrain_image_size", ph),
        ];
        if let Some(mlp_dim) = self.mlp_dim {
            sizes.push(("mlp_dim", mlp_dim));
        }
        for (field, value) in sizes {
            if value == 0 || value > MAX_SIZE_FIELD {
                return bad(format!("{field} {value} must be between 1 and {MAX_SIZE_FIELD}"));
            }
        }
        if self.num_hidden_layers == 0 || self.num_hidden_layers > MAX_LAYERS {
            return bad(format!(
                "num_hidden_layers {} must be between 1 and {MAX_LAYERS}",
                self.num_hidden_layers
            ));
        }
        // All sizes are now at most 2^20, so products of two or three of them fit in u64.
        let p = self.patch_size;
        if !h.is_multiple_of(2 * p) || !w.is_multiple_of(p) {
            return bad(format!("image_size [{h}, {w}] must split into two halves of whole {p}x{p} patches"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if ph != pw || ph / p == 0 {
            return bad(format!("pretrain_image_size {ph}x{pw} must be square and hold at least one patch"));
        }
        if self.merge_index >= self.num_hidden_layers {
            return bad(format!(
                "merge_index {} is not a block index (num_hidden_layers {})",
                self.merge_index, self.num_hidden_layers
            ));
        }
        self.validate_feature_indices()?;

        let tokens = ((h / p) * (w / p)) as u64;
        if tokens > MAX_TOKENS {
            return bad(format!(
                "image_size [{h}, {w}] with patch_size {p} gives {tokens} tokens; at most {MAX_TOKENS} are \
                 supported"
            ));
        }
        let parameters = self.parameter_count();
        if parameters.is_none_or(|n| n > MAX_PARAMETERS) {
            return bad(format!(
                "the model described has {} parameters; at most {MAX_PARAMETERS} are supported",
                parameters.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
            ));
        }
        let decoder_map =
            [self.decoder_hidden_size, h, w, 4].iter().try_fold(1u64, |acc, &v| acc.checked_mul(v as u64));
        let block = [tokens as usize, (3 * self.hidden_size).max(self.mlp_dim()), 4]
            .iter()
            .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64));
        for (what, bytes) in
            [("the decoder's full-resolution map", decoder_map), ("one block's activations", block)]
        {
            if bytes.is_none_or(|b| b > MAX_ACTIVATION_BYTES) {
                return bad(format!(
                    "{what} would take {} bytes for one image; at most {MAX_ACTIVATION_BYTES} are supported",
                    bytes.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
        Ok(())
    }

    /// Feature indices name distinct blocks in increasing order, from the merge on: the decoder
    /// reads one feature per index, concatenated in block order (docs/MODEL.md §5, §7).
    fn validate_feature_indices(&self) -> Result<(), LoadError> {
        let indices = &self.intermediate_hidden_state_indices;
        let bad = |msg: String| Err(LoadError::Config(msg));
        if indices.is_empty() {
            return bad("intermediate_hidden_state_indices is empty".into());
        }
        if indices.iter().any(|&i| i >= self.num_hidden_layers) {
            return bad(format!(
                "intermediate_hidden_state_indices {indices:?} name blocks past num_hidden_layers {}",
                self.num_hidden_layers
            ));
        }
        if indices.windows(2).any(|pair| pair[0] >= pair[1]) {
            return bad(format!(
                "intermediate_hidden_state_indices {indices:?} must be strictly increasing (no block twice)"
            ));
        }
        // transformers raises the same error (docs/MODEL.md §1).
        if indices.iter().any(|&i| i < self.merge_index) {
            return bad(format!(
                "merge_index {} must not exceed min(intermediate_hidden_state_indices {indices:?})",
                self.merge_index
            ));
        }
        Ok(())
    }

    /// Total number of parameters, `None` on overflow. Call only on sizes bounded by
    /// [`MAX_SIZE_FIELD`] and [`MAX_LAYERS`], as [`Self::validate`] does.
    fn parameter_count(&self) -> Option<u64> {
        let shapes = crate::model::requested_parameters(self).ok()?;
        shapes.iter().try_fold(0u64, |total, (_, shape)| {
            let count = shape.iter().try_fold(1u64, |acc, &v| acc.checked_mul(v as u64))?;
            total.checked_add(count)
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn mlp_dim(&self) -> usize {
        self.mlp_dim.unwrap_or(4 * self.hidden_size)
    }

    /// Patch grid of the stacked input `(Hp, Wp)`; (56, 28) for the released model.
    pub fn patch_grid(&self) -> (usize, usize) {
        let (h, w) = self.image_size.hw();
        (h / self.patch_size, w / self.patch_size)
    }

    /// Size `(height, width)` of one image (prompt or query): half the model input.
    pub fn half_image_size(&self) -> (usize, usize) {
        let (h, w) = self.image_size.hw();
        (h / 2, w)
    }

    /// Side of the square position-embedding grid the checkpoint stores (14).
    pub fn pretrain_grid(&self) -> usize {
        self.pretrain_image_size.hw().0 / self.patch_size
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_released_vit_large() {
        let c = SegGptConfig::from_json("{}").unwrap();
        assert_eq!(c.patch_grid(), (56, 28));
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.mlp_dim(), 4096);
        assert_eq!(c.pretrain_grid(), 14);
    }

    #[test]
    fn hub_config_parses_with_unknown_fields() {
        let text = r#"{"architectures":["SegGptForImageSegmentation"],"beta":0.01,
            "decoder_hidden_size":64,"hidden_size":1024,"image_size":[896,448],"mlp_ratio":4.0,
            "intermediate_hidden_state_indices":[5,11,17,23],"merge_index":2,"mlp_dim":4096,
            "pretrain_image_size":224,"torch_dtype":"float32"}"#;
        let c = SegGptConfig::from_json(text).unwrap();
        assert_eq!(c, SegGptConfig { mlp_dim: Some(4096), ..Default::default() });
    }

    #[test]
    fn merge_index_past_first_feature_is_rejected() {
        let err = SegGptConfig::from_json(r#"{"merge_index":6}"#).unwrap_err();
        assert!(err.to_string().contains("merge_index"), "{err}");
    }

    fn rejected(json: &str, needle: &str) {
        let err = SegGptConfig::from_json(json).unwrap_err().to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }

    #[test]
    fn feature_indices_must_be_distinct_increasing_block_indices() {
        rejected(r#"{"intermediate_hidden_state_indices":[5,5,17,23]}"#, "strictly increasing");
        rejected(r#"{"intermediate_hidden_state_indices":[11,5,17,23]}"#, "strictly increasing");
        rejected(r#"{"intermediate_hidden_state_indices":[5,11,17,24]}"#, "past num_hidden_layers");
        rejected(r#"{"intermediate_hidden_state_indices":[]}"#, "empty");
    }

    #[test]
    fn zero_and_huge_sizes_are_rejected_before_any_arithmetic() {
        for field in ["hidden_size", "num_attention_heads", "patch_size", "decoder_hidden_size", "mlp_dim"] {
            rejected(&format!(r#"{{"{field}":0}}"#), field);
        }
        rejected(r#"{"num_hidden_layers":0}"#, "num_hidden_layers 0");
        rejected(r#"{"image_size":0}"#, "image_size");
        rejected(r#"{"image_size":[0,448]}"#, "image_size height 0");
        // Values near 2^63 used to overflow `2 * patch_size` and the shape products.
        rejected(r#"{"image_size":9223372036854775807}"#, "image_size");
        rejected(r#"{"patch_size":9223372036854775807}"#, "patch_size");
        rejected(r#"{"hidden_size":1048576,"num_attention_heads":1}"#, "parameters");
    }

    #[test]
    fn token_count_and_activations_are_bounded() {
        // 8192 x 4096 pixels in 16-pixel patches: 131072 tokens, 64 GiB of attention scores per head.
        rejected(r#"{"image_size":[8192,4096]}"#, "tokens");
        // 6272 tokens, but a 6.6 GB decoder map.
        rejected(r#"{"image_size":[1792,896],"decoder_hidden_size":1024}"#, "decoder");
        assert!(SegGptConfig::from_json(r#"{"image_size":[1792,896]}"#).is_ok());
    }

    #[test]
    fn layer_norm_eps_must_be_positive() {
        rejected(r#"{"layer_norm_eps":-1e-6}"#, "layer_norm_eps");
        rejected(r#"{"layer_norm_eps":0}"#, "layer_norm_eps");
        let nan = SegGptConfig { layer_norm_eps: f64::NAN, ..Default::default() };
        assert!(nan.validate().unwrap_err().to_string().contains("layer_norm_eps"));
    }

    #[test]
    fn only_a_json_object_is_a_config() {
        rejected("[]", "JSON object");
        rejected("[1024, 24]", "JSON object");
        rejected("42", "JSON object");
        rejected("null", "JSON object");
    }

    #[test]
    fn odd_patch_rows_are_rejected() {
        let err = SegGptConfig::from_json(r#"{"image_size":[48,16],"patch_size":16}"#).unwrap_err();
        assert!(err.to_string().contains("image_size"), "{err}");
    }
}
