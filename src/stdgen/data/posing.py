"""Poses for humanoid skeletons: the canonical A-pose, arm-angle augmentation, random natural poses.

Everything here works on any :class:`~stdgen.structures.character.Skeleton` that uses the VRM humanoid
bone names (procedural characters, imported VRM files), and is computed from the skeleton's
*actual* rest joint positions, so it works for T-pose rests and for rests that are already A-ish.

Pose convention (``stdgen.structures.character``): one local rotation per bone, about the bone's rest
joint, in world-aligned axes (VRM 1.0 normalised bones). Axes used in the limits below: +X is the
character's left, +Y up, +Z forward. For a left-side bone a positive rotation about Z raises a
T-posed arm (and swings a leg outwards), a negative rotation about Y swings an arm forwards, a
negative rotation about X swings a leg forwards and a positive one bends a knee backwards.
Right-side limits are the mirror images (rotations about Y and Z change sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stdgen.structures.character import Pose, Skeleton

SIDES: tuple[str, str] = ("left", "right")
#: +1 for the character's left (+X), -1 for its right.
SIDE_SIGN: dict[str, float] = {"left": 1.0, "right": -1.0}


# -- rotations ---------------------------------------------------------------------------------------
def rotation_about(axis, angle_rad: float) -> np.ndarray:
    """(3, 3) rotation by ``angle_rad`` about ``axis`` (right-handed; Rodrigues' formula)."""
    a = np.asarray(axis, np.float64)
    n = np.linalg.norm(a)
    if n < 1e-12 or angle_rad == 0:
        return np.eye(3)
    x, y, z = a / n
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def rotation_between(a, b) -> np.ndarray:
    """(3, 3) smallest rotation taking direction ``a`` to direction ``b`` (no twist about them)."""
    a = np.asarray(a, np.float64) / max(np.linalg.norm(a), 1e-30)
    b = np.asarray(b, np.float64) / max(np.linalg.norm(b), 1e-30)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.clip(a @ b, -1, 1))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # Opposite directions: half a turn about any axis perpendicular to a.
        perp = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        return rotation_about(perp, math.pi)
    return rotation_about(axis, math.atan2(s, c))


def euler_zyx(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """(3, 3) ``Rz @ Ry @ Rx`` from angles in degrees about the world-aligned axes."""
    return (rotation_about((0, 0, 1), math.radians(rz_deg)) @ rotation_about((0, 1, 0), math.radians(ry_deg))
            @ rotation_about((1, 0, 0), math.radians(rx_deg)))


# -- measuring ---------------------------------------------------------------------------------------
def _bone(skeleton: Skeleton, name: str) -> int | None:
    return skeleton.names.index(name) if name in skeleton.names else None


def bone_direction(skeleton: Skeleton, pose: Pose | None, bone: str, child: str) -> np.ndarray:
    """(3,) unit direction from joint ``bone`` to joint ``child`` in ``pose``."""
    joints = skeleton.posed_joints(pose).astype(np.float64)
    d = joints[skeleton.index(child)] - joints[skeleton.index(bone)]
    return d / max(np.linalg.norm(d), 1e-30)


def upper_arm_angle(skeleton: Skeleton, pose: Pose | None, side: str = "left") -> float:
    """Angle in degrees of the upper arm (shoulder joint -> elbow) below the horizontal plane."""
    d = bone_direction(skeleton, pose, f"{side}UpperArm", f"{side}LowerArm")
    return math.degrees(math.asin(float(np.clip(-d[1], -1, 1))))


def leg_spread_angle(skeleton: Skeleton, pose: Pose | None, side: str = "left") -> float:
    """Outward angle in degrees of the thigh (hip -> knee) from straight down, in the frontal plane."""
    d = bone_direction(skeleton, pose, f"{side}UpperLeg", f"{side}LowerLeg")
    return math.degrees(math.atan2(SIDE_SIGN[side] * d[0], -d[1]))


# -- canonical poses ---------------------------------------------------------------------------------
def _arm_rotation(skeleton: Skeleton, side: str, angle_deg: float) -> np.ndarray | None:
    """Rotation of the upper arm that puts it ``angle_deg`` below horizontal, keeping its heading."""
    upper, lower = _bone(skeleton, f"{side}UpperArm"), _bone(skeleton, f"{side}LowerArm")
    if upper is None or lower is None:
        return None
    d = (skeleton.joints[lower] - skeleton.joints[upper]).astype(np.float64)
    heading = np.array([d[0], 0.0, d[2]])
    if np.linalg.norm(heading) < 1e-6 * max(np.linalg.norm(d), 1e-12):
        heading = np.array([SIDE_SIGN[side], 0.0, 0.0])  # arm straight down: swing it out sideways
    heading /= np.linalg.norm(heading)
    a = math.radians(angle_deg)
    target = math.cos(a) * heading + np.array([0.0, -math.sin(a), 0.0])
    return rotation_between(d, target)


def _leg_rotation(skeleton: Skeleton, side: str, spread_deg: float) -> np.ndarray | None:
    """Rotation about the forward axis that swings the thigh to ``spread_deg`` outwards."""
    upper, lower = _bone(skeleton, f"{side}UpperLeg"), _bone(skeleton, f"{side}LowerLeg")
    if upper is None or lower is None:
        return None
    d = (skeleton.joints[lower] - skeleton.joints[upper]).astype(np.float64)
    current = math.atan2(SIDE_SIGN[side] * d[0], -d[1])
    return rotation_about((0, 0, 1), SIDE_SIGN[side] * (math.radians(spread_deg) - current))


def _rest_ground(skeleton: Skeleton) -> list[int]:
    return [i for n in ("leftFoot", "rightFoot", "leftToes", "rightToes") if (i := _bone(skeleton, n)) is not None]


def grounded(skeleton: Skeleton, pose: Pose) -> Pose:
    """``pose`` with its root translation set so the lowest foot / toe joint sits at the height the
    lowest one has in the rest pose (the character keeps standing on the floor)."""
    feet = _rest_ground(skeleton)
    if not feet:
        return pose
    base = Pose(pose.rotations, np.zeros(3, np.float32))
    rest_low = float(skeleton.joints[feet, 1].min())
    posed_low = float(skeleton.posed_joints(base)[feet, 1].min())
    return Pose(pose.rotations, np.array([0.0, rest_low - posed_low, 0.0], np.float32))


def a_pose(skeleton: Skeleton, arm_angle_deg: float = 45.0, leg_spread_deg: float = 5.0, *,
           right_arm_angle_deg: float | None = None) -> Pose:
    """The canonical A-pose: upper arms ``arm_angle_deg`` below horizontal (keeping their heading),
    thighs ``leg_spread_deg`` outwards from vertical, feet kept flat, soles on the floor.

    Only the upper arms, upper legs and feet rotate; forearms and shins keep their rest angle to
    their parent. ``right_arm_angle_deg`` (default: the same as the left) allows asymmetric
    augmentation. Bones the skeleton lacks are skipped.
    """
    rot = np.tile(np.eye(3, dtype=np.float32), (len(skeleton), 1, 1))
    angles = {"left": arm_angle_deg, "right": arm_angle_deg if right_arm_angle_deg is None else right_arm_angle_deg}
    for side in SIDES:
        r = _arm_rotation(skeleton, side, angles[side])
        if r is not None:
            rot[skeleton.index(f"{side}UpperArm")] = r
        r = _leg_rotation(skeleton, side, leg_spread_deg)
        if r is not None:
            rot[skeleton.index(f"{side}UpperLeg")] = r
            foot = _bone(skeleton, f"{side}Foot")
            if foot is not None:
                # The shin keeps the thigh's rotation, so undo it at the ankle: the sole stays flat.
                rot[foot] = r.T
    return grounded(skeleton, Pose(rot))


def augmented_a_pose(skeleton: Skeleton, rng: np.random.Generator, *, jitter_deg: float = 15.0,
                     asymmetry_deg: float = 4.0, leg_spread_range: tuple[float, float] = (2.0, 9.0)) -> Pose:
    """Arm-angle augmentation around the A-pose (as the paper does for its diffusion models): arm
    angles ``45 +- jitter_deg`` (the two sides within ``asymmetry_deg`` of each other) and a random
    leg spread."""
    base = 45.0 + rng.uniform(-jitter_deg, jitter_deg)
    right = base + rng.uniform(-asymmetry_deg, asymmetry_deg)
    spread = rng.uniform(*leg_spread_range)
    return a_pose(skeleton, base, spread, right_arm_angle_deg=right)


# -- random natural poses ----------------------------------------------------------------------------
Range = tuple[float, float]


@dataclass
class JointLimit:
    """Allowed local rotation of one (left-side or central) bone, degrees about X, Y, Z (world
    aligned, applied as ``Rz @ Ry @ Rx``). ``center`` is the most likely angle per axis."""

    x: Range = (0.0, 0.0)
    y: Range = (0.0, 0.0)
    z: Range = (0.0, 0.0)
    center: tuple[float, float, float] | None = None


def _default_limits() -> dict[str, JointLimit]:
    # Ranges chosen for *natural* standing / gesturing poses (a subset of anatomical limits), so
    # random poses rarely push a limb through the body. Arms: relative to the T-pose.
    return {
        "spine": JointLimit((-8, 18), (-15, 15), (-8, 8), (0, 0, 0)),
        "chest": JointLimit((-5, 10), (-10, 10), (-5, 5), (0, 0, 0)),
        "upperChest": JointLimit((-3, 5), (-5, 5), (-3, 3), (0, 0, 0)),
        "neck": JointLimit((-10, 15), (-20, 20), (-8, 8), (0, 0, 0)),
        "head": JointLimit((-15, 20), (-30, 30), (-12, 12), (0, 0, 0)),
        "leftShoulder": JointLimit((0, 0), (-8, 5), (-5, 12), (0, 0, 0)),
        "leftUpperArm": JointLimit((-40, 40), (-65, 20), (-78, 35), (0, -10, -50)),
        "leftLowerArm": JointLimit((-20, 20), (-120, 0), (0, 0), (0, -15, 0)),
        "leftHand": JointLimit((-30, 30), (-25, 25), (-40, 40), (0, 0, 0)),
        "leftUpperLeg": JointLimit((-55, 25), (-15, 20), (-3, 22), (-5, 0, 4)),
        "leftLowerLeg": JointLimit((0, 95), (0, 0), (0, 0), (8, 0, 0)),
        "leftFoot": JointLimit((-25, 25), (-10, 10), (-8, 8), (0, 0, 0)),
        "leftToes": JointLimit((-20, 15), (0, 0), (0, 0), (0, 0, 0)),
    }


@dataclass
class RandomPoseConfig:
    """How :func:`random_pose` samples.

    ``limits`` per left-side or central bone (right side mirrored); ``concentration`` shapes the
    Beta distribution each angle is drawn from (1 = uniform over the range, larger = closer to
    ``center``); ``symmetric_prob`` the chance both arms share one pose (common in anime art).
    """

    limits: dict[str, JointLimit] = field(default_factory=_default_limits)
    concentration: float = 2.0
    symmetric_prob: float = 0.25
    ground: bool = True


def _mirror(limit: JointLimit) -> JointLimit:
    c = limit.center
    return JointLimit(limit.x, (-limit.y[1], -limit.y[0]), (-limit.z[1], -limit.z[0]),
                      None if c is None else (c[0], -c[1], -c[2]))


def _sample_angle(rng: np.random.Generator, lo: float, hi: float, center: float, k: float) -> float:
    """An angle in [lo, hi], Beta-distributed with its mode at ``center``."""
    if hi <= lo:
        return lo
    m = float(np.clip((center - lo) / (hi - lo), 0.02, 0.98))
    # Beta(a, b) with mode m and total concentration 2 + 2k.
    a, b = 1 + 2 * k * m, 1 + 2 * k * (1 - m)
    return lo + (hi - lo) * float(rng.beta(a, b))


def _sample_rotation(rng: np.random.Generator, limit: JointLimit, k: float) -> np.ndarray:
    c = limit.center or tuple(0.5 * (r[0] + r[1]) for r in (limit.x, limit.y, limit.z))
    angles = [_sample_angle(rng, *r, ci, k) for r, ci in zip((limit.x, limit.y, limit.z), c)]
    return euler_zyx(*angles)


def random_pose(skeleton: Skeleton, rng: np.random.Generator, config: RandomPoseConfig | None = None) -> Pose:
    """A random natural pose within joint limits.

    Arms and legs are first brought to the T-pose / straight legs from whatever rest the skeleton
    has (so the limits mean the same for every skeleton), then each bone gets a random local
    rotation; with ``config.ground`` the lowest foot stays on the floor.
    """
    config = config or RandomPoseConfig()
    base = a_pose(skeleton, 0.0, 0.0).rotations.astype(np.float64)
    rot = base.copy()
    symmetric = rng.uniform() < config.symmetric_prob
    mirrored_arm: dict[str, np.ndarray] = {}
    for name, limit in config.limits.items():
        side_names = [name] if not name.startswith("left") else [name, "right" + name[4:]]
        for bone in side_names:
            i = _bone(skeleton, bone)
            lim = _mirror(limit) if bone.startswith("right") else limit
            if bone.startswith("right") and symmetric and "Arm" in bone and name in mirrored_arm:
                r = mirrored_arm[name]  # the left arm's rotation, mirrored across the YZ plane
                r = np.diag([-1.0, 1, 1]) @ r @ np.diag([-1.0, 1, 1])
            else:
                r = _sample_rotation(rng, lim, config.concentration)
            if bone.startswith("left"):
                mirrored_arm[name] = r
            if i is not None:
                rot[i] = r @ base[i]
    pose = Pose(rot.astype(np.float32))
    return grounded(skeleton, pose) if config.ground else pose
