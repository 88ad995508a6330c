"""``stdgen refine`` as a function: a character folder in, a refined and textured character out.

:func:`refine_folder` is a thin wrapper over :func:`stdgen.refine.core.refine_parts`: it reads a
dataset character folder (:mod:`stdgen.io.dataset`), makes (or reads) the coarse layer
meshes, takes each stage's views from the folder's layer sets (:class:`~stdgen.refine.core.RefineViews`),
refines and textures in memory, measures the result against the folder's true parts, and writes,
atomically, ``character.glb``, ``before_after.png`` and ``report.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stdgen.errors import InputError
from stdgen.refine.coarse import coarse_layers, read_coarse_dir
from stdgen.refine.core import RefineConfig, RefineViews, refine_parts
from stdgen.refine.schedule import StepCallback
from stdgen.refine.targets import STAGE_LAYER_SET
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part

log = logging.getLogger(__name__)

#: ``on_task(name, done, total)``: progress of the wrapper's phases other than the optimisation steps
#: (``"texture"`` per part, ``"metrics"`` per part).
TaskCallback = Callable[[str, int, int], None]


def read_true_parts(folder: Path) -> dict[Part, Mesh] | None:
    """The true parts of a character folder (``character.glb``), or None when it has none."""
    path = folder / "character.glb"
    if not path.is_file():
        return None
    from stdgen.io.glb import read_parts

    return read_parts(path)


def _empty(part: Part) -> Mesh:
    return Mesh(np.zeros((0, 3)), np.zeros((0, 3)), label=part, name=part.key)


def penetrating_vertices(outer: Mesh, inner: list[Mesh], tolerance: float) -> int:
    """How many vertices of ``outer`` lie inside the union of the closed ``inner`` meshes deeper than
    ``tolerance`` metres (inside by the ray winding number; depth to a dense surface sampling)."""
    from stdgen.geometry.inside import contains
    from stdgen.refine.losses import penetration_depth

    inner = [m for m in inner if m is not None and not m.is_empty]
    if outer is None or outer.is_empty or not inner:
        return 0
    merged = merge_meshes([Mesh(m.vertices, m.faces) for m in inner])
    inside = contains(merged, outer.vertices)
    if not inside.any():
        return 0
    depth = penetration_depth(outer.vertices[inside], merged.vertices, merged.faces)
    return int((depth > tolerance).sum())


def part_metrics(pred: Mesh, true: Mesh, height: float, points: int) -> dict[str, float]:
    """Chamfer, F-score@0.01 / 0.02 and normal consistency in units of the true character's height.

    Point-to-surface (:func:`stdgen.geometry.surface_metrics.surface_metrics`: each sample's distance to the
    other mesh's nearest triangle), and, under ``*_points`` keys, the point-to-point figures of
    :func:`stdgen.geometry.metrics.mesh_metrics`, whose sampling floor (about 0.0007 for a body at 300k
    points) is most of a refined body's value.
    """
    from stdgen.geometry.metrics import mesh_metrics
    from stdgen.geometry.surface_metrics import surface_metrics

    m = surface_metrics(pred, true, scale=1.0 / height, count=points, thresholds=(0.01, 0.02))
    pts = mesh_metrics(pred, true, scale=1.0 / height, count=points, thresholds=(0.01,))
    m.update(chamfer_points=pts["chamfer"], normal_consistency_points=pts["normal_consistency"],
             fscore_points=pts["fscore@0.01"])
    return {k: (None if not np.isfinite(v) else float(v)) for k, v in m.items()}


def before_after_picture(coarse: dict[Part, Mesh], refined: dict[Part, Mesh], true: dict[Part, Mesh] | None,
                         resolution: int) -> np.ndarray:
    """One row per part (each framed on that part): coarse, refined (and true) in normal shading, from the
    front and the back-left."""
    from stdgen.render import frame_bounds, orthographic_cameras, render_mesh
    from stdgen.utils.io import image_grid

    present = [p for p in PARTS if not refined.get(p, _empty(p)).is_empty or not coarse.get(p, _empty(p)).is_empty]
    rows = []
    for p in present:
        cols = [coarse.get(p), refined.get(p)] + ([true.get(p)] if true is not None else [])
        # Each row is framed on its own part, so the hair is as large as the body.
        shown = [Mesh(m.vertices, m.faces) for m in cols if m is not None and not m.is_empty]
        center, half = frame_bounds(merge_meshes(shown).bounds())
        cams = orthographic_cameras([0.0, 135.0], 0.0, center=center, half_size=half)
        imgs = []
        for view in range(2):
            for m in cols:
                if m is None or m.is_empty:
                    imgs.append(np.ones((resolution, resolution, 3), np.float32))
                    continue
                out = render_mesh(Mesh(m.vertices, m.faces), cams[view], resolution, shading="normal")
                imgs.append(out.composite(1.0)[0].cpu().numpy())
        rows.append(imgs)
    return image_grid(rows, pad=4)


def refine_folder(character_dir: str | Path, out_dir: str | Path, *, coarse_dir: str | Path | None = None,
                  device: str | torch.device = "cpu", config: RefineConfig | None = None,
                  on_step: StepCallback | None = None, on_task: TaskCallback | None = None) -> dict:
    """Refine and texture one character folder; write ``out_dir``; return the report.

    ``on_step(part, step, total, terms)`` reports each optimisation step, ``on_task(name, done,
    total)`` the texture bake and the report's metrics, part by part.
    """
    from stdgen.io.dataset import read_renders
    from stdgen.io.glb import write_glb
    from stdgen.io.outputs import write_output_dir
    from stdgen.utils.io import save_png

    cfg = config or RefineConfig()
    cfg.validate()
    folder = Path(character_dir)
    dev = torch.device(device)
    t_start = time.perf_counter()
    c_start = time.process_time()
    renders = read_renders(folder, layers=tuple(sorted(set(STAGE_LAYER_SET.values()))), maps=("rgb", "normal", "sem"))
    true = read_true_parts(folder)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0 = time.perf_counter()
    if coarse_dir is not None:
        coarse = read_coarse_dir(coarse_dir)
    else:
        if true is None:
            raise InputError(f"{folder}: no character.glb to make coarse layers from; pass --coarse MESH_DIR")
        coarse = coarse_layers(true, cfg.coarse)
    seconds["coarse"] = time.perf_counter() - t0
    # Each stage is compared with (and textured from) the views of its own layer set.
    by_layer = {layer: RefineViews.from_renders(renders, layer) for layer in sorted(set(STAGE_LAYER_SET.values()))}
    views = {p: by_layer[STAGE_LAYER_SET[p]] for p in PARTS}
    present = [p for p in PARTS if not coarse[p].is_empty]
    texture_done = (lambda p, _m: on_task("texture", present.index(p) + 1, len(present))) if on_task else None
    out = refine_parts(coarse, views, cfg, device=dev, on_step=on_step, on_texture_done=texture_done)
    result, refined, textured = out.result, out.refined, out.textured
    seconds.update(out.seconds)
    cpu.update(out.cpu_seconds)
    seconds["total"] = time.perf_counter() - t_start
    cpu["total"] = time.process_time() - c_start

    # Report: geometry against the true parts (when the folder has them) and layer penetration.
    rep = cfg.report
    parts_report: dict[str, dict] = {}
    height = None
    if true is not None:
        from stdgen.geometry.metrics import character_height

        height = character_height(true)
    inner: list[Mesh] = []
    for i, p in enumerate(PARTS):
        entry: dict = {"vertices_before": int(coarse[p].num_vertices), "vertices_after": int(refined[p].num_vertices)}
        if rep.metrics and true is not None and height and not true[p].is_empty and not refined[p].is_empty:
            before = part_metrics(coarse[p], true[p], height, rep.metric_points)
            after = part_metrics(refined[p], true[p], height, rep.metric_points)
            entry.update(chamfer_before=before["chamfer"], chamfer_after=after["chamfer"],
                         fscore_before=before["fscore@0.01"], fscore_after=after["fscore@0.01"],
                         fscore2_before=before["fscore@0.02"], fscore2_after=after["fscore@0.02"],
                         normal_consistency_before=before["normal_consistency"],
                         normal_consistency_after=after["normal_consistency"],
                         chamfer_points_before=before["chamfer_points"], chamfer_points_after=after["chamfer_points"],
                         normal_consistency_points_before=before["normal_consistency_points"],
                         normal_consistency_points_after=after["normal_consistency_points"])
        else:
            entry.update(chamfer_before=None, chamfer_after=None, fscore_before=None, fscore_after=None)
        entry["penetrating_vertices"] = penetrating_vertices(refined[p], inner, rep.penetration_tolerance)
        entry["penetrating_vertices_before"] = penetrating_vertices(coarse[p], [coarse[q] for q in PARTS if q < p],
                                                                    rep.penetration_tolerance)
        if p in result.stages:
            h = result.stages[p].history
            entry["loss_first"], entry["loss_last"] = h[0]["total"], h[-1]["total"]
        parts_report[p.key] = entry
        inner.append(refined[p])
        if on_task is not None and rep.metrics and true is not None:
            on_task("metrics", i + 1, len(PARTS))
    report = {
        "parts": parts_report,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        # Processor time of this process: close to the wall time the run would take on an idle
        # machine with one thread (the wall seconds above include waiting on other processes).
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "threads": torch.get_num_threads(),
        "device": str(dev) if dev.type != "cuda" else f"cuda ({torch.cuda.get_device_name(dev)})",
        "character": folder.name,
        "coarse": "given" if coarse_dir is not None
        else f"voxelised at {cfg.coarse.resolution}^3 ({cfg.coarse.method})",
        "units": "Chamfer and F-score thresholds in fractions of the true character's height",
        "metrics": "point-to-surface (stdgen.geometry.surface_metrics); "
                   "*_points: point-to-point (stdgen.geometry.metrics)",
        "penetration_tolerance_m": rep.penetration_tolerance,
        "config": cfg.to_dict(),
    }
    picture = before_after_picture(coarse, refined, true, rep.picture_resolution)
    # The caller claims out_dir (stdgen.io.outputs.claim_output_dir); a killed earlier run's
    # .tmp-<out>.* leftovers are removed here.
    with write_output_dir(out_dir, "refine") as tmp:
        write_glb({p.key: textured[p] for p in textured}, tmp / "character.glb")
        save_png(tmp / "before_after.png", picture)
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
    log.info("wrote %s in %.1f s", out_dir, seconds["total"])
    return report
