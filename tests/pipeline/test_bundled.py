"""The bundled weights end to end on an example picture shipped with the project (slow: minutes on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stdgen.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_an_example_with_the_bundled_weights(tmp_path, capsys):
    picture = ROOT / "examples" / "apose_0900000.png"
    out = tmp_path / "out"
    assert main(["generate", str(picture), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    folder = out / "apose_0900000"
    report = json.loads((folder / "report.json").read_text())
    assert report["pose"] == "apose"  # the A-pose check recognises the A-pose example
    assert all(report["faces"][p] > 0 for p in ("body", "clothes", "hair"))
    # The front render keeps the picture's outline (rough early weights: about 0.86 measured).
    assert report["front_silhouette_iou"] >= 0.75
    assert report["seconds"]["total"] < 600
    for name in ("character.glb", "body.glb", "clothes.glb", "hair.glb", "canonical.png", "views.png",
                 "turntable.gif", "preview.png"):
        assert (folder / name).stat().st_size > 0, name
