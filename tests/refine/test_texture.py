"""Texturing: pull-push fill, and baked textures re-rendered in the input views match the inputs."""

import numpy as np
import pytest
import torch

from stdgen.refine.texture import TextureConfig, dilate_fill, pull_push_fill, texture_part
from stdgen.render import render_mesh
from stdgen.structures.mesh import merge_meshes
from stdgen.structures.semantics import Part

#: PSNR (dB) of a baked texture re-rendered in the views it was baked from, on the exact geometry.
#: Measured 39.8 dB (192 px views, 512 px atlas, the stand-in's stripes; 37.8 dB before the gutter
#: took the colour of its own chart, :func:`dilate_fill`); what is lost comes from
#: resampling twice (image -> texels -> image, bilinear each way) at the stripes' sharp edges and
#: from views disagreeing at grazing angles. Baking from images shifted by one pixel across the
#: stripes gives 26.1 dB (two pixels: 22.2 dB), so 30 dB fails a bake that is off by a pixel while
#: leaving 6 dB for platform differences.
PSNR_EXACT_GEOMETRY = 30.0


def psnr(a, b, mask):
    mse = float(((a - b) ** 2)[mask].mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def test_pull_push_fills_holes_and_keeps_known_texels():
    rng = np.random.default_rng(0)
    color = np.zeros((64, 48, 3), np.float32)
    weight = np.zeros((64, 48))
    known = rng.random((64, 48)) < 0.05
    color[known] = 0.3
    weight[known] = 1
    out = pull_push_fill(color, weight)
    assert np.allclose(out, 0.3, atol=1e-6)  # a constant field stays constant everywhere
    grad = np.linspace(0, 1, 48)[None, :, None] * np.ones((64, 48, 3))
    out = pull_push_fill(np.where(known[..., None], grad, 0), weight)
    assert np.array_equal(out[known], grad[known].astype(np.float32))
    assert np.abs(out - grad).mean() < 0.08  # smooth interpolation of a ramp


def test_gutter_takes_the_colour_of_the_nearest_chart():
    # Two charts side by side in the atlas (red, blue), a 4-texel gutter between them: after the
    # dilation each gutter texel has the colour of the chart it is nearer to, exactly; the texels a
    # bilinear lookup at a chart's edge reads are that chart's. Pull-push alone mixes the two there.
    color = np.zeros((16, 24, 3), np.float32)
    weight = np.zeros((16, 24))
    color[4:12, 2:10] = (1, 0, 0)
    color[4:12, 14:22] = (0, 0, 1)
    weight[4:12, 2:10] = weight[4:12, 14:22] = 1
    out, known = dilate_fill(color, weight, steps=2)
    assert known[4:12, 0:12].all() and known[4:12, 12:24].all() and not known[0].any()
    assert np.array_equal(out[4:12, 10:12], np.broadcast_to(np.float32((1, 0, 0)), (8, 2, 3)))
    assert np.array_equal(out[4:12, 12:14], np.broadcast_to(np.float32((0, 0, 1)), (8, 2, 3)))
    assert np.array_equal(out[weight > 0], color[weight > 0])  # known texels unchanged
    mixed = pull_push_fill(color, weight)
    assert mixed[8, 10, 2] > 0.05  # the foreign colour that the dilation keeps out
    filled = pull_push_fill(out, known)
    assert np.array_equal(filled[4:12, 10], out[4:12, 10])


def _bake_and_rerender(true, cams, renders, mode):
    part = Part.CLOTHES
    r = renders[part]
    scene = merge_meshes([true[Part.BODY], true[Part.CLOTHES]])
    mesh = true[part].replace(colors=None)
    out = texture_part(mesh, r["rgba"], cams, scene.vertices, scene.faces, TextureConfig(size=512, mode=mode))
    # Re-render the textured clothes over the body (as in the input views), flat colour.
    shown = merge_meshes([true[Part.BODY], out])
    img = render_mesh(shown, cams, r["rgba"].shape[1], shading="flat", antialiasing=False)
    labels = np.concatenate([np.zeros(true[Part.BODY].num_faces), np.ones(out.num_faces)])
    fid = img.rast[..., 3].long() - 1
    on_clothes = (fid >= 0) & torch.as_tensor(labels[fid.clamp(min=0).numpy()] == 1)
    inside = on_clothes & (r["alpha"] > 0.999)
    # Ignore a one-pixel rim of the clothes region, where the input is antialiased.
    core = inside.clone()
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        core &= torch.roll(inside, shifts=(dy, dx), dims=(1, 2))
    return out, psnr(img.rgb, r["rgba"][..., :3], core)


def test_baked_texture_rerenders_the_input_views(standin, standin_views):
    true, _ = standin
    cams, renders = standin_views
    out, value = _bake_and_rerender(true, cams, renders, "texture")
    assert out.texture is not None and out.texture.shape == (512, 512, 3)
    assert out.uv_faces.shape == out.faces.shape and out.num_vertices == true[Part.CLOTHES].num_vertices
    assert value > PSNR_EXACT_GEOMETRY, value


def test_vertex_colour_fallback(standin, standin_views):
    true, _ = standin
    cams, renders = standin_views
    out, value = _bake_and_rerender(true, cams, renders, "vertex")
    assert out.colors is not None and out.texture is None
    # The stand-in's colours are vertex colours of this very mesh, so the fallback can reproduce them
    # closely (measured 42.1 dB); vertex colours of a coarser mesh would blur the stripes.
    assert value > PSNR_EXACT_GEOMETRY, value


def test_view_weights_let_one_view_dominate():
    """A point seen by two views of different colours at the same angle takes their mean; a view
    weight of 9 on the second moves it to 90 % of that view's colour (``stdgen generate`` weights the
    user's picture this way)."""
    from stdgen.refine.texture import back_project
    from stdgen.render.camera import orthographic_cameras

    cams = orthographic_cameras([-45.0, 0.0], 0.0, center=(0.0, 0.0, 0.0), half_size=1.0)
    images = torch.zeros(2, 32, 32, 4)
    images[0, ..., 0] = 1  # red
    images[1, ..., 2] = 1  # blue
    images[..., 3] = 1
    point = torch.tensor([[0.0, 0.0, 0.0]])
    n = torch.nn.functional.normalize(-cams.forward.float().sum(0, keepdim=True), dim=-1)  # halfway between
    # A tiny triangle far behind the point as the scene: nothing occludes it.
    sv = torch.tensor([[0.9, 0.9, -0.9], [0.95, 0.9, -0.9], [0.9, 0.95, -0.9]]) - 2 * n
    sf = torch.tensor([[0, 1, 2]])
    col, w = back_project(point, n, images, cams, sv, sf, depth_tolerance=0.01)
    assert torch.allclose(col, torch.tensor([[0.5, 0.0, 0.5]]), atol=1e-4) and w.item() > 0
    col, _ = back_project(point, n, images, cams, sv, sf, depth_tolerance=0.01, view_weights=torch.tensor([1.0, 9.0]))
    assert torch.allclose(col, torch.tensor([[0.1, 0.0, 0.9]]), atol=1e-4)
    with pytest.raises(ValueError, match="view_weights"):
        TextureConfig(view_weights=(1.0, -1.0))


def test_view_powers_hand_grazing_surfaces_to_the_other_views():
    """Per-view exponents: each view weighs ``cos ** its own power``, so a steeper exponent on one view
    moves a point it sees obliquely towards the view that faces it (``stdgen generate`` gives the
    picture a steeper one)."""
    from stdgen.refine.texture import back_project
    from stdgen.render.camera import orthographic_cameras

    cams = orthographic_cameras([-45.0, 0.0], 0.0, center=(0.0, 0.0, 0.0), half_size=1.0)
    images = torch.zeros(2, 32, 32, 4)
    images[0, ..., 0] = 1  # red
    images[1, ..., 2] = 1  # blue
    images[..., 3] = 1
    to_cam = -cams.forward.float()
    n = torch.nn.functional.normalize(0.3 * to_cam[0:1] + 0.7 * to_cam[1:2], dim=-1)  # faces view 1 more
    c = (n * to_cam).sum(-1)
    sv = torch.tensor([[0.9, 0.9, -0.9], [0.95, 0.9, -0.9], [0.9, 0.95, -0.9]]) - 2 * n
    sf = torch.tensor([[0, 1, 2]])
    point = torch.tensor([[0.0, 0.0, 0.0]])
    for powers in ((2.0, 2.0), (8.0, 2.0), (2.0, 8.0)):
        col, _ = back_project(point, n, images, cams, sv, sf, depth_tolerance=0.01, power=torch.tensor(powers))
        w0, w1 = c[0] ** powers[0], c[1] ** powers[1]
        assert torch.allclose(col, torch.tensor([[w0 / (w0 + w1), 0.0, w1 / (w0 + w1)]]), atol=1e-4), (powers, col)
    # A steeper exponent on view 0, which sees the point at the larger angle, gives it less red.
    red = [back_project(point, n, images, cams, sv, sf, depth_tolerance=0.01, power=torch.tensor(p))[0][0, 0]
           for p in ((2.0, 2.0), (8.0, 2.0))]
    assert red[1] < 0.6 * red[0]
    with pytest.raises(ValueError, match="view_powers"):
        TextureConfig(view_powers=(2.0, -1.0))
