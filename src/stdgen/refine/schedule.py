"""The multi-layer refinement schedule: body, then clothes (body fixed), then hair (both fixed).

Each stage (:func:`refine_stage`) optimises the vertices of one part, rendered together with the
fixed inner layers in the generation views, against the stage's target masks and normal maps
(:mod:`stdgen.refine.targets`), with the collision loss keeping it outside the inner layers, and
remeshes every few steps toward a target edge length measured in pixels of the render (uniform
first, then adapted to the surface's curvature). Then the ExplicitTarget pass. Around each stage
the dilation steps (:mod:`stdgen.refine.dilation`) carry the layer with its inner layers' motion
(before) and push out what still penetrates (after).

All lengths are metres in the world frame; the paper's normalised frame enters only through
``scale`` (the views' orthographic half-size), see :mod:`stdgen.refine.losses`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.geometry.nearest import NearestPoints
from stdgen.refine.dilation import DilationConfig, post_dilate, pre_dilate
from stdgen.refine.explicit_target import ExplicitTargetConfig, explicit_target_pass
from stdgen.refine.losses import LossWeights, collision_loss, laplacian_loss, mask_loss, masked_normal_loss
from stdgen.refine.optimizer import VertexAdam, VertexAdamConfig
from stdgen.refine.remesh import RemeshConfig, adaptive_edge_length, mesh_edges, remesh
from stdgen.refine.targets import StageTargets, crop_targets, make_targets
from stdgen.render import antialias, antialias_topology, interpolate, rasterize, shade
from stdgen.render.camera import Cameras
from stdgen.structures.mesh import Mesh, vertex_normals
from stdgen.structures.semantics import PARTS, Part
from stdgen.utils.config import ConfigMixin, check_choice, check_range, check_type

#: ``on_step(part, step, total, terms)``: called after each optimisation step of a stage (``terms``:
#: the loss terms, ``total``, ``vertices`` and ``resolution`` of that step).
StepCallback = Callable[[Part, int, int, dict], None]


@dataclass
class StageConfig(ConfigMixin):
    """Settings of one layer's refinement stage."""

    #: Optimisation steps at ``resolution`` (each: render the six views, losses, one vertex update).
    steps: int = 40
    #: Square render resolution of the optimisation (targets are area-averaged to it).
    resolution: int = 256
    #: Last steps at this render resolution (the targets' own, typically), without remeshing: the
    #: main resolution's area-averaged targets and the renderer's analytic coverage disagree by a
    #: fraction of a pixel at every silhouette, which floors what the main phase can reach.
    fine_resolution: int | None = 512
    fine_steps: int = 20
    #: Finest target edge length, in pixels of the optimisation render (main resolution).
    edge_px: float = 1.5
    #: Coarsest target edge length (flat regions, once adaptive), in pixels.
    flat_edge_px: float = 6.0
    #: Fraction of the steps after which target edge lengths adapt to curvature.
    adapt_after: float = 0.5
    #: Adaptive target: an edge may turn the surface normal by about this angle (radians).
    curvature_angle: float = 0.25
    #: The step size decays exponentially from ``optimizer.lr`` to this over the stage.
    lr_final: float = 0.01
    #: Render only a window around the character in each view (same pixels, less work).
    crop: bool = True
    #: Pixels of margin around the crop window (at the main resolution).
    crop_margin_px: int = 12
    #: Remesh every this many steps (0 = never). Every 4th step keeps the quality of every 2nd
    #: (held-out 900000-900005: the same Chamfer gains within noise) at half the remeshing time.
    remesh_every: int = 4
    #: Settings of each remeshing call.
    remesh: RemeshConfig = field(default_factory=RemeshConfig)
    #: The vertex optimiser (its ``lr`` is the stage's starting step size).
    optimizer: VertexAdamConfig = field(default_factory=VertexAdamConfig)
    #: Loss weights.
    weights: LossWeights = field(default_factory=LossWeights)
    #: The ExplicitTarget pass after the image phases.
    explicit_target: ExplicitTargetConfig = field(default_factory=ExplicitTargetConfig)
    #: Taubin (non-shrinking) smoothing iterations at the very end of the stage (0 = none): the
    #: per-pixel normal loss leaves facet-scale noise that costs normal consistency, not position.
    smooth_iterations: int = 5
    #: One weight per view (in the targets' view order) of the silhouette terms (mask and part mask):
    #: view k's squared mask error counts ``w_k`` times (None: all 1, the paper's plain sum). Where the
    #: views disagree, the heavier view's silhouette wins: ``stdgen generate`` weights the front view,
    #: the user's own picture, above the five generated ones (:attr:`PipelineConfig.front_silhouette_weight`).
    mask_view_weights: tuple[float, ...] | None = None
    #: Likewise for the normal-map terms (normal and part normal); None: all 1.
    normal_view_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("mask_view_weights", "normal_view_weights"):
            w = getattr(self, name)
            if w is not None:
                w = tuple(float(x) for x in w)
                if not w or not all(np.isfinite(x) and x >= 0 for x in w):
                    raise ValueError(f"StageConfig.{name}: expected finite weights >= 0 (one per view), got {w}")
                setattr(self, name, w)
        check_range(self, "steps", 1, 10000, integer=True)
        check_range(self, "resolution", 16, 8192, integer=True)
        check_range(self, "fine_resolution", 16, 8192, integer=True, optional=True)
        check_range(self, "fine_steps", 0, 10000, integer=True)
        check_range(self, "edge_px", 0, None, lo_open=True)
        check_range(self, "flat_edge_px", 0, None, lo_open=True)
        check_range(self, "adapt_after", 0, 1)
        check_range(self, "curvature_angle", 0, 3.1416, lo_open=True)
        check_range(self, "lr_final", 0, None, lo_open=True)
        check_choice(self, "crop", (True, False))
        check_range(self, "crop_margin_px", 0, 1000, integer=True)
        check_range(self, "remesh_every", 0, 10000, integer=True)
        check_range(self, "smooth_iterations", 0, 10000, integer=True)
        check_type(self, "remesh", RemeshConfig)
        check_type(self, "optimizer", VertexAdamConfig)
        check_type(self, "weights", LossWeights)
        check_type(self, "explicit_target", ExplicitTargetConfig)


def default_stage_config(part: Part) -> StageConfig:
    """The default schedule's stage: the paper's loss weights (mask 1, normal 1, collision 100); hair adds
    its coarse-mask terms (mask 10, normal 1) as in the paper, and so do clothes here: only the part's
    own mask tells the optimiser that body pixels of the target belong to the clothes (set both to 0
    for the paper's clothes stage)."""
    cfg = StageConfig()
    part = Part.parse(part)
    # The ExplicitTarget pass pulls vertex normals, not positions, so it drifts a little: gentler steps
    # where the image phases already fit (measured on held-out 900000: body Chamfer 0.00040 at lr 0.05,
    # 0.00037 at 0.02).
    cfg.explicit_target = ExplicitTargetConfig(lr=0.02 if part == Part.BODY else 0.03)
    if part in (Part.HAIR, Part.CLOTHES):
        cfg.weights = LossWeights(part_mask=10.0, part_normal=1.0, laplacian=0.05)
        # Outer layers start fat (see stdgen.refine.coarse) and must move by centimetres: more
        # steps, larger steps, and a lower normaliser floor so more than the silhouette vertices
        # move at full speed (measured on held-out character 900000: clothes Chamfer 1.2x -> 2.7x lower);
        # the light Laplacian keeps the faster-moving surface smooth.
        cfg.steps = 60
        cfg.optimizer = VertexAdamConfig(lr=0.5, floor=0.3)
        cfg.lr_final = 0.02
    if part == Part.HAIR:
        # Hair moves farthest (fused strands pulled into shape): more steps, a firmer Laplacian and
        # more final smoothing, which keep its normals from getting worse than the coarse blob's
        # (900000: Chamfer 2.5x -> 2.6x lower, normal consistency 0.73 -> 0.81 against 0.80 before).
        cfg.steps = 80
        cfg.weights.laplacian = 0.15
        cfg.explicit_target = ExplicitTargetConfig(lr=0.05)
        cfg.smooth_iterations = 10
    return cfg


@dataclass
class ScheduleConfig(ConfigMixin):
    """Settings of the whole schedule: one stage per part, and the dilation between them."""

    #: The body's stage.
    body: StageConfig = field(default_factory=lambda: default_stage_config(Part.BODY))
    #: The clothes' stage (body fixed).
    clothes: StageConfig = field(default_factory=lambda: default_stage_config(Part.CLOTHES))
    #: The hair's stage (body and clothes fixed).
    hair: StageConfig = field(default_factory=lambda: default_stage_config(Part.HAIR))
    #: Settings of the dilation steps.
    dilation: DilationConfig = field(default_factory=DilationConfig)
    #: Run the dilation steps around each stage.
    dilate: bool = True

    def __post_init__(self) -> None:
        for name in ("body", "clothes", "hair"):
            check_type(self, name, StageConfig)
        check_type(self, "dilation", DilationConfig)
        check_choice(self, "dilate", (True, False))

    def stage(self, part: Part) -> StageConfig:
        return getattr(self, Part.parse(part).key)


@dataclass
class StageResult:
    """A refined part: ``vertices`` (N, 3), ``faces`` (F, 3), ``origin`` (N, 3) each vertex's position
    on the coarse mesh (traced through remeshing), and a log of the losses."""

    vertices: np.ndarray
    faces: np.ndarray
    origin: np.ndarray
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    penetrating_before_post_dilation: int = 0
    #: Seconds spent per phase (render+loss forward, backward, remesh, explicit target, dilation ...).
    timings: dict[str, float] = field(default_factory=dict)


# -- helpers ----------------------------------------------------------------------------------------------------
@dataclass
class FixedLayers:
    """The fixed inner layers of a stage, merged: numpy copies (vertices, faces), device copies
    (vertices, faces, unit normals) and a nearest-vertex index for the collision loss (on the
    device when it is a GPU)."""

    vertices: np.ndarray
    faces: np.ndarray
    tree: NearestPoints | None
    v_t: torch.Tensor
    f_t: torch.Tensor
    n_t: torch.Tensor

    @classmethod
    def build(cls, layers: list[tuple[np.ndarray, np.ndarray]], device) -> FixedLayers:
        vs, fs, off = [], [], 0
        for v, f in layers:
            vs.append(np.asarray(v, np.float64))
            fs.append(np.asarray(f, np.int64) + off)
            off += len(v)
        v = np.concatenate(vs) if vs else np.zeros((0, 3))
        f = np.concatenate(fs) if fs else np.zeros((0, 3), np.int64)
        n = vertex_normals(v, f) if len(f) else np.zeros((0, 3))
        tree = NearestPoints(v, device) if len(v) else None
        return cls(v, f, tree, torch.as_tensor(v, dtype=torch.float32, device=device),
                   torch.as_tensor(f, dtype=torch.long, device=device),
                   torch.as_tensor(n, dtype=torch.float32, device=device))


def render_stage(x: torch.Tensor, tri: torch.Tensor, fixed: FixedLayers, cameras: Cameras,
                 resolution: tuple[int, int], topology: torch.Tensor | None = None, *, depth: bool = False):
    """Render the optimised part ``x`` (N, 3) / ``tri`` (F, 3) over the fixed layers.

    Returns antialiased ``(normal_map (V, H, W, 3) encoded (n + 1) / 2 and zero off the mask,
    mask (V, H, W, 1), part coverage (V, H, W, 1))``, differentiable with respect to ``x``; with
    ``depth``, a fourth map: camera-space depth (V, H, W, 1) in the cameras' units, 0 where no
    triangle covers the pixel centre (not antialiased; :func:`stdgen.render.shade.linear_depth`).
    The S-LRM's stage 3 renders its FlexiCubes meshes through here (no fixed layers).
    """
    nf = fixed.v_t.shape[0]
    allv = torch.cat([fixed.v_t, x]) if nf else x
    faces = torch.cat([fixed.f_t, tri + nf]) if nf else tri
    clip = cameras.clip(allv)
    rast = rasterize(clip, faces, resolution)
    vn = shade.vertex_normals(allv, faces)
    is_part = torch.cat([torch.zeros(nf, 1, device=x.device), torch.ones(x.shape[0], 1, device=x.device)])
    attr = interpolate(torch.cat([vn, is_part], 1), rast, faces)  # one pass for normals and part
    cov = shade.mask(rast)
    npix = F.normalize(attr[..., :3], dim=-1, eps=1e-12)
    img = torch.cat([(npix * 0.5 + 0.5) * cov, cov, attr[..., 3:4]], -1)
    if topology is None:
        topology = antialias_topology(faces)
    img = antialias(img, rast, clip, faces, topology)
    if depth:
        return img[..., :3], img[..., 3:4], img[..., 4:5], shade.linear_depth(allv, faces, rast, cameras)
    return img[..., :3], img[..., 3:4], img[..., 4:5]


def stage_loss(x, tri, edges, edge_len, fixed: FixedLayers, targets: StageTargets, weights: LossWeights,
               scale: float, topology=None, timings: dict[str, float] | None = None, *,
               mask_view_weights: torch.Tensor | None = None, normal_view_weights: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The refinement loss (Eq. 12 + extras) of the part ``x`` over the fixed layers.

    ``timings``, if given, accumulates the collision term's seconds under ``"collision"``;
    ``mask_view_weights`` / ``normal_view_weights`` (V,) weigh each view's silhouette / normal terms
    (None: all 1)."""
    terms = {}
    if fixed.tree is not None and weights.collision:
        t0 = time.perf_counter()
        terms["collision"] = weights.collision * collision_loss(x, fixed.v_t, fixed.n_t, fixed.tree, scale)
        if timings is not None:
            timings["collision"] = timings.get("collision", 0.0) + time.perf_counter() - t0
    nrm, mask, part = render_stage(x, tri, fixed, targets.cameras, targets.resolution, topology)
    px = targets.frame_pixels
    enc = targets.encoded_normal
    mw, nw = mask_view_weights, normal_view_weights
    terms["mask"] = weights.mask * mask_loss(mask, targets.mask, px, mw)
    terms["normal"] = weights.normal * masked_normal_loss(nrm, enc, targets.mask, px, nw)
    if targets.part_mask is not None and (weights.part_mask or weights.part_normal):
        terms["part_mask"] = weights.part_mask * mask_loss(part, targets.part_mask, px, mw)
        terms["part_normal"] = weights.part_normal * masked_normal_loss(nrm, enc, targets.part_mask, px, nw)
    if weights.laplacian:
        terms["laplacian"] = weights.laplacian * laplacian_loss(x, edges, edge_len)
    total = sum(terms.values())
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()  # one device sync
    return total, dict(zip(terms, values, strict=True))


# -- one stage ----------------------------------------------------------------------------------------------------
def _stage_targets(targets: StageTargets, resolution: int, points: np.ndarray | torch.Tensor, cfg: StageConfig,
                   dev) -> StageTargets:
    """``targets`` resampled to ``resolution`` (area averages) and, if asked, cropped around ``points``."""
    if targets.resolution != (resolution, resolution):
        targets = make_targets(targets.cameras, targets.mask, targets.normal, part_mask=targets.part_mask,
                               rgb=targets.rgb, resolution=resolution, device=dev)
    if cfg.crop:
        targets = crop_targets(targets, points, cfg.crop_margin_px * max(1, resolution // cfg.resolution))
    return targets


def refine_stage(vertices: np.ndarray, faces: np.ndarray, targets: StageTargets, config: StageConfig | None = None,
                 *, fixed: FixedLayers | None = None, origin: np.ndarray | None = None, device="cpu",
                 on_step: Callable[[int, int, dict], None] | None = None) -> StageResult:
    """Optimise one part's mesh against ``targets`` over the ``fixed`` inner layers.

    The part stays on ``device`` from the first step to the end (optimisation, the ExplicitTarget
    pass, the final smoothing); only remeshing runs on the host.

    Args:
        vertices: (N, 3) the part's starting vertices; ``faces`` (F, 3) its triangles (manifold).
        targets: the stage's masks / normal maps / cameras (:class:`StageTargets`), at any resolution
            (resampled to ``config.resolution``, and to ``config.fine_resolution`` for the last steps).
        fixed: the fixed inner layers (None for the body).
        origin: (N, 3) coarse position of each vertex (default: ``vertices``), traced to the result.
        on_step: ``on_step(step, total, terms)`` after each optimisation step (progress display).
    """
    cfg = config or StageConfig()
    dev = torch.device(device)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    clock = time.perf_counter
    fixed = fixed or FixedLayers.build([], dev)
    source = targets
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    phase = _stage_targets(source, cfg.resolution, np.concatenate([v, fixed.vertices]), cfg, dev)
    scale, pixel = phase.scale, phase.pixel
    # Edge lengths are set by the main resolution's pixels; the fine phase only sharpens the view.
    lmin, lmax = cfg.edge_px * pixel, max(cfg.flat_edge_px, cfg.edge_px) * pixel
    attrs = {"origin": np.asarray(origin if origin is not None else v, np.float64).copy()}
    target_len = np.full(len(v), lmin)
    # Bring the coarse mesh to the working resolution before optimising. Remeshing never pinches a
    # vertex, so once a call finds none pinched, later calls skip that check.
    check_fans = True
    for _ in range(3):
        v, f, target_len, attrs, stats = remesh(v, f, target_len, attrs, cfg.remesh, check_fans=check_fans)
        check_fans = check_fans and stats.pinched != 0
    opt = VertexAdam(len(v), dev, cfg.optimizer)
    history: list[dict] = []
    view_weights = {}
    for name in ("mask_view_weights", "normal_view_weights"):
        w = getattr(cfg, name)
        if w is not None:
            if len(w) != len(source.cameras):
                raise ValueError(f"StageConfig.{name}: {len(w)} weights for {len(source.cameras)} views")
            view_weights[name] = torch.tensor(w, dtype=torch.float32, device=dev)

    def upload():
        tri = torch.as_tensor(f, dtype=torch.long, device=dev)
        nf = fixed.v_t.shape[0]
        all_faces = torch.cat([fixed.f_t, tri + nf]) if nf else tri
        edges = torch.as_tensor(mesh_edges(f, len(v)), dtype=torch.long, device=dev)
        return (torch.as_tensor(v, dtype=torch.float32, device=dev), tri, edges,
                torch.as_tensor(target_len, dtype=torch.float32, device=dev), antialias_topology(all_faces))

    x_t, tri_t, edges_t, len_t, topo = upload()
    # The fine phase never renders above the targets' own resolution (nothing to gain there).
    fine_res = min(cfg.fine_resolution or 0, source.resolution[0])
    fine = cfg.fine_steps > 0 and fine_res > cfg.resolution
    total = cfg.steps + (cfg.fine_steps if fine else 0)
    adapt_from = int(cfg.adapt_after * cfg.steps)
    timings = {"setup": clock() - t0, "forward": 0.0, "backward": 0.0, "update": 0.0, "remesh": 0.0}
    for it in range(total):
        if fine and it == cfg.steps:
            t1 = clock()
            pts = torch.cat([x_t.detach(), fixed.v_t])
            phase = _stage_targets(source, fine_res, pts, cfg, dev)
            timings["setup"] += clock() - t1
        if cfg.remesh_every and it and it % cfg.remesh_every == 0 and it < cfg.steps:
            t1 = clock()
            v = x_t.detach().cpu().double().numpy()
            if it >= adapt_from and (it - adapt_from) % (5 * cfg.remesh_every) == 0:
                target_len = adaptive_edge_length(v, f, lmin, lmax, cfg.curvature_angle)
            attrs.update(opt.export_state())
            v, f, target_len, attrs, stats = remesh(v, f, target_len, attrs, cfg.remesh, check_fans=check_fans)
            check_fans = check_fans and stats.pinched != 0
            opt.import_state(attrs, dev)
            x_t, tri_t, edges_t, len_t, topo = upload()
            timings["remesh"] += clock() - t1
        t1 = clock()
        x = x_t.detach().requires_grad_(True)
        loss, terms = stage_loss(x, tri_t, edges_t, len_t, fixed, phase, cfg.weights, scale, topo, timings,
                                 **view_weights)
        t2 = clock()
        (grad,) = torch.autograd.grad(loss, x)
        t3 = clock()
        timings["forward"] += t2 - t1
        timings["backward"] += t3 - t2
        frac = it / max(total - 1, 1)
        lr = cfg.optimizer.lr * (min(cfg.lr_final, cfg.optimizer.lr) / cfg.optimizer.lr) ** frac
        opt.step(x_t, grad, len_t, edges=edges_t, lr=lr)
        timings["update"] += clock() - t3
        terms["total"] = sum(terms.values())
        terms["vertices"] = int(x_t.shape[0])
        terms["resolution"] = int(phase.frame_pixels ** 0.5) if phase.frame_pixels else cfg.resolution
        history.append(terms)
        if on_step is not None:
            on_step(it + 1, total, terms)
    x = x_t.detach()
    t1 = clock()
    if cfg.explicit_target.steps > 0:
        x = explicit_target_pass(
            x, tri_t, phase.cameras, phase.normal, phase.mask, pixel=phase.pixel,
            fixed_vertices=fixed.v_t if len(fixed.faces) else None, fixed_faces=fixed.f_t,
            fixed_normals=fixed.n_t, collision_tree=fixed.tree, scale=scale, config=cfg.explicit_target,
            device=dev)
    timings["explicit_target"] = clock() - t1
    if cfg.smooth_iterations > 0:
        from stdgen.refine.coarse import taubin_smooth_tensor

        x = taubin_smooth_tensor(x, edges_t, cfg.smooth_iterations)
    v = x.cpu().double().numpy()  # the stage's one download of the result
    timings["cpu"] = time.process_time() - cpu0
    return StageResult(v, f, attrs["origin"], history, clock() - t0, timings=timings)


# -- the schedule -------------------------------------------------------------------------------------------------
@dataclass
class RefineResult:
    """Refined parts (``Mesh`` per part that was given), per-part stage results and seconds."""

    meshes: dict[Part, Mesh]
    stages: dict[Part, StageResult]
    seconds: dict[str, float]
    #: Processor seconds of this process per part (wall time on an idle machine, one thread).
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def refine_character(coarse: Mapping[Part, Mesh], targets: Mapping[Part, StageTargets],
                     config: ScheduleConfig | None = None, *, device="cpu", on_step: StepCallback | None = None,
                     on_part_done: Callable[[Part, Mesh], None] | None = None) -> RefineResult:
    """Refine body, then clothes with the body fixed, then hair with body and clothes fixed.

    ``coarse`` maps parts to their coarse meshes (missing or empty parts are skipped);
    ``targets`` holds each present part's :class:`StageTargets`. ``on_part_done(part, mesh)`` is
    called as each part is final (later stages never move it), so a caller can start work on it,
    such as its UV atlas, while the next part is refined. ``on_step(part, step, total, terms)`` is
    called after each optimisation step (:data:`StepCallback`).
    """
    cfg = config or ScheduleConfig()
    cfg.validate()
    dev = torch.device(device)
    done: dict[Part, StageResult] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    meshes: dict[Part, Mesh] = {}
    for part in PARTS:
        mesh = coarse.get(part)
        if mesh is None or mesh.is_empty:
            continue
        if part not in targets:
            raise ValueError(f"no targets for the {part.key}")
        t0 = time.perf_counter()
        c0 = time.process_time()
        inner = [done[p] for p in PARTS if p < part and p in done]
        v0 = np.asarray(mesh.vertices, np.float64)
        v = v0
        if inner and cfg.dilate:
            v = pre_dilate(v0, np.concatenate([r.origin for r in inner]), np.concatenate([r.vertices for r in inner]),
                           cfg.dilation, device=dev)
        t_pre = time.perf_counter() - t0
        fixed = FixedLayers.build([(r.vertices, r.faces) for r in inner], dev)
        result = refine_stage(v, mesh.faces, targets[part], cfg.stage(part), fixed=fixed, origin=v0, device=dev,
                              on_step=None if on_step is None else functools.partial(on_step, part))
        t1 = time.perf_counter()
        if inner and cfg.dilate:
            result.vertices, result.penetrating_before_post_dilation = post_dilate(
                result.vertices, fixed.vertices, fixed.faces, cfg.dilation, device=dev)
        result.timings["dilation"] = t_pre + time.perf_counter() - t1
        result.seconds = time.perf_counter() - t0
        seconds[part.key] = result.seconds
        cpu_seconds[part.key] = time.process_time() - c0
        done[part] = result
        meshes[part] = Mesh(result.vertices, result.faces, label=part, name=part.key)
        if on_part_done is not None:
            on_part_done(part, meshes[part])
    return RefineResult(meshes, done, seconds, cpu_seconds)
