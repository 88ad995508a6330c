"""``stdgen layers-demo`` and the demo functions, on the small stand-in character."""

import numpy as np
import pytest
from geometry_standin import standin_character

from stdgen.cli import main
from stdgen.commands.layers_demo import layers_demo, write_demo
from stdgen.io.glb import read_glb
from stdgen.structures.semantics import Part
from stdgen.utils.io import load_png


@pytest.fixture(scope="module")
def character():
    return standin_character(step=0.02)


def test_demo_writes_meshes_pictures_and_measures(character, tmp_path):
    result = layers_demo(character, resolution=40, count=10_000)
    for p in Part:
        assert not result.meshes.parts[p].is_empty
        assert result.meshes.parts[p].colors is not None  # transferred from the true parts
    assert result.metrics[Part.BODY]["fscore@0.01"] > 0.9
    # The extracted sweater's inner wall lies on the body, 2 cm inside the true one (the air gap is
    # filled), so about half its surface is off by more than 1 % of the height: F stays near 0.5.
    assert result.metrics[Part.CLOTHES]["fscore@0.01"] > 0.3
    assert result.metrics[Part.CLOTHES]["recall@0.01"] > 0.3
    paths = write_demo(result, character, tmp_path / "out", image_size=64)
    names = sorted(p.name for p in paths)
    assert names == sorted(["body.glb", "clothes.glb", "hair.glb", "character.glb", "layers.png", "section.png"])
    scene = read_glb(tmp_path / "out" / "character.glb")
    assert set(scene) == {"body", "clothes", "hair"}
    for p in Part:
        assert scene[p.key].num_faces == result.meshes.parts[p].num_faces
        assert read_glb(tmp_path / "out" / f"{p.key}.glb")[p.key].num_faces == result.meshes.parts[p].num_faces
    layers = load_png(tmp_path / "out" / "layers.png")
    section = load_png(tmp_path / "out" / "section.png")
    assert layers.ndim == 3 and layers.shape[1] > 8 * 64
    # The vertical section shows clothes colour (the hollow sweater) and body colour.
    assert section.shape[0] >= 100 and (np.abs(section[..., 2].astype(int) - section[..., 0]) > 60).any()


def test_cli_runs_and_rejects_bad_arguments(monkeypatch, tmp_path, capsys, character):
    import stdgen.data.procedural as procedural

    monkeypatch.setattr(procedural, "make_character", lambda seed: character)
    args = ["layers-demo", "--seed", "5", "--res", "24", "--image-size", "48", "--method", "marching"]
    assert main([*args, "-o", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "clothes" in out and "F@0.01" in out and (tmp_path / "d" / "section.png").exists()
    assert main(["layers-demo", "--res", "4", "-o", str(tmp_path / "e")]) == 2
    assert main(["layers-demo", "--res", "32", "32", "-o", str(tmp_path / "e")]) == 2
    assert "--res" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
