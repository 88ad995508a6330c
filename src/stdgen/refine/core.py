"""Refinement as a library call: coarse part meshes and the generation views in, a textured
:class:`~stdgen.structures.character.Character` out, all in memory.

    character = refine_and_texture(coarse_parts, views, RefineConfig(), device="cuda")

``coarse_parts`` maps each :class:`~stdgen.structures.semantics.Part` to its coarse mesh (what the
S-LRM extracts); ``views`` holds the six generation views as tensors (:class:`RefineViews`): colour,
mask, world normal map, cameras, and optionally part labels. Give one :class:`RefineViews` for every
stage, or a mapping ``Part -> RefineViews`` giving each stage the views of its layer set (the body
against body-only views, the clothes against body + clothes, the hair against the full character:
:data:`~stdgen.refine.targets.STAGE_LAYER_SET`), as ``stdgen refine`` does from a dataset folder.
The body is refined first, then the clothes with the body fixed, then the hair with both fixed
(:func:`stdgen.refine.schedule.refine_character`); then each part is textured from the colours of
its stage's views (:func:`stdgen.refine.texture.texture_part`).

Progress is reported through callbacks (``on_step``, ``on_part_done``); nothing here draws.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from stdgen.refine.atlas import AtlasPool, PendingAtlas
from stdgen.refine.coarse import CoarseConfig
from stdgen.refine.schedule import RefineResult, ScheduleConfig, StepCallback, refine_character
from stdgen.refine.targets import STAGE_LAYER_SET, StageTargets, make_targets
from stdgen.refine.texture import TextureConfig, texture_part
from stdgen.refine.warp import SilhouetteWarpConfig, warp_to_silhouette
from stdgen.render.camera import Cameras
from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part
from stdgen.utils.checks import check_tensor
from stdgen.utils.config import ConfigMixin, check_choice, check_range, check_type

log = logging.getLogger(__name__)


@dataclass
class ReportConfig(ConfigMixin):
    """What ``stdgen refine`` measures for ``report.json`` and draws for ``before_after.png`` (the
    folder wrapper only; :func:`refine_and_texture` ignores it)."""

    #: Measure the parts against the folder's true parts (when it has them).
    metrics: bool = True
    #: Surface samples per mesh for Chamfer / F-score / normal consistency (point-to-surface: fewer
    #: is noisier but not biased; the point-to-point figures' floor falls as 1 / sqrt(points)).
    metric_points: int = 300_000
    #: A vertex counts as penetrating when it lies inside the inner layer deeper than this (metres).
    penetration_tolerance: float = 0.002
    #: Side of each picture in before_after.png.
    picture_resolution: int = 384

    def __post_init__(self) -> None:
        check_choice(self, "metrics", (True, False))
        check_range(self, "metric_points", 1000, 10_000_000, integer=True)
        check_range(self, "penetration_tolerance", 0, None)
        check_range(self, "picture_resolution", 16, 4096, integer=True)


@dataclass
class RefineConfig(ConfigMixin):
    """Everything refinement and texturing do, with their defaults (``stdgen refine``'s settings).

    :func:`refine_and_texture` uses ``schedule`` and ``texture``; the folder wrapper
    (:func:`stdgen.refine.folder.refine_folder`) also ``coarse`` (coarse layers made from a folder's
    true parts) and ``report``.
    """

    #: The refinement schedule: one stage per part, dilation between them.
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    #: The texture bake.
    texture: TextureConfig = field(default_factory=TextureConfig)
    #: The image-plane warp of the refined parts onto one trusted view's silhouette, before the bake
    #: (:mod:`stdgen.refine.warp`; off unless ``warp.view`` is set).
    warp: SilhouetteWarpConfig = field(default_factory=SilhouetteWarpConfig)
    #: Coarse layers from a character's true parts (folder wrapper, without ``--coarse``).
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    #: The folder wrapper's report and picture.
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        check_type(self, "schedule", ScheduleConfig)
        check_type(self, "texture", TextureConfig)
        check_type(self, "warp", SilhouetteWarpConfig)
        check_type(self, "coarse", CoarseConfig)
        check_type(self, "report", ReportConfig)


@dataclass
class RefineViews:
    """V generation views of a layer set, as tensors on one device.

    ``images`` (V, H, W, 3) float colour in [0, 1] (straight, not premultiplied); ``masks``
    (V, H, W) float coverage in [0, 1]; ``normals`` (V, H, W, 3) float unit world-space normals
    (0 off the mask); ``cameras`` the V orthographic :class:`~stdgen.render.camera.Cameras`;
    ``labels`` (V, H, W) uint8 part labels (``BACKGROUND_LABEL`` off the character) or None: with
    labels, each stage also compares the coarse mask of its own part (the paper's hair mask).
    """

    images: torch.Tensor
    masks: torch.Tensor
    normals: torch.Tensor
    cameras: Cameras
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_tensor(self.images, "RefineViews.images", (None, None, None, 3),
                     dtype=(torch.float32, torch.float64, torch.float16))
        v, h, w = self.images.shape[:3]
        check_tensor(self.masks, "RefineViews.masks", (v, h, w), dtype=(torch.float32, torch.float64, torch.float16))
        check_tensor(self.normals, "RefineViews.normals", (v, h, w, 3),
                     dtype=(torch.float32, torch.float64, torch.float16))
        if self.labels is not None:
            check_tensor(self.labels, "RefineViews.labels", (v, h, w), dtype=torch.uint8)
        if len(self.cameras) != v:
            raise ValueError(f"RefineViews.cameras: expected {v} cameras (one per view), got {len(self.cameras)}")

    @classmethod
    def from_renders(cls, renders, layer: str, views: list[int] | None = None) -> RefineViews:
        """The views of ``layer`` (``"body"``, ``"body_clothes"``, ``"full"``) from a dataset folder's
        :class:`~stdgen.io.dataset.CharacterRenders` (default: its six generation views)."""
        from stdgen.errors import InputError

        if layer not in renders.layers:
            raise InputError(f"the character folder has no {layer!r} renders")
        r = renders.layers[layer]
        if r.rgb is None or r.normal is None:
            raise InputError(f"the {layer!r} renders lack the rgb or normal map")
        if views is None:
            try:
                views = renders.view_index("gen")
            except KeyError as exc:
                raise InputError(f"the character folder lacks a generation view ({exc})") from None
        rgba = torch.as_tensor(np.ascontiguousarray(r.rgb[views])).float() / 255.0
        return cls(rgba[..., :3], rgba[..., 3], torch.as_tensor(np.ascontiguousarray(r.normal[views])).float(),
                   renders.cameras(views),
                   None if r.sem is None else torch.as_tensor(np.ascontiguousarray(r.sem[views])))

    def rgba(self, device=None) -> torch.Tensor:
        """(V, H, W, 4) float32 straight-alpha colour and mask."""
        out = torch.cat([self.images.float(), self.masks.float()[..., None]], -1)
        return out if device is None else out.to(device)

    def targets(self, part: Part, *, device="cpu", resolution: int | None = None,
                with_part_mask: bool = True) -> StageTargets:
        """The refinement targets of ``part``'s stage in these views (:func:`make_targets`)."""
        part_mask = None
        if with_part_mask and self.labels is not None:
            part_mask = (self.labels == int(part)).float() * self.masks.float()
        return make_targets(self.cameras, self.masks.float(), self.normals.float(), part_mask=part_mask,
                            resolution=resolution, device=device)


@dataclass
class RefineOutput:
    """What :func:`refine_parts` gives: the textured ``character``; ``textured`` / ``refined`` the
    parts with and without their texture (every part, empty where none was given); the schedule's
    :class:`~stdgen.refine.schedule.RefineResult` (loss histories, per-stage timings); ``seconds``
    and ``cpu_seconds`` per phase (``body``, ``clothes``, ``hair``, ``texture``)."""

    character: Character
    textured: dict[Part, Mesh]
    refined: dict[Part, Mesh]
    result: RefineResult
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]


def _empty(part: Part) -> Mesh:
    return Mesh(np.zeros((0, 3)), np.zeros((0, 3)), label=part, name=part.key)


def stage_views(views: RefineViews | Mapping[Part, RefineViews], part: Part) -> RefineViews:
    """The views ``part``'s stage is compared with and textured from."""
    if isinstance(views, RefineViews):
        return views
    try:
        return views[part]
    except KeyError:
        raise ValueError(f"views: no views for the {part.key} stage (expected the {STAGE_LAYER_SET[part]!r} "
                         "layer set's views)") from None


def refine_parts(coarse_parts: Mapping[Part, Mesh], views: RefineViews | Mapping[Part, RefineViews],
                 config: RefineConfig | None = None, *, device: str | torch.device = "cpu",
                 on_step: StepCallback | None = None,
                 on_part_done: Callable[[Part, Mesh], None] | None = None,
                 on_texture_done: Callable[[Part, Mesh], None] | None = None,
                 texture_views: RefineViews | Mapping[Part, RefineViews] | None = None) -> RefineOutput:
    """:func:`refine_and_texture` with everything it measured (see :class:`RefineOutput`)."""
    cfg = config or RefineConfig()
    cfg.validate()
    dev = torch.device(device)
    coarse = {Part.parse(p): m for p, m in coarse_parts.items()}
    if coarse.get(Part.BODY) is None or coarse[Part.BODY].is_empty:
        raise ValueError("coarse_parts: a non-empty body mesh is required")
    present = [p for p in PARTS if coarse.get(p) is not None and not coarse[p].is_empty]
    targets = {p: stage_views(views, p).targets(p, device=dev) for p in present}
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    # Each part's UV atlas (xatlas, on the host) is made in a helper process as soon as the part is
    # final, while the next part is refined (several helpers: the parts also chart at once); only the
    # bake waits for the schedule's end.
    atlases: dict[Part, PendingAtlas] = {}
    tex = cfg.texture
    background = tex.atlas_in_background and tex.mode == "texture"
    with AtlasPool(tex.atlas_processes) if background else contextlib.nullcontext() as worker:

        def part_done(part: Part, mesh: Mesh) -> None:
            if background and not mesh.is_empty:
                atlases[part] = worker.submit(mesh.vertices, mesh.faces, tex.size, tex.padding, tex.atlas_charts_hint)
            log.debug("refined the %s: %d vertices", part.key, mesh.num_vertices)
            if on_part_done is not None:
                on_part_done(part, mesh)

        result = refine_character(coarse, targets, cfg.schedule, device=dev, on_step=on_step,
                                  on_part_done=part_done)
        seconds.update(result.seconds)
        cpu.update(result.cpu_seconds)
        for p in PARTS:
            seconds.setdefault(p.key, 0.0)
            cpu.setdefault(p.key, 0.0)

        refined: dict[Part, Mesh] = {p: result.meshes.get(p, _empty(p)) for p in PARTS}
        if cfg.warp.view is not None and cfg.warp.steps > 0:
            t0 = time.perf_counter()
            c0 = time.process_time()
            # The whole character's silhouette: the outermost stage's views (or the bake's, finer).
            whole = stage_views(texture_views if texture_views is not None else views, present[-1])
            if cfg.warp.view >= len(whole.cameras):
                raise ValueError(f"RefineConfig.warp.view: {cfg.warp.view} but there are {len(whole.cameras)} views")
            warped = warp_to_silhouette(refined, whole.cameras[cfg.warp.view:cfg.warp.view + 1],
                                        whole.masks[cfg.warp.view].float(), cfg.warp, device=dev)
            refined = warped.parts
            log.debug("warp: silhouette IoU %.4f -> %.4f", warped.iou_before, warped.iou_after)
            seconds["warp"] = time.perf_counter() - t0
            cpu["warp"] = time.process_time() - c0
        # Texture each part from the colours of the layer set its stage was compared with, over the
        # scene of that layer set (depth test: a body texel under a sleeve takes nothing from that view).
        t0 = time.perf_counter()
        c0 = time.process_time()
        textured: dict[Part, Mesh] = {}
        for p in [p for p in PARTS if not refined[p].is_empty]:
            scene = merge_meshes([Mesh(refined[q].vertices, refined[q].faces) for q in PARTS
                                  if q <= p and not refined[q].is_empty])
            sv = stage_views(views if texture_views is None else texture_views, p)
            atlas = atlases[p].result() if p in atlases else None
            textured[p] = texture_part(refined[p], sv.rgba(dev), sv.cameras, scene.vertices, scene.faces, tex,
                                       device=dev, atlas=atlas)
            if on_texture_done is not None:
                on_texture_done(p, textured[p])
    seconds["texture"] = time.perf_counter() - t0
    cpu["texture"] = time.process_time() - c0
    log.info("refined and textured %s in %.1f s", ", ".join(p.key for p in textured), sum(seconds.values()))
    character = Character(body=textured[Part.BODY], clothes=[textured[Part.CLOTHES]] if Part.CLOTHES in textured
                          else [], hair=[textured[Part.HAIR]] if Part.HAIR in textured else [],
                          meta={"source": "stdgen.refine"})
    return RefineOutput(character, textured, refined, result, seconds, cpu)


def refine_and_texture(coarse_parts: Mapping[Part, Mesh], views: RefineViews | Mapping[Part, RefineViews],
                       config: RefineConfig | None = None, *, device: str | torch.device = "cpu",
                       on_step: StepCallback | None = None,
                       on_part_done: Callable[[Part, Mesh], None] | None = None,
                       texture_views: RefineViews | Mapping[Part, RefineViews] | None = None) -> Character:
    """Refine the coarse parts against the views and texture them; return the textured character.

    Args:
        coarse_parts: ``{Part: Mesh}`` coarse body (required), clothes and hair (missing or empty
            parts are skipped), closed manifold meshes in world coordinates (metres).
        views: one :class:`RefineViews` for every stage, or ``{Part: RefineViews}`` per stage.
        config: :class:`RefineConfig` (its ``schedule`` and ``texture``); validated first.
        device: where the parts are optimised and textured (each part stays there for its whole
            stage; remeshing is the only host step).
        on_step: ``on_step(part, step, total, terms)`` after every optimisation step.
        on_part_done: ``on_part_done(part, mesh)`` as each part's geometry is final (untextured).
        texture_views: the views the textures are baked from, if not ``views`` (same cameras, any
            resolution: e.g. the picture at its own size, sharper than refinement needs).

    Returns:
        A :class:`~stdgen.structures.character.Character` in the rest pose, without a skeleton:
        ``body``, ``clothes`` ([] or one mesh), ``hair`` ([] or one mesh), each with ``uvs``,
        ``uv_faces`` and ``texture`` (or vertex ``colors`` when ``config.texture.mode == "vertex"``).
    """
    return refine_parts(coarse_parts, views, config, device=device, on_step=on_step,
                        on_part_done=on_part_done, texture_views=texture_views).character
