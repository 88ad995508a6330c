"""Make the example pictures shipped in ``examples/`` (all made by this project).

Held-out TEST-split procedural characters are rendered (``stdgen data render --split test``) and
three kinds of picture cut from the renders:

- ``apose_<id>.png``: the lit (toon-shaded) A-pose front view, cropped to the figure, RGBA;
- ``background_<id>.png``: the same kind of picture composited over a coloured gradient, RGB (no
  alpha: the pipeline's segmenter must find the figure);
- ``posed_<id>.png``: a random-pose front render (the canonicaliser redraws it in A-pose), RGBA.

    python benchmarks/make_examples.py -o examples            # renders 3 test characters (~1 min on 2 cores)
    python benchmarks/make_examples.py -o examples --dataset DIR   # reuse an earlier render

Pictures are kept small (``--size``, 320 px tall by default; each under 200 KB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def crop_to_figure(rgba: np.ndarray, margin: float = 0.06) -> np.ndarray:
    """``(H, W, 4)`` uint8 -> the box around alpha > 0 plus ``margin`` of its height on each side."""
    a = rgba[..., 3] > 0
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    m = round(margin * (rows[-1] - rows[0] + 1))
    t, b = max(0, rows[0] - m), min(rgba.shape[0], rows[-1] + 1 + m)
    l, r = max(0, cols[0] - m), min(rgba.shape[1], cols[-1] + 1 + m)
    return rgba[t:b, l:r]


def resize_height(rgba: np.ndarray, height: int) -> np.ndarray:
    h, w = rgba.shape[:2]
    size = (max(1, round(w * height / h)), height)
    return np.asarray(Image.fromarray(rgba).resize(size, Image.Resampling.LANCZOS))


def gradient_background(h: int, w: int, seed: int) -> np.ndarray:
    """A two-colour diagonal gradient with faint noise, ``(H, W, 3)`` float in [0, 1]."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.uniform(0.25, 0.85, 3), rng.uniform(0.25, 0.85, 3)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((x / max(1, w - 1)) * 0.4 + (y / max(1, h - 1)) * 0.6)[..., None]
    bg = c0 * (1 - t) + c1 * t + rng.normal(0, 0.01, (h, w, 1))
    return np.clip(bg, 0, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="examples", help="output folder (default examples/)")
    p.add_argument("--dataset", default=None, help="an existing `stdgen data render --split test` folder")
    p.add_argument("--size", type=int, default=320, help="picture height in pixels (default 320)")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.dataset) if args.dataset else Path(tmp) / "test"
        if not args.dataset:
            subprocess.run([sys.executable, "-m", "stdgen", "data", "render", "--split", "test", "--count", "3",
                            "--resolution", "512", "--random-views", "0", "--posed-views", "1", "--no-face",
                            "--no-top-bottom", "--device", "cpu", "--quiet", "-o", str(data)], check=True)
        from stdgen.io.dataset import read_renders

        chars = sorted(d for d in data.iterdir() if (d / "meta.json").is_file())[:3]
        if len(chars) < 3:
            raise SystemExit(f"{data}: needs 3 character folders, has {len(chars)}")
        written = []
        for k, folder in enumerate(chars):
            r = read_renders(folder, layers=("full",), maps=("rgb", "lit"), posed=True)
            front = r.meta["a_pose_front"]
            # The lit (cel-shaded) colour with the unlit map's antialiased alpha: (H, W, 4) uint8.
            # The lit map is stored premultiplied (over black): divide the alpha out at the edges.
            alpha = r.layers["full"].rgb[front][..., 3:].astype(np.float32)
            straight = r.layers["full"].lit[front].astype(np.float32) * 255 / np.maximum(alpha, 1)
            lit = np.concatenate([np.clip(straight + 0.5, 0, 255), alpha], axis=2).astype(np.uint8)
            name = folder.name
            if k == 0:
                pic = resize_height(crop_to_figure(lit), args.size)
                path = out / f"apose_{name}.png"
            elif k == 1:
                rgba = resize_height(crop_to_figure(lit, margin=0.12), args.size).astype(np.float32) / 255
                bg = gradient_background(*rgba.shape[:2], seed=int(name))
                pic = (rgba[..., :3] * rgba[..., 3:] + bg * (1 - rgba[..., 3:])) * 255 + 0.5
                pic = pic.astype(np.uint8)
                path = out / f"background_{name}.png"
            else:
                pic = resize_height(crop_to_figure(r.posed_rgb[0]), args.size)
                path = out / f"posed_{name}.png"
            Image.fromarray(pic).save(path, optimize=True)
            written.append(path)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
