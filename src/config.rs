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

impl SegGptConfig {
    /// Parses `config.json` text and checks that the model it describes can be built.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| LoadError::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the constraints the forward pass relies on.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: String| Err(LoadError::Config(msg));
        let (h, w) = self.image_size.hw();
        let p = self.patch_size;
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act {:?} is not supported (only \"gelu\")", self.hidden_act));
        }
        if p == 0 || h % (2 * p) != 0 || w % p != 0 {
            return bad(format!("image_size [{h}, {w}] must split into two halves of whole {p}x{p} patches"));
        }
        if self.num_channels != 3 {
            return bad(format!("num_channels {} is not supported (only 3)", self.num_channels));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let (ph, pw) = self.pretrain_image_size.hw();
        if ph != pw || ph / p == 0 {
            return bad(format!("pretrain_image_size {ph}x{pw} must be square and hold at least one patch"));
        }
        if self.merge_index >= self.num_hidden_layers {
            return bad(format!(
                "merge_index {} is not a block index (num_hidden_layers {})",
                self.merge_index, self.num_hidden_layers
            ));
        }
        let indices = &self.intermediate_hidden_state_indices;
        if indices.is_empty() {
            return bad("intermediate_hidden_state_indices is empty".into());
        }
        if indices.iter().any(|&i| i >= self.num_hidden_layers) {
            return bad(format!(
                "intermediate_hidden_state_indices {indices:?} name blocks past num_hidden_layers {}",
                self.num_hidden_layers
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

    #[test]
    fn odd_patch_rows_are_rejected() {
        let err = SegGptConfig::from_json(r#"{"image_size":[48,16],"patch_size":16}"#).unwrap_err();
        assert!(err.to_string().contains("image_size"), "{err}");
    }
}
