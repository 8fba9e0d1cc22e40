//! SAM's mask decoder (docs/MODEL.md §25.3): a two-way transformer between the prompt's tokens
//! (with an IoU token and the mask tokens in front) and the image embedding, then the embedding
//! upscaled four times and one mask per mask token from a hypernetwork's dot products, and an IoU
//! score per mask.

use burn::tensor::{
    Device, Tensor, TensorData, activation::softmax, module::conv_transpose2d, ops::ConvTransposeOptions,
};

use super::config::SamConfig;
use crate::model::layer::{Activation, Mlp};
use crate::model::load::{Loader, Store};
use crate::model::nn::{LayerNorm, Linear, gelu};
use crate::weights::LoadError;

/// eps of `layer_norm_final_attn`, a plain `nn.LayerNorm` (not the config's eps).
const FINAL_NORM_EPS: f64 = 1e-5;
/// eps of the upscaling's channel norm (`SamLayerNorm`'s default).
const UPSCALE_NORM_EPS: f64 = 1e-6;

/// Attention between two token sets, projected to `internal` channels first (SAM's `SamAttention`).
struct TokenAttention<S: Store = Device> {
    q_proj: Linear<S>,
    k_proj: Linear<S>,
    v_proj: Linear<S>,
    out_proj: Linear<S>,
    heads: usize,
}

impl<S: Store> TokenAttention<S> {
    fn load(
        loader: &mut Loader<S>,
        prefix: &str,
        c: usize,
        internal: usize,
        heads: usize,
    ) -> Result<Self, LoadError> {
        let mut linear =
            |name: &str, d_in, d_out| Linear::load(loader, &format!("{prefix}.{name}"), d_in, d_out, true);
        Ok(Self {
            q_proj: linear("q_proj", c, internal)?,
            k_proj: linear("k_proj", c, internal)?,
            v_proj: linear("v_proj", c, internal)?,
            out_proj: linear("out_proj", internal, c)?,
            heads,
        })
    }
}

impl TokenAttention {
    /// `q` `(1, Nq, C)` attends to `k`, `v` `(1, Nk, C)` -> `(1, Nq, C)`.
    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let heads = |x: Tensor<3>| {
            let [b, n, d] = x.dims();
            x.reshape([b, n, self.heads, d / self.heads]).swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(q));
        let k = heads(self.k_proj.forward(k));
        let v = heads(self.v_proj.forward(v));
        let [b, h, nq, hd] = q.dims();
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((hd as f64).powf(-0.5));
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, nq, h * hd]);
        self.out_proj.forward(out)
    }
}

/// One block of the two-way transformer: the tokens attend to themselves, then to the image; an
/// MLP on the tokens; then the image attends to the tokens.
struct TwoWayBlock<S: Store = Device> {
    self_attn: TokenAttention<S>,
    layer_norm1: LayerNorm<S>,
    cross_attn_token_to_image: TokenAttention<S>,
    layer_norm2: LayerNorm<S>,
    mlp: Mlp<S>,
    layer_norm3: LayerNorm<S>,
    layer_norm4: LayerNorm<S>,
    cross_attn_image_to_token: TokenAttention<S>,
    /// The first block's self-attention takes the tokens without their positional part added.
    skip_first_layer_pe: bool,
}

/// A ReLU MLP of `depth` linear layers (`proj_in`, `layers.*`, `proj_out`).
struct FeedForward<S: Store = Device> {
    proj_in: Linear<S>,
    layers: Vec<Linear<S>>,
    proj_out: Linear<S>,
}

impl<S: Store> FeedForward<S> {
    fn load(
        loader: &mut Loader<S>,
        prefix: &str,
        dims: (usize, usize, usize),
        depth: usize,
    ) -> Result<Self, LoadError> {
        let (d_in, hidden, d_out) = dims;
        Ok(Self {
            proj_in: Linear::load(loader, &format!("{prefix}.proj_in"), d_in, hidden, true)?,
            layers: (0..depth - 2)
                .map(|i| Linear::load(loader, &format!("{prefix}.layers.{i}"), hidden, hidden, true))
                .collect::<Result<_, _>>()?,
            proj_out: Linear::load(loader, &format!("{prefix}.proj_out"), hidden, d_out, true)?,
        })
    }
}

impl FeedForward {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let relu = burn::tensor::activation::relu;
        let mut h = relu(self.proj_in.forward(x));
        for layer in &self.layers {
            h = relu(layer.forward(h));
        }
        self.proj_out.forward(h)
    }
}

pub struct MaskDecoder<S: Store = Device> {
    /// `(1, C)`, the first token.
    iou_token: S::Tensor<2>,
    /// `(mask tokens, C)`, after the IoU token.
    mask_tokens: S::Tensor<2>,
    blocks: Vec<TwoWayBlock<S>>,
    final_attn_token_to_image: TokenAttention<S>,
    layer_norm_final_attn: LayerNorm<S>,
    upscale_conv1: (S::Tensor<4>, S::Tensor<1>),
    upscale_layer_norm: LayerNorm<S>,
    upscale_conv2: (S::Tensor<4>, S::Tensor<1>),
    hypernetworks: Vec<FeedForward<S>>,
    iou_head: FeedForward<S>,
}

impl<S: Store> MaskDecoder<S> {
    pub fn load(loader: &mut Loader<S>, config: &SamConfig) -> Result<Self, LoadError> {
        let m = &config.mask_decoder_config;
        let (c, heads, eps) = (m.hidden_size, m.num_attention_heads, m.layer_norm_eps);
        let internal = c / m.attention_downsample_rate;
        let tokens = m.num_multimask_outputs + 1;
        let p = "mask_decoder";
        let iou_token = loader.tensor(&format!("{p}.iou_token.weight"), [1, c])?;
        let mask_tokens = loader.tensor(&format!("{p}.mask_tokens.weight"), [tokens, c])?;
        let blocks = (0..m.num_hidden_layers)
            .map(|i| {
                let b = format!("{p}.transformer.layers.{i}");
                let norm = |loader: &mut Loader<S>, name: &str| {
                    LayerNorm::load(loader, &format!("{b}.{name}"), c, eps)
                };
                Ok(TwoWayBlock {
                    self_attn: TokenAttention::load(loader, &format!("{b}.self_attn"), c, c, heads)?,
                    layer_norm1: norm(loader, "layer_norm1")?,
                    cross_attn_token_to_image: TokenAttention::load(
                        loader,
                        &format!("{b}.cross_attn_token_to_image"),
                        c,
                        internal,
                        heads,
                    )?,
                    layer_norm2: norm(loader, "layer_norm2")?,
                    mlp: Mlp::load(loader, &format!("{b}.mlp"), c, m.mlp_dim, Activation::Relu)?,
                    layer_norm3: norm(loader, "layer_norm3")?,
                    layer_norm4: norm(loader, "layer_norm4")?,
                    cross_attn_image_to_token: TokenAttention::load(
                        loader,
                        &format!("{b}.cross_attn_image_to_token"),
                        c,
                        internal,
                        heads,
                    )?,
                    skip_first_layer_pe: i == 0,
                })
            })
            .collect::<Result<_, LoadError>>()?;
        let conv = |loader: &mut Loader<S>, name: &str, d_in: usize, d_out: usize| {
            Ok::<_, LoadError>((
                loader.tensor(&format!("{p}.{name}.weight"), [d_in, d_out, 2, 2])?,
                loader.tensor(&format!("{p}.{name}.bias"), [d_out])?,
            ))
        };
        Ok(Self {
            iou_token,
            mask_tokens,
            blocks,
            final_attn_token_to_image: TokenAttention::load(
                loader,
                &format!("{p}.transformer.final_attn_token_to_image"),
                c,
                internal,
                heads,
            )?,
            layer_norm_final_attn: LayerNorm::load(
                loader,
                &format!("{p}.transformer.layer_norm_final_attn"),
                c,
                FINAL_NORM_EPS,
            )?,
            upscale_conv1: conv(loader, "upscale_conv1", c, c / 4)?,
            upscale_layer_norm: LayerNorm::load(
                loader,
                &format!("{p}.upscale_layer_norm"),
                c / 4,
                UPSCALE_NORM_EPS,
            )?,
            upscale_conv2: conv(loader, "upscale_conv2", c / 4, c / 8)?,
            hypernetworks: (0..tokens)
                .map(|i| {
                    FeedForward::load(loader, &format!("{p}.output_hypernetworks_mlps.{i}"), (c, c, c / 8), 3)
                })
                .collect::<Result<_, _>>()?,
            iou_head: FeedForward::load(
                loader,
                &format!("{p}.iou_prediction_head"),
                (c, m.iou_head_hidden_dim, tokens),
                m.iou_head_depth,
            )?,
        })
    }
}

impl MaskDecoder {
    /// `image` and `image_pe` `(1, C, g, g)`; `sparse` `(1, n, C)`; `no_mask` `(1, C, 1, 1)`
    /// -> the low-resolution mask logits `(1, M, 4g, 4g)` and the IoU scores `(1, M)`, where M is
    /// every mask token's mask with `multimask` (the first left out), else the first alone.
    pub fn forward(
        &self,
        image: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Tensor<3>,
        no_mask: Tensor<4>,
        multimask: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let [_, c, g, _] = image.dims();
        let output_tokens = Tensor::cat(vec![self.iou_token.clone(), self.mask_tokens.clone()], 0);
        let tokens = Tensor::cat(vec![output_tokens.unsqueeze_dim(0), sparse], 1);
        let flat = |x: Tensor<4>| x.reshape([1, c, g * g]).swap_dims(1, 2);
        let keys = flat(image + no_mask);
        let key_pe = flat(image_pe);

        let (mut queries, mut keys) = (tokens.clone(), keys);
        for block in &self.blocks {
            (queries, keys) = block.forward(queries, keys, &tokens, &key_pe);
        }
        let attn = self.final_attn_token_to_image.forward(
            queries.clone() + tokens.clone(),
            keys.clone() + key_pe,
            keys.clone(),
        );
        let queries = self.layer_norm_final_attn.forward(queries + attn);

        let n_masks = self.hypernetworks.len();
        let image = keys.swap_dims(1, 2).reshape([1, c, g, g]);
        let options = ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1);
        let (w1, b1) = &self.upscale_conv1;
        let up = conv_transpose2d(image, w1.clone(), Some(b1.clone()), options.clone());
        let up = gelu(self.upscale_layer_norm.forward(up.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]));
        let (w2, b2) = &self.upscale_conv2;
        let up = gelu(conv_transpose2d(up, w2.clone(), Some(b2.clone()), options));
        let [_, c8, side, _] = up.dims();

        let hyper: Vec<Tensor<3>> = self
            .hypernetworks
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(queries.clone().narrow(1, 1 + i, 1)))
            .collect();
        let masks =
            Tensor::cat(hyper, 1).matmul(up.reshape([1, c8, side * side])).reshape([1, n_masks, side, side]);
        let iou = self.iou_head.forward(queries.narrow(1, 0, 1)).reshape([1, n_masks]);
        let (first, count) = if multimask { (1, n_masks - 1) } else { (0, 1) };
        (masks.narrow(1, first, count), iou.narrow(1, first, count))
    }
}

impl TwoWayBlock {
    /// `queries` `(1, T, C)`, `keys` `(1, g*g, C)`; `query_pe` is the tokens as first given, `key_pe`
    /// the image's positional embedding.
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: &Tensor<3>,
        key_pe: &Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.layer_norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let queries =
            self.layer_norm2.forward(queries + self.cross_attn_token_to_image.forward(q, k, keys.clone()));

        let queries = self.layer_norm3.forward(queries.clone() + self.mlp.forward(queries));

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let keys =
            self.layer_norm4.forward(keys + self.cross_attn_image_to_token.forward(k, q, queries.clone()));
        (queries, keys)
    }
}

/// A host buffer as a device tensor.
pub fn upload<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
