"""A small layered stand-in character for the refinement tests (test-only).

Body: a rounded box (an exact SDF); clothes: a closed shell 3 cm thick over its lower half;
hair: a shell 4 cm thick over its top. "True" parts are meshed finely; "coarse" parts are meshed
on a coarse grid (the outer ones 3 cm too thick, as ``coarse_layers`` makes them) and smoothed, so
corners are rounded off and a refinement has something to fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from stdgen.refine.coarse import taubin_smooth
from stdgen.render import frame_bounds, generation_views, render_mesh
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part

CENTER = np.array([0.0, 0.5, 0.0])
HALF = np.array([0.22, 0.4, 0.16])
ROUND = 0.04
COLORS = {Part.BODY: (0.95, 0.78, 0.66), Part.CLOTHES: (0.25, 0.45, 0.85), Part.HAIR: (0.5, 0.28, 0.18)}


def body_sdf(p):
    q = np.abs(p - CENTER) - (HALF - ROUND)
    outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
    return outside + np.minimum(q.max(-1), 0) - ROUND


def clothes_sdf(p, extra=0.0):
    b = body_sdf(p)
    return np.maximum.reduce([b - 0.03 - extra, -b, p[..., 1] - 0.45])


def hair_sdf(p, extra=0.0):
    b = body_sdf(p)
    return np.maximum.reduce([b - 0.04 - extra, -b, 0.72 - p[..., 1]])


SDFS = {Part.BODY: body_sdf, Part.CLOTHES: clothes_sdf, Part.HAIR: hair_sdf}


def coarse_part(part: Part, cells: int | None = None, extra: float = 0.03) -> Mesh:
    """A coarse part the way :func:`stdgen.refine.coarse.coarse_layers` makes them: a coarse grid,
    outer layers thickened outward by ``extra``, Taubin-smoothed."""
    cells = cells or (12 if part == Part.BODY else 16)
    fn = SDFS[part] if part == Part.BODY else (lambda p: SDFS[part](p, extra))
    return taubin_smooth(mesh_sdf_zero_set(fn, cells, part), 4)


def mesh_sdf_zero_set(fn, cells: int, part: Part) -> Mesh:
    lo, hi = np.array([-0.35, 0.0, -0.3]), np.array([0.35, 1.0, 0.3])
    step = (hi - lo).max() / cells
    axes = [np.arange(lo[i] - step, hi[i] + 2 * step, step) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    v, f, _, _ = marching_cubes(fn(grid), 0.0, spacing=(step,) * 3)
    v = v + lo - step
    return Mesh(v, f, label=part, name=part.key)  # scikit-image winds SDF zero sets outward


def stripes(mesh: Mesh) -> Mesh:
    col = np.tile(np.asarray(COLORS[mesh.label], np.float32), (mesh.num_vertices, 1))
    col[np.sin(mesh.vertices[:, 1] * 40) > 0.5] *= 0.55
    return mesh.replace(colors=col)


@pytest.fixture(scope="session")
def standin():
    """``(true, coarse)`` dicts Part -> Mesh."""
    true = {p: stripes(mesh_sdf_zero_set(SDFS[p], 90, p)) for p in PARTS}
    coarse = {p: coarse_part(p) for p in PARTS}
    return true, coarse


def layer_renders(true: dict, cams, resolution: int, parts) -> dict:
    """Flat-shaded renders of the union of ``parts``: rgba (V, H, W, 4) straight alpha, normal, sem."""
    merged = merge_meshes([true[p] for p in parts])
    labels = np.concatenate([np.full(true[p].num_faces, int(p), np.uint8) for p in parts])
    out = render_mesh(merged, cams, resolution, shading="flat", face_labels=labels)
    alpha = out.alpha
    rgb = out.rgb / alpha.clamp(min=1e-6)
    return {"rgba": torch.cat([rgb, alpha], -1).clamp(0, 1), "normal": out.normal, "sem": out.labels,
            "alpha": alpha[..., 0]}


@pytest.fixture(scope="session")
def standin_views(standin):
    """Generation cameras framing the stand-in and its per-layer renders at 192 px."""
    true, _ = standin
    merged = merge_meshes(list(true.values()))
    center, half = frame_bounds(merged.bounds())
    cams = generation_views(center=center, half_size=half)
    layers = {Part.BODY: [Part.BODY], Part.CLOTHES: [Part.BODY, Part.CLOTHES], Part.HAIR: list(PARTS)}
    return cams, {p: layer_renders(true, cams, 192, layers[p]) for p in PARTS}


def write_standin_folder(folder, true: dict, resolution: int = 128) -> None:
    """A dataset character folder (the format of :mod:`stdgen.io.dataset`) for the stand-in:
    the eight evaluation views of the three layer sets, and ``character.glb`` with the true parts."""
    from stdgen.io.dataset import CharacterRenders, LayerRenders, write_renders
    from stdgen.io.glb import write_glb
    from stdgen.render import EVALUATION_AZIMUTHS, evaluation_views
    from stdgen.utils.io import to_uint8

    merged = merge_meshes(list(true.values()))
    center, half = frame_bounds(merged.bounds())
    cams = evaluation_views(center=center, half_size=half)
    sets = {"body": [Part.BODY], "body_clothes": [Part.BODY, Part.CLOTHES], "full": list(PARTS)}
    layers = {}
    for name, parts in sets.items():
        r = layer_renders(true, cams, resolution, parts)
        merged_l = merge_meshes([true[p] for p in parts])
        depth = render_mesh(merged_l, cams, resolution, shading="flat").depth[..., 0]
        rgba = to_uint8(r["rgba"].numpy())
        layers[name] = LayerRenders(rgb=rgba, lit=rgba[..., :3], normal=r["normal"].numpy(), depth=depth.numpy(),
                                    sem=r["sem"].numpy())
    views = []
    for i, az in enumerate(EVALUATION_AZIMUTHS):
        views.append({"name": cams.names[i], "group": "eval", "orthographic": True, "azimuth": az,
                      "elevation": 0.0, "world_to_cam": cams.world_to_cam[i].tolist(), "proj": cams.proj[i].tolist()})
    write_renders(folder, CharacterRenders(views, layers, meta={"resolution": resolution}), preview=False)
    write_glb({p.key: true[p] for p in PARTS}, folder / "character.glb")
