"""The anime face, painted into the face chart of the body texture.

The face chart is a planar front projection of the head (``body.face_chart_square``), so face
features are drawn as 2D shapes in head units: ``X = x / h`` across (the character's left is +X),
``Y = (y - y_chin) / h`` up. Eyes follow the usual anime construction: a wide opening between an
upper and a lower lid curve, a tall iris with a dark-to-light gradient, a pupil, white highlights,
a thick upper lash line with a wing at the outer corner, a thin lower lash, a lid crease, brows,
a small mouth, a hint of a nose and optional blush.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stdgen.data.procedural import paint

MOUTHS = ("line", "smile", "open", "cat", "small_o", "frown")

#: Iris colours (sRGB): the mid tone; the painter derives the dark top and light bottom.
IRIS_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.45, 0.25, 0.12), (0.30, 0.18, 0.10), (0.15, 0.35, 0.75), (0.10, 0.55, 0.65), (0.20, 0.55, 0.25),
    (0.60, 0.15, 0.20), (0.55, 0.25, 0.65), (0.80, 0.55, 0.15), (0.35, 0.40, 0.50), (0.85, 0.35, 0.50),
    (0.20, 0.25, 0.60), (0.65, 0.50, 0.30),
)  # fmt: skip


@dataclass
class FaceParams:
    """Face sliders (head units unless noted). ``tilt`` > 0 lifts the outer eye corners (sharp
    "tsurime" eyes), < 0 droops them ("tareme"); ``openness`` scales the opening's height."""

    iris_color: tuple[float, float, float] = (0.15, 0.35, 0.75)
    iris_color_right: tuple[float, float, float] | None = None
    lash_color: tuple[float, float, float] = (0.12, 0.08, 0.08)
    brow_color: tuple[float, float, float] = (0.3, 0.2, 0.15)
    eye_spacing: float = 0.175
    eye_width: float = 0.2
    openness: float = 1.0
    tilt: float = 0.0
    iris_size: float = 1.0
    lash_width: float = 0.014
    lower_lash: bool = True
    highlight_style: int = 0
    brow_arch: float = 0.5
    brow_angle: float = 0.0
    brow_width: float = 0.008
    mouth: str = "line"
    mouth_width: float = 0.07
    blush: float = 0.0
    nose: bool = True
    eye_y: float = 0.4

    def to_dict(self) -> dict:
        return asdict(self)


def sample_face(rng: np.random.Generator, presentation: str, hair_color) -> FaceParams:
    """Random face sliders; brows take the hair colour, darkened."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))
    iris = np.asarray(IRIS_COLORS[int(rng.integers(len(IRIS_COLORS)))]) + rng.normal(0, 0.04, 3)
    iris = tuple(float(c) for c in np.clip(iris, 0.02, 0.95))
    right = None
    if rng.uniform() < 0.04:  # heterochromia, a staple of the genre
        right = tuple(float(c) for c in IRIS_COLORS[int(rng.integers(len(IRIS_COLORS)))])
    hair = np.asarray(hair_color, np.float32)
    male = presentation == "male"
    child = presentation == "child"
    lash = tuple(float(c) for c in np.clip(hair * 0.25 + 0.03, 0, 1)) if rng.uniform() < 0.3 else (0.1, 0.07, 0.07)
    return FaceParams(
        iris_color=iris,
        iris_color_right=right,
        lash_color=lash,
        brow_color=tuple(float(c) for c in np.clip(hair * 0.7, 0, 1)),
        eye_spacing=u(0.175, 0.2),
        eye_width=u(0.2, 0.25) * (1.06 if child else 1.0) * (0.95 if male else 1.0),
        openness=u(0.8, 1.1) * (0.85 if male else 1.0) * (1.08 if child else 1.0),
        tilt=u(-0.6, 0.8) + (0.2 if male else 0.0),
        iris_size=u(0.9, 1.1),
        lash_width=u(0.011, 0.017) * (0.8 if male else 1.0),
        lower_lash=bool(rng.uniform() < 0.7),
        highlight_style=int(rng.integers(3)),
        brow_arch=u(0.2, 0.8),
        brow_angle=u(-0.25, 0.35) + (0.15 if male else 0.0),
        brow_width=u(0.006, 0.011) * (1.3 if male else 1.0),
        mouth=str(rng.choice(MOUTHS, p=[0.28, 0.3, 0.15, 0.1, 0.07, 0.1])),
        mouth_width=u(0.05, 0.085),
        blush=float(rng.uniform(0.0, 0.6)) if (not male and rng.uniform() < 0.6) else 0.0,
        nose=bool(rng.uniform() < 0.8),
        eye_y=u(0.38, 0.43),
    )


def _window(X: np.ndarray, Y: np.ndarray, x0: float, x1: float, y0: float, y1: float):
    """Row / column slices of the chart covering the head-unit box [x0, x1] x [y0, y1]."""
    cols = np.flatnonzero((X[0] >= x0) & (X[0] <= x1))
    rows = np.flatnonzero((Y[:, 0] >= y0) & (Y[:, 0] <= y1))
    if len(cols) == 0 or len(rows) == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _eye(img: np.ndarray, X: np.ndarray, Y: np.ndarray, px: float, fp: FaceParams, side: float,
         skin: np.ndarray) -> None:
    """Paint one eye (``side`` +1: the character's left, at +X)."""
    a = 0.5 * fp.eye_width
    cx, cy = side * fp.eye_spacing, fp.eye_y
    win = _window(X, Y, cx - 1.6 * a, cx + 1.6 * a, cy - 1.2 * a, cy + 1.7 * a)
    if win is None:
        return
    sub = img[win]
    x = (X[win] - cx) * side  # + towards the temple
    y = Y[win] - cy
    t = x / a  # -1 inner corner, +1 outer corner
    eh = 0.9 * a * fp.openness  # height of the opening above the corner line
    y_in, y_out = -0.1 * eh, fp.tilt * 0.32 * eh
    base = y_in + (y_out - y_in) * (t + 1) / 2
    tt = np.clip(t, -1, 1)
    tu = np.clip(t - 0.12, -1, 1)  # the upper lid peaks a little inwards of the centre
    upper = base + eh * np.sqrt(np.maximum(1 - tu * tu, 0)) ** 0.9
    lower = base - 0.62 * eh * np.maximum(1 - tt * tt, 0) ** 0.75
    inside = np.minimum(np.minimum(upper - y, y - lower), (1 - np.abs(t)) * a)
    opening = paint.coverage(-inside, px)

    iris_c = np.asarray(fp.iris_color if side > 0 or fp.iris_color_right is None else fp.iris_color_right, np.float32)
    rx = 0.6 * a * fp.iris_size
    ry = 1.2 * rx
    icx, icy = -0.06 * a, 0.5 * eh - 0.62 * ry + 0.05 * eh
    # Sclera, shaded under the upper lid (the lid casts a shadow in anime eyes).
    white = np.array([0.99, 0.99, 1.0], np.float32)
    eye = np.empty(x.shape + (3,), np.float32)
    eye[:] = white
    d_iris = paint.ellipse_sd(x, y, icx, icy, rx, ry)
    rel = np.clip((y - (icy - ry)) / (2 * ry), 0, 1)  # 0 at the iris bottom, 1 at its top
    top, bottom = paint.shade(iris_c, 0.35), paint.shade(iris_c, 1.35)
    grad = paint.mix(bottom, top, rel[..., None] ** 0.8)
    paint.blend(eye, grad, paint.coverage(d_iris, px))
    ring = paint.coverage(np.abs(d_iris + 0.035 * rx) - 0.045 * rx, px) * paint.coverage(d_iris, px)
    paint.blend(eye, paint.shade(iris_c, 0.25), 0.8 * ring)
    # Inner ring of lighter flecks at the bottom of the iris.
    crescent = paint.coverage(paint.ellipse_sd(x, y, icx, icy - 0.42 * ry, 0.6 * rx, 0.32 * ry), px)
    paint.blend(eye, paint.shade(iris_c, 1.7), 0.55 * crescent * paint.coverage(d_iris, px))
    pupil = paint.coverage(paint.ellipse_sd(x, y, icx, icy + 0.05 * ry, 0.38 * rx, 0.5 * ry), px)
    paint.blend(eye, paint.shade(iris_c, 0.12), 0.9 * pupil)
    lid_shadow = paint.smoothstep(0.45 * eh, 0.0, (upper - y))
    paint.blend(eye, paint.shade(iris_c, 0.3) * 0.5 + 0.2, 0.35 * lid_shadow)
    # Highlights: a big soft one up and towards the light, small ones below.
    hl = [(icx - 0.3 * rx * side, icy + 0.38 * ry, 0.3 * rx, 0.24 * ry)]
    if fp.highlight_style in (0, 2):
        hl.append((icx + 0.35 * rx * side, icy - 0.45 * ry, 0.12 * rx, 0.1 * ry))
    if fp.highlight_style == 2:
        hl.append((icx + 0.05 * rx, icy + 0.55 * ry, 0.1 * rx, 0.08 * ry))
    for hx, hy, hrx, hry in hl:
        # The eye is mirrored (x grows towards the temple), so un-mirror the highlight side: both
        # eyes get their highlight on the same screen side, as if lit by one light.
        paint.blend(eye, (1.0, 1.0, 1.0), 0.95 * paint.coverage(paint.ellipse_sd(x, y, hx, hy, hrx, hry), px))
    paint.blend(sub, eye, opening)

    lash = np.asarray(fp.lash_color, np.float32)
    # Upper lash line: thick, thickest at the outer corner, with a wing past it.
    lw = fp.lash_width * (0.55 + 0.75 * np.clip((t + 1) / 2, 0, 1))
    wing = np.clip(t - 1, 0, None)
    ext = np.where(t > 1, y_out + wing * a * (0.35 + 0.4 * fp.tilt), upper)
    lw = np.where(t > 1, fp.lash_width * 1.3 * np.clip(1 - wing / 0.28, 0, 1), lw)
    band = np.minimum(np.minimum(ext + lw - y, y - ext + 0.15 * fp.lash_width), (t + 1.04) * a)
    band = np.where(t > 1.3, -1.0, band)
    paint.blend(sub, lash, paint.coverage(-band, px))
    # Lid crease.
    crease = upper + 0.32 * eh + 0.5 * fp.lash_width
    dc = np.maximum(np.abs(y - crease) - 0.12 * fp.lash_width, np.abs(t - 0.1) - 0.75)
    paint.blend(sub, paint.mix(skin, lash, 0.45), 0.8 * paint.coverage(dc, px))
    if fp.lower_lash:
        dl = np.maximum(np.abs(y - lower) - 0.16 * fp.lash_width, np.abs(t - 0.55) - 0.45)
        paint.blend(sub, paint.mix(skin, lash, 0.7), paint.coverage(dl, px))
    img[win] = sub


def _brow(img, X, Y, px, fp: FaceParams, side: float) -> None:
    a = 0.5 * fp.eye_width
    cx = side * (fp.eye_spacing - 0.01)
    cy = fp.eye_y + 0.165 + 0.02 * fp.openness
    win = _window(X, Y, cx - 1.5 * a, cx + 1.5 * a, cy - 0.08, cy + 0.08)
    if win is None:
        return
    x = (X[win] - cx) * side
    y = Y[win] - cy
    t = x / (1.1 * a)
    curve = 0.035 * fp.brow_arch * (1 - t * t) - 0.025 * fp.brow_angle * t
    width = fp.brow_width * np.clip(1.1 - 0.45 * (t + 1), 0.25, 1)
    d = np.maximum(np.abs(y - curve) - width, np.abs(t) - 1)
    sub = img[win]
    paint.blend(sub, fp.brow_color, 0.95 * paint.coverage(d, px))
    img[win] = sub


def _mouth(img, X, Y, px, fp: FaceParams, skin: np.ndarray) -> None:
    cy = 0.155
    w = 0.5 * fp.mouth_width
    win = _window(X, Y, -2 * w, 2 * w, cy - 0.07, cy + 0.04)
    if win is None:
        return
    x, y = X[win], Y[win] - cy
    sub = img[win]
    ink = paint.mix(skin, (0.35, 0.1, 0.1), 0.75)
    thick = 0.0035
    t = x / w
    if fp.mouth in ("line", "smile", "frown"):
        bend = {"line": 0.004, "smile": 0.012, "frown": -0.008}[fp.mouth]
        curve = bend * (t * t - 1) * 0.5 + bend * 0.5
        d = np.maximum(np.abs(y - curve) - thick * np.clip(1.2 - 0.6 * t * t, 0.3, 1), np.abs(t) - 1)
        paint.blend(sub, ink, paint.coverage(d, px))
    elif fp.mouth == "cat":
        # The ":3" mouth: two small arcs.
        for s in (-1, 1):
            tt = (x - s * 0.5 * w) / (0.5 * w)
            curve = 0.008 * (tt * tt - 1)
            d = np.maximum(np.abs(y - curve) - thick * 0.8, np.abs(tt) - 1)
            paint.blend(sub, ink, paint.coverage(d, px))
    else:
        # Open mouth: a rounded "D" (or small "o"), dark red inside with a tongue.
        ww = w * (0.55 if fp.mouth == "small_o" else 0.9)
        depth = 0.035 if fp.mouth == "open" else 0.03
        top = 0.002 * (1 - (x / ww) ** 2)
        bottom = -depth * np.sqrt(np.maximum(1 - (x / ww) ** 2, 0)) ** 1.2
        inside = np.minimum(np.minimum(top - y, y - bottom), (1 - np.abs(x / ww)) * ww)
        paint.blend(sub, (0.45, 0.1, 0.12), paint.coverage(-inside, px))
        tongue = paint.coverage(paint.ellipse_sd(x, y, 0, -depth * 0.85, 0.6 * ww, 0.45 * depth), px)
        paint.blend(sub, (0.9, 0.45, 0.45), tongue * paint.coverage(-inside, px))
        edge = paint.coverage(np.abs(inside) - 0.5 * thick, px) * (np.abs(x) < ww * 1.05)
        paint.blend(sub, ink, edge)
    img[win] = sub


def paint_face(chart: np.ndarray, X: np.ndarray, Y: np.ndarray, fp: FaceParams, skin) -> None:
    """Paint eyes, brows, nose, mouth and blush in place into ``chart`` (S, S, 3) float32, whose
    texel centres sit at head units ``X``, ``Y`` (S, S)."""
    skin = np.asarray(skin, np.float32)
    px = float(abs(X[0, 1] - X[0, 0]))
    if fp.blush > 0:
        for side in (-1.0, 1.0):
            win = _window(X, Y, side * 0.22 - 0.12, side * 0.22 + 0.12, 0.2, 0.36)
            if win is None:
                continue
            x, y = X[win], Y[win]
            g = np.exp(-(((x - side * 0.22) / 0.075) ** 2) - (((y - 0.285) / 0.035) ** 2))
            sub = chart[win]
            paint.blend(sub, (0.98, 0.55, 0.6), 0.55 * fp.blush * g)
            chart[win] = sub
    for side in (-1.0, 1.0):
        _eye(chart, X, Y, px, fp, side, skin)
        _brow(chart, X, Y, px, fp, side)
    if fp.nose:
        win = _window(X, Y, -0.05, 0.05, 0.22, 0.32)
        if win is not None:
            x, y = X[win], Y[win]
            d = paint.ellipse_sd(x, y, 0.012, 0.262, 0.009, 0.005)
            sub = chart[win]
            paint.blend(sub, paint.shade(skin, 0.78), 0.7 * paint.coverage(d, px))
            chart[win] = sub
    _mouth(chart, X, Y, px, fp, skin)
