"""Benchmark of ``stdgen refine``: seconds per layer and in total, and the geometry gains.

    python benchmarks/refine_bench.py                       # CPU: timing on 1 character (median of 3)
    python benchmarks/refine_bench.py --characters 20       # + Chamfer / NC gains over 20 held-out characters
    python benchmarks/refine_bench.py --device cuda         # the same on the GPU

Characters are the held-out procedural characters (``stdgen.data.splits.held_out_seeds``), rendered
once into ``--work`` (eight evaluation views at 512 px, which hold the six generation views; reused
on later runs). Timing runs repeat the whole ``refine_folder`` on the first character after one
warm-up run (numba compilation, CUDA start-up) and print medians. Wall seconds on a busy machine
include waiting for other processes: the processor seconds of this process are printed beside them
(with one thread they are what the wall time would be on an idle machine).

Prints a table and writes ``--out`` (JSON) with every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_folders(work: Path, count: int, resolution: int, device: str = "cpu", offset: int = 0) -> list[Path]:
    from stdgen.data.render_dataset import RenderConfig, procedural_character, render_to_folder
    from stdgen.data.splits import held_out_seeds

    cfg = RenderConfig(resolution=resolution, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                       device=str(device))
    folders = []
    for seed in held_out_seeds(offset + count)[offset:]:
        folder = work / f"{seed:07d}"
        if not (folder / "meta.json").is_file():
            t = time.perf_counter()
            render_to_folder(procedural_character(seed), folder, cfg, seed=seed, source="procedural")
            print(f"rendered {folder.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        folders.append(folder)
    return folders


def figures(folder: Path, out: Path, figdir: Path) -> None:
    """README pictures from one refined character: before/after (normals) and textured vs input."""
    import numpy as np
    import torch
    from PIL import Image

    from stdgen.io.dataset import read_renders
    from stdgen.io.glb import read_glb
    from stdgen.render import render_mesh
    from stdgen.structures.mesh import merge_meshes
    from stdgen.utils.io import image_grid, load_png, save_png

    figdir.mkdir(parents=True, exist_ok=True)
    pic = load_png(out / "before_after.png")
    img = Image.fromarray(pic)
    img.thumbnail((1400, 1400))
    save_png(figdir / "refine-before-after.png", np.asarray(img))
    renders = read_renders(folder, layers=("full",), maps=("rgb",))
    idx = renders.view_index("eval")[::2]  # azimuths 0, 90, 180, 270
    cams = renders.cameras(idx)
    nodes = read_glb(out / "character.glb")
    merged = merge_meshes([nodes[k] for k in ("body", "clothes", "hair") if k in nodes])
    res = renders.resolution
    ours = render_mesh(merged, cams, res, shading="flat").composite(1.0).cpu().numpy()
    rgba = torch.as_tensor(renders.layers["full"].rgb[idx]).float() / 255
    truth = (rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])).numpy()
    grid = image_grid([list(truth), list(ours)], pad=4)
    img = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8))
    img.thumbnail((1400, 1400))
    save_png(figdir / "refine-textured.png", np.asarray(img))
    print(f"wrote {figdir / 'refine-before-after.png'} and {figdir / 'refine-textured.png'}", file=sys.stderr)


def report_quality(results: dict, metric_points: int, card: str, timing: bool) -> None:
    """Print the geometry tables (and, with ``timing``, seconds per layer) of ``results["quality"]``
    (one entry per character, as the quality pass or ``--merge`` gathers them); store the summary."""
    keys = {"cb": "chamfer_before", "ca": "chamfer_after", "nb": "normal_consistency_before",
            "na": "normal_consistency_after", "fb": "fscore_before", "fa": "fscore_after",
            "pcb": "chamfer_points_before", "pca": "chamfer_points_after",
            "pnb": "normal_consistency_points_before", "pna": "normal_consistency_points_after",
            "pen": "penetrating_vertices"}
    per_part: dict[str, dict[str, list]] = {}
    for entry in results["quality"]:
        for part, e in entry["parts"].items():
            if e.get("chamfer_before") is None:
                continue
            d = per_part.setdefault(part, {k: [] for k in keys})
            for k, name in keys.items():
                d[k].append(e[name])
    folders = results["quality"]
    med = statistics.median
    print()
    print(f"## geometry over {len(folders)} held-out characters (point-to-surface, units: the character's "
          f"height; {metric_points} surface points per mesh)")
    print("| part | Chamfer before (median) | Chamfer after (median) | ratio median | ratio worst | ≥ 2x | "
          "NC before (median) | NC after (median) | NC after − before, worst | F@1% before → after (median) | "
          "penetrating vertices (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for part, d in per_part.items():
        ratios = [b / a for b, a in zip(d["cb"], d["ca"]) if a > 0]
        dnc = [a - b for b, a in zip(d["nb"], d["na"])]
        pratios = [b / a for b, a in zip(d["pcb"], d["pca"]) if a > 0]
        row = {"chamfer_before": med(d["cb"]), "chamfer_after": med(d["ca"]),
               "ratio_median": med(ratios), "ratio_min": min(ratios),
               "reach_2x": sum(r >= 2 for r in ratios), "characters": len(ratios),
               "nc_before": med(d["nb"]), "nc_after": med(d["na"]), "nc_gain_worst": min(dnc),
               "nc_worse": sum(x < 0 for x in dnc),
               "f_before": med(d["fb"]), "f_after": med(d["fa"]), "penetrating_max": max(d["pen"]),
               "points_chamfer_before": med(d["pcb"]), "points_chamfer_after": med(d["pca"]),
               "points_ratio_median": med(pratios), "points_ratio_min": min(pratios),
               "points_reach_2x": sum(r >= 2 for r in pratios),
               "points_nc_before": med(d["pnb"]), "points_nc_after": med(d["pna"])}
        summary[part] = row
        print(f"| {part} | {row['chamfer_before']:.5f} | {row['chamfer_after']:.5f} | {row['ratio_median']:.2f} | "
              f"{row['ratio_min']:.2f} | {row['reach_2x']} of {row['characters']} | {row['nc_before']:.3f} | "
              f"{row['nc_after']:.3f} | {row['nc_gain_worst']:+.3f} ({row['nc_worse']} worse) | "
              f"{row['f_before']:.3f} → {row['f_after']:.3f} | {row['penetrating_max']} |")
    print()
    print("point-to-point (stdgen.geometry.metrics.mesh_metrics, same points):")
    print("| part | Chamfer before | Chamfer after | ratio median | ratio worst | ≥ 2x | NC before | NC after |")
    print("|---|---|---|---|---|---|---|---|")
    for part, row in summary.items():
        print(f"| {part} | {row['points_chamfer_before']:.5f} | {row['points_chamfer_after']:.5f} | "
              f"{row['points_ratio_median']:.2f} | {row['points_ratio_min']:.2f} | {row['points_reach_2x']} of "
              f"{row['characters']} | {row['points_nc_before']:.3f} | {row['points_nc_after']:.3f} |")
    results["summary"] = summary
    if timing:  # no separate timing runs: per-layer seconds over the quality characters (one run each)
        keys_t = ["coarse", "body", "clothes", "hair", "texture", "total"]
        q = results["quality"]
        wall = {k: statistics.median(r["seconds"].get(k, 0.0) for r in q) for k in keys_t}
        cpu = {k: statistics.median(r["cpu_seconds"].get(k, 0.0) for r in q) for k in keys_t if k != "coarse"}
        results["timing"] = {"wall": wall, "cpu": cpu, "runs": 1, "characters": len(q)}
        print()
        print(f"## seconds per layer ({card}, median over {len(q)} characters, one run each)")
        print("| stage | wall s (median) | wall s (max) | cpu s (median) |")
        print("|---|---|---|---|")
        for k in keys_t:
            print(f"| {k} | {wall[k]:.1f} | {max(r['seconds'].get(k, 0.0) for r in q):.1f} | "
                  f"{cpu.get(k, float('nan')):.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--characters", type=int, default=1, help="held-out characters for the quality figures")
    ap.add_argument("--offset", type=int, default=0,
                    help="skip this many held-out characters (split a long run over processes)")
    ap.add_argument("--timing-runs", type=int, default=3, help="timed runs on the first character (after a warm-up)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "stdgen-refine-bench"),
                    help="where character folders and outputs go (reused)")
    ap.add_argument("--resolution", type=int, default=512, help="resolution of the character renders")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=None, help="JSON file for the results (default: WORK/results-DEVICE.json)")
    ap.add_argument("--figures", default=None, metavar="DIR",
                    help="also write the README pictures refine-*.png of the first character into DIR")
    ap.add_argument("--set", nargs="*", default=[], metavar="STAGE.FIELD=VALUE",
                    help="RefineConfig overrides, as in refine_profile.py (e.g. '*.remesh_every=4')")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS_JSON",
                    help="only combine the quality entries of earlier runs' results files and print the tables")
    args = ap.parse_args(argv)
    if args.merge:
        runs_ = [json.loads(Path(f).read_text()) for f in args.merge]
        merged = {"device": runs_[0]["device"], "card": runs_[0]["card"], "merged": args.merge,
                  "quality": [q for r in runs_ for q in r["quality"]]}
        from stdgen.refine.core import RefineConfig

        report_quality(merged, RefineConfig().report.metric_points, merged["card"], timing=True)
        if args.out:
            Path(args.out).write_text(json.dumps(merged, indent=1))
        return 0
    import torch

    from refine_profile import override_config
    from stdgen.refine.core import RefineConfig
    from stdgen.refine.folder import refine_folder
    from stdgen.utils.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folders = make_folders(work, max(1, args.characters), args.resolution, device.type, args.offset)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({card}), torch threads: {torch.get_num_threads()}", file=sys.stderr)

    results: dict = {"device": str(device), "card": card, "threads": torch.get_num_threads(), "timing": {},
                     "quality": []}
    cfg = RefineConfig()
    override_config(cfg, args.set)
    results["overrides"] = args.set
    # -- timing ---------------------------------------------------------------------------------------
    runs = []
    # Timing runs skip the metrics but the last (they run after the clock stops anyway, on the CPU).
    timing_cfg = RefineConfig()
    timing_cfg.report.metrics = False
    override_config(timing_cfg, args.set)
    last_report = None
    for i in range(args.timing_runs + 1 if args.timing_runs else 0):
        last = i == args.timing_runs
        # The last run also measures the geometry (after its clock stops): the quality pass reuses it.
        report = refine_folder(folders[0], work / "out" / (folders[0].name if last else f"timing-{i}"),
                               device=device, config=cfg if last else timing_cfg)
        last_report = report if last else None
        if i > 0:
            runs.append(report)
        print(f"run {i}{' (warm-up)' if i == 0 else ''}: {report['seconds']['total']:.1f} s", file=sys.stderr)
    if runs:
        keys = ["coarse", "body", "clothes", "hair", "texture", "total"]
        timing = {k: statistics.median(r["seconds"].get(k, 0.0) for r in runs) for k in keys}
        cpu = {k: statistics.median(r["cpu_seconds"].get(k, 0.0) for r in runs) for k in keys if k != "coarse"}
        results["timing"] = {"wall": timing, "cpu": cpu, "runs": len(runs), "character": folders[0].name}
        refine_only = timing["body"] + timing["clothes"] + timing["hair"] + timing["texture"]
        print()
        print(f"## seconds per layer ({card}, median of {len(runs)} runs, character {folders[0].name})")
        print("| stage | wall s | cpu s |")
        print("|---|---|---|")
        for k in keys:
            print(f"| {k} | {timing[k]:.1f} | {cpu.get(k, float('nan')):.1f} |")
        print(f"| refine + texture (paper: 117 s on a GPU) | {refine_only:.1f} | "
              f"{cpu['body'] + cpu['clothes'] + cpu['hair'] + cpu['texture']:.1f} |")
        results["timing"]["refine_plus_texture"] = refine_only

    # -- quality over the characters --------------------------------------------------------------------
    if args.characters > 1 or args.timing_runs == 0:
        for folder in folders:
            if folder == folders[0] and last_report is not None:
                report = last_report
            else:
                report = refine_folder(folder, work / "out" / folder.name, device=device, config=cfg)
            results["quality"].append({"character": folder.name, "parts": report["parts"],
                                       "seconds": report["seconds"], "cpu_seconds": report["cpu_seconds"]})
            print(f"{folder.name} ({report['seconds']['total']:.0f} s): " + ", ".join(
                f"{p} {e['chamfer_before']:.5f}->{e['chamfer_after']:.5f} "
                f"NC {e['normal_consistency_before']:.3f}->{e['normal_consistency_after']:.3f}"
                for p, e in report["parts"].items() if e.get("chamfer_before") is not None), file=sys.stderr)
        report_quality(results, cfg.report.metric_points, card, timing=not runs)
    if args.figures:
        figures(folders[0], work / "out" / folders[0].name, Path(args.figures))
    out = Path(args.out) if args.out else work / f"results-{device.type}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
