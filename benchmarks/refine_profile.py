"""Where the refinement's time goes: seconds per phase of each layer's stage, for one folder.

    python benchmarks/refine_profile.py CHARACTER_DIR [--device cuda] [--runs 2]

Phases (``StageResult.timings``): setup, forward (render + losses, including the collision loss's
k-d tree), backward, update (the optimiser step), remesh (CPU, numba), explicit_target, dilation.
The first run includes compilation and start-up; the last run is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args(argv)
    from stdgen.data.dataset_format import read_renders
    from stdgen.refine.pipeline import STAGE_LAYER_SET, PipelineConfig, coarse_layers, read_true_parts
    from stdgen.refine.schedule import refine_character
    from stdgen.refine.targets import targets_from_renders
    from stdgen.semantics import PARTS

    dev = torch.device(args.device)
    cfg = PipelineConfig()
    folder = Path(args.folder)
    renders = read_renders(folder, layers=tuple(sorted(set(STAGE_LAYER_SET.values()))), maps=("rgb", "normal", "sem"))
    coarse = coarse_layers(read_true_parts(folder), cfg.coarse)
    targets = {p: targets_from_renders(renders, p, device=dev) for p in PARTS if not coarse[p].is_empty}
    for _ in range(args.runs):
        res = refine_character(coarse, targets, cfg.refine, device=dev, progress=False)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, run {args.runs} of {args.runs}")
    keys = ["setup", "forward", "backward", "update", "remesh", "explicit_target", "dilation"]
    print("| part | total s | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for p, r in res.stages.items():
        print(f"| {p.key} | {r.seconds:.2f} | " + " | ".join(f"{r.timings.get(k, 0.0):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
