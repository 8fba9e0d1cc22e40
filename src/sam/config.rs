//! SAM's `config.json`, as transformers' `SamConfig` writes it: three sub-configs, each field
//! defaulting to the released `facebook/sam-vit-huge` value where the file leaves it out.

use serde::Deserialize;

use crate::weights::LoadError;

/// Largest side, width, depth or count a config may name: far above every released SAM
/// (ViT-H: 1280 wide, 32 blocks, 1024 pixels), low enough that no product overflows.
const MAX_SIZE: usize = 1 << 14;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SamConfig {
    pub vision_config: VisionConfig,
    #[serde(default)]
    pub prompt_encoder_config: PromptEncoderConfig,
    #[serde(default)]
    pub mask_decoder_config: MaskDecoderConfig,
}

/// The ViT image encoder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    /// Channels of the image embedding the neck makes (the prompt encoder's and decoder's width).
    pub output_channels: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    /// Side of the square, padded model input.
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub mlp_ratio: f64,
    /// `None`: `hidden_size * mlp_ratio`.
    pub mlp_dim: Option<usize>,
    pub use_abs_pos: bool,
    pub use_rel_pos: bool,
    /// Side of the attention windows of every block not in `global_attn_indexes`.
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
    /// Half the width of the random-Fourier positional encoding shared by image and prompts.
    pub num_pos_feats: usize,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            output_channels: 256,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 1024,
            patch_size: 16,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            mlp_ratio: 4.0,
            mlp_dim: None,
            use_abs_pos: true,
            use_rel_pos: true,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            num_pos_feats: 128,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PromptEncoderConfig {
    pub hidden_size: usize,
    /// The model input side the prompt coordinates are given in (1024).
    pub image_size: usize,
    pub patch_size: usize,
    pub mask_input_channels: usize,
    pub num_point_embeddings: usize,
    pub layer_norm_eps: f64,
}

impl Default for PromptEncoderConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            image_size: 1024,
            patch_size: 16,
            mask_input_channels: 16,
            num_point_embeddings: 4,
            layer_norm_eps: 1e-6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MaskDecoderConfig {
    pub hidden_size: usize,
    pub hidden_act: String,
    pub mlp_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// The cross attentions project to `hidden_size / attention_downsample_rate` channels.
    pub attention_downsample_rate: usize,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
    pub layer_norm_eps: f64,
}

impl Default for MaskDecoderConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            hidden_act: "relu".into(),
            mlp_dim: 2048,
            num_hidden_layers: 2,
            num_attention_heads: 8,
            attention_downsample_rate: 2,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            layer_norm_eps: 1e-6,
        }
    }
}

impl SamConfig {
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LoadError::Config(format!("config.json: {e}")))?;
        if !value.get("vision_config").is_some_and(|v| v.is_object()) {
            return Err(LoadError::Config(
                "config.json: not a SAM config (no `vision_config` object); pass a SamModel directory".into(),
            ));
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| LoadError::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Side of the image embedding's grid: the model input in patches (64 for 1024 / 16).
    pub fn embedding_grid(&self) -> usize {
        self.vision_config.image_size / self.vision_config.patch_size
    }

    /// Side of the low-resolution masks the decoder predicts: the grid upscaled four times.
    pub fn low_res_mask_size(&self) -> usize {
        4 * self.embedding_grid()
    }

    pub fn mask_outputs(&self, multimask: bool) -> usize {
        if multimask { self.mask_decoder_config.num_multimask_outputs } else { 1 }
    }

    /// Checks what the forward pass relies on, before anything is allocated.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: String| Err(LoadError::Config(format!("config.json: {msg}")));
        let v = &self.vision_config;
        let p = &self.prompt_encoder_config;
        let m = &self.mask_decoder_config;
        let sizes = [
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.output_channels", v.output_channels),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.num_pos_feats", v.num_pos_feats),
            ("vision_config.mlp_dim", v.mlp_dim()),
            ("prompt_encoder_config.hidden_size", p.hidden_size),
            ("prompt_encoder_config.image_size", p.image_size),
            ("prompt_encoder_config.mask_input_channels", p.mask_input_channels),
            ("mask_decoder_config.hidden_size", m.hidden_size),
            ("mask_decoder_config.mlp_dim", m.mlp_dim),
            ("mask_decoder_config.num_hidden_layers", m.num_hidden_layers),
            ("mask_decoder_config.num_attention_heads", m.num_attention_heads),
            ("mask_decoder_config.attention_downsample_rate", m.attention_downsample_rate),
            ("mask_decoder_config.num_multimask_outputs", m.num_multimask_outputs),
            ("mask_decoder_config.iou_head_hidden_dim", m.iou_head_hidden_dim),
        ];
        for (name, value) in sizes {
            if value == 0 || value > MAX_SIZE {
                return bad(format!("{name} is {value}; it must be between 1 and {MAX_SIZE}"));
            }
        }
        if v.hidden_act != "gelu" || m.hidden_act != "relu" {
            return bad(format!(
                "activations {:?} (vision) and {:?} (mask decoder) are not supported (only \"gelu\" and \"relu\")",
                v.hidden_act, m.hidden_act
            ));
        }
        if v.num_channels != 3 {
            return bad(format!("vision_config.num_channels {} is not supported (only 3)", v.num_channels));
        }
        for (name, eps) in [
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
            ("mask_decoder_config.layer_norm_eps", m.layer_norm_eps),
        ] {
            if !(eps.is_finite() && eps > 0.0) {
                return bad(format!("{name} {eps} must be a positive number"));
            }
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return bad("vision_config.hidden_size must be a multiple of num_attention_heads".into());
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return bad("vision_config.image_size must be a multiple of patch_size".into());
        }
        if v.window_size > self.embedding_grid() {
            return bad(format!(
                "vision_config.window_size {} is larger than the patch grid ({})",
                v.window_size,
                self.embedding_grid()
            ));
        }
        if let Some(&i) = v.global_attn_indexes.iter().find(|&&i| i >= v.num_hidden_layers) {
            return bad(format!(
                "vision_config.global_attn_indexes names block {i} of {}",
                v.num_hidden_layers
            ));
        }
        if v.output_channels != p.hidden_size
            || p.hidden_size != m.hidden_size
            || 2 * v.num_pos_feats != p.hidden_size
        {
            return bad(format!(
                "the image embedding ({} channels), the positional encoding (2 x {}), the prompt encoder ({}) \
                 and the mask decoder ({}) must have one width",
                v.output_channels, v.num_pos_feats, p.hidden_size, m.hidden_size
            ));
        }
        if p.image_size != v.image_size || p.image_size / p.patch_size.max(1) != self.embedding_grid() {
            return bad(
                "the prompt encoder's image_size and patch_size must match the vision encoder's".into()
            );
        }
        if p.num_point_embeddings != 4 {
            return bad(format!(
                "prompt_encoder_config.num_point_embeddings {} is not supported (only 4: off, on and two box corners)",
                p.num_point_embeddings
            ));
        }
        let internal = m.hidden_size / m.attention_downsample_rate;
        if !m.hidden_size.is_multiple_of(8)
            || !m.hidden_size.is_multiple_of(m.num_attention_heads)
            || !internal.is_multiple_of(m.num_attention_heads)
        {
            return bad(
                "mask_decoder_config.hidden_size must be a multiple of 8 and, also after the attention \
                 downsample rate, of num_attention_heads"
                    .into(),
            );
        }
        if m.iou_head_depth < 2 {
            return bad(format!(
                "mask_decoder_config.iou_head_depth {} must be at least 2",
                m.iou_head_depth
            ));
        }
        Ok(())
    }
}

impl VisionConfig {
    pub fn mlp_dim(&self) -> usize {
        self.mlp_dim.unwrap_or((self.hidden_size as f64 * self.mlp_ratio) as usize)
    }

    /// The attention window of block `index`: `None` for a global block.
    pub fn window_of(&self, index: usize) -> Option<usize> {
        (!self.global_attn_indexes.contains(&index) && self.window_size > 0).then_some(self.window_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_vision_config_is_sam_vit_base() {
        let c = SamConfig::from_json(r#"{"vision_config": {}}"#).unwrap();
        assert_eq!(c.embedding_grid(), 64);
        assert_eq!(c.low_res_mask_size(), 256);
        assert_eq!(c.vision_config.mlp_dim(), 3072);
        assert_eq!(c.vision_config.window_of(2), None);
        assert_eq!(c.vision_config.window_of(3), Some(14));
    }

    #[test]
    fn a_seggpt_config_is_refused_by_name() {
        let err = SamConfig::from_json(r#"{"hidden_size": 1024, "image_size": [896, 448]}"#).unwrap_err();
        assert!(err.to_string().contains("not a SAM config"), "{err}");
    }

    #[test]
    fn widths_that_do_not_agree_are_refused() {
        let err = SamConfig::from_json(r#"{"vision_config": {"output_channels": 128}}"#).unwrap_err();
        assert!(err.to_string().contains("one width"), "{err}");
        let err = SamConfig::from_json(r#"{"vision_config": {"window_size": 65}}"#).unwrap_err();
        assert!(err.to_string().contains("window_size"), "{err}");
    }
}
