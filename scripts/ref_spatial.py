"""Reference for the spatial ensemble (docs/MODEL.md §14), used by `make_fixtures.py spatial`.

The paper describes the spatial ensemble ("multiple examples concatenated in an n x n grid and then
sub-sampled to the same size as a single example") but neither the official code nor transformers
ships it. This is the rule this project defines, in PIL, fed to transformers' model as one prompt:

    n = ceil(sqrt(K)); each prompt image resized to one half-canvas (h x w) with BICUBIC and its mask
    with NEAREST; pasted row-major into an (n*h) x (n*w) grid (prompt i at row i // n, column i % n;
    empty cells black in image and mask); the grid image resized to h x w with BICUBIC, the grid mask
    with NEAREST; one K = 1 forward pass (no feature ensemble).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

KS = (2, 3, 4, 5)
# (height, width) of each prompt: smaller and larger than the half-canvas, square and not.
PROMPT_SIZES = ((23, 17), (30, 41), (12, 12), (40, 25), (9, 31))


def grid_side(k: int) -> int:
    n = math.isqrt(k)
    return n if n * n == k else n + 1


def spatial_prompt(images: list[Image.Image], masks: list[Image.Image], h: int, w: int):
    """The rule above: K (image, mask) pairs -> one (image, mask) pair of size h x w."""
    n = grid_side(len(images))
    grid_image = Image.new("RGB", (n * w, n * h))  # black
    grid_mask = Image.new("RGB", (n * w, n * h))
    for i, (image, mask) in enumerate(zip(images, masks)):
        row, col = divmod(i, n)
        grid_image.paste(image.resize((w, h), Image.BICUBIC), (col * w, row * h))
        grid_mask.paste(mask.resize((w, h), Image.NEAREST), (col * w, row * h))
    return grid_image.resize((w, h), Image.BICUBIC), grid_mask.resize((w, h), Image.NEAREST)


@torch.no_grad()
def cmd_spatial(out: Path, seed: int):
    import make_fixtures as mf  # the shared helpers (imported here: make_fixtures imports this module)

    out.mkdir(parents=True, exist_ok=True)
    rng = mf.np_rng(seed)
    model_dir = out / "model"
    mf.cmd_model(model_dir, seed, dict(mf.TINY_CONFIG), k=1, full=False, pth=False, f16=False, predictions=False)
    model = mf.SegGptForImageSegmentation.from_pretrained(str(model_dir)).float().eval()
    cfg = model.config
    h, w = cfg.image_size[0] // 2, cfg.image_size[1]

    palette = mf.build_palette(4)[1:]
    prompts = []
    for i, (ph, pw) in enumerate(PROMPT_SIZES):
        image_name, mask_name = f"prompt{i}.png", f"prompt{i}_mask.png"
        Image.fromarray(mf.smooth_rgb(rng, ph, pw, noise=10)).save(out / image_name)
        colours = [palette[i % len(palette)], palette[(i + 1) % len(palette)]]
        Image.fromarray(mf.colour_mask(rng, ph, pw, colours)).save(out / mask_name)
        prompts.append((image_name, mask_name))
    Image.fromarray(mf.smooth_rgb(rng, 27, 35, noise=10)).save(out / "target.png")
    target = mf.open_rgb(out / "target.png")

    processor = mf._Processor()
    cases = []
    for k in KS:
        case_dir = out / f"k{k}"
        case_dir.mkdir(exist_ok=True)
        images = [mf.open_rgb(out / p[0]) for p in prompts[:k]]
        masks = [Image.open(out / p[1]).convert("RGB") for p in prompts[:k]]
        grid_image, grid_mask = spatial_prompt(images, masks, h, w)
        grid_image.save(case_dir / "grid_image.png")
        grid_mask.save(case_dir / "grid_mask.png")
        inputs = processor(images=[target], prompt_images=[grid_image], prompt_masks=[grid_mask],
                           do_convert_rgb=False, size={"height": h, "width": w}, return_tensors="pt")
        # The processor resizes the h x w grid to h x w: a copy, so its tensors are the grid's pixels.
        for name, grid in (("prompt_pixel_values", grid_image), ("prompt_masks", grid_mask)):
            expected = mf.normalize_u8(np.asarray(grid).transpose(2, 0, 1))
            assert np.array_equal(inputs[name][0].numpy(), expected), name
        pred = model(pixel_values=inputs["pixel_values"], prompt_pixel_values=inputs["prompt_pixel_values"],
                     prompt_masks=inputs["prompt_masks"], feature_ensemble=False,
                     embedding_type="instance").pred_masks
        assert pred.shape == (1, 3, 2 * h, w)
        mf.save_st({"pred_masks": pred.contiguous()}, case_dir / "expected.safetensors")
        cases.append({
            "k": k,
            "grid_side": grid_side(k),
            "prompts": [{"image": p[0], "mask": p[1]} for p in prompts[:k]],
            "grid_image": f"k{k}/grid_image.png",
            "grid_mask": f"k{k}/grid_mask.png",
            "expected": f"k{k}/expected.safetensors",
        })
    mf.write_json({
        "model_dir": "model",
        "target": "target.png",
        "half_canvas_hw": [h, w],
        "notes": [
            "Spatial ensemble (docs/MODEL.md §14): n = ceil(sqrt(K)); each prompt image resized to the half-canvas "
            "with PIL BICUBIC, each mask (RGB) with NEAREST; pasted row-major into an n x n grid, empty cells "
            "black; grid image resized to the half-canvas with BICUBIC, grid mask with NEAREST.",
            "grid_image.png / grid_mask.png: the composed prompt (RGB, half-canvas size).",
            "expected.safetensors: pred_masks (1,3,H,W) of transformers' SegGptForImageSegmentation on "
            "images=[target], prompt_images=[grid_image], prompt_masks=[grid_mask] (processor, do_convert_rgb=False), "
            "feature_ensemble=False, embedding_type='instance'.",
        ],
        "cases": cases,
    }, out / "cases.json")
    mf.log(f"[spatial] {len(cases)} cases -> {out}")
