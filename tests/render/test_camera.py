"""Camera conventions: azimuths, image orientation, pixel centres, view sets."""

import numpy as np
import pytest
import torch
import trimesh

from stdgen.render import (
    EVALUATION_AZIMUTHS,
    GENERATION_AZIMUTHS,
    Cameras,
    evaluation_views,
    face_closeup_views,
    generation_views,
    orthographic_cameras,
    perspective_cameras,
    random_views,
    rasterize,
    render_mesh,
    top_bottom_views,
)
from stdgen.structures.mesh import Mesh, merge_meshes


def _ball(center, color, radius=0.2) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    v = np.asarray(s.vertices, np.float32) + np.asarray(center, np.float32)
    return Mesh(v, s.faces, colors=np.tile(np.asarray(color, np.float32), (len(v), 1)))


RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _centre_colour(mesh, cams, res=33):
    out = render_mesh(mesh, cams, res, shading="flat", antialiasing=False)
    return out.rgb[:, res // 2, res // 2].numpy()


def test_azimuth_90_sees_the_plus_x_side_and_0_the_front():
    # Balls on the +X, -X and +Z axes around a green one at the centre: each camera sees the ball
    # on its own side in front of the others.
    mesh = merge_meshes([_ball((0.6, 0, 0), RED), _ball((-0.6, 0, 0), BLUE), _ball((0, 0, 0.6), GREEN)])
    cams = orthographic_cameras([90.0, -90.0, 0.0], 0.0, half_size=1.0)
    np.testing.assert_allclose(_centre_colour(mesh, cams), [RED, BLUE, GREEN], atol=1e-6)
    np.testing.assert_allclose(cams.centers.numpy(), [[10, 0, 0], [-10, 0, 0], [0, 0, 10]], atol=1e-4)
    np.testing.assert_allclose(cams.forward.numpy(), [[-1, 0, 0], [1, 0, 0], [0, 0, -1]], atol=1e-6)


def test_row_zero_is_the_top_and_plus_x_is_image_right_in_the_front_view():
    mesh = merge_meshes([_ball((0, 0.6, 0), RED, 0.15), _ball((0.6, 0, 0), BLUE, 0.15)])
    res = 64
    out = render_mesh(mesh, orthographic_cameras([0.0], 0.0), res, shading="flat", antialiasing=False)
    red = np.argwhere(out.rgb[0, ..., 0].numpy() > 0.5)
    blue = np.argwhere(out.rgb[0, ..., 2].numpy() > 0.5)
    assert red[:, 0].mean() < res / 2 - 10  # +Y: upper rows
    assert abs(red[:, 1].mean() - (res - 1) / 2) < 1
    assert blue[:, 1].mean() > res / 2 + 10  # +X (the character's left): right columns
    assert abs(blue[:, 0].mean() - (res - 1) / 2) < 1


def test_pixel_centres_sit_at_half_integers():
    cams = perspective_cameras([30.0], 20.0, 3.0)
    h, w = 24, 40
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ndc = torch.stack([(2 * j + 1) / w - 1, 1 - (2 * i + 1) / h], -1).reshape(-1, 2).float()
    # Points on the rays through the pixel centres (unproject NDC at depth 0.3), projected again.
    clip = torch.cat([ndc, torch.full_like(ndc[:, :1], 0.3), torch.ones_like(ndc[:, :1])], -1)
    world = clip @ torch.linalg.inv(cams.full_proj[0]).T
    world = world[:, :3] / world[:, 3:]
    px, _ = cams.project(world, (h, w))
    expect = torch.stack([j + 0.5, i + 0.5], -1).reshape(-1, 2).float()
    torch.testing.assert_close(px[0], expect, atol=2e-3, rtol=0)
    # pixel_rays go through the same points
    origins, dirs = cams.pixel_rays((h, w))
    to_point = world.reshape(h, w, 3) - origins[0]
    cos = torch.nn.functional.cosine_similarity(to_point, dirs[0], dim=-1)
    assert float(cos.min()) > 1 - 1e-5


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_a_triangle_covers_exactly_the_pixel_centres_inside_it(backend):
    # A right triangle with its legs half a pixel beyond a block of centres and its hypotenuse
    # through none: covers exactly the centres (j + 0.5, i + 0.5) with i + j <= 5 in pixel units.
    h = w = 16
    corners = np.array([[1.0, 1.0], [1.0, 8.9], [8.9, 1.0]])  # (col, row) in pixels
    ndc = np.stack([2 * corners[:, 0] / w - 1, 1 - 2 * corners[:, 1] / h], -1)
    pos = torch.tensor(np.concatenate([ndc, np.zeros((3, 1)), np.ones((3, 1))], -1), dtype=torch.float32)[None]
    tri = torch.tensor([[0, 2, 1]])  # counter-clockwise with y up
    covered = rasterize(pos, tri, (h, w), backend=backend)[0, ..., 3].numpy() > 0
    i, j = np.mgrid[0:h, 0:w]
    expect = (j >= 1) & (i >= 1) & ((j + 0.5) + (i + 0.5) <= 9.9)
    np.testing.assert_array_equal(covered, expect)


def test_view_sets():
    gen = generation_views(center=(0, 1, 0), half_size=0.9)
    assert len(gen) == 6 and bool(gen.orthographic.all())
    forward = gen.forward.numpy()
    az = np.degrees(np.arctan2(-forward[:, 0], -forward[:, 2]))
    np.testing.assert_allclose(np.mod(az + 180, 360), np.mod(np.asarray(GENERATION_AZIMUTHS) + 180, 360), atol=1e-4)
    ev = evaluation_views()
    assert len(ev) == 8 and [round(float(a)) % 360 for a in EVALUATION_AZIMUTHS] == [0, 45, 90, 135, 180, 225,
                                                                                      270, 315]
    tb = top_bottom_views()
    np.testing.assert_allclose(tb.forward.numpy(), [[0, -1, 0], [0, 1, 0]], atol=1e-6)
    face = face_closeup_views((0, 1.4, 0), 0.2)
    assert len(face) == 5 and face.names[2].startswith("face")
    r1 = random_views(4, torch.Generator().manual_seed(3))
    r2 = random_views(4, torch.Generator().manual_seed(3))
    torch.testing.assert_close(r1.world_to_cam, r2.world_to_cam)
    assert not bool(r1.orthographic.any())
    again = Cameras.from_dict(gen.to_dict())
    torch.testing.assert_close(again.full_proj, gen.full_proj)
    assert again.names == gen.names
