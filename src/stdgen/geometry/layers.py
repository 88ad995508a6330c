"""Multi-layer surface extraction: body, body+clothes and full meshes, and the parts from them.

From one field (``sdf`` negative inside, class probabilities ``probs``):

- the **layer meshes** are the zero sets of the semantic-equivalent SDF (Eq. 10) for the kept
  sets ``P`` of :data:`stdgen.structures.semantics.LAYER_SETS`: ``{body}``, ``{body, clothes}``, everything;
- the **part meshes** are what each layer adds over the one inside it. The region of
  ``{body, clothes}`` minus the region of ``{body}`` is, up to ties, the region where clothes win
  among the parts inside the surface, i.e. the zero set of Eq. 3 with ``s = clothes`` (the
  paper's "equivalently P = {clothes}"), which is what we extract. It closes along the body, so
  the clothes come out as a hollow shell around it; likewise hair around body and clothes.

Each mesh is then cleaned: connected components with less than ``min_component_fraction`` of the
mesh's area (floating bits from noisy semantics) are dropped, and optionally the mesh is
decimated to ``face_budget`` faces with fast-simplification (quadric edge collapse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from stdgen.geometry.grid import Grid, IsoSurface
from stdgen.geometry.semantic_sdf import layer_sdf, semantic_sdf
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import LAYER_SETS, PARTS, Part

__all__ = ["LayerConfig", "LayerMeshes", "absorb_body_specks", "clean_mesh", "decimate", "extract_layers",
           "extract_surface", "layer_scale", "remove_small_components"]


@dataclass
class LayerConfig:
    """How layers are extracted.

    ``method``: ``"flexicubes"`` (differentiable, dual) or ``"marching"`` (scikit-image, fast);
    ``min_component_fraction``: components with a smaller share of their mesh's area are removed;
    ``face_budget``: decimate each part mesh to at most this many faces (None: keep all);
    ``layers``: also extract the three layer meshes (not only the parts);
    ``prob_scale``: the ``scale`` of :mod:`stdgen.geometry.semantic_sdf` (same topology as the
    paper's equations for any value; None = one grid cell, which puts closing surfaces where the
    classes change when the probabilities soften over about a cell, as the voxeliser's do);
    ``body_margin``: the body takes a grid sample only where its probability beats every other
    part's by this much (0: the paper's argmax). A garment thinner than a grid cell leaves samples
    just under its surface where body and garment nearly tie, and with the plain argmax the body
    reaches the outer surface there and shows through the garment in patches; exposed skin, where
    the body wins outright, is unaffected; ``max_body_speck``: exposed body patches of at most this
    many grid samples (samples inside the surface within 1.5 cells of it, connected through faces,
    edges or corners) go to the part that comes second there (0: keep every patch). Where the S-LRM
    is sure of the body under a garment thinner than a cell, the margin does not help: such specks
    are small, while the bare skin people have (face, hands, legs) comes in patches of hundreds.
    """

    method: str = "flexicubes"
    min_component_fraction: float = 0.002
    face_budget: int | None = None
    layers: bool = True
    prob_scale: float | None = None
    body_margin: float = 0.0
    max_body_speck: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("flexicubes", "marching"):
            raise ValueError(f"method: expected flexicubes or marching, got {self.method!r}")
        if not 0 <= self.min_component_fraction < 1:
            raise ValueError(f"min_component_fraction must lie in [0, 1), got {self.min_component_fraction}")
        if self.face_budget is not None and self.face_budget < 4:
            raise ValueError(f"face_budget must be at least 4, got {self.face_budget}")
        if not 0 <= self.body_margin < 1:
            raise ValueError(f"body_margin must lie in [0, 1), got {self.body_margin}")
        if self.max_body_speck < 0:
            raise ValueError(f"max_body_speck must be >= 0, got {self.max_body_speck}")


@dataclass
class LayerMeshes:
    """``layers``: layer-set name (``body``, ``body_clothes``, ``full``) -> Mesh; ``parts``: Part ->
    Mesh (labelled, possibly empty)."""

    layers: dict[str, Mesh] = field(default_factory=dict)
    parts: dict[Part, Mesh] = field(default_factory=dict)


def extract_surface(values, grid: Grid, method: str = "flexicubes") -> IsoSurface:
    """Zero set of ``values`` (X, Y, Z) (numpy or torch) with the chosen extractor."""
    if method == "marching":
        from stdgen.geometry.marching import marching_cubes

        return marching_cubes(values, grid)
    from stdgen.geometry.flexicubes import flexicubes

    t = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values, np.float32))
    with torch.no_grad():
        return flexicubes(t, grid)


def extract_layers(sdf, probs, grid: Grid, config: LayerConfig | None = None) -> LayerMeshes:
    """Layer and part meshes of a semantic field.

    Args:
        sdf: ``(X, Y, Z)`` field, negative inside (numpy or torch).
        probs: ``(X, Y, Z, K)`` class probabilities in :class:`Part` order.
        grid: the sampling grid.
        config: :class:`LayerConfig`.
    """
    config = config or LayerConfig()
    if isinstance(sdf, torch.Tensor):
        sdf = sdf.detach().cpu().numpy()
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().numpy()
    sdf = np.asarray(sdf, np.float32)
    probs = np.asarray(probs, np.float32)
    if config.body_margin:
        probs = probs.copy()
        probs[..., int(Part.BODY)] -= config.body_margin
    if config.max_body_speck:
        probs = absorb_body_specks(sdf, probs, grid, config.max_body_speck)
    out = LayerMeshes()
    scale = layer_scale(grid, config.prob_scale)
    if config.layers:
        for name, kept in LAYER_SETS.items():
            surf = extract_surface(layer_sdf(sdf, probs, kept, scale=scale), grid, config.method)
            mesh = clean_mesh(surf.to_mesh(name=name), config.min_component_fraction)
            out.layers[name] = mesh
    for part in PARTS:
        surf = extract_surface(semantic_sdf(sdf, probs, part, scale=scale), grid, config.method)
        mesh = clean_mesh(surf.to_mesh(label=part, name=part.key), config.min_component_fraction)
        if config.face_budget is not None:
            mesh = decimate(mesh, config.face_budget)
        out.parts[part] = mesh
    return out


def absorb_body_specks(sdf: np.ndarray, probs: np.ndarray, grid: Grid, max_size: int,
                       depth_cells: float = 1.5) -> np.ndarray:
    """``probs`` (X, Y, Z, K) with every small exposed body patch handed to the runner-up part.

    The exposed body is the samples where the body wins that lie inside the surface (``sdf`` (X, Y, Z)
    <= 0) within ``depth_cells`` cells of it; its 26-connected components of at most ``max_size``
    samples swap the body's probability with the runner-up's at those samples, so the extracted
    body sinks under the garment there and the garment closes over it. Returns a new array."""
    from scipy import ndimage

    body = int(Part.BODY)
    depth = depth_cells * float(min(grid.spacing))
    winner = probs.argmax(-1)
    exposed = (winner == body) & (sdf <= 0) & (sdf > -depth)
    labels, count = ndimage.label(exposed, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return probs
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = (sizes <= max_size)
    small[0] = False
    hit = small[labels]
    if not hit.any():
        return probs
    out = probs.copy()
    p = out[hit]  # (N, K); the body wins at each of these samples
    rows = np.arange(len(p))
    second = np.argsort(p, axis=-1)[:, -2]
    p[rows, body], p[rows, second] = p[rows, second], p[rows, body].copy()
    out[hit] = p
    return out


def layer_scale(grid: Grid, prob_scale: float | None = None) -> float:
    """The ``scale`` of the probability term of Eqs. 3 and 10 on ``grid``: ``prob_scale``
    (:attr:`LayerConfig.prob_scale`), or one grid cell when None. Inference (:func:`extract_layers`)
    and the S-LRM's training stage 3 both take it from here."""
    return float(prob_scale) if prob_scale is not None else float(min(grid.spacing))


def clean_mesh(mesh: Mesh, min_component_fraction: float) -> Mesh:
    """Drop unreferenced vertices and components below the area share."""
    if mesh.is_empty:
        return mesh
    return remove_small_components(mesh, min_component_fraction)


def _components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) component id of each face (faces sharing a vertex are connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = faces.astype(np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(num_vertices, num_vertices))
    _, vlabel = connected_components(graph, directed=False)
    return vlabel[f[:, 0]]


def remove_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """Keep the connected components whose area is at least ``min_fraction`` of the total; also
    drops vertices no face uses. Labels and names are kept."""
    if mesh.is_empty:
        return mesh
    comp = _components(mesh.faces, mesh.num_vertices)
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    comp_area = np.bincount(comp, weights=area)
    keep_comp = comp_area >= min_fraction * comp_area.sum()
    return _subset_faces(mesh, keep_comp[comp])


def _subset_faces(mesh: Mesh, keep: np.ndarray) -> Mesh:
    faces = mesh.faces[keep]
    used = np.zeros(mesh.num_vertices, bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    colors = mesh.colors[used] if mesh.colors is not None else None
    return Mesh(mesh.vertices[used], remap[faces], colors=colors, label=mesh.label, name=mesh.name)


def decimate(mesh: Mesh, face_budget: int) -> Mesh:
    """Quadric decimation (fast-simplification) to at most about ``face_budget`` faces."""
    if mesh.num_faces <= face_budget:
        return mesh
    import fast_simplification

    ratio = 1.0 - face_budget / mesh.num_faces
    v, f = fast_simplification.simplify(mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32),
                                        target_reduction=ratio)
    return Mesh(v, f, label=mesh.label, name=mesh.name)
