"""Six views -> a layered ``Character`` with the S-LRM: one forward pass, then the field on a grid
and the semantic-equivalent SDF + FlexiCubes (:func:`stdgen.geometry.layers.extract_layers`).

No optimisation: the body, the (hollow) clothes and the hair come out of one field. Meshes are
returned in world units: ``center + half_size * p`` for a normalised point ``p`` (the framing of
the input views), vertex-coloured from the field's colour decoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from stdgen.geometry.grid import Grid
from stdgen.geometry.layers import LayerConfig, LayerMeshes, extract_layers
from stdgen.geometry.volume import composite
from stdgen.models.slrm.model import SLRM
from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import LAYER_SETS, Part
from stdgen.utils.checks import check_tensor

__all__ = ["ReconstructConfig", "ReconstructOutput", "field_on_grid", "reconstruct"]


@dataclass
class ReconstructConfig:
    """How the field becomes meshes.

    Attributes:
        grid_resolution: grid vertices along each axis of the normalised box ``[-bound, bound]^3``.
        bound: half side of the box sampled (the triplane covers ``[-1, 1]^3``).
        chunk: points per field evaluation (bounds memory).
        layers: the extraction settings (method, component cleaning, face budget).
        color_samples: vertex colours are **rendered**: each vertex's colour is the field's volume
            rendering (Eqs. 6-8, the part's own layer set: body alone, body + clothes, everything)
            of a short ray that comes in along the vertex normal, ``color_samples`` samples over
            ``[-color_depth, +color_depth]`` around the vertex: the colour the field was trained to
            show there. 0: the colour field read at the vertex itself (a field trained with 3D
            supervision puts its zero set where the rendering weights are not centred, and read
            there its colour shows contour-like bands).
        color_depth: half length of those rays, in normalised units (the box is ``[-1, 1]^3``).
        rendered_labels: the class at the surface is **rendered**, as training supervised it:
            ``"body"``: at each grid sample where the body wins within 1.5 cells under the
            surface, a ray like the colour rays (``color_samples`` samples over
            ``+-color_depth``, all parts kept) comes in along the SDF gradient through the nearest
            surface point; where the class it renders is clothes or hair, that part takes the
            sample (its probability swapped with the body's). Under a garment thinner than a cell
            the body wins the grid samples (a tight glove or sock came out as skin) while the
            rendering says garment. ``"all"``: every part's samples in that band take the rendered
            class. ``"off"``: the argmax at the grid samples (the paper's Eq. 10 as is).
    """

    grid_resolution: int = 128
    bound: float = 1.0
    chunk: int = 1 << 18
    layers: LayerConfig = field(default_factory=lambda: LayerConfig(method="flexicubes", layers=False))
    color_samples: int = 16
    color_depth: float = 0.03
    rendered_labels: str = "off"

    def __post_init__(self) -> None:
        if not 16 <= self.grid_resolution <= 512:
            raise ValueError(f"ReconstructConfig.grid_resolution: {self.grid_resolution} is out of range [16, 512]")
        if not 0 < self.bound <= 1:
            raise ValueError(f"ReconstructConfig.bound: {self.bound} is out of range (0, 1]")
        if self.chunk < 1024:
            raise ValueError(f"ReconstructConfig.chunk: {self.chunk} must be at least 1024")
        if not 0 <= self.color_samples <= 256:
            raise ValueError(f"ReconstructConfig.color_samples: {self.color_samples} is out of range [0, 256]")
        if self.rendered_labels not in ("off", "body", "all"):
            raise ValueError(f"ReconstructConfig.rendered_labels: {self.rendered_labels!r}; expected off, body or all")
        if not 0 < self.color_depth <= 0.5:
            raise ValueError(f"ReconstructConfig.color_depth: {self.color_depth} is out of range (0, 0.5]")


@dataclass
class ReconstructOutput:
    """``character`` (parts body / clothes / hair, vertex-coloured, world units), ``meshes`` the
    extraction's part meshes in the normalised frame, ``seconds`` per step (forward, field, extract,
    colour)."""

    character: Character
    meshes: LayerMeshes
    seconds: dict[str, float]


@torch.no_grad()
def field_on_grid(model: SLRM, planes: torch.Tensor, grid: Grid, chunk: int = 1 << 18):
    """The field of one character's ``planes`` ``(1, 3, C, R, R)`` at every grid vertex: ``sdf``
    ``(X, Y, Z)`` and class probabilities ``(X, Y, Z, K)`` (float32, on the planes' device)."""
    check_tensor(planes, "planes", (1, 3, None, None, None))
    dev = planes.device
    axes = [torch.arange(n, device=dev, dtype=torch.float32) * s + o
            for n, s, o in zip(grid.shape, grid.spacing, grid.origin)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sdf = torch.empty(pts.shape[0], device=dev)
    probs = torch.empty(pts.shape[0], model.config.num_classes, device=dev)
    for s in range(0, pts.shape[0], chunk):
        out = model.query(planes, pts[None, s:s + chunk])
        sdf[s:s + chunk] = out.sdf[0].float()
        probs[s:s + chunk] = torch.softmax(out.logits[0].float(), -1)
    return sdf.reshape(grid.shape), probs.reshape(*grid.shape, -1)


@torch.no_grad()
def occupied_grid(model: SLRM, planes: torch.Tensor, config: ReconstructConfig, coarse: int = 33) -> Grid:
    """The fine grid (spacing ``2 bound / (grid_resolution - 1)``) cropped to where a coarse pass
    finds the surface (SDF below two coarse cells), plus a margin of two coarse cells. The field is
    only evaluated there: a character fills about a quarter of its box."""
    box = Grid.cube(coarse, config.bound)
    sdf, _ = field_on_grid(model, planes, box, config.chunk)
    near = (sdf < 2 * box.spacing[0]).nonzero()
    spacing = 2 * config.bound / (config.grid_resolution - 1)
    if len(near) == 0:
        return Grid.cube(config.grid_resolution, config.bound)
    origin = np.asarray(box.origin)
    lo = origin + (near.amin(0).cpu().numpy() - 2) * box.spacing[0]
    hi = origin + (near.amax(0).cpu().numpy() + 2) * box.spacing[0]
    lo = np.maximum(lo, -config.bound)
    hi = np.minimum(hi, config.bound)
    # Snap to the full grid's lattice, so a crop samples the same points as the whole cube would.
    lo_i = np.floor((lo + config.bound) / spacing).astype(int)
    hi_i = np.ceil((hi + config.bound) / spacing).astype(int)
    hi_i = np.maximum(hi_i, lo_i + 1)
    return Grid(tuple(int(n) for n in hi_i - lo_i + 1), tuple(-config.bound + lo_i * spacing), (spacing,) * 3)


@torch.no_grad()
def relabel_exposed_body(model: SLRM, planes: torch.Tensor, sdf: torch.Tensor, probs: torch.Tensor, grid: Grid,
                         config: ReconstructConfig, depth_cells: float = 1.5, parts: str = "body"
                         ) -> tuple[torch.Tensor, int]:
    """``probs`` ``(X, Y, Z, K)`` with the exposed body (``parts="all"``: every exposed sample)
    handed to the part the field **renders** there (see ``ReconstructConfig.rendered_labels``);
    ``sdf`` ``(X, Y, Z)`` on ``grid``. Returns the new probabilities and the number of samples that
    changed hands."""
    body = int(Part.BODY)
    spacing = torch.tensor(grid.spacing, device=sdf.device, dtype=torch.float32)
    current = probs.argmax(-1)
    band = (sdf <= 0) & (sdf > -depth_cells * float(spacing.min()))
    if parts == "body":
        band &= current == body
    idx = band.nonzero()
    if len(idx) == 0 or min(grid.shape) < 2:
        return probs, 0
    grads = torch.gradient(sdf, spacing=tuple(float(x) for x in grid.spacing))
    n = torch.stack([g[band] for g in grads], -1)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    x = torch.tensor(grid.origin, device=sdf.device, dtype=torch.float32) + idx.float() * spacing
    surface = x - sdf[band][:, None] * n  # the nearest surface point (sdf < 0: outwards)
    _, opacity, rendered, _ = render_along_normals(model, planes, surface, n, "full", config,
                                                   config.color_samples or 16)
    winner = rendered.argmax(-1)
    was = current[band]
    flip = (winner != was) & (opacity > 0.5)
    if not bool(flip.any()):
        return probs, 0
    out = probs.clone()
    sel = idx[flip]
    p = out[sel[:, 0], sel[:, 1], sel[:, 2]]  # (M, K)
    rows = torch.arange(len(p), device=p.device)
    w, v = winner[flip], was[flip]
    pv, pw = p[rows, v].clone(), p[rows, w].clone()
    p[rows, v], p[rows, w] = pw, pv
    out[sel[:, 0], sel[:, 1], sel[:, 2]] = p
    return out, int(flip.sum())


#: The layer set whose rendering shows each part's own surface (Eqs. 6-8): the parts inside it kept.
PART_LAYER_SET: dict[Part, str] = {Part.BODY: "body", Part.CLOTHES: "body_clothes", Part.HAIR: "full"}


@torch.no_grad()
def render_along_normals(model: SLRM, planes: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
                         layer_set: str, config: ReconstructConfig, samples: int):
    """The field's rendering (layer set ``layer_set``) of a short ray per point ``(P, 3)``, P >= 1, that comes
    in along ``-normal`` (unit ``(P, 3)``) from ``color_depth`` outside the point to ``color_depth``
    inside, ``samples`` samples. Returns colour ``(P, 3)`` (premultiplied), opacity ``(P,)``, class
    distribution ``(P, K)`` (sums to the opacity) and the colour field at the middle sample ``(P, 3)``."""
    s, d = samples, config.color_depth
    t = (torch.arange(s, device=points.device, dtype=torch.float32) + 0.5) / s * 2 * d  # (S,)
    out: list[tuple[torch.Tensor, ...]] = []
    step = max(1, config.chunk // s)
    for i in range(0, points.shape[0], step):
        v, n = points[i:i + step].float(), normals[i:i + step].float()
        pts = (v + n * d)[:, None] - n[:, None] * t[None, :, None]  # (k, S, 3)
        f = model.query(planes, pts.reshape(1, -1, 3))
        k = v.shape[0]
        rgb = f.rgb.float().reshape(k, s, 3)
        b = composite(f.sigma.float().reshape(k, s), rgb, t.expand(k, s),
                      logits=f.logits.float().reshape(k, s, -1), kept=LAYER_SETS[layer_set])
        out.append((b.color, b.opacity, b.semantics, rgb[:, s // 2]))
    return tuple(torch.cat(parts) for parts in zip(*out))


@torch.no_grad()
def rendered_vertex_colors(model: SLRM, planes: torch.Tensor, vertices: torch.Tensor, normals: torch.Tensor,
                           layer_set: str, config: ReconstructConfig) -> torch.Tensor:
    """Colours ``(V, 3)`` float32 of vertices ``(V, 3)`` with unit normals ``(V, 3)`` (normalised frame):
    the field's rendering of layer set ``layer_set`` along a ray entering along ``-normal`` from
    ``color_depth`` outside the vertex to ``color_depth`` inside, ``color_samples`` samples (see
    :class:`ReconstructConfig`). Rays the field leaves empty keep the colour at the vertex."""
    color, opacity, _, at_vertex = render_along_normals(model, planes, vertices, normals, layer_set, config,
                                                        config.color_samples)
    op = opacity[:, None]
    return torch.where(op > 0.05, color / op.clamp_min(1e-4), at_vertex).clamp(0, 1)


@torch.no_grad()
def reconstruct(model: SLRM, views: torch.Tensor, world_to_cam: torch.Tensor, proj: torch.Tensor, *,
                center=(0.0, 0.0, 0.0), half_size: float = 1.0, config: ReconstructConfig | None = None,
                name: str = "reconstruction") -> ReconstructOutput:
    """Reconstruct one character.

    Args:
        model: a trained :class:`SLRM` (LoRA merged or not).
        views: ``(V, C, H, W)`` input views in [0, 1] on the model's device (the six generation views).
        world_to_cam, proj: ``(V, 4, 4)`` cameras in the **normalised** frame.
        center, half_size: the views' framing, to return world units.
        config: :class:`ReconstructConfig`.

    Returns:
        :class:`ReconstructOutput`.
    """
    config = config or ReconstructConfig()
    check_tensor(views, "views", (None, model.config.in_channels, model.config.image_size, model.config.image_size))
    dev = views.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    dtype = next(model.parameters()).dtype
    planes = model.encode(views[None].to(dtype), world_to_cam.to(dev), proj.to(dev))
    sync()
    seconds["forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = occupied_grid(model, planes, config)
    sdf, probs = field_on_grid(model, planes, grid, config.chunk)
    if config.rendered_labels != "off":
        probs, _ = relabel_exposed_body(model, planes, sdf, probs, grid, config, parts=config.rendered_labels)
    sync()
    seconds["field"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    meshes = extract_layers(sdf, probs, grid, config.layers)
    seconds["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    c = np.asarray(center, np.float32).reshape(3)
    parts: dict[Part, Mesh] = {}
    for part, mesh in meshes.parts.items():
        colors = None
        if len(mesh.vertices):
            q = torch.from_numpy(np.ascontiguousarray(mesh.vertices, np.float32)).to(dev)
            if config.color_samples:
                n = torch.from_numpy(np.ascontiguousarray(mesh.vertex_normals(), np.float32)).to(dev)
                colors = rendered_vertex_colors(model, planes, q, n, PART_LAYER_SET[part], config).cpu().numpy()
            else:
                colors = model.query(planes, q[None]).rgb[0].float().cpu().numpy()
        parts[part] = Mesh(vertices=(c + float(half_size) * mesh.vertices).astype(np.float32), faces=mesh.faces,
                           colors=colors, label=part, name=part.key)
    seconds["colour"] = time.perf_counter() - t0
    character = Character(body=parts[Part.BODY],
                          clothes=[parts[Part.CLOTHES]] if len(parts[Part.CLOTHES].faces) else [],
                          hair=[parts[Part.HAIR]] if len(parts[Part.HAIR].faces) else [],
                          meta={"source": name, "center": c.tolist(), "half_size": float(half_size)})
    return ReconstructOutput(character, meshes, seconds)
