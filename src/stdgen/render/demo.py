"""A test figure made by code, and the ``render-demo`` picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stdgen.geometry.mesh import Mesh

# Capsules (start, end, radius, colour) of a small A-posed figure, 1.6 m tall, facing +Z.
_SKIN, _SHIRT, _PANTS, _HAIR, _SHOE = (0.98, 0.84, 0.74), (0.25, 0.45, 0.85), (0.2, 0.2, 0.3), (0.55, 0.3, 0.2), (0.3, 0.15, 0.1)
_CAPSULES = [
    ((0.0, 1.40, 0.0), (0.0, 1.40, 0.0), 0.13, _SKIN),  # head
    ((0.0, 1.45, -0.03), (0.0, 1.44, -0.03), 0.135, _HAIR),  # hair cap (behind the face)
    ((0.0, 1.22, 0.0), (0.0, 1.30, 0.0), 0.045, _SKIN),  # neck
    ((0.0, 0.95, 0.0), (0.0, 1.15, 0.0), 0.14, _SHIRT),  # torso
    ((0.0, 0.86, 0.0), (0.0, 0.90, 0.0), 0.13, _PANTS),  # hips
    ((0.13, 1.16, 0.0), (0.33, 0.96, 0.0), 0.045, _SHIRT),  # left upper arm (A-pose, 45 degrees down)
    ((0.33, 0.96, 0.0), (0.50, 0.79, 0.0), 0.038, _SKIN),  # left forearm
    ((-0.13, 1.16, 0.0), (-0.33, 0.96, 0.0), 0.045, _SHIRT),
    ((-0.33, 0.96, 0.0), (-0.50, 0.79, 0.0), 0.038, _SKIN),
    ((0.07, 0.82, 0.0), (0.09, 0.45, 0.0), 0.065, _PANTS),  # left thigh
    ((0.09, 0.45, 0.0), (0.10, 0.08, 0.0), 0.05, _PANTS),  # left shin
    ((0.10, 0.04, 0.02), (0.10, 0.04, 0.10), 0.045, _SHOE),  # left foot
    ((-0.07, 0.82, 0.0), (-0.09, 0.45, 0.0), 0.065, _PANTS),
    ((-0.09, 0.45, 0.0), (-0.10, 0.08, 0.0), 0.05, _PANTS),
    ((-0.10, 0.04, 0.02), (-0.10, 0.04, 0.10), 0.045, _SHOE),
]


def _capsule_sdf(p: np.ndarray, a, b, r) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    ab = b - a
    denom = max(float(ab @ ab), 1e-12)
    t = np.clip(((p - a) @ ab) / denom, 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) - r


def demo_figure(resolution: int = 96) -> Mesh:
    """A capsule figure (head, hair cap, torso, A-posed arms, legs, shoes) as one watertight mesh
    with vertex colours, meshed by marching cubes over a smooth union of capsule SDFs."""
    from skimage.measure import marching_cubes

    lo, hi = np.array([-0.62, -0.02, -0.2]), np.array([0.62, 1.6, 0.22])
    step = (hi - lo).max() / resolution
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    d = np.stack([_capsule_sdf(grid, a, b, r) for a, b, r, _ in _CAPSULES])
    k = 0.02  # smooth-min blend radius: soft joints instead of creases
    sdf = -k * np.log(np.exp(-d / k).sum(0))
    verts, faces, normals, _ = marching_cubes(sdf, 0.0, spacing=(step, step, step))
    verts = verts + lo
    faces = faces[:, ::-1]  # skimage winds them inward for this sign convention
    dv = np.stack([_capsule_sdf(verts, a, b, r) for a, b, r, _ in _CAPSULES])
    colors = np.array([c for *_, c in _CAPSULES], np.float32)[dv.argmin(0)]
    return Mesh(verts, faces, colors=colors, name="demo_figure")


def render_demo(out_dir: str | Path, resolution: int = 256, device: str = "auto", backend: str = "auto") -> Path:
    """Render the demo figure in the six generation views; write ``views.png`` (rows: colour,
    normal, depth, mask). Returns the path of the picture."""
    from stdgen.render.camera import frame_bounds, generation_views
    from stdgen.render.scene import render_mesh
    from stdgen.utils.device import resolve_device
    from stdgen.utils.io import image_grid, save_png

    dev = resolve_device(device)
    mesh = demo_figure()
    center, half = frame_bounds(mesh.bounds())
    cams = generation_views(center=center, half_size=half, device=dev)
    with torch.no_grad():
        out = render_mesh(mesh, cams, resolution, shading="toon", backend=backend)
    colour = out.composite(1.0).cpu().numpy()
    normal = out.normal_rgb(1.0).cpu().numpy()
    alpha = out.alpha.cpu().numpy()
    depth = out.depth.cpu().numpy()[..., 0]
    rows = [[], [], [], []]
    for v in range(len(cams)):
        m = out.rast[v, ..., 3].cpu().numpy() > 0
        dv = depth[v]
        near, far = (dv[m].min(), dv[m].max()) if m.any() else (0.0, 1.0)
        dimg = np.where(m, 1.0 - 0.8 * (dv - near) / max(far - near, 1e-6), 0.0)
        rows[0].append(colour[v])
        rows[1].append(normal[v])
        rows[2].append(np.repeat(dimg[..., None], 3, -1))
        rows[3].append(np.repeat(alpha[v], 3, -1))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "views.png"
    save_png(path, image_grid(rows))
    return path
