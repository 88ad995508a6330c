"""How much of the multi-view model's SSIM loss is pixel-scale noise: the generated views of `stdgen
generate` output folders (``mv_rgb.png``) against the true generation views of the same dataset
characters, as generated and after a 3 x 3 binomial blur of the prediction only (and of both).

    python benchmarks/mv_checker.py GENERATE_OUT DATASET [--characters 20]

If blurring the prediction alone raises SSIM against the sharp truth, the prediction carries
high-frequency error that the truth does not have (the 2-pixel checker of a patch-2 pixel head):
the reason for ``MultiViewDiffusionConfig.pixel_refiner``. SSIM here is scikit-image's (7 x 7
window, over white), not the evaluator's, so compare its columns with each other only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import convolve
from skimage.metrics import structural_similarity

BINOMIAL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16


def over_white(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])


def blur(rgb: np.ndarray) -> np.ndarray:
    return np.stack([convolve(rgb[..., c], BINOMIAL, mode="nearest") for c in range(3)], -1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("generated", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--characters", type=int, default=20)
    args = ap.parse_args(argv)
    from stdgen.io.dataset import read_renders

    rows = []
    for folder in sorted(d for d in args.generated.iterdir() if (d / "mv_rgb.png").is_file())[:args.characters]:
        pred = np.asarray(Image.open(folder / "mv_rgb.png").convert("RGBA")).astype(np.float32) / 255
        side = pred.shape[0]
        truth = read_renders(args.dataset / folder.name, layers=("full",), maps=("rgb",))
        scores = []
        for k, i in enumerate(truth.view_index("gen")):
            t = Image.fromarray(truth.layers["full"].rgb[i]).resize((side, side), Image.Resampling.BOX)
            t = over_white(np.asarray(t).astype(np.float32) / 255)
            p = over_white(pred[:, k * side:(k + 1) * side])
            scores.append([structural_similarity(t, x, channel_axis=2, data_range=1)
                           for x in (p, blur(p))] + [structural_similarity(blur(t), blur(p), channel_axis=2,
                                                                          data_range=1)])
        rows.append(np.mean(scores, axis=0))
    m = np.mean(rows, axis=0)
    print(f"{len(rows)} characters: SSIM as generated {m[0]:.4f}, prediction blurred {m[1]:.4f}, "
          f"both blurred {m[2]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
