"""Hair: a scalp cap plus strand clumps swept along guide curves.

Each clump is a closed tube with a lens-shaped cross-section that tapers to a point, swept along
a guide curve that starts on the scalp and falls under a little gravity while sliding over a
collision field: the character's body SDF (in rest pose and in A-pose) inflated by the scalp cap
on the head and by the clothes' thickness below the neck, so no hair vertex ends up inside the
body or the clothes. Styles choose where roots sit, where clumps flow and how long they are:
bangs, side locks, short / bob / medium / long back hair, spikes, ponytails, twin tails, buns.

Texture: each clump owns a column slot of the hair texture (u across the clump, v root -> tip):
base colour with a root-to-tip gradient, darker clump edges and strand lines, and the anime
highlight band ("angel ring") painted where that clump crosses the ring height on the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stdgen.data.procedural import paint, sdf
from stdgen.data.procedural.body import BodyShape, BodyTemplate
from stdgen.structures.character import HUMANOID_BONES
from stdgen.structures.mesh import Mesh

HAIR_STYLES = ("short", "bob", "medium", "long", "spiky", "ponytail", "twintails", "bun", "twin_buns", "hime")
BANGS = ("straight", "swept", "parted", "curtain", "choppy")

#: Natural and anime hair colours (sRGB).
HAIR_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.10, 0.08, 0.08), (0.22, 0.14, 0.10), (0.40, 0.25, 0.15), (0.60, 0.40, 0.22), (0.85, 0.70, 0.40),
    (0.95, 0.88, 0.65), (0.75, 0.30, 0.15), (0.55, 0.12, 0.12), (0.90, 0.55, 0.70), (0.55, 0.35, 0.75),
    (0.25, 0.40, 0.80), (0.20, 0.65, 0.75), (0.35, 0.70, 0.45), (0.85, 0.85, 0.90), (0.30, 0.30, 0.35),
    (0.95, 0.75, 0.30),
)  # fmt: skip

SLOTS = 128  # clump slots across the hair texture
SLOT_PX = 8
SEGMENTS = 18  # along a clump
RING = 8  # around a clump


@dataclass
class HairParams:
    """Hair sliders: style, bangs, colours (``tip_color`` for the gradient), clump count factor,
    clump width (metres at 1.6 m height), volume (how far the hair stands off the scalp)."""

    style: str = "bob"
    bangs: str = "straight"
    color: tuple[float, float, float] = (0.4, 0.25, 0.15)
    tip_color: tuple[float, float, float] = (0.5, 0.33, 0.2)
    tie_color: tuple[float, float, float] = (0.85, 0.2, 0.25)
    density: float = 1.0
    width: float = 0.035
    volume: float = 0.012
    length: float = 0.5
    side_locks: bool = True
    highlight: float = 0.5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sample_hair(rng: np.random.Generator, presentation: str, styles: tuple[str, ...] | None = None) -> HairParams:
    male = presentation == "male"
    options = tuple(styles) if styles else HAIR_STYLES
    bad = set(options) - set(HAIR_STYLES)
    if bad:
        raise ValueError(f"unknown hair styles {sorted(bad)}; known: {HAIR_STYLES}")
    w_female = {"short": 1, "bob": 3, "medium": 3, "long": 4, "spiky": 0.3, "ponytail": 2.5, "twintails": 2,
                "bun": 1, "twin_buns": 0.8, "hime": 1.2}
    w_male = {"short": 5, "bob": 0.5, "medium": 2, "long": 0.4, "spiky": 3, "ponytail": 0.6, "twintails": 0.02,
              "bun": 0.2, "twin_buns": 0.01, "hime": 0.05}
    w = np.array([(w_male if male else w_female)[s] for s in options], np.float64)
    style = options[int(rng.choice(len(options), p=w / w.sum()))]
    base = np.asarray(HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))]) + rng.normal(0, 0.03, 3)
    base = np.clip(base, 0.03, 0.97)
    tip = np.clip(base * rng.uniform(1.0, 1.35) + rng.normal(0, 0.04, 3), 0, 1)
    if rng.uniform() < 0.15:  # a dyed two-tone gradient
        tip = np.asarray(HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))])
    bangs = str(rng.choice(BANGS, p=[0.3, 0.25, 0.2, 0.1, 0.15]))
    return HairParams(
        style=style, bangs=bangs,
        color=tuple(float(c) for c in base), tip_color=tuple(float(c) for c in tip),
        tie_color=tuple(float(c) for c in paint.hsv(rng.uniform(), 0.7, 0.8)),
        density=float(rng.uniform(0.85, 1.2)), width=float(rng.uniform(0.028, 0.042)),
        volume=float(rng.uniform(0.006, 0.016)), length=float(rng.uniform(0.0, 1.0)),
        side_locks=bool(rng.uniform() < 0.75), highlight=float(rng.uniform(0.3, 0.8)),
        seed=int(rng.integers(2**31)),
    )  # fmt: skip


# -- collision ---------------------------------------------------------------------------------------
@dataclass
class Collider:
    """The field hair must stay outside of: the body in rest pose and A-pose, inflated by the scalp
    cap above ``y_neck`` and by the clothes below it."""

    rest: sdf.Primitives
    posed: sdf.Primitives | None
    head: sdf.Primitives
    cap_level: float
    body_level: float
    y_neck: float
    min_y: float
    y_switch: float = 0.0

    def level(self, p: np.ndarray) -> np.ndarray:
        # Clothes clearance up to the chin (collars reach up the neck), the cap's above it.
        t = np.clip((p[:, 1] - self.y_switch) / 0.03, 0, 1)
        return self.body_level * (1 - t) + self.cap_level * t

    def field(self, p: np.ndarray, subsets: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(N,) signed clearance (field minus required level; negative = too close) and its gradient.
        ``subsets``: per-point primitive subsets for the rest and the posed field."""
        f, g = sdf.evaluate(self.rest, p, None if subsets is None else subsets[0], grad=True)
        if self.posed is not None:
            f2, g2 = sdf.evaluate(self.posed, p, None if subsets is None else subsets[1], grad=True)
            use = f2 < f
            f = np.where(use, f2, f)
            g = np.where(use[:, None], g2, g)
        return f - self.level(p), g

    def subsets(self, p: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest primitives of the rest and posed fields at each point."""
        out = []
        for prims in (self.rest, self.posed if self.posed is not None else self.rest):
            d = sdf.primitive_distances(prims, p)
            out.append(np.argsort(d, 1)[:, :k].astype(np.int32))
        return out[0], out[1]

    def push_out(self, p: np.ndarray, margin: float = 0.0, iterations: int = 3,
                 subsets: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Move points (N, 3) out along the field gradient until their clearance is >= ``margin``."""
        p = p.copy()
        idx = np.arange(len(p))
        for _ in range(iterations):
            sub = None if subsets is None else (subsets[0][idx], subsets[1][idx])
            c, g = self.field(p[idx], sub)
            short = np.clip(margin - c, 0, None)
            moving = short > 0
            if not moving.any():
                break
            n = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
            p[idx[moving]] += n[moving] * short[moving, None]
            idx = idx[moving]
        p[:, 1] = np.maximum(p[:, 1], self.min_y)
        return p


def posed_primitives(prims: sdf.Primitives, joints_rot: np.ndarray, joints_t: np.ndarray,
                     bone_index: dict[str, int]) -> sdf.Primitives:
    """The primitives moved rigidly with their bones (``R x + t`` per bone): the posed body's SDF."""
    import dataclasses

    idx = np.array([bone_index[b] for b in prims.bones])
    R, t = joints_rot[idx], joints_t[idx]
    a = np.einsum("pij,pj->pi", R, prims.a) + t
    b = np.einsum("pij,pj->pi", R, prims.b) + t
    m = np.einsum("pij,pkj->pik", prims.m, R)  # m R^T
    return dataclasses.replace(prims, a=a, b=b, m=m)


# -- guide curves ------------------------------------------------------------------------------------
def _scalp_points(col: Collider, center: np.ndarray, dirs: np.ndarray, level: float) -> np.ndarray:
    """Where rays from the head centre along ``dirs`` (N, 3) reach the field level ``level``."""
    lo = np.zeros(len(dirs))
    hi = np.full(len(dirs), 0.4)
    for _ in range(22):
        mid = 0.5 * (lo + hi)
        f, _ = sdf.evaluate(col.head, center + dirs * mid[:, None])
        inside = f < level
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return center + dirs * hi[:, None]


def _sph(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit directions: ``theta`` azimuth (0 = front +Z, +90 deg = the character's left, +X),
    ``phi`` elevation above the horizontal."""
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(phi), np.cos(theta) * np.cos(phi)], -1)


@dataclass
class Clumps:
    """Guide curves and shape of N clumps: ``roots`` (N, 3), ``dirs`` (N, 3) initial directions,
    ``lengths`` (N,), ``widths`` (N,), ``gravity`` (N,), ``bias`` (N, 3) a sideways flow,
    ``kind`` (N,) names for weights ("head" or "tail" hang from the head; "long" blends to the
    chest)."""

    roots: np.ndarray
    dirs: np.ndarray
    lengths: np.ndarray
    widths: np.ndarray
    gravity: np.ndarray
    bias: np.ndarray
    thickness: np.ndarray
    hug: np.ndarray


def _drape(roots: np.ndarray, center: np.ndarray, outward: float) -> np.ndarray:
    """Initial directions that follow the head downhill: the downward direction projected onto the
    tangent plane at each root (horizontal away from the crown where that vanishes), lifted
    ``outward`` off the surface."""
    n = roots - center
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    down = np.array([0.0, -1.0, 0.0])
    t = down - (n @ down)[:, None] * n
    tn = np.linalg.norm(t, axis=1, keepdims=True)
    horiz = n * np.array([1.0, 0.0, 1.0])
    horiz /= np.maximum(np.linalg.norm(horiz, axis=1, keepdims=True), 1e-9)
    t = np.where(tn > 0.2, t / np.maximum(tn, 1e-9), horiz)
    d = t + outward * n
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _cat(items: list[Clumps]) -> Clumps:
    return Clumps(*[np.concatenate([getattr(c, f) for c in items]) for f in Clumps.__dataclass_fields__])


def _clumps(roots, dirs, lengths, widths, gravity, bias=None, thickness=None, hug: float = 0.012) -> Clumps:
    """Clumps from per-clump (or shared) values; ``hug``: how far (metres, beyond half the clump's
    thickness) a clump may drift off the scalp before it is pulled back (inf: never)."""
    n = len(roots)
    b = np.zeros((n, 3)) if bias is None else np.broadcast_to(np.asarray(bias, np.float64), (n, 3)).copy()
    t = 0.35 * np.asarray(widths) if thickness is None else np.broadcast_to(thickness, (n,)).astype(np.float64)
    t = np.broadcast_to(t, (n,)).astype(np.float64)
    return Clumps(np.asarray(roots, np.float64), np.asarray(dirs, np.float64),
                  np.broadcast_to(lengths, (n,)).astype(float), np.broadcast_to(widths, (n,)).astype(float),
                  np.broadcast_to(gravity, (n,)).astype(float), b, t, 0.5 * t + hug)


def grow(col: Collider, c: Clumps, segments: int = SEGMENTS) -> np.ndarray:
    """Guide curves (N, S + 1, 3): each clump steps from its root along its direction, bending
    under gravity and sliding along the collision field (clearance: half its thickness)."""
    n = len(c.roots)
    pts = np.empty((n, segments + 1, 3))
    p = c.roots.copy()
    d = c.dirs / np.linalg.norm(c.dirs, axis=1, keepdims=True)
    step = (c.lengths / segments)[:, None]
    pts[:, 0] = p
    margin = 0.5 * c.thickness + 0.002
    down = np.array([0.0, -1.0, 0.0])
    for s in range(1, segments + 1):
        d = d + c.gravity[:, None] * down * (step / 0.03) + c.bias * (step / 0.03)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        q = p + d * step
        cl, g = col.field(q)
        short = np.clip(margin - cl, 0, None)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
        q = q + gn * short[:, None]
        # Over the head, hair hugs the scalp: pull clumps that drift off back towards it.
        far = np.clip(cl - c.hug, 0, None) * (q[:, 1] > col.y_neck)
        q = q - gn * (0.6 * far)[:, None]
        q[:, 1] = np.maximum(q[:, 1], col.min_y)
        nd = q - p
        d = nd / np.maximum(np.linalg.norm(nd, axis=1, keepdims=True), 1e-9)
        p = q
        pts[:, s] = p
    return pts


# -- clump meshes ------------------------------------------------------------------------------------
def sweep(curves: np.ndarray, widths: np.ndarray, thickness: np.ndarray, center: np.ndarray,
          taper_start: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed tubes along curves (N, S + 1, 3): lens cross-sections of ``widths`` (N,) by
    ``thickness`` (N,), flat side facing away from ``center`` (the head), tapering to a point.

    Returns vertices (N * V, 3), faces, per-vertex (u across, v along) in [0, 1], and the clump
    index of each vertex. Each tube: S rings of RING vertices, a tip vertex, a root cap vertex.
    """
    n, sp1, _ = curves.shape
    s = sp1 - 1
    tang = np.gradient(curves, axis=1)
    tang /= np.maximum(np.linalg.norm(tang, axis=-1, keepdims=True), 1e-12)
    out = curves - center
    # Normal: the direction away from the head, made perpendicular to the tangent.
    nrm = out - (out * tang).sum(-1, keepdims=True) * tang
    nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
    bin_ = np.cross(tang, nrm)
    v = np.linspace(0, 1, sp1)
    # Width profile: full to taper_start, then narrowing to the tip (a slightly convex taper).
    prof = np.where(v < taper_start, 1.0 - 0.15 * (1 - v / taper_start) ** 2,
                    np.clip(1 - np.clip((v - taper_start) / (1 - taper_start), 0, 1) ** 1.6, 0, 1))
    phi = np.arange(RING) / RING * 2 * np.pi
    cx, cy = np.cos(phi), np.sin(phi)
    # Lens: the thickness shrinks towards the edges (|cos| -> 1), a crisp blade-like clump.
    lens = np.abs(cy) ** 0.8 * np.sign(cy)
    rings = s  # ring at every curve point except the tip
    w = (widths[:, None] * prof[None, :rings])[..., None]  # (N, rings, 1)
    t = (thickness[:, None] * np.maximum(prof[None, :rings], 0.25))[..., None]
    ring_pts = (curves[:, :rings, None, :] + 0.5 * w[..., None] * cx[None, None, :, None] * bin_[:, :rings, None, :]
                + 0.5 * t[..., None] * lens[None, None, :, None] * nrm[:, :rings, None, :])
    per = rings * RING + 2
    verts = np.concatenate([ring_pts.reshape(n, rings * RING, 3), curves[:, -1:, :], curves[:, :1, :]], 1)
    # Faces of one tube (shared topology).
    f = []
    for r in range(rings - 1):
        for k in range(RING):
            a, b = r * RING + k, r * RING + (k + 1) % RING
            c, d = a + RING, b + RING
            f += [(a, b, d), (a, d, c)]
    tip, cap = rings * RING, rings * RING + 1
    last = (rings - 1) * RING
    for k in range(RING):
        f.append((last + k, last + (k + 1) % RING, tip))
        f.append((cap, (k + 1) % RING, k))
    f = np.array(f, np.int64)
    # Orientation: make the tube's normals point outwards (test on the first tube's volume).
    v0 = verts[0]
    vol = np.einsum("ij,ij->i", v0[f[:, 0]], np.cross(v0[f[:, 1]], v0[f[:, 2]])).sum()
    if vol < 0:
        f = f[:, ::-1]
    faces = (f[None, :, :] + (np.arange(n) * per)[:, None, None]).reshape(-1, 3)
    u = np.concatenate([np.tile(0.5 + 0.5 * cx, rings), [0.5, 0.5]])
    vv = np.concatenate([np.repeat(v[:rings], RING), [1.0, 0.0]])
    uv = np.tile(np.stack([u, vv], 1), (n, 1))
    clump = np.repeat(np.arange(n), per)
    return verts.reshape(-1, 3), faces.astype(np.int32), uv, clump


# -- styles ------------------------------------------------------------------------------------------
def _style_clumps(hp: HairParams, col: Collider, an, rng: np.random.Generator) -> tuple[Clumps, list]:
    """The clumps of a style, plus extra solid pieces (buns, ties) as (center, radii, kind)."""
    h, H = an.h, an.H
    lm = an.landmarks
    c = np.asarray(lm["head_center"], np.float64)
    k = H / 1.6
    wid = hp.width * k * (1.15 if an.landmarks.get("child") else 1.0)
    root_level = col.cap_level + 0.004
    y_chin = lm["y_chin"]
    items: list[Clumps] = []
    extras: list = []
    dens = hp.density
    length_back = {
        "short": 0.05 * h + hp.length * 0.12 * h,
        "spiky": 0.05 * h + hp.length * 0.1 * h,
        "bob": 0.45 * h + hp.length * 0.25 * h,
        "medium": 0.8 * h + hp.length * 0.5 * h,
        "long": 1.6 * h + hp.length * 1.4 * h,
        "hime": 1.5 * h + hp.length * 1.2 * h,
        "ponytail": 0.15 * h,
        "twintails": 0.35 * h,
        "bun": 0.15 * h,
        "twin_buns": 0.3 * h,
    }[hp.style]

    # Nothing hangs below min_y (the top of a skirt): shorten clumps that would.
    length_back = min(length_back, max(c[1] - col.min_y - 0.1 * h, 0.1 * h))

    # Back and crown: roots on the upper back half of the head, flowing down over it.
    nb = int(round(26 * dens)) if hp.style not in ("spiky",) else int(round(16 * dens))
    th = rng.uniform(0.35 * np.pi, 1.65 * np.pi, nb) + np.pi * 0.0
    ph = rng.uniform(0.15, 1.25, nb)
    dirs = _sph(th, ph)
    roots = _scalp_points(col, c, dirs, root_level)
    if hp.style == "spiky":
        flow = dirs + np.array([0, 0.4, 0]) + rng.normal(0, 0.15, (nb, 3))
        items.append(_clumps(roots, flow, rng.uniform(0.25, 0.45, nb) * h, wid * rng.uniform(1.0, 1.4, nb), 0.005,
                             hug=np.inf))
    else:
        flow = _drape(roots, c, 0.25)
        extra = (ph - 0.15) * 0.35 * h  # roots higher up need to travel further
        ln = length_back + extra + rng.uniform(-0.08, 0.08, nb) * h
        items.append(_clumps(roots, flow, ln, wid * rng.uniform(1.1, 1.6, nb), 0.45))
    # Crown cover: short clumps from the top falling in all directions.
    ncr = int(round(12 * dens))
    th = rng.uniform(0, 2 * np.pi, ncr)
    ph = rng.uniform(1.05, 1.45, ncr)
    dirs = _sph(th, ph)
    roots = _scalp_points(col, c, dirs, root_level)
    flow = _drape(roots, c, 0.05)
    if hp.style == "spiky":
        flow = dirs + np.array([0, 0.6, 0.1])
    items.append(_clumps(roots, flow, rng.uniform(0.3, 0.45, ncr) * h, wid * rng.uniform(1.3, 1.8, ncr),
                         0.4 if hp.style != "spiky" else 0.01, hug=0.006 if hp.style != "spiky" else np.inf))

    # Bangs: roots along the front of the crown, falling over the forehead, tips above the eyes.
    nbg = int(round({"straight": 9, "swept": 8, "parted": 8, "curtain": 6, "choppy": 10}[hp.bangs] * dens))
    spread = 0.62 * np.pi if hp.bangs != "curtain" else 0.75 * np.pi
    th = np.linspace(-spread / 2, spread / 2, nbg) + rng.normal(0, 0.04, nbg)
    ph = 0.95 + 0.1 * np.cos(th) + rng.normal(0, 0.03, nbg)
    dirs = _sph(th, ph)
    roots = _scalp_points(col, c, dirs, root_level)
    y_tip = lm["y_eye"] + (0.1 if hp.bangs != "choppy" else 0.06) * h
    ln = np.maximum((roots[:, 1] - y_tip) * 1.35, 0.15 * h)
    if hp.bangs == "choppy":
        ln *= rng.uniform(0.85, 1.15, nbg)
    if hp.bangs == "parted":
        part = 0.15 * rng.choice([-1, 1])
        side = np.sign(th - part)
        bias = np.stack([side * 0.25, np.zeros(nbg), np.zeros(nbg)], 1)
        ln = np.where(np.abs(th - part) < 0.25, ln * 0.9, ln)
    elif hp.bangs == "swept":
        bias = np.array([[rng.choice([-1, 1]) * 0.3, 0, 0]])
    elif hp.bangs == "curtain":
        bias = np.stack([np.sign(th) * 0.45, np.zeros(nbg), np.zeros(nbg)], 1)
        ln = ln * 1.15
    else:
        bias = None
    flow = _drape(roots, c, 0.35)
    items.append(_clumps(roots, flow, ln, wid * rng.uniform(1.0, 1.35, nbg), 0.35, bias))

    # Side locks in front of the ears.
    if hp.side_locks or hp.style in ("hime", "bob", "long", "medium"):
        ns = 2 if hp.style not in ("hime",) else 3
        for side in (-1.0, 1.0):
            th = side * np.linspace(0.45, 0.65, ns) * np.pi
            ph = np.full(ns, 0.55) + rng.normal(0, 0.05, ns)
            dirs = _sph(th, ph)
            roots = _scalp_points(col, c, dirs, root_level)
            base = (roots[:, 1] - y_chin) + (0.05 + 0.5 * hp.length) * h
            if hp.style in ("long", "hime"):
                base = base + 0.4 * h
            if hp.style == "short":
                base = (roots[:, 1] - y_chin) * 0.6
            flow = _drape(roots, c, 0.2) + np.array([0, 0, 0.3])
            items.append(_clumps(roots, flow, base, wid * rng.uniform(0.9, 1.2, ns), 0.5))

    # Side hair covering the temples and above the ears.
    nside = int(round(6 * dens))
    for side in (-1.0, 1.0):
        th = side * rng.uniform(0.3, 0.55, nside) * np.pi
        ph = rng.uniform(0.55, 1.0, nside)
        dirs = _sph(th, ph)
        roots = _scalp_points(col, c, dirs, root_level)
        ln = np.full(nside, 0.35 * h) if hp.style in ("short", "spiky", "ponytail", "bun") else \
            np.full(nside, max(0.5 * h, 0.8 * length_back))
        ln = ln * rng.uniform(0.8, 1.1, nside)
        flow = _drape(roots, c, 0.25)
        items.append(_clumps(roots, flow, ln, wid * rng.uniform(1.1, 1.5, nside), 0.45))

    # Tails and buns.
    tails = []
    if hp.style == "ponytail":
        tails = [(np.array([0.0, 0.75 * h, -0.95]), 0.9 * h + hp.length * 1.2 * h)]
    elif hp.style == "twintails":
        tails = [(np.array([s * 0.85, 0.75 * h, -0.45]), 0.8 * h + hp.length * 1.3 * h) for s in (-1, 1)]
    for anchor_dir, tl in tails:
        dirn = anchor_dir.copy()
        dirn[1] = 0.0
        dirn = dirn / np.linalg.norm(dirn)
        d3 = np.array([dirn[0], 0.55, dirn[2]])
        d3 /= np.linalg.norm(d3)
        anchor = _scalp_points(col, c, d3[None], root_level)[0] + d3 * 0.01 * k
        nt = int(round(9 * dens))
        jitter = rng.normal(0, 0.012 * k, (nt, 3))
        roots = anchor + jitter
        flow = np.tile(dirn * 0.8 + np.array([0, 0.25, 0]), (nt, 1)) + rng.normal(0, 0.12, (nt, 3))
        items.append(_clumps(roots, flow, tl * rng.uniform(0.8, 1.05, nt), wid * rng.uniform(1.3, 1.8, nt), 0.35,
                             hug=np.inf))
        extras.append(("tie", anchor, d3, 0.022 * k))
    if hp.style in ("bun", "twin_buns"):
        if hp.style == "bun":
            spots = [np.array([0.0, 0.7, -0.75])]
        else:
            spots = [np.array([s * 0.6, 0.85, -0.2]) for s in (-1, 1)]
        for sdir in spots:
            sdir = sdir / np.linalg.norm(sdir)
            anchor = _scalp_points(col, c, sdir[None], root_level)[0]
            r = (0.2 if hp.style == "bun" else 0.15) * h
            extras.append(("bun", anchor + sdir * 0.7 * r, sdir, r))
    return _cat(items), extras


# -- texture -----------------------------------------------------------------------------------------
def paint_hair_texture(hp: HairParams, ring_v: np.ndarray, rng: np.random.Generator, cap_slot: int) -> np.ndarray:
    """Hair texture (256, SLOTS * SLOT_PX, 3) uint8: one column slot per clump; ``ring_v`` (SLOTS,)
    where along each clump (v) the highlight band goes (NaN: no band).

    The colour is separable -- a root-to-tip gradient (rows) times darker clump edges and strand
    lines (columns) -- so it is built from 1D profiles; only the highlight bands are drawn per slot.
    """
    h = 256
    v = (np.arange(h) + 0.5) / h
    su = (np.arange(SLOT_PX) + 0.5) / SLOT_PX  # across one clump
    base = np.asarray(hp.color, np.float32)
    tipc = np.asarray(hp.tip_color, np.float32)
    rows = paint.mix(base, tipc, paint.smoothstep(0.25, 1.0, v)[:, None]).astype(np.float32)
    root = (0.35 * (1 - paint.smoothstep(0.0, 0.2, v)))[:, None]
    rows = rows * (1 - root) + paint.shade(base, 0.6) * root  # shadowed under the clumps above
    edge = np.abs(su - 0.5) * 2
    a_edge = 0.45 * paint.smoothstep(0.55, 1.0, edge)
    phase = rng.uniform(0, 1, SLOTS)
    lines = 0.18 * (0.5 + 0.5 * np.cos(2 * np.pi * (su[None, :] * 3 + phase[:, None]))) ** 4  # (SLOTS, PX)
    # Per column: darkening amounts and the colour they pull towards.
    a_cols = 1 - (1 - a_edge[None, :]) * (1 - lines)  # (SLOTS, PX)
    dark = paint.shade(base, 0.6)
    a = a_cols.reshape(-1)[None, :, None]
    tex = rows[:, None, :] * (1 - a) + dark * a  # (H, W, 3)
    hl = paint.shade(paint.mix(base, tipc, 0.3), 1.55)
    fade = 1 - paint.smoothstep(0.6, 0.95, edge)
    zig = 0.012 * np.abs(((su * 2) % 1.0) - 0.5)
    for k in np.flatnonzero(~np.isnan(ring_v)):
        r0, r1 = max(int((ring_v[k] - 0.06) * h), 0), min(int((ring_v[k] + 0.07) * h) + 1, h)
        if r1 <= r0:
            continue
        d = np.abs(v[r0:r1, None] - ring_v[k] - zig[None, :]) - 0.03
        band = hp.highlight * np.clip(0.5 - d / 0.012, 0, 1) * fade[None, :]
        cols = slice(k * SLOT_PX, (k + 1) * SLOT_PX)
        tex[r0:r1, cols] = tex[r0:r1, cols] * (1 - band[..., None]) + hl * band[..., None]
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)


def paint_cap_texture(template: BodyTemplate, hp: HairParams, ring_y: float, y_chin: float, h: float) -> np.ndarray:
    """Texture (S, S, 3) of the scalp cap (body atlas layout): hair colour, darker low on the back,
    the highlight ring around the crown."""
    pos = template.garment_texel_pos
    y = pos[..., 1]
    base = np.asarray(hp.color, np.float32)
    tex = np.empty(pos.shape[:2] + (3,), np.float32)
    tex[:] = base
    low = 1 - paint.smoothstep(y_chin + 0.2 * h, y_chin + 0.6 * h, y)
    paint.blend(tex, paint.shade(base, 0.7), 0.5 * low)
    ang = np.arctan2(pos[..., 0], pos[..., 2])
    zig = 0.01 * h * np.abs(((ang * 10 / np.pi) % 1.0) - 0.5)
    band = np.clip(0.5 - (np.abs(y - ring_y - zig) - 0.025 * h) / (0.01 * h), 0, 1)
    paint.blend(tex, paint.shade(base, 1.5), hp.highlight * band)
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)


# -- building ----------------------------------------------------------------------------------------
def build_hair(hp: HairParams, body: BodyShape, template: BodyTemplate, clearance: float,
               rng: np.random.Generator | None = None, a_pose_transforms=None, min_y: float = -1.0,
               solids: list | None = None) -> list[Mesh]:
    """The hair meshes (scalp cap, clumps, extras) around ``body``, each with a texture and dense
    skin weights in ``extras["dense_weights"]`` (the caller reduces them to 4 influences).

    ``clearance``: how far (metres) the clothes reach outside the body on the upper body;
    ``a_pose_transforms``: (R (J, 3, 3), t (J, 3)) of the pose the hair must also clear (the
    A-pose); ``min_y``: no hair below this height (the top of a skirt); ``solids``: accessories
    (center, radii, rotation) fixed to the upper chest that hair must avoid too.
    """
    from stdgen.data.procedural.garments import follow_shell

    rng = rng or np.random.default_rng(hp.seed)
    an = body.anatomy
    h = an.h
    lm = an.landmarks
    bone_index = {n: i for i, n in enumerate(HUMANOID_BONES)}
    cap_level = hp.volume
    # Hair meets the head, torso and arms only: leave hands, legs and feet out of the field.
    upper = np.array([not any(k in b for k in ("Hand", "Leg", "Foot", "Toes")) for b in body.prims.bones])
    rest = sdf.select(body.prims, upper)
    head = sdf.select(body.prims, np.array([b in ("head", "neck") for b in body.prims.bones]))
    posed = None
    if a_pose_transforms is not None:
        # Hair is shaped against the A-posed body only: the T-posed arms would make clumps slide
        # out sideways along them (the rest pose is not what renders show; see the README).
        rest = posed_primitives(rest, a_pose_transforms[0], a_pose_transforms[1], bone_index)
    if solids:
        # Accessories sit on the clothes: the field there must reach the clothes' level sooner, so
        # inflate them by the level difference between body and cap clearance.
        extra = sdf.ellipsoids(np.array([s[0] for s in solids]),
                               np.array([s[1] for s in solids]) + clearance + 0.003,
                               np.array([s[2] for s in solids]), "upperChest")
        rest = sdf.concat(rest, extra)
        if posed is not None:
            posed = sdf.concat(posed, extra)
    col = Collider(rest, posed, head, cap_level=cap_level + 0.003, body_level=clearance + 0.006,
                   y_neck=lm["y_neck"], min_y=min_y, y_switch=lm["y_chin"] - 0.01)

    # Scalp cap over the head above a hairline (template frame).
    tan = template.anatomy
    tl = tan.landmarks
    th_, y_c = tan.h, tl["y_chin"]
    hc = tl["head_center"]

    def cap_region(p):
        ang = np.arctan2(p[:, 0], p[:, 2] - hc[2])  # 0 front, pi back
        front = 0.5 + 0.5 * np.cos(ang)
        line = y_c + th_ * (0.22 + 0.5 * front ** 2)  # nape low, forehead high
        return np.minimum(p[:, 1] - line, p[:, 1] - (tl["y_neck"] + 0.03 * th_))

    def cap_loose(p):
        return 0.6 * hp.volume * np.clip((p[:, 1] - (y_c + 0.5 * th_)) / (0.5 * th_), 0, 1)

    meshes: list[Mesh] = []
    cap = follow_shell(template, body, cap_region, hp.volume * 0.5, 0.003, cap_loose)
    ring_y = lm["y_chin"] + 0.83 * h
    if cap is not None:
        ctex = paint_cap_texture(template, hp, tl["y_chin"] + 0.83 * th_, tl["y_chin"], th_)
        w = np.zeros((len(cap.vertices), len(HUMANOID_BONES)), np.float32)
        w[:, bone_index["head"]] = 1.0
        meshes.append(Mesh(cap.vertices, cap.faces, uvs=cap.uvs, uv_faces=cap.uv_faces, texture=ctex, name="hair_cap",
                           extras={"dense_weights": w}))

    clumps, extras = _style_clumps(hp, col, an, rng)
    curves = grow(col, clumps)
    n = len(curves)
    if n > SLOTS - 1:
        keep = np.sort(rng.choice(n, SLOTS - 1, replace=False))
        curves = curves[keep]
        clumps = Clumps(*[getattr(clumps, f)[keep] for f in Clumps.__dataclass_fields__])
        n = len(curves)
    verts, faces, uv, clump = sweep(curves, clumps.widths, clumps.thickness, np.asarray(lm["head_center"]))
    # Primitive subsets per guide point, shared by the tube vertices around it.
    seg = curves.shape[1] - 1
    point_of = np.concatenate([np.repeat(np.arange(seg), RING), [seg, 0]])
    cs_rest, cs_posed = col.subsets(curves.reshape(-1, 3))
    vi = (clump * (seg + 1) + np.tile(point_of, n))
    verts = col.push_out(verts, margin=0.001, subsets=(cs_rest[vi], cs_posed[vi]))
    # Where each clump crosses the ring height (v of the highlight band).
    ring_v = np.full(SLOTS, np.nan)
    ys = curves[:, :, 1]
    s_param = np.linspace(0, 1, curves.shape[1])
    for i in range(n):
        cross = np.flatnonzero((ys[i, :-1] - ring_y) * (ys[i, 1:] - ring_y) <= 0)
        if len(cross):
            j = cross[0]
            t = (ys[i, j] - ring_y) / (ys[i, j] - ys[i, j + 1] + 1e-12)
            ring_v[i] = s_param[j] + t * (s_param[1] - s_param[0])
    slot_u = (clump + uv[:, 0]) / SLOTS
    width = SLOTS * SLOT_PX
    uvs = np.stack([slot_u * (width - 2) / width + 1 / width, uv[:, 1] * 0.98 + 0.01], 1)
    tex = paint_hair_texture(hp, ring_v, rng, SLOTS - 1)
    # Extras: ties and buns, in the last slot (painted solid below).
    ex_v, ex_f, ex_uv = [], [], []
    count = len(verts)
    from stdgen.data.procedural.outfit import _ellipsoid_mesh

    last = SLOTS - 1
    tie_col = (np.asarray(hp.tie_color) * 255).astype(np.uint8)
    tex[:128, last * SLOT_PX:] = tie_col
    tex[128:, last * SLOT_PX:] = (np.asarray(hp.color) * 255).astype(np.uint8)
    for kind, center, direction, r in extras:
        from stdgen.data.posing import rotation_between

        rot = rotation_between((0, 1, 0), direction)
        if kind == "tie":
            v, f = _ellipsoid_mesh(center, (r, 0.35 * r, r), rot)
            vcoord = 0.25
        else:
            v, f = _ellipsoid_mesh(center, (r, 0.85 * r, r), rot)
            vcoord = 0.75
        v = col.push_out(v, margin=0.001)
        ex_v.append(v)
        ex_f.append(f + count)
        ex_uv.append(np.tile([[(last + 0.5) / SLOTS, vcoord]], (len(v), 1)))
        count += len(v)
    if ex_v:
        verts = np.concatenate([verts] + ex_v)
        faces = np.concatenate([faces] + ex_f)
        uvs = np.concatenate([uvs] + ex_uv)
    # Skin weights: the head, blending into the upper chest below the neck (long hair follows the
    # shoulders a little when the head turns).
    w = np.zeros((len(verts), len(HUMANOID_BONES)), np.float32)
    low = np.clip((lm["y_neck"] - verts[:, 1]) / (0.6 * h), 0, 0.7)
    w[:, bone_index["head"]] = 1 - low
    w[:, bone_index["upperChest"]] = low
    meshes.append(Mesh(verts, faces, uvs=uvs.astype(np.float32), texture=tex, name="hair",
                       extras={"dense_weights": w}))
    return meshes
