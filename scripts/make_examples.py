#!/usr/bin/env python3
"""Builds the page's example gallery (www/examples/) from sample images that scikit-image ships.

Each example is one prompt (an image and its mask) and one or two targets, cut from one openly
licensed picture that is inside the scikit-image wheel (nothing is downloaded). The masks are made
here, by thresholding and morphology, as RGB colours on black (the brush colours of the page).
Writes the pictures, a thumbnail per example (the prompt with its mask over it) and examples.json;
LICENSE.md beside them names each picture's source and licence.

    python3 -m venv .venv-ex
    .venv-ex/bin/pip install -r scripts/requirements-examples.txt
    .venv-ex/bin/python scripts/make_examples.py [--out www/examples]

Deterministic: the same package versions give the same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import color, data, filters, morphology, transform

RED = (255, 0, 0)
ORANGE = (255, 128, 0)
CYAN = (0, 255, 255)
GREEN = (0, 255, 0)

JPEG_QUALITY = 85
THUMB_SIZE = (160, 120)
THUMB_MASK_OPACITY = 0.55


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (what skimage.transform returns) back to 8 bits."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def paint(labels_by_colour: list[tuple[np.ndarray, tuple[int, int, int]]], shape: tuple[int, int]) -> np.ndarray:
    """An RGB mask: each boolean layer in its colour on black (later layers win where they overlap)."""
    mask = np.zeros((*shape, 3), np.uint8)
    for layer, rgb in labels_by_colour:
        mask[layer] = rgb
    return mask


def galaxies() -> dict:
    """Hubble eXtreme Deep Field: galaxies, reddish ones orange and bluish-white ones cyan (two classes)."""
    image = data.hubble_deep_field()  # (872, 1000, 3)
    grey = filters.gaussian(color.rgb2gray(image), sigma=1.0)
    objects = morphology.remove_small_objects(grey > 0.16, max_size=20)
    objects = ndi.binary_fill_holes(ndi.binary_closing(objects, morphology.disk(1)))
    labels, count = ndi.label(objects)
    rgb = image.astype(np.float64)
    index = np.arange(1, count + 1)
    red = ndi.mean(rgb[..., 0], labels, index)
    blue = ndi.mean(rgb[..., 2], labels, index)
    warm_ids = index[red > blue * 1.15]
    warm = np.isin(labels, warm_ids)
    cool = objects & ~warm
    mask = paint([(cool, CYAN), (warm, ORANGE)], objects.shape)
    tile = 436  # four tiles of 436x436 cover the 872-pixel height
    crop = lambda a, y, x: a[y : y + tile, x : x + tile]  # noqa: E731 (a one-line helper reads best here)
    return {
        "id": "galaxies",
        "title": "Galaxies by colour",
        "description": "Hubble Deep Field: reddish galaxies in orange, bluish ones in cyan. "
        "Two colours in the prompt mask make two classes.",
        "prompt": (crop(image, 0, 0), crop(mask, 0, 0)),
        "targets": [("field-2", crop(image, 0, 500)), ("field-3", crop(image, 436, 250))],
    }


def vessels() -> dict:
    """Fundus photograph: the retina's blood vessels (dark thin lines in the green channel)."""
    image = to_uint8(transform.resize(data.retina(), (896, 896), anti_aliasing=True))
    green = image[..., 1].astype(np.float64) / 255.0
    field_of_view = ndi.binary_erosion(color.rgb2gray(image) > 0.08, morphology.disk(8))
    # Vessels are darker than their surroundings and narrower than the disk: a black top-hat keeps them.
    tophat = morphology.black_tophat(filters.gaussian(green, sigma=1.0), morphology.disk(7))
    lines = (tophat > filters.threshold_otsu(tophat[field_of_view])) & field_of_view
    lines = morphology.remove_small_objects(lines, max_size=80)
    mask = paint([(lines, GREEN)], lines.shape)
    half = 448
    crop = lambda a, y, x: a[y : y + half, x : x + half]  # noqa: E731
    return {
        "id": "vessels",
        "title": "Blood vessels",
        "description": "A photograph of the back of an eye: the vessels marked in green on one quarter; "
        "SegGPT finds them in the other quarters.",
        "prompt": (crop(image, 0, 0), crop(mask, 0, 0)),
        "targets": [("retina-2", crop(image, 0, half)), ("retina-3", crop(image, half, half))],
    }


def handwriting() -> dict:
    """Handwritten formulas on lined paper: the ink strokes, not the printed lines."""
    image = data.text()  # (172, 448) grey
    smooth = filters.gaussian(image / 255.0, sigma=1.0)
    # A grey closing wider than a stroke gives the paper's local brightness (the shading varies a lot);
    # ink is much darker than that, the printed ruling only a little.
    paper = ndi.grey_closing(smooth, size=(15, 15))
    ink = morphology.remove_small_objects(paper - smooth > 0.14, max_size=25)
    mask = paint([(ink, RED)], ink.shape)
    rgb = np.repeat(image[..., None], 3, axis=2)
    left, right = slice(0, 224), slice(224, 448)
    return {
        "id": "handwriting",
        "title": "Handwriting",
        "description": "Formulas written on lined paper: the handwriting in red on the left half; "
        "SegGPT marks it on the right half.",
        "prompt": (rgb[:, left], mask[:, left]),
        "targets": [("paper-2", rgb[:, right])],
    }


def thumbnail(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The prompt with its mask over it, cropped to the gallery's 4:3 and scaled down."""
    lit = mask.any(axis=2, keepdims=True)
    blend = np.where(lit, (1 - THUMB_MASK_OPACITY) * image + THUMB_MASK_OPACITY * mask, image)
    picture = Image.fromarray(blend.astype(np.uint8))
    w, h = picture.size
    target_ratio = THUMB_SIZE[0] / THUMB_SIZE[1]
    if w / h > target_ratio:
        cut = int(h * target_ratio)
        picture = picture.crop(((w - cut) // 2, 0, (w - cut) // 2 + cut, h))
    else:
        cut = int(w / target_ratio)
        picture = picture.crop((0, (h - cut) // 2, w, (h - cut) // 2 + cut))
    return picture.resize(THUMB_SIZE, Image.Resampling.LANCZOS)


def save_jpeg(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, quality=JPEG_QUALITY, optimize=True)


def write_example(example: dict, out: Path) -> dict:
    folder = out / example["id"]
    folder.mkdir(parents=True, exist_ok=True)
    image, mask = example["prompt"]
    assert mask.shape[:2] == image.shape[:2], f"{example['id']}: mask and image sizes differ"
    stem = f"{example['id']}-1"
    save_jpeg(image, folder / f"{stem}.jpg")
    # PNG, never JPEG: the mask's colours must stay exact.
    Image.fromarray(mask).save(folder / f"{stem}.mask.png", optimize=True)
    thumbnail(image, mask).save(folder / "thumb.jpg", quality=JPEG_QUALITY, optimize=True)
    targets = []
    for name, target in example["targets"]:
        save_jpeg(target, folder / f"{name}.jpg")
        targets.append(f"{example['id']}/{name}.jpg")
    return {
        "id": example["id"],
        "title": example["title"],
        "description": example["description"],
        "thumbnail": f"{example['id']}/thumb.jpg",
        "prompts": [{"image": f"{example['id']}/{stem}.jpg", "mask": f"{example['id']}/{stem}.mask.png"}],
        "targets": targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("www/examples"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    entries = [write_example(make(), args.out) for make in (galaxies, vessels, handwriting)]
    (args.out / "examples.json").write_text(json.dumps(entries, indent=2) + "\n")
    for path in sorted(args.out.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>8}  {path}")


if __name__ == "__main__":
    main()
