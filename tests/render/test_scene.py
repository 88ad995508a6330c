"""render_mesh and the render-demo picture."""

import numpy as np
import torch
from PIL import Image

from stdgen.cli import main
from stdgen.render import orthographic_cameras, render_mesh
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import BACKGROUND_LABEL, Part


def _quad(**kw) -> Mesh:
    v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32)
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]), **kw)


def test_textured_quad_shows_its_texture_the_gltf_way_up():
    # A 2 x 2 texture: red top-left, green top-right, blue bottom-left, white bottom-right (row 0 at
    # the top, UV (0, 0) the top-left corner): the quad seen from the front shows it upright.
    tex = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    out = render_mesh(_quad(uvs=uvs, texture=tex), orthographic_cameras([0.0]), 32, shading="flat")
    rgb = out.rgb[0].numpy()
    np.testing.assert_allclose(rgb[10, 10], [1, 0, 0], atol=1e-5)  # top-left quarter of the quad
    np.testing.assert_allclose(rgb[10, 21], [0, 1, 0], atol=1e-5)
    np.testing.assert_allclose(rgb[21, 10], [0, 0, 1], atol=1e-5)
    np.testing.assert_allclose(rgb[21, 21], [1, 1, 1], atol=1e-5)


def test_render_outputs_labels_alpha_and_premultiplied_colour():
    mesh = _quad(colors=np.full((4, 3), 0.5, np.float32), label=Part.CLOTHES)
    cams = orthographic_cameras([0.0, 180.0], 0.0, half_size=0.7)
    out = render_mesh(mesh, cams, 33, shading="flat")
    assert out.labels.dtype == torch.uint8
    inside = out.rast[..., 3] > 0
    assert bool((out.labels[inside] == int(Part.CLOTHES)).all())
    assert bool((out.labels[~inside] == BACKGROUND_LABEL).all())
    assert bool(inside[1].any())  # seen from behind too (no culling by default)
    a = out.alpha[..., 0]
    assert float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6
    assert bool(((a > 0.01) & (a < 0.99)).any())  # its edges fall between pixel centres: partial alpha
    torch.testing.assert_close(out.rgb, 0.5 * out.alpha.expand_as(out.rgb), atol=1e-6, rtol=0)
    comp = out.composite(1.0)
    assert float(comp[0, 0, 0].min()) == 1.0  # background corner


def test_empty_mesh_renders_background():
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    out = render_mesh(empty, orthographic_cameras([0.0]), 8)
    assert not out.alpha.any() and bool((out.labels == BACKGROUND_LABEL).all())


def test_render_demo_writes_the_picture(tmp_path):
    assert main(["render-demo", "-o", str(tmp_path), "--resolution", "32"]) == 0
    img = np.asarray(Image.open(tmp_path / "views.png"))
    assert img.shape[0] >= 4 * 32 and img.shape[1] >= 6 * 32
    assert img.std() > 10  # not blank
