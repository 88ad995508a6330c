"""Per-view weights of the refinement's image terms (``StageConfig.mask_view_weights``): where the
views disagree, the heavier view's silhouette wins (``stdgen generate`` weights the front view, the
user's own picture, above the five generated ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdgen.refine.losses import mask_loss, masked_normal_loss
from stdgen.refine.optimizer import VertexAdamConfig
from stdgen.refine.schedule import StageConfig, refine_stage
from stdgen.refine.targets import make_targets
from stdgen.render import generation_views, render_mesh
from stdgen.structures.semantics import Part

from .conftest import CENTER, ROUND, coarse_part, mesh_sdf_zero_set

FRONT = 2  # azimuth 0 among the generation views (-90, -45, 0, 45, 90, 180)


def test_view_weights_scale_each_views_share():
    pred = torch.zeros(3, 4, 4, 1)
    target = torch.zeros(3, 4, 4, 1)
    target[0, 0, 0] = 1.0  # one wrong pixel in view 0, two in view 2
    target[2, :2, 0] = 1.0
    w = torch.tensor([1.0, 5.0, 10.0])
    assert torch.isclose(mask_loss(pred, target), torch.tensor(3 / 16))
    assert torch.isclose(mask_loss(pred, target, view_weights=torch.ones(3)), torch.tensor(3 / 16))
    assert torch.isclose(mask_loss(pred, target, view_weights=w), torch.tensor((1 + 20) / 16))
    n_pred, n_true = torch.zeros(3, 4, 4, 3), torch.ones(3, 4, 4, 3)
    m = target
    assert torch.isclose(masked_normal_loss(n_pred, n_true, m, view_weights=w), torch.tensor(3 * (1 + 20) / 16))


def test_stage_config_checks_view_weights():
    assert StageConfig(mask_view_weights=[1, 2.5]).mask_view_weights == (1.0, 2.5)
    with pytest.raises(ValueError, match="mask_view_weights"):
        StageConfig(mask_view_weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="normal_view_weights"):
        StageConfig(normal_view_weights=(float("nan"),))


def _box(half_x: float):
    half = np.array([half_x, 0.4, 0.16])

    def sdf(p):
        q = np.abs(p - CENTER) - (half - ROUND)
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0) - ROUND

    return mesh_sdf_zero_set(sdf, 60, Part.BODY)


def _front_iou(vertices, faces, cams, target_front, resolution):
    from stdgen.structures.mesh import Mesh

    alpha = render_mesh(Mesh(vertices, faces), cams, resolution, shading="flat").alpha[FRONT, ..., 0]
    pred, true = alpha > 0.5, target_front > 0.5
    return float((pred & true).sum() / (pred | true).sum())


def test_front_weight_pulls_the_front_silhouette_onto_a_disagreeing_picture():
    """The front view's target is a box 12 cm wider than the one the other five views show (as a
    user's picture and the views generated from it disagree). With all views weighted alike, the
    back and oblique views hold the width back; weighting the front's silhouette 20 times moves the
    front silhouette measurably closer to its target. Measured: front IoU 0.78 before, 0.950 after
    with weight 1, 0.981 with weight 20 (the front's silhouette error 2.6 times smaller)."""
    res = 96
    cams = generation_views(center=(0.0, 0.5, 0.0), half_size=0.5)
    narrow, wide = _box(0.22), _box(0.28)
    r_n = render_mesh(narrow, cams, res, shading="flat")
    r_w = render_mesh(wide, cams, res, shading="flat")
    mask, normal = r_n.alpha[..., 0].clone(), r_n.normal.clone()
    mask[FRONT], normal[FRONT] = r_w.alpha[FRONT, ..., 0], r_w.normal[FRONT]
    targets = make_targets(cams, mask, normal)
    coarse = coarse_part(Part.BODY)
    ious = {}
    for w in (1.0, 20.0):
        cfg = StageConfig(steps=24, resolution=res, fine_resolution=None, fine_steps=0, smooth_iterations=0,
                          optimizer=VertexAdamConfig(lr=0.5, floor=0.3),
                          mask_view_weights=tuple(w if i == FRONT else 1.0 for i in range(6)))
        cfg.explicit_target.steps = 0
        out = refine_stage(coarse.vertices, coarse.faces, targets, cfg)
        ious[w] = _front_iou(out.vertices, out.faces, cams, mask[FRONT], res)
    before = _front_iou(coarse.vertices, coarse.faces, cams, mask[FRONT], res)
    assert before < 0.85, before
    assert ious[20.0] > ious[1.0] + 0.02, (before, ious)
    assert 1 - ious[20.0] < 0.6 * (1 - ious[1.0]), (before, ious)


def test_view_weights_must_match_the_views():
    cams = generation_views(center=(0.0, 0.5, 0.0), half_size=0.5)
    box = _box(0.22)
    r = render_mesh(box, cams, 32, shading="flat")
    targets = make_targets(cams, r.alpha[..., 0], r.normal)
    cfg = StageConfig(steps=1, resolution=32, fine_resolution=None, mask_view_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="2 weights for 6 views"):
        refine_stage(box.vertices, box.faces, targets, cfg)
