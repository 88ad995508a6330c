"""The renderer's gradients at work: a sphere deformed toward a target mesh's masks and normal
maps from the six generation views (``stdgen.commands.render_demo.fit_sphere``)."""

import numpy as np
import torch
import trimesh

from stdgen.commands.render_demo import blob_target, fit_sphere


def _surface_points(mesh, n: int = 3000) -> torch.Tensor:
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    return torch.tensor(trimesh.sample.sample_surface(tm, n, seed=0)[0], dtype=torch.float32)


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    d = torch.cdist(a, b)
    return float(d.min(1).values.pow(2).mean() + d.min(0).values.pow(2).mean())


def test_sphere_deforms_onto_target_masks_and_normals():
    torch.manual_seed(0)
    target = blob_target()
    start, fitted = fit_sphere(target, steps=60, res=40)
    points = _surface_points(target)
    before = _chamfer(_surface_points(start), points)
    after = _chamfer(_surface_points(fitted), points)
    assert np.isfinite(after)
    print(f"Chamfer {before:.5f} -> {after:.5f} ({before / after:.1f}x)")
    assert before / after >= 5.0, (before, after)  # measured: ~24x
