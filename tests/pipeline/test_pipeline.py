"""StdGENPipeline and save_output on tiny random models (CPU, one thread)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stdgen.errors import StdgenError
from stdgen.pipeline import STAGES, GenerateOutput, StdGENPipeline, save_output
from stdgen.pipeline.outputs import output_files
from stdgen.pipeline.pipeline import BACK, FRONT, LEFT, RIGHT, PipelineConfig
from stdgen.structures import Character, Mesh, Part

from .tiny_pipeline import figure_picture, save_tiny_weights, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def pipe(weights):
    return StdGENPipeline.from_pretrained(weights, config=tiny_config())


@pytest.fixture(scope="module")
def apose_run(weights):
    """One run with every callback recorded (A-pose given: the canonicaliser is skipped)."""
    pipe = StdGENPipeline.from_pretrained(weights, config=tiny_config())
    calls, stages = [], []
    out = pipe(figure_picture(), pose="apose", seed=3, progress=lambda s, f: calls.append((s, f)),
               on_stage=lambda s, images: stages.append((s, images)))
    return out, calls, stages


def test_stages_run_in_order_with_their_images(apose_run):
    out, calls, stages = apose_run
    assert isinstance(out, GenerateOutput)
    order = list(dict.fromkeys(s for s, _ in calls))
    assert order == list(STAGES)
    for stage in STAGES:
        fr = [f for s, f in calls if s == stage]
        assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr), (stage, fr)
    assert [s for s, _ in stages] == ["canonicalize", "multiview"]
    assert stages[0][1]["canonical"] is out.canonical
    views = stages[1][1]
    assert views["views_rgb"].shape == (6, 16, 16, 4) and views["views_rgb"].dtype == np.uint8
    assert views["views_normal"].shape == (6, 16, 16, 3) and views["views_normal"].dtype == np.uint8
    assert set(out.seconds) == set(STAGES) == set(out.peak_memory)
    assert all(v > 0 for k, v in out.peak_memory.items() if k != "refine" or out.settings["refine"])
    assert out.pose == "apose" and out.settings["seed"] == 3 and out.settings["refine"] is True
    assert set(out.settings["weights"]) == {"segment", "canon", "mvdiff", "slrm"}


def test_apose_input_is_its_own_canonical_picture(apose_run):
    out = apose_run[0]
    assert out.input_rgba.shape == (64, 64, 4) and out.input_rgba.dtype == np.uint8
    np.testing.assert_array_equal(out.canonical, out.input_rgba)
    # Framed as the dataset frames its renders: figure height 91 % of the side, centred.
    rows = np.flatnonzero((out.input_rgba[..., 3] > 127).any(1))
    assert abs((rows[-1] + 1 - rows[0]) - 64 / 1.1) <= 1.5


def test_character_is_textured_and_checked(apose_run):
    out = apose_run[0]
    body = out.character.body
    assert len(body.faces) > 100 and body.texture is not None and body.uvs is not None
    assert body.texture.shape[:2] == (32, 32)
    assert out.checks["faces"]["body"] == len(body.faces)
    assert 0.0 <= out.checks["front_silhouette_iou"] <= 1.0
    assert out.preview.dtype == np.uint8 and out.preview.ndim == 3
    assert out.turntable.shape == (2, 32, 32, 3)


def test_posed_picture_is_canonicalised(pipe, monkeypatch):
    monkeypatch.setattr(pipe.canonicalizer, "is_a_pose", lambda image: (False, 0.1))
    seen = []
    out = pipe(figure_picture(), seed=1, refine=False, progress=lambda s, f: seen.append((s, f)))
    assert out.pose == "posed"
    # The redrawing (the canonicaliser's 16 px) carries the picture's pixels at the picture's side.
    assert out.canonical.shape == (64, 64, 4)
    assert any(s == "canonicalize" and 0 < f < 1 for s, f in seen)  # per-step progress
    assert out.seconds["refine"] == 0.0
    assert out.character.body.colors is not None and out.character.body.texture is None


def test_picture_transfer_only_changes_the_colours_of_the_redrawing(weights, monkeypatch):
    """With ``picture_transfer`` off the canonical picture is the canonicaliser's own (its side); on, the
    same silhouette at the picture's side with colours pulled from the picture (without the head band,
    which may widen the head: ``tests/pipeline/test_detail.py``)."""
    import dataclasses

    results = {}
    for flag in (False, True):
        config = dataclasses.replace(tiny_config(), picture_transfer=flag, picture_transfer_head=0.0)
        pipe = StdGENPipeline.from_pretrained(weights, config=config)
        monkeypatch.setattr(pipe.canonicalizer, "is_a_pose", lambda image: (False, 0.1))
        framed = pipe.preprocess(figure_picture())
        results[flag] = pipe.canonicalize(framed, "auto", 0, None)[0]
    off, on = results[False], results[True]
    assert off.shape == (16, 16, 4) and on.shape == (64, 64, 4)
    from stdgen.pipeline.detail import _resize

    up = np.clip(_resize(off[..., 3].astype(np.float32) / 255, 64), 0, 1) * 255
    assert np.abs(on[..., 3].astype(float) - up).max() <= 1.0


def test_canonicaliser_steps_default_to_the_pipelines_and_steps_overrides_them(weights, monkeypatch):
    import dataclasses

    pipe = StdGENPipeline.from_pretrained(weights, config=dataclasses.replace(tiny_config(), canonicalize_steps=3))
    monkeypatch.setattr(pipe.canonicalizer, "is_a_pose", lambda image: (False, 0.1))
    real, asked = pipe.canonicalizer.canonicalize, []

    def record(x, **kw):
        asked.append(kw["steps"])
        return real(x, **kw)

    monkeypatch.setattr(pipe.canonicalizer, "canonicalize", record)
    framed = pipe.preprocess(figure_picture())
    pipe.canonicalize(framed, "auto", 0, None)
    pipe.canonicalize(framed, "auto", 0, 5)
    pipe.config = dataclasses.replace(pipe.config, canonicalize_steps=0)  # 0: the model's own default
    pipe.canonicalize(framed, "auto", 0, None)
    assert asked == [3, 5, None]
    assert PipelineConfig().canonicalize_steps == 2


def test_auto_pose_skips_when_the_check_says_apose(pipe, monkeypatch):
    monkeypatch.setattr(pipe.canonicalizer, "is_a_pose", lambda image: (True, 0.9))
    monkeypatch.setattr(pipe.canonicalizer, "canonicalize", lambda *a, **k: pytest.fail("must not redraw"))
    out = pipe(figure_picture(), refine=False)
    assert out.pose == "apose"
    np.testing.assert_array_equal(out.canonical, out.input_rgba)


def test_front_view_is_the_canonical_picture(pipe):
    """Fidelity: the S-LRM's and refinement's front view is the canonical picture, not the generated one."""
    canonical = figure_picture(64, 64)
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, (6, 16, 16, 4), dtype=np.uint8)
    normals = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    both = pipe.front_replaced(canonical, views, 64)
    a = canonical[..., 3:].astype(np.float32) / 255
    np.testing.assert_allclose(both[FRONT, 3].numpy(), a[..., 0], atol=1e-6)
    inside = a[..., 0] > 0.99
    np.testing.assert_allclose(both[FRONT, :3].permute(1, 2, 0).numpy()[inside],
                               canonical[..., :3][inside].astype(np.float32) / 255, atol=1e-5)
    rv = pipe.refine_views(canonical, views, normals)
    assert rv.images.shape == (6, 32, 32, 3)
    small = torch.nn.functional.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None], size=(32, 32), mode="area")
    np.testing.assert_allclose(rv.masks[FRONT].numpy(), small[0, 0].numpy(), atol=1e-5)
    # Every pixel inside a silhouette has a unit normal (gaps filled from the nearest generated normal).
    n = rv.normals.norm(dim=-1)
    inside = rv.masks > 0.5
    assert torch.allclose(n[inside], torch.ones_like(n[inside]), atol=1e-4)
    assert (n[~inside] == 0).all()


def test_back_view_silhouette_is_the_picture_mirrored(pipe, monkeypatch):
    """Orthographic views at elevation 0: the back sees the front's rays, so its silhouette is the
    picture's mirrored left to right; with ``mirror_back`` off it stays the generated one."""
    canonical = figure_picture(64, 64)
    rng = np.random.default_rng(1)
    views = rng.integers(0, 256, (6, 16, 16, 4), dtype=np.uint8)
    normals = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    a = canonical[..., 3].astype(np.float32) / 255
    both = pipe.front_replaced(canonical, views, 64)
    np.testing.assert_allclose(both[BACK, 3].numpy(), a[:, ::-1], atol=1e-6)
    assert not np.allclose(a, a[:, ::-1])  # the test picture is not symmetric: the flip is checked
    # The generated back: facing away (-z) inside its own silhouette, noise off it (as the model's are).
    views[BACK, ..., 3] = 0
    views[BACK, 3:13, 4:12, 3] = 255
    normals[BACK, 3:13, 4:12] = (128, 128, 0)
    rv = pipe.refine_views(canonical, views, normals)
    n = rv.normals[BACK]
    inside = rv.masks[BACK] > 0.5
    assert inside.any()
    np.testing.assert_allclose(n[inside].numpy(), np.broadcast_to([0.0, 0.0, -1.0], n[inside].shape), atol=0.02)
    assert (n[~inside] == 0).all()
    monkeypatch.setattr(pipe.config, "mirror_back", False)
    plain = pipe.front_replaced(canonical, views, 64)
    assert not np.allclose(plain[BACK, 3].numpy(), a[:, ::-1], atol=0.1)
    # side_consensus: the two side views' silhouettes become each other's mirror image.
    assert not np.allclose(plain[LEFT, 3].numpy(), plain[RIGHT, 3].flip(-1).numpy(), atol=0.1)
    monkeypatch.setattr(pipe.config, "side_consensus", True)
    sides = pipe.front_replaced(canonical, views, 64)
    np.testing.assert_allclose(sides[LEFT, 3].numpy(), sides[RIGHT, 3].flip(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(sides[LEFT, 3].numpy(), (plain[LEFT, 3] + plain[RIGHT, 3].flip(-1)).numpy() / 2,
                               atol=1e-6)


def test_back_detail_changes_only_the_backs_colours(pipe):
    """``back_detail``: the back view takes the mirrored picture's pixels where they agree with it; the
    silhouettes and the other five views do not change."""
    canonical = figure_picture(128, 128)
    stripes = (np.arange(128) // 2 % 2 == 0)[:, None, None]  # detail the 32 px views cannot hold
    canonical[..., :3] = np.where(stripes, canonical[..., :3], canonical[..., :3] // 3)
    small = np.asarray(Image.fromarray(canonical).resize((32, 32), Image.BOX))
    views = np.repeat(small[None], 6, 0)
    views[BACK] = small[:, ::-1]  # a soft back in the picture's colours
    plain = pipe.front_replaced(canonical, views, 128)
    detail = pipe.front_replaced(canonical, views, 128, back_detail=True)
    others = [v for v in range(6) if v != BACK]
    assert torch.equal(plain[others], detail[others])
    assert torch.equal(plain[BACK, 3], detail[BACK, 3])
    inside = plain[BACK, 3] > 0.99
    mirrored = torch.from_numpy(canonical[:, ::-1, :3].copy()).permute(2, 0, 1).float() / 255
    err = lambda v: (v[BACK, :3] - mirrored).abs().mean(0)[inside].mean()
    assert err(detail) < 0.7 * err(plain)


def test_view_colour_match_moves_the_generated_views_by_the_fronts_drift(pipe, monkeypatch):
    """``view_colour_match``: the generated views, all drawn paler than the picture, move towards its
    colours by the generated front's drift; ``"texture"`` only in the bake's views, ``"off"`` nowhere;
    silhouettes and the front (the picture) unchanged."""
    canonical = figure_picture(128, 128)
    small = np.asarray(Image.fromarray(canonical).resize((64, 64), Image.BOX)).copy()
    pale = small.copy()
    pale[..., :3] = (155 + 0.4 * small[..., :3]).astype(np.uint8)  # the model's washed-out colours
    views = np.repeat(pale[None], 6, 0)
    monkeypatch.setattr(pipe.config, "view_colour_match", "off")
    plain = pipe.front_replaced(canonical, views, 64)
    assert torch.equal(pipe.front_replaced(canonical, views, 64, texture=True), plain)
    monkeypatch.setattr(pipe.config, "view_colour_match", "texture")
    assert torch.equal(pipe.front_replaced(canonical, views, 64), plain)
    tex = pipe.front_replaced(canonical, views, 64, texture=True)
    monkeypatch.setattr(pipe.config, "view_colour_match", "all")
    matched = pipe.front_replaced(canonical, views, 64)
    assert torch.equal(tex, matched)
    assert torch.equal(matched[:, 3], plain[:, 3]) and torch.equal(matched[FRONT], plain[FRONT])
    truth = torch.from_numpy(small[..., :3].astype(np.float32) / 255).permute(2, 0, 1)
    truth = torch.nn.functional.interpolate(truth[None], size=(64, 64), mode="bilinear")[0]
    inside = plain[LEFT, 3] > 0.99
    err = lambda v: (v[LEFT, :3] - truth).abs().mean(0)[inside].mean()
    assert err(matched) < 0.5 * err(plain)


def test_same_seed_same_files_other_seed_other_views(weights, tmp_path):
    for k in range(2):
        pipe = StdGENPipeline.from_pretrained(weights, config=tiny_config())
        save_output(pipe(figure_picture(), pose="apose", seed=5), tmp_path / f"run{k}")
    names = sorted(p.name for p in (tmp_path / "run0").iterdir())
    assert {"character.glb", "body.glb", "canonical.png", "views.png", "turntable.gif", "preview.png",
            "report.json"} <= set(names)
    for name in names:
        a, b = (tmp_path / "run0" / name).read_bytes(), (tmp_path / "run1" / name).read_bytes()
        if name == "report.json":  # timings differ; everything else is equal
            ra, rb = json.loads(a), json.loads(b)
            for r in (ra, rb):
                r.pop("seconds"), r.pop("cpu_seconds"), r.pop("peak_memory")
            assert ra == rb
        else:
            assert a == b, name
    other = pipe.generate_views(pipe.preprocess(figure_picture()), 6, None)[0]
    assert not np.array_equal(pipe.generate_views(pipe.preprocess(figure_picture()), 5, None)[0], other)


def test_report_lists_version_weights_seed_settings_seconds_memory_faces(apose_run, tmp_path):
    out = apose_run[0]
    folder = save_output(out, tmp_path / "o")
    r = json.loads((folder / "report.json").read_text())
    assert r["seed"] == 3 and r["version"] and set(r["weights"]) == {"segment", "canon", "mvdiff", "slrm"}
    assert set(r["seconds"]) == set(STAGES) | {"total"}
    assert set(r["peak_memory"]) == set(STAGES)
    assert set(r["cpu_seconds"]) == set(STAGES) | {"total"}
    assert r["faces"]["body"] == len(out.character.body.faces)
    assert r["settings"]["config"] == tiny_config().to_dict()
    assert r["pose"] == "apose"


def _three_part_character() -> Character:
    def box(lo, hi, colour, part):
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        v = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float32)
        f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                      [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
        return Mesh(v, f, colors=np.tile(np.asarray(colour, np.float32), (8, 1)), label=part, name=part.key)

    return Character(body=box((-0.2, 0.0, -0.1), (0.2, 1.4, 0.1), (0.9, 0.7, 0.6), Part.BODY),
                     clothes=[box((-0.25, 0.5, -0.15), (0.25, 1.3, 0.15), (0.2, 0.3, 0.8), Part.CLOTHES)],
                     hair=[box((-0.15, 1.4, -0.15), (0.15, 1.7, 0.15), (0.3, 0.2, 0.1), Part.HAIR)])


def _hand_made_output() -> GenerateOutput:
    rng = np.random.default_rng(0)
    pic = figure_picture(64, 64)
    return GenerateOutput(_three_part_character(), pic, pic, rng.integers(0, 256, (6, 16, 16, 4), dtype=np.uint8),
                          rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), {s: 0.0 for s in STAGES},
                          {s: 0 for s in STAGES}, "apose", {"seed": 0, "version": "test", "weights": {}},
                          preview=rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
                          turntable=rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
                          checks={"faces": {"body": 12, "clothes": 12, "hair": 12}, "front_silhouette_iou": 0.5})


def test_glb_files_hold_the_named_parts(tmp_path):
    from stdgen.io.glb import read_glb

    folder = save_output(_hand_made_output(), tmp_path / "o")
    whole = read_glb(folder / "character.glb")
    assert set(whole) == {"body", "clothes", "hair"}
    for name in ("body", "clothes", "hair"):
        one = read_glb(folder / f"{name}.glb")
        assert [k for k, m in one.items() if len(m.faces)] == [name]
        assert len(one[name].faces) == 12


def test_obj_format(tmp_path):
    folder = save_output(_hand_made_output(), tmp_path / "o", fmt="obj")
    names = {p.name for p in folder.iterdir()}
    assert {"character.obj", "character.mtl", "body.obj", "clothes.obj", "hair.obj"} <= names
    assert not any(n.endswith(".glb") for n in names)
    text = (folder / "character.obj").read_text()
    assert text.count("\ng ") == 3 and sum(line.startswith("f ") for line in text.splitlines()) == 36
    # Vertex indices are global and 1-based: the hair's faces point past the body's and clothes' 16 vertices.
    last = [int(t) for t in text.strip().splitlines()[-1].split()[1:]]
    assert min(last) > 16 and max(last) <= 24
    with pytest.raises(StdgenError, match="fmt"):
        save_output(_hand_made_output(), tmp_path / "p", fmt="fbx")
    assert not (tmp_path / "p").exists()


def test_save_output_claims_and_writes_atomically(tmp_path, monkeypatch):
    foreign = tmp_path / "taken"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(StdgenError, match="did not make"):
        save_output(_hand_made_output(), foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["mine.txt"]

    import stdgen.io.outputs as outputs

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "mark_output_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_output(_hand_made_output(), tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no folder, no leftovers
    monkeypatch.undo()
    # Its own earlier folder may be rewritten.
    first = save_output(_hand_made_output(), tmp_path / "again")
    assert save_output(_hand_made_output(), first) == first


def test_files_are_a_function_of_the_output():
    a, b = output_files(_hand_made_output()), output_files(_hand_made_output())
    assert a == b


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pose": "tpose"}, "pose: expected 'auto' or 'apose', got 'tpose'"),
    ({"seed": -1}, r"seed: expected an integer in \[0, 2\*\*63\), got -1"),
    ({"seed": 1.5}, "seed: expected an integer"),
    ({"steps": 0}, r"steps: expected None .* or an integer in \[1, 1000\], got 0"),
    ({"refine": "yes"}, "refine: expected True or False"),
    ({"mask": "/no/such/mask.png"}, "mask: /no/such/mask.png: no such file"),
])
def test_check_inputs_names_argument_value_and_fix(pipe, kwargs, match):
    with pytest.raises(StdgenError, match=match):
        pipe.check_inputs(figure_picture(), **kwargs)


@pytest.mark.parametrize(("image", "match"), [
    ("/no/such/picture.png", "image: /no/such/picture.png: no such file"),
    (np.zeros((8, 8, 4), np.uint8), "8x8 pixels is too small"),
    (np.zeros((32, 32), np.uint8), r"expected an \(H, W, 3\) or \(H, W, 4\) array"),
    (np.zeros((32, 32, 3), np.int64), "dtype int64"),
])
def test_check_inputs_images(pipe, image, match):
    with pytest.raises(StdgenError, match=match):
        pipe.check_inputs(image)
    with pytest.raises(ValueError, match="expected a path or a numpy array"):
        pipe.check_inputs([1, 2, 3])


def test_empty_picture_is_an_error(pipe):
    empty = np.zeros((64, 64, 4), np.uint8)
    empty[..., :3] = 200
    empty[0, 0, 3] = 10  # not fully opaque: its alpha counts, and it holds no figure
    with pytest.raises(StdgenError, match="no figure found"):
        pipe(empty)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_names_the_stage_and_the_smaller_setting(pipe, monkeypatch, error):
    def boom(*a, **k):
        raise error("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pipe.multiview, "generate", boom)
    with pytest.raises(StdgenError, match=r"out of memory in the multiview stage on cpu: try fewer --steps"):
        pipe(figure_picture(), pose="apose")


def test_missing_and_corrupt_weights(weights, tmp_path):
    import shutil

    with pytest.raises(StdgenError, match="no such folder"):
        StdGENPipeline.from_pretrained(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(weights, partial)
    shutil.rmtree(partial / "slrm")
    with pytest.raises(StdgenError, match=r"no slrm/ in it"):
        StdGENPipeline.from_pretrained(partial)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(weights, corrupt)
    data = (corrupt / "mvdiff" / "model.safetensors").read_bytes()
    (corrupt / "mvdiff" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(StdgenError, match=r"mvdiff.*model\.safetensors"):
        StdGENPipeline.from_pretrained(corrupt)


def test_refinement_weights_the_pictures_silhouette_above_the_generated_views():
    """The front view's mask is the user's picture: its silhouette term outweighs each generated view's
    (``front_silhouette_weight``, every stage), as its colours do in the texture bake."""
    pipe = StdGENPipeline(None, None, None, None, config=PipelineConfig(front_silhouette_weight=12.0))
    cfg = pipe.refine_config()
    for stage in (cfg.schedule.body, cfg.schedule.clothes, cfg.schedule.hair):
        assert stage.mask_view_weights == tuple(12.0 if i == FRONT else 1.0 for i in range(6))
        assert stage.normal_view_weights is None
    assert PipelineConfig().front_silhouette_weight > 1
    with pytest.raises(ValueError, match="PipelineConfig.front_silhouette_weight"):
        PipelineConfig(front_silhouette_weight=-1.0)


def test_the_pictures_texture_exponent_reaches_the_bake_for_the_front_view_only():
    default = StdGENPipeline(None, None, None, None, config=PipelineConfig()).refine_config()
    front = PipelineConfig().front_texture_power
    assert default.texture.view_powers is None or default.texture.view_powers[FRONT] == front
    cfg = StdGENPipeline(None, None, None, None, config=PipelineConfig(front_texture_power=7.0)).refine_config()
    assert cfg.texture.view_powers == tuple(7.0 if i == FRONT else cfg.texture.power for i in range(6))
    with pytest.raises(ValueError, match="PipelineConfig.front_texture_power"):
        PipelineConfig(front_texture_power=-1.0)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match=r"PipelineConfig.grid_resolution: expected an integer in \[16, 512\], got 8"):
        PipelineConfig(grid_resolution=8)
    with pytest.raises(ValueError, match="PipelineConfig.refine_steps"):
        PipelineConfig(refine_steps=(1, 2))
    cfg = tiny_config()
    assert PipelineConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_pictures_are_drawn_when_the_output_has_none():
    import dataclasses

    files = output_files(dataclasses.replace(_hand_made_output(), preview=None, turntable=None))
    import io

    from PIL import Image

    preview = Image.open(io.BytesIO(files["preview.png"]))
    assert preview.size[1] == 2 * (256 + 2) + 2  # two rows of default-size tiles
    assert Image.open(io.BytesIO(files["turntable.gif"])).n_frames == 24


def test_background_removal_is_the_same_on_every_call():
    """GrabCut seeds its k-means from OpenCV's global random state: reseeded, so a run repeats itself."""
    from pathlib import Path

    from PIL import Image
    from scipy import ndimage

    from stdgen.pipeline.preprocess import refine_alpha

    rgba = np.asarray(Image.open(Path(__file__).parents[2] / "examples" / "apose_0900000.png"))[::2, ::2] / 255.0
    rng = np.random.default_rng(0)
    a = rgba[..., 3]
    rgb = rgba[..., :3] * a[..., None] + rng.uniform(0.3, 0.7, rgba.shape[:2] + (3,)) * (1 - a[..., None])
    soft = ndimage.gaussian_filter(a, 2)  # a segmenter's soft edge: GrabCut decides the band
    first = refine_alpha(rgb, soft)
    assert not np.array_equal(first, soft)  # GrabCut ran
    np.testing.assert_array_equal(refine_alpha(rgb, soft), first)


def test_generated_views_are_saved_as_the_dataset_sprites_eval_reads(weights, tmp_path):
    """mv_rgb.png / mv_normal.png hold the six views side by side (-90 ... 180), exactly, so that
    `stdgen eval` scores them as generated views."""
    from PIL import Image

    pipe = StdGENPipeline.from_pretrained(weights, config=tiny_config())
    out = pipe(figure_picture(), pose="apose", seed=3)
    save_output(out, tmp_path / "run")
    rgb = np.asarray(Image.open(tmp_path / "run" / "mv_rgb.png"))
    normal = np.asarray(Image.open(tmp_path / "run" / "mv_normal.png"))
    side = out.views_rgb.shape[1]
    assert rgb.shape == (side, 6 * side, 4) and normal.shape == (side, 6 * side, 3)
    for k in range(6):
        np.testing.assert_array_equal(rgb[:, k * side:(k + 1) * side], out.views_rgb[k])
        np.testing.assert_array_equal(normal[:, k * side:(k + 1) * side], out.views_normal[k])


def test_inner_layers_are_refined_against_their_own_layer_set():
    """A body sphere whose lower half a wide bowl of clothes hides: the body's targets follow the
    generated views where the body shows, and the body's own render where the clothes cover it (its
    target outline is not the bowl's); the outermost part keeps the whole character's views."""
    import trimesh

    from stdgen.pipeline.pipeline import layer_set_views
    from stdgen.refine import RefineViews
    from stdgen.refine.schedule import FixedLayers, render_stage
    from stdgen.render.camera import generation_views

    ball = trimesh.creation.icosphere(3, radius=0.4)
    bowl = trimesh.creation.icosphere(3, radius=0.6)
    bowl.update_faces(bowl.vertices[bowl.faces].mean(1)[:, 1] < 0.0)
    bowl.remove_unreferenced_vertices()
    body, clothes = Mesh(ball.vertices, ball.faces), Mesh(bowl.vertices, bowl.faces)
    cams = generation_views(center=(0.0, 0.0, 0.0), half_size=1.0)

    def render(meshes):
        v = torch.as_tensor(np.concatenate([m.vertices for m in meshes]), dtype=torch.float32)
        off = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        f = torch.as_tensor(np.concatenate([m.faces + o for m, o in zip(meshes, off)]), dtype=torch.long)
        nrm, mask, _ = render_stage(v, f, FixedLayers.build([], "cpu"), cams, (64, 64))
        return torch.nn.functional.normalize(nrm * 2 - 1, dim=-1, eps=1e-6) * (mask > 0.5), mask[..., 0]

    gen_normal, gen_mask = render([body, clothes])
    views = RefineViews(torch.ones(6, 64, 64, 3), gen_mask, gen_normal, cams)
    out = layer_set_views({Part.BODY: body, Part.CLOTHES: clothes}, views)
    assert out[Part.CLOTHES] is views
    target = out[Part.BODY]
    own_normal, own_mask = render([body])
    bowl_only = (gen_mask > 0.5) & (own_mask < 0.5)
    assert bowl_only.sum() > 500 and (target.masks[bowl_only] < 0.5).float().mean() > 0.95
    top = torch.zeros(64, 64, dtype=torch.bool)
    top[:29] = True  # the upper rows: the bare top of the body (the bowl starts at the middle row)
    shown = (own_mask > 0.5) & top
    assert shown.sum() > 100
    assert torch.allclose(target.masks[shown], gen_mask[shown])
    hidden = (own_mask > 0.5) & ~top & (gen_normal - own_normal).norm(dim=-1).gt(0.2)
    assert hidden.sum() > 100  # where the bowl hides the body, the targets are the body's own normals
    assert torch.allclose(target.normals[hidden], own_normal[hidden], atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "mean+diffusion"])
def test_multiview_modes_that_use_the_mean(weights, tmp_path, mode):
    """The deterministic predictor's mean, alone or as the diffusion sampler's start: loaded from the
    weights folder's mvreg/, reported in the settings; without it, an error naming the folder."""
    import dataclasses
    import shutil

    cfg = dataclasses.replace(tiny_config(), multiview_mode=mode, multiview_start_sigma=0.5)
    pipe = StdGENPipeline.from_pretrained(weights, config=cfg)
    assert pipe.regressor is not None and "mvreg" in pipe.weights
    calls = []
    monkeypatch_sample = pipe.multiview.sample

    def spy(*a, **k):
        calls.append(k)
        return monkeypatch_sample(*a, **k)

    pipe.multiview.sample = spy
    out = pipe(figure_picture(), pose="apose", seed=2, refine=False)
    assert out.views_rgb.shape == (6, 16, 16, 4) and set(out.settings["weights"]) >= {"mvreg"}
    assert out.settings["config"]["multiview_mode"] == mode
    if mode == "mean":
        assert calls == []  # the diffusion model is not sampled
        mean = pipe.regressor.generate(torch.from_numpy(out.canonical).permute(2, 0, 1).float() / 255,
                                       resolution=16)[0]
        np.testing.assert_array_equal(out.views_rgb, (mean.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))
    else:
        assert calls[0]["start_sigma"] == 0.5 and calls[0]["init"].shape == (1, 2, 6, 4, 16, 16)
    again = pipe(figure_picture(), pose="apose", seed=2, refine=False)
    np.testing.assert_array_equal(out.views_rgb, again.views_rgb)
    partial = tmp_path / "no-mvreg"
    shutil.copytree(weights, partial)
    shutil.rmtree(partial / "mvreg")
    with pytest.raises(StdgenError, match=r"no mvreg/ in it"):
        StdGENPipeline.from_pretrained(partial, config=cfg)
    StdGENPipeline.from_pretrained(partial, config=tiny_config())  # the diffusion mode does not need it
    with pytest.raises(StdgenError, match="needs the multi-view predictor"):
        StdGENPipeline(None, None, None, None, config=cfg)
    with pytest.raises(ValueError, match="multiview_mode"):
        PipelineConfig(multiview_mode="fast")
