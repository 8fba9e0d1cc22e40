"""References for the evaluation metrics (docs/MODEL.md §15), used by `make_fixtures.py eval`.

On synthetic masks it writes, for the Rust metric code to match to 1e-6:

- DAVIS: per object and frame J and F from PyPI `davisinteractive`'s `metrics.batched_jaccard` and
  `metrics.batched_f_measure` (bound_th 0.008), frames 1..n-2 as the DAVIS 2017 semi-supervised toolkit
  scores them; per object mean / recall / decay with the toolkit's `db_statistics` formula; J&F.
- Few-shot: per-class IoU, mIoU and FB-IoU accumulated as HSNet does (written out in numpy here).

davisinteractive 1.0.4 uses `np.int` / `np.float`, which numpy 2 removed; they are restored as the
builtins before its import (they only name dtypes there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

if not hasattr(np, "int"):
    np.int = int  # type: ignore[attr-defined]
if not hasattr(np, "float"):
    np.float = float  # type: ignore[attr-defined]

from davisinteractive.metrics import batched_f_measure, batched_jaccard  # noqa: E402

# (name, frames, height, width, objects)
SEQUENCES = (("small", 6, 37, 53, 2), ("medium", 5, 180, 240, 3))
# (class, episodes, height, width)
FEWSHOT_CLASSES = (("alpha", 3, 24, 31), ("beta", 2, 40, 17), ("gamma", 1, 16, 16))


def blobs(rng, h: int, w: int, objects: int, empty: tuple = ()) -> np.ndarray:
    """A label map: each object an ellipse with a random centre and radii (objects in `empty` absent)."""
    yy, xx = np.mgrid[0:h, 0:w]
    labels = np.zeros((h, w), np.uint8)
    for obj in range(1, objects + 1):
        if obj in empty:
            continue
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        labels[inside] = obj
    return labels


def perturb(rng, labels: np.ndarray, objects: int) -> np.ndarray:
    """A plausible prediction: the truth shifted a little, with a few wrong pixels."""
    dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
    pred = np.roll(labels, (dy, dx), axis=(0, 1))
    flips = rng.random(labels.shape) < 0.004
    pred[flips] = rng.integers(0, objects + 1, size=int(flips.sum()))
    return pred.astype(np.uint8)


def db_statistics(values: np.ndarray):
    """The DAVIS 2017 toolkit's per-object statistics (mean, recall, decay)."""
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    ids = np.round(np.linspace(1, len(values), 5) + 1e-10) - 1
    ids = ids.astype(np.uint8)
    bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return {"mean": mean, "recall": recall, "decay": decay}


def save_labels(labels: np.ndarray, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels, "L").save(path)


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC colour table, flattened for PIL's putpalette."""
    palette = []
    for index in range(256):
        rgb, bits = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        palette.extend(rgb)
    return palette


def write_datasets(out: Path, rng):
    """Tiny FSS-1000-style and DAVIS-2017-style folders for the end-to-end tests of `seggpt eval`."""
    import make_fixtures as mf

    # FSS-1000: DIR/<class>/<n>.jpg + <n>.png (binary, 0 / 255).
    for cls, count in (("apple", 4), ("boat", 3)):
        for n in range(1, count + 1):
            h, w = int(rng.integers(18, 30)), int(rng.integers(18, 30))
            folder = out / "fss" / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mf.smooth_rgb(rng, h, w)).save(folder / f"{n}.jpg", quality=90)
            save_labels((blobs(rng, h, w, 1) > 0).astype(np.uint8) * 255, folder / f"{n}.png")
    # DAVIS 2017: JPEGImages/480p/<seq>/NNNNN.jpg, Annotations/480p/<seq>/NNNNN.png (palette), ImageSets/2017/val.txt.
    for seq, frames, objects in (("twoobjects", 5, 2), ("oneobject", 4, 1)):
        h, w = 24, 32
        labels = blobs(rng, h, w, objects)
        image = mf.smooth_rgb(rng, h, w)
        for f in range(frames):
            frame_dir = out / "davis" / "JPEGImages" / "480p" / seq
            ann_dir = out / "davis" / "Annotations" / "480p" / seq
            frame_dir.mkdir(parents=True, exist_ok=True)
            ann_dir.mkdir(parents=True, exist_ok=True)
            # The objects drift right by a pixel a frame.
            Image.fromarray(np.roll(image, f, axis=1)).save(frame_dir / f"{f:05d}.jpg", quality=90)
            annotation = Image.fromarray(np.roll(labels, f, axis=1), "P")
            annotation.putpalette(davis_palette())
            annotation.save(ann_dir / f"{f:05d}.png")
    sets = out / "davis" / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("twoobjects\noneobject\n")


def cmd_eval(out: Path, seed: int):
    import make_fixtures as mf  # the shared helpers (imported here: make_fixtures imports this module)

    rng = np.random.default_rng(seed)
    write_datasets(out, rng)
    out = out / "metrics"
    out.mkdir(parents=True, exist_ok=True)

    sequences = []
    all_objects = []
    for name, frames, h, w, objects in SEQUENCES:
        truth, pred = [], []
        for f in range(frames):
            # Some frames lose an object in the truth, some in the prediction.
            t = blobs(rng, h, w, objects, empty=(2,) if f == 2 else ())
            p = perturb(rng, t, objects)
            if f == 3:
                p[p == 1] = 0
            truth.append(t)
            pred.append(p)
            save_labels(t, out / "davis" / name / "truth" / f"{f:05d}.png")
            save_labels(p, out / "davis" / name / "pred" / f"{f:05d}.png")
        truth, pred = np.stack(truth), np.stack(pred)
        objects_first = int(truth[0].max())
        assert objects_first == objects
        # Frames 1..n-2: the semi-supervised toolkit leaves out the first and the last.
        j = batched_jaccard(truth[1:-1], pred[1:-1], average_over_objects=False, nb_objects=objects)
        f_ = batched_f_measure(truth[1:-1], pred[1:-1], average_over_objects=False, nb_objects=objects,
                               bound_th=0.008)
        per_object = []
        for obj in range(objects):
            entry = {"j_frames": j[:, obj].tolist(), "f_frames": f_[:, obj].tolist(),
                     "j": db_statistics(j[:, obj]), "f": db_statistics(f_[:, obj])}
            per_object.append(entry)
            all_objects.append(entry)
        sequences.append({"name": name, "frames": frames, "height": h, "width": w, "objects": per_object})
    summary = {key: {stat: float(np.mean([o[key][stat] for o in all_objects])) for stat in ("mean", "recall", "decay")}
               for key in ("j", "f")}
    summary["jf_mean"] = (summary["j"]["mean"] + summary["f"]["mean"]) / 2

    # Few-shot: HSNet's AverageMeter. Per episode area_inter / area_union for [background, foreground];
    # per class sums; iou = inter / max(union, 1); mIoU = mean of the foreground row over the classes seen;
    # FB-IoU = mean over [bg, fg] of (sum of inter over classes) / (sum of union over classes).
    episodes = []
    classes = [c[0] for c in FEWSHOT_CLASSES]
    inter_buf = np.zeros((2, len(classes)))
    union_buf = np.zeros((2, len(classes)))
    for ci, (cls, count, h, w) in enumerate(FEWSHOT_CLASSES):
        for e in range(count):
            truth = blobs(rng, h, w, 1) > 0
            pred = perturb(rng, truth.astype(np.uint8), 1) > 0
            if cls == "gamma":  # a class whose prediction is empty
                pred[:] = False
            tp, pp = f"fewshot/{cls}_{e}_truth.png", f"fewshot/{cls}_{e}_pred.png"
            save_labels(truth.astype(np.uint8) * 255, out / tp)
            save_labels(pred.astype(np.uint8) * 255, out / pp)
            for k, (t, p) in enumerate(((~truth, ~pred), (truth, pred))):
                inter_buf[k, ci] += np.logical_and(t, p).sum()
                union_buf[k, ci] += np.logical_or(t, p).sum()
            episodes.append({"class": cls, "truth": tp, "pred": pp})
    iou = inter_buf / np.maximum(union_buf, 1)
    fewshot = {
        "class_iou": {cls: float(iou[1, ci]) for ci, cls in enumerate(classes)},
        "miou": float(iou[1].mean()),
        "fb_iou": float((inter_buf.sum(axis=1) / union_buf.sum(axis=1)).mean()),
    }

    import davisinteractive
    mf.write_json({
        "generator": "scripts/make_fixtures.py eval (scripts/ref_eval.py)",
        "davisinteractive": davisinteractive.__version__ if hasattr(davisinteractive, "__version__") else "1.0.4",
        "notes": [
            "davis/<seq>/{truth,pred}/NNNNN.png: 8-bit object-id maps (L). j_frames / f_frames: batched_jaccard / "
            "batched_f_measure(bound_th=0.008, nb_objects, average_over_objects=False) on frames 1..n-2.",
            "j / f: the toolkit's db_statistics (mean, recall = mean(x > 0.5), decay); summary: the mean of each "
            "over all objects; jf_mean = (J mean + F mean) / 2.",
            "fewshot/*.png: binary masks (0 / 255); HSNet accumulation: class IoU = sum inter / max(sum union, 1), "
            "mIoU = mean class IoU, FB-IoU = mean over {bg, fg} of summed inter / summed union.",
        ],
        "davis": {"sequences": sequences, "summary": summary},
        "fewshot": {"episodes": episodes, **fewshot},
    }, out / "expected.json")
    mf.log(f"[eval] {len(sequences)} sequences, {len(episodes)} episodes -> {out}")
