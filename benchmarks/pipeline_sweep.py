"""Compare pipeline settings that act after the multi-view stage, on the same generated views.

    python benchmarks/pipeline_sweep.py PICTURES GT_DIR -o OUT --variant NAME=JSON [--variant ...]
        [--limit N] [--device cpu] [--pose apose|auto] [--canon-steps N] [--mv-steps N] [--cache-only]
        [--views-set JSON] [--weights DIR] [--true-views]

``PICTURES``: A-pose pictures (``--pose auto``: any pose, canonicalised first) named like the
ground-truth folders (``<id>.png``); ``GT_DIR``: the ``stdgen data render`` folder of those
characters (use the VALIDATION split to choose settings: ``stdgen data render --split validation``).
The canonical picture and six views of each picture are generated once (seed 0, the pipeline's
default steps unless ``--canon-steps`` / ``--mv-steps``; other :class:`stdgen.pipeline.PipelineConfig`
fields of the stages up to the views from ``--views-set``, e.g. ``multiview_mode``) and cached in ``OUT/cache/``
(or taken from an earlier ``stdgen generate`` output, ``--views-from``; or, as a diagnostic ceiling, the
ground truth's own six views, ``--true-views``); each variant
(``NAME={"max_body_speck": 30}``: fields of
:class:`stdgen.pipeline.PipelineConfig` over its defaults; ``"dilation.margin": 0.003`` sets a field of the
refinement's :class:`stdgen.refine.dilation.DilationConfig`, ``"texture.power": 4`` one of its
:class:`stdgen.refine.texture.TextureConfig`) then reconstructs, refines and textures from
those views, writes ``OUT/NAME/<id>/`` (``character.glb``, ``mv_rgb.png``, ``mv_normal.png``) and is
scored with ``stdgen eval --fit-scale`` into ``OUT/NAME-eval/``. Prints one line of means per variant
(SSIM, part IoU, semantic accuracy, F@0.01) and writes them to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = ("ssim", "mask_iou", "iou_body", "iou_clothes", "iou_hair", "semantic_accuracy", "fscore@0.01",
           "body/fscore@0.01", "clothes/fscore@0.01")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pictures", type=Path)
    p.add_argument("gt", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--variant", action="append", default=[], help='NAME={"field": value, ...}')
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pose", choices=("apose", "auto"), default="apose",
                   help="auto: posed pictures are canonicalised first (seed 0, default steps), as `stdgen "
                        "generate --pose auto` does; apose (the default): the pictures are in A-pose")
    p.add_argument("--cache-only", action="store_true", help="make the view cache and stop")
    p.add_argument("--mv-steps", type=int, default=None,
                   help="sampler steps of the multi-view model when the cache is made (default: its own)")
    p.add_argument("--weights", type=Path, default=None, help="a pipeline weights folder (default: bundled)")
    p.add_argument("--views-set", default="{}", help='PipelineConfig fields (JSON) used when the cache is made, '
                   'e.g. \'{"picture_transfer": true}\'')
    p.add_argument("--canon-steps", type=int, default=None,
                   help="sampler steps of the canonicaliser when the cache is made (default: its own)")
    p.add_argument("--views-from", type=Path, default=None,
                   help="a `stdgen generate` output folder made with the same canonicaliser and multi-view "
                        "weights: take each picture's canonical.png, mv_rgb.png and mv_normal.png from it "
                        "instead of generating them (the same arrays the pipeline would pass on)")
    p.add_argument("--true-views", action="store_true",
                   help="a diagnostic ceiling: take the six views from the ground truth's renders (its 'gen' "
                        "views, resized to the pipeline's side) instead of the multi-view model's")
    args = p.parse_args(argv)

    from stdgen.pipeline import PipelineConfig, StdGENPipeline
    from stdgen.pipeline.outputs import _png_bytes, model_files

    variants = {}
    for text in args.variant or ['base={}']:
        name, _, spec = text.partition("=")
        variants[name] = json.loads(spec or "{}")
    pics = sorted(p for p in args.pictures.glob("*.png") if (args.gt / p.stem).is_dir())[: args.limit]
    if not pics:
        sys.exit(f"no pictures in {args.pictures} with a folder in {args.gt}")
    views_config = dataclasses.replace(PipelineConfig(), **json.loads(args.views_set))
    pipe = StdGENPipeline.from_pretrained(args.weights, device=args.device, config=views_config)
    cache = args.out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for pic in pics:
        f = cache / f"{pic.stem}.npz"
        if not f.is_file() and args.views_from is not None:
            from PIL import Image

            src = args.views_from / pic.stem
            framed = np.asarray(Image.open(src / "canonical.png"))
            rgb, nrm = (np.stack(np.split(np.asarray(Image.open(src / n)), 6, axis=1))
                        for n in ("mv_rgb.png", "mv_normal.png"))
            np.savez_compressed(f, framed=framed, rgb=rgb, normal=nrm)
        if not f.is_file():
            # "framed" holds the canonical picture: what reconstruction and refinement read.
            framed, _ = pipe.canonicalize(pipe.preprocess(str(pic)), args.pose, 0, args.canon_steps)
            if args.true_views:
                rgb, nrm = true_views(args.gt / pic.stem, views_config.multiview_resolution)
            else:
                rgb, nrm = pipe.generate_views(framed, 0, args.mv_steps)
            np.savez_compressed(f, framed=framed, rgb=rgb, normal=nrm)
    if args.cache_only:
        return 0
    summary = {}
    base_refine_config = pipe.refine_config
    for name, fields in variants.items():
        # "dilation.<field>" / "texture.<field>" keys set the refinement's DilationConfig / TextureConfig;
        # the rest are PipelineConfig fields.
        sub = {g: {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith(g + ".")}
               for g in ("dilation", "texture")}
        pipe.config = dataclasses.replace(PipelineConfig(), **{k: v for k, v in fields.items() if "." not in k})
        pipe.config.validate()

        def refine_config(sub=sub, **kw):
            cfg = base_refine_config(**kw)
            for k, v in sub["dilation"].items():
                setattr(cfg.schedule.dilation, k, v)
            for k, v in sub["texture"].items():
                setattr(cfg.texture, k, v)
            cfg.validate()
            return cfg

        pipe.refine_config = refine_config
        t0 = time.perf_counter()
        for pic in pics:
            out = args.out / name / pic.stem
            if (out / "character.glb").is_file():
                continue
            d = np.load(cache / f"{pic.stem}.npz")
            framed, rgb, nrm = d["framed"], d["rgb"], d["normal"]
            coarse = pipe.reconstruct(framed, rgb, nrm)
            # --pose auto: the cached canonical picture is taken to be a redrawing (the A-pose check's
            # decision is not cached; it judges posed pictures posed 49 times in 50).
            character = pipe.refine(coarse, framed, rgb, nrm, 0, lambda *a: None, redrawn=args.pose == "auto")
            out.mkdir(parents=True, exist_ok=True)
            for fname, data in model_files(character).items():
                (out / fname).write_bytes(data)
            (out / "mv_rgb.png").write_bytes(_png_bytes(np.concatenate(list(rgb), axis=1)))
            (out / "mv_normal.png").write_bytes(_png_bytes(np.concatenate(list(nrm), axis=1)))
        seconds = (time.perf_counter() - t0) / len(pics)
        report = args.out / f"{name}-eval"
        subprocess.run([sys.executable, "-m", "stdgen", "eval", str(args.out / name), str(args.gt), "-o", str(report),
                        "--fit-scale", "--overwrite", "--quiet"], check=True)
        with open(report / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))

        def mean(col: str, rows=rows) -> float:
            vals = [float(r[col]) for r in rows if r.get(col) not in (None, "", "nan", "not")]
            return round(float(np.mean(vals)), 4) if vals else float("nan")

        summary[name] = {"fields": fields, "n": len(rows), "seconds_per_picture": round(seconds, 1),
                         **{c: mean(c) for c in COLUMNS}}
        print(name, json.dumps({k: v for k, v in summary[name].items() if k != "fields"}), flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def true_views(gt_dir: Path, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth's six generation views as the multi-view model's outputs would be: straight RGBA
    ``(6, side, side, 4)`` uint8 (area-resized premultiplied, then un-premultiplied) and world normals
    ``(6, side, side, 3)`` uint8 (``(n + 1) / 2``, renormalised; 0 off the figure)."""
    import torch
    import torch.nn.functional as F

    from stdgen.io.dataset import read_renders

    renders = read_renders(gt_dir, layers=("full",), maps=("rgb", "normal"))
    idx, full = renders.view_index("gen"), renders.layers["full"]
    rgba = torch.from_numpy(full.rgb[idx]).float().permute(0, 3, 1, 2) / 255
    pre = F.interpolate(torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], 1), size=side, mode="area")
    a = pre[:, 3:]
    rgb = torch.where(a > 1e-4, pre[:, :3] / a.clamp_min(1e-4), torch.zeros_like(pre[:, :3]))
    out_rgba = (torch.cat([rgb, a], 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    n = F.interpolate(torch.from_numpy(full.normal[idx]).permute(0, 3, 1, 2), size=side, mode="area")
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-6)
    out_n = ((n + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out_n[out_rgba[..., 3] == 0] = 0
    return out_rgba, out_n


if __name__ == "__main__":
    raise SystemExit(main())
