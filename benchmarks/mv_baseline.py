"""Deterministic multi-view baseline (issue 14's calibration): a plain U-Net (14 M parameters, no attention) that
maps the lit A-pose front view (RGB over white + alpha) to the six views' unlit RGB, alpha and
normals in one pass, L1 loss, on the same stream and augmentations as ``stdgen train mvdiff``.

    python benchmarks/mv_baseline.py -o runs/mv_baseline --minutes 7 --device cuda
    python benchmarks/mv_eval.py --baseline runs/mv_baseline ...

Writes ``OUT/baseline.pt`` (state dict + the width settings) and ``OUT/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from stdgen.models.diffusion.unet import UNetBackbone

VIEWS = 6


class BaselineUNet(nn.Module):
    """``(B, 4, H, W)`` front view in [0, 1] -> ``(B, 2, 6, 4, H, W)`` in [0, 1] (the diffusion
    model's sample layout: RGB + alpha, normals as (n + 1) / 2 + alpha)."""

    def __init__(self, channels=(64, 128, 192, 192), layers_per_block: int = 2):
        super().__init__()
        self.channels, self.layers_per_block = tuple(channels), layers_per_block
        self.net = UNetBackbone(4, VIEWS * 7, self.channels, layers_per_block, (False,) * len(self.channels),
                                temb_dim=32, norm_groups=32, make_attention=None)
        self.temb = nn.Parameter(torch.zeros(1, 32))
        nn.init.normal_(self.net.conv_out.weight, std=1e-3)  # the backbone zero-inits it (a residual denoiser)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        b, _, h, w = cond.shape
        out = self.net(cond * 2 - 1, self.temb.expand(b, -1)).reshape(b, VIEWS, 7, h, w)
        rgb, alpha = torch.sigmoid(out[:, :, :3]), torch.sigmoid(out[:, :, 3:4])
        normal = torch.tanh(out[:, :, 4:7]) * 0.5 + 0.5
        return torch.stack([torch.cat([rgb, alpha], 2), torch.cat([normal, alpha], 2)], dim=1)

    def sample(self, cond: torch.Tensor, **_) -> torch.Tensor:
        """The diffusion model's sampling interface (seed / steps ignored)."""
        dev = next(self.parameters()).device
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            return self(cond.to(dev)).float().clamp(0, 1)


def load_baseline(directory: str | Path, device="cpu") -> BaselineUNet:
    state = torch.load(Path(directory) / "baseline.pt", map_location="cpu", weights_only=True)
    model = BaselineUNet(tuple(state["channels"]), int(state["layers_per_block"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: time box only)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--pool-size", type=int, default=48)
    ap.add_argument("--channels", default="64,128,192,192")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from dataclasses import replace

    from stdgen.train.tasks.mvdiff import MultiViewTask, small
    from stdgen.utils.device import resolve_device

    dev = resolve_device(args.device)
    torch.manual_seed(args.seed)
    preset = replace(small(), batch_size=args.batch_size, resolution_schedule=((0, args.resolution),),
                     stream_workers=args.workers, pool_size=args.pool_size)
    task = MultiViewTask(preset)
    model = BaselineUNet(tuple(int(c) for c in args.channels.split(","))).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, fused=dev.type == "cuda")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")
    t0 = time.perf_counter()
    end = t0 + 60 * args.minutes
    step = 0
    for batch in task.batches(rank=0, world_size=1, device=dev, seed=args.seed):
        frac = min(1.0, (time.perf_counter() - t0) / (60 * args.minutes))
        for g in opt.param_groups:  # warm-up, then cosine over the time box
            g["lr"] = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item())
        true = (batch["target"] + 1) / 2
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            pred = model(batch["cond"])
        loss = (pred.float() - true).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            rec = {"step": step, "loss": loss.item(), "seconds": time.perf_counter() - t0,
                   "samples_per_s": step * args.batch_size / (time.perf_counter() - t0)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if time.perf_counter() > end or (args.steps is not None and step >= args.steps):
            break
    torch.save({"model": model.state_dict(), "channels": list(model.channels),
                "layers_per_block": model.layers_per_block, "steps": step, "parameters": params,
                "seconds": time.perf_counter() - t0, "resolution": args.resolution}, out / "baseline.pt")
    print(f"baseline: {params / 1e6:.1f} M parameters, {step} steps in {time.perf_counter() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
