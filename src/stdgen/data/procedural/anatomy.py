"""Anime anatomy: body sliders -> T-pose skeleton joints and the body's SDF primitives.

Units: metres, T-pose (arms along +-X, palms down), facing +Z, soles at y = 0. Lengths are
expressed in the height ``H``, the head height ``h = H / head_ratio`` and the torso length ``T``
(neck joint to crotch), so one set of rules gives tall adults and big-headed children.

The primitive list has the same names in the same order for every character: the body template
(meshed once) remembers, per vertex, which primitives shape it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stdgen.data.procedural.params import BodyParams
from stdgen.data.procedural.sdf import PrimitiveBuilder, Primitives
from stdgen.structures.character import HUMANOID_BONES, HUMANOID_PARENTS, Skeleton

SIDES = (("left", 1.0), ("right", -1.0))


@dataclass
class Anatomy:
    """Derived measures of one body (metres): ``H`` height, ``h`` head height, ``T`` torso length,
    ``joints`` name -> (3,) T-pose joint position, plus landmarks used by garments, hair and the
    face (``y_chin``, ``y_eye``, ``head_center``, ``head_radius``, ``y_waist``, ``y_crotch`` ...)."""

    H: float
    h: float
    T: float
    joints: dict[str, np.ndarray]
    landmarks: dict[str, float | np.ndarray]

    def skeleton(self) -> Skeleton:
        names = list(HUMANOID_BONES)
        parents = [-1 if HUMANOID_PARENTS[n] is None else names.index(HUMANOID_PARENTS[n]) for n in names]
        return Skeleton(names, parents, np.stack([self.joints[n] for n in names]))


def anatomy(p: BodyParams) -> Anatomy:
    """Joint positions and landmarks of the T-posed body with sliders ``p``."""
    H = p.height
    h = H / p.head_ratio
    child = p.presentation == "child"
    male = p.presentation == "male"
    y_chin = H - h
    y_neck = y_chin - (0.24 * h if not child else 0.16 * h) * p.neck_length
    y_crotch = p.leg_fraction * H
    T = y_neck - y_crotch
    j: dict[str, np.ndarray] = {}
    v = lambda x, y, z: np.array([x, y, z], np.float64)
    j["hips"] = v(0, y_crotch + 0.12 * T, 0)
    j["spine"] = v(0, y_crotch + 0.32 * T, 0.0)
    j["chest"] = v(0, y_crotch + 0.52 * T, 0.0)
    j["upperChest"] = v(0, y_crotch + 0.72 * T, -0.005 * H)
    j["neck"] = v(0, y_neck, -0.012 * H)
    j["head"] = v(0, y_chin + 0.10 * h, -0.012 * H)
    sw = (0.1 if male else 0.083 if not child else 0.082) * H * p.shoulder_width
    y_sh = y_neck - 0.14 * T
    hip_x = (0.056 if male else 0.06) * H * p.hip_width
    arm = p.arm_length * H
    upper, fore = 0.168 * arm, 0.148 * arm
    if child:
        upper, fore = 0.172 * arm, 0.15 * arm
    y_knee = 0.52 * y_crotch + 0.02 * H
    y_ankle = 0.048 * H
    for side, s in SIDES:
        j[f"{side}Shoulder"] = v(s * 0.018 * H, y_sh + 0.012 * H, -0.006 * H)
        j[f"{side}UpperArm"] = v(s * sw, y_sh, -0.008 * H)
        j[f"{side}LowerArm"] = v(s * (sw + upper), y_sh, -0.012 * H)
        j[f"{side}Hand"] = v(s * (sw + upper + fore), y_sh, -0.008 * H)
        j[f"{side}UpperLeg"] = v(s * hip_x, y_crotch + 0.055 * T, 0.0)
        j[f"{side}LowerLeg"] = v(s * (hip_x - 0.004 * H), y_knee, 0.002 * H)
        j[f"{side}Foot"] = v(s * (hip_x - 0.006 * H), y_ankle, -0.008 * H)
        j[f"{side}Toes"] = v(s * (hip_x - 0.004 * H), 0.012 * H, 0.085 * H)
    # Landmarks. Anime eyes sit low on the head: about 0.42 h above the chin.
    landmarks: dict = {
        "y_chin": y_chin,
        "y_eye": y_chin + 0.40 * h,
        "y_brow": y_chin + 0.55 * h,
        "y_mouth": y_chin + 0.16 * h,
        "y_top": H,
        "y_neck": y_neck,
        "y_shoulder": y_sh,
        "y_crotch": y_crotch,
        "y_knee": y_knee,
        "y_ankle": y_ankle,
        "y_waist": y_crotch + 0.36 * T,
        "y_chest": y_crotch + 0.62 * T,
        "head_center": v(0, y_chin + 0.55 * h, -0.03 * h),
        "head_radius": 0.44 * h * p.head_width,
        "hand_length": 0.105 * arm,
        "hip_x": hip_x,
        "shoulder_x": sw,
    }
    return Anatomy(H=H, h=h, T=T, joints=j, landmarks=landmarks)


def _squash(x: float = 1.0, y: float = 1.0, z: float = 1.0) -> np.ndarray:
    """World -> local map that makes a primitive thinner by these factors along each axis."""
    return np.diag([1.0 / x, 1.0 / y, 1.0 / z])


def body_primitives(p: BodyParams, an: Anatomy) -> Primitives:
    """The body's SDF primitives (fixed names and order) for sliders ``p`` and anatomy ``an``."""
    H, h, T = an.H, an.h, an.T
    j, lm = an.joints, an.landmarks
    male = p.presentation == "male"
    child = p.presentation == "child"
    b = 0.85 + 0.3 * p.build  # thickness factor of limbs and torso
    hw = p.head_width
    y_chin = lm["y_chin"]
    scale = H / 1.6
    pb = PrimitiveBuilder()
    pb.group("head", 0.04 * h)
    pb.group("face", 0.012 * h)
    pb.group("torso", 0.022 * scale)
    for side, _ in SIDES:
        pb.group(f"arm_{side}", 0.012 * scale)
        pb.group(f"hand_{side}", 0.005 * scale)
        pb.group(f"leg_{side}", 0.012 * scale)
        pb.group(f"foot_{side}", 0.008 * scale)

    # -- head: a big round cranium, a face narrowing to a small chin, tiny nose, ears.
    pb.ellipsoid("cranium", "head", "head", (0, y_chin + 0.62 * h, -0.05 * h), (0.39 * h * hw, 0.4 * h, 0.45 * h))
    pb.tapered("face", "head", "head", (0, y_chin + 0.47 * h, 0.0), (0.385 * h * hw, 0.45 * h, 0.37 * h),
               taper=0.5 + 0.15 * p.chin, shear=0.45)
    pb.ellipsoid("nose", "head", "face", (0, y_chin + 0.3 * h, 0.335 * h), (0.018 * h, 0.045 * h, 0.025 * h))
    for side, s in SIDES:
        pb.ellipsoid(f"ear_{side}", "head", "face", (s * 0.37 * h * hw, y_chin + 0.4 * h, -0.03 * h),
                     (0.03 * h, 0.095 * h, 0.06 * h))

    # -- torso.
    neck_r = (0.105 if male else 0.09) * h * (1.0 if not child else 1.05)
    pb.round_cone("neck", "neck", "torso", j["upperChest"] + (0, 0.02 * H, 0.0), j["head"] + (0, 0.02 * h, 0.0),
                  neck_r * 1.25, neck_r)
    sw = lm["shoulder_x"]
    chest_w = (0.1 if male else 0.078) * H * p.shoulder_width * (0.9 + 0.2 * p.build)
    chest_d = (0.062 if male else 0.056) * H * b
    pb.ellipsoid("ribcage", "chest", "torso", j["chest"] + (0, 0.04 * T, -0.004 * H), (chest_w, 0.26 * T, chest_d))
    pb.round_cone("shoulders", "upperChest", "torso", (-sw * 0.78, lm["y_shoulder"] + 0.004 * H, -0.008 * H),
                  (sw * 0.78, lm["y_shoulder"] + 0.004 * H, -0.008 * H), 0.036 * H * b, 0.036 * H * b)
    waist_w = (0.072 if male else 0.06) * H * p.waist * (0.85 + 0.3 * p.build)
    pb.ellipsoid("waist", "spine", "torso", (0, lm["y_waist"], 0.0), (waist_w, 0.2 * T, 0.05 * H * b))
    pelvis_w = (0.074 if male else 0.087) * H * p.hip_width * (0.9 + 0.2 * p.build)
    pb.ellipsoid("pelvis", "hips", "torso", j["hips"] + (0, -0.05 * T, -0.004 * H),
                 (pelvis_w, 0.17 * T, 0.06 * H * b))
    for side, s in SIDES:
        bum = (0.046 if not male else 0.036) * H * (0.9 + 0.2 * p.build)
        pb.ellipsoid(f"buttock_{side}", "hips", "torso",
                     (s * 0.042 * H, lm["y_crotch"] + 0.1 * T, -0.03 * H), (bum, bum * 1.1, bum * 0.85))
    bust = p.bust if p.presentation == "female" else 0.0
    for side, s in SIDES:
        r = (0.028 + 0.02 * bust) * H
        pb.ellipsoid(f"breast_{side}", "chest", "torso",
                     (s * 0.042 * H, lm["y_chest"] - 0.005 * H * bust, 0.018 * H + 0.012 * H * bust),
                     (r, r * 0.95, r * (0.55 + 0.35 * bust)))

    # -- arms (along +-X in the T-pose, palms down).
    for side, s in SIDES:
        ua, la, hd = j[f"{side}UpperArm"], j[f"{side}LowerArm"], j[f"{side}Hand"]
        g = f"arm_{side}"
        pb.ellipsoid(f"deltoid_{side}", f"{side}UpperArm", g, ua + (-s * 0.004 * H, 0.002 * H, 0),
                     (0.045 * H, 0.034 * H * b, 0.036 * H * b))
        pb.round_cone(f"upper_arm_{side}", f"{side}UpperArm", g, ua, la, 0.031 * H * b, 0.022 * H * b)
        pb.round_cone(f"forearm_{side}", f"{side}LowerArm", g, la, hd, 0.022 * H * b, 0.0155 * H * b,
                      _squash(1.0, 0.85, 1.0))
        hand_len = lm["hand_length"]
        gh = f"hand_{side}"
        pb.ellipsoid(f"palm_{side}", f"{side}Hand", gh, hd + (s * 0.38 * hand_len, -0.002 * H, 0.0),
                     (0.42 * hand_len, 0.011 * H, 0.024 * H))
        pb.round_cone(f"fingers_{side}", f"{side}Hand", gh, hd + (s * 0.55 * hand_len, -0.002 * H, 0.0),
                      hd + (s * 0.92 * hand_len, -0.004 * H, 0.0), 0.019 * H, 0.013 * H, _squash(1.0, 0.42, 1.0))
        pb.round_cone(f"thumb_{side}", f"{side}Hand", gh, hd + (s * 0.18 * hand_len, -0.006 * H, 0.012 * H),
                      hd + (s * 0.5 * hand_len, -0.008 * H, 0.034 * H), 0.0085 * H, 0.0065 * H)

    # -- legs.
    for side, s in SIDES:
        ul, ll, ft, toe = j[f"{side}UpperLeg"], j[f"{side}LowerLeg"], j[f"{side}Foot"], j[f"{side}Toes"]
        g = f"leg_{side}"
        thigh = (0.058 if not male else 0.055) * H * b * (0.95 + 0.1 * p.hip_width)
        # Thighs never cross the midline in the rest pose (each leg is its own surface below the
        # crotch; overlapping thighs would make the rest-pose body intersect itself).
        thigh = min(thigh, abs(ul[0]) + 0.002 * H - 0.004 * H)
        # Knees and calves likewise keep clear of the midline (with room for the blend's bulge).
        knee = min(0.034 * H * b, abs(ll[0]) - 0.009 * H)
        calf = min(0.033 * H * b, abs(ll[0]) - 0.01 * H)
        pb.round_cone(f"thigh_{side}", f"{side}UpperLeg", g, ul + (s * 0.002 * H, 0.0, 0.0), ll,
                      thigh, knee)
        pb.round_cone(f"shin_{side}", f"{side}LowerLeg", g, ll, ft, knee * 0.97, 0.019 * H * b)
        calf_y = ll[1] - 0.3 * (ll[1] - ft[1])
        pb.ellipsoid(f"calf_{side}", f"{side}LowerLeg", g, (ll[0], calf_y, ll[2] - 0.007 * H),
                     (calf, 0.1 * H, 0.034 * H * b))
        gf = f"foot_{side}"
        pb.ellipsoid(f"heel_{side}", f"{side}Foot", gf, (ft[0], 0.022 * H, ft[2] - 0.012 * H),
                     (0.02 * H, 0.022 * H, 0.024 * H))
        pb.round_cone(f"foot_{side}", f"{side}Foot", gf, ft + (0, -0.01 * H, 0.0),
                      (toe[0], 0.017 * H, toe[2] - 0.01 * H), 0.02 * H, 0.017 * H, _squash(1.15, 1.0, 1.0))
        pb.ellipsoid(f"toes_{side}", f"{side}Toes", gf, (toe[0], 0.0115 * H, toe[2] + 0.006 * H),
                     (0.022 * H, 0.0115 * H, 0.026 * H))
    return pb.build(k_global=0.013 * scale)
