"""Pictures unlike the training data, for looking at the pipeline's results (never for training).

Characters nobody here made — the third-party VRM files in ``../shared/data/vrm`` (see that folder's
README for their licences; Godette is CC BY 3.0, © SirRichard94, VRM adaptation © 2021 Lyuma) —
imported and rendered by ``stdgen data import-vrm``, then turned into the kinds of picture people
give: the A-pose front on transparency, the same over a busy background without alpha (JPEG), and a
toon-styled version (posterised colour bands and dark outlines).

    stdgen data import-vrm ../shared/data/vrm/01_Crimsom_Avatar.vrm ../shared/data/vrm/Godette_vrm_v4.vrm \\
        -o vrm_ood --resolution 512 --random-views 0 --no-face --no-top-bottom
    python benchmarks/ood_pictures.py vrm_ood -o ood/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def front_rgba(folder: Path) -> np.ndarray:
    """The lit A-pose front (the first evaluation view) with alpha from the semantic map."""
    lit = np.asarray(Image.open(folder / "full_lit.png").convert("RGB"))
    sem = np.asarray(Image.open(folder / "full_sem.png"))
    side = lit.shape[0]
    return np.dstack([lit[:, :side], np.where(sem[:, :side] != 255, 255, 0).astype(np.uint8)])


def busy_background(size: int, seed: int) -> Image.Image:
    """A gradient with random discs, bars and noise: clutter the segmenter has to see through."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = Image.fromarray(np.broadcast_to(a * (1 - y) + b * y, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(14):
        x0, y0 = rng.uniform(0, size, 2)
        r = rng.uniform(size * 0.03, size * 0.2)
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.uniform() < 0.5:
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
        else:
            draw.rectangle((x0 - r, y0 - r / 4, x0 + r, y0 + r / 4), fill=colour)
    noise = rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def toon(rgba: np.ndarray, levels: int = 4, outline: int = 3) -> np.ndarray:
    """Posterised colour bands and dark outlines around the silhouette and strong colour edges."""
    rgb = rgba[..., :3].astype(np.float64) / 255
    bands = np.round(rgb * (levels - 1)) / (levels - 1)
    grey = Image.fromarray((bands.mean(-1) * 255).astype(np.uint8))
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES)) > 40
    alpha = rgba[..., 3] > 127
    sil = Image.fromarray((alpha * 255).astype(np.uint8))
    ring = (np.asarray(sil.filter(ImageFilter.MaxFilter(2 * outline + 1))) > 127) & ~(
        np.asarray(sil.filter(ImageFilter.MinFilter(3))) > 127)
    ink = edges | ring
    out = (bands * 255).astype(np.uint8)
    out[ink] = (30, 24, 28)
    a = np.where(alpha | ring, 255, 0).astype(np.uint8)
    return np.dstack([out, a])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("imported", type=Path, help="a folder written by stdgen data import-vrm")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for i, folder in enumerate(sorted(p for p in args.imported.iterdir() if (p / "full_lit.png").is_file())):
        name = folder.name.removeprefix("vrm-").lstrip("0123456789_").split("_")[0].lower() or folder.name
        rgba = front_rgba(folder)
        Image.fromarray(rgba).save(args.output / f"{name}_apose.png")
        bg = busy_background(rgba.shape[0], seed=i)
        bg.paste(Image.fromarray(rgba), (0, 0), Image.fromarray(rgba[..., 3]))
        bg.save(args.output / f"{name}_background.jpg", quality=88)
        Image.fromarray(toon(rgba)).save(args.output / f"{name}_toon.png")
        print(f"{folder.name}: {name}_apose.png, {name}_background.jpg, {name}_toon.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
