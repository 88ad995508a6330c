"""Training curves of a run folder (or its log.jsonl) as a PNG, drawn with Pillow (no matplotlib here).

    python benchmarks/plot_run.py RUN_DIR_OR_LOG -o curve.png [--terms mse mask depth] [--val iou_full]

Left panel: the chosen loss terms per log step (log scale, each stage boundary marked); right panel:
the chosen validation metrics.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def read_log(path: Path) -> list[dict]:
    path = path / "log.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def panel(draw: ImageDraw.ImageDraw, box, series: dict[str, list[tuple[int, float]]], title: str, log: bool,
          marks: list[int], x_max: int) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0))
    vals = [v for s in series.values() for _, v in s if v > 0 or not log]
    if not vals:
        return
    f = (lambda v: math.log10(max(v, 1e-8))) if log else (lambda v: v)
    lo, hi = min(map(f, vals)), max(map(f, vals))
    hi = hi if hi > lo else lo + 1
    sx = lambda s: x0 + (x1 - x0) * s / max(1, x_max)
    sy = lambda v: y1 - (y1 - y0) * (f(v) - lo) / (hi - lo)
    for m in marks:
        draw.line([(sx(m), y0), (sx(m), y1)], fill=(190, 190, 190))
    for k, (name, pts) in enumerate(series.items()):
        col = COLOURS[k % len(COLOURS)]
        xy = [(sx(s), sy(v)) for s, v in pts if v > 0 or not log]
        if len(xy) > 1:
            draw.line(xy, fill=col, width=2)
        elif xy:
            draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=col)
        draw.text((x0 + 6, y0 + 4 + 12 * k), name, fill=col)
    lab = (lambda v: f"1e{v:.1f}") if log else (lambda v: f"{v:.3g}")
    draw.text((x1 + 4, y0), lab(hi), fill=(0, 0, 0))
    draw.text((x1 + 4, y1 - 10), lab(lo), fill=(0, 0, 0))
    draw.text((x1 - 40, y1 + 4), f"step {x_max}", fill=(0, 0, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--terms", nargs="*", default=None, help="loss terms (default: every term of the last line)")
    ap.add_argument("--val", nargs="*", default=None, help="validation metrics (default: all)")
    args = ap.parse_args()
    rows = read_log(args.run)
    train = [r for r in rows if "terms" in r]
    val = [r for r in rows if "validation" in r]
    terms = args.terms or ["loss"] + sorted({k for r in train for k in r["terms"]})[:5]
    series = {t: [(r["step"], r["loss"] if t == "loss" else r["terms"].get(t, 0.0)) for r in train
                  if t == "loss" or t in r["terms"]] for t in terms}
    names = args.val or sorted({k for r in val for k in r["validation"]})
    vseries = {n: [(r["step"], r["validation"][n]) for r in val if n in r["validation"]] for n in names}
    marks = [b["step"] for a, b in zip(train, train[1:]) if a.get("stage") != b.get("stage")]
    x_max = max([r["step"] for r in rows] + [1])
    img = Image.new("RGB", (1000, 360), (255, 255, 255))
    d = ImageDraw.Draw(img)
    panel(d, (40, 30, 470, 320), series, "training loss terms (log scale)", True, marks, x_max)
    panel(d, (540, 30, 940, 320), vseries, "validation", False, marks, x_max)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
