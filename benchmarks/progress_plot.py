"""Where each model's curve stands: its test figures after each training session against the GPU-minutes
it had trained by then, with the issue's bar dashed and a reference (baseline, floor) dotted.

    python benchmarks/progress_plot.py docs/runs/progress.json -o docs/img/progress.png

The figures come from docs/runs/progress.json (one panel per model and metric; a null value is a
session not measured yet and is left out). Drawn with Pillow (no matplotlib here).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

INK, GREY, BAR, REF, LINE = (0, 0, 0), (200, 200, 200), (214, 39, 40), (120, 120, 120), (31, 119, 180)


def dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, fill, dash: int) -> None:
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + dash, x1), y)], fill=fill, width=1 if dash < 4 else 2)
        x += 2 * dash


def draw_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], panel: dict, x_max: float) -> None:
    x0, y0, x1, y1 = box
    pts = [(x, y, lab) for x, y, lab in panel["points"] if y is not None]
    ref = panel.get("reference")
    values = [y for _, y, _ in pts] + [panel["bar"]] + ([ref[0]] if ref else [])
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo or 1)
    lo, hi = lo - pad, hi + pad
    sx = lambda x: x0 + (x1 - x0) * x / x_max
    sy = lambda y: y1 - (y1 - y0) * (y - lo) / (hi - lo)
    draw.rectangle(box, outline=INK)
    draw.text((x0, y0 - 14), f"{panel['model']}: {panel['metric']}", fill=INK)
    for m in range(0, int(x_max) + 1, 30):
        draw.line([(sx(m), y0), (sx(m), y1)], fill=GREY)
        draw.text((sx(m) - 6, y1 + 3), str(m), fill=INK)
    dashed(draw, x0, x1, sy(panel["bar"]), BAR, 6)
    draw.text((x0 + 4, sy(panel["bar"]) - 12), f"bar {panel['bar']:g}", fill=BAR)
    if ref:
        dashed(draw, x0, x1, sy(ref[0]), REF, 2)
        draw.text((x0 + 4, sy(ref[0]) + 2), f"{ref[1]} {ref[0]:g}", fill=REF)
    xy = [(sx(x), sy(y)) for x, y, _ in pts]
    if len(xy) > 1:
        draw.line(xy, fill=LINE, width=2)
    for (px, py), (_, y, lab) in zip(xy, pts):
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=LINE)
        draw.text((px - 10, py - 14), f"{y:.3g}", fill=LINE)
        draw.text((px + 4, py + 3), lab.split(" ")[0], fill=REF)
    draw.text((x1 - 70, y1 + 14), "GPU-minutes", fill=INK)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("progress", type=Path, help="docs/runs/progress.json")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    panels = json.loads(args.progress.read_text())["panels"]
    cols, w, h = 2, 430, 230
    rows = (len(panels) + cols - 1) // cols
    x_max = max(x for p in panels for x, _, _ in p["points"]) * 1.08
    img = Image.new("RGB", (cols * (w + 60) + 20, rows * (h + 60) + 20), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, panel in enumerate(panels):
        r, c = divmod(k, cols)
        bx, by = 30 + c * (w + 60), 30 + r * (h + 60)
        draw_panel(draw, (bx, by, bx + w, by + h), panel, x_max)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
