"""Writes the browser tests' video clip, `tests/fixtures/clip/`: 12 PNG frames (64 x 48, a size the model
resizes) of a red square moving 4 px right per frame over a textured background, the first frame's mask, and
the same frames as VP9 WebM, H.264 MP4 and raw Y4M (Chromium's fake camera reads Y4M).

The square's position is the frame's index (x = 4 + 4 * i), so a test can tell from a decoded frame which
frame it is: none skipped, none repeated. Needs numpy, Pillow and ffmpeg (Debian's, with libvpx and
libx264); the outputs are committed, so the tests need none of them.

    python scripts/make_video_clip.py
"""

import pathlib
import subprocess
import tempfile

import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "clip"
FRAMES, WIDTH, HEIGHT, FPS = 12, 64, 48, 10
SQUARE, STEP, TOP = 14, 4, 16
RED = (220, 30, 30)


def square_x(index: int) -> int:
    return 4 + STEP * index


def frame(index: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([60 + x, 80 + y, 120 + (x + y) // 2], axis=-1).astype(np.int16)
    base += rng.integers(-6, 7, size=base.shape, dtype=np.int16)
    image = np.clip(base, 0, 255).astype(np.uint8)
    left = square_x(index)
    image[TOP : TOP + SQUARE, left : left + SQUARE] = RED
    return image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(9)
    with tempfile.TemporaryDirectory() as tmp:
        frames_dir = OUT / "frames"
        frames_dir.mkdir(exist_ok=True)
        for i in range(FRAMES):
            pixels = frame(i, rng)
            Image.fromarray(pixels).save(frames_dir / f"{i:05d}.png")
            Image.fromarray(pixels).save(pathlib.Path(tmp) / f"{i:05d}.png")
        mask = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        mask[TOP : TOP + SQUARE, square_x(0) : square_x(0) + SQUARE] = (255, 0, 0)
        Image.fromarray(mask).save(OUT / "first_mask.png")
        pattern = str(pathlib.Path(tmp) / "%05d.png")
        common = ["ffmpeg", "-loglevel", "error", "-y", "-framerate", str(FPS), "-i", pattern]
        subprocess.run(
            [*common, "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-crf", "20", OUT / "clip.webm"],
            check=True,
        )
        subprocess.run(
            [*common, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart",
             OUT / "clip.mp4"],
            check=True,
        )
        subprocess.run([*common, "-pix_fmt", "yuv420p", OUT / "camera.y4m"], check=True)


if __name__ == "__main__":
    main()
