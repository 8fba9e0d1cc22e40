#!/usr/bin/env python3
"""Draws the installed app's icons (www/icons/icon-192.png, icon-512.png) with Pillow.

A round object on a dark square, half of it covered by a mask colour: what the app does, readable at
48 pixels. The shapes stay inside the central 60% so that a platform's "maskable" crop (a circle or a
rounded square) never cuts them. Drawn 4x larger and scaled down for smooth edges.

    .venv-ex/bin/python scripts/make_icons.py [--out www/icons]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

SIZES = (192, 512)
SUPERSAMPLE = 4
BACKGROUND = (15, 23, 42)  # the page's dark-theme background
OBJECT = (241, 245, 249)
MASK = (255, 128, 0)  # one of the brush colours


def draw_icon(size: int) -> Image.Image:
    big = size * SUPERSAMPLE
    icon = Image.new("RGB", (big, big), BACKGROUND)
    radius = big * 0.28
    centre = big / 2
    box = (centre - radius, centre - radius, centre + radius, centre + radius)
    ImageDraw.Draw(icon).ellipse(box, fill=OBJECT)
    # The mask: the same disc in the mask colour, kept below the diagonal (a segmentation half done).
    covered = Image.new("L", (big, big), 0)
    ImageDraw.Draw(covered).polygon([(0, big), (big, 0), (big, big)], fill=255)
    disc = Image.new("L", (big, big), 0)
    ImageDraw.Draw(disc).ellipse(box, fill=255)
    icon.paste(Image.new("RGB", (big, big), MASK), (0, 0), ImageChops.darker(disc, covered))
    return icon.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("www/icons"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        path = args.out / f"icon-{size}.png"
        draw_icon(size).save(path, optimize=True)
        print(f"{path.stat().st_size:>8}  {path}")


if __name__ == "__main__":
    main()
