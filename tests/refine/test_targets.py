"""Stage targets: resampling keeps coverage, cropped cameras render exactly the cropped pixels."""

import numpy as np
import torch

from stdgen.refine.schedule import FixedLayers, render_stage
from stdgen.refine.targets import crop_targets, make_targets
from stdgen.structures.semantics import Part


def test_cropped_views_render_the_same_pixels(standin, standin_views):
    true, _ = standin
    cams, renders = standin_views
    r = renders[Part.BODY]
    t = make_targets(cams, r["alpha"], r["normal"], resolution=96)
    body = true[Part.BODY]
    c = crop_targets(t, body.vertices, margin_px=3)
    assert c.mask.shape[1] < 96 or c.mask.shape[2] < 96
    assert c.scale == t.scale and c.pixel == t.pixel and c.frame_pixels == 96 * 96
    x = torch.as_tensor(body.vertices)
    tri = torch.as_tensor(body.faces, dtype=torch.long)
    fx = FixedLayers.build([], "cpu")
    _, full, _ = render_stage(x, tri, fx, t.cameras, (96, 96))
    _, crop, _ = render_stage(x, tri, fx, c.cameras, c.resolution)
    # Every covered pixel of the full render lies in the window, with the same value.
    assert torch.isclose(full.sum(), crop.sum(), rtol=1e-4)
    # The cropped targets are the full targets' pixels at the same places.
    assert torch.isclose(c.mask.sum(), t.mask.sum(), rtol=1e-6)
    # Pixel-exact check on one view: find the window by matching the crop inside the full image.
    v = 2
    h, w = c.resolution
    best = min(((i, j) for i in range(96 - h + 1) for j in range(96 - w + 1)),
               key=lambda ij: float((t.mask[v, ij[0]:ij[0] + h, ij[1]:ij[1] + w] - c.mask[v]).abs().sum()))
    i, j = best
    assert torch.allclose(full[v, i:i + h, j:j + w], crop[v], atol=1e-5)


def test_resampling_keeps_area_and_unit_normals(standin_views):
    cams, renders = standin_views
    r = renders[Part.BODY]
    full = make_targets(cams, r["alpha"], r["normal"])
    half = make_targets(cams, r["alpha"], r["normal"], resolution=96)
    # Area-averaging keeps the covered area (in units of the frame).
    assert np.isclose(float(full.mask.mean()), float(half.mask.mean()), rtol=1e-4)
    n = half.normal[half.mask[..., 0] > 0]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(n)), atol=1e-4)
