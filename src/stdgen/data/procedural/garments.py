"""Garments: closed shells of real thickness around the body.

Two constructions cover every kind:

- **Body-following** garments (shirts, sleeves, trousers, socks, gloves, shoes, bodices): a region
  of the body template is cut out along a smooth field ``g`` (``g >= 0`` inside, defined in the
  canonical T-pose template space, so one definition fits every body), and its two layers are
  placed on offset level sets of the character's own body SDF (``f = d`` and ``f = d + thickness``)
  -- an offset surface never crosses the body -- and closed into a shell by a rim at every hem and
  opening. Skin weights and UVs come from the body vertices the garment was cut from.
- **Hanging** garments (skirts, dress and coat skirts): a surface of revolution around the hips with
  a flared, pleated or waved radius profile, kept outside the legs of both the rest pose and the
  A-pose, thickened the same way.

Textures: body-following garments reuse the body atlas layout, so colours, patterns, trims and
buttons are solid textures painted from the template position under each texel (the field ``g``
there gives trims along every hem). Hanging garments have their own (angle, height) layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from stdgen.data.procedural import meshops, paint, sdf
from stdgen.data.procedural.anatomy import Anatomy
from stdgen.data.procedural.body import UV_TILE, BodyShape, BodyTemplate
from stdgen.structures.character import HUMANOID_BONES

#: Every garment kind, and the slot it fills in an outfit.
GARMENT_SLOTS: dict[str, str] = {
    "tshirt": "top", "long_shirt": "top", "tank_top": "top", "sweater": "top", "sailor_top": "top",
    "dress": "dress",
    "pleated_skirt": "bottom", "flared_skirt": "bottom", "shorts": "bottom", "trousers": "bottom",
    "jacket": "outer", "coat": "outer", "vest": "outer",
    "socks": "legwear", "stockings": "legwear",
    "shoes": "shoes", "boots": "shoes",
    "gloves": "gloves",
}  # fmt: skip
GARMENT_KINDS: tuple[str, ...] = tuple(GARMENT_SLOTS)

#: Offset of the inner surface from the body (metres) and thickness per layer of the stack: 0
#: skin-tight (socks, gloves), 1 first layer, 2, 3, 4 each worn over the previous one (the outfit
#: sampler ranks its garments: trousers under an untucked top, a tucked top under a skirt, vests
#: under jackets).
LAYER_OFFSET = (0.0015, 0.0045, 0.0095, 0.0145, 0.0195)
LAYER_THICKNESS = (0.0016, 0.003, 0.003, 0.0035, 0.004)
PATTERNS = ("plain", "plain", "stripes_h", "stripes_v", "checks", "tartan", "dots")


@dataclass
class GarmentSpec:
    """One garment of an outfit: its kind, colours, pattern and shape sliders (``params``)."""

    kind: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    trim_color: tuple[float, float, float]
    pattern: str = "plain"
    layer: int = 1
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GarmentResult:
    """A built garment: its shell pieces (vertices, faces, uvs, uv_faces, skin weights) as one
    mesh's arrays plus its texture, and how far outside the body it reaches on the upper body
    (``outer_offset``, metres, for hair collision)."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray  # (N, J) dense
    texture: np.ndarray
    outer_offset: float = 0.0
    covers_back: bool = False
    extras: dict = field(default_factory=dict)


# -- the canonical frame: landmarks of the template body ---------------------------------------------
@dataclass
class Frame:
    """Landmarks of the canonical (template) body used by region fields, in metres."""

    an: Anatomy

    def __getattr__(self, name: str):
        lm = self.__dict__["an"].landmarks
        if name in lm:
            return lm[name]
        raise AttributeError(name)

    @property
    def elbow_x(self) -> float:
        return float(abs(self.an.joints["leftLowerArm"][0]))

    @property
    def wrist_x(self) -> float:
        return float(abs(self.an.joints["leftHand"][0]))

    @property
    def neck_z(self) -> float:
        return float(self.an.joints["neck"][2])


Field = Callable[[np.ndarray], np.ndarray]


def _neck_hole(fr: Frame, p: np.ndarray, radius: float, v_depth: float = 0.0, back_drop: float = 0.0) -> np.ndarray:
    """Field that is negative inside the neck opening: a vertical elliptic column of ``radius``
    (wider across than deep) around the neck, plus a V dipping ``v_depth`` down the front."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    r = np.sqrt(x * x + (1.35 * (z - fr.neck_z)) ** 2)
    y_low = fr.y_shoulder - 0.02 * fr.an.H - back_drop * (z < fr.neck_z)
    g = np.maximum(r - radius, y_low - y)
    if v_depth > 0:
        y_vb = fr.y_neck - v_depth
        vee = np.maximum(np.maximum(np.abs(x) - 0.55 * (y - y_vb), y_vb - y), fr.neck_z - z)
        g = np.minimum(g, vee)
    return g


def _top_field(fr: Frame, hem: float, sleeve: float, neck: float, v_depth: float = 0.0, front_open: float = 0.0,
               back_drop: float = 0.0) -> Field:
    """Region of a top: torso from ``hem`` (y) up to the neckline, sleeves to |x| = ``sleeve``."""

    def g(p: np.ndarray) -> np.ndarray:
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        out = np.minimum(y - hem, sleeve - np.abs(x))
        out = np.minimum(out, _neck_hole(fr, p, neck, v_depth, back_drop))
        out = np.minimum(out, fr.y_chin - 0.01 - y)
        if front_open > 0:
            opening = np.maximum(np.abs(x) - front_open * (1 + 2.0 * np.clip((fr.y_chest - y) / fr.an.T, 0, 1)),
                                 -z)
            out = np.minimum(out, opening)
        return out

    return g


def _legs_field(fr: Frame, top: float, bottom: float) -> Field:
    """Region of trousers / shorts / stockings: from ``top`` (y) down to ``bottom`` (y)."""

    def g(p: np.ndarray) -> np.ndarray:
        y = p[:, 1]
        out = np.minimum(top - y, y - bottom)
        # Keep hands (T-posed at shoulder height) and arms out whatever the heights.
        return np.minimum(out, fr.shoulder_x * 0.9 - np.abs(p[:, 0]) + 10.0 * (y < fr.y_chest))

    return g


def _foot_field(fr: Frame, top: float) -> Field:
    def g(p: np.ndarray) -> np.ndarray:
        return np.minimum(top - p[:, 1], fr.y_waist - p[:, 1])

    return g


def _hand_field(fr: Frame, start: float) -> Field:
    def g(p: np.ndarray) -> np.ndarray:
        return np.minimum(np.abs(p[:, 0]) - start, p[:, 1] - (fr.y_chest - 0.05))

    return g


# -- body-following shells ---------------------------------------------------------------------------
def _dense_weights(template: BodyTemplate) -> np.ndarray:
    w = np.zeros((len(template.vertices), len(HUMANOID_BONES)), np.float32)
    np.put_along_axis(w, template.skin_joints.astype(np.int64), template.skin_weights, 1)
    return w


def follow_shell(template: BodyTemplate, body: BodyShape, region: Field, offset: float, thickness: float,
                 loose: Field | None = None, min_faces: int = 30) -> meshops.Shell | None:
    """A closed shell over the body region ``region`` >= 0: inner layer on the body SDF level
    ``offset (+ loose)``, outer layer ``thickness`` further out.

    Returns None when the region is empty. Attributes: ``weights`` (N, J) dense skin weights,
    ``tpos`` (N, 3) template positions, ``level`` (N,) the outer level (metres outside the body).
    """
    patch = meshops.Patch(template.vertices, template.faces, template.garment_uvs, template.garment_uv_faces,
                          attrs={"pos": body.vertices, "w": _dense_weights(template), "n": body.normals(template)},
                          sticky={"subsets": template.subsets})
    cut = meshops.clip_patch(patch, region(template.vertices))
    cut = meshops.remove_small_components(cut, min_faces)
    if len(cut.faces) == 0:
        return None
    tpos = cut.vertices
    d = np.full(len(tpos), offset) + (loose(tpos) if loose is not None else 0.0)
    pos = cut.attrs["pos"]
    legs = tpos[:, 1] < template.anatomy.landmarks["y_crotch"] - 0.02 * template.anatomy.H
    sub = cut.sticky["subsets"]
    if legs.any():
        # (The template's subsets already keep each leg to its own primitives.) Never looser than
        # about half the gap to the other leg, or the two trouser legs would cross.
        gap = _other_leg_distance(body.prims, pos[legs], tpos[legs, 0])
        d[legs] = np.maximum(np.minimum(d[legs], 0.45 * gap), min(offset, 0.45 * gap.max()))
    n = cut.attrs["n"]
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    inner, g = sdf.project_to_level(body.prims, pos + n * d[:, None], d, sub, iterations=2, max_step=0.03,
                                    return_grad=True)
    n = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    outer = inner + n * thickness
    # Layer order must hold however the projection went: push stragglers out along the normal.
    both = np.concatenate([inner, outer])
    level = np.concatenate([d, d + thickness])
    f, _ = sdf.evaluate(body.prims, both, np.concatenate([sub, sub]))
    both += np.concatenate([n, n]) * np.clip(level - f, 0, None)[:, None]
    inner, outer = both[: len(inner)], both[len(inner):]
    shell = meshops.thicken(cut.faces, inner, outer, cut.uvs, cut.uv_faces,
                            {"weights": cut.attrs["w"], "tpos": tpos, "level": d + thickness})
    return shell


def _other_leg_distance(prims: sdf.Primitives, pos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest primitive of the leg on the other side."""
    legs = [i for i, b in enumerate(prims.bones) if ("Leg" in b or "Foot" in b or "Toes" in b)]
    d = sdf.primitive_distances(sdf.select(prims, legs), pos)
    left = np.array([prims.bones[i].startswith("left") for i in legs])
    other = np.where((x > 0)[:, None], ~left[None, :], left[None, :])
    return np.where(other, d, np.inf).min(1)


# -- hanging skirts ----------------------------------------------------------------------------------
def body_extent(points: list[np.ndarray], center: np.ndarray, heights: np.ndarray, angles: int) -> np.ndarray:
    """Radial extent (H, A) of point clouds around a vertical axis through ``center`` (x, z), per
    height band (``heights`` (H,) band centres, bands as wide as their spacing) and angle sector."""
    dy = abs(heights[1] - heights[0]) if len(heights) > 1 else 0.05
    out = np.zeros((len(heights), angles))
    for p in points:
        rel = p[:, [0, 2]] - center
        r = np.linalg.norm(rel, axis=1)
        a = ((np.arctan2(rel[:, 0], rel[:, 1]) % (2 * np.pi)) / (2 * np.pi) * angles).astype(int) % angles
        hi = np.clip(np.round((heights[0] - p[:, 1]) / dy).astype(int), -1, len(heights))
        ok = (hi >= 0) & (hi < len(heights))
        np.maximum.at(out, (hi[ok], a[ok]), r[ok])
    # A sector without points would let the skirt cave in: take the neighbours' extent.
    for _ in range(2):
        out = np.maximum(out, 0.5 * (np.roll(out, 1, 1) + np.roll(out, -1, 1)))
    return out


def skirt_shell(body: BodyShape, body_points: list[np.ndarray], spec_params: dict, y_top: float, y_bottom: float,
                offset: float, thickness: float, bone_index: dict[str, int],
                fields: list[sdf.Primitives] | None = None) -> meshops.Shell:
    """A skirt: surface of revolution from ``y_top`` to ``y_bottom`` around the hips.

    ``spec_params``: ``flare`` (radians of outward slope), ``pleats`` (count, 0 = none),
    ``pleat_depth``, ``waves`` (count of soft folds), ``wave_depth``. The radius never comes closer
    than ``offset`` to any point of ``body_points`` (the legs in rest and A-pose), nor to the
    zero level of any of the ``fields`` (the body's SDF in rest and A-pose).
    """
    an = body.anatomy
    rows = max(8, int((y_top - y_bottom) / 0.012))
    pleats = int(spec_params.get("pleats", 0))
    cols = max(96, pleats * 8 if pleats else 96)
    center = np.array([0.0, an.joints["hips"][2] - 0.004 * an.H])
    heights = np.linspace(y_top, y_bottom, rows)
    # Body extent on a coarse angular grid (every sector sees body vertices), widened over the
    # neighbouring bands, then interpolated to the skirt's columns.
    sectors = 48
    coarse = body_extent(body_points, center, heights, sectors)
    widened = coarse.copy()
    widened[1:] = np.maximum(widened[1:], coarse[:-1])
    widened[:-1] = np.maximum(widened[:-1], coarse[1:])
    coarse = widened
    a = np.arange(cols) / cols * sectors - 0.5
    i0 = np.floor(a).astype(int) % sectors
    extent = np.maximum(coarse[:, i0], coarse[:, (i0 + 1) % sectors])
    # Monotone in height below the hips: the skirt hangs, it does not wrap back in.
    extent = np.maximum.accumulate(extent, axis=0)
    theta = np.arange(cols) / cols * 2 * np.pi
    depth = (y_top - heights)[:, None]  # (rows, 1) distance below the waist
    r0 = extent[0:1] + offset
    flare = float(spec_params.get("flare", 0.25))
    r = r0 + depth * math.tan(flare)
    frac = depth / max(y_top - y_bottom, 1e-6)
    if pleats:
        saw = np.abs(((theta * pleats / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at folds, 0 between
        r = r * (1 + float(spec_params.get("pleat_depth", 0.05)) * (saw[None, :] - 0.5) * (0.3 + frac))
    waves = int(spec_params.get("waves", 0))
    if waves:
        r = r * (1 + float(spec_params.get("wave_depth", 0.06)) * np.sin(theta * waves)[None, :] * frac ** 1.2)
    r = np.maximum(r, extent + offset)
    # Smooth the rows a little so the clearance clamp leaves no kinks.
    r = 0.25 * np.roll(r, 1, 1) + 0.5 * r + 0.25 * np.roll(r, -1, 1)
    r = np.maximum(r, extent + offset)
    inner = np.stack([center[0] + r * np.sin(theta), np.broadcast_to(heights[:, None], r.shape),
                      center[1] + r * np.cos(theta)], -1).reshape(-1, 3)
    # Guarantee the clearance against the body SDF itself, in rest and in A-pose: push the radius
    # out where the binned extent missed something.
    if fields:
        radial = np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
        radial = np.broadcast_to(radial, r.shape + (3,)).reshape(-1, 3)
        for _ in range(3):
            f = np.min([sdf.evaluate(fp, inner)[0] for fp in fields], axis=0)
            short = np.clip(offset - f, 0, None)
            if not short.any():
                break
            inner = inner + radial * (short * 1.2)[:, None]
        r = np.linalg.norm((inner[:, [0, 2]] - center), axis=1).reshape(r.shape)
    ro = r + thickness
    outer = np.stack([center[0] + ro * np.sin(theta), np.broadcast_to(heights[:, None], r.shape),
                      center[1] + ro * np.cos(theta)], -1).reshape(-1, 3)
    faces = meshops.grid_faces(rows, cols, closed=True)
    # UVs: u around (with a seam column), v down. The seam needs a duplicated column of UVs.
    uu = np.arange(cols + 1) / cols
    vv = np.linspace(0, 1, rows)
    uvs = np.stack(np.meshgrid(uu, vv), -1).reshape(-1, 2)
    r_i = faces // cols
    c_i = faces % cols
    # Faces of the last column wrap to column 0: give their column-0 corners u = 1.
    wrap = (c_i == 0) & (c_i.max(1, keepdims=True) == cols - 1)
    uv_faces = r_i * (cols + 1) + np.where(wrap, cols, c_i)
    # Skin weights: hips, with the side towards each thigh following that thigh a little.
    w = np.zeros((rows * cols, len(HUMANOID_BONES)), np.float32)
    side = np.sin(theta)[None, :] * np.ones((rows, 1))
    leg = np.clip(frac * 0.6, 0, 0.6) * np.abs(side)
    left = (side > 0).reshape(-1)
    w[:, bone_index["hips"]] = (1 - leg).reshape(-1)
    w[left, bone_index["leftUpperLeg"]] = leg.reshape(-1)[left]
    w[~left, bone_index["rightUpperLeg"]] = leg.reshape(-1)[~left]
    shell = meshops.thicken(faces, inner, outer, uvs.astype(np.float32), uv_faces.astype(np.int32),
                            {"weights": w, "tpos": np.zeros_like(inner), "level": np.zeros(len(inner))})
    shell.attrs["theta"] = np.concatenate([np.broadcast_to(theta, r.shape).reshape(-1)] * 2)
    return shell


# -- textures ----------------------------------------------------------------------------------------
TEXEL_PIXEL = 0.003  # metres per texel of the body atlas, roughly: anti-aliasing width of solid paint


def _pattern(spec: GarmentSpec, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pattern ink in [0, 1] from 2D coordinates (metres)."""
    k = spec.params.get("pattern_scale", 1.0)
    if spec.pattern == "stripes_h":
        return paint.stripes(t, 0.03 * k, 0.4, TEXEL_PIXEL)
    if spec.pattern == "stripes_v":
        return paint.stripes(s, 0.025 * k, 0.35, TEXEL_PIXEL)
    if spec.pattern == "checks":
        return paint.checks(s, t, 0.025 * k)
    if spec.pattern == "tartan":
        return paint.tartan(s, t, 0.05 * k, TEXEL_PIXEL)
    if spec.pattern == "dots":
        return paint.dots(s, t, 0.03 * k, 0.006 * k, TEXEL_PIXEL)
    return np.zeros_like(s)


def _triplanar(spec: GarmentSpec, pos: np.ndarray, nrm: np.ndarray) -> np.ndarray:
    """A 2D pattern on a 3D surface: blend of its projections along the three axes."""
    w = np.abs(nrm) ** 4
    w /= w.sum(-1, keepdims=True)
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
    return (w[..., 2] * _pattern(spec, x, y) + w[..., 0] * _pattern(spec, z, y) + w[..., 1] * _pattern(spec, x, z))


def paint_follow_texture(template: BodyTemplate, spec: GarmentSpec, region: Field, fr: Frame,
                         trim_width: float = 0.0, buttons: int = 0, ribbed: bool = False,
                         stripes_at_edge: int = 0) -> np.ndarray:
    """Texture (S, S, 3) uint8 of a body-following garment (the template's garment layout)."""
    pos = template.garment_texel_pos.reshape(-1, 3).astype(np.float64)
    nrm = template.garment_texel_normal.reshape(-1, 3)
    tex = np.empty((len(pos), 3), np.float32)
    tex[:] = spec.color
    if spec.pattern != "plain":
        ink = _triplanar(spec, pos, nrm)
        paint.blend(tex, spec.color2, ink)
    g = region(pos)
    if trim_width > 0:
        band = paint.coverage(g - trim_width, TEXEL_PIXEL)
        if ribbed:
            rib = 0.5 + 0.5 * np.cos(2 * np.pi * (pos[:, 0] + pos[:, 2] + pos[:, 1]) / 0.008)
            paint.blend(tex, paint.shade(spec.trim_color, 0.85), 0.35 * band * rib)
            paint.blend(tex, spec.trim_color, 0.65 * band)
        else:
            paint.blend(tex, spec.trim_color, band)
    for k in range(stripes_at_edge):
        lo = trim_width + 0.004 + k * 0.007
        d = np.abs(g - lo - 0.0015) - 0.0015
        paint.blend(tex, spec.color2 if spec.pattern == "plain" else (1, 1, 1), paint.coverage(d, TEXEL_PIXEL))
    if buttons:
        x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
        top = fr.y_shoulder - 0.06 * fr.an.H
        spacing = 0.065 * fr.an.H / 1.6 * 1.6 / max(buttons, 1) * 3
        d = np.full(len(pos), 1.0)
        for i in range(buttons):
            by = top - i * spacing
            dd = np.sqrt(x * x + (y - by) ** 2) - 0.0055
            d = np.minimum(d, np.where(z > 0, dd, 1.0))
        paint.blend(tex, paint.shade(spec.trim_color, 0.8), paint.coverage(d, TEXEL_PIXEL))
        paint.blend(tex, paint.shade(spec.trim_color, 1.2), paint.coverage(d + 0.0025, TEXEL_PIXEL))
    img = tex.reshape(UV_TILE, UV_TILE, 3)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def paint_skirt_texture(spec: GarmentSpec, length: float, radius: float, size: int = 256) -> np.ndarray:
    """Texture (size, 2 size, 3) uint8 of a hanging skirt: u around, v down."""
    h, w = size, 2 * size
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    U, V = np.meshgrid(u, v)
    s = U * 2 * np.pi * radius
    t = -V * length
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = spec.color
    pix = 2 * np.pi * radius / w
    if spec.pattern != "plain":
        paint.blend(tex, spec.color2, _pattern(spec, s, t))
    pleats = int(spec.params.get("pleats", 0))
    if pleats:
        ph = (U * pleats) % 1.0
        fold = paint.coverage(np.abs(ph - 0.5) * 2 * np.pi * radius / pleats - 0.0012, pix)
        paint.blend(tex, paint.shade(spec.color, 0.7), 0.6 * fold)
    hem = spec.params.get("hem_trim", 0.0)
    if hem > 0:
        d = (1 - V) * length - hem
        paint.blend(tex, spec.trim_color, paint.coverage(d, pix))
        if spec.params.get("hem_stripe", False):
            d2 = np.abs((1 - V) * length - hem - 0.008) - 0.002
            paint.blend(tex, spec.trim_color, paint.coverage(d2, pix))
    band = spec.params.get("waistband", 0.0)
    if band > 0:
        paint.blend(tex, paint.shade(spec.color, 0.85), paint.coverage(V * length - band, pix))
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)
