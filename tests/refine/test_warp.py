"""The image-plane silhouette warp (stdgen.refine.warp): analytic shifts, layers moving alike, depth
untouched, never worse, wiring into refine_parts and the pipeline's settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdgen.refine.warp import SilhouetteWarpConfig, warp_displacement, warp_to_silhouette
from stdgen.render.antialias import antialias
from stdgen.render.camera import orthographic_cameras
from stdgen.render.rasterize import rasterize
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part


def _box(lo, hi, label: Part) -> Mesh:
    """A closed axis-aligned box (12 triangles, outward normals) from corner ``lo`` to ``hi``."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], np.float32)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5], [0, 4, 7], [0, 7, 3]], np.int64)
    return Mesh(v, f, label=label, name=label.key)


def _front():
    return orthographic_cameras([0.0], 0.0, center=(0.0, 0.0, 0.0), half_size=1.0)


def _silhouette(parts: dict[Part, Mesh], cam, side: int) -> torch.Tensor:
    """(side, side) antialiased coverage of the parts' union, as the pass renders it."""
    v = torch.as_tensor(np.concatenate([m.vertices for m in parts.values()]))
    faces, base = [], 0
    for m in parts.values():
        faces.append(m.faces + base)
        base += m.num_vertices
    tri = torch.as_tensor(np.concatenate(faces))
    clip = cam.clip(v)
    rast = rasterize(clip, tri, (side, side))
    return antialias((rast[..., 3:4] > 0).float(), rast, clip, tri)[0, ..., 0]


def _cfg(**kw) -> SilhouetteWarpConfig:
    base = dict(view=0, resolution=128, grid=9, steps=60, lr=0.3, smoothness=5.0, max_shift_px=6.0, margin_px=8)
    return SilhouetteWarpConfig(**{**base, **kw})


def test_lattice_lookup_is_bilinear_and_clamped():
    lattice = torch.zeros(2, 3, 3)
    lattice[0, :, 2] = 4.0  # x offset 4 at the right column (ndc x = 1), 0 at the centre column
    pts = torch.tensor([[0.0, 0.0], [0.5, 0.3], [1.0, -1.0], [3.0, 0.0]])
    d = warp_displacement(lattice, pts)
    np.testing.assert_allclose(d[:, 0].numpy(), [0.0, 2.0, 4.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(d[:, 1].numpy(), 0.0, atol=1e-6)


def test_a_box_moves_onto_a_silhouette_two_pixels_away_and_keeps_its_depth():
    # Pixel size at 128 px over a half-size-1 frame: 2 / 128. The target is the box moved 2 px right
    # and 1 px up; the warp recovers that shift and leaves z alone.
    cam = _front()
    px = 2.0 / 128
    box = {Part.BODY: _box((-0.3, -0.5, -0.2), (0.3, 0.5, 0.2), Part.BODY)}
    moved = {Part.BODY: box[Part.BODY].replace(vertices=box[Part.BODY].vertices + np.float32([2 * px, 1 * px, 0]))}
    target = _silhouette(moved, cam, 128)
    out = warp_to_silhouette(box, cam, target, _cfg())
    assert out.iou_before < 0.97 and out.iou_after > 0.995, (out.iou_before, out.iou_after)
    shift = out.parts[Part.BODY].vertices - box[Part.BODY].vertices
    np.testing.assert_allclose(shift[:, 0] / px, 2.0, atol=0.25)
    np.testing.assert_allclose(shift[:, 1] / px, 1.0, atol=0.25)
    np.testing.assert_array_equal(shift[:, 2], 0.0)
    np.testing.assert_array_equal(out.parts[Part.BODY].faces, box[Part.BODY].faces)
    assert out.parts[Part.BODY].label == Part.BODY


def test_layers_at_the_same_place_move_alike_and_an_empty_part_passes_through():
    # A thin "garment" box over the "body" box: both take the same offsets where they overlap in
    # the image, so the garment stays outside the body.
    cam = _front()
    px = 2.0 / 128
    body = _box((-0.3, -0.5, -0.2), (0.3, 0.5, 0.2), Part.BODY)
    clothes = _box((-0.31, -0.2, -0.21), (0.31, 0.5, 0.21), Part.CLOTHES)
    empty = Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), label=Part.HAIR, name="hair")
    parts = {Part.BODY: body, Part.CLOTHES: clothes, Part.HAIR: empty}
    shift = np.float32([-3 * px, 0, 0])
    target = _silhouette({Part.BODY: body.replace(vertices=body.vertices + shift),
                          Part.CLOTHES: clothes.replace(vertices=clothes.vertices + shift)}, cam, 128)
    out = warp_to_silhouette(parts, cam, target, _cfg())
    assert out.iou_after > 0.99 and out.parts[Part.HAIR] is empty
    b = out.parts[Part.BODY].vertices
    c = out.parts[Part.CLOTHES].vertices
    assert c[:, 0].min() < b[:, 0].min() and c[:, 0].max() > b[:, 0].max()  # still outside, left and right
    np.testing.assert_allclose((c - clothes.vertices)[:, 0] / px, -3.0, atol=0.3)


def test_a_matching_silhouette_is_left_as_it_is_and_a_worse_fit_is_refused():
    cam = _front()
    box = {Part.BODY: _box((-0.3, -0.5, -0.2), (0.3, 0.5, 0.2), Part.BODY)}
    target = _silhouette(box, cam, 128)
    out = warp_to_silhouette(box, cam, target, _cfg())
    assert out.iou_after >= out.iou_before > 0.99
    assert out.offsets.max() < 0.3
    # A target the box cannot reach within max_shift: the pass may not make the outline worse.
    far = torch.zeros(128, 128)
    far[:10, :10] = 1
    out = warp_to_silhouette(box, cam, far, _cfg(max_shift_px=1.0))
    assert out.iou_after >= out.iou_before


def test_zero_steps_and_bad_arguments():
    cam = _front()
    box = {Part.BODY: _box((-0.3, -0.5, -0.2), (0.3, 0.5, 0.2), Part.BODY)}
    out = warp_to_silhouette(box, cam, torch.zeros(64, 64), _cfg(steps=0))
    np.testing.assert_array_equal(out.parts[Part.BODY].vertices, box[Part.BODY].vertices)
    out = warp_to_silhouette(box, cam, torch.zeros(64, 64), _cfg())  # an empty silhouette moves nothing
    np.testing.assert_array_equal(out.parts[Part.BODY].vertices, box[Part.BODY].vertices)
    with pytest.raises(ValueError, match="one camera"):
        warp_to_silhouette(box, orthographic_cameras([0.0, 90.0], 0.0), torch.zeros(64, 64), _cfg())
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        warp_to_silhouette(box, cam, torch.zeros(1, 64, 64), _cfg())
    with pytest.raises(ValueError, match=r"SilhouetteWarpConfig\.smoothness: expected"):
        SilhouetteWarpConfig(smoothness=-1.0)
    with pytest.raises(ValueError, match=r"SilhouetteWarpConfig\.max_shift_px: expected"):
        SilhouetteWarpConfig(max_shift_px=0.0)


def test_refine_parts_warps_before_the_bake_only_when_asked(standin, standin_views):
    from tests.refine.test_core import _fast

    from stdgen.refine.core import RefineViews, refine_parts

    _, coarse = standin
    cams, renders = standin_views
    r = renders[Part.HAIR]
    full = RefineViews(r["rgba"][..., :3], r["alpha"], r["normal"], cams, r["sem"])
    parts = {Part.BODY: coarse[Part.BODY], Part.HAIR: coarse[Part.HAIR]}
    cfg = _fast()
    cfg.texture.mode = "vertex"
    plain = refine_parts(parts, full, cfg)
    cfg.warp = SilhouetteWarpConfig(view=2, resolution=128, grid=16, steps=20)
    warped = refine_parts(parts, full, cfg)
    assert "warp" in warped.seconds and "warp" not in plain.seconds
    for p in parts:
        assert warped.refined[p].faces.shape == plain.refined[p].faces.shape
        d = warped.refined[p].vertices - plain.refined[p].vertices
        # Moved, within the bound (6 px of 128 over the views' frame), along the front's image plane.
        assert np.abs(d).max() > 0
        assert np.abs(d[:, 2]).max() < 1e-6
    cfg.warp.view = 7
    with pytest.raises(ValueError, match="warp.view: 7 but there are 6 views"):
        refine_parts(parts, full, cfg)


def test_the_pipeline_asks_for_the_front_warp_at_the_bake_resolution():
    from stdgen.pipeline.pipeline import FRONT, PipelineConfig, StdGENPipeline

    config = PipelineConfig(front_warp_steps=30, front_warp_smoothness=3.0, texture_view_resolution=384)
    cfg = StdGENPipeline(None, None, None, None, config=config).refine_config()
    assert (cfg.warp.view, cfg.warp.steps, cfg.warp.smoothness, cfg.warp.resolution) == (FRONT, 30, 3.0, 384)
    off = StdGENPipeline(None, None, None, None, config=PipelineConfig(front_warp_steps=0)).refine_config()
    assert off.warp.view is None
    assert PipelineConfig().front_warp_steps > 0
    # A posed picture's front is the canonicaliser's redrawing: no warp onto it unless asked.
    pipe = StdGENPipeline(None, None, None, None, config=PipelineConfig())
    assert pipe.refine_config(redrawn=True).warp.view is None and pipe.refine_config().warp.view == FRONT
    pipe = StdGENPipeline(None, None, None, None, config=PipelineConfig(front_warp_redrawn=True))
    assert pipe.refine_config(redrawn=True).warp.view == FRONT
    with pytest.raises(ValueError, match="PipelineConfig.front_warp_smoothness"):
        PipelineConfig(front_warp_smoothness=-1.0)
