"""Issue 14's figures on held-out test characters, for the diffusion model and the deterministic
baseline side by side: from each character's lit A-pose front render (fixed light), SSIM / PSNR of
the generated RGB views (per view and mean), silhouette IoU, foreground PSNR (over the union of
the silhouettes), normal angular error (where both have a surface), and seconds per sample.

    python benchmarks/mv_eval.py --weights WEIGHTS_DIR --baseline runs/mv_baseline \\
        --characters 50 --resolution 256 --steps 10,20,30 --device cuda -o mv_eval.json

``--weights`` is a folder holding ``config.json`` + ``model.safetensors`` (an export), or a
``--weights``-style root with ``mvdiff/`` in it; ``--regressor`` likewise for the deterministic
predictor (``mvreg/``), scored alone and, with ``--sdedit 0.5,0.7``, as the start of the diffusion
sampler at those noise levels (``--steps`` steps from there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the baseline module beside this script


def test_views(count: int, resolution: int, device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``cond`` ``(N, 4, R, R)`` and ``true`` ``(N, 2, 6, 4, R, R)`` in [0, 1] of the first ``count``
    test seeds, and the seeds."""
    from stdgen.data.stream import RenderStream, StreamConfig
    from stdgen.train.tasks.mvdiff import condition_from_stream, targets_from_stream

    conds, trues, seeds = [], [], []
    cfg = StreamConfig(batch_size=10, resolution=resolution, views="gen", layers=("full",),
                       maps=("rgb", "lit", "normal"), split="test", count=count, background="white",
                       random_light=False, device=str(device))
    for raw in RenderStream(cfg):
        conds.append(condition_from_stream(raw)[0].cpu())
        trues.append(((targets_from_stream(raw) + 1) / 2).cpu())
        seeds += raw["seed"].tolist()
    return torch.cat(conds), torch.cat(trues), seeds


def evaluate(model, cond: torch.Tensor, true: torch.Tensor, device, batch: int, **sample_kw) -> dict:
    from stdgen.train.tasks.mvdiff import multiview_metrics

    per = {k: [] for k in ("ssim", "psnr", "psnr_fg", "mask_iou", "normal_deg")}
    seconds = 0.0
    for i in range(0, cond.shape[0], batch):
        c = cond[i:i + batch].to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        pred = model.sample(c, seed=i, **sample_kw).float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t
        m = multiview_metrics(pred, true[i:i + batch].to(device))
        for k in per:
            per[k].append(m[k].cpu())
    out = {}
    for k, v in per.items():
        v = torch.cat(v)  # (N, 6)
        out[k] = float(torch.nanmean(v))
        out[k + "_per_view"] = [float(torch.nanmean(v[:, j])) for j in range(v.shape[1])]
    out["seconds_per_sample"] = seconds / cond.shape[0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="diffusion model weights folder")
    ap.add_argument("--baseline", default=None, help="baseline run folder (baseline.pt)")
    ap.add_argument("--regressor", default=None, help="MultiViewRegressor weights folder")
    ap.add_argument("--sdedit", default=None, help="comma-separated start noise levels of the diffusion sampler "
                    "from the regressor's mean (needs --weights and --regressor)")
    ap.add_argument("--characters", type=int, default=50)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", default=None, help="comma-separated sampler steps (quality vs steps)")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--batch", type=int, default=5, help="characters per sampling call")
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from stdgen.utils.device import resolve_device

    dev = resolve_device(args.device)
    cond, true, seeds = test_views(args.characters, args.resolution, dev)
    results: dict = {"characters": len(seeds), "resolution": args.resolution, "device": str(dev),
                     "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None}
    if args.baseline:
        from mv_baseline import load_baseline

        results["baseline"] = evaluate(load_baseline(args.baseline, dev), cond, true, dev, args.batch)
    regressor = None
    if args.regressor:
        from stdgen.models.mvdiffusion import MultiViewRegressor

        w = Path(args.regressor)
        if (w / "mvreg").is_dir():
            w = w / "mvreg"
        regressor = MultiViewRegressor.from_pretrained(w, device=dev).eval()
        results["regressor"] = evaluate(regressor, cond, true, dev, args.batch)
    if args.weights:
        from stdgen.models.mvdiffusion import MultiViewDiffusion

        w = Path(args.weights)
        if (w / "mvdiff").is_dir():
            w = w / "mvdiff"
        model = MultiViewDiffusion.from_pretrained(w, device=dev).eval()
        steps = [None] if args.steps is None else [int(s) for s in args.steps.split(",")]
        for s in steps:
            key = f"diffusion_steps_{s or model.config.default_steps}"
            results[key] = evaluate(model, cond, true, dev, args.batch, steps=s, guidance=args.guidance)
        if regressor is not None and args.sdedit:
            class FromMean:  # the regressor's mean, then the diffusion sampler from start_sigma
                def __init__(self, start: float):
                    self.start = start

                def sample(self, c, seed=0, **kw):
                    return model.sample(c, seed=seed, init=regressor.sample(c), start_sigma=self.start, **kw)

            for start in (float(x) for x in args.sdedit.split(",")):
                for s in steps:
                    key = f"sdedit_{start:g}_steps_{s or model.config.default_steps}"
                    results[key] = evaluate(FromMean(start), cond, true, dev, args.batch, steps=s,
                                            guidance=args.guidance)
    text = json.dumps(results, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
