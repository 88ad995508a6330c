"""``stdgen refine``: the exact outputs on a small stand-in folder, and user errors."""

import json

import pytest

from stdgen.cli import main
from stdgen.structures.semantics import PARTS

from .conftest import write_standin_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory, standin):
    true, coarse = standin
    path = tmp_path_factory.mktemp("refine") / "char"
    path.mkdir()
    write_standin_folder(path, true, resolution=128)
    mesh_dir = path.parent / "coarse"
    mesh_dir.mkdir()
    for p in PARTS:
        coarse[p].to_trimesh().export(mesh_dir / f"{p.key}.ply")
    return path, mesh_dir


def test_refine_writes_glb_picture_and_report(folder, tmp_path, capsys):
    path, mesh_dir = folder
    out = tmp_path / "out"
    status = main(["refine", str(path), "-o", str(out), "--coarse", str(mesh_dir), "--steps", "6",
                   "--fine-steps", "0", "--resolution", "64", "--texture-size", "256", "--metric-points", "20000",
                   "--quiet"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [".stdgen-output.json", "before_after.png", "character.glb",
                                                     "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert set(report["parts"]) == {"body", "clothes", "hair"}
    for entry in report["parts"].values():
        for key in ("chamfer_before", "chamfer_after", "fscore_before", "fscore_after", "penetrating_vertices"):
            assert key in entry
        assert entry["chamfer_before"] > 0 and entry["chamfer_after"] > 0
    assert set(report["seconds"]) >= {"body", "clothes", "hair", "texture", "total"}
    assert report["device"] == "cpu"
    from stdgen.io.glb import read_glb

    nodes = read_glb(out / "character.glb")
    assert set(nodes) == {"body", "clothes", "hair"}
    for m in nodes.values():
        assert m.texture is not None and m.num_faces > 100
    from stdgen.utils.io import load_png

    pic = load_png(out / "before_after.png")
    assert pic.shape[0] > 3 * 100 and pic.ndim == 3
    assert "wrote" in capsys.readouterr().out


def test_refine_user_errors_are_one_line(tmp_path, capsys):
    assert main(["refine", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stdgen: error:") and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["refine", str(empty), "-o", str(tmp_path / "o")]) == 2
    assert "meta.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_refine_without_glb_needs_coarse(folder, tmp_path, capsys):
    path, _ = folder
    import shutil

    copy = tmp_path / "noglb"
    shutil.copytree(path, copy)
    (copy / "character.glb").unlink()
    assert main(["refine", str(copy), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--coarse" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
