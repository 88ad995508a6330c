"""A contact sheet of `stdgen generate` results for the README: per output folder, the top row of its
``preview.png`` (the framed input, the canonical picture, the front render unlit and lit) — or, with
``--views``, its canonical picture beside ``views.png`` (the six generated views, colour above
normals) — under a caption from its ``report.json`` (picture, pose setting and decision, front
silhouette IoU).

    python benchmarks/generate_sheet.py OUT/godette_apose OUT/crimsom_toon ... -o docs/img/generate-ood.png
    python benchmarks/generate_sheet.py OUT/godette_apose ... --views -o docs/img/multiview-ood.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

CAPTION = 18


def row(folder: Path, views: bool = False) -> Image.Image:
    """One folder's caption + the top half of its preview (or its canonical picture and views)."""
    if views:
        grid = Image.open(folder / "views.png").convert("RGB")
        canon = Image.open(folder / "canonical.png").convert("RGBA")
        canon = canon.resize((grid.height, grid.height), Image.LANCZOS)
        top = Image.new("RGB", (grid.height + grid.width, grid.height), "white")
        top.paste(canon, (0, 0), canon)
        top.paste(grid, (grid.height, 0))
    else:
        preview = Image.open(folder / "preview.png").convert("RGB")
        top = preview.crop((0, 0, preview.width, preview.height // 2))
    report = json.loads((folder / "report.json").read_text())
    setting = report.get("settings", {}).get("pose", "?")
    decided = report.get("pose", "?")
    judged = "A-pose" if decided == "apose" else "posed"
    pose = f"--pose {setting}" + (f" (judged {judged})" if setting == "auto" else "")
    iou = report.get("front_silhouette_iou")
    text = f"{folder.name}: {pose}; front silhouette IoU {iou:.3f}" if iou is not None else f"{folder.name}: {pose}"
    out = Image.new("RGB", (top.width, top.height + CAPTION), "white")
    ImageDraw.Draw(out).text((4, 3), text, fill=(0, 0, 0))
    out.paste(top, (0, CAPTION))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="stdgen generate output folders (one per picture)")
    ap.add_argument("-o", "--output", required=True, type=Path)
    ap.add_argument("--width", type=int, default=1000, help="width of the sheet in pixels")
    ap.add_argument("--views", action="store_true", help="the canonical picture and the generated views per row")
    args = ap.parse_args(argv)
    rows = [row(f, args.views) for f in args.folders]
    rows = [r.resize((args.width, round(r.height * args.width / r.width)), Image.LANCZOS) for r in rows]
    sheet = Image.new("RGB", (args.width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
