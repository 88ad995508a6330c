"""Count hair invented behind the head: the generated side views' figure pixels at head height that
the true side views do not have, per character, for one or more prediction folders.

    python benchmarks/invented_hair.py GT_DIR PRED_DIR [PRED_DIR ...]

``GT_DIR``: a ``stdgen data render`` folder; each ``PRED_DIR`` holds ``<id>/mv_rgb.png`` (the six
generated views as ``stdgen generate`` or ``benchmarks/pipeline_sweep.py`` write them). The head band is
the top 22 % of the true front view's figure; the side views are azimuths -90 and 90. Edge misalignment
alone gives 30-100 extra pixels at 128 px; an invented ponytail 110-250.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIDES = (0, 4)  # GENERATION_AZIMUTHS -90 and 90
FRONT = 2


def extra_head_pixels(true_alpha: np.ndarray, pred_alpha: np.ndarray) -> int:
    """``true_alpha`` / ``pred_alpha`` ``(6, R, R)`` bool -> pixels in the side views' head band that only
    the prediction covers."""
    rows = np.nonzero(true_alpha[FRONT].any(1))[0]
    top, height = rows.min(), rows.max() - rows.min()
    band = slice(top, top + int(0.22 * height))
    return int(sum((pred_alpha[v][band] & ~true_alpha[v][band]).sum() for v in SIDES))


def main(argv: list[str]) -> int:
    from stdgen.io.dataset import read_renders

    gt, preds = Path(argv[0]), [Path(p) for p in argv[1:]]
    chars = sorted(p.name for p in preds[0].iterdir() if (p / "mv_rgb.png").is_file() and (gt / p.name).is_dir())
    counts = {p: [] for p in preds}
    for c in chars:
        renders = read_renders(gt / c, layers=("full",), maps=("rgb",))
        alpha = torch.from_numpy(renders.layers["full"].rgb[renders.view_index("gen")][..., 3]).float()[:, None] / 255
        for p in preds:
            pred = np.asarray(Image.open(p / c / "mv_rgb.png"))
            side = pred.shape[0]
            true = F.interpolate(alpha, size=side, mode="area")[:, 0].numpy() > 0.5
            counts[p].append(extra_head_pixels(true, np.stack(np.split(pred[..., 3], 6, axis=1)) > 127))
    for p in preds:
        x = np.array(counts[p])
        print(f"{p}: mean {x.mean():.1f} extra head pixels; characters over 110: "
              f"{', '.join(c for c, n in zip(chars, x) if n > 110) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
