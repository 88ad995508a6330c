"""Issue 13's "int8 vs fp16 output difference": the same S-LRM weights stored both ways, run on the
same test characters' six true views.

    python benchmarks/quant_diff.py FP16_DIR INT8_DIR DATASET [--characters 10] -o quant.json

FP16_DIR / INT8_DIR: ``slrm`` weight folders (``stdgen train export RUN --dtype fp16|int8``).
Field level: at 200 000 points per character (uniform in the normalised box plus points near the
fp16 model's surface) the mean / max absolute SDF difference, the share of points whose inside/outside
sign or argmax class differs, and the mean colour difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


@torch.no_grad()
def field_difference(m16, m8, views: torch.Tensor, device, points: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Both models on one character's six views ``(6, C, S, S)``: field differences at ``points``."""
    from stdgen.render.camera import generation_views

    cams = generation_views(center=(0.0, 0.0, 0.0), half_size=1.0)
    x = views[None].to(device)
    w2c, proj = cams.world_to_cam[None].to(device), cams.proj[None].to(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    uniform = torch.rand(points // 2, 3, generator=g) * 2 - 1
    p16 = m16.encode(x, w2c, proj)
    p8 = m8.encode(x, w2c, proj)
    # Near the surface: uniform points pulled onto the fp16 zero set by one Newton-like step on |sdf|.
    probe = (torch.rand(points * 2, 3, generator=g) * 2 - 1).to(device)
    f = m16.query(p16, probe[None])
    near = probe[f.sdf[0].abs().argsort()[: points // 2]]
    pts = torch.cat([uniform.to(device), near])[None]
    a, b = m16.query(p16, pts), m8.query(p8, pts)
    d = (a.sdf - b.sdf).abs().float()
    return {"sdf_mean_abs": float(d.mean()), "sdf_max_abs": float(d.max()),
            "sign_flip": float(((a.sdf < 0) != (b.sdf < 0)).float().mean()),
            "sign_flip_near": float(((a.sdf < 0) != (b.sdf < 0))[:, points // 2:].float().mean()),
            "class_flip_inside": float(((a.logits.argmax(-1) != b.logits.argmax(-1)) & (a.sdf < 0)).float().sum()
                                       / (a.sdf < 0).float().sum().clamp_min(1)),
            "rgb_mean_abs": float((a.rgb - b.rgb).abs().float().mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fp16")
    ap.add_argument("int8")
    ap.add_argument("dataset")
    ap.add_argument("--characters", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    from stdgen.commands.reconstruct import read_views
    from stdgen.models.slrm.model import SLRM

    dev = torch.device(args.device)
    m16 = SLRM.from_pretrained(args.fp16, device=dev).eval()
    m8 = SLRM.from_pretrained(args.int8, device=dev).eval()
    folders = sorted(p for p in Path(args.dataset).iterdir() if (p / "meta.json").exists())[: args.characters]
    rows = {}
    for folder in folders:
        vs = read_views(folder, m16.config.image_size, normals=m16.config.in_channels == 6)
        x = vs.images if vs.normals is None else torch.cat([vs.images, vs.normals], 1)
        rows[folder.name] = field_difference(m16, m8, x.float(), dev)
    keys = next(iter(rows.values())).keys() if rows else ()
    summary = {k: sum(r[k] for r in rows.values()) / len(rows) for k in keys}
    result = {"characters": len(rows), "field_mean": summary, "per_character": rows}
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_character"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
