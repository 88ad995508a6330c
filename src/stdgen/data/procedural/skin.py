"""The body texture: skin, simple underwear, and the painted face.

The texture follows the template's UV layout ``[face chart | body atlas]`` (``body.py``). Colours
away from the face are painted as *solid textures*: functions of the template position under each
texel (``BodyTemplate.texel_pos``), so they line up across chart seams by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stdgen.data.procedural import paint
from stdgen.data.procedural.body import UV_TILE, BodyTemplate
from stdgen.data.procedural.face import FaceParams, paint_face

UNDERWEAR_STYLES = ("briefs", "bikini", "tank_shorts")


@dataclass
class SkinParams:
    """Underwear painted on the body layer (so the body-alone renders stay modest)."""

    style: str = "bikini"
    color: tuple[float, float, float] = (0.95, 0.95, 0.97)

    def to_dict(self) -> dict:
        return asdict(self)


def sample_skin(rng: np.random.Generator, presentation: str) -> SkinParams:
    if presentation == "female":
        style = "bikini"
    elif presentation == "male":
        style = "briefs"
    else:
        style = str(rng.choice(["briefs", "tank_shorts"]))
    palette = [(0.95, 0.95, 0.97), (0.85, 0.88, 0.95), (0.96, 0.86, 0.9), (0.3, 0.32, 0.38), (0.75, 0.85, 0.8)]
    color = palette[int(rng.integers(len(palette)))]
    return SkinParams(style=style, color=tuple(float(c) for c in color))


def face_chart_coordinates(template: BodyTemplate) -> tuple[np.ndarray, np.ndarray]:
    """Head-unit coordinates (X, Y) of the face chart's texel centres, each (S, S)."""
    x0, y0, size, _ = template.face_chart
    h = template.anatomy.h
    y_chin = template.anatomy.landmarks["y_chin"]
    c = (np.arange(UV_TILE) + 0.5) / UV_TILE * size
    X = np.broadcast_to((x0 + c)[None, :] / h, (UV_TILE, UV_TILE))
    Y = np.broadcast_to((y0 + size - c)[:, None] - y_chin, (UV_TILE, UV_TILE)) / h
    return np.ascontiguousarray(X), np.ascontiguousarray(Y)


def _underwear_mask(template: BodyTemplate, style: str) -> np.ndarray:
    """(S, 2S) coverage of the underwear, from template positions."""
    an = template.anatomy
    lm = an.landmarks
    pos = template.texel_pos
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
    pixel = 0.004
    ax = np.abs(x)
    torso = ax < lm["shoulder_x"] * 0.95  # not the arms
    # Briefs / bikini bottom: from a waistband down to leg openings that rise towards the hips.
    y_c = lm["y_crotch"]
    rise = 0.17 * an.T if style != "bikini" else 0.12 * an.T
    top = y_c + rise - 0.03 * an.T * (z > 0)
    cut = 0.09 if style == "bikini" else 0.05  # how high the leg openings rise at the hips
    low = y_c - 0.012 * an.H + cut * an.T * np.clip(ax / (1.9 * lm["hip_x"]), 0, 1) ** 2
    if style == "tank_shorts":
        low = np.full_like(y, y_c - 0.06 * an.H)
    d = np.maximum(y - top, low - y)
    mask = paint.coverage(d, pixel) * torso
    if style == "bikini":
        y_ch = lm["y_chest"]
        d = np.maximum(y - (y_ch + 0.07 * an.T), (y_ch - 0.08 * an.T) - y)
        mask = np.maximum(mask, paint.coverage(d, pixel) * (ax < lm["shoulder_x"] * 0.72))
    elif style == "tank_shorts":
        d = np.maximum(y - (lm["y_shoulder"] - 0.02 * an.H), (lm["y_waist"] - 0.06 * an.T) - y)
        strap = np.abs(ax - 0.045 * an.H) < 0.018 * an.H
        body_part = (ax < lm["shoulder_x"] * 0.72) | (strap & (y > lm["y_chest"]))
        mask = np.maximum(mask, paint.coverage(d, pixel) * body_part * (ax < lm["shoulder_x"] * 0.8))
    return mask


_MASKS: dict = {}


def _cached_masks(template: BodyTemplate, style: str) -> tuple[np.ndarray, np.ndarray]:
    """(warm tint, underwear coverage), each (S, 2S) float32, computed once per template and style
    (they depend on the template only, not on the character)."""
    key = (id(template), style)
    if key not in _MASKS:
        pos = template.texel_pos
        an = template.anatomy
        warm = np.zeros(pos.shape[:2], np.float32)
        for n in ("leftLowerLeg", "rightLowerLeg"):  # knees
            warm += np.exp(-((pos - an.joints[n]) ** 2).sum(-1) / (0.035 * an.H) ** 2)
        warm[:, :UV_TILE] = 0
        _MASKS[key] = (0.25 * warm, _underwear_mask(template, style).astype(np.float32))
    return _MASKS[key]


def paint_body_texture(template: BodyTemplate, skin_tone, face: FaceParams, underwear: SkinParams) -> np.ndarray:
    """The body texture (S, 2S, 3) uint8 for one character."""
    skin = np.asarray(skin_tone, np.float32)
    tex = np.empty((UV_TILE, 2 * UV_TILE, 3), np.float32)
    tex[:] = skin
    # Warm tint on the knees, as anime skin shaders do; then the underwear.
    warm, uw = _cached_masks(template, underwear.style)
    paint.blend(tex, paint.mix(skin, (1.0, 0.6, 0.6), 0.5), warm)
    paint.blend(tex, np.asarray(underwear.color, np.float32), uw)
    # The face chart: the same skin, then the features.
    X, Y = face_chart_coordinates(template)
    chart = tex[:, :UV_TILE]
    paint_face(chart, X, Y, face, skin)
    tex[:, :UV_TILE] = chart
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)
