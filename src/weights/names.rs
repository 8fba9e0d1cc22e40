//! Official (`seggpt_vit_large.pth`) to HF (`model.safetensors`) tensor names, docs/MODEL.md §9.2.
//! No tensor is transformed by the renaming: shapes are identical in both checkpoints.

/// Whole-name renames, official -> HF.
const FIXED: &[(&str, &str)] = &[
    ("patch_embed.proj.weight", "model.embeddings.patch_embeddings.projection.weight"),
    ("patch_embed.proj.bias", "model.embeddings.patch_embeddings.projection.bias"),
    ("mask_token", "model.embeddings.mask_token"),
    ("segment_token_x", "model.embeddings.segment_token_input"),
    ("segment_token_y", "model.embeddings.segment_token_prompt"),
    ("type_token_cls", "model.embeddings.type_token_semantic"),
    ("type_token_ins", "model.embeddings.type_token_instance"),
    ("pos_embed", "model.embeddings.position_embeddings"),
    ("norm.weight", "model.encoder.layernorm.weight"),
    ("norm.bias", "model.encoder.layernorm.bias"),
    ("decoder_embed.weight", "decoder.decoder_embed.weight"),
    ("decoder_embed.bias", "decoder.decoder_embed.bias"),
    ("decoder_pred.0.weight", "decoder.decoder_pred.conv.weight"),
    ("decoder_pred.0.bias", "decoder.decoder_pred.conv.bias"),
    ("decoder_pred.1.weight", "decoder.decoder_pred.layernorm.weight"),
    ("decoder_pred.1.bias", "decoder.decoder_pred.layernorm.bias"),
    ("decoder_pred.3.weight", "decoder.decoder_pred.head.weight"),
    ("decoder_pred.3.bias", "decoder.decoder_pred.head.bias"),
];

/// Renames inside `blocks.{i}.`, official -> HF (`model.encoder.layers.{i}.`).
const IN_BLOCK: &[(&str, &str)] = &[
    ("attn.qkv.", "attention.qkv."),
    ("attn.proj.", "attention.proj."),
    ("attn.rel_pos_h", "attention.rel_pos_h"),
    ("attn.rel_pos_w", "attention.rel_pos_w"),
    ("mlp.fc1.", "mlp.lin1."),
    ("mlp.fc2.", "mlp.lin2."),
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
];

/// The HF name of an official tensor name; `None` if the name is not a SegGPT weight.
pub fn hf_name_for_official(name: &str) -> Option<String> {
    if let Some((_, hf)) = FIXED.iter().find(|(off, _)| *off == name) {
        return Some((*hf).to_string());
    }
    let rest = name.strip_prefix("blocks.")?;
    let (index, tail) = rest.split_once('.')?;
    index.parse::<usize>().ok()?;
    IN_BLOCK.iter().find_map(|(off, hf)| {
        tail.strip_prefix(off).map(|suffix| format!("model.encoder.layers.{index}.{hf}{suffix}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every official name of the released checkpoint's weight map gets its HF name.
    #[test]
    fn weight_map_renames_official_names() {
        let table = include_str!("../../tests/fixtures/weight_map.tsv");
        let mut rows = 0;
        for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (official, hf) = (cols[0], cols[1]);
            assert_eq!(hf_name_for_official(official).as_deref(), Some(hf), "{official}");
            rows += 1;
        }
        assert_eq!(rows, 354);
    }

    #[test]
    fn unknown_names_are_not_renamed() {
        assert_eq!(hf_name_for_official("head.weight"), None);
        assert_eq!(hf_name_for_official("blocks.x.attn.qkv.weight"), None);
    }
}
