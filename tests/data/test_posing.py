"""Tests of stdgen.data.posing: the A-pose, arm-angle augmentation and random natural poses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stdgen.data import posing
from stdgen.data.procedural.anatomy import anatomy
from stdgen.data.procedural.params import BodyParams
from stdgen.structures.character import HUMANOID_BONES, HUMANOID_PARENTS, Pose, Skeleton, skin_vertices

#: Angles are measured from posed joint positions (float32), so they hold to about 1e-4 degrees.
ANGLE_TOL = 1e-3


def _skeleton_from(joints: dict[str, tuple[float, float, float]]) -> Skeleton:
    names = list(HUMANOID_BONES)
    parents = [-1 if HUMANOID_PARENTS[n] is None else names.index(HUMANOID_PARENTS[n]) for n in names]
    return Skeleton(names, parents, np.array([joints[n] for n in names], np.float32))


def t_pose_skeleton() -> Skeleton:
    return anatomy(BodyParams()).skeleton()


def a_ish_skeleton() -> Skeleton:
    """A rest pose that is already A-ish (arms 30 degrees down, slightly forward; legs apart), as
    some VRM files have."""
    sk = t_pose_skeleton()
    j = {n: tuple(p) for n, p in zip(sk.names, sk.joints.astype(np.float64))}
    for side, s in (("left", 1.0), ("right", -1.0)):
        ua = np.array(j[f"{side}UpperArm"])
        d = np.array([s * math.cos(math.radians(30)), -math.sin(math.radians(30)), 0.15])
        d /= np.linalg.norm(d)
        j[f"{side}LowerArm"] = tuple(ua + 0.27 * d)
        j[f"{side}Hand"] = tuple(ua + 0.51 * d)
        ul = np.array(j[f"{side}UpperLeg"])
        legdir = np.array([s * math.sin(math.radians(8)), -math.cos(math.radians(8)), 0.0])
        j[f"{side}LowerLeg"] = tuple(ul + 0.38 * legdir)
        j[f"{side}Foot"] = tuple(ul + 0.75 * legdir)
        j[f"{side}Toes"] = tuple(ul + 0.75 * legdir + np.array([0, -0.06, 0.12]))
    return _skeleton_from(j)


@pytest.mark.parametrize("make", [t_pose_skeleton, a_ish_skeleton])
@pytest.mark.parametrize("angle", [45.0, 30.0, 60.0])
def test_a_pose_upper_arm_angle(make, angle):
    sk = make()
    pose = posing.a_pose(sk, arm_angle_deg=angle)
    for side in posing.SIDES:
        assert abs(posing.upper_arm_angle(sk, pose, side) - angle) < ANGLE_TOL
    # The default is the paper's canonical 45 degrees (the issue asks for 45 +- 2).
    default = posing.a_pose(sk)
    assert abs(posing.upper_arm_angle(sk, default, "left") - 45.0) < 2.0


@pytest.mark.parametrize("make", [t_pose_skeleton, a_ish_skeleton])
def test_a_pose_keeps_arm_heading_and_spreads_legs(make):
    sk = make()
    pose = posing.a_pose(sk, 45.0, leg_spread_deg=6.0)
    for side in posing.SIDES:
        rest = posing.bone_direction(sk, None, f"{side}UpperArm", f"{side}LowerArm")
        posed = posing.bone_direction(sk, pose, f"{side}UpperArm", f"{side}LowerArm")
        h_rest = rest[[0, 2]] / np.linalg.norm(rest[[0, 2]])
        h_posed = posed[[0, 2]] / np.linalg.norm(posed[[0, 2]])
        np.testing.assert_allclose(h_rest, h_posed, atol=1e-5)  # same heading seen from above
        assert abs(posing.leg_spread_angle(sk, pose, side) - 6.0) < ANGLE_TOL
    # Soles stay flat (feet keep their world orientation) and on the floor.
    rot, _ = sk.world_transforms(pose)
    for side in posing.SIDES:
        np.testing.assert_allclose(rot[sk.index(f"{side}Foot")], np.eye(3), atol=1e-5)
    feet = [sk.index(n) for n in ("leftFoot", "rightFoot", "leftToes", "rightToes")]
    assert abs(sk.posed_joints(pose)[feet, 1].min() - sk.joints[feet, 1].min()) < 1e-5


def test_a_pose_right_arm_mirrors_left():
    sk = t_pose_skeleton()
    j = sk.posed_joints(posing.a_pose(sk))
    for bone in ("LowerArm", "Hand"):
        left, right = j[sk.index("left" + bone)], j[sk.index("right" + bone)]
        np.testing.assert_allclose(left * [-1, 1, 1], right, atol=1e-5)


def test_identity_pose_returns_rest_exactly():
    sk = t_pose_skeleton()
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3)).astype(np.float32)
    joints = rng.integers(0, len(sk), size=(50, 4)).astype(np.int32)
    w = rng.uniform(size=(50, 4)).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    out = skin_vertices(v, joints, w, sk, sk.identity_pose())
    assert np.array_equal(out, v)
    # A zero arm angle leaves the T-posed (horizontal) arms alone.
    zero = posing.a_pose(sk, arm_angle_deg=0.0, leg_spread_deg=0.0)
    for side in posing.SIDES:
        np.testing.assert_allclose(zero.rotations[sk.index(f"{side}UpperArm")], np.eye(3), atol=1e-6)


def test_augmented_a_pose_stays_near_45():
    sk = t_pose_skeleton()
    rng = np.random.default_rng(3)
    angles = []
    for _ in range(50):
        pose = posing.augmented_a_pose(sk, rng, jitter_deg=15.0, asymmetry_deg=4.0)
        left = posing.upper_arm_angle(sk, pose, "left")
        right = posing.upper_arm_angle(sk, pose, "right")
        assert 30.0 - 1e-3 <= left <= 60.0 + 1e-3
        assert abs(left - right) <= 4.0 + 1e-3
        angles.append(left)
    assert np.std(angles) > 3.0  # it really varies


@pytest.mark.parametrize("make", [t_pose_skeleton, a_ish_skeleton])
def test_random_pose_within_limits_and_grounded(make):
    sk = make()
    rng = np.random.default_rng(7)
    cfg = posing.RandomPoseConfig()
    base = posing.a_pose(sk, 0.0, 0.0).rotations.astype(np.float64)
    feet = [sk.index(n) for n in ("leftFoot", "rightFoot", "leftToes", "rightToes")]
    seen = []
    for _ in range(30):
        pose = posing.random_pose(sk, rng, cfg)
        assert pose.rotations.shape == (len(sk), 3, 3)
        # Every local rotation is a proper rotation.
        r = pose.rotations.astype(np.float64)
        np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.tile(np.eye(3), (len(sk), 1, 1)), atol=1e-5)
        # Relative to the straightened rest, each limited bone stays inside its limits: the
        # angle of the random part never exceeds the largest angle its Euler box allows.
        for name, lim in cfg.limits.items():
            for bone in ([name] if not name.startswith("left") else [name, "right" + name[4:]]):
                i = sk.index(bone)
                rand = r[i] @ base[i].T
                angle = math.degrees(math.acos(np.clip((np.trace(rand) - 1) / 2, -1, 1)))
                bound = math.sqrt(sum(max(abs(lo), abs(hi)) ** 2 for lo, hi in (lim.x, lim.y, lim.z)))
                assert angle <= bound + 1e-3, (bone, angle, bound)
        # The lowest foot joint stays on the floor.
        assert abs(sk.posed_joints(pose)[feet, 1].min() - sk.joints[feet, 1].min()) < 1e-5
        seen.append(posing.upper_arm_angle(sk, pose, "left"))
    assert np.ptp(seen) > 20.0  # poses differ


def test_random_pose_deterministic():
    sk = t_pose_skeleton()
    a = posing.random_pose(sk, np.random.default_rng(11))
    b = posing.random_pose(sk, np.random.default_rng(11))
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.translation, b.translation)


def test_rotation_helpers():
    r = posing.rotation_about((0, 0, 1), math.pi / 2)
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    for a, b in [((1, 0, 0), (0, -1, 0)), ((1, 2, 3), (-1, 0.5, 2)), ((0, 1, 0), (0, -1, 0))]:
        r = posing.rotation_between(a, b)
        np.testing.assert_allclose(r @ (np.array(a) / np.linalg.norm(a)), np.array(b) / np.linalg.norm(b), atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert abs(np.linalg.det(r) - 1) < 1e-12


def test_a_pose_skips_missing_bones():
    names = ["hips", "spine", "leftUpperArm", "leftLowerArm"]
    sk = Skeleton(names, [-1, 0, 1, 2], np.array([[0, 1, 0], [0, 1.2, 0], [0.2, 1.4, 0], [0.5, 1.4, 0]]))
    pose = posing.a_pose(sk)
    assert isinstance(pose, Pose)
    assert abs(posing.upper_arm_angle(sk, pose, "left") - 45.0) < ANGLE_TOL
