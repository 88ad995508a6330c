"""Optional exact 3D supervision of the S-LRM (issue 13): labelled points from the stream and the
``occ3d`` / ``sem3d`` terms."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stdgen.data.stream import RenderStream, StreamConfig, _from_shared, _to_shared, sample_points3d
from stdgen.geometry.inside import contains
from stdgen.structures.semantics import BACKGROUND_LABEL, Part

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from dataset_standin import standin_a_posed

N = 512


@pytest.fixture(scope="module")
def batch():
    cfg = StreamConfig(batch_size=2, resolution=16, count=2, device="cpu", random_light=False, maps=("sem",),
                       points3d=N)
    return next(iter(RenderStream(cfg, make=standin_a_posed)))


def test_batch_holds_points_and_labels(batch):
    assert batch["points"].shape == (2, N, 3) and batch["points"].dtype == torch.float32
    assert batch["point_labels"].shape == (2, N) and batch["point_labels"].dtype == torch.uint8
    assert set(torch.unique(batch["point_labels"]).tolist()) <= {*map(int, Part), BACKGROUND_LABEL}
    # The uniform half lies in the framing box; the near half has points inside every part.
    c, h = batch["center"][:, None], batch["half_size"][:, None, None]
    assert ((batch["points"][:, N // 2:] - c).abs() <= h + 1e-5).all()
    for part in Part:
        assert (batch["point_labels"][:, : N // 2] == part).sum() > 10, part
    # Off by default: no points in a plain batch.
    plain = next(iter(RenderStream(StreamConfig(batch_size=1, resolution=16, count=1, device="cpu", maps=("sem",)),
                                   make=standin_a_posed)))
    assert "points" not in plain and "point_labels" not in plain


def test_labels_match_the_characters_meshes(batch):
    """An independent check: the character's posed part meshes (posed by Character.part, not the
    scene flattening) and the public inside test, innermost part first; and the stand-in's analytic
    chest (a capsule of radius 0.12 about the y axis from y 0.9 to 1.15, under a shirt of radius 0.14)."""
    seed = int(batch["seed"][0])
    ch = standin_a_posed(seed)
    pts = batch["points"][0].numpy()
    lab = batch["point_labels"][0].numpy()
    expect = np.full(len(pts), BACKGROUND_LABEL, np.uint8)
    for part in reversed(Part):  # inner parts overwrite outer ones
        expect[contains(ch.part(part), pts)] = int(part)
    assert (lab == expect).mean() > 0.99
    r = np.linalg.norm(pts[:, [0, 2]], axis=1)
    chest = (pts[:, 1] > 0.95) & (pts[:, 1] < 1.1) & (np.abs(pts[:, 0]) < 0.08)
    assert np.all(lab[chest & (r < 0.115)] == Part.BODY)
    assert np.all(lab[chest & (r > 0.125) & (r < 0.135)] == Part.CLOTHES)
    assert np.all(lab[chest & (r > 0.15)] == BACKGROUND_LABEL)


def test_sampler_is_seeded_and_scaled():
    from stdgen.data.render_dataset import frame_character
    from stdgen.render.batch import scene_from_character

    ch = standin_a_posed(0)
    sc = scene_from_character(ch)
    fr = frame_character(ch, 1.1, sc)
    a = sample_points3d(sc, fr.center, fr.half_size, 301, np.random.default_rng(3), spread=0.001)
    b = sample_points3d(sc, fr.center, fr.half_size, 301, np.random.default_rng(3), spread=0.001)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (301, 3) and a[1].shape == (301,)
    # At a tiny spread, about half the near points of a closed part fall inside it.
    near = a[1][:150]
    assert 0.25 < np.mean(near != BACKGROUND_LABEL) < 0.75
    far = sample_points3d(sc, (10.0, 10.0, 10.0), 0.5, 40, np.random.default_rng(0))[1][20:]
    assert np.all(far == BACKGROUND_LABEL)  # a box far from the character: all outside


def test_points_travel_through_shared_memory():
    from stdgen.data.stream import CharacterSource

    src = CharacterSource(StreamConfig(points3d=64, device="cpu"), make=standin_a_posed)
    item = src._item(standin_a_posed(0), 0, 0, None)
    pts, lab = item.points.copy(), item.point_labels.copy()
    textures = len(item.scene.textures)
    back = _from_shared(_to_shared(item))
    np.testing.assert_array_equal(back.points, pts)
    np.testing.assert_array_equal(back.point_labels, lab)
    assert len(back.scene.textures) == textures
    # Without points the packing is unchanged.
    plain = CharacterSource(StreamConfig(device="cpu"), make=standin_a_posed)._item(standin_a_posed(0), 0, 0, None)
    back = _from_shared(_to_shared(plain))
    assert back.points is None and len(back.scene.textures) == textures


def test_pool_variants_label_the_reposed_arms():
    """Pool variants re-pose the arms: the labels follow the geometry that is rendered (a variant's
    scene), not the pool member's A-pose."""
    from types import SimpleNamespace

    from stdgen.data.stream import CharacterSource

    src = CharacterSource(StreamConfig(points3d=400, pool_size=1, device="cpu"), make=standin_a_posed)
    item = src._item(standin_a_posed(0), 0, 1, np.random.default_rng(5))
    sc = item.scene
    body = SimpleNamespace(vertices=sc.vertices, faces=sc.faces[: sc.layer_faces["body"]])
    inside = contains(body, item.points)
    assert np.all(item.point_labels[inside] == Part.BODY)


def test_tiny_training_with_3d_terms():
    """``--set points3d=...`` and a CPU training step in each stage: finite occ3d from stage 0,
    sem3d from stage 1, one model forward per step, and nothing new when the option is off."""
    from stdgen.train.tasks import make_task

    task = make_task("slrm", "tiny", ["points3d=64"])
    preset = task.preset
    assert preset.points3d == 64 and preset.loss.occ3d > 0 and preset.loss.sem3d > 0
    # The task's stream configuration, on the stand-in character (a procedural one costs ~10 s here).
    cfg = task.stream_config(rank=0, world_size=1, device="cpu", seed=0)
    assert cfg.points3d == 64
    b = next(iter(RenderStream(cfg, make=standin_a_posed)))
    assert b["points"].shape == (1, 64, 3) and b["point_labels"].shape == (1, 64)
    torch.manual_seed(0)
    model = task.build_model()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    g = torch.Generator().manual_seed(0)
    opt, stage, terms = None, 0, []
    steps = (0, preset.stage1_step, preset.stage2_step)
    for step in steps:
        if opt is None or task.stage(step) != stage:
            stage = task.stage(step)
            task.on_stage_change(model, stage)
            opt = torch.optim.Adam([p for grp in task.param_groups(model, step) for p in grp["params"]], lr=1e-3)
        calls.clear()
        out = task.losses(model, b, step, generator=g)
        assert len(calls) == 1
        opt.zero_grad()
        if stage == 0:
            out["occ3d"].backward(retain_graph=True)
            assert model.log_beta.grad is None or model.log_beta.grad.abs().sum() == 0  # beta: the renders' job
        sum(out.values()).backward()
        opt.step()
        terms.append({k: float(v.detach()) for k, v in out.items()})
    assert all(np.isfinite(t["occ3d"]) and t["occ3d"] > 0 for t in terms)
    assert [("sem3d" in t) for t in terms] == [False, True, True]
    assert all(np.isfinite(t["sem3d"]) for t in terms if "sem3d" in t)
    # Off (the default): no 3D terms (a batch without points is tested in test_batch_holds_points_and_labels).
    plain = make_task("slrm", "tiny", [])
    assert plain.preset.points3d == 0
    pb = {k: v for k, v in b.items() if k not in ("points", "point_labels")}
    assert not {"occ3d", "sem3d"} & set(plain.losses(model, pb, 3, generator=g))


def test_fill_layer_gaps_labels_the_air_under_a_garment():
    # A body sphere (r 0.10) under a shirt shell (0.115-0.12): the 1.5 cm air gap becomes clothes (the
    # voxeliser's convention); air outside the shirt, or under a shirt 5.5 cm off the body, stays out.
    import trimesh

    from stdgen.data.stream import fill_layer_gaps

    def sphere(r, inward=False):
        m = trimesh.creation.icosphere(subdivisions=4, radius=r)
        tri = np.asarray(m.vertices)[np.asarray(m.faces)]
        return tri[:, ::-1] if inward else tri

    shirt = np.concatenate([sphere(0.12), sphere(0.115, inward=True)])
    dirs = np.random.default_rng(0).normal(size=(200, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = np.repeat([0.05, 0.107, 0.117, 0.13, 0.2], 40)
    pts = dirs * radii[:, None]
    lab = np.where(radii < 0.1, int(Part.BODY), np.where((radii > 0.115) & (radii < 0.12), int(Part.CLOTHES),
                                                            BACKGROUND_LABEL)).astype(np.uint8)
    out = fill_layer_gaps({Part.BODY: sphere(0.10), Part.CLOTHES: shirt}, pts, lab)
    assert np.all(out[radii == 0.107] == Part.CLOTHES)
    assert np.all(out[radii == 0.13] == BACKGROUND_LABEL) and np.all(out[radii == 0.2] == BACKGROUND_LABEL)
    kept = (radii < 0.1) | (radii == 0.117)
    assert np.array_equal(out[kept], lab[kept])
    assert np.all(lab[radii == 0.107] == BACKGROUND_LABEL)  # the input is not changed
    loose = fill_layer_gaps({Part.BODY: sphere(0.06), Part.CLOTHES: shirt}, dirs * 0.1, np.full(200, 255, np.uint8))
    assert np.all(loose == BACKGROUND_LABEL)
    # Through the stream option.
    cfg = StreamConfig(batch_size=1, resolution=16, count=1, device="cpu", random_light=False, maps=("sem",),
                       points3d=N, points3d_fill_gaps=True)
    b = next(iter(RenderStream(cfg, make=standin_a_posed)))
    ref = next(iter(RenderStream(StreamConfig(batch_size=1, resolution=16, count=1, device="cpu", random_light=False,
                                              maps=("sem",), points3d=N), make=standin_a_posed)))
    torch.testing.assert_close(b["points"], ref["points"])
    changed = b["point_labels"] != ref["point_labels"]
    assert changed.any() and (ref["point_labels"][changed] == BACKGROUND_LABEL).all()
    assert set(b["point_labels"][changed].tolist()) <= {int(Part.CLOTHES), int(Part.HAIR)}
