import math

import numpy as np
import pytest
import trimesh

from stdgen.eval import decomposition as dec
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import BACKGROUND_LABEL, Part


def _sphere(radius, center=(0.0, 0.0, 0.0), inside_out=False) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    f = np.asarray(s.faces)
    return Mesh(np.asarray(s.vertices) + center, f[:, ::-1].copy() if inside_out else f)


def _shell(r_out, r_in, center=(0.0, 0.0, 0.0)) -> Mesh:
    from stdgen.structures.mesh import merge_meshes

    return merge_meshes([_sphere(r_out, center), _sphere(r_in, center, inside_out=True)])


def _labels():
    """Two 4x6 views: body on the left, clothes in the middle, hair on the right, background around."""
    lab = np.full((2, 4, 6), BACKGROUND_LABEL, np.uint8)
    lab[:, 1:3, 0:2] = Part.BODY
    lab[:, 1:3, 2:4] = Part.CLOTHES
    lab[:, 0:2, 4:6] = Part.HAIR
    return lab


def test_identical_labels_score_one():
    lab = _labels()
    assert all(v == 1 for v in dec.part_ious(lab, lab).values())
    assert dec.semantic_accuracy(lab, lab) == 1


def test_swapping_clothes_and_hair_drops_their_iou():
    true = _labels()
    swapped = true.copy()
    swapped[true == Part.CLOTHES] = Part.HAIR
    swapped[true == Part.HAIR] = Part.CLOTHES
    ious = dec.part_ious(swapped, true)
    assert ious[Part.BODY] == 1
    assert ious[Part.CLOTHES] == 0 and ious[Part.HAIR] == 0  # disjoint regions
    assert dec.semantic_accuracy(swapped, true) == pytest.approx(8 / 24)


def test_partial_overlap_known_values():
    true = _labels()
    pred = true.copy()
    pred[:, 1:3, 3] = Part.BODY  # half of the clothes becomes body
    ious = dec.part_ious(pred, true)
    assert ious[Part.CLOTHES] == pytest.approx(4 / 8)  # pooled over both views
    assert ious[Part.BODY] == pytest.approx(8 / 12)
    # Foreground on one side only counts as wrong.
    pred2 = true.copy()
    pred2[:, 3, :] = Part.BODY  # 12 extra pixels
    assert dec.semantic_accuracy(pred2, true) == pytest.approx(24 / 36)
    # A part neither side has: undefined.
    no_hair = np.where(true == Part.HAIR, BACKGROUND_LABEL, true).astype(np.uint8)
    assert math.isnan(dec.part_iou(no_hair, no_hair, Part.HAIR))


def test_hollowness_of_a_shell_a_solid_and_half_a_solid():
    body = _sphere(0.5)
    assert dec.clothes_hollowness(body, _shell(0.6, 0.55)) == pytest.approx(1.0)
    assert dec.clothes_hollowness(body, _sphere(0.6)) == pytest.approx(0.0)
    # A solid box covering the lower half of the body fills half of its volume.
    box = trimesh.creation.box(extents=(2, 1, 2))
    box.apply_translation((0, -0.5, 0))
    half = Mesh(np.asarray(box.vertices), np.asarray(box.faces))
    assert dec.clothes_hollowness(body, half, resolution=64) == pytest.approx(0.5, abs=0.03)
    assert math.isnan(dec.clothes_hollowness(body, None))


def test_penetration_shares():
    body = _sphere(0.5)
    assert dec.penetration(_sphere(0.4), body) == 1.0
    assert dec.penetration(_sphere(0.6), body) == 0.0
    # A sphere centred on the body's surface: about half of its vertices are inside.
    assert dec.penetration(_sphere(0.1, (0.5, 0, 0)), body) == pytest.approx(0.5, abs=0.1)
    parts = {Part.BODY: body, Part.CLOTHES: _shell(0.6, 0.55), Part.HAIR: _sphere(0.58)}
    res = dec.layer_penetration(parts)
    assert res["clothes_in_body"] == 0.0
    assert res["hair_in_inner"] == 1.0  # the hair sphere lies inside the clothes shell's solid
    assert math.isnan(dec.layer_penetration({Part.BODY: body})["clothes_in_body"])
