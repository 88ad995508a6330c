"""The evaluation protocol: what is rendered, aligned and compared for one character.

**3D (the paper's Table 1 protocol).** The predicted character (``PRED/<id>/character.glb``,
nodes body / clothes / hair) is rendered at the ground truth's eight evaluation views
(orthographic, elevation 0, 45-degree steps, the ground truth's own cameras and resolution)
exactly as the dataset renders ground truth (:func:`stdgen.render.batch.render_jobs`:
unlit colour, antialiased alpha, world normals, semantic labels) and quantised to 8 bits as the
stored truth is. The truth goes through the same path: its ``character.glb`` is rendered the same
way (``EvalConfig.truth="render"``, the default), so ground truth scored against itself gives
exactly 1 on every image metric. Both GLBs are read piece by piece
(:func:`load_character`: each garment and hair piece keeps its own texture, at full resolution, as
the dataset's renderer sees them); merging a part's pieces first would resample textures (packed
side by side) or bake them to vertex colours (a textured piece beside an untextured one), which
scored a plaid shirt 0.88 masked SSIM against itself. ``truth="stored"`` compares with the
folder's stored renders instead (they differ from the re-render by at most one 8-bit level at a
few pixels: the skinned GLB's round trip moves vertices by about 1e-7 m). Each view is shifted
horizontally to the ground truth by mask registration (:mod:`stdgen.eval.registration`), then
compared over a white background: SSIM and PSNR of the whole image, their masked versions over the
union of both masks, silhouette IoU, normal angle error where both have a surface, per-part IoU
(pooled over the eight views) and semantic pixel accuracy; LPIPS (per view, averaged), CLIP
similarity (front ground-truth view against each rendered view) and FID features when the user gave
local weights.

**2D multi-view** (optional): generated views stored beside the prediction as sprite sheets
``mv_rgb.png`` (RGBA or RGB, the six generation views side by side in the order of
``stdgen.render.GENERATION_AZIMUTHS``: -90, -45, 0, 45, 90, 180) and ``mv_normal.png`` (world
normals as ``(n + 1) / 2``) are compared with the ground truth's generation views, unregistered.

**Geometry and 3D decomposition**: :mod:`stdgen.geometry.metrics` against the true parts in the
ground truth's ``character.glb``; hollowness and penetration of the predicted parts.

**Input-view fidelity** (pictures without 3D truth): the prediction rendered from the front
orthographic camera framed as the dataset frames its views (``frame_bounds`` of the
prediction's bounds, margin 1.1, azimuth 0) against the picture: silhouette IoU, masked SSIM/PSNR.

:func:`view_metrics` is the Python API training code calls on a validation batch of tensors; the
protocol uses the same function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stdgen.errors import InputError
from stdgen.eval import decomposition as dec
from stdgen.eval import image as im
from stdgen.eval.registration import horizontal_shifts, shift_images
from stdgen.geometry.metrics import DEFAULT_POINTS, DEFAULT_THRESHOLDS, character_geometry_metrics
from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import BACKGROUND_LABEL, PARTS, Part
from stdgen.utils.config import ConfigMixin, check_choice, check_range

#: File name of the predicted character in a prediction folder (and of the truth in a dataset folder).
CHARACTER_FILE = "character.glb"
#: Optional generated views in a prediction folder (sprite sheets of the six generation views).
MV_RGB_FILE = "mv_rgb.png"
MV_NORMAL_FILE = "mv_normal.png"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: ``on_progress(name, done, total)``: a run's progress, after each character or picture.
ProgressCallback = Callable[[str, int, int], None]

log = logging.getLogger(__name__)


@dataclass
class EvalConfig(ConfigMixin):
    """Settings of an evaluation run (round-trips through ``to_dict`` / ``from_dict``)."""

    #: Grey level images are composited on for SSIM / PSNR / LPIPS / CLIP / FID (white, as the paper's).
    background: float = 1.0
    #: Align 3D renders by horizontal mask registration...
    register: bool = True
    #: ...within this fraction of the image width.
    max_shift: float = 0.25
    #: Chamfer / F-score / normal consistency...
    geometry: bool = True
    #: ...with this many surface samples per character...
    points: int = DEFAULT_POINTS
    #: ...at these F-score thresholds (fractions of the true height).
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    #: Clothes hollowness and layer penetration...
    volume: bool = True
    #: ...on a grid of this many cells along the body's longest side.
    hollowness_resolution: int = 64
    #: Input-view renders are framed like the dataset's views, with this margin.
    margin: float = 1.1
    #: Where to render and compare.
    device: str = "cpu"
    #: The rasteriser's visibility backend.
    backend: str = "auto"
    #: Seed of the surface sampling.
    seed: int = 0
    #: ``"render"``: the truth's views are rendered from its ``character.glb`` through the same path as
    #: the prediction's (truth against itself scores exactly 1); ``"stored"``: the folder's stored renders.
    truth: str = "render"
    #: Scale and move the prediction so that its bounding box has the truth's height, lowest point
    #: and horizontal centre before anything is compared (a picture carries no absolute size: a
    #: pipeline from one picture must assume one; the paper's protocol compares normalised renders).
    fit_scale: bool = False

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        check_range(self, "background", 0, 1)
        check_choice(self, "register", (True, False))
        check_range(self, "max_shift", 0, 1)
        check_choice(self, "geometry", (True, False))
        check_range(self, "points", 100, 100_000_000, integer=True)
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"EvalConfig.thresholds: expected fractions in (0, 1], got {self.thresholds}")
        check_choice(self, "volume", (True, False))
        check_range(self, "hollowness_resolution", 8, 1024, integer=True)
        check_range(self, "margin", 1, 10)
        check_range(self, "seed", 0, None, integer=True)
        check_choice(self, "truth", ("render", "stored"))
        check_choice(self, "fit_scale", (True, False))


@dataclass
class ViewSet:
    """Images of V views of one character (numpy, CPU), as compared.

    ``rgb`` (V, H, W, 3) float32 composited over the background; ``alpha`` (V, H, W) float32;
    ``normal`` (V, H, W, 3) float32 world normals (0 off the surface) or None; ``sem`` (V, H, W)
    uint8 labels or None; ``front`` the index of the front (azimuth 0) view, CLIP's reference.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    normal: np.ndarray | None = None
    sem: np.ndarray | None = None
    front: int = 0


@dataclass
class CharacterEval:
    """One character's result: ``metrics`` (name -> float; NaN = undefined), the compared
    images when asked for (``true_views``, ``pred_views`` registered; for pictures), and
    per-view FID features (``features[kind]`` = (true (V, D), pred (V, D)))."""

    name: str
    metrics: dict[str, float]
    true_views: ViewSet | None = None
    pred_views: ViewSet | None = None
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


# -- the Python API on tensors -----------------------------------------------------------------------
def view_metrics(pred_rgb: torch.Tensor, true_rgb: torch.Tensor, pred_mask: torch.Tensor, true_mask: torch.Tensor,
                 *, pred_normal: torch.Tensor | None = None, true_normal: torch.Tensor | None = None,
                 pred_labels: torch.Tensor | None = None, true_labels: torch.Tensor | None = None,
                 register: bool = False, max_shift: int | None = None, background: float = 1.0,
                 lpips=None) -> dict[str, torch.Tensor]:
    """Image metrics of a batch of views, one value per view.

    Args:
        pred_rgb, true_rgb: ``(..., H, W, 3)`` colour in [0, 1] already composited over the
            constant ``background``.
        pred_mask, true_mask: ``(..., H, W)`` coverage in [0, 1].
        pred_normal, true_normal: optional ``(..., H, W, 3)`` unit normals (0 off the surface).
        pred_labels, true_labels: optional ``(..., H, W)`` uint8 part labels (``BACKGROUND_LABEL`` off).
        register: shift each predicted view horizontally to maximise mask overlap first
            (``max_shift`` pixels at most, default a quarter of the width).
        lpips: an optional :class:`stdgen.eval.perceptual.LPIPS` network.

    Returns:
        ``(...)`` float64 tensors: ``ssim``, ``psnr``, ``ssim_masked``, ``psnr_masked`` (over the
        union of the masks), ``mask_iou``, ``shift`` (pixels; 0 unless registered); with normals
        ``normal_angle_deg`` (where both have a surface); with labels ``semantic_accuracy`` and
        ``iou_body`` / ``iou_clothes`` / ``iou_hair`` (NaN where a part is absent from both); with
        ``lpips``, ``lpips``. Average with :func:`nanmean_metrics`.
    """
    # Always in float32, whatever the caller's autocast: SSIM's variances cancel catastrophically in
    # bf16 (a trainer's validation inside autocast once reported SSIM -0.33).
    with torch.autocast(true_rgb.device.type, enabled=False):
        return _view_metrics(pred_rgb.float(), true_rgb.float(), pred_mask, true_mask, pred_normal=pred_normal,
                             true_normal=true_normal, pred_labels=pred_labels, true_labels=true_labels,
                             register=register, max_shift=max_shift, background=background, lpips=lpips)


def _view_metrics(pred_rgb, true_rgb, pred_mask, true_mask, *, pred_normal, true_normal, pred_labels, true_labels,
                  register, max_shift, background, lpips) -> dict[str, torch.Tensor]:
    lead = tuple(true_rgb.shape[:-3])
    h, w = true_rgb.shape[-3:-1]
    flat = lambda x, tail: None if x is None else x.reshape(-1, h, w, *tail)
    p_rgb, t_rgb = flat(pred_rgb, (3,)), flat(true_rgb, (3,))
    p_m, t_m = flat(pred_mask, ()).float(), flat(true_mask, ()).float()
    p_n, t_n = flat(pred_normal, (3,)), flat(true_normal, (3,))
    p_l, t_l = flat(pred_labels, ()), flat(true_labels, ())
    if p_rgb.shape != t_rgb.shape or p_m.shape[0] != t_rgb.shape[0]:
        raise ValueError(f"view_metrics: shapes differ: pred {tuple(pred_rgb.shape)}, true {tuple(true_rgb.shape)}, "
                         f"masks {tuple(pred_mask.shape)}, {tuple(true_mask.shape)}")
    if register:
        p_rgb, p_m, p_n, p_l, shifts = register_views(t_m, p_rgb, p_m, p_n, p_l, max_shift=max_shift,
                                                      background=background)
    else:
        shifts = torch.zeros(t_rgb.shape[0], dtype=torch.long, device=t_rgb.device)
    union = (p_m > 0.5) | (t_m > 0.5)
    # One SSIM map and one error map serve the plain and the masked values.
    smap = im.ssim_map(p_rgb, t_rgb, background=background)
    err = im.squared_error(p_rgb, t_rgb)
    out = {
        "ssim": im.reduce_ssim_map(smap),
        "psnr": im.psnr_from_mse(im.mse(p_rgb, t_rgb, error=err)),
        "ssim_masked": im.reduce_ssim_map(smap, union),
        "psnr_masked": im.psnr_from_mse(im.mse(p_rgb, t_rgb, union, error=err)),
        "mask_iou": im.mask_iou(p_m, t_m),
        "shift": shifts.double(),
    }
    if p_n is not None and t_n is not None:
        both = (p_n.norm(dim=-1) > 0.5) & (t_n.norm(dim=-1) > 0.5)
        out["normal_angle_deg"] = im.normal_angle_error(p_n, t_n, both)
    if p_l is not None and t_l is not None:
        fg = (p_l != BACKGROUND_LABEL) | (t_l != BACKGROUND_LABEL)
        agree = ((p_l == t_l) & fg).flatten(1).sum(1).double()
        out["semantic_accuracy"] = agree / fg.flatten(1).sum(1).double()
        for part in PARTS:
            out[f"iou_{part.key}"] = im.mask_iou(p_l == int(part), t_l == int(part))
    if lpips is not None:
        from stdgen.eval.perceptual import lpips_distance

        out["lpips"] = lpips_distance(lpips, p_rgb, t_rgb).to(t_rgb.device)
    return {k: v.reshape(lead) for k, v in out.items()}


def register_views(true_mask: torch.Tensor, pred_rgb: torch.Tensor, pred_mask: torch.Tensor,
                   pred_normal: torch.Tensor | None = None, pred_labels: torch.Tensor | None = None, *,
                   max_shift: int | None = None, background: float = 1.0):
    """Shift predicted ``(B, H, W, ...)`` views horizontally onto ``true_mask`` ``(B, H, W)``.

    Returns ``(rgb, mask, normal, labels, shifts)``, the maps shifted (background, 0, 0 and
    ``BACKGROUND_LABEL`` shifted in) and the ``(B,)`` shifts in pixels.
    """
    shifts = horizontal_shifts(true_mask, pred_mask, max_shift)
    move = lambda x, fill: None if x is None else shift_images(x, shifts, fill=fill)
    return (move(pred_rgb, background), move(pred_mask, 0), move(pred_normal, 0),
            move(pred_labels, BACKGROUND_LABEL), shifts)


def nanmean_metrics(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Average each metric over its views, skipping NaN (NaN if all are)."""
    out = {}
    for k, v in metrics.items():
        v = v.double().reshape(-1)
        ok = ~torch.isnan(v)
        out[k] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


# -- loading -----------------------------------------------------------------------------------------
def load_parts(path: str | Path) -> dict[Part, Mesh]:
    """The parts of a character GLB (nodes ``body``, ``clothes``, ``hair``; a missing node is an empty
    part). Raises :class:`InputError` naming the file if it is missing, malformed or empty."""
    from stdgen.io.glb import read_parts

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing (a character folder must hold {CHARACTER_FILE})")
    parts = read_parts(path)
    if all(m.is_empty for m in parts.values()):
        raise InputError(f"{path}: no geometry in the nodes body, clothes, hair")
    return parts


def load_character(path: str | Path):
    """A character GLB as a :class:`~stdgen.structures.character.Character`, piece by piece: every
    garment and hair piece keeps its own texture (never resampled into a merged atlas or baked to
    vertex colours), skinned GLBs come back in the pose they hold. Raises :class:`InputError` naming
    the file if it is missing, malformed or empty."""
    from stdgen.io.glb import read_character_glb

    path = Path(path)
    parts = load_parts(path)  # the file's checks and errors
    try:
        return read_character_glb(path)
    except InputError:  # e.g. parts without a body node: render what there is
        return Character.from_parts(parts)


def render_parts(parts, cameras, resolution: int, *, background: float = 1.0,
                 device="cpu", backend: str = "auto") -> ViewSet:
    """Render the full character exactly as the dataset renders ground truth, 8-bit quantised.

    ``parts``: a :class:`~stdgen.structures.character.Character` (pieces kept apart, as
    :func:`load_character` reads it: what the protocol renders) or ``{Part: Mesh}``. Returns a
    :class:`ViewSet` (colour composited over ``background``).
    """
    from stdgen.io.dataset import decode_normal, encode_normal
    from stdgen.render.batch import RenderJob, render_jobs, scene_from_character, to_rgba8

    v = len(cameras)
    character = parts if isinstance(parts, Character) else Character.from_parts(parts)
    try:
        scene = scene_from_character(character)
    except ValueError:  # no geometry at all
        z = np.zeros((v, resolution, resolution), np.float32)
        return ViewSet(np.full((v, resolution, resolution, 3), background, np.float32), z,
                       np.zeros((v, resolution, resolution, 3), np.float32),
                       np.full((v, resolution, resolution), BACKGROUND_LABEL, np.uint8))
    with torch.inference_mode():
        out = render_jobs([RenderJob(scene, cameras, ("full",))], resolution, device=device, backend=backend,
                          maps=("alpha", "rgb", "normal", "sem"))
        rgba = to_rgba8(out["rgb"], out["alpha"])
        normal = out["normal"].cpu().numpy()
        sem = out["sem"].cpu().numpy()
    # Normals through the dataset's 8-bit encoding too, so an exact prediction scores 0 degrees.
    normal = decode_normal(encode_normal(normal, sem != BACKGROUND_LABEL))
    return rgba_viewset(rgba, background, normal, sem)


def rgba_viewset(rgba: np.ndarray, background: float, normal=None, sem=None) -> ViewSet:
    """A :class:`ViewSet` from straight-alpha RGBA uint8 ``(V, H, W, 4)`` (or RGB, taken as opaque)."""
    rgba = np.asarray(rgba)
    if rgba.shape[-1] == 4:
        a = rgba[..., 3].astype(np.float32) / 255
    else:
        a = np.ones(rgba.shape[:-1], np.float32)
    rgb = rgba[..., :3].astype(np.float32) / 255
    comp = rgb * a[..., None] + background * (1 - a[..., None])
    return ViewSet(comp.astype(np.float32), a, normal, sem)


def _true_viewset(renders, index: list[int], background: float, maps=("rgb", "normal", "sem")) -> ViewSet:
    full = renders.layers["full"]
    return rgba_viewset(full.rgb[index], background,
                        None if full.normal is None or "normal" not in maps else full.normal[index],
                        None if full.sem is None or "sem" not in maps else full.sem[index])


def _t(x, device):
    return None if x is None else torch.from_numpy(np.ascontiguousarray(x)).to(device)


# -- one character -----------------------------------------------------------------------------------
def compare_views(pred: ViewSet, true: ViewSet, *, register: bool, max_shift: float, background: float,
                  device="cpu", models=None, prefix: str = "") -> tuple[dict[str, float], ViewSet, dict]:
    """Metrics of one character's V views; returns (metrics, the registered prediction, FID features).

    Per-part IoU is pooled over the views (:func:`stdgen.eval.decomposition.part_iou`); the other
    image metrics are means over the views.
    """
    w = true.rgb.shape[2]
    both_normals = pred.normal is not None and true.normal is not None
    t_rgb, t_alpha = _t(true.rgb, device), _t(true.alpha, device)
    p_rgb, p_alpha = _t(pred.rgb, device), _t(pred.alpha, device)
    p_n = _t(pred.normal, device) if both_normals else None
    p_l = _t(pred.sem, device) if pred.sem is not None else None
    if register:
        p_rgb, p_alpha, p_n, p_l, shifts = register_views(t_alpha, p_rgb, p_alpha, p_n, p_l,
                                                          max_shift=int(round(max_shift * w)),
                                                          background=background)
    else:
        shifts = torch.zeros(len(true.rgb), dtype=torch.long)
    res = view_metrics(p_rgb, t_rgb, p_alpha, t_alpha, pred_normal=p_n,
                       true_normal=_t(true.normal, device) if both_normals else None,
                       background=background, lpips=getattr(models, "lpips", None))
    metrics = nanmean_metrics(res)
    metrics.pop("shift")
    metrics["shift_px"] = float(shifts.abs().double().mean())
    cpu = lambda x: None if x is None else x.cpu().numpy()
    moved = ViewSet(cpu(p_rgb), cpu(p_alpha), cpu(p_n) if p_n is not None else pred.normal, cpu(p_l))
    if moved.sem is not None and true.sem is not None:
        for part, value in dec.part_ious(moved.sem, true.sem).items():
            metrics[f"iou_{part.key}"] = value
        metrics["semantic_accuracy"] = dec.semantic_accuracy(moved.sem, true.sem)
    features = {}
    if models is not None and getattr(models, "clip", None) is not None:
        metrics["clip"] = _clip(models.clip, true.rgb[true.front], moved.rgb)
    if models is not None and getattr(models, "inception", None) is not None:
        features["fid"] = (models.inception(torch.from_numpy(true.rgb)).astype(np.float32),
                           models.inception(torch.from_numpy(moved.rgb)).astype(np.float32))
    return {prefix + k: v for k, v in metrics.items()}, moved, features


def _clip(encoder, reference: np.ndarray, images: np.ndarray) -> float:
    from stdgen.eval.perceptual import clip_similarity

    return clip_similarity(encoder, torch.from_numpy(reference), torch.from_numpy(images))


def evaluate_character(pred_dir: str | Path, true_dir: str | Path, config: EvalConfig | None = None,
                       models=None, *, keep_images: bool = False, geometry: bool | None = None) -> CharacterEval:
    """Evaluate one predicted character folder against one ground-truth character folder.

    ``models`` is a :class:`stdgen.eval.perceptual.PerceptualModels` (or None); ``keep_images``
    keeps the compared views in the result (for the report's pictures); ``geometry=False`` skips
    the 3D metrics (geometry and volume) whatever the config says.
    """
    from stdgen.io.dataset import read_renders

    config = config or EvalConfig()
    pred_dir, true_dir = Path(pred_dir), Path(true_dir)
    renders = read_renders(true_dir, layers=("full",), maps=("rgb", "normal", "sem"))
    eval_idx = renders.view_index("eval")
    if not eval_idx:
        raise InputError(f"{true_dir}/meta.json: no views in the 'eval' group")
    cams = renders.cameras(eval_idx)
    if config.truth == "render":
        # The truth through the prediction's own path (module docstring).
        true = render_parts(load_character(true_dir / CHARACTER_FILE), cams, renders.resolution,
                            background=config.background, device=config.device, backend=config.backend)
    else:
        true = _true_viewset(renders, eval_idx, config.background)
    true.front = _front_of(renders, eval_idx)
    pred_parts = load_parts(pred_dir / CHARACTER_FILE)
    pred_character = load_character(pred_dir / CHARACTER_FILE)
    true_parts = None
    if config.fit_scale:
        true_parts = load_parts(true_dir / CHARACTER_FILE)
        scale, offset = height_fit(pred_character.bounds(), Character.from_parts(true_parts).bounds())
        pred_character = pred_character.scaled(scale, offset)
        pred_parts = {p: m.replace(vertices=(m.vertices * scale + offset).astype(np.float32))
                      for p, m in pred_parts.items()}
    pred = render_parts(pred_character, cams, renders.resolution,
                        background=config.background, device=config.device, backend=config.backend)
    metrics, moved, features = compare_views(pred, true, register=config.register, max_shift=config.max_shift,
                                             background=config.background, device=config.device, models=models)
    result = CharacterEval(pred_dir.name, metrics, true if keep_images else None, moved if keep_images else None,
                           {"3d": features["fid"]} if "fid" in features else {})

    mv = _evaluate_generated_views(pred_dir, renders, config, models)
    if mv is not None:
        result.metrics.update(mv[0])
        if mv[1]:
            result.features["mv"] = mv[1]

    do_3d = config.geometry if geometry is None else geometry
    if do_3d:
        if true_parts is None:
            true_parts = load_parts(true_dir / CHARACTER_FILE)
        result.metrics.update(character_geometry_metrics(pred_parts, true_parts, count=config.points,
                                                         thresholds=config.thresholds, seed=config.seed))
    if (config.volume if geometry is None else geometry):
        result.metrics["clothes_hollowness"] = dec.clothes_hollowness(
            pred_parts[Part.BODY], pred_parts[Part.CLOTHES], resolution=config.hollowness_resolution)
        result.metrics.update(dec.layer_penetration(pred_parts))
    return result


def height_fit(pred_bounds: np.ndarray, true_bounds: np.ndarray) -> tuple[float, np.ndarray]:
    """``(scale, offset (3,))`` mapping ``p -> scale * p + offset`` that gives a prediction with
    bounds ``pred_bounds`` (2, 3) the truth's height (y extent), lowest point and horizontal (x, z)
    centre."""
    ph = float(pred_bounds[1, 1] - pred_bounds[0, 1])
    th = float(true_bounds[1, 1] - true_bounds[0, 1])
    if not ph > 0:
        raise InputError("fit_scale: the prediction has no height")
    scale = th / ph
    pc, tc = pred_bounds.mean(0), true_bounds.mean(0)
    offset = np.array([tc[0] - scale * pc[0], true_bounds[0, 1] - scale * pred_bounds[0, 1], tc[2] - scale * pc[2]],
                      np.float32)
    return scale, offset


def _front_of(renders, index: list[int]) -> int:
    """Position within ``index`` of the azimuth-0 view (the paper's CLIP reference)."""
    for k, i in enumerate(index):
        if round(renders.views[i].get("azimuth", 0.0)) % 360 == 0:
            return k
    return 0


def _load_sprite(path: Path, views: int, mode: str = "auto") -> np.ndarray:
    """A generated-view sheet as (V, H, W, 3|4) uint8, whatever its stored mode (one reader:
    :func:`stdgen.io.images.read_image`; palettes expanded, grey+alpha and CMYK converted)."""
    from stdgen.io.images import MAX_WORK_SIDE, read_image

    # Views are compared at the dataset's resolution: a sheet far larger than six such views is refused.
    sheet = read_image(path, mode, max_pixels=views * (4 * MAX_WORK_SIDE) ** 2)
    if sheet.shape[1] % views:
        raise InputError(f"{path}: width {sheet.shape[1]} is not a multiple of its {views} views")
    return np.stack(np.split(sheet, views, axis=1))


def _resize(x: np.ndarray, size: int, mode: str = "bilinear") -> np.ndarray:
    """(V, h, w, C) float -> (V, size, size, C)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(0, 3, 1, 2)
    kw = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    t = torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kw)
    return t.permute(0, 2, 3, 1).numpy()


def _evaluate_generated_views(pred_dir: Path, renders, config: EvalConfig, models):
    """2D multi-view metrics of ``mv_rgb.png`` / ``mv_normal.png`` if the prediction has them."""
    rgb_path, normal_path = pred_dir / MV_RGB_FILE, pred_dir / MV_NORMAL_FILE
    if not rgb_path.is_file():
        return None
    from stdgen.render.camera import GENERATION_AZIMUTHS

    gen_idx = renders.view_index("gen")
    views = len(GENERATION_AZIMUTHS)
    sprite = _load_sprite(rgb_path, views)
    res = renders.resolution
    has_alpha = sprite.shape[-1] == 4
    pred = rgba_viewset(sprite, config.background)
    pred.rgb = _resize(pred.rgb, res)
    pred.alpha = _resize(pred.alpha[..., None], res)[..., 0]
    true = _true_viewset(renders, gen_idx, config.background)
    true.front = GENERATION_AZIMUTHS.index(0.0)
    if not has_alpha:
        pred.alpha = true.alpha  # no mask of its own: the masked metrics use the truth's
    if normal_path.is_file():
        n = _load_sprite(normal_path, views, "RGB").astype(np.float32) / 255
        n = _resize(n, res) * 2 - 1
        length = np.linalg.norm(n, axis=-1, keepdims=True)
        pred.normal = np.where(length > 0.5, n / np.maximum(length, 1e-6), 0).astype(np.float32)
    else:
        true.normal = None
    true.sem = None
    metrics, _, features = compare_views(pred, true, register=False, max_shift=0.0, background=config.background,
                                         device=config.device, models=models, prefix="mv_")
    metrics.pop("mv_shift_px", None)
    if not has_alpha:
        metrics.pop("mv_mask_iou", None)
    return metrics, features.get("fid")


# -- input-view fidelity -----------------------------------------------------------------------------
def load_picture(path: str | Path, mask_path: str | Path | None = None,
                 max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A picture as ``(S, S, 3)`` float32 colour in [0, 1] and its ``(S, S)`` float32 mask (the alpha
    channel, or the grey levels of ``mask_path``), both padded to a square (transparent).

    Read by content in any mode (:func:`stdgen.io.images.read_image`; pictures over its pixel limit
    are refused before decoding) and shrunk so that ``S`` is at most ``max_side`` (default
    :data:`stdgen.io.images.MAX_WORK_SIDE`): the evaluation renders at ``S``, never at a huge
    picture's own size."""
    from stdgen.io.images import MAX_WORK_SIDE, cap_resolution, read_image

    side_cap = MAX_WORK_SIDE if max_side is None else int(max_side)
    path = Path(path)
    arr = read_image(path, "auto")
    full_size = (arr.shape[1], arr.shape[0])
    arr = cap_resolution(arr, side_cap)
    has_alpha = arr.shape[-1] == 4
    rgb = arr[..., :3].astype(np.float32) / 255
    if mask_path is not None:
        mask_path = Path(mask_path)
        full = read_image(mask_path, "L", what=f"{mask_path} (mask)")
        if (full.shape[1], full.shape[0]) != full_size:
            raise InputError(f"{mask_path}: mask is {full.shape[1]}x{full.shape[0]}, the picture "
                             f"{full_size[0]}x{full_size[1]}")
        mask = cap_resolution(full, side_cap).astype(np.float32) / 255
    elif has_alpha:
        mask = arr[..., 3].astype(np.float32) / 255
    else:
        raise InputError(f"{path}: the picture has no alpha channel; give masks with --masks DIR "
                         "(one grey image per picture, same file stem)")
    h, w = mask.shape
    if h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        rgb2 = np.zeros((side, side, 3), np.float32)
        mask2 = np.zeros((side, side), np.float32)
        rgb2[top:top + h, left:left + w] = rgb
        mask2[top:top + h, left:left + w] = mask
        rgb, mask = rgb2, mask2
    return rgb, mask


def input_camera(parts: Mapping[Part, Mesh], margin: float = 1.1):
    """The front orthographic camera framing the predicted character as the dataset frames its views."""
    from stdgen.render.camera import frame_bounds, orthographic_cameras

    verts = np.concatenate([m.vertices for m in parts.values() if m is not None and not m.is_empty])
    center, half = frame_bounds(np.stack([verts.min(0), verts.max(0)]), margin)
    return orthographic_cameras([0.0], 0.0, center=center, half_size=half, names=["front"])


def evaluate_input_view(pred_dir: str | Path, picture: str | Path, mask: str | Path | None = None,
                        config: EvalConfig | None = None, models=None, *, keep_images: bool = False) -> CharacterEval:
    """Input-view fidelity of one prediction against the picture it was made from."""
    config = config or EvalConfig()
    pred_dir = Path(pred_dir)
    rgb, alpha = load_picture(picture, mask)
    size = rgb.shape[0]
    if size < im.SSIM_WINDOW:
        raise InputError(f"{picture}: picture too small ({size} pixels)")
    parts = load_parts(pred_dir / CHARACTER_FILE)
    cams = input_camera(parts, config.margin)
    pred = render_parts(load_character(pred_dir / CHARACTER_FILE), cams, size, background=config.background,
                        device=config.device, backend=config.backend)
    comp = rgb * alpha[..., None] + config.background * (1 - alpha[..., None])
    true = ViewSet(comp[None].astype(np.float32), alpha[None])
    res = view_metrics(_t(pred.rgb, config.device), _t(true.rgb, config.device), _t(pred.alpha, config.device),
                       _t(true.alpha, config.device), background=config.background,
                       lpips=getattr(models, "lpips", None))
    m = nanmean_metrics(res)
    metrics = {"silhouette_iou": m["mask_iou"], "ssim_masked": m["ssim_masked"], "psnr_masked": m["psnr_masked"],
               "ssim": m["ssim"], "psnr": m["psnr"]}
    if "lpips" in m:
        metrics["lpips"] = m["lpips"]
    if models is not None and getattr(models, "clip", None) is not None:
        metrics["clip"] = _clip(models.clip, true.rgb[0], pred.rgb)
    return CharacterEval(pred_dir.name, metrics, true if keep_images else None, pred if keep_images else None)


# -- many characters ---------------------------------------------------------------------------------
@dataclass
class EvalRun:
    """The results of a whole run: per-character results (in name order), the characters found on
    one side only, and set-level FID values (``fid[kind]``; a kind is absent if not computed)."""

    mode: str  # "3d" (predictions vs ground truth) or "pictures" (input-view fidelity)
    results: list[CharacterEval]
    only_pred: list[str]
    only_true: list[str]
    pred_root: Path
    true_root: Path
    config: EvalConfig
    learned: dict[str, bool] = field(default_factory=dict)
    fid: dict[str, float] = field(default_factory=dict)
    fid_notes: dict[str, str] = field(default_factory=dict)


def _subdirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def match_characters(pred_root: str | Path, true_root: str | Path):
    """Pair prediction folders with ground-truth folders by name.

    Returns ``(pairs [(name, pred_dir, true_dir)], only_pred, only_true)``. If ``pred_root`` itself
    holds ``character.glb`` and ``true_root`` a ``meta.json``, the two are one pair.
    """
    from stdgen.io.dataset import list_character_folders

    pred_root, true_root = Path(pred_root), Path(true_root)
    if not pred_root.is_dir():
        raise InputError(f"{pred_root}: no such directory")
    if not true_root.is_dir():
        raise InputError(f"{true_root}: no such directory")
    if (pred_root / CHARACTER_FILE).is_file() and (true_root / "meta.json").is_file():
        return [(pred_root.name, pred_root, true_root)], [], []
    preds = _subdirs(pred_root)
    trues = {p.name: p for p in list_character_folders(true_root)}
    names = sorted(set(preds) & set(trues))
    pairs = [(n, preds[n], trues[n]) for n in names]
    return pairs, sorted(set(preds) - set(trues)), sorted(set(trues) - set(preds))


def match_pictures(pred_root: str | Path, pictures: str | Path, masks: str | Path | None = None):
    """Pair prediction folders with pictures (and masks) by file stem.

    Returns ``(pairs [(stem, pred_dir, picture, mask or None)], only_pred, only_pictures)``.
    """
    pred_root, pictures = Path(pred_root), Path(pictures)
    for d in (pred_root, pictures) + ((Path(masks),) if masks else ()):
        if not Path(d).is_dir():
            raise InputError(f"{d}: no such directory")
    pics = _images_by_stem(pictures)
    mask_files = _images_by_stem(Path(masks)) if masks else {}
    preds = _subdirs(pred_root)
    names = sorted(set(preds) & set(pics))
    pairs = [(n, preds[n], pics[n], mask_files.get(n)) for n in names]
    if masks:
        missing = [n for n in names if n not in mask_files]
        if missing:
            raise InputError(f"{masks}: no mask for the pictures {missing[:5]}")
    return pairs, sorted(set(preds) - set(pics)), sorted(set(pics) - set(preds))


def _images_by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                raise InputError(f"{folder}: two pictures named {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    return out


def _fid(run: EvalRun) -> None:
    from stdgen.eval.perceptual import fid

    kinds = sorted({k for r in run.results for k in r.features})
    for kind in kinds:
        a = [r.features[kind][0] for r in run.results if kind in r.features]
        b = [r.features[kind][1] for r in run.results if kind in r.features]
        a, b = np.concatenate(a), np.concatenate(b)
        if len(a) < 2 or len(b) < 2:
            run.fid_notes[kind] = f"not computed (needs at least 2 images per side, has {len(a)})"
            continue
        run.fid[kind] = fid(b, a)
        if len(a) < a.shape[1]:
            run.fid_notes[kind] = (f"{len(a)} images for {a.shape[1]}-dimensional features: the covariances are "
                                   "singular and the value is biased upwards; compare only runs of equal size")


def evaluate_dataset(pred_root: str | Path, true_root: str | Path, config: EvalConfig | None = None, models=None,
                     *, progress: Callable[[int, int], None] | None = None, limit: int | None = None) -> EvalRun:
    """Evaluate every prediction folder that has a ground-truth folder of the same name.

    ``progress(done, total)`` is called before the first character and after each one."""
    config = config or EvalConfig()
    pairs, only_pred, only_true = match_characters(pred_root, true_root)
    if not pairs:
        raise InputError(f"{pred_root} and {true_root} have no character folder names in common "
                         f"(predictions: {len(only_pred)}, ground truth: {len(only_true)})")
    if limit is not None:
        pairs = pairs[:limit]
    for _, p, _ in pairs:  # missing files are reported before any work is done
        if not (p / CHARACTER_FILE).is_file():
            raise InputError(f"{p / CHARACTER_FILE}: missing (a character folder must hold {CHARACTER_FILE})")
    results = []
    for name, p, t in _reporting(pairs, progress):
        r = evaluate_character(p, t, config, models)
        r.name = name
        results.append(r)
    run = EvalRun("3d", results, only_pred, only_true, Path(pred_root), Path(true_root), config,
                  _learned(models))
    _fid(run)
    return run


def evaluate_pictures(pred_root: str | Path, pictures: str | Path, masks: str | Path | None = None,
                      config: EvalConfig | None = None, models=None, *,
                      progress: Callable[[int, int], None] | None = None, limit: int | None = None) -> EvalRun:
    """Input-view fidelity of every prediction folder that has a picture of the same stem
    (``progress`` as :func:`evaluate_dataset`'s)."""
    config = config or EvalConfig()
    pairs, only_pred, only_pics = match_pictures(pred_root, pictures, masks)
    if not pairs:
        raise InputError(f"{pred_root} and {pictures} have no names in common "
                         f"(prediction folders: {len(only_pred)}, pictures: {len(only_pics)})")
    if limit is not None:
        pairs = pairs[:limit]
    for _, p, _, _ in pairs:
        if not (p / CHARACTER_FILE).is_file():
            raise InputError(f"{p / CHARACTER_FILE}: missing (a character folder must hold {CHARACTER_FILE})")
    results = []
    for name, p, pic, mask in _reporting(pairs, progress):
        r = evaluate_input_view(p, pic, mask, config, models)
        r.name = name
        results.append(r)
    return EvalRun("pictures", results, only_pred, only_pics, Path(pred_root), Path(pictures), config,
                   _learned(models))


def _reporting(items: list, progress: Callable[[int, int], None] | None):
    """Yield ``items``, calling ``progress(done, total)`` before the first and after each."""
    if progress:
        progress(0, len(items))
    for i, item in enumerate(items):
        yield item
        if progress:
            progress(i + 1, len(items))


def _learned(models) -> dict[str, bool]:
    return {k: getattr(models, k, None) is not None for k in ("lpips", "inception", "clip")}
