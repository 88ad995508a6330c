"""A small layered stand-in character for geometry tests: a 'snowman' body (torso and head
spheres blended), a thick sweater shell around the torso open at the neck, and a hair cap.

Every part is a closed, outward-oriented mesh made by marching cubes of an analytic SDF, so the
true inside/outside of each part is known in closed form (``standin_sdfs``)."""

from __future__ import annotations

import numpy as np

from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part

TORSO_C, TORSO_R = np.array([0.0, 0.45, 0.0]), 0.30
HEAD_C, HEAD_R = np.array([0.0, 0.93, 0.0]), 0.20
NECK_Y = 0.70
GAP, THICK = 0.02, 0.04  # sweater: from TORSO_R + GAP to TORSO_R + GAP + THICK
HAIR_GAP, HAIR_THICK = 0.01, 0.05


def _smin(a, b, k=0.05):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0, 1)
    return b * (1 - h) + a * h - k * h * (1 - h)


def standin_sdfs(p: np.ndarray) -> dict[Part, np.ndarray]:
    """Analytic signed distances (approximately; exact sign) of the three parts at points (..., 3)."""
    dt = np.linalg.norm(p - TORSO_C, axis=-1) - TORSO_R
    dh = np.linalg.norm(p - HEAD_C, axis=-1) - HEAD_R
    body = _smin(dt, dh)
    mid = TORSO_R + GAP + THICK / 2
    shell = np.abs(np.linalg.norm(p - TORSO_C, axis=-1) - mid) - THICK / 2
    clothes = np.maximum(shell, p[..., 1] - NECK_Y)
    hmid = HEAD_R + HAIR_GAP + HAIR_THICK / 2
    cap = np.abs(np.linalg.norm(p - HEAD_C, axis=-1) - hmid) - HAIR_THICK / 2
    hair = np.maximum(cap, HEAD_C[1] - 0.02 - p[..., 1])
    return {Part.BODY: body, Part.CLOTHES: clothes, Part.HAIR: hair}


def _mesh(part: Part, step: float) -> Mesh:
    from skimage.measure import marching_cubes

    lo, hi = np.array([-0.45, 0.05, -0.45]), np.array([0.45, 1.30, 0.45])
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    d = standin_sdfs(pts)[part]
    v, f, _, _ = marching_cubes(d, 0.0, spacing=(step,) * 3, gradient_direction="descent")
    colors = {Part.BODY: (0.95, 0.8, 0.7), Part.CLOTHES: (0.3, 0.4, 0.8), Part.HAIR: (0.5, 0.3, 0.2)}[part]
    return Mesh(v + lo, f, colors=np.tile(colors, (len(v), 1)), label=part, name=part.key)


def standin_character(step: float = 0.008) -> Character:
    return Character(body=_mesh(Part.BODY, step), clothes=[_mesh(Part.CLOTHES, step)], hair=[_mesh(Part.HAIR, step)])
