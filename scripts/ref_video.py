"""Video reference for seggpt-web: the official `inference_video` propagation loop (docs/MODEL.md §13),
re-run with `transformers` modules on a small random model and a synthetic clip.

Used by `scripts/make_fixtures.py video` (and `all`); writes tests/fixtures/video/:

    model/                    the random model (HF directory)
    frames/fNN.png            the clip: a smooth background with a red square and a blue disc moving
    first_mask.png            RGB mask of frame 0 (red and green objects on black)
    first_mask_classes.png    the same objects as a palette PNG of class indices 1 and 2 (DAVIS format)
    <case>/fNN.mask.png       expected painted masks, <case>/fNN.overlay.png the official overlays,
                              <case>/fNN.png class indices (cases with labels)
    cases.json                the cases: CLI arguments, files, the margins near the decision points

The loop, per frame (official semantics, float64 where the official code uses numpy):
    image  = PIL BICUBIC resize to the half canvas, / 255
    batch  = [user prompts] + cached (frame, mask) pairs, oldest first; each pair is stacked
             prompt-over-query and ImageNet-normalised; the query's mask half is the prompt mask
             (the model replaces it by the mask token); official ensemble schedule, instance embedding
    out    = sample 0's query half, clip((y * std + mean) * 255, 0, 255)
    cache <- image and, binary: (mean over RGB > 128) in {0, 1} on 3 channels;
                        colour: each pixel snapped to the nearest prompt colour (black first, then the
                        prompt masks' other colours in ascending RGB order; squared distance
                        (dr^2 + dg^2) + db^2 in float32, ties to the earlier colour), / 255
    mask   = F.interpolate(out, frame size, mode="nearest") truncated to uint8
    overlay = frame * (0.6 * mask / 255 + 0.4) with the fractional mask, truncated to uint8

The random model's decoder head is scaled up so that its output is spread out (most channels clip at 0 or
255): a pixel whose channel mean lies within float32 rounding of 128 could flip the binary cache between
two exact implementations, and cases.json records how close the closest one came.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import make_fixtures as mf

# The head's output is multiplied by this so the prediction saturates: see the module doc.
HEAD_GAIN = 6.0
FRAME_HW = (29, 37)  # needs resizing to the tiny model's 16x16 half canvas
NUM_FRAMES = 6
OBJECT_COLOURS = [(255, 0, 0), (0, 255, 0)]  # first_mask.png's colours for the square and the disc


def synthetic_clip(rng) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with a red square moving right and a blue disc moving down; labels of frame 0."""
    h, w = FRAME_HW
    background = mf.smooth_rgb(rng, h, w, noise=6)
    yy, xx = np.mgrid[0:h, 0:w]
    frames, first_labels = [], None
    for t in range(NUM_FRAMES):
        frame = (background.astype(np.int32) // 2 + 40).astype(np.uint8)
        labels = np.zeros((h, w), np.uint8)
        sq = (yy >= 4) & (yy < 14) & (xx >= 3 + 3 * t) & (xx < 13 + 3 * t)
        disc = (yy - (8 + 3 * t)) ** 2 + (xx - 27) ** 2 <= 25
        frame[sq] = (230, 30, 30)
        frame[disc] = (30, 40, 220)
        labels[sq] = 1
        labels[disc] = 2
        frames.append(frame)
        if t == 0:
            first_labels = labels
    return frames, first_labels


def resize_image(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """The official frame / prompt image: PIL BICUBIC (its default) to (w, h), / 255 in float64."""
    return np.array(Image.fromarray(a).resize((w, h), Image.BICUBIC)) / 255.0


def resize_mask(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """The official prompt target: PIL NEAREST to (w, h), / 255 in float64."""
    return np.array(Image.fromarray(a).resize((w, h), Image.NEAREST)) / 255.0


def mask_colours(masks: list[np.ndarray]) -> np.ndarray:
    """Black, then every other colour of the masks in ascending (r, g, b) order."""
    colours = np.unique(np.concatenate([m.reshape(-1, 3) for m in masks]), axis=0)
    colours = [tuple(c) for c in colours if tuple(c) != (0, 0, 0)]
    return np.array([(0, 0, 0)] + colours, np.uint8)


def snap(out: torch.Tensor, colours: np.ndarray) -> np.ndarray:
    """(h, w, 3) denormalised prediction -> the nearest colour per pixel (float32 distances)."""
    v = out.numpy().astype(np.float32)
    pal = colours.astype(np.float32)
    d = v[:, :, None, :] - pal[None, None, :, :]
    dist = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]
    return colours[np.argmin(dist, axis=-1)]  # argmin: the first of equal minima


@torch.no_grad()
def official_video(model, frames, prompts, k: int, propagate: str, num_labels: int | None, proc):
    """The propagation loop; returns per frame (mask u8, overlay u8, classes u8 or None) and the margins."""
    cfg = model.config
    h, w = cfg.image_size[0] // 2, cfg.image_size[1]
    mean = np.array(mf.IMAGENET_MEAN)
    std = np.array(mf.IMAGENET_STD)
    user = [(resize_image(img, h, w), resize_mask(msk, h, w)) for img, msk in prompts]
    colours = mask_colours([msk for _, msk in prompts])
    cache: list[tuple[np.ndarray, np.ndarray]] = []
    results, closest_to_128 = [], float("inf")
    for frame in frames:
        image = resize_image(frame, h, w)
        pairs = user + cache
        imgs = np.stack([(np.concatenate([p, image], 0) - mean) / std for p, _ in pairs])
        tgts = np.stack([(np.concatenate([t, t], 0) - mean) / std for _, t in pairs])
        x = torch.tensor(imgs).permute(0, 3, 1, 2).float()
        y = torch.tensor(tgts).permute(0, 3, 1, 2).float()
        pred = mf.seggpt_forward(model, x[:, :, h:], x[:, :, :h], y[:, :, :h], "official", "instance")
        out = pred[0, :, h:, :].permute(1, 2, 0).double()
        out = torch.clip((out * torch.tensor(std) + torch.tensor(mean)) * 255, 0, 255)
        channel_mean = out.mean(-1)
        closest_to_128 = min(closest_to_128, float((channel_mean - 128).abs().min()))
        if k > 0:
            if propagate == "binary":
                kept = (channel_mean > 128).double().unsqueeze(-1).expand(-1, -1, 3).numpy()
            else:
                kept = snap(out, colours) / 255.0
            cache.append((image, kept))
            if len(cache) > k:
                cache.pop(0)
        fh, fw = frame.shape[:2]
        full = F.interpolate(out.permute(2, 0, 1)[None], size=(fh, fw), mode="nearest")[0].permute(1, 2, 0).numpy()
        mask = full.astype(np.uint8)
        overlay = (frame * (0.6 * full / 255 + 0.4)).astype(np.uint8)
        classes = None
        if num_labels is not None:
            classes = proc.post_process_semantic_segmentation(mf._Out(pred[:1]), target_sizes=[(fh, fw)],
                                                              num_labels=num_labels)[0].numpy().astype(np.uint8)
        results.append((mask, overlay, classes))
    return results, closest_to_128


def save_palette_png(labels: np.ndarray, path: Path):
    im = Image.fromarray(labels, "P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (768 - 9))
    im.save(path)


@torch.no_grad()
def cmd_video(out: Path, seed: int):
    out.mkdir(parents=True, exist_ok=True)
    rng = mf.np_rng(seed)
    cfg = mf.make_config({}, full=False)
    model = mf.build_model(cfg, seed)
    with torch.no_grad():
        model.decoder.decoder_pred.head.weight.mul_(HEAD_GAIN)
        model.decoder.decoder_pred.head.bias.mul_(HEAD_GAIN)
    mf.save_model_dir(model, out / "model", pth=False, f16=False)
    model = mf.SegGptForImageSegmentation.from_pretrained(str(out / "model")).float().eval()
    proc = mf._Processor()

    frames, labels = synthetic_clip(rng)
    (out / "frames").mkdir(exist_ok=True)
    names = [f"f{t:02d}" for t in range(len(frames))]
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(out / "frames" / f"{name}.png")
    rgb_mask = np.array([(0, 0, 0)] + OBJECT_COLOURS, np.uint8)[labels]
    Image.fromarray(rgb_mask).save(out / "first_mask.png")
    save_palette_png(labels, out / "first_mask_classes.png")
    num_labels = int(labels.max())
    class_mask = np.array(mf.build_palette(num_labels), np.uint8)[labels]  # how the CLI colours it

    specs = [
        dict(name="k0_binary", first_mask="first_mask.png", k=0, propagate="binary"),
        dict(name="k2_binary", first_mask="first_mask.png", k=2, propagate="binary"),
        dict(name="k2_colour_classes", first_mask="first_mask_classes.png", k=2, propagate="colour"),
        dict(name="prompt_k2_binary", prompt=["frames/f00.png", "first_mask.png"], k=2, propagate="binary"),
    ]
    cases = []
    for spec in specs:
        cdir = out / spec["name"]
        cdir.mkdir(exist_ok=True)
        with_classes = spec.get("first_mask") == "first_mask_classes.png"
        if "first_mask" in spec:
            prompt_mask = class_mask if with_classes else rgb_mask
            segmented = list(range(1, len(frames)))
            args = ["--first-mask", spec["first_mask"]]
        else:
            prompt_mask = rgb_mask
            segmented = list(range(len(frames)))
            args = ["--prompt", *spec["prompt"]]
        args += ["--num-frames", str(spec["k"]), "--propagate", spec["propagate"], "--overlay"]
        results, closest = official_video(model, [frames[t] for t in segmented], [(frames[0], prompt_mask)],
                                          spec["k"], spec["propagate"], num_labels if with_classes else None, proc)
        files = []
        for t, (mask, overlay, classes) in zip(segmented, results):
            entry = {"frame": names[t], "mask": f"{spec['name']}/{names[t]}.mask.png",
                     "overlay": f"{spec['name']}/{names[t]}.overlay.png"}
            Image.fromarray(mask, "RGB").save(out / entry["mask"])
            Image.fromarray(overlay, "RGB").save(out / entry["overlay"])
            if classes is not None:
                entry["classes"] = f"{spec['name']}/{names[t]}.png"
                save_palette_png(classes, out / entry["classes"])
            files.append(entry)
        mf.log(f"[video] {spec['name']}: {len(files)} frames, closest channel mean to 128: {closest:.4g}")
        cases.append({"name": spec["name"], "args": args, "first_frame_given": "first_mask" in spec,
                      "num_labels": num_labels if with_classes else None, "frames": files,
                      "closest_channel_mean_to_128": closest})
    mf.write_json({
        "model_dir": "model",
        "frames_dir": "frames",
        "head_gain": HEAD_GAIN,
        "notes": [
            "Generated by scripts/make_fixtures.py video (scripts/ref_video.py): the official inference_video loop "
            "with the official ensemble schedule and the instance embedding; see the module doc there.",
            "args: the seggpt video arguments of the case, paths relative to this folder (with --frames frames, "
            "--model model, --out-dir of the test's choosing).",
            "closest_channel_mean_to_128: over every segmented frame, the smallest |mean over RGB - 128| of the "
            "half-canvas prediction (float64); far above float32 rounding, so no cached binary mask can flip.",
        ],
        "cases": cases,
    }, out / "cases.json")
