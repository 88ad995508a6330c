"""`stdgen reconstruct` end to end with a tiny random S-LRM: a dataset character folder in, a prediction
folder out (GLBs with the part nodes, preview, report), and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stdgen.cli import main
from stdgen.models.slrm import SLRM, SLRMConfig
from stdgen.structures.character import Character


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    SLRM(SLRMConfig.tiny()).save_pretrained(root / "slrm")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from stdgen.data.render_dataset import RenderConfig, procedural_character, render_to_folder

    root = tmp_path_factory.mktemp("ds")
    cfg = RenderConfig(resolution=64, random_views=0, face_views=False, top_bottom=False, posed_views=0, device="cpu")
    render_to_folder(procedural_character(900000), root / "0900000", cfg, seed=900000, source="procedural")
    return root


def test_reconstruct_a_character_folder(weights, dataset, tmp_path, capsys):
    out = tmp_path / "pred" / "0900000"
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(out), "--weights", str(weights),
                 "--grid", "32", "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["grid"] == 32 and set(report["seconds"]) >= {"forward", "field", "extract", "write"}
    assert (out / "character.glb").is_file() and (out / "preview.png").is_file()
    from stdgen.io.glb import read_glb

    meshes = read_glb(out / "character.glb")
    for name, n in report["faces"].items():
        assert (len(meshes[name].faces) if name in meshes else 0) == n


def test_reconstruct_errors(weights, dataset, tmp_path, capsys, no_bundled_weights):
    assert main(["reconstruct", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--weights", str(weights)]) == 2
    assert "not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reconstruct", str(empty), "-o", str(tmp_path / "o"), "--weights", str(weights)]) == 2
    assert "neither a character folder" in capsys.readouterr().err
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(tmp_path / "o"), "--weights",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "slrm" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(tmp_path / "o"), "--device", "banana"]) == 2
    assert "--device" in capsys.readouterr().err


def test_reconstruct_never_clobbers(weights, dataset, tmp_path, capsys):
    """A folder it did not make is refused; the input folder even with --overwrite; its own is replaced."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    args = ["--weights", str(weights), "--grid", "32", "--device", "cpu"]
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(mine), *args]) == 2
    assert (mine / "notes.txt").read_text() == "keep"
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(dataset / "0900000"), "--overwrite", *args]) == 2
    assert (dataset / "0900000" / "meta.json").is_file()
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(out), *args]) == 0
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(out), *args]) == 0


def test_reconstruct_refine_hands_the_parts_and_the_folder_views_to_refinement(weights, dataset, tmp_path, monkeypatch):
    """--refine: the reconstructed parts and the folder's six full-character views go to
    refine_and_texture (tested in tests/refine); its character is what gets written. Six pictures
    without normal maps are refused."""
    import stdgen.refine as refine
    from stdgen.io.glb import read_glb
    from stdgen.structures.mesh import Mesh

    seen = {}

    def fake(coarse, views, config=None, *, device="cpu", **kw):
        seen["parts"], seen["views"] = dict(coarse), views
        body = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
                    np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32), name="body")
        return Character(body=body)

    monkeypatch.setattr(refine, "refine_and_texture", fake)
    out = tmp_path / "pred"
    args = ["--weights", str(weights), "--grid", "32", "--device", "cpu"]
    assert main(["reconstruct", str(dataset / "0900000"), "-o", str(out), "--refine", *args]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["refined"] is True and "refine" in report["seconds"]
    assert seen["views"].images.shape[0] == 6 and seen["views"].normals.shape[-1] == 3
    assert len(read_glb(out / "character.glb")["body"].faces) == 4
    six = tmp_path / "six"
    six.mkdir()
    from PIL import Image

    for name in ("-90", "-45", "0", "45", "90", "180"):
        Image.new("RGB", (32, 32), "white").save(six / f"{name}.png")
    assert main(["reconstruct", str(six), "-o", str(tmp_path / "o6"), "--refine", *args]) == 2
