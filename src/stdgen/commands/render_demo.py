"""A test figure made by code, and the ``render-demo`` picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stdgen.structures.mesh import Mesh

# Capsules (start, end, radius, colour) of a small A-posed figure, 1.6 m tall, facing +Z.
_SKIN, _SHIRT, _PANTS = (0.98, 0.84, 0.74), (0.25, 0.45, 0.85), (0.2, 0.2, 0.3)
_HAIR, _SHOE = (0.55, 0.3, 0.2), (0.3, 0.15, 0.1)
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
    # scikit-image already winds faces outward for a negative-inside SDF.
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


def torus_knot(faces: int = 100_000, p: int = 2, q: int = 3, radius: float = 0.6, tube: float = 0.12,
               colors: bool = True) -> Mesh:
    """A (p, q) torus-knot tube of about ``faces`` triangles (a benchmark and test mesh made by code:
    closed, outward-wound, with many self-occlusions). The tube's cross-section has ``sides`` segments
    and its length ``length`` segments, ``2 * sides * length`` faces in all."""
    sides = max(3, int(round((faces / 10) ** 0.5 / 1.2)))
    length = max(3, int(round(faces / (2 * sides))))
    t = np.linspace(0, 2 * np.pi, length, endpoint=False)

    def curve(s):
        r = radius * (1 + 0.4 * np.cos(q * s))
        return np.stack([r * np.cos(p * s), 0.4 * radius * np.sin(q * s), r * np.sin(p * s)], -1)

    c = curve(t)
    tangent = curve(t + 1e-4) - curve(t - 1e-4)
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True)
    ref = np.cross(tangent, c - c.mean(0))  # a normal direction that turns with the knot
    n1 = np.cross(ref, tangent)
    n1 /= np.linalg.norm(n1, axis=-1, keepdims=True)
    n2 = np.cross(tangent, n1)
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.cos(a)[None, :, None] * n1[:, None] + np.sin(a)[None, :, None] * n2[:, None]  # (L, S, 3)
    verts = (c[:, None] + tube * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(length), np.arange(sides), indexing="ij")
    v00 = i * sides + j
    v10 = ((i + 1) % length) * sides + j
    v01 = i * sides + (j + 1) % sides
    v11 = ((i + 1) % length) * sides + (j + 1) % sides
    quads = np.stack([v00, v10, v11, v01], -1).reshape(-1, 4)
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    mesh_normals = ring.reshape(-1, 3)
    # Orient outward: the ring normal must agree with the face normal of the first triangle.
    v = verts[tri[0]]
    if np.dot(np.cross(v[1] - v[0], v[2] - v[0]), mesh_normals[tri[0, 0]]) < 0:
        tri = tri[:, ::-1]
    col = None
    if colors:
        col = (0.5 + 0.5 * np.stack([np.cos(t * p), np.sin(t * q), np.cos(t * (p + q))], -1))
        col = np.repeat(col, sides, 0).astype(np.float32)
    return Mesh(verts, np.ascontiguousarray(tri), normals=mesh_normals, colors=col, name="torus_knot")


def blob_target() -> Mesh:
    """The optimisation demo's target: an ellipsoid with a bump on top (no side of it is a circle)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = np.asarray(s.vertices, np.float32) * np.array([0.75, 0.45, 0.35], np.float32)
    v[:, 1] += 0.25 * np.exp(-((v[:, 0] - 0.3) ** 2) / 0.05) * (v[:, 1] > 0)
    return Mesh(v, s.faces, name="blob")


def _masks_and_normals(cams, verts: torch.Tensor, tri: torch.Tensor, topo: torch.Tensor, res: int):
    """Antialiased mask (V, H, W, 1) and world normals times mask (V, H, W, 3), differentiable."""
    from stdgen.render import shade
    from stdgen.render.antialias import antialias
    from stdgen.render.rasterize import rasterize

    clip = cams.clip(verts)
    rast = rasterize(clip, tri, (res, res))
    mask = shade.mask(rast)
    normal = shade.pixel_normals(verts, tri, rast)
    out = antialias(torch.cat([mask, normal * mask], -1), rast, clip, tri, topo)
    return out[..., :1], out[..., 1:]


def fit_sphere(target: Mesh, steps: int = 60, res: int = 40, lr: float = 0.01, smooth: float = 2.0,
               radius: float = 0.55) -> tuple[Mesh, Mesh]:
    """Deform an icosphere (642 vertices) so that its antialiased masks and normal maps in the six
    generation views match the target's (L1), with uniform-Laplacian smoothing; Adam on vertex
    offsets. Returns (start, result). The renderer's gradients at work: nothing else pulls."""
    import trimesh

    from stdgen.render.antialias import antialias_topology
    from stdgen.render.camera import generation_views

    cams = generation_views(half_size=1.0)
    tv = torch.from_numpy(target.vertices)
    ttri = torch.from_numpy(target.faces).long()
    with torch.no_grad():
        t_mask, t_normal = _masks_and_normals(cams, tv, ttri, antialias_topology(ttri), res)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    v0 = torch.tensor(np.asarray(sphere.vertices), dtype=torch.float32)
    tri = torch.tensor(np.asarray(sphere.faces), dtype=torch.int64)
    topo = antialias_topology(tri)
    edges = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # each edge once per direction
    degree = torch.zeros(len(v0)).index_add(0, edges[:, 0], torch.ones(len(edges)))[:, None]
    offset = torch.zeros_like(v0, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=lr)
    for _ in range(steps):
        v = v0 + offset
        mask, normal = _masks_and_normals(cams, v, tri, topo, res)
        loss = (mask - t_mask).abs().mean() + (normal - t_normal).abs().mean()
        mean_nbr = torch.zeros_like(v).index_add(0, edges[:, 0], v[edges[:, 1]]) / degree
        loss = loss + smooth * (mean_nbr - v).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    start = Mesh(v0.numpy(), tri.numpy(), name="sphere")
    return start, Mesh((v0 + offset).detach().numpy(), tri.numpy(), name="fitted")


def optimise_picture(path: str | Path, steps: int = 200, res: int = 64, size: int = 160) -> Path:
    """Write the optimisation demo's picture: normal maps of the start sphere, the fitted mesh and
    the target (rows) in the six generation views (columns)."""
    from stdgen.render import shade
    from stdgen.render.antialias import antialias_topology
    from stdgen.render.camera import generation_views
    from stdgen.utils.io import image_grid, save_png

    target = blob_target()
    start, fitted = fit_sphere(target, steps=steps, res=res)
    cams = generation_views(half_size=1.0)
    rows = []
    with torch.no_grad():
        for mesh in (start, fitted, target):
            v = torch.from_numpy(mesh.vertices)
            t = torch.from_numpy(mesh.faces).long()
            m, n = _masks_and_normals(cams, v, t, antialias_topology(t), size)
            rgb = shade.encode_normals(n / m.clamp_min(1e-6), m, 1.0)
            rows.append([rgb[k].numpy() for k in range(len(cams))])
    save_png(Path(path), image_grid(rows))
    return Path(path)
