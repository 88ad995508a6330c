"""Outfits: which garments a character wears (sampled from the seed) and how each kind is built.

An outfit fills slots -- a top and a bottom, or a dress; optionally outerwear, legwear, shoes,
gloves -- with 1 to 4 garments, coloured from one palette so the pieces go together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stdgen.data.procedural import meshops, paint, sdf
from stdgen.data.procedural.body import BodyShape, BodyTemplate
from stdgen.data.procedural.garments import (
    GARMENT_KINDS,
    GARMENT_SLOTS,
    LAYER_OFFSET,
    LAYER_THICKNESS,
    PATTERNS,
    Frame,
    GarmentResult,
    GarmentSpec,
    _foot_field,
    _hand_field,
    _legs_field,
    _neck_hole,
    _top_field,
    follow_shell,
    paint_follow_texture,
    paint_skirt_texture,
    skirt_shell,
)
from stdgen.structures.character import HUMANOID_BONES

# -- palettes ----------------------------------------------------------------------------------------
_SCHEMES = ("uniform", "pastel", "vivid", "earth", "mono", "dark")


def _palette(rng: np.random.Generator) -> list[np.ndarray]:
    """A handful of colours that go together."""
    scheme = str(rng.choice(_SCHEMES, p=[0.2, 0.2, 0.2, 0.15, 0.1, 0.15]))
    hue = rng.uniform()
    if scheme == "uniform":  # school uniforms: navy / white / red accents / greys
        cols = [paint.hsv(0.62 + rng.normal(0, 0.02), 0.6, 0.3), np.array([0.96, 0.96, 0.95], np.float32),
                paint.hsv(rng.choice([0.0, 0.98, 0.6, 0.33]), 0.75, 0.75), paint.hsv(0.6, 0.1, 0.55),
                paint.hsv(0.08, 0.5, 0.25)]
    elif scheme == "pastel":
        cols = [paint.hsv(hue + k * 0.17, rng.uniform(0.2, 0.4), rng.uniform(0.85, 0.97)) for k in range(4)]
        cols.append(np.array([0.97, 0.96, 0.95], np.float32))
    elif scheme == "vivid":
        cols = [paint.hsv(hue + k * 0.31, rng.uniform(0.65, 0.9), rng.uniform(0.6, 0.9)) for k in range(4)]
        cols.append(paint.hsv(hue, 0.1, 0.15))
    elif scheme == "earth":
        cols = [paint.hsv(rng.uniform(0.05, 0.14), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.75)) for _ in range(3)]
        cols += [paint.hsv(0.25 + rng.uniform(-0.05, 0.05), 0.35, 0.45), np.array([0.9, 0.87, 0.8], np.float32)]
    elif scheme == "mono":
        cols = [paint.hsv(hue, rng.uniform(0, 0.08), v) for v in (0.12, 0.95, 0.5, 0.3)]
        cols.append(paint.hsv(hue, 0.7, 0.7))
    else:  # dark / gothic
        cols = [paint.hsv(hue, 0.2, 0.12), paint.hsv(hue + 0.5, 0.6, 0.5), paint.hsv(0.0, 0.0, 0.9),
                paint.hsv(hue, 0.5, 0.3), paint.hsv(0.95, 0.7, 0.5)]
    order = rng.permutation(len(cols))
    return [cols[i] for i in order]


def _c(x) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(x, 0, 1))


# -- sampling ----------------------------------------------------------------------------------------
_TOPS = ("tshirt", "long_shirt", "tank_top", "sweater", "sailor_top")
_BOTTOMS = ("pleated_skirt", "flared_skirt", "shorts", "trousers")


def sample_outfit(rng: np.random.Generator, presentation: str, max_garments: int = 4,
                  kinds: tuple[str, ...] | None = None) -> list[GarmentSpec]:
    """1 to ``max_garments`` garment specs (restricted to ``kinds`` when given)."""
    allowed = set(kinds) if kinds is not None else set(GARMENT_KINDS)
    unknown = allowed - set(GARMENT_KINDS)
    if unknown:
        raise ValueError(f"unknown garment kinds {sorted(unknown)}; known: {GARMENT_KINDS}")
    male = presentation == "male"
    pal = _palette(rng)

    def pick(options, weights):
        opts = [(o, w) for o, w in zip(options, weights) if o in allowed]
        if not opts:
            return None
        w = np.array([x[1] for x in opts], np.float64)
        return opts[int(rng.choice(len(opts), p=w / w.sum()))][0]

    chosen: list[str] = []
    dress = pick(["dress"], [1.0]) if (not male and rng.uniform() < 0.22) else None
    if dress:
        chosen.append(dress)
    else:
        top = pick(_TOPS, [3, 2.5, 1, 1.5, 1.5 if not male else 0.3])
        bottom = pick(_BOTTOMS, [2.5, 1.5, 1.5, 2.5] if not male else [0.05, 0.0, 1.5, 4])
        chosen += [k for k in (top, bottom) if k]
    extras = []
    if rng.uniform() < 0.8:
        extras.append(pick(["shoes", "boots"], [3, 1]))
    if rng.uniform() < 0.55:
        extras.append(pick(["socks", "stockings"], [2, 1 if not male else 0.1]))
    if rng.uniform() < 0.3:
        extras.append(pick(["jacket", "coat", "vest"], [2, 1, 1.2]))
    if rng.uniform() < 0.06:
        extras.append(pick(["gloves"], [1.0]))
    for e in extras:
        if e and len(chosen) < max_garments and e not in chosen:
            chosen.append(e)
    if not chosen:  # everything filtered away: wear any allowed kind
        chosen.append(sorted(allowed)[int(rng.integers(len(allowed)))])
    chosen = chosen[:max_garments]
    hanging = any(k in chosen for k in ("pleated_skirt", "flared_skirt", "dress"))
    if hanging and "coat" in chosen:  # a coat's tails would fight a skirt's flare: wear a jacket
        chosen[chosen.index("coat")] = "jacket" if "jacket" in allowed else "coat"
    if hanging and "coat" in chosen:
        chosen.remove("coat")
    specs = [_sample_spec(rng, k, pal, chosen) for k in chosen]
    if hanging:
        # Jackets and vests end above the skirt's waistband (cropped), so the skirt can flare.
        top = next((s.params.get("top", 0.35) for s in specs if s.kind in ("pleated_skirt", "flared_skirt")), None)
        for s in specs:
            if s.kind in ("jacket", "vest"):
                s.params["above_skirt"] = -1.0 if top is None else float(top)
    ranks = stack_ranks(chosen)
    for s in specs:
        s.layer = ranks[s.kind]
    return specs


def stack_ranks(kinds: list[str]) -> dict[str, int]:
    """Layer of each garment in the stack (index into ``LAYER_OFFSET``): what is worn over what."""
    slots = {GARMENT_SLOTS[k]: k for k in kinds}
    skirt = slots.get("bottom") in ("pleated_skirt", "flared_skirt")
    ranks = {}
    for k in kinds:
        slot = GARMENT_SLOTS[k]
        if slot in ("legwear", "gloves"):
            r = 0
        elif slot == "bottom":
            r = 2 if skirt else 1
        elif slot == "top":
            r = 1 if skirt or "bottom" not in slots else 2
        elif slot == "dress":
            r = 1
        elif slot == "outer":
            r = 3 if k == "vest" else 4 if "vest" in kinds else 3
        else:  # shoes: over socks, and boots over trousers
            r = 2 if (k == "boots" and slots.get("bottom") in ("trousers", "shorts")) else 1
        ranks[k] = r
    return ranks


def _sample_spec(rng: np.random.Generator, kind: str, pal: list[np.ndarray], outfit: list[str]) -> GarmentSpec:
    u = lambda lo, hi: float(rng.uniform(lo, hi))
    color = pal[0] if GARMENT_SLOTS[kind] in ("top", "dress") else pal[1] if GARMENT_SLOTS[kind] == "bottom" else \
        pal[2] if GARMENT_SLOTS[kind] == "outer" else pal[3] if GARMENT_SLOTS[kind] != "shoes" else pal[4]
    color = np.clip(color + rng.normal(0, 0.02, 3), 0, 1)
    color2 = pal[(1 + int(rng.integers(4))) % len(pal)]
    trim = pal[int(rng.integers(len(pal)))]
    if np.abs(np.asarray(trim) - color).sum() < 0.15:
        trim = paint.shade(color, 0.6) if color.mean() > 0.4 else paint.shade(color, 1.5)
    pattern = "plain"
    if kind in ("tshirt", "long_shirt", "sweater", "dress", "pleated_skirt", "flared_skirt", "shorts", "socks",
                "stockings", "tank_top", "trousers") and rng.uniform() < 0.35:
        pattern = str(rng.choice(PATTERNS[2:]))
        if kind == "stockings":
            pattern = "stripes_h"
    p: dict = {"pattern_scale": u(0.7, 1.4)}
    layer = 1
    if kind == "tshirt":
        p.update(hem=u(0.25, 0.6), sleeve=u(0.3, 0.65), neck=u(0.055, 0.07),
                 v_depth=u(0.03, 0.07) * (rng.uniform() < 0.3),
                 trim=u(0.0, 0.012) * (rng.uniform() < 0.5))
    elif kind == "long_shirt":
        p.update(hem=u(0.2, 0.55), neck=u(0.05, 0.06), v_depth=u(0.03, 0.06) * (rng.uniform() < 0.5),
                 buttons=int(rng.integers(3, 6)) * (rng.uniform() < 0.6), trim=u(0.008, 0.015), loose=u(0.0, 0.008),
                 collar=u(0.025, 0.04) if rng.uniform() < 0.6 else 0.0)
    elif kind == "tank_top":
        p.update(hem=u(0.3, 0.6), neck=u(0.065, 0.085), v_depth=u(0.04, 0.1), trim=u(0.0, 0.008))
    elif kind == "sweater":
        p.update(hem=u(0.05, 0.35), neck=u(0.05, 0.065), trim=u(0.015, 0.03), loose=u(0.008, 0.02),
                 sleeve_fraction=u(0.92, 1.0))
    elif kind == "sailor_top":
        p.update(hem=u(0.35, 0.65), sleeve=u(0.35, 0.6) if rng.uniform() < 0.4 else 1.0, neck=u(0.055, 0.065),
                 v_depth=u(0.08, 0.12), flap=u(0.3, 0.5), bow=bool(rng.uniform() < 0.8),
                 bow_rgb=[(0.85, 0.15, 0.2), (0.8, 0.1, 0.15), (0.15, 0.2, 0.45), (0.95, 0.75, 0.2),
                          (0.95, 0.55, 0.7)][int(rng.integers(5))])
        trim = pal[0] if np.abs(pal[0] - color).sum() > 0.3 else paint.hsv(0.62, 0.6, 0.3)
        color2 = np.array([0.97, 0.97, 0.97], np.float32)
    elif kind == "dress":
        p.update(sleeve=[0.0, u(0.3, 0.6), 1.0][int(rng.choice(3, p=[0.45, 0.35, 0.2]))], neck=u(0.055, 0.075),
                 v_depth=u(0.0, 0.08) * (rng.uniform() < 0.4), length=u(0.35, 0.9), flare=u(0.15, 0.4),
                 pleats=int(rng.choice([0, 0, 12, 18])), waves=int(rng.integers(5, 10)), wave_depth=u(0.02, 0.08),
                 hem_trim=u(0.0, 0.02), waistband=u(0.0, 0.02))
    elif kind == "pleated_skirt":
        p.update(top=u(0.25, 0.45), length=u(0.22, 0.6), flare=u(0.12, 0.3), pleats=int(rng.integers(14, 26)),
                 pleat_depth=u(0.04, 0.09), hem_trim=u(0.0, 0.015) * (rng.uniform() < 0.4),
                 hem_stripe=bool(rng.uniform() < 0.3), waistband=u(0.01, 0.025))
        layer = 2
    elif kind == "flared_skirt":
        p.update(top=u(0.25, 0.45), length=u(0.25, 0.75), flare=u(0.25, 0.5), waves=int(rng.integers(5, 10)),
                 wave_depth=u(0.03, 0.1), hem_trim=u(0.0, 0.02) * (rng.uniform() < 0.4), waistband=u(0.0, 0.02))
        layer = 2
    elif kind == "shorts":
        p.update(top=u(0.25, 0.45), length=u(0.12, 0.5), loose=u(0.0, 0.025), trim=u(0.0, 0.012))
    elif kind == "trousers":
        p.update(top=u(0.25, 0.45), loose=u(0.0, 0.03), trim=u(0.0, 0.01) * (rng.uniform() < 0.3),
                 length=u(0.9, 1.0) if "boots" not in outfit else u(0.55, 0.7))
    elif kind in ("jacket", "coat"):
        p.update(hem=u(-0.1, 0.4) if kind == "jacket" else 0.5, neck=u(0.065, 0.085), open=u(0.02, 0.06),
                 trim=u(0.0, 0.02), loose=u(0.004, 0.015), sleeve_fraction=u(0.93, 1.0),
                 buttons=int(rng.integers(0, 4)), length=u(0.5, 0.9), flare=u(0.08, 0.2))
        layer = 3
    elif kind == "vest":
        p.update(hem=u(0.2, 0.5), neck=u(0.06, 0.075), v_depth=u(0.08, 0.14), trim=u(0.008, 0.02),
                 buttons=int(rng.integers(0, 4)) * (rng.uniform() < 0.4))
        layer = 2
    elif kind == "socks":
        p.update(height=u(0.1, 0.8), trim=u(0.008, 0.02))
        layer = 0
    elif kind == "stockings":
        p.update(height=u(0.55, 0.85), trim=u(0.0, 0.03))
        layer = 0
    elif kind == "shoes":
        p.update(height=u(0.0, 0.4), sole=u(0.008, 0.018), trim=u(0.004, 0.012))
        color = pal[4] if rng.uniform() < 0.5 else paint.hsv(0.07, 0.5, rng.uniform(0.1, 0.4))
    elif kind == "boots":
        p.update(height=u(0.35, 0.75), sole=u(0.01, 0.02), trim=u(0.0, 0.015))
        color = paint.hsv(rng.uniform(0.02, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.08, 0.4))
    elif kind == "gloves":
        p.update(length=u(0.0, 0.5), trim=u(0.0, 0.012))
        layer = 0
    return GarmentSpec(kind=kind, color=_c(color), color2=_c(color2), trim_color=_c(trim), pattern=pattern,
                       layer=layer, params=p)


# -- building ----------------------------------------------------------------------------------------
@dataclass
class BuildContext:
    """What garment builders need: the template (canonical frame), the character's body shape, its
    torso-and-leg vertices in rest and A-pose (for skirt clearance) and the bone index."""

    template: BodyTemplate
    body: BodyShape
    frame: Frame
    leg_points: list[np.ndarray]
    bone_index: dict[str, int]
    fields: list | None = None  # the torso-and-leg SDF in rest and A-pose (skirt clearance)


def _result(name: str, shells: list[tuple[meshops.Shell, np.ndarray]], outer_offset: float,
            covers_back: bool) -> GarmentResult:
    """Merge shells (each with its own texture) into one garment mesh with one atlas texture."""
    from stdgen.structures.mesh import Mesh, merge_meshes

    meshes = [Mesh(s.vertices, s.faces, uvs=s.uvs, uv_faces=s.uv_faces, texture=t, name=name) for s, t in shells]
    merged = merge_meshes(meshes, name=name) if len(meshes) > 1 else meshes[0]
    weights = np.concatenate([s.attrs["weights"] for s, _ in shells])
    # Which vertices belong to body-following shells (cut from the body; they take the skin
    # weights of the body under them), as opposed to hanging skirts and accessories.
    follows = np.concatenate([np.full(len(s.vertices), "tpos" in s.attrs and "theta" not in s.attrs)
                              for s, _ in shells])
    return GarmentResult(name=name, vertices=merged.vertices.astype(np.float64), faces=merged.faces, uvs=merged.uvs,
                         uv_faces=merged.uv_faces if merged.uv_faces is not None else merged.faces,
                         weights=weights, texture=merged.texture, outer_offset=outer_offset,
                         covers_back=covers_back, extras={"follows": follows})


def build_garment(spec: GarmentSpec, ctx: BuildContext) -> GarmentResult | None:
    """Build one garment; None if its region came out empty."""
    fr = ctx.frame
    an = fr.an
    T, H = an.T, an.H
    p = spec.params
    k = spec.kind
    layer = spec.layer
    off, th = LAYER_OFFSET[layer], LAYER_THICKNESS[layer]
    sx, ex, wx = fr.shoulder_x, fr.elbow_x, fr.wrist_x
    y_c, y_w = fr.y_crotch, fr.y_waist
    shells: list[tuple[meshops.Shell, np.ndarray]] = []
    covers_back = False
    outer = off + th

    def follow(region, offset, thick, loose=None, trim=0.0, **paint_kw):
        sh = follow_shell(ctx.template, ctx.body, region, offset, thick, loose)
        if sh is None:
            return None
        tex = paint_follow_texture(ctx.template, spec, region, fr, trim_width=trim, **paint_kw)
        shells.append((sh, tex))
        return sh

    if k in ("tshirt", "long_shirt", "tank_top", "sweater", "sailor_top", "vest", "jacket", "coat"):
        hem = y_c + p.get("hem", 0.4) * (y_w - y_c) if k != "coat" else y_w - 0.1 * T
        if "above_skirt" in p:  # cropped above a skirt's waistband (-1: a dress's waist seam)
            s_top = y_w + 0.02 * T if p["above_skirt"] < 0 else \
                y_c + (0.5 + 0.5 * p["above_skirt"]) * (y_w - y_c) + 0.05 * T
            hem = max(hem, s_top + 0.012)
        if k in ("tshirt", "sailor_top") and p.get("sleeve", 1.0) < 1.0:
            sleeve = sx + p["sleeve"] * (ex - sx)
        elif k in ("tank_top", "vest"):
            sleeve = sx * 0.86
        else:
            sleeve = wx - (1 - p.get("sleeve_fraction", 0.97)) * (wx - sx) - 0.01
        v_depth = p.get("v_depth", 0.0)
        region = _top_field(fr, hem, sleeve, p.get("neck", 0.06), v_depth, front_open=p.get("open", 0.0)
                            if k in ("jacket", "coat") else 0.0)
        loose_amount = p.get("loose", 0.0)

        def loose(tp, a=loose_amount, sleeve=sleeve):
            # Looser towards the hem and the cuffs (fabric hangs), nothing at the neck and shoulders.
            down = np.clip((fr.y_chest - tp[:, 1]) / T, 0, 1)
            arm = np.clip((np.abs(tp[:, 0]) - sx) / max(sleeve - sx, 1e-3), 0, 1)
            return a * np.maximum(down, arm ** 2)

        ribbed = k == "sweater"
        sh = follow(region, off, th, loose if loose_amount > 0 else None, trim=p.get("trim", 0.0),
                    buttons=p.get("buttons", 0), ribbed=ribbed)
        if sh is None:
            return None
        covers_back = True
        outer = off + th + loose_amount
        if p.get("collar", 0.0) > 0:
            # A shirt collar: a band just outside the neckline, standing off the shirt.
            width = p["collar"]
            neck = p.get("neck", 0.06)

            def collar_band(tp, width=width, neck=neck, v_depth=v_depth):
                g = _neck_hole(fr, tp, neck, v_depth)
                y = tp[:, 1]
                return np.minimum(np.minimum(g, width - g),
                                  np.minimum(y - (fr.y_shoulder - 0.012 * H), fr.y_neck - y))

            def collar_lift(tp, width=width, neck=neck, v_depth=v_depth):
                return 0.004 * np.clip(1 - _neck_hole(fr, tp, neck, v_depth) / width, 0, 1)

            cspec = GarmentSpec(k, spec.color, spec.color2, spec.trim_color, "plain", layer, {})
            csh = follow_shell(ctx.template, ctx.body, collar_band, off + th + 0.0015, 0.0025, collar_lift)
            if csh is not None:
                shells.append((csh, paint_follow_texture(ctx.template, cspec, collar_band, fr,
                                                         trim_width=0.003)))
            outer += 0.008
        if k == "sailor_top":
            # The sailor collar: a square flap on the back and lapels along the V, one layer out.
            y_vb = fr.y_neck - v_depth
            y_flap = fr.y_shoulder - p.get("flap", 0.4) * (fr.y_shoulder - fr.y_chest) * 2.2

            def collar(tp):
                x, y, z = tp[:, 0], tp[:, 1], tp[:, 2]
                back = z < fr.neck_z + 0.01
                lapel = 0.55 * (y - y_vb) + 0.04 * H / 1.6 - np.abs(x)
                out = np.minimum(0.78 * sx - np.abs(x), np.where(back, y - y_flap, np.minimum(lapel, y - y_vb)))
                return np.minimum(out, region(tp) + 0.02)

            cspec = GarmentSpec(k, spec.trim_color, spec.color2, spec.trim_color, "plain", layer, {})
            csh = follow_shell(ctx.template, ctx.body, collar, off + th + 0.0025, 0.0022)
            if csh is not None:
                shells.append((csh, paint_follow_texture(ctx.template, cspec, collar, fr, stripes_at_edge=2)))
            outer += 0.005
        if k == "coat":
            y_top = ctx.body.anatomy.landmarks["y_waist"]
            length = p.get("length", 0.7)
            y_bot = ctx.body.anatomy.landmarks["y_crotch"] - length * (
                ctx.body.anatomy.landmarks["y_crotch"] - ctx.body.anatomy.landmarks["y_knee"]) * 1.6
            sk = skirt_shell(ctx.body, ctx.leg_points, {"flare": p.get("flare", 0.15)}, y_top + 0.02, y_bot,
                             off + 0.004, th, ctx.bone_index, ctx.fields)
            stex = paint_skirt_texture(spec, y_top - y_bot, 0.2)
            shells.append((sk, stex))
    elif k == "dress":
        sleeve = sx * 0.86 if p["sleeve"] == 0.0 else (sx + p["sleeve"] * (ex - sx) if p["sleeve"] < 1 else wx - 0.015)
        bodice_hem = y_w - 0.1 * T
        region = _top_field(fr, bodice_hem, sleeve, p.get("neck", 0.06), p.get("v_depth", 0.0))
        if follow(region, off, th, trim=p.get("hem_trim", 0.0) * 0.5) is None:
            return None
        covers_back = True
        lm = ctx.body.anatomy.landmarks
        y_top = lm["y_waist"] + 0.02 * T
        y_bot = lm["y_crotch"] - p["length"] * (lm["y_crotch"] - lm["y_ankle"]) * 0.95
        sk = skirt_shell(ctx.body, ctx.leg_points, p, y_top, y_bot, off + th + 0.002, th, ctx.bone_index, ctx.fields)
        shells.append((sk, paint_skirt_texture(spec, y_top - y_bot, 0.2)))
    elif k in ("pleated_skirt", "flared_skirt"):
        lm = ctx.body.anatomy.landmarks
        y_top = lm["y_crotch"] + (0.5 + 0.5 * p.get("top", 0.35)) * (lm["y_waist"] - lm["y_crotch"]) + 0.05 * an.T
        y_bot = lm["y_crotch"] - p["length"] * (lm["y_crotch"] - lm["y_ankle"])
        sk = skirt_shell(ctx.body, ctx.leg_points, p, y_top, y_bot, off, th, ctx.bone_index, ctx.fields)
        shells.append((sk, paint_skirt_texture(spec, y_top - y_bot, 0.2)))
    elif k in ("shorts", "trousers"):
        top = y_c + (0.5 + 0.5 * p.get("top", 0.35)) * (y_w - y_c) + 0.05 * T
        if k == "shorts":
            bottom = y_c - p["length"] * (y_c - fr.y_knee) - 0.02 * H
        else:
            bottom = y_c - p["length"] * (y_c - fr.y_ankle) + 0.01 * H
        region = _legs_field(fr, top, bottom)
        a = p.get("loose", 0.0)
        loose = (lambda tp, a=a, bottom=bottom, top=top: a * np.clip((y_c - tp[:, 1]) / (y_c - bottom), 0, 1) ** 1.5)
        if follow(region, off, th, loose if a > 0 else None, trim=p.get("trim", 0.0)) is None:
            return None
        outer = 0.0
    elif k in ("socks", "stockings"):
        top = fr.y_ankle + p["height"] * ((fr.y_knee if k == "socks" else fr.y_crotch) - fr.y_ankle)
        region = _foot_field(fr, top)
        if follow(region, off, th, trim=p.get("trim", 0.0)) is None:
            return None
        outer = 0.0
    elif k in ("shoes", "boots"):
        if k == "shoes":
            top = fr.y_ankle + (p["height"] - 0.3) * 0.04 * H
        else:
            top = fr.y_ankle + p["height"] * (fr.y_knee - fr.y_ankle)
        region = _foot_field(fr, top)
        sole = p.get("sole", 0.012)
        base = off

        def loose(tp, sole=sole):
            return sole * np.clip((0.03 * H - tp[:, 1]) / (0.03 * H), 0, 1) ** 2

        if follow(region, base, th, loose, trim=p.get("trim", 0.0)) is None:
            return None
        outer = 0.0
    elif k == "gloves":
        start = wx - p.get("length", 0.2) * (wx - ex) - 0.01
        region = _hand_field(fr, start)
        if follow(region, off, th, trim=p.get("trim", 0.0)) is None:
            return None
        outer = 0.0
    else:
        raise ValueError(f"unknown garment kind {k!r}")
    solids = []
    if k == "sailor_top" and p.get("bow", False):
        bow, solids = _bow(ctx, spec, off + th + 0.006)
        shells.append(bow)
    res = _result(k, shells, outer, covers_back)
    res.extras["solids"] = solids
    return res


def _ellipsoid_mesh(center, radii, rot=None, rings: int = 8, segments: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV-sphere mesh scaled to an ellipsoid (watertight: poles are single vertices)."""
    th = np.linspace(0, np.pi, rings + 1)[1:-1]
    ph = np.arange(segments) / segments * 2 * np.pi
    T, P = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([np.sin(T) * np.cos(P), np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    pts = np.concatenate([[[0, 1, 0]], pts, [[0, -1, 0]]])
    faces = meshops.grid_faces(rings - 1, segments, closed=True)[:, ::-1] + 1
    top = np.stack([np.zeros(segments, int), 1 + (np.arange(segments) + 1) % segments, 1 + np.arange(segments)], 1)
    last = 1 + (rings - 2) * segments
    ring = np.arange(segments)
    bot = np.stack([np.full(segments, len(pts) - 1), last + ring, last + (ring + 1) % segments], 1)
    faces = np.concatenate([top, faces, bot]).astype(np.int32)
    v = pts * np.asarray(radii)
    if rot is not None:
        v = v @ np.asarray(rot).T
    return v + np.asarray(center), faces


def _bow(ctx: BuildContext, spec: GarmentSpec, offset: float) -> tuple[tuple[meshops.Shell, np.ndarray], list]:
    """A ribbon bow (two loops, a knot, two tails) at the bottom of a sailor collar's V. Returns the
    (shell, texture) and its ellipsoids (center, radii, rotation) for the hair to avoid."""
    from stdgen.data.posing import rotation_about

    an = ctx.body.anatomy
    H = an.H
    y = an.landmarks["y_neck"] - ctx_v_depth(spec) - 0.01 * H
    # Find the surface in front at that height: march from the centre forwards.
    zs = np.linspace(0, 0.3, 200)
    pts = np.stack([np.zeros_like(zs), np.full_like(zs, y), zs], 1)
    f, _ = sdf.evaluate(ctx.body.prims, pts)
    z0 = zs[np.argmax(f > 0)] + offset + 0.012 * H / 1.6
    pieces = [
        ((0.028 * H / 1.6, y + 0.002, z0), (0.03, 0.018, 0.008), rotation_about((0, 0, 1), 0.25)),
        ((-0.028 * H / 1.6, y + 0.002, z0), (0.03, 0.018, 0.008), rotation_about((0, 0, 1), -0.25)),
        ((0.0, y, z0 + 0.004), (0.012, 0.012, 0.009), None),
        ((0.014, y - 0.035, z0 - 0.002), (0.011, 0.035, 0.005), rotation_about((0, 0, 1), 0.25)),
        ((-0.014, y - 0.035, z0 - 0.002), (0.011, 0.035, 0.005), rotation_about((0, 0, 1), -0.25)),
    ]
    verts, faces, solids = [], [], []
    n = 0
    for c, r, rot in pieces:
        r = np.asarray(r) * H / 1.6
        solids.append((np.asarray(c, np.float64), r, np.eye(3) if rot is None else rot))
        v, f_ = _ellipsoid_mesh(c, r, rot)
        verts.append(v)
        faces.append(f_ + n)
        n += len(v)
    v = np.concatenate(verts)
    f = np.concatenate(faces)
    # Keep every vertex outside the body (and the collar) whatever the body shape.
    fv, g = sdf.evaluate(ctx.body.prims, v, grad=True)
    push = np.clip(offset - fv, 0, None)
    v = v + g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9) * push[:, None]
    w = np.zeros((len(v), len(HUMANOID_BONES)), np.float32)
    w[:, ctx.bone_index["upperChest"]] = 1.0
    tex = np.empty((8, 8, 3), np.uint8)
    col = np.asarray(spec.params.get("bow_rgb", (0.85, 0.15, 0.2)), np.float32)
    tex[:] = (col * 255).astype(np.uint8)
    uvs = np.full((1, 2), 0.5, np.float32)
    shell = meshops.Shell(v, f, uvs, np.zeros_like(f), {"weights": w})
    return (shell, tex), solids


def ctx_v_depth(spec: GarmentSpec) -> float:
    return float(spec.params.get("v_depth", 0.08))
