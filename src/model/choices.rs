//! The user's choices of a forward pass, without burn: the page's wasm, which has no model, offers
//! them and the browser protocol carries them (Cargo.toml, feature `burn`).

/// Which type token is added to every token (docs/MODEL.md §4).
///
/// The one definition of this choice: the CLI parses it (`clap::ValueEnum`, feature `cli`) and the
/// browser protocol carries it (`serde`, as `"instance"`, `"semantic"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingType {
    /// `type_token_instance`: colours identify instances (the default of both implementations).
    #[default]
    Instance,
    /// `type_token_semantic`: colours identify classes.
    Semantic,
}

impl EmbeddingType {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [EmbeddingType; 2] = [EmbeddingType::Instance, EmbeddingType::Semantic];

    /// The name used on the command line and in the browser protocol.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingType::Instance => "instance",
            EmbeddingType::Semantic => "semantic",
        }
    }
}

/// How the K prompts of one query are combined (docs/MODEL.md §6).
///
/// The one definition of this choice: the CLI parses it (`clap::ValueEnum`, feature `cli`) and the
/// browser protocol carries it (`serde`, as `"official"`, `"hf"`, `"none"`, `"spatial"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Ensemble {
    /// The official Painter schedule: for K > 1, blocks `<= merge_index` average per stream and
    /// later blocks over all prompts; nothing for K = 1.
    Official,
    /// transformers' `feature_ensemble=True` (which also averages both streams at
    /// `merge_index`, even for K = 1).
    Hf,
    /// K independent one-shot predictions (transformers' default).
    None,
    /// The paper's spatial ensemble: the K prompts tiled into one grid prompt before the model
    /// (docs/MODEL.md §14), which then runs one prompt with no averaging.
    Spatial,
}

impl Ensemble {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [Ensemble; 4] = [Ensemble::Official, Ensemble::Hf, Ensemble::None, Ensemble::Spatial];

    /// The name used on the command line and in the browser protocol.
    pub fn name(self) -> &'static str {
        match self {
            Ensemble::Official => "official",
            Ensemble::Hf => "hf",
            Ensemble::None => "none",
            Ensemble::Spatial => "spatial",
        }
    }

    /// How many prompts the model runs for `k` given prompts: one grid for the spatial ensemble,
    /// all `k` otherwise. Memory limits on the prompt count apply to this number.
    pub fn model_prompts(self, k: usize) -> usize {
        match self {
            Ensemble::Spatial => k.min(1),
            _ => k,
        }
    }
}

/// Which attention computes the `(sample, head)` sequences of an encoder block (docs/MODEL.md §21).
///
/// The one definition of this choice: `seggpt bench --attention` parses it and the page's Benchmark
/// carries it (`?attention=reference`), as `"fused"` or `"reference"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum AttentionKernel {
    /// The fused kernel of `shaders/fused_attention.rs` where it can run (a cubecl device without
    /// autodiff: native wgpu and WebGPU, f32 or f16, relative position terms on), the reference
    /// path elsewhere. The default: it never writes a score matrix.
    #[default]
    Fused,
    /// Scores written whole, then softmax, then the product with v, in head groups within the
    /// memory budget: burn's own operations on every backend.
    Reference,
}

impl AttentionKernel {
    /// Every variant, in the order a user interface lists them.
    pub const ALL: [AttentionKernel; 2] = [AttentionKernel::Fused, AttentionKernel::Reference];

    /// The name used on the command line, in the page's address and in benchmark reports.
    pub fn name(self) -> &'static str {
        match self {
            AttentionKernel::Fused => "fused",
            AttentionKernel::Reference => "reference",
        }
    }

    /// The choice named `name` ([`AttentionKernel::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kernel| kernel.name() == name)
    }
}
