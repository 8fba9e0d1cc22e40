#!/usr/bin/env python3
"""Reference-fixture generator for seggpt-web (Rust/burn port of SegGPT).

Ground truth comes from Hugging Face `transformers` (SegGptForImageSegmentation,
SegGptImageProcessorPil), Pillow and PyTorch.  Everything is deterministic given --seed.

Subcommands (see scripts/README.md):
    model       random tiny (or --full) model + inputs + expected pred_masks for every
                ensemble mode ({official, hf, none}) x embedding type ({instance, semantic})
    preprocess  PNG test images / masks + SegGptImageProcessorPil outputs
    resize      Pillow BICUBIC / NEAREST and torch legacy-nearest ground truth
    segment     end-to-end: PNGs -> processor -> model -> post-processing -> PNG outputs
    spatial     the spatial ensemble's grid prompt and model output (scripts/ref_spatial.py)
    eval        DAVIS J / F and HSNet few-shot scores on synthetic masks, tiny FSS / DAVIS folders
                (scripts/ref_eval.py)
    video       the official video propagation loop on a synthetic clip (scripts/ref_video.py)
    export      pycocotools RLE / area / bbox of the components of synthetic class maps (ref_export.py)
    tune        prompt-tuning loss, gradients (torch.autograd) and AdamW steps (scripts/ref_tune.py)
    sam         random tiny SamModel + SamProcessor (64 px): PNGs, point / box prompts -> pred_masks,
                iou_scores, post-processed masks and intermediates (Segment Anything, transformers' SamModel)
    all         regenerate tests/fixtures/ (the committed set)

Ensemble modes:
    none      HF forward, feature_ensemble=False (K independent one-shot predictions)
    hf        HF forward, feature_ensemble=True (HF schedule, differs from official at
              block merge_index, and also ensembles for K=1 there)
    official  Painter schedule (docs/MODEL.md §6), implemented below in `encoder_forward`
              by re-using the HF submodules; validated against HF for the two HF schedules.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ref_export import cmd_export  # noqa: E402
import ref_eval  # noqa: E402  (scripts/ is on sys.path when this script runs)
import ref_spatial  # noqa: E402

torch.set_num_threads(int(os.environ.get("FIXTURE_THREADS", "1")))

import transformers  # noqa: E402
from transformers import SegGptConfig, SegGptForImageSegmentation  # noqa: E402

try:  # transformers >= 5: PIL backend has its own class
    from transformers import SegGptImageProcessorPil as _Processor

    PROCESSOR_CLASS = "SegGptImageProcessorPil"
except ImportError:  # transformers 4.x: the numpy/PIL processor is SegGptImageProcessor
    from transformers import SegGptImageProcessor as _Processor

    PROCESSOR_CLASS = "SegGptImageProcessor"

from ref_tune import cmd_tune  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "tests" / "fixtures"

MODES = ("official", "hf", "none")
EMBEDDINGS = ("instance", "semantic")

# Small config used by the committed fixtures (overridable with --config).
TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    mlp_dim=64,
    patch_size=4,
    image_size=[32, 16],
    pretrain_image_size=16,
    decoder_hidden_size=8,
    merge_index=2,
    intermediate_hidden_state_indices=[2, 3],
    drop_path_rate=0.0,
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def gen(seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(int(seed))
    return g


def np_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))


def save_st(tensors: dict, path: Path):
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def write_json(obj, path: Path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def tensor_index(tensors: dict) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()}


def load_config_arg(s: str | None) -> dict:
    if not s:
        return {}
    if os.path.isfile(s):
        with open(s) as f:
            return json.load(f)
    return json.loads(s)


def make_config(overrides: dict, full: bool) -> SegGptConfig:
    base = {} if full else dict(TINY_CONFIG)
    base.update(overrides)
    cfg = SegGptConfig(**base)
    return cfg


def grid(cfg) -> tuple[int, int]:
    return cfg.image_size[0] // cfg.patch_size, cfg.image_size[1] // cfg.patch_size


# --------------------------------------------------------------------------------------------
# model construction
# --------------------------------------------------------------------------------------------


def randomize_(model: torch.nn.Module, seed: int):
    """Give every parameter non-trivial values, rounded to f16-representable f32."""
    g = gen(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = p.shape
            leaf = name.rsplit(".", 1)[-1]
            if "layernorm" in name and leaf == "weight":
                v = 1.0 + 0.2 * torch.randn(shape, generator=g)
            elif "layernorm" in name and leaf == "bias":
                v = 0.2 * torch.randn(shape, generator=g)
            elif leaf == "weight" and p.ndim >= 2:  # Linear / Conv2d
                fan_in = int(np.prod(shape[1:]))
                v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
            elif leaf == "bias":
                v = 0.2 * torch.randn(shape, generator=g)
            elif leaf in ("rel_pos_h", "rel_pos_w"):
                v = 0.5 * torch.randn(shape, generator=g)
            elif leaf == "position_embeddings":
                v = 0.5 * torch.randn(shape, generator=g)
            elif "token" in leaf:  # mask / segment / type tokens
                v = 0.5 * torch.randn(shape, generator=g)
            else:
                raise RuntimeError(f"unhandled parameter {name} {tuple(shape)}")
            p.copy_(v.half().float())
    # every parameter must now be f16-exact and non-constant
    for name, p in model.named_parameters():
        assert torch.equal(p.data, p.data.half().float()), name
        assert p.numel() == 1 or p.data.std() > 0, name


def build_model(cfg: SegGptConfig, seed: int) -> SegGptForImageSegmentation:
    torch.manual_seed(seed)  # HF's own init (overwritten below anyway)
    model = SegGptForImageSegmentation(cfg)
    model.float().eval()
    randomize_(model, seed)
    sd_keys = set(model.state_dict().keys())
    par_keys = {n for n, _ in model.named_parameters()}
    assert sd_keys == par_keys, f"unexpected buffers: {sd_keys ^ par_keys}"
    return model


# HF name -> official (Painter) name, docs/MODEL.md §9.2
_HF2OFF_FIXED = {
    "model.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "model.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "model.embeddings.mask_token": "mask_token",
    "model.embeddings.segment_token_input": "segment_token_x",
    "model.embeddings.segment_token_prompt": "segment_token_y",
    "model.embeddings.type_token_semantic": "type_token_cls",
    "model.embeddings.type_token_instance": "type_token_ins",
    "model.embeddings.position_embeddings": "pos_embed",
    "model.encoder.layernorm.weight": "norm.weight",
    "model.encoder.layernorm.bias": "norm.bias",
    "decoder.decoder_embed.weight": "decoder_embed.weight",
    "decoder.decoder_embed.bias": "decoder_embed.bias",
    "decoder.decoder_pred.conv.weight": "decoder_pred.0.weight",
    "decoder.decoder_pred.conv.bias": "decoder_pred.0.bias",
    "decoder.decoder_pred.layernorm.weight": "decoder_pred.1.weight",
    "decoder.decoder_pred.layernorm.bias": "decoder_pred.1.bias",
    "decoder.decoder_pred.head.weight": "decoder_pred.3.weight",
    "decoder.decoder_pred.head.bias": "decoder_pred.3.bias",
}
_HF2OFF_LAYER = {
    "attention.qkv": "attn.qkv",
    "attention.proj": "attn.proj",
    "attention.rel_pos_h": "attn.rel_pos_h",
    "attention.rel_pos_w": "attn.rel_pos_w",
    "mlp.lin1": "mlp.fc1",
    "mlp.lin2": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}


def hf_to_official(name: str) -> str:
    if name in _HF2OFF_FIXED:
        return _HF2OFF_FIXED[name]
    m = re.fullmatch(r"model\.encoder\.layers\.(\d+)\.(.+?)(\.weight|\.bias)?", name)
    if m:
        i, mid, leaf = m.group(1), m.group(2), m.group(3) or ""
        if mid in _HF2OFF_LAYER:
            return f"blocks.{i}.{_HF2OFF_LAYER[mid]}{leaf}"
    raise KeyError(name)


def check_weight_map():
    """Cross-check hf_to_official against /work/shared/seggpt/weight_map.tsv if present."""
    tsv = Path("/work/shared/seggpt/weight_map.tsv")
    if not tsv.exists():
        return
    n = 0
    for line in tsv.read_text().splitlines()[1:]:
        if not line.strip():
            continue
        off, hf = line.split("\t")[:2]
        assert hf_to_official(hf) == off, (hf, off)
        n += 1
    log(f"weight_map.tsv: {n} names agree with hf_to_official")


# --------------------------------------------------------------------------------------------
# forward with selectable ensemble schedule
# --------------------------------------------------------------------------------------------


def default_bool_masked_pos(model) -> torch.Tensor:
    n = model.model.embeddings.patch_embeddings.num_patches
    return torch.cat([torch.zeros(n // 2, dtype=torch.bool), torch.ones(n - n // 2, dtype=torch.bool)])[None]


def ensemble(a: torch.Tensor, i: int, schedule: str, merge_index: int, k: int) -> torch.Tensor:
    """Feature ensemble on the attention-branch output `a` (B,Hp,Wp,C), bottom half only."""
    b = a.shape[0]
    if schedule == "none":
        return a
    if schedule == "hf":
        cond = 2 if merge_index > i else 1
        if not (b // 2 >= cond):
            return a
        per_stream = cond == 2
    elif schedule == "official":
        if k <= 1:
            return a
        per_stream = i <= merge_index  # batch is 2K there (before/at the merge)
        if per_stream:
            assert b == 2 * k
        else:
            assert b == k
    else:
        raise ValueError(schedule)
    prompt, inputs = a.split(a.shape[1] // 2, dim=1)
    if per_stream:  # mean over the prompts, separately for image / mask stream
        inputs = inputs.reshape(2, b // 2, -1)
        inputs = inputs.mean(dim=1, keepdim=True).expand_as(inputs)
        inputs = inputs.reshape(*prompt.shape)
    else:  # mean over the whole current batch
        inputs = inputs.mean(dim=0, keepdim=True).expand_as(inputs)
    return torch.cat([prompt, inputs], dim=1)


@torch.no_grad()
def seggpt_forward(model, pixel_values, prompt_pixel_values, prompt_masks, schedule: str, embedding_type: str,
                   trace: dict | None = None) -> torch.Tensor:
    """Re-implementation of SegGptForImageSegmentation.forward with a selectable ensemble schedule."""
    cfg = model.config
    k = pixel_values.shape[0]
    emb = model.model.embeddings
    x = torch.cat((prompt_pixel_values, pixel_values), dim=2)
    y = torch.cat((prompt_masks, prompt_masks), dim=2)
    h = emb(x, y, bool_masked_pos=default_bool_masked_pos(model), embedding_type=embedding_type)
    if trace is not None:
        hp, wp = h.shape[1], h.shape[2]
        trace["pos_embed"] = emb.interpolate_pos_encoding(hp, wp).clone()
        trace["embeddings"] = h.clone()
    enc = model.model.encoder
    feats = []
    for i, layer in enumerate(enc.layers):
        a = layer.attention(layer.layernorm_before(h))[0]
        a = ensemble(a, i, schedule, cfg.merge_index, k)
        h = a + h
        h = h + layer.mlp(layer.layernorm_after(h))
        if i == cfg.merge_index:
            h = (h[: h.shape[0] // 2] + h[h.shape[0] // 2:]) * 0.5
        if trace is not None:
            trace[f"layer{i}"] = h.clone()
        if i in cfg.intermediate_hidden_state_indices:
            feats.append(enc.layernorm(h))
    f = torch.cat(feats, dim=-1)
    dec = model.decoder
    if trace is not None:
        trace["features"] = f.clone()
        z = dec._reshape_hidden_states(dec.decoder_embed(f))
        trace["decoder_pixels"] = z.clone()
    pred = dec(f)
    if trace is not None:
        trace["pred_masks"] = pred.clone()
    return pred


@torch.no_grad()
def all_predictions(model, inputs: dict, validate: bool = True) -> dict:
    out = {}
    k = inputs["pixel_values"].shape[0]
    for et in EMBEDDINGS:
        for mode in MODES:
            mine = seggpt_forward(model, inputs["pixel_values"], inputs["prompt_pixel_values"],
                                  inputs["prompt_masks"], mode, et)
            if mode in ("hf", "none") and validate:
                ref = model(**inputs, feature_ensemble=(mode == "hf"), embedding_type=et).pred_masks
                err = (mine - ref).abs().max().item()
                scale = ref.abs().max().item()
                log(f"  validate loop vs HF [{mode}/{et}] K={k}: max|diff|={err:.3g} (max|ref|={scale:.3g})")
                assert err <= 1e-6 * max(1.0, scale), f"own loop drifted from HF ({mode}/{et}): {err}"
                mine = ref
            out[f"pred_masks.{mode}.{et}"] = mine.float().contiguous()
    if k == 1:  # official == none for K=1 (no ensemble)
        for et in EMBEDDINGS:
            assert torch.equal(out[f"pred_masks.official.{et}"], out[f"pred_masks.none.{et}"])
    return out


def make_inputs(cfg, k: int, seed: int) -> dict:
    g = gen(seed + 1000)
    h, w = cfg.image_size[0] // 2, cfg.image_size[1]
    query = torch.randn(1, 3, h, w, generator=g)
    return {
        "pixel_values": query.expand(k, -1, -1, -1).contiguous(),  # same query repeated K times
        "prompt_pixel_values": torch.randn(k, 3, h, w, generator=g),
        "prompt_masks": torch.randn(k, 3, h, w, generator=g),
    }


def save_model_dir(model, out: Path, pth: bool, f16: bool):
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "config.json", "official.pth", "model-f16.safetensors"):
        if (out / stale).exists():
            (out / stale).unlink()
    model.save_pretrained(str(out))
    files = sorted(os.listdir(out))
    assert "model.safetensors" in files and "config.json" in files, files
    assert not any(f.endswith(".index.json") for f in files), f"sharded save: {files}"
    sd = model.state_dict()
    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == set(sd), set(saved) ^ set(sd)
    for k_, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k_]), k_
    if pth:
        off = {hf_to_official(k_): v.clone() for k_, v in sd.items()}
        torch.save({"model": off}, str(out / "official.pth"))
        back = torch.load(str(out / "official.pth"), map_location="cpu", weights_only=True)["model"]
        assert set(back) == set(off) and all(torch.equal(back[k_], off[k_]) for k_ in off)
    if f16:
        save_st({k_: v.half() for k_, v in sd.items()}, out / "model-f16.safetensors")
        back = load_file(str(out / "model-f16.safetensors"))
        for k_, v in back.items():
            assert torch.equal(v.float(), sd[k_]), k_


@torch.no_grad()
def cmd_model(out: Path, seed: int, overrides: dict, k: int, full: bool, pth: bool, f16: bool,
              trace: bool = False, describe: dict | None = None, predictions: bool = True) -> dict:
    cfg = make_config(overrides, full)
    hp, wp = grid(cfg)
    assert hp % 2 == 0, "patch-grid height must be even (prompt/query halves)"
    log(f"[model] {out} seed={seed} K={k} image_size={cfg.image_size} grid={hp}x{wp}")
    model = build_model(cfg, seed)
    save_model_dir(model, out, pth, f16)

    # round-trip: the saved directory must reload to the same model
    if not full:
        re_model = SegGptForImageSegmentation.from_pretrained(str(out)).float().eval()
        for (n1, p1), (n2, p2) in zip(sorted(model.state_dict().items()), sorted(re_model.state_dict().items())):
            assert n1 == n2 and torch.equal(p1, p2), n1

    for stale in ("inputs.safetensors", "expected.safetensors", "trace.safetensors"):
        if (out / stale).exists():
            (out / stale).unlink()
    if predictions:
        inputs = make_inputs(cfg, k, seed)
        save_st(inputs, out / "inputs.safetensors")
        preds = all_predictions(model, inputs)
        save_st(preds, out / "expected.safetensors")
    if trace and predictions:
        tr = {}
        mine = seggpt_forward(model, inputs["pixel_values"], inputs["prompt_pixel_values"], inputs["prompt_masks"],
                              "official", "instance", trace=tr)
        assert torch.equal(mine, preds["pred_masks.official.instance"])
        # (no extra safetensors metadata: its key order is not deterministic across runs)
        save_st(tr, out / "trace.safetensors")
    info = {
        "seed": seed,
        "num_prompts": k,
        "patch_grid": [hp, wp],
        "config": {k_: getattr(cfg, k_) for k_ in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_dim", "patch_size", "image_size",
            "pretrain_image_size", "decoder_hidden_size", "merge_index", "intermediate_hidden_state_indices",
            "layer_norm_eps", "hidden_act", "qkv_bias", "use_relative_position_embeddings")},
        "files": sorted(os.listdir(out)),
        "tensors": {f: tensor_index(load_file(str(out / f))) for f in
                    ("inputs.safetensors", "expected.safetensors", "trace.safetensors") if (out / f).exists()},
    }
    if (out / "trace.safetensors").exists():
        info["trace"] = ("official schedule, embedding_type=instance: pos_embed = interpolated abs pos (1,Hp,Wp,D); "
                         "embeddings = cat(image stream, mask stream) (2K,Hp,Wp,D); layer{i} = hidden state after "
                         "block i (after the stream merge when i == merge_index); features = cat of final-layernormed "
                         "intermediate states (K,Hp,Wp,n*D); decoder_pixels = decoder_embed output after pixel "
                         "shuffle (K,dec,H,W); pred_masks (K,3,H,W).")
    info["config"]["image_size"] = list(cfg.image_size)
    info["config"]["intermediate_hidden_state_indices"] = list(cfg.intermediate_hidden_state_indices)
    if describe is not None:
        describe.update(info)
    return info


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def smooth_rgb(rng, h: int, w: int, noise: int = 0) -> np.ndarray:
    """Low-frequency colourful image (compresses well as PNG); optional small noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(3):
        fy, fx = rng.uniform(0.5, 3.0, size=2)
        py, px = rng.uniform(0, 2 * np.pi, size=2)
        c = 127.5 + 120 * np.sin(2 * np.pi * fy * yy / h + py) * np.cos(2 * np.pi * fx * xx / w + px)
        chans.append(c)
    img = np.stack(chans, -1)
    if noise:
        img = img + rng.integers(-noise, noise + 1, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def noise_rgb(rng, h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def blob_labels(rng, h: int, w: int, n: int) -> np.ndarray:
    """Class-index map 0..n made of rectangles on background 0 (every class present)."""
    lab = np.zeros((h, w), np.uint8)
    for c in range(1, n + 1):
        y0 = int(rng.integers(0, max(1, h - 2)))
        x0 = int(rng.integers(0, max(1, w - 2)))
        y1 = int(min(h, y0 + rng.integers(2, max(3, h // 2 + 2))))
        x1 = int(min(w, x0 + rng.integers(2, max(3, w // 2 + 2))))
        lab[y0:y1, x0:x1] = c
    # make sure each class has at least one pixel
    for c in range(n + 1):
        if not (lab == c).any():
            lab[c % h, (3 * c) % w] = c
    return lab


def colour_mask(rng, h: int, w: int, colours: list) -> np.ndarray:
    lab = blob_labels(rng, h, w, len(colours))
    pal = np.array([(0, 0, 0)] + [tuple(c) for c in colours], np.uint8)
    return pal[lab]


def build_palette(num_labels: int):
    # reference copy of HF's build_palette (checked against the processor below)
    base = int(num_labels ** (1 / 3)) + 1
    margin = 256 // base
    out = [(0, 0, 0)]
    for loc in range(num_labels):
        r = loc // base ** 2
        g = (loc % base ** 2) // base
        b = loc % base
        out.append((255 - r * margin, 255 - g * margin, 255 - b * margin))
    return out


# --------------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def open_rgb(path: Path) -> Image.Image:
    """How images are opened before the processor (the PIL processor does NOT convert images)."""
    return Image.open(path).convert("RGB")


def open_mask(path: Path, kind: str):
    im = Image.open(path)
    if kind == "rgb":
        return im.convert("RGB")
    if kind == "index":  # class-index map: L or P (raw palette indices), passed as 2-D array
        assert im.mode in ("L", "P"), im.mode
        return np.array(im)
    raise ValueError(kind)


def normalize_u8(u8_chw: np.ndarray) -> np.ndarray:
    """Exactly the processor's rescale+normalize: f32(f64(u)*(1/255)), then (x-mean)/std in f32."""
    x = (u8_chw.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    return (x - mean) / std


def cmd_preprocess(out: Path, seed: int):
    out.mkdir(parents=True, exist_ok=True)
    rng = np_rng(seed)
    files = {}

    def put(name, arr):
        Image.fromarray(arr).save(out / name)  # uint8: 2-D -> L, 3 channels -> RGB, 4 -> RGBA
        files[name] = {"mode": Image.open(out / name).mode, "size_hw": [arr.shape[0], arr.shape[1]]}

    def put_p(name, idx, palette):
        im = Image.frombytes("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes())
        im.putpalette(list(palette) + [0] * (768 - len(palette)))
        im.save(out / name)
        files[name] = {"mode": Image.open(out / name).mode, "size_hw": [idx.shape[0], idx.shape[1]]}

    # --- test images (h x w) ---
    put("img_rgb_7x13.png", noise_rgb(rng, 7, 13))
    put("img_rgba_20x33.png", noise_rgb(rng, 20, 33, 4))
    put("img_l_9x9.png", noise_rgb(rng, 9, 9, 1))
    # palette image: 8-colour random palette, random indices
    put_p("img_p_25x18.png", rng.integers(0, 8, size=(25, 18), dtype=np.uint8),
          rng.integers(0, 256, size=24).tolist())
    put("img_rgb_40x31.png", noise_rgb(rng, 40, 31))
    put("img_rgb_31x40.png", smooth_rgb(rng, 31, 40, noise=6))
    put("img_rgb_210x460.png", smooth_rgb(rng, 210, 460))  # > 448 wide, < 448 high (mixed)

    # --- masks ---
    put("mask_rgb_20x33.png", colour_mask(rng, 20, 33, [(255, 0, 0), (0, 255, 0), (40, 90, 200)]))
    put("mask_idx_l_25x18_n3.png", blob_labels(rng, 25, 18, 3))
    put("mask_idx_l_31x40_n4.png", blob_labels(rng, 31, 40, 4))
    # VOC-style palette mask (mode P): the class index is the palette index
    put_p("mask_idx_p_13x22_n2.png", blob_labels(rng, 13, 22, 2), [0, 0, 0, 128, 0, 0, 0, 128, 0])

    cases = [
        dict(name="rgbmask", image="img_rgb_7x13.png", prompt_image="img_rgba_20x33.png",
             prompt_mask="mask_rgb_20x33.png", mask_kind="rgb", size=[16, 16], do_convert_rgb=False,
             num_labels=None),
        dict(name="palette_l", image="img_l_9x9.png", prompt_image="img_p_25x18.png",
             prompt_mask="mask_idx_l_25x18_n3.png", mask_kind="index", size=[16, 16], do_convert_rgb=True,
             num_labels=3),
        dict(name="repeat_l", image="img_rgb_40x31.png", prompt_image="img_rgb_31x40.png",
             prompt_mask="mask_idx_l_31x40_n4.png", mask_kind="index", size=[16, 16], do_convert_rgb=True,
             num_labels=None),
        dict(name="palette_p_nonsquare", image="img_rgba_20x33.png", prompt_image="img_rgb_40x31.png",
             prompt_mask="mask_idx_p_13x22_n2.png", mask_kind="index", size=[10, 14], do_convert_rgb=True,
             num_labels=2),
        dict(name="default448", image="img_rgb_210x460.png", prompt_image=None, prompt_mask=None,
             mask_kind=None, size=[448, 448], do_convert_rgb=True, num_labels=None),
    ]

    proc = _Processor()
    expected = {}
    for c in cases:
        kw = dict(images=open_rgb(out / c["image"]), return_tensors="pt", do_convert_rgb=c["do_convert_rgb"])
        if c["size"] != [448, 448]:
            kw["size"] = {"height": c["size"][0], "width": c["size"][1]}
        if c["prompt_image"]:
            kw["prompt_images"] = open_rgb(out / c["prompt_image"])
        if c["prompt_mask"]:
            kw["prompt_masks"] = open_mask(out / c["prompt_mask"], c["mask_kind"])
        if c["num_labels"] is not None:
            kw["num_labels"] = c["num_labels"]
        res = proc(**kw)
        h, w = c["size"]
        names = []
        for key in ("pixel_values", "prompt_pixel_values", "prompt_masks"):
            if key not in res:
                continue
            t = res[key]
            assert t.dtype == torch.float32 and tuple(t.shape) == (1, 3, h, w), (key, t.shape, t.dtype)
            # the processor output must be exactly normalize(u8) of some uint8 image
            u8 = np.clip(np.round((t[0].numpy().astype(np.float64) * np.array(IMAGENET_STD)[:, None, None]
                                   + np.array(IMAGENET_MEAN)[:, None, None]) * 255), 0, 255).astype(np.uint8)
            assert np.array_equal(normalize_u8(u8), t[0].numpy()), f"{c['name']}.{key} not exactly normalize(u8)"
            if c["size"] == [448, 448]:
                # 448x448 f32 tensors are too big to commit: store the uint8 resized image as an RGB PNG
                # instead; the processor output is bit-exactly normalize_u8(that image) (asserted above).
                fname = f"expected_{c['name']}.{key}.png"
                Image.fromarray(np.ascontiguousarray(u8.transpose(1, 2, 0)), "RGB").save(out / fname)
                assert np.array_equal(np.array(Image.open(out / fname)).transpose(2, 0, 1), u8)
                names.append(fname)
            else:
                expected[f"{c['name']}.{key}"] = t.contiguous()
                names.append(f"{c['name']}.{key}")
        if c["mask_kind"] == "index" and c["num_labels"] is not None:
            assert proc.get_palette(c["num_labels"]) == build_palette(c["num_labels"])
        c["tensors"] = names
    save_st(expected, out / "expected.safetensors")

    palettes = {str(n): build_palette(n) for n in (1, 2, 3, 4, 7, 8, 9, 26, 27, 28, 63, 64, 65, 124, 125, 126, 215, 216, 255)}
    for n, p in palettes.items():
        assert proc.get_palette(int(n)) == [tuple(x) for x in p]
    doc = {
        "processor": PROCESSOR_CLASS,
        "transformers": transformers.__version__,
        "notes": [
            "Images and prompt images are opened with PIL Image.open(f).convert('RGB') before the processor "
            "(the PIL processor does not convert images itself and rejects L/RGBA/P); RGBA -> RGB drops alpha "
            "(no compositing), P -> palette lookup, L -> replicated.",
            "mask_kind 'rgb': Image.open(f).convert('RGB'), passed with do_convert_rgb=False.",
            "mask_kind 'index': np.array(Image.open(f)) (L value or raw P palette index), passed as a 2-D "
            "class-index map with do_convert_rgb=True; num_labels -> HF palette, null -> value repeated x3.",
            "size is [height, width]; size [448,448] means the processor default (no size kwarg).",
            "'tensors' lists expected.safetensors keys '<case>.<key>' of shape (1,3,h,w) float32, or for the "
            "448x448 case a PNG file 'expected_<case>.<key>.png' (RGB uint8): the resized image before "
            "rescale/normalize; the processor output equals, bit for bit, "
            "(f32(f64(u) * (1/255)) - f32(mean)) / f32(std) computed in float32 on that image.",
            "Resampling: images BICUBIC, masks NEAREST (forced by the processor), both through Pillow.",
        ],
        "files": files,
        "cases": cases,
        "palettes_file": "palettes.json",
    }
    write_json(doc, out / "cases.json")
    with open(out / "palettes.json", "w") as f:  # {num_labels: [[r,g,b], ...]} (index 0 = background)
        f.write("{\n" + ",\n".join(f'"{n}": {json.dumps(p, separators=(",", ":"))}' for n, p in palettes.items())
                + "\n}\n")
    log(f"[preprocess] {len(cases)} cases -> {out}")


# --------------------------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------------------------


def cmd_resize(out: Path, seed: int):
    out.mkdir(parents=True, exist_ok=True)
    rng = np_rng(seed)
    # (mode, in_h, in_w, [(out_h, out_w), ...], methods)
    plan = [
        ("RGB", 1, 1, [(1, 1), (4, 3), (16, 16)], ("bicubic", "nearest")),
        ("RGB", 3, 5, [(16, 16), (7, 2), (3, 5)], ("bicubic", "nearest")),
        ("RGB", 17, 9, [(16, 16), (5, 4), (40, 3), (17, 18)], ("bicubic", "nearest")),
        ("RGB", 40, 31, [(16, 16), (448, 16), (13, 97), (39, 30)], ("bicubic", "nearest")),
        ("RGB", 168, 300, [(16, 16), (56, 100), (200, 37)], ("bicubic", "nearest")),
        ("RGB", 7, 450, [(16, 16), (9, 448), (3, 1)], ("bicubic", "nearest")),
        ("L", 17, 9, [(448, 30), (30, 448), (6, 5)], ("bicubic", "nearest")),
        ("L", 13, 22, [(16, 16), (31, 5), (448, 20)], ("nearest",)),
        ("L", 300, 9, [(16, 16), (448, 7), (299, 10)], ("nearest",)),
    ]
    tensors = {}
    cases = []
    for i, (mode, h, w, targets, methods) in enumerate(plan):
        arr = noise_rgb(rng, h, w, 3 if mode == "RGB" else 1)
        im = Image.fromarray(arr)
        assert im.mode == mode
        name = f"case{i}"
        tensors[f"{name}.input"] = torch.from_numpy(arr.reshape(h, w, -1).copy())
        outs = []
        for j, (oh, ow) in enumerate(targets):
            for m in methods:
                res = np.array(im.resize((ow, oh), Image.BICUBIC if m == "bicubic" else Image.NEAREST))
                key = f"{name}.{m}{j}"
                tensors[key] = torch.from_numpy(res.reshape(oh, ow, -1).copy())
                outs.append({"tensor": key, "method": m, "out_hw": [oh, ow]})
        cases.append({"name": name, "mode": mode, "input": f"{name}.input", "in_hw": [h, w], "outputs": outs})

    # torch legacy nearest: F.interpolate(x[None], size=..., mode="nearest") on float (3,h,w)
    legacy_plan = [
        ((8, 4), (5, 7)),
        ((16, 16), (37, 22)),
        ((16, 16), (16, 32)),  # exact 2x (fast path)
        ((5, 5), (5, 5)),  # identity
        ((448, 2), (1013, 3)),
        ((2, 448), (3, 1000)),
        ((448, 3), (170, 2)),
        ((3, 448), (1, 297)),
        ((448, 1), (625, 1)),
        ((7, 3), (448, 5)),
    ]
    g = gen(seed + 7)
    legacy = []
    for i, ((h, w), (oh, ow)) in enumerate(legacy_plan):
        x = torch.randn(3, h, w, generator=g)
        y = F.interpolate(x[None], size=(oh, ow), mode="nearest")[0]
        tensors[f"legacy{i}.input"] = x
        tensors[f"legacy{i}.output"] = y.contiguous()
        legacy.append({"input": f"legacy{i}.input", "output": f"legacy{i}.output", "in_hw": [h, w], "out_hw": [oh, ow]})

    # source-index tables of torch legacy nearest for a few (in, out) pairs, via an index ramp
    # (448->46/192/287/368 and 16->82: torch's f32 scale gives a different index than exact rational floor)
    idx_pairs = [(448, 1000), (448, 170), (448, 297), (448, 625), (448, 1999), (448, 3), (448, 896),
                 (448, 449), (448, 447), (7, 448), (1, 5), (300, 448), (448, 46), (448, 192), (448, 287),
                 (448, 368), (16, 82)]
    index_tables = []
    for j, (n_in, n_out) in enumerate(idx_pairs):
        ramp = torch.arange(n_in, dtype=torch.float32)[None, None, :, None]
        src = F.interpolate(ramp, size=(n_out, 1), mode="nearest")[0, 0, :, 0].to(torch.int32)
        tensors[f"legacy_index{j}"] = src
        index_tables.append({"tensor": f"legacy_index{j}", "in": n_in, "out": n_out})

    save_st(tensors, out / "resize.safetensors")
    write_json({
        "pillow": Image.__version__ if hasattr(Image, "__version__") else None,
        "torch": torch.__version__,
        "notes": [
            "uint8 tensors are (H,W,C) (C=1 for mode L); img.resize((out_w,out_h), Image.BICUBIC|Image.NEAREST).",
            "output tensor key '<case>.<method><j>' where j indexes the case's target list.",
            "legacy*: float32 (3,h,w) -> F.interpolate(x[None], size=(oh,ow), mode='nearest')[0].",
            "legacy_index*: int32 (out,) source index along one axis used by torch legacy nearest for in->out; "
            "torch computes src = min(floor(f32(dst) * f32(in/out)), in-1) in float32, which differs from the "
            "exact rational floor(dst*in/out) for some pairs (e.g. 448->192, 16->82).",
        ],
        "cases": cases,
        "legacy": legacy,
        "legacy_index": index_tables,
    }, out / "resize.json")
    log(f"[resize] {len(cases)} pillow cases, {len(legacy)} legacy cases -> {out}")


# --------------------------------------------------------------------------------------------
# segment (end to end)
# --------------------------------------------------------------------------------------------


class _Out:  # minimal stand-in for SegGptImageSegmentationOutput
    def __init__(self, pred_masks):
        self.pred_masks = pred_masks


def decode_mask_float(pred: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """pred (K,3,H,W): sample 0 bottom half -> clip((v*std+mean)*255, 0, 255) in f32 -> legacy nearest."""
    v = pred[0, :, pred.shape[2] // 2:, :]
    std = torch.tensor(IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN)
    v = (v.permute(1, 2, 0) * std + mean).permute(2, 0, 1)
    v = torch.clip(v * 255, 0, 255)
    return F.interpolate(v[None], size=(h, w), mode="nearest")[0]


def decode_mask(pred: torch.Tensor, h: int, w: int) -> np.ndarray:
    """RGB uint8 (h,w,3): decode_mask_float then .to(uint8) (truncation)."""
    return decode_mask_float(pred, h, w).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def trunc_margin(v: torch.Tensor) -> float:
    """Smallest distance of a non-saturated value to an integer (how close truncation is to flipping)."""
    v = v.double().flatten()
    v = v[(v > 0) & (v < 255)]
    if v.numel() == 0:
        return 1.0
    f = v - torch.floor(v)
    return float(torch.minimum(f, 1 - f).min())


def argmin_margin(v: torch.Tensor, num_labels: int) -> float:
    """Smallest gap between the best and second-best palette squared distance."""
    pal = torch.tensor(build_palette(num_labels), dtype=torch.float64)
    d = ((v.double().permute(1, 2, 0)[:, :, None, :] - pal) ** 2).sum(-1)
    d, _ = torch.sort(d, dim=-1)
    return float((d[..., 1] - d[..., 0]).min())


@torch.no_grad()
def cmd_segment(out: Path, seed: int):
    out.mkdir(parents=True, exist_ok=True)
    rng = np_rng(seed)
    model_dir = out / "model"
    overrides = dict(TINY_CONFIG)
    cmd_model(model_dir, seed, overrides, k=1, full=False, pth=False, f16=False, predictions=False)
    model = SegGptForImageSegmentation.from_pretrained(str(model_dir)).float().eval()
    cfg = model.config
    ph, pw = cfg.image_size[0] // 2, cfg.image_size[1]

    n_labels = 3
    pal = build_palette(n_labels)
    prompts = [("prompt0.png", "prompt0_mask.png", 23, 17, [pal[1], pal[2]]),
               ("prompt1.png", "prompt1_mask.png", 30, 41, [pal[1], pal[2], pal[3]])]
    for img_name, mask_name, h, w, cols in prompts:
        Image.fromarray(smooth_rgb(rng, h, w, noise=10)).save(out / img_name)
        Image.fromarray(colour_mask(rng, h, w, cols)).save(out / mask_name)
    # 82 rows from 16: torch legacy nearest (f32 scale) differs from exact floor(dst*16/82) at one row
    targets = [("target_a.png", 82, 23), ("target_b.png", 19, 45)]
    for name, h, w in targets:
        Image.fromarray(smooth_rgb(rng, h, w, noise=10)).save(out / name)

    proc = _Processor()
    specs = [
        dict(name="one_prompt_none", prompts=[0], mode="none", embedding_type="instance"),
        dict(name="two_prompts_official", prompts=[0, 1], mode="official", embedding_type="semantic"),
    ]
    cases = []
    for spec in specs:
        cdir = out / spec["name"]
        cdir.mkdir(exist_ok=True)
        k = len(spec["prompts"])
        per_target = []
        for tname, th, tw in targets:
            tgt = open_rgb(out / tname)
            inp = proc(images=[tgt] * k,
                       prompt_images=[open_rgb(out / prompts[p][0]) for p in spec["prompts"]],
                       prompt_masks=[Image.open(out / prompts[p][1]).convert("RGB") for p in spec["prompts"]],
                       do_convert_rgb=False, size={"height": ph, "width": pw}, return_tensors="pt")
            inputs = {k_: inp[k_] for k_ in ("pixel_values", "prompt_pixel_values", "prompt_masks")}
            if spec["mode"] == "official":
                pred = seggpt_forward(model, **inputs, schedule="official", embedding_type=spec["embedding_type"])
            else:
                pred = model(**inputs, feature_ensemble=(spec["mode"] == "hf"),
                             embedding_type=spec["embedding_type"]).pred_masks
                mine = seggpt_forward(model, **inputs, schedule=spec["mode"], embedding_type=spec["embedding_type"])
                assert (mine - pred).abs().max().item() <= 1e-6 * max(1.0, pred.abs().max().item())
            stem = Path(tname).stem
            mask = decode_mask(pred, th, tw)
            Image.fromarray(mask, "RGB").save(cdir / f"{stem}.mask.png")
            classes = proc.post_process_semantic_segmentation(_Out(pred[:1]), target_sizes=[(th, tw)],
                                                              num_labels=n_labels)[0]
            assert classes.shape == (th, tw) and int(classes.max()) <= n_labels
            Image.fromarray(classes.numpy().astype(np.uint8), "L").save(cdir / f"{stem}.classes.png")
            meanint = proc.post_process_semantic_segmentation(_Out(pred[:1]), target_sizes=[(th, tw)])[0]
            assert int(meanint.min()) >= 0 and int(meanint.max()) <= 255
            Image.fromarray(meanint.numpy().astype(np.uint8), "L").save(cdir / f"{stem}.mean.png")
            vf = decode_mask_float(pred, th, tw)
            margins = {"mask_trunc": trunc_margin(vf), "mean_trunc": trunc_margin(vf.mean(dim=0)),
                       "classes_argmin": argmin_margin(vf, n_labels)}
            tens = dict(inputs)
            tens["pred_masks"] = pred.contiguous()
            save_st(tens, cdir / f"{stem}.tensors.safetensors")
            per_target.append({
                "target": tname, "size_hw": [th, tw],
                "mask": f"{spec['name']}/{stem}.mask.png",
                "classes": f"{spec['name']}/{stem}.classes.png",
                "mean": f"{spec['name']}/{stem}.mean.png",
                "tensors": f"{spec['name']}/{stem}.tensors.safetensors",
                "margins": margins,
            })
        cases.append({
            "name": spec["name"],
            "prompts": [{"image": prompts[p][0], "mask": prompts[p][1]} for p in spec["prompts"]],
            "num_prompts": k,
            "mode": spec["mode"],
            "embedding_type": spec["embedding_type"],
            "num_labels": n_labels,
            "targets": per_target,
        })
    write_json({
        "model_dir": "model",
        "processor": PROCESSOR_CLASS,
        "processor_size_hw": [ph, pw],
        "notes": [
            "Images/targets opened with Image.open(f).convert('RGB'); masks are RGB colour PNGs "
            "(Image.open(f).convert('RGB'), do_convert_rgb=False); processor size = (image_size[0]//2, image_size[1]).",
            "K prompts: images=[target]*K, prompt_images=[p_1..p_K], prompt_masks=[m_1..m_K].",
            "mask.png: RGB uint8 at the target size: pred_masks[0,:,H/2:,:] -> clip((v*std+mean)*255,0,255) "
            "(f32) -> F.interpolate(size=(h,w), mode='nearest') -> .to(uint8) (truncation).",
            "classes.png: L, post_process_semantic_segmentation(pred[:1], target_sizes=[(h,w)], num_labels)[0].",
            "mean.png: L, same without num_labels (mean of the 3 channels, .int() truncation).",
            "tensors.safetensors: processor outputs (K,3,h,w) f32 and pred_masks (K,3,H,W) f32 for that target.",
            "mode 'official' = Painter ensemble schedule (docs/MODEL.md §6); 'none' = HF feature_ensemble=False.",
            "margins: mask_trunc / mean_trunc = min distance of a non-saturated pre-truncation value (0..255 scale) "
            "to an integer; classes_argmin = min gap between best and 2nd-best squared palette distance. Small "
            "margins mean an f32-accurate re-implementation may legitimately differ by 1 (or a class) there.",
        ],
        "cases": cases,
    }, out / "cases.json")
    log(f"[segment] {len(cases)} cases -> {out}")


# --------------------------------------------------------------------------------------------
# sam: SamModel + SamProcessor (points / boxes -> masks)
# --------------------------------------------------------------------------------------------

# Tiny SamConfig.  The vision grid is 64/8 = 8x8 and window_size 3 does not divide it, so the
# windowed layers (0 and 2) pad the grid to 9x9; layers 1 and 3 are global.  num_pos_feats must be
# prompt hidden_size / 2 (the random-Fourier PE is cat(sin, cos)); the prompt encoder's
# image_size / patch_size gives the 8x8 image-embedding grid the decoder expects.
SAM_VISION = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_dim=64, output_channels=16,
                  patch_size=8, image_size=64, window_size=3, global_attn_indexes=[1, 3], use_rel_pos=True,
                  use_abs_pos=True, qkv_bias=True, num_pos_feats=8)
SAM_PROMPT = dict(hidden_size=16, image_size=64, patch_size=8)
SAM_DECODER = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_depth=3,
                   iou_head_hidden_dim=16, attention_downsample_rate=2, num_multimask_outputs=3)
SAM_INPUT = 64  # processor longest_edge and pad_size (the released checkpoints use 1024)
# stem, width, height: two images the resize enlarges, and two it shrinks (Pillow's antialiased
# path), one shrinking more in height than twice in width (Pillow's vertical-first pass order).
SAM_IMAGES = [("landscape", 50, 37), ("portrait", 30, 45), ("wide", 131, 83), ("tall", 40, 140)]
SAM_POS_FRACTION = (0.05, 0.95)  # every final mask must be neither (almost) empty nor (almost) full
SAM_MAX_TRIES = 40

# What `SamProcessor.from_pretrained("facebook/sam-vit-base")` reads (its preprocessor_config.json), with
# the sizes scaled to 64.  Loading it through from_pretrained (rather than instantiating a class) makes
# transformers pick the image-processor backend exactly as it would for the hub checkpoint.
SAM_PREPROCESSOR_CONFIG = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": list(IMAGENET_MEAN),
    "image_processor_type": "SamImageProcessor",
    "image_std": list(IMAGENET_STD),
    "pad_size": {"height": SAM_INPUT, "width": SAM_INPUT},
    "processor_class": "SamProcessor",
    "resample": 2,
    "rescale_factor": 1 / 255,
    "size": {"longest_edge": SAM_INPUT},
}


def make_sam_config() -> "transformers.SamConfig":
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    return SamConfig(vision_config=SamVisionConfig(**SAM_VISION),
                     prompt_encoder_config=SamPromptEncoderConfig(**SAM_PROMPT),
                     mask_decoder_config=SamMaskDecoderConfig(**SAM_DECODER))


def randomize_sam_(model: torch.nn.Module, seed: int):
    """Every parameter random and f16-exact, chosen by the owning module's type so none is left 0/1."""
    from transformers.models.sam import modeling_sam as ms

    g = gen(seed)
    owners = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = mod
    with torch.no_grad():
        # named_parameters lists a tied parameter once (shared_image_embedding.positional_embedding)
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            mod, leaf, shape = owners[name], name.rsplit(".", 1)[-1], p.shape
            if isinstance(mod, torch.nn.LayerNorm):  # includes SamLayerNorm (LayerNorm2d)
                v = (1.0 + 0.2 * torch.randn(shape, generator=g)) if leaf == "weight" else 0.2 * torch.randn(
                    shape, generator=g)
            elif isinstance(mod, torch.nn.ConvTranspose2d) and leaf == "weight":
                # (in, out, 2, 2) with stride 2: each output pixel sees `in` inputs.  Taps = a shared part +
                # a smaller per-tap part: independent taps would stamp a 4-px periodic texture over every mask
                # (two stride-2 upsamplings) and hide the image / prompt dependence
                shared = torch.randn(shape[0], shape[1], 1, 1, generator=g)
                v = (shared + 0.3 * torch.randn(shape, generator=g)) / math.sqrt(shape[0])
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and leaf == "weight":
                v = torch.randn(shape, generator=g) / math.sqrt(int(np.prod(shape[1:])))
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and leaf == "bias":
                v = 0.2 * torch.randn(shape, generator=g)
            elif isinstance(mod, torch.nn.Embedding):  # iou/mask tokens, point/not-a-point/no-mask embeds
                v = torch.randn(shape, generator=g)
            elif isinstance(mod, ms.SamPositionalEmbedding):  # Gaussian matrix of the random-Fourier PE
                v = torch.randn(shape, generator=g)  # std 1 as in the original SAM (HF's init uses hidden/2)
            elif isinstance(mod, ms.SamVisionEncoder) and leaf == "pos_embed":
                v = 0.5 * torch.randn(shape, generator=g)
            elif isinstance(mod, ms.SamVisionAttention) and leaf in ("rel_pos_h", "rel_pos_w"):
                v = 0.5 * torch.randn(shape, generator=g)
            else:
                raise RuntimeError(f"unhandled parameter {name} {tuple(shape)} ({type(mod).__name__})")
            p.copy_(v.half().float())
    for name, p in model.named_parameters():
        assert torch.equal(p.data, p.data.half().float()), name
        assert p.numel() == 1 or p.data.std() > 0, name
    pe = model.shared_image_embedding.positional_embedding
    assert model.prompt_encoder.shared_embedding.positional_embedding is pe  # tied: one tensor, one name saved


def build_sam(seed: int):
    from transformers import SamModel

    torch.manual_seed(seed)  # HF's own init (overwritten below anyway)
    model = SamModel(make_sam_config()).float().eval()
    randomize_sam_(model, seed)
    return model


def save_sam_dir(model, out: Path):
    """save_pretrained + the preprocessor config; checks the safetensors holds exactly the untied names."""
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file():
            f.unlink()
    model.save_pretrained(str(out))
    write_json(SAM_PREPROCESSOR_CONFIG, out / "preprocessor_config.json")
    files = sorted(os.listdir(out))
    assert files == ["config.json", "model.safetensors", "preprocessor_config.json"], files
    saved = load_file(str(out / "model.safetensors"))
    params = dict(model.named_parameters())  # the tied alias prompt_encoder.shared_embedding.* is not listed
    assert set(saved) == set(params), set(saved) ^ set(params)
    assert set(model.state_dict()) - set(saved) == {"prompt_encoder.shared_embedding.positional_embedding"}
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, params[k].data), k


def sam_processor(model_dir: Path):
    from transformers import SamProcessor

    proc = SamProcessor.from_pretrained(str(model_dir))
    assert proc.image_processor.size["longest_edge"] == SAM_INPUT and proc.target_size == SAM_INPUT
    return proc


def blob_rgb(rng, h: int, w: int, n: int = 3) -> tuple[np.ndarray, list]:
    """A diagonal two-colour gradient with n soft-edged saturated ellipses; returns (image, blobs)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    t = ((xx / max(w - 1, 1)) + (yy / max(h - 1, 1)))[..., None] / 2
    img = c0 * (1 - t) + c1 * t
    palette = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (240, 220, 40)]
    blobs = []
    for i in range(n):
        rx, ry = rng.uniform(0.14, 0.24) * w, rng.uniform(0.14, 0.24) * h
        cx = rng.uniform(rx + 1, w - rx - 1)
        cy = rng.uniform(ry + 1, h - ry - 1)
        d = np.sqrt(((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2)
        a = np.clip((1.15 - d) / 0.3, 0, 1)[..., None]  # ~2 px soft edge
        img = img * (1 - a) + np.array(palette[i], np.float64) * a
        blobs.append((cx, cy, rx, ry))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), blobs


def q4(v: float) -> float:
    """Round to a multiple of 0.25 (exact in f32; keeps the coordinates fractional)."""
    return round(v * 4) / 4


def sam_prompts(blobs: list, w: int, h: int) -> list[dict]:
    """Four prompt kinds, in original-image pixel coordinates (x, y)."""
    (x0, y0, rx0, ry0), (x1, y1, rx1, ry1) = blobs[0], blobs[1]
    # x0 + 0.1 is not an f32: the processor casts box corners to float32 before scaling them.
    box0 = [q4(max(0.0, x0 - rx0 - 1)) + 0.1, q4(max(0.0, y0 - ry0 - 1)), q4(min(w - 1.0, x0 + rx0 + 1)),
            q4(min(h - 1.0, y0 + ry0 + 1))]
    box1 = [q4(max(0.0, x1 - rx1 - 1)), q4(max(0.0, y1 - ry1 - 1)), q4(min(w - 1.0, x1 + rx1 + 1)),
            q4(min(h - 1.0, y1 + ry1 + 1))]
    return [
        dict(name="point", points=[[q4(x0), q4(y0)]], labels=[1], box=None),
        dict(name="points3", points=[[q4(x0), q4(y0)], [q4(x0 + 0.4 * rx0), q4(y0 - 0.3 * ry0)], [q4(x1), q4(y1)]],
             labels=[1, 1, 0], box=None),
        dict(name="box", points=None, labels=None, box=box0),
        dict(name="box_point", points=[[q4(x1 + 0.2 * rx1), q4(y1)]], labels=[1], box=box1),
    ]


def sam_inputs(proc, image: Image.Image, spec: dict):
    """The processor call as users write it: one image, one point batch, points / labels / box nested lists."""
    kw = {}
    if spec["points"] is not None:
        kw["input_points"] = [spec["points"]]  # [image][point][xy] -> (1, 1, n, 2)
        kw["input_labels"] = [spec["labels"]]  # [image][point]     -> (1, 1, n)
    if spec["box"] is not None:
        kw["input_boxes"] = [[spec["box"]]]  # [image][box][xyxy]  -> (1, 1, 4)
    return proc(images=image, return_tensors="pt", **kw)


class _Capture:
    """Forward hooks that keep the intermediates worth debugging a port against."""

    def __init__(self, model):
        self.t = {}
        enc = model.vision_encoder
        self.handles = [enc.layers[0].register_forward_pre_hook(self._pre("vision_embeddings"))]
        self.handles += [layer.register_forward_hook(self._post(f"vision_layer{i}"))
                         for i, layer in enumerate(enc.layers)]
        self.handles.append(model.prompt_encoder.register_forward_hook(self._prompt))
        self.handles.append(model.mask_decoder.transformer.register_forward_hook(self._twoway))

    def _pre(self, key):
        def hook(mod, args):
            self.t[key] = args[0].detach().clone()
        return hook

    def _post(self, key):
        def hook(mod, args, out):
            self.t[key] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        return hook

    def _prompt(self, mod, args, out):
        self.t["sparse_embeddings"] = out[0].detach().clone()
        self.t["dense_embeddings"] = out[1].detach().clone()

    def _twoway(self, mod, args, out):
        self.t["decoder_queries"] = out[0].detach().clone()
        self.t["decoder_keys"] = out[1].detach().clone()

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def sam_expected(model, proc, out: Path, images: list, prompts: dict) -> tuple[dict, list]:
    """Runs every case from the PNGs on disk; returns (tensors, per-case records)."""
    tens = {"image_positional_embeddings": model.get_image_wide_positional_embeddings().contiguous()}
    records = []
    cap = _Capture(model)
    try:
        for stem, w, h in images:
            pil = open_rgb(out / f"{stem}.png")  # the reference starts from the decoded 8-bit PNG
            assert pil.size == (w, h)
            enc = proc(images=pil, return_tensors="pt")
            nh, nw = (int(v) for v in enc["reshaped_input_sizes"][0])
            tens[f"{stem}.pixel_values"] = enc["pixel_values"]
            # the processor's resize is Pillow BILINEAR on the uint8 image (checked, kept for a resize test)
            resized = np.asarray(pil.resize((nw, nh), Image.BILINEAR)).transpose(2, 0, 1)
            assert np.array_equal(normalize_u8(resized), enc["pixel_values"][0, :, :nh, :nw].numpy())
            assert not enc["pixel_values"][0, :, nh:, :].any() and not enc["pixel_values"][0, :, :, nw:].any()
            tens[f"{stem}.resized_u8"] = torch.from_numpy(np.ascontiguousarray(resized))[None]
            cap.t.clear()
            emb = model.get_image_embeddings(enc["pixel_values"])
            tens[f"{stem}.image_embeddings"] = emb
            for k in ["vision_embeddings"] + [f"vision_layer{i}" for i in range(len(model.vision_encoder.layers))]:
                tens[f"{stem}.{k}"] = cap.t[k]
            for spec in prompts[stem]:
                inp = sam_inputs(proc, pil, spec)
                assert torch.equal(inp["pixel_values"], enc["pixel_values"])
                pre = f"{stem}.{spec['name']}"
                if "input_points" in inp:
                    assert inp["input_points"].dtype == torch.float64  # what the model receives
                    tens[f"{pre}.input_points"] = inp["input_points"].float()
                    tens[f"{pre}.input_points_f64"] = inp["input_points"]
                    tens[f"{pre}.input_labels"] = inp["input_labels"]
                if "input_boxes" in inp:
                    assert inp["input_boxes"].dtype == torch.float64
                    tens[f"{pre}.input_boxes"] = inp["input_boxes"].float()
                    tens[f"{pre}.input_boxes_f64"] = inp["input_boxes"]
                for multi in (True, False):
                    cap.t.clear()
                    res = model(**inp, multimask_output=multi)
                    # the same decoder run from the stored image embeddings (the two-stage path)
                    kw = {k: v for k, v in inp.items() if k in ("input_points", "input_labels", "input_boxes")}
                    res2 = model(image_embeddings=emb, multimask_output=multi, **kw)
                    assert torch.equal(res.pred_masks, res2.pred_masks) and torch.equal(res.iou_scores,
                                                                                      res2.iou_scores)
                    if multi:  # prompt / two-way intermediates do not depend on multimask_output
                        for k in ("sparse_embeddings", "dense_embeddings", "decoder_queries", "decoder_keys"):
                            tens[f"{pre}.{k}"] = cap.t[k]
                        assert torch.equal(cap.t[f"vision_layer{len(model.vision_encoder.layers) - 1}"],
                                           tens[f"{stem}.vision_layer{len(model.vision_encoder.layers) - 1}"])
                    cpre = f"{pre}.{'multi' if multi else 'single'}"
                    logits = proc.post_process_masks(res.pred_masks, inp["original_sizes"],
                                                     inp["reshaped_input_sizes"], binarize=False)[0]
                    binary = proc.post_process_masks(res.pred_masks, inp["original_sizes"],
                                                     inp["reshaped_input_sizes"])[0]
                    assert binary.dtype == torch.bool and torch.equal(binary, logits > 0.0)
                    # post_process_masks spelled out (what a port re-implements): bilinear to the pad size,
                    # crop to the resized image, bilinear to the original size (align_corners=False, no antialias)
                    spelled = F.interpolate(res.pred_masks[0], (SAM_INPUT, SAM_INPUT), mode="bilinear",
                                            align_corners=False)[..., :nh, :nw]
                    spelled = F.interpolate(spelled, (h, w), mode="bilinear", align_corners=False)
                    assert torch.equal(spelled, logits)
                    tens[f"{cpre}.pred_masks"] = res.pred_masks
                    tens[f"{cpre}.iou_scores"] = res.iou_scores
                    tens[f"{cpre}.masks"] = logits
                    tens[f"{cpre}.masks_bin"] = binary.to(torch.uint8)
                    frac = binary.float().mean(dim=(-1, -2)).flatten().tolist()
                    records.append({
                        "image": f"{stem}.png", "case": spec["name"], "multimask": multi, "prefix": cpre,
                        "prompt_prefix": pre, "points": spec["points"], "labels": spec["labels"], "box": spec["box"],
                        "original_size_hw": [h, w], "reshaped_input_size_hw": [nh, nw],
                        "positive_fraction": [round(f, 4) for f in frac],
                        "min_abs_mask_logit": float(logits.abs().min()),
                        # pixels whose sign an f32-accurate port may legitimately flip
                        "pixels_abs_logit_below_1e-4": int((logits.abs() < 1e-4).sum()),
                    })
    finally:
        cap.close()
    # f32 tensors, u8 masks / resized image, f64 coordinates and i64 labels as the model receives them
    assert {v.dtype for v in tens.values()} <= {torch.float32, torch.uint8, torch.float64, torch.int64}
    return tens, records


def sam_fractions_ok(records: list) -> bool:
    lo, hi = SAM_POS_FRACTION
    return all(lo <= f <= hi for r in records for f in r["positive_fraction"])


@torch.no_grad()
def cmd_sam(out: Path, seed: int) -> dict:
    from transformers import SamModel

    out.mkdir(parents=True, exist_ok=True)
    rng = np_rng(seed)
    prompts = {}
    for stem, w, h in SAM_IMAGES:
        img, blobs = blob_rgb(rng, h, w)
        Image.fromarray(img).save(out / f"{stem}.png")
        prompts[stem] = sam_prompts(blobs, w, h)
    model_dir = out / "model"
    # a random decoder can put (almost) all pixels on one side: try seeds until every mask is mixed
    for attempt in range(SAM_MAX_TRIES):
        model_seed = seed + 1000 * attempt
        save_sam_dir(build_sam(model_seed), model_dir)
        # the reference is the model as users load it: from_pretrained's weight tensors can take other BLAS
        # code paths than the freshly built ones (seen: 1-ulp differences in the hypernetwork MLPs)
        model = SamModel.from_pretrained(str(model_dir)).float().eval()
        proc = sam_processor(model_dir)
        tens, records = sam_expected(model, proc, out, SAM_IMAGES, prompts)
        log(f"[sam] model seed {model_seed}: positive fractions "
            f"{min(f for r in records for f in r['positive_fraction']):.3f}.."
            f"{max(f for r in records for f in r['positive_fraction']):.3f}")
        if sam_fractions_ok(records):
            break
    else:
        raise RuntimeError(f"no model seed in {SAM_MAX_TRIES} tries gives masks within {SAM_POS_FRACTION}")
    save_st(tens, out / "expected.safetensors")

    # verify: everything again from disk (model dir, processor config, PNGs) must give identical tensors
    re_model = SamModel.from_pretrained(str(model_dir)).float().eval()
    for (n1, p1), (n2, p2) in zip(sorted(model.state_dict().items()), sorted(re_model.state_dict().items())):
        assert n1 == n2 and torch.equal(p1, p2), n1
    re_tens, re_records = sam_expected(re_model, sam_processor(model_dir), out, SAM_IMAGES, prompts)
    saved = load_file(str(out / "expected.safetensors"))
    assert set(saved) == set(re_tens), set(saved) ^ set(re_tens)
    for k, v in saved.items():
        assert v.dtype == re_tens[k].dtype and torch.equal(v, re_tens[k]), k
    assert re_records == records
    for r in records:
        log(f"  {r['prefix']:<32} positive fraction {r['positive_fraction']}")

    proc = sam_processor(model_dir)
    ip = proc.image_processor
    info = {
        "generator": "scripts/make_fixtures.py sam",
        "seed": seed,
        "model_seed": model_seed,
        "model_dir": "model",
        "image_processor_class": type(ip).__name__,
        "torchvision_available": transformers.utils.is_torchvision_available(),
        "processor": {"size": {"longest_edge": SAM_INPUT}, "pad_size": {"height": SAM_INPUT, "width": SAM_INPUT},
                      "resample": "PIL.Image.BILINEAR", "rescale_factor": ip.rescale_factor,
                      "image_mean": list(ip.image_mean), "image_std": list(ip.image_std)},
        "config": {"vision": SAM_VISION, "prompt_encoder": SAM_PROMPT, "mask_decoder": SAM_DECODER},
        "images": [{"file": f"{s}.png", "size_wh": [w, h]} for s, w, h in SAM_IMAGES],
        "notes": [
            "Images: Image.open(png).convert('RGB'); prompts in original-image pixels (x, y); processor called as "
            "proc(images=img, input_points=[points], input_labels=[labels], input_boxes=[[box]], "
            "return_tensors='pt'); model(**inputs, multimask_output=m).",
            "expected.safetensors, per image <stem>.: pixel_values (1,3,64,64), resized_u8 (1,3,h',w') u8 (Pillow "
            "BILINEAR of the PNG), vision_embeddings (1,8,8,32) = patch conv + pos_embed, vision_layer{i} "
            "(1,8,8,32) after block i (vision_layer3 is the neck input), image_embeddings (1,16,8,8).",
            "per prompt <stem>.<case>.: input_points (1,1,n,2) / input_boxes (1,1,4) as f32 and as the f64 the "
            "model receives (_f64), input_labels (1,1,n) i64, sparse_embeddings (1,1,k,16), dense_embeddings "
            "(1,16,8,8), decoder_queries (1,1,5+k,16) and decoder_keys (1,1,64,16) = two-way transformer outputs.",
            "per output <stem>.<case>.<multi|single>.: pred_masks (1,1,m,32,32), iou_scores (1,1,m), masks "
            "(1,m,H,W) post_process_masks(binarize=False) logits at the original size, masks_bin (1,m,H,W) u8 "
            "(logits > 0); m = 3 (multimask) or 1.",
            "image_positional_embeddings (1,16,8,8): SamModel.get_image_wide_positional_embeddings().",
        ],
        "cases": records,
        "tensors": tensor_index(saved),
    }
    write_json(info, out / "cases.json")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"[sam] {len(records)} cases -> {out} ({total / 1e6:.2f} MB)")
    return sam_index_entry(out)


def sam_index_entry(out: Path) -> dict:
    """The index.json entry of a sam fixture directory (read back from its cases.json)."""
    with open(out / "cases.json") as f:
        info = json.load(f)
    return {k: info[k] for k in ("seed", "model_seed", "model_dir", "image_processor_class", "config")} | {
        "files": sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()),
        "tensors": {"expected.safetensors": info["tensors"]}}


# --------------------------------------------------------------------------------------------
# all
# --------------------------------------------------------------------------------------------

ALL_MODELS = [
    # name, seed, num_prompts, overrides, pth, f16, trace
    ("tiny-k1", 1, 1, dict(TINY_CONFIG), True, True, False),
    ("tiny-k3", 2, 3, dict(TINY_CONFIG), False, False, False),
    ("nonsquare-merge0", 3, 2, dict(TINY_CONFIG, image_size=[40, 16], pretrain_image_size=12, num_attention_heads=2,
                                    decoder_hidden_size=4, merge_index=0,
                                    intermediate_hidden_state_indices=[0, 2, 3]), False, False, False),
    ("merge1-k2", 4, 2, dict(TINY_CONFIG, pretrain_image_size=24, merge_index=1,
                             intermediate_hidden_state_indices=[1, 3]), False, False, True),
]


def cmd_shards(out: Path, models: Path):
    """transformers' own sharded layout (`save_pretrained(max_shard_size=...)`) of the tiny-k1 model:
    the index, the shards and the config, which the Rust readers must load unchanged.  Deterministic:
    the weights are the committed fixture's."""
    from transformers import SegGptForImageSegmentation

    model = SegGptForImageSegmentation.from_pretrained(models / "tiny-k1")
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*"):
        f.unlink()
    # 60 KB against 192 KB of weights: 4 shards, and no tensor of this model is larger than a shard.
    model.save_pretrained(out, max_shard_size="60KB", safe_serialization=True)
    for f in out.glob("generation_config.json"):
        f.unlink()
    log(f"[shards] {sorted(p.name for p in out.iterdir())}")


def cmd_all(root: Path, seed: int):
    check_weight_map()
    root.mkdir(parents=True, exist_ok=True)
    index = {"generator": "scripts/make_fixtures.py all", "seed": seed,
             "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "numpy": np.__version__, "pillow": Image.__version__},
             "models": {}}
    for name, s, k, ov, pth, f16, trace in ALL_MODELS:
        d = {}
        cmd_model(root / "models" / name, seed * 100 + s, ov, k, False, pth, f16, trace=trace, describe=d)
        index["models"][name] = d
    cmd_preprocess(root / "preprocess", seed * 100 + 11)
    cmd_resize(root / "resize", seed * 100 + 12)
    cmd_segment(root / "segment", seed * 100 + 13)
    ref_spatial.cmd_spatial(root / "spatial", seed * 100 + 14)
    ref_eval.cmd_eval(root / "eval", seed * 100 + 15)
    __import__("ref_video").cmd_video(root / "video", seed * 100 + 14)
    cmd_export(root / "export", seed * 100 + 14)
    cmd_tune(root / "tune", seed * 100 + 14, log=log)
    index["sam"] = cmd_sam(root / "sam", seed * 100 + 16)
    cmd_shards(root / "shards" / "tiny-k1-hf", root / "models")
    write_json(index, root / "index.json")
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    log(f"[all] total fixture size: {total / 1e6:.2f} MB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("model", help="random model + inputs + expected pred_masks")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--config", help="JSON string or file with SegGptConfig overrides")
    m.add_argument("--num-prompts", type=int, default=1)
    m.add_argument("--full", action="store_true", help="released ViT-L defaults (896x448) instead of the tiny config")
    m.add_argument("--pth", action="store_true", help="also write official.pth (official key names)")
    m.add_argument("--f16", action="store_true", help="also write model-f16.safetensors")
    m.add_argument("--trace", action="store_true", help="also write trace.safetensors (official/instance internals)")

    for name, hlp in (("preprocess", "processor fixtures"), ("resize", "Pillow / torch resize ground truth"),
                      ("segment", "end-to-end fixtures"), ("video", "video propagation fixtures"),
                      ("export", "COCO RLE / area / bbox (pycocotools)"),
                      ("tune", "prompt-tuning fixtures (needs models/)"),
                      ("spatial", "spatial-ensemble fixtures"), ("eval", "evaluation-metric fixtures"),
                      ("sam", "SamModel + SamProcessor fixtures (Segment Anything)"),
                      ("shards", "transformers' sharded layout of models/tiny-k1 (save_pretrained)")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--seed", type=int, default=0)

    a = sub.add_parser("all", help="regenerate tests/fixtures")
    a.add_argument("--out", type=Path, default=DEFAULT_FIXTURES)
    a.add_argument("--seed", type=int, default=0)

    args = ap.parse_args(argv)
    try:
        run(args)
    finally:
        if args.out.exists():  # safetensors writes 0600 files; make them normal repo files
            for f in args.out.rglob("*"):
                if f.is_file():
                    os.chmod(f, 0o644)


def run(args):
    if args.cmd == "model":
        cmd_model(args.out, args.seed, load_config_arg(args.config), args.num_prompts, args.full, args.pth, args.f16,
                  trace=args.trace)
    elif args.cmd == "preprocess":
        cmd_preprocess(args.out, args.seed)
    elif args.cmd == "resize":
        cmd_resize(args.out, args.seed)
    elif args.cmd == "segment":
        cmd_segment(args.out, args.seed)
    elif args.cmd == "spatial":
        ref_spatial.cmd_spatial(args.out, args.seed)
    elif args.cmd == "eval":
        ref_eval.cmd_eval(args.out, args.seed)
    elif args.cmd == "video":
        __import__("ref_video").cmd_video(args.out, args.seed)
    elif args.cmd == "export":
        cmd_export(args.out, args.seed)
    elif args.cmd == "tune":
        cmd_tune(args.out, args.seed, log=log)
    elif args.cmd == "sam":
        cmd_sam(args.out, args.seed)
    elif args.cmd == "shards":
        cmd_shards(args.out, DEFAULT_FIXTURES / "models")
    elif args.cmd == "all":
        cmd_all(args.out, args.seed)


if __name__ == "__main__":
    main()
