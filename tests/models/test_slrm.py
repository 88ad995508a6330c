"""The S-LRM: shapes, LoRA in and out, the orthographic lift, VolSDF density, reconstruction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stdgen.geometry.rays import box_intersection, camera_rays, normalizing_transform, pixel_ndc
from stdgen.models.slrm.model import SLRM, FieldOutput, SLRMConfig, ortho_lift, plane_points
from stdgen.render.camera import evaluation_views, generation_views, random_views
from stdgen.structures.semantics import Part


def tiny(**kw) -> SLRM:
    torch.manual_seed(0)
    return SLRM(SLRMConfig.tiny(**kw)).eval()


def inputs(model: SLRM, b: int = 2):
    cams = generation_views()
    g = torch.Generator().manual_seed(1)
    s = model.config.image_size
    return torch.rand(b, 6, model.config.in_channels, s, s, generator=g), cams.world_to_cam, cams.proj


@pytest.mark.parametrize("lift", ["ortho", "none"])
@pytest.mark.parametrize("in_channels", [3, 6])
def test_shapes_and_determinism(lift, in_channels):
    m = tiny(lift=lift, in_channels=in_channels)
    x, w2c, proj = inputs(m)
    planes = m.encode(x, w2c, proj)
    c = m.config
    assert planes.shape == (2, 3, c.triplane_channels, c.triplane_res, c.triplane_res)
    assert torch.equal(planes, m.encode(x, w2c, proj))
    pts = torch.rand(2, 50, 3) * 2 - 1
    out = m.query(planes, pts)
    full = m(x, w2c, proj, points=pts)
    assert torch.equal(full.planes, planes) and torch.equal(full.field.sdf, out.sdf)
    assert torch.equal(out.sigma, m.density(out.sdf))
    assert out.sdf.shape == (2, 50) and out.rgb.shape == (2, 50, 3) and out.logits.shape == (2, 50, 3)
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1


def test_vit_encoder_forward():
    m = tiny(encoder="vit", patch_size=8, encoder_depth=1, encoder_channels=(4, 8, 8, 16), lift="none")
    x, w2c, proj = inputs(m, 1)
    assert m.encode(x, w2c, proj).shape[:2] == (1, 3)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="SLRMConfig.triplane_res"):
        SLRMConfig.tiny(triplane_res=12)
    with pytest.raises(ValueError, match="SLRMConfig.in_channels"):
        SLRMConfig.tiny(in_channels=4)


def test_lora_starts_as_no_change_and_merges_exactly():
    m = tiny()
    x, w2c, proj = inputs(m)
    before = m.encode(x, w2c, proj)
    m.add_lora(4)
    assert m.config.lora_rank == 4 and len(m.lora_parameters()) == 4 * 2 * 2  # 4 projections x (A, B) x 2 attns
    assert torch.allclose(m.encode(x, w2c, proj), before, atol=1e-6)
    with torch.no_grad():
        for p in m.lora_parameters():
            p.normal_(0, 0.1)
    adapted = m.encode(x, w2c, proj)
    assert not torch.allclose(adapted, before, atol=1e-4)
    merged = m.merged()
    assert merged.config.lora_rank == 0
    assert torch.allclose(merged.encode(x, w2c, proj), adapted, atol=1e-5)
    with pytest.raises(ValueError):
        m.add_lora(4)


def test_ortho_lift_puts_front_pixels_on_the_xy_plane():
    """A feature map equal to each pixel's own (x, y) NDC lands on the XY plane at texel (x, -y) in the
    plane's layout (row 0 = -bound), and the side views' maps on YZ; XZ (no view looks down) stays 0."""
    cams = generation_views()  # azimuths -90, -45, 0, 45, 90, 180
    res = 8
    ndc = pixel_ndc(res, res).permute(2, 0, 1)  # (2, H, W)
    feats = torch.cat([ndc, torch.ones(1, res, res)])[None, None].repeat(1, 6, 1, 1, 1)  # (1, 6, 3, H, W)
    full = (cams.proj @ cams.world_to_cam)[None]
    out = ortho_lift(feats, full, cams.world_to_cam[None], res)
    pts = plane_points(res)  # (3, P, 3)
    xy = out[0, 0].reshape(3, -1)
    # Front (az 0) sees world (x, y) at NDC (x, y); back (az 180) at (-x, y): the average of x is 0.
    assert torch.allclose(xy[1], pts[0, :, 1], atol=1e-5)
    assert torch.allclose(xy[0], torch.zeros_like(xy[0]), atol=1e-5)
    assert torch.allclose(xy[2], torch.ones_like(xy[2]))
    assert torch.equal(out[0, 1], torch.zeros_like(out[0, 1]))
    yz = out[0, 2].reshape(3, -1)
    assert torch.allclose(yz[1], pts[2, :, 1], atol=1e-5)  # NDC y = world y for the side views too


def test_ortho_lift_in_a_framed_normalised_frame():
    """Views framing a character (centre c, half-size h != 1), moved to the normalised frame as the
    training task does: the lift is the same as for the unit framing (regression: the scaled view
    matrices once hid every view from the lift when h < 1)."""
    res = 8
    ndc = pixel_ndc(res, res).permute(2, 0, 1)
    feats = torch.cat([ndc, torch.ones(1, res, res)])[None, None].repeat(1, 6, 1, 1, 1)
    unit = generation_views()
    ref = ortho_lift(feats, (unit.proj @ unit.world_to_cam)[None], unit.world_to_cam[None], res)
    for half in (0.67, 1.4):
        center = torch.tensor([0.1, 0.9, -0.05])
        cams = generation_views(center=center.tolist(), half_size=half)
        w2c = cams.world_to_cam @ normalizing_transform(center, torch.tensor(half))
        out = ortho_lift(feats, (cams.proj @ w2c)[None], w2c[None], res)
        assert torch.allclose(out, ref, atol=1e-5)
        assert out[0, 0].abs().sum() > 0


def test_volsdf_density():
    m = tiny()
    sdf = torch.tensor([-1.0, -1e-3, 0.0, 1e-3, 1.0])
    sigma = m.density(sdf)
    beta = float(m.beta.detach())
    assert torch.all(sigma[:-1] >= sigma[1:])
    assert sigma[2].item() == pytest.approx(0.5 / beta, rel=1e-5)
    assert sigma[0].item() == pytest.approx((1 - 0.5 * np.exp(-1 / beta)) / beta, rel=1e-4)


def test_camera_rays_project_back_to_their_pixels():
    g = torch.Generator().manual_seed(0)
    for cams in (evaluation_views(center=(0.1, 0.8, 0.0), half_size=0.9),
                 random_views(3, g, center=(0.1, 0.8, 0.0), half_size=0.9)):
        ndc = pixel_ndc(5, 7).reshape(1, -1, 2).expand(len(cams), -1, -1)
        o, d, tpd = camera_rays(cams.world_to_cam, cams.proj, ndc)
        pts = o + 2.5 * d
        clip = cams.clip(pts)
        assert torch.allclose(clip[..., :2] / clip[..., 3:], ndc, atol=1e-5)
        cam = (cams.world_to_cam[:, None, :3, :3] @ pts[..., None])[..., 0] + cams.world_to_cam[:, None, :3, 3]
        assert torch.allclose(-cam[..., 2], 2.5 / tpd, atol=1e-4)


def test_normalised_cameras_and_box():
    center, half = torch.tensor([0.1, 0.8, -0.2]), torch.tensor(0.9)
    cams = generation_views(center=center.tolist(), half_size=float(half))
    m = normalizing_transform(center, half)
    ndc = pixel_ndc(4, 4).reshape(1, -1, 2).expand(6, -1, -1)
    o, d, _ = camera_rays(cams.world_to_cam @ m, cams.proj, ndc)
    near, far = box_intersection(o, d)
    assert torch.all(far > near)
    # Generation views frame the normalised box exactly: rays enter it at |coordinate| = 1.
    entry = o + near[..., None] * d
    assert torch.allclose(entry.abs().amax(-1), torch.ones_like(near), atol=1e-4)


def test_reconstruct_extracts_an_analytic_field(monkeypatch):
    """With the network replaced by an analytic field (a sphere: body inside r < 0.3, clothes in the
    shell, hair above y > 0.35), reconstruction returns three parts in world units."""
    from stdgen.models.slrm.reconstruct import ReconstructConfig, reconstruct

    m = tiny()

    def query(planes, points):
        r = points.norm(dim=-1)
        logits = torch.stack([(0.3 - r) * 50, torch.zeros_like(r), (points[..., 1] - 0.35) * 50], -1)
        return FieldOutput(r - 0.5, m.density(r - 0.5), torch.full((*r.shape, 3), 0.25), logits)

    monkeypatch.setattr(m, "query", query)
    x, w2c, proj = inputs(m, 1)
    out = reconstruct(m, x[0], w2c, proj, center=(1.0, 2.0, 3.0), half_size=2.0,
                      config=ReconstructConfig(grid_resolution=48))
    ch = out.character
    full_r = np.linalg.norm(ch.clothes[0].vertices - [1, 2, 3], axis=1)
    assert np.percentile(full_r, 90) == pytest.approx(1.0, abs=0.06)  # the sphere's radius 0.5 x half_size 2
    body_r = np.linalg.norm(ch.body.vertices - [1, 2, 3], axis=1)
    assert np.median(body_r) == pytest.approx(0.6, abs=0.06)  # the r = 0.3 class boundary, closed
    assert ch.hair[0].vertices[:, 1].min() > 2.0 + 2 * 0.3
    assert ch.body.label == Part.BODY and np.allclose(ch.body.colors, 0.25)
    assert set(out.seconds) == {"forward", "field", "extract", "colour"}


def test_geometry_stays_float32_under_autocast():
    """Rays, the lift's projections and the triplane lookups ignore bf16 autocast (in bf16 an eye plane
    ~15 box units away puts ray origins ~0.06 units off, two texels): the same numbers with and without."""
    ndc = pixel_ndc(8, 8).reshape(1, -1, 2).expand(6, -1, -1)
    center, half = torch.tensor([0.1, 0.9, -0.05]), torch.tensor(0.7)
    cams = generation_views(center=center.tolist(), half_size=0.7)
    wn = cams.world_to_cam @ normalizing_transform(center, half)
    ref = camera_rays(wn, cams.proj, ndc)
    res = 8
    feats = torch.rand(1, 6, 3, res, res)
    full = (cams.proj @ wn)[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = camera_rays(wn, cams.proj, ndc)
        lifted = ortho_lift(feats, full, wn[None], res)
    for a, b in zip(ref, got):
        assert b.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(lifted, ortho_lift(feats, full, wn[None], res))


@pytest.mark.slow
def test_paper_config_runs_forward():
    """The paper's sizes (351 M parameters, ViT encoder at 256², 1024-wide 16-block transformer) build
    and run one forward with random weights (never trained here)."""
    m = SLRM(SLRMConfig.paper()).eval()
    assert 300e6 < m.num_parameters() < 400e6
    x, w2c, proj = inputs(m, 1)
    with torch.inference_mode():
        planes = m.encode(x, w2c, proj)
        out = m.query(planes, torch.rand(1, 64, 3) * 2 - 1)
    assert planes.shape == (1, 3, 80, 64, 64) and torch.isfinite(out.sdf).all()


def test_rendered_vertex_colors_show_the_surface_not_the_field_at_the_vertex():
    # A sphere of radius 0.5 whose outer shell (r in 0.47-0.5) is red, blue elsewhere, also in the
    # empty space outside: vertices 0.002 outside the surface (an extraction error) read blue at the
    # vertex itself, while the rendering along the normal (what training supervised) shows red.
    from stdgen.models.slrm.model import FieldOutput
    from stdgen.models.slrm.reconstruct import ReconstructConfig, rendered_vertex_colors

    class Sphere:
        def query(self, planes, pts):
            r = pts.norm(dim=-1)
            sigma = 400 * torch.sigmoid((0.5 - r) / 0.0003)
            red = ((r > 0.47) & (r < 0.5006)).float()[..., None]
            rgb = red * torch.tensor([1.0, 0, 0]) + (1 - red) * torch.tensor([0, 0, 1.0])
            logits = torch.zeros(*r.shape, 3)
            logits[..., 0] = 5  # body
            return FieldOutput(0.5 - r, sigma, rgb, logits)

    n = torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    v = n * 0.502
    cfg = ReconstructConfig(color_samples=32, color_depth=0.03)
    assert ReconstructConfig().color_samples > 0  # rendered colours are the default
    col = rendered_vertex_colors(Sphere(), None, v, n, "body", cfg)
    assert (col[:, 0] > 0.9).all() and (col[:, 2] < 0.1).all()
    assert (Sphere().query(None, v[None]).rgb[0, :, 2] == 1).all()  # the vertex reading is blue
    # Clothes-only layer set drops the (body-class) sphere: nothing rendered, the vertex colour stays.
    col2 = rendered_vertex_colors(Sphere(), None, v, n, "body_clothes", cfg)
    assert col2.shape == (64, 3)
    with pytest.raises(ValueError, match="color_samples"):
        ReconstructConfig(color_samples=-1)


def test_exposed_body_takes_the_class_the_field_renders():
    # A sphere of radius 0.5: below y = 0.2 a clothes shell 0.015 thick (a sixth of a grid cell) over
    # the body, above it bare body. Grid samples under the surface are body by argmax (but the few
    # inside the shell); the rendering along the normal sees the shell first, so below y = 0.2 the
    # exposed body becomes clothes, above it stays body, and deep samples are untouched.
    from stdgen.geometry.grid import Grid
    from stdgen.models.slrm.reconstruct import ReconstructConfig, relabel_exposed_body

    def query(planes, pts):
        r = pts.norm(dim=-1)
        shell = (r > 0.485) & (pts[..., 1] < 0.2)
        logits = torch.zeros(*r.shape, 3)
        logits[..., 0] = torch.where(shell, -4.0, 4.0)
        logits[..., 1] = torch.where(shell, 4.0, -4.0)
        return FieldOutput(r - 0.5, 400 * torch.sigmoid((0.5 - r) / 0.003), torch.full((*r.shape, 3), 0.5), logits)

    class Model:
        pass

    m = Model()
    m.query = query
    grid = Grid.cube(24)
    pts = grid.points("cpu", torch.float32)
    f = query(None, pts.reshape(1, -1, 3))
    sdf, probs = f.sdf[0].reshape(grid.shape), torch.softmax(f.logits[0], -1).reshape(*grid.shape, 3)
    before = probs.argmax(-1)
    out, changed = relabel_exposed_body(m, None, sdf, probs, grid, ReconstructConfig(color_samples=32))
    win = out.argmax(-1)
    y = pts[..., 1]
    band = (sdf <= 0) & (sdf > -1.5 * grid.spacing[0]) & (before == int(Part.BODY))
    low, high = band & (y < 0.1), band & (y > 0.3)
    assert low.sum() > 50 and high.any()
    assert changed == int(((win == int(Part.CLOTHES)) & (before == int(Part.BODY))).sum())
    assert (win[low] == int(Part.CLOTHES)).all()
    assert (win[high] == int(Part.BODY)).all()
    assert (win[sdf <= -1.5 * grid.spacing[0]] == int(Part.BODY)).all()
    # Swapped, not rescaled: each sample keeps its set of probabilities.
    torch.testing.assert_close(out.sort(-1).values, probs.sort(-1).values)
    # Without the shell nothing changes hands.
    def bare(planes, pts):
        g = query(planes, pts)
        g.logits[..., 0], g.logits[..., 1] = 4.0, -4.0
        return g

    m.query = bare
    out2, changed2 = relabel_exposed_body(m, None, sdf, probs, grid, ReconstructConfig())
    assert changed2 == 0 and torch.equal(out2, probs)


@pytest.mark.parametrize("encoder", ["conv", "vit"])
def test_widen_input_state_keeps_the_rgb_model(encoder):
    # RGB weights loaded into a model that also reads normals compute what the RGB model did
    # (zero weights on the normal channels), whatever the normals; the trainer's --init path too.
    from stdgen.models.modeling import load_weights
    from stdgen.train.tasks.slrm import SLRMTask, tiny

    torch.manual_seed(0)
    kw = {} if encoder == "conv" else {"encoder": "vit", "patch_size": 8}
    rgb = SLRM(SLRMConfig.tiny(**kw))
    with_normals = SLRM(SLRMConfig.tiny(in_channels=6, **kw))
    with_normals.load_state_dict(with_normals.widen_input_state(dict(rgb.state_dict())), strict=True)
    cams = generation_views(center=(0.0, 0.0, 0.0), half_size=1.0)
    views = torch.rand(1, 6, 3, 32, 32)
    normals = torch.rand(1, 6, 3, 32, 32)
    a = rgb.encode(views, cams.world_to_cam, cams.proj)
    b = with_normals.encode(torch.cat([views, normals], 2), cams.world_to_cam, cams.proj)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    task = SLRMTask(dataclasses.replace(tiny(), model=with_normals.config, use_normals=True))
    fresh = task.build_model()
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        rgb.save_pretrained(d)
        load_weights(fresh, d, adapt=lambda st: task.adapt_init(fresh, st))
    torch.testing.assert_close(fresh.encode(torch.cat([views, normals], 2), cams.world_to_cam, cams.proj), a,
                               rtol=1e-5, atol=1e-5)
