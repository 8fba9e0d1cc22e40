"""Reference for the dataset exports (docs/MODEL.md §18): synthetic class maps, their 8-connected
components (labelled here independently of the Rust code, by breadth-first search) and, for each
component's binary mask, pycocotools' `mask.encode` (the compressed RLE string), `mask.area` and
`mask.toBbox`. Written to tests/fixtures/export/cases.json; tests/export_fixtures.rs asserts that
the Rust export gives the same components, strings, areas and boxes.

Cases: several classes, components of different classes touching, rings with holes (and an
island inside a hole), diagonal-only contact, one-pixel components, components on every image
border, large smooth random blobs (long runs, so the RLE strings use several characters per
count), and a map with no foreground.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask


def components(classes: np.ndarray):
    """8-connected components of equal non-zero class, numbered in raster order of their first pixel."""
    h, w = classes.shape
    ids = np.zeros((h, w), dtype=np.int64)
    found = []
    for y in range(h):
        for x in range(w):
            c = int(classes[y, x])
            if c == 0 or ids[y, x]:
                continue
            ident = len(found) + 1
            ids[y, x] = ident
            queue = deque([(y, x)])
            while queue:
                cy, cx = queue.popleft()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and ids[ny, nx] == 0 and classes[ny, nx] == c:
                            ids[ny, nx] = ident
                            queue.append((ny, nx))
            found.append((c, (x, y)))
    return ids, found


def smooth_blobs(rng, h, w, num_classes, cell):
    """Class map from thresholded, upsampled random noise: large blobs with ragged edges."""
    coarse = rng.random((h // cell + 2, w // cell + 2))
    fine = np.kron(coarse, np.ones((cell, cell)))[:h, :w]
    fine = fine + 0.25 * rng.random((h, w))
    levels = np.linspace(0.45, 1.25, num_classes + 1)
    out = np.zeros((h, w), dtype=np.uint8)
    for c in range(num_classes):
        out[(fine >= levels[c]) & (fine < levels[c + 1])] = c + 1
    return out


def synthetic_cases(rng):
    cases = []

    # Hand-made: touching classes, a ring with a hole holding an island, diagonal contact,
    # single pixels, every border.
    m = np.zeros((12, 16), dtype=np.uint8)
    m[0, :] = 1  # top border, class 1
    m[1:4, 0] = 2  # left border, class 2 touching class 1's row
    m[11, 3:9] = 3  # bottom border
    m[4:11, 15] = 1  # right border
    m[3:10, 4:11] = 2  # ring of class 2 ...
    m[5:8, 6:9] = 0  # ... with a hole ...
    m[6, 7] = 3  # ... holding a one-pixel island of class 3
    m[2, 13] = 3  # one pixel alone
    m[1, 11] = 1  # hangs below the top row: part of it
    m[9, 12] = 3  # diagonal chain of class 3
    m[10, 13] = 3
    m[9, 14] = 3  # two diagonal arms
    cases.append(("hand", m))

    # Checkerboard: every pixel touches its same-class neighbours only at corners.
    y, x = np.mgrid[0:7, 0:9]
    cases.append(("checkerboard", (((x + y) % 2) + 1).astype(np.uint8)))

    # A saddle inside a hole: two holes that touch only at a corner stay two holes.
    m = np.ones((6, 6), dtype=np.uint8)
    m[1:3, 1:3] = 0
    m[3:5, 3:5] = 0
    cases.append(("touching_holes", m))

    # Everything one class; nothing at all.
    cases.append(("full", np.full((5, 4), 2, dtype=np.uint8)))
    cases.append(("empty", np.zeros((3, 5), dtype=np.uint8)))

    # Random single pixels and blobs.
    cases.append(("speckle", (rng.random((20, 24)) < 0.15).astype(np.uint8) * rng.integers(1, 4, (20, 24)).astype(np.uint8)))
    cases.append(("blobs", smooth_blobs(rng, 61, 97, 3, 8)))
    cases.append(("large_blobs", smooth_blobs(rng, 150, 200, 2, 40)))
    return cases


def case_record(name, classes):
    ids, found = components(classes)
    records = []
    for i, (cls, first) in enumerate(found):
        binary = np.asfortranarray((ids == i + 1).astype(np.uint8))
        rle = coco_mask.encode(binary)
        records.append({
            "class": cls,
            "first": list(first),
            "counts": rle["counts"].decode("ascii"),
            "area": int(coco_mask.area(rle)),
            "bbox": [float(v) for v in coco_mask.toBbox(rle)],
        })
    h, w = classes.shape
    return {
        "name": name,
        "width": w,
        "height": h,
        # One string per row, a character per pixel: "0" + class (classes are below 10 here).
        "rows": ["".join(chr(48 + int(v)) for v in row) for row in classes],
        "components": records,
    }


def cmd_export(out: Path, seed: int):
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    cases = [case_record(name, classes) for name, classes in synthetic_cases(rng)]
    import pycocotools

    record = {
        "generator": "scripts/make_fixtures.py export",
        "seed": seed,
        "versions": {"pycocotools": getattr(pycocotools, "__version__", None) or _dist_version("pycocotools"),
                     "numpy": np.__version__},
        "connectivity": 8,
        "cases": cases,
    }
    path = out / "cases.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _dist_version(name):
    from importlib.metadata import version

    return version(name)
