"""``refine_and_texture`` in memory, the refinement configs' conventions, and the device-side steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stdgen.refine.coarse import CoarseConfig, taubin_smooth, taubin_smooth_tensor
from stdgen.refine.core import RefineConfig, RefineViews, ReportConfig, refine_and_texture, refine_parts
from stdgen.refine.dilation import DilationConfig
from stdgen.refine.explicit_target import ExplicitTargetConfig
from stdgen.refine.losses import LossWeights
from stdgen.refine.optimizer import VertexAdamConfig
from stdgen.refine.remesh import RemeshConfig, mesh_edges
from stdgen.refine.schedule import ScheduleConfig, StageConfig
from stdgen.refine.texture import TextureConfig
from stdgen.refine.warp import SilhouetteWarpConfig
from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import PARTS, Part

CONFIGS = [VertexAdamConfig, LossWeights, RemeshConfig, DilationConfig, ExplicitTargetConfig, StageConfig,
           ScheduleConfig, TextureConfig, SilhouetteWarpConfig, CoarseConfig, ReportConfig, RefineConfig]


def _fast(texture_size=64) -> RefineConfig:
    cfg = RefineConfig()
    for p in PARTS:
        s = cfg.schedule.stage(p)
        s.steps, s.resolution, s.fine_steps, s.explicit_target.steps = 3, 64, 0, 2
    cfg.texture.size = texture_size
    return cfg


def _views(standin_views) -> dict[Part, RefineViews]:
    cams, renders = standin_views
    return {p: RefineViews(r["rgba"][..., :3], r["alpha"], r["normal"], cams, r["sem"]) for p, r in renders.items()}


def test_refine_and_texture_gives_a_textured_character_and_reports_progress(standin, standin_views):
    _, coarse = standin
    steps, done = [], []
    character = refine_and_texture(coarse, _views(standin_views), _fast(),
                                   on_step=lambda part, step, total, terms: steps.append((part, step, total)),
                                   on_part_done=lambda part, mesh: done.append(part))
    assert isinstance(character, Character)
    assert len(character.clothes) == 1 and len(character.hair) == 1
    for part in PARTS:
        (mesh,) = character.rest_meshes(part)
        assert mesh.label == part and mesh.num_faces > 100 and np.isfinite(mesh.vertices).all()
        assert mesh.texture.shape == (64, 64, 3) and mesh.texture.dtype == np.uint8
        assert mesh.uv_faces.shape == mesh.faces.shape and 0 <= mesh.uvs.min() and mesh.uvs.max() <= 1
    assert done == list(PARTS)
    assert steps == [(p, i, 3) for p in PARTS for i in (1, 2, 3)]


def test_one_set_of_views_serves_every_stage_and_vertex_mode(standin, standin_views):
    _, coarse = standin
    full = _views(standin_views)[Part.HAIR]
    cfg = _fast()
    cfg.texture.mode = "vertex"
    out = refine_parts({Part.BODY: coarse[Part.BODY], Part.HAIR: coarse[Part.HAIR]}, full, cfg)
    assert out.character.clothes == [] and len(out.character.hair) == 1
    assert out.textured[Part.BODY].colors.shape == (out.textured[Part.BODY].num_vertices, 3)
    assert out.refined[Part.CLOTHES].is_empty and set(out.result.stages) == {Part.BODY, Part.HAIR}
    with pytest.raises(ValueError, match="non-empty body"):
        refine_and_texture({Part.HAIR: coarse[Part.HAIR]}, full, cfg)


def test_textures_are_baked_from_texture_views_when_given(standin, standin_views):
    # The same refinement; the bake reads texture_views (twice the side, every pixel pure red) instead
    # of the views it was compared with: every part's seen texels come out red, and the geometry is
    # the same as without them.
    _, coarse = standin
    full = _views(standin_views)[Part.HAIR]
    cfg = _fast()
    cfg.texture.mode = "vertex"
    parts = {Part.BODY: coarse[Part.BODY], Part.HAIR: coarse[Part.HAIR]}
    v, h, w = full.masks.shape
    red = torch.zeros(v, 2 * h, 2 * w, 3)
    red[..., 0] = 1
    masks = torch.nn.functional.interpolate(full.masks[:, None].float(), scale_factor=2, mode="nearest")[:, 0]
    tex = RefineViews(red, masks, torch.zeros(v, 2 * h, 2 * w, 3), full.cameras)
    plain = refine_parts(parts, full, cfg)
    out = refine_parts(parts, full, cfg, texture_views=tex)
    for p in parts:
        np.testing.assert_array_equal(out.refined[p].vertices, plain.refined[p].vertices)
        c = out.textured[p].colors
        assert np.allclose(c, [1, 0, 0], atol=1e-5), c[:3]
        assert not np.allclose(plain.textured[p].colors, [1, 0, 0], atol=0.05)


def test_views_check_their_shapes(standin_views):
    cams, renders = standin_views
    r = renders[Part.BODY]
    with pytest.raises(ValueError, match=r"RefineViews.masks: expected shape \(6, 192, 192\)"):
        RefineViews(r["rgba"][..., :3], r["alpha"][:, :10], r["normal"], cams)
    with pytest.raises(ValueError, match="expected 2 cameras \\(one per view\\), got 6"):
        RefineViews(r["rgba"][:2, ..., :3], r["alpha"][:2], r["normal"][:2], cams)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_round_trips_through_json(cls):
    cfg = cls()
    text = json.dumps(cfg.to_dict())
    assert cls.from_dict(json.loads(text)) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        cls.from_dict({**cfg.to_dict(), "no_such_field": 1})


def test_the_whole_tree_round_trips_with_changed_values():
    cfg = _fast(texture_size=128)
    cfg.schedule.hair.weights.part_mask = 3.0
    cfg.schedule.clothes.fine_resolution = None
    back = RefineConfig.from_json(cfg.to_json())
    assert back == cfg and back.schedule.hair.weights.part_mask == 3.0 and back.schedule.clothes.fine_resolution is None
    with pytest.raises(ValueError, match=r"schedule\.body\.optimizer: unknown keys \['lrr'\]"):
        RefineConfig.from_dict({"schedule": {"body": {"optimizer": {"lrr": 1}}}})


@pytest.mark.parametrize("cls, field, value", [
    (VertexAdamConfig, "beta1", 1.0), (LossWeights, "collision", -1.0), (RemeshConfig, "collapse_ratio", 1.5),
    (DilationConfig, "neighbours", 0), (ExplicitTargetConfig, "retarget_every", 0), (StageConfig, "steps", 0),
    (ScheduleConfig, "dilate", "yes"), (TextureConfig, "mode", "paint"), (CoarseConfig, "method", "dual"),
    (ReportConfig, "metric_points", 10), (RefineConfig, "texture", None),
])
def test_every_config_refuses_a_bad_value_naming_field_value_and_range(cls, field, value):
    with pytest.raises((ValueError, TypeError), match=rf"{cls.__name__}\.{field}: expected .*"):
        cls(**{field: value})


def test_cli_flags_are_checked_by_the_configs(tmp_path, capsys):
    from stdgen.cli import main

    assert main(["refine", str(tmp_path), "-o", str(tmp_path / "o"), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps 0: StageConfig.steps: expected an integer in [1, 10000], got 0" in err
    assert main(["refine", str(tmp_path), "-o", str(tmp_path / "o"), "--texture-size", "8"]) == 2
    assert "TextureConfig.size" in capsys.readouterr().err


def test_device_smoothing_is_bit_identical_to_the_host_one(standin):
    _, coarse = standin
    mesh = coarse[Part.CLOTHES]
    v = mesh.vertices.astype(np.float32)
    host = taubin_smooth(Mesh(v, mesh.faces), 5).vertices
    dev = taubin_smooth_tensor(torch.as_tensor(v), torch.as_tensor(mesh_edges(mesh.faces, len(v))), 5)
    assert dev.dtype == torch.float32 and np.array_equal(dev.numpy(), host)
