"""Body parameters (the sliders) and the generator configuration.

Everything a character is made from is drawn from the seed into plain dataclasses, so a character
is described by JSON-able data (stored in ``Character.meta``) and its construction is a pure
function of those parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PRESENTATIONS: tuple[str, ...] = ("female", "male", "child")


@dataclass
class BodyParams:
    """Body sliders. Lengths in metres; factors are relative to the presentation's average (1.0).

    ``head_ratio`` is the height in heads (anime: 5 to 7.5); ``leg_fraction`` the crotch height
    over the height; ``build`` 0 (slim) .. 1 (sturdy) thickens limbs and torso; ``bust`` 0 .. 1.
    """

    presentation: str = "female"
    height: float = 1.6
    head_ratio: float = 6.3
    leg_fraction: float = 0.47
    build: float = 0.35
    shoulder_width: float = 1.0
    hip_width: float = 1.0
    waist: float = 1.0
    bust: float = 0.5
    head_width: float = 1.0
    chin: float = 0.5
    neck_length: float = 1.0
    arm_length: float = 1.0
    skin_tone: tuple[float, float, float] = (0.99, 0.87, 0.80)

    def to_dict(self) -> dict:
        return asdict(self)


# Average sliders per presentation (what ``build``/``*_width`` factors of 1.0 mean).
_BASE = {
    "female": dict(height=(1.50, 1.70), head_ratio=(5.8, 7.0), leg_fraction=(0.465, 0.50), bust=(0.2, 1.0)),
    "male": dict(height=(1.62, 1.85), head_ratio=(6.3, 7.5), leg_fraction=(0.465, 0.50), bust=(0.0, 0.0)),
    "child": dict(height=(1.10, 1.40), head_ratio=(5.0, 5.8), leg_fraction=(0.42, 0.46), bust=(0.0, 0.1)),
}

#: Anime skin tones (sRGB), from pale to tanned and dark.
SKIN_TONES: tuple[tuple[float, float, float], ...] = (
    (1.00, 0.92, 0.86), (0.99, 0.88, 0.80), (0.98, 0.85, 0.76), (0.96, 0.82, 0.72), (0.93, 0.76, 0.64),
    (0.86, 0.66, 0.52), (0.74, 0.54, 0.40), (0.58, 0.40, 0.29), (0.99, 0.90, 0.88), (0.95, 0.84, 0.78),
)  # fmt: skip


def sample_body(rng: np.random.Generator, presentation: str | None = None) -> BodyParams:
    """Random body sliders (the presentation drawn female 45 %, male 40 %, child 15 % unless given)."""
    if presentation is None:
        presentation = str(rng.choice(PRESENTATIONS, p=[0.45, 0.40, 0.15]))
    base = _BASE[presentation]
    u = lambda lo, hi: float(rng.uniform(lo, hi))
    tone = np.asarray(SKIN_TONES[int(rng.choice(len(SKIN_TONES), p=_skin_weights()))])
    tone = np.clip(tone + rng.normal(0, 0.012, 3), 0, 1)
    male = presentation == "male"
    return BodyParams(
        presentation=presentation,
        height=u(*base["height"]),
        head_ratio=u(*base["head_ratio"]),
        leg_fraction=u(*base["leg_fraction"]),
        build=float(np.clip(rng.beta(2, 3) + (0.15 if male else 0.0), 0, 1)),
        shoulder_width=u(0.92, 1.08),
        hip_width=u(0.92, 1.08),
        waist=u(0.92, 1.06),
        bust=u(*base["bust"]),
        head_width=u(0.94, 1.06),
        chin=u(0.2, 0.8),
        neck_length=u(0.9, 1.1),
        arm_length=u(0.96, 1.04),
        skin_tone=tuple(float(c) for c in tone),
    )


def _skin_weights() -> np.ndarray:
    w = np.array([3, 4, 4, 3, 2, 1.5, 1, 0.8, 2, 2], np.float64)
    return w / w.sum()


@dataclass
class CharacterConfig:
    """What :func:`~stdgen.data.procedural.make_character` may produce.

    ``presentation`` fixes it (None: random). ``garment_kinds`` restricts the garments used (None:
    all). ``max_garments`` caps garments per character (1..4 counted as pieces of an outfit; shoes
    and socks each count). ``hair_styles`` restricts the hairstyles. ``pose``: ``"a"`` (canonical
    A-pose), ``"rest"`` (T-pose), ``"random"`` or ``"augmented"`` (arm-angle augmentation around
    the A-pose). Textures are 512 x 1024 (body: face chart + atlas), 512 x 512 per garment and
    scalp cap, 256 x 1024 for the hair clumps.
    """

    presentation: str | None = None
    garment_kinds: tuple[str, ...] | None = None
    max_garments: int = 4
    hair_styles: tuple[str, ...] | None = None
    pose: str = "a"

    def __post_init__(self) -> None:
        if self.presentation is not None and self.presentation not in PRESENTATIONS:
            raise ValueError(f"presentation must be one of {PRESENTATIONS} or None, got {self.presentation!r}")
        if not 1 <= self.max_garments <= 4:
            raise ValueError(f"max_garments must be in 1..4, got {self.max_garments}")
        if self.pose not in ("a", "rest", "random", "augmented"):
            raise ValueError(f"pose must be 'a', 'rest', 'random' or 'augmented', got {self.pose!r}")
