"""Coarse layer meshes "the way the S-LRM would give them", and reading given coarse meshes.

Without a trained S-LRM, the refinement starts from the character's true field voxelised at a
coarse grid (64^3 by default, :mod:`stdgen.geometry.voxelize`), from which the three part meshes
are extracted (:mod:`stdgen.geometry.layers`) and smoothed a little (Taubin's non-shrinking
smoothing).

Thin outer layers. The exact field loses a garment thinner than a grid cell (about 3 cm at 64^3 for
a 1.9 m character): no grid vertex lies inside it, so the semantic-equivalent SDF of the clothes
comes out in fragments, and a refinement, which moves vertices but cannot change topology, cannot
bring the missing pieces back. A network's field is smooth instead, and errs on the fat side. So
by default (``outer_thickness``) the clothes and hair are extracted from the layer's *region*
thickened outward: with ``D_k`` the voxeliser's signed distances of the cumulative layer solids,

    f_k = max(D_k - t, -D_{k-1}, eps - (D_{k-1} - D_k))

is negative outside the inner solid, within ``t`` of the layer's outer surface, and only where the
layer really adds something over the inner solid (its surface lies more than ``eps`` outside). Its
zero set is a closed shell from the inner layer out to ``t`` beyond the true surface: complete,
too thick, and left to the refinement to pull in. ``outer_thickness=0`` gives the plain
semantic-equivalent SDF extraction of :mod:`stdgen.geometry.layers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stdgen.errors import InputError
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import PARTS, Part
from stdgen.utils.config import ConfigMixin, check_choice, check_range

#: Mesh file types read from a ``--coarse`` directory (besides one GLB with nodes body/clothes/hair).
MESH_SUFFIXES: tuple[str, ...] = (".glb", ".obj", ".ply", ".stl", ".off")


@dataclass
class CoarseConfig(ConfigMixin):
    """How the coarse layers are made from a character."""

    #: Grid vertices along the longest axis (the paper's S-LRM extracts at about this scale).
    resolution: int = 64
    #: ``"marching"`` (scikit-image, fast) or ``"flexicubes"``.
    method: str = "marching"
    #: Taubin smoothing iterations after extraction (0 = none).
    smooth_iterations: int = 5
    #: Components below this share of a part's area are dropped.
    min_component_fraction: float = 0.01
    #: Clothes and hair are extracted thickened outward by this many grid cells (0: the plain
    #: semantic-equivalent SDF; see the module docstring).
    outer_thickness: float = 1.0
    #: ...where the layer's surface lies more than this (metres) outside the inner layer's.
    outer_presence: float = 0.003

    def __post_init__(self) -> None:
        check_range(self, "resolution", 8, 1024, integer=True)
        check_choice(self, "method", ("marching", "flexicubes"))
        check_range(self, "smooth_iterations", 0, 10000, integer=True)
        check_range(self, "min_component_fraction", 0, 1)
        check_range(self, "outer_thickness", 0, None)
        check_range(self, "outer_presence", 0, None)


def weld(mesh: Mesh, tolerance: float = 1e-7) -> Mesh:
    """Merge vertices closer than ``tolerance`` and drop degenerate and duplicate faces (geometry only)."""
    if mesh.is_empty:
        return Mesh(mesh.vertices, mesh.faces, label=mesh.label, name=mesh.name)
    q = np.round(mesh.vertices.astype(np.float64) / tolerance).astype(np.int64)
    _, first, inv = np.unique(q, axis=0, return_index=True, return_inverse=True)
    faces = inv.reshape(-1)[mesh.faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[ok]
    _, keep = np.unique(np.sort(faces, 1), axis=0, return_index=True)
    faces = faces[np.sort(keep)]
    verts = mesh.vertices[first]
    used = np.zeros(len(verts), bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return Mesh(verts[used], remap[faces], label=mesh.label, name=mesh.name)


def taubin_smooth(mesh: Mesh, iterations: int, lam: float = 0.5, mu: float = -0.53) -> Mesh:
    """Taubin (1995) lambda|mu smoothing with uniform weights: removes voxel steps without shrinking."""
    if iterations <= 0 or mesh.is_empty:
        return mesh
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces.astype(np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.unique(np.sort(e, 1), axis=0)
    n = len(v)
    deg = np.bincount(e.reshape(-1), minlength=n).astype(np.float64)
    for _ in range(iterations):
        for w in (lam, mu):
            acc = np.zeros_like(v)
            for k in range(3):
                acc[:, k] = (np.bincount(e[:, 0], weights=v[e[:, 1], k], minlength=n)
                             + np.bincount(e[:, 1], weights=v[e[:, 0], k], minlength=n))
            lap = acc / np.maximum(deg, 1)[:, None] - v
            v = v + w * lap * (deg > 0)[:, None]
    return mesh.replace(vertices=v.astype(np.float32))


def taubin_smooth_tensor(vertices, edges, iterations: int, lam: float = 0.5, mu: float = -0.53):
    """:func:`taubin_smooth` on the device: ``vertices`` (N, 3) tensor, ``edges`` (E, 2) long tensor
    (each undirected edge once, sorted as :func:`stdgen.refine.remesh.mesh_edges` gives them).

    Computed in float64 in the same order as :func:`taubin_smooth` (bit-identical on the CPU), and
    returned as float32 (N, 3) on the vertices' device, as :func:`taubin_smooth` rounds its result.
    """
    import torch

    if iterations <= 0 or vertices.shape[0] == 0:
        return vertices
    v = vertices.double()
    a, b = edges[:, 0], edges[:, 1]
    n = v.shape[0]
    deg = torch.zeros(n, dtype=torch.float64, device=v.device).index_add_(
        0, edges.reshape(-1), torch.ones(edges.numel(), dtype=torch.float64, device=v.device))
    moves = (deg > 0).double()[:, None]
    div = deg.clamp(min=1)[:, None]
    for _ in range(iterations):
        for w in (lam, mu):
            acc = torch.zeros_like(v).index_add_(0, a, v[b]) + torch.zeros_like(v).index_add_(0, b, v[a])
            lap = acc / div - v
            v = v + w * lap * moves
    return v.float()


def coarse_layers(parts: Mapping[Part, Mesh], config: CoarseConfig | None = None) -> dict[Part, Mesh]:
    """Voxelise the true ``parts`` at a coarse grid and extract the three part meshes from the field.

    Returns ``{Part: Mesh}`` (a part absent from the input, or lost at this resolution, is empty).
    """
    from stdgen.geometry.layers import LayerConfig, extract_layers
    from stdgen.geometry.voxelize import character_grid, voxelize_parts

    cfg = config or CoarseConfig()
    present = {p: m for p, m in parts.items() if m is not None and not m.is_empty}
    if Part.BODY not in present:
        raise InputError("the character has no body mesh to make coarse layers from")
    bounds = np.stack([np.min([m.vertices.min(0) for m in present.values()], 0),
                       np.max([m.vertices.max(0) for m in present.values()], 0)])
    grid = character_grid(bounds, cfg.resolution)
    field = voxelize_parts(present, grid)
    layers = extract_layers(field.sdf, field.probs, field.grid,
                            LayerConfig(method=cfg.method, layers=False,
                                        min_component_fraction=cfg.min_component_fraction))
    if cfg.outer_thickness > 0:
        from stdgen.geometry.layers import clean_mesh, extract_surface

        cell = float(min(grid.spacing))
        for part in (Part.CLOTHES, Part.HAIR):
            if part not in present:
                continue
            values = thickened_layer_field(field.layer_sdf, part, cfg.outer_thickness * cell, cfg.outer_presence)
            surf = extract_surface(values, field.grid, cfg.method)
            layers.parts[part] = clean_mesh(surf.to_mesh(label=part, name=part.key), cfg.min_component_fraction)
    out = {}
    for part in PARTS:
        mesh = layers.parts.get(part)
        if part not in present or mesh is None or mesh.is_empty:
            out[part] = Mesh(np.zeros((0, 3)), np.zeros((0, 3)), label=part, name=part.key)
            continue
        out[part] = taubin_smooth(weld(mesh), cfg.smooth_iterations).replace(label=part, name=part.key)
    return out


def thickened_layer_field(layer_sdf: np.ndarray, part: Part, thickness: float, presence: float) -> np.ndarray:
    """(X, Y, Z) field of ``part``'s region thickened outward by ``thickness`` (module docstring).

    ``layer_sdf`` (K, X, Y, Z): signed distances of the cumulative layer solids (negative inside).
    """
    k = int(Part.parse(part))
    if k == 0:
        raise ValueError("the body has no inner layer to thicken from")
    inner, outer = layer_sdf[k - 1].astype(np.float32), layer_sdf[k].astype(np.float32)
    return np.maximum.reduce([outer - thickness, -inner, presence - (inner - outer)])


def read_coarse_dir(directory: str | Path) -> dict[Part, Mesh]:
    """Coarse meshes from a directory: one ``*.glb`` with nodes body / clothes / hair, or one file per
    part named ``body.*``, ``clothes.*``, ``hair.*`` (any of :data:`MESH_SUFFIXES`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory (--coarse)")
    found: dict[Part, Path] = {}
    for part in PARTS:
        for suffix in MESH_SUFFIXES:
            path = directory / f"{part.key}{suffix}"
            if path.is_file():
                found[part] = path
                break
    out: dict[Part, Mesh] = {}
    if found:
        for part, path in found.items():
            out[part] = weld(_read_single(path, part))
    else:
        glbs = sorted(directory.glob("*.glb"))
        if not glbs:
            raise InputError(f"{directory}: no coarse meshes (expected body.obj/clothes.obj/hair.obj or a .glb "
                             "with nodes body, clothes, hair)")
        from stdgen.io.glb import read_parts

        for part, mesh in read_parts(glbs[0]).items():
            out[part] = weld(mesh)
    if Part.BODY not in out or out[Part.BODY].is_empty:
        raise InputError(f"{directory}: the coarse meshes have no body")
    for part in PARTS:
        out.setdefault(part, Mesh(np.zeros((0, 3)), np.zeros((0, 3)), label=part, name=part.key))
    return out


def _read_single(path: Path, part: Part) -> Mesh:
    if path.suffix == ".glb":
        from stdgen.io.glb import read_glb

        nodes = read_glb(path)
        if part.key in nodes:
            return nodes[part.key].replace(label=part, name=part.key)
    import trimesh

    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types on malformed files
        raise InputError(f"{path}: unreadable mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError(f"{path}: holds no triangles")
    vertices = np.asarray(loaded.vertices)
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices).all(axis=1)).sum())
        raise InputError(f"{path}: {bad} vertices with a non-finite coordinate (NaN or infinity)")
    return Mesh(vertices, np.asarray(loaded.faces), label=part, name=part.key)
