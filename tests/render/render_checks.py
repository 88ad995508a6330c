"""Scenes and fast-path-versus-reference checks shared by the CPU tests, the GPU tests and the
Triton-interpreter subprocess (``python tests/render/render_checks.py triton``)."""

from __future__ import annotations

import sys

import torch

from stdgen.commands.render_demo import torus_knot
from stdgen.render import (
    antialias,
    antialias_topology,
    barycentrics,
    interpolate,
    orthographic_cameras,
    perspective_cameras,
    rasterize,
    visibility,
)

#: float32 tolerances. Values: one rounding chain per pixel. VJPs: per-vertex sums of many pixel
#: contributions in different orders, through 1 / s of sliver triangles.
VALUE_RTOL = 1e-4
VJP_RTOL = 1e-3
AGREEMENT = 0.999


def knot_scene(faces: int = 4000, views: int = 3, res: int = 64, device="cpu", ortho: bool = False) -> dict:
    """A torus knot (self-occluding, closed) seen from ``views`` cameras."""
    mesh = torus_knot(faces)
    az = torch.linspace(-150, 150, views)
    if ortho:
        cams = orthographic_cameras(az, 15.0, half_size=1.0, device=device)
    else:
        cams = perspective_cameras(az, 15.0, 2.6, device=device)
    v = torch.from_numpy(mesh.vertices).to(device)
    tri = torch.from_numpy(mesh.faces).to(device)
    return {"pos": cams.clip(v).contiguous(), "tri": tri, "attr": torch.from_numpy(mesh.colors).to(device),
            "topo": antialias_topology(tri, v), "res": (res, res), "ranges": None}


def edge_scene(res: int = 40, device="cpu") -> dict:
    """The awkward cases in one scene: a background quad bigger than the image, a floor triangle
    crossing the near plane (a vertex behind the eye), a huge sliver, a degenerate triangle, a
    back-facing triangle, an exact duplicate (depth tie), a triangle wholly behind the eye, and a
    small knot in front; two perspective views."""
    knot = torus_knot(300, radius=0.5, tube=0.1)
    v = torch.from_numpy(knot.vertices)
    tri = torch.from_numpy(knot.faces).long()
    n = v.shape[0]
    extra_v = torch.tensor([
        [-4.0, -4.0, -1.5], [4.0, -4.0, -1.5], [4.0, 4.0, -1.5], [-4.0, 4.0, -1.5],  # background quad
        [0.0, -0.6, 8.0], [3.0, -0.6, -6.0], [-3.0, -0.6, -6.0],  # floor through the near plane
        [-3.0, 0.9, 0.3], [3.0, 0.92, 0.3], [0.0, 0.95, 0.31],  # huge sliver
        [0.1, 0.1, 0.5], [0.2, 0.2, 0.5], [0.3, 0.3, 0.5],  # degenerate (collinear)
        [0.6, -0.2, 0.6], [0.3, 0.3, 0.6], [0.9, 0.3, 0.6],  # clockwise: back-facing
        [0.0, 0.0, 20.0], [1.0, 0.0, 20.0], [0.0, 1.0, 20.0],  # behind the eye
        [0.6, -0.3, 0.5], [0.9, 0.2, 0.5], [0.3, 0.2, 0.5],  # counter-clockwise, just behind it
    ])
    extra_f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15],
                            [19, 20, 21], [16, 17, 18]]) + n
    dup = tri[:40]  # exact duplicates of the first knot faces: ties go to the lower index
    v = torch.cat([v, extra_v]).to(device)
    tri = torch.cat([tri, extra_f, dup]).to(device)
    cams = perspective_cameras([0.0, 35.0], [5.0, 20.0], 2.6, near=0.5, far=12.0, device=device)
    gen = torch.Generator().manual_seed(5)
    return {"pos": cams.clip(v).contiguous(), "tri": tri, "attr": torch.rand(v.shape[0], 3, generator=gen).to(device),
            "topo": antialias_topology(tri, v), "res": (res, res), "ranges": None}


def ranges_scene(res: int = 32, device="cpu") -> dict:
    """Range mode: two meshes concatenated, each drawn into its own image."""
    a = torus_knot(300, radius=0.5, tube=0.12)
    b = torus_knot(400, p=3, q=2, radius=0.4, tube=0.1)
    cams = perspective_cameras([20.0], 10.0, 2.6)
    va = torch.from_numpy(a.vertices)
    vb = torch.from_numpy(b.vertices) + torch.tensor([0.1, 0.0, 0.0])
    v = torch.cat([va, vb])
    tri = torch.cat([torch.from_numpy(a.faces), torch.from_numpy(b.faces) + va.shape[0]]).long()
    pos = cams.clip(v)[0].contiguous().to(device)
    ranges = torch.tensor([[0, a.num_faces], [a.num_faces, b.num_faces], [0, 0]])
    gen = torch.Generator().manual_seed(6)
    return {"pos": pos, "tri": tri.to(device), "attr": torch.rand(v.shape[0], 2, generator=gen).to(device),
            "topo": antialias_topology(tri, v).to(device), "res": (res, res), "ranges": ranges}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).double().norm() / b.double().norm().clamp_min(1e-30))


def compare_backend(backend: str, sc: dict, cull: bool = False) -> dict[str, float]:
    """Fast path ``backend`` versus the reference on one scene. Returns the face-id agreement, the
    largest value differences where ids agree, and relative errors of outputs and VJPs (random
    cotangents), the differentiable ops evaluated on the reference's face map so that a rare
    visibility difference does not blur them."""
    pos, tri, attr, topo, res, ranges = sc["pos"], sc["tri"], sc["attr"], sc["topo"], sc["res"], sc["ranges"]
    out: dict[str, float] = {}
    f_ref = visibility(pos, tri, res, ranges=ranges, cull_backfaces=cull, backend="torch")
    f_fast = visibility(pos, tri, res, ranges=ranges, cull_backfaces=cull, backend=backend)
    out["agreement"] = float((f_ref == f_fast).float().mean())
    out["coverage"] = float((f_ref >= 0).float().mean())
    r_ref = rasterize(pos, tri, res, ranges=ranges, cull_backfaces=cull, backend="torch")
    r_fast = rasterize(pos, tri, res, ranges=ranges, cull_backfaces=cull, backend=backend)
    same = (r_ref[..., 3] == r_fast[..., 3]) & (r_ref[..., 3] > 0)
    out["rast_agreement"] = float((r_ref[..., 3] == r_fast[..., 3]).float().mean())
    out["uv_maxdiff"] = float((r_ref[..., :2] - r_fast[..., :2])[same].abs().max()) if same.any() else 0.0
    out["zw_maxdiff"] = float((r_ref[..., 2] - r_fast[..., 2])[same].abs().max()) if same.any() else 0.0

    gen = torch.Generator().manual_seed(11)
    results = {}
    for be in ("torch", backend):
        p = pos.detach().clone().requires_grad_(True)
        a = attr.detach().clone().requires_grad_(True)
        rast = barycentrics(p, tri, f_ref, ranges=ranges, backend=be)
        col = interpolate(a, rast, tri, backend=be)
        aa = antialias(col, rast, p, tri, topo, ranges=ranges, backend=be)
        if be == "torch":
            c_r = torch.randn(rast.shape, generator=gen).to(rast.device)
            c_i = torch.randn(col.shape, generator=gen).to(col.device)
            c_a = torch.randn(aa.shape, generator=gen).to(aa.device)
            cots = (c_r, c_i, c_a)
        c_r, c_i, c_a = cots
        c_r = c_r.clone()
        c_r[..., 3] = 0  # the face-id channel carries no gradient
        loss = (rast * c_r).sum() + (col * c_i).sum() + (aa * c_a).sum()
        loss.backward()
        results[be] = (rast.detach(), col.detach(), aa.detach(), p.grad.detach(), a.grad.detach())
    ref, fast = results["torch"], results[backend]
    for name, x, y in zip(("rast", "interpolate", "antialias", "vjp_pos", "vjp_attr"), fast, ref):
        out[name] = _rel(x, y)
    return out


def in_float64(sc: dict) -> dict:
    """The scene with float64 positions and attributes: the fast path's arithmetic then matches the
    reference's to ~1e-12, which checks the algebra itself rather than float32 conditioning."""
    return {**sc, "pos": sc["pos"].double(), "attr": sc["attr"].double()}


def assert_backend_matches(backend: str, sc: dict, cull: bool = False, *, uv_tol: float = 1e-3,
                           value_rtol: float = VALUE_RTOL, vjp_rtol: float = VJP_RTOL) -> dict[str, float]:
    """Assert ``compare_backend``'s metrics within tolerances (float32 defaults, see above).

    ``uv_tol`` bounds the largest barycentric difference at any pixel: float32 barycentrics of a
    sliver triangle are ill-conditioned (u = b0 / s with a small s), so a GPU's fused multiply-adds
    against the CPU's separate roundings can differ there by ~1e-2 in a dense scene; the relative
    norms over all pixels stay tight."""
    m = compare_backend(backend, sc, cull)
    assert m["agreement"] >= AGREEMENT, m
    assert m["rast_agreement"] >= AGREEMENT, m
    assert m["uv_maxdiff"] < uv_tol and m["zw_maxdiff"] < 1e-4, m
    for k in ("rast", "interpolate", "antialias"):
        assert m[k] < value_rtol, (k, m)
    for k in ("vjp_pos", "vjp_attr"):
        assert m[k] < vjp_rtol, (k, m)
    return m


def main(argv: list[str]) -> int:
    """``render_checks.py BACKEND [DEVICE] [--quick] [--small-boxes]``: run the checks for one backend,
    print the metrics, fail (exit 1, an assertion) on the first miss. ``--quick``: the awkward-triangle
    and range-mode scenes only, small. ``--small-boxes`` (triton): smaller triangle size classes."""
    quick = "--quick" in argv
    args = [a for a in argv if not a.startswith("--")]
    backend = args[0]
    device = args[1] if len(args) > 1 else "cpu"
    if backend == "triton" and "--small-boxes" in argv:
        # Shrink the size classes so that a small image still sends triangles down all three
        # visibility paths (small: box <= 4 px, medium: <= 12 px, huge: larger or behind the eye).
        from stdgen.render import _triton

        _triton._MAXS, _triton._MEDIUM = 2, 12
    if quick:
        scenes = [("edge", edge_scene(20, device), False), ("ranges", ranges_scene(16, device), False)]
    else:
        scenes = [("knot", knot_scene(1200, 2, 32, device), False),
                  ("knot_ortho", knot_scene(800, 2, 24, device, True), False),
                  ("edge", edge_scene(32, device), False), ("edge_cull", edge_scene(32, device), True),
                  ("ranges", ranges_scene(24, device), False)]
    for name, sc, cull in scenes:
        m = assert_backend_matches(backend, sc, cull)
        print(name, {k: round(v, 7) for k, v in m.items()})
    empty = rasterize(scenes[0][1]["pos"], scenes[0][1]["tri"][:0], (8, 8), backend=backend)
    assert empty.shape == (2, 8, 8, 4) and not empty.any()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
