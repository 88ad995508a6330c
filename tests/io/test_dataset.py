"""The on-disk character-folder format: write -> read round trips, encodings, errors, manifest."""

import json

import numpy as np
import pytest

from stdgen.errors import InputError
from stdgen.io.dataset import (
    DEPTH_SCALE,
    MAPS,
    CharacterRenders,
    LayerRenders,
    character_folder_name,
    list_character_folders,
    manifest_entry,
    read_manifest,
    read_meta,
    read_renders,
    write_manifest,
    write_renders,
)
from stdgen.render.camera import GENERATION_AZIMUTHS, Cameras, evaluation_views, random_views
from stdgen.structures.semantics import BACKGROUND_LABEL, LAYER_SETS


def _views(n_random=2):
    import torch

    from stdgen.data.render_dataset import _view_dicts

    ev = evaluation_views(center=(0, 0.8, 0), half_size=0.9)
    rv = random_views(n_random, torch.Generator().manual_seed(0), center=(0, 0.8, 0), half_size=0.9)
    return _view_dicts(ev, "eval", (0, 0.8, 0)) + _view_dicts(rv, "random", (0, 0.8, 0))


def _random_renders(rng, views, res=12, posed=2) -> CharacterRenders:
    v = len(views)
    layers = {}
    for name in LAYER_SETS:
        sem = rng.choice(np.array([0, 1, 2, BACKGROUND_LABEL], np.uint8), size=(v, res, res))
        cov = sem != BACKGROUND_LABEL
        rgb = rng.integers(0, 256, (v, res, res, 4), dtype=np.uint8)
        rgb[..., 3] = np.where(cov, rng.integers(128, 256, (v, res, res)), rng.integers(0, 3, (v, res, res)))
        n = rng.normal(size=(v, res, res, 3)).astype(np.float32)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        # Garbage outside the coverage: the writer must zero it.
        depth = rng.uniform(0.3, 12.0, (v, res, res)).astype(np.float32)
        layers[name] = LayerRenders(rgb=rgb, lit=rng.integers(0, 256, (v, res, res, 3), dtype=np.uint8),
                                    normal=n, depth=depth, sem=sem)
    posed_rgb = rng.integers(0, 256, (posed, res, res, 4), dtype=np.uint8)
    meta = {"resolution": res, "seed": 7, "split": "train", "source": "test",
            "posed": [{"name": f"posed_{k}"} for k in range(posed)]}
    return CharacterRenders(views=views, layers=layers, meta=meta, posed_rgb=posed_rgb)


def test_round_trip_write_read(tmp_path):
    rng = np.random.default_rng(0)
    views = _views()
    src = _random_renders(rng, views)
    write_renders(tmp_path, src)
    got = read_renders(tmp_path)
    assert got.views == json.loads(json.dumps(views))
    assert got.meta["seed"] == 7 and got.resolution == 12
    assert set(got.layers) == set(LAYER_SETS)
    for name, a in src.layers.items():
        b = got.layers[name]
        cov = a.sem != BACKGROUND_LABEL
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.lit, a.lit)
        np.testing.assert_array_equal(b.sem, a.sem)
        np.testing.assert_array_equal(b.coverage, cov)
        # depth: 1/4 mm steps, so within half a step; exactly 0 off the coverage
        assert np.abs(b.depth[cov] - a.depth[cov]).max() <= 0.5 / DEPTH_SCALE + 1e-6
        assert np.all(b.depth[~cov] == 0)
        # normals: 8 bits per component -> well under a degree; 0 off the coverage
        cos = np.sum(b.normal[cov] * a.normal[cov], -1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0
        np.testing.assert_allclose(np.linalg.norm(b.normal[cov], axis=-1), 1, atol=1e-5)
        assert np.all(b.normal[~cov] == 0)
    np.testing.assert_array_equal(got.posed_rgb, src.posed_rgb)
    assert (tmp_path / "preview.png").is_file()


def test_read_narrowed_layers_and_maps(tmp_path):
    write_renders(tmp_path, _random_renders(np.random.default_rng(1), _views(0)))
    got = read_renders(tmp_path, layers=("body",), maps=("sem",))
    assert list(got.layers) == ["body"]
    assert got.layers["body"].sem is not None and got.layers["body"].rgb is None


def test_view_index_and_cameras(tmp_path):
    views = _views()
    write_renders(tmp_path, _random_renders(np.random.default_rng(2), views))
    got = read_renders(tmp_path, maps=("sem",))
    gen = got.view_index("gen")
    assert [round(got.views[i]["azimuth"]) % 360 for i in gen] == [round(a) % 360 for a in GENERATION_AZIMUTHS]
    assert got.view_index("random") == [8, 9]
    cams = got.cameras(gen)
    assert isinstance(cams, Cameras) and len(cams) == 6
    ref = evaluation_views(center=(0, 0.8, 0), half_size=0.9)
    np.testing.assert_allclose(got.cameras(got.view_index("eval")).world_to_cam.numpy(), ref.world_to_cam.numpy(),
                               atol=1e-6)
    assert got.view_index(names=[views[3]["name"]]) == [3]
    with pytest.raises(KeyError):
        got.view_index(names=["nope"])


def test_depth_encoding_limits():
    from stdgen.io.dataset import decode_depth, encode_depth

    d = np.array([0.0, 1e-4, 1.0, 16.38375, 20.0], np.float32)
    back = decode_depth(encode_depth(d))
    np.testing.assert_allclose(back[:4], d[:4], atol=0.5 / DEPTH_SCALE)
    assert back[4] == pytest.approx(65535 / DEPTH_SCALE)  # saturates, never wraps


@pytest.mark.parametrize("damage", ["no_meta", "bad_json", "other_format", "other_version", "missing_map",
                                    "bad_width"])
def test_malformed_folders_raise_input_error(tmp_path, damage):
    write_renders(tmp_path, _random_renders(np.random.default_rng(3), _views(0)))
    meta_path = tmp_path / "meta.json"
    meta = json.loads(meta_path.read_text())
    if damage == "no_meta":
        meta_path.unlink()
    elif damage == "bad_json":
        meta_path.write_text("{not json")
    elif damage == "other_format":
        meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    elif damage == "other_version":
        meta_path.write_text(json.dumps({**meta, "version": 999}))
    elif damage == "missing_map":
        (tmp_path / "body_sem.png").unlink()
    elif damage == "bad_width":
        from stdgen.utils.io import save_png

        save_png(tmp_path / "body_sem.png", np.zeros((12, 12 * 8 + 5), np.uint8))
    with pytest.raises(InputError, match=str(tmp_path.name)):
        read_renders(tmp_path)


def test_writer_rejects_unknown_layer(tmp_path):
    r = _random_renders(np.random.default_rng(4), _views(0))
    r.layers["hair_only"] = r.layers["full"]
    with pytest.raises(ValueError, match="hair_only"):
        write_renders(tmp_path, r)


def test_manifest_round_trip_and_listing(tmp_path):
    assert read_manifest(tmp_path)["characters"] == []
    for seed in (3, 900001):
        folder = tmp_path / character_folder_name(seed)
        folder.mkdir()
        r = _random_renders(np.random.default_rng(seed), _views(0), posed=0)
        r.meta.update(seed=seed, split="test" if seed >= 900000 else "train")
        write_renders(folder, r, preview=False)
    (tmp_path / ".tmp-0000009.abc").mkdir()  # an interrupted write: not a character
    (tmp_path / "empty").mkdir()  # no meta.json: not a character
    folders = list_character_folders(tmp_path)
    assert [p.name for p in folders] == ["0000003", "0900001"]
    entries = [manifest_entry(p) for p in folders]
    assert entries[1] == {"id": "0900001", "seed": 900001, "split": "test", "source": "test"}
    write_manifest(tmp_path, entries[::-1], render_config={"resolution": 12})
    m = read_manifest(tmp_path)
    assert [e["id"] for e in m["characters"]] == ["0000003", "0900001"]
    assert m["count"] == 2 and m["render_config"] == {"resolution": 12}
    (tmp_path / "manifest.json").write_text('{"format": "nope"}')
    with pytest.raises(InputError, match="manifest"):
        read_manifest(tmp_path)
    with pytest.raises(InputError, match="no such directory"):
        list_character_folders(tmp_path / "missing")
    assert read_meta(folders[0])["maps"] == list(MAPS)
