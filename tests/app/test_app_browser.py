"""The web app in a real browser: Debian's headless Chromium, driven by playwright-core
(``tests/js/app_check.mjs``), against the app served on 127.0.0.1 with the stand-in pipeline.

Like the export judges (``tests/export/test_judges.py``): ``.ci/run`` installs Node.js, Chromium
and ``tests/js``'s packages and sets ``STDGEN_REQUIRE_JUDGES=1``, so in CI a missing tool fails
these tests; elsewhere they are skipped, loudly. ``STDGEN_APP_SHOTS=DIR`` keeps the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"
CHROMIUM = os.environ.get("STDGEN_CHROMIUM", "/usr/bin/chromium")


def _missing(what: str, how: str):
    message = f"BROWSER NOT INSTALLED: {what} ({how}); the web app's browser tests did NOT run"
    if os.environ.get("STDGEN_REQUIRE_JUDGES") == "1":
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> list[str]:
    """The command that runs ``app_check.mjs``."""
    node = shutil.which("node")
    if node is None:
        _missing("Node.js", "apt-get install nodejs")
    if not (JS / "node_modules" / "playwright-core").is_dir():
        _missing("playwright-core in tests/js", "npm ci --prefix tests/js")
    if not Path(CHROMIUM).is_file():
        _missing("Chromium", "apt-get install chromium")
    return [node, str(JS / "app_check.mjs")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, pictures, make_pipeline, save_output):
    """The app (stand-in pipeline, 20 MB upload limit) on a free port of 127.0.0.1: its URL and pipeline."""
    from stdgen.app import build_app, serve

    pipe = make_pipeline(delay=0.3)
    demo = build_app(pipe, save_output=save_output, max_upload_mb=20,
                     results_dir=tmp_path_factory.mktemp("runs"), examples=[pictures["good"]])
    url = serve(demo, host="127.0.0.1", port=_free_port(), block=False, quiet=True)
    yield url, pipe
    demo.close(verbose=False)


def _check(browser, url, out: Path, *args) -> dict:
    env = {**os.environ, "STDGEN_CHROMIUM": CHROMIUM}
    r = subprocess.run([*browser, url, str(out), *map(str, args)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _glb_nodes(path) -> list[str]:
    g = pygltflib.GLTF2().load(str(path))
    return sorted(n.name for n in g.nodes if n.mesh is not None)


def test_upload_generate_and_download_the_glb(browser, served, pictures, tmp_path):
    url, pipe = served
    result = _check(browser, url, tmp_path, "--upload", pictures["good"], "--generate", "--screenshot", "app.png")
    assert result["failed"] is None, result["failed"]
    assert result["blocked"] == [] and result["pageErrors"] == []
    [run] = result["runs"]
    # The stages' pictures came before the end: the A-pose picture after the canonicalise stage
    # (the stand-in takes 0.3 s a stage), the views after multiview, the files after all six.
    assert run["times"]["canonical"] < run["times"]["views"] < run["times"]["downloads"] - 0.5
    assert run["views"]["width"] == 3 * run["views"]["height"]  # six views by two rows
    assert run["status"].startswith("Finished in")
    assert [line.split("\t")[0] for line in run["seconds"].splitlines()[1:7]] == [
        "preprocess", "canonicalize", "multiview", "reconstruct", "refine", "export"]
    # The downloads are the run's GLBs: the whole character with three nodes, one node per part.
    for name, nodes in [("whole", ["body", "clothes", "hair"]), ("body", ["body"]), ("clothes", ["clothes"]),
                        ("hair", ["hair"])]:
        path = Path(run["files"][name])
        assert path.name == ("character.glb" if name == "whole" else f"{name}.glb")
        assert _glb_nodes(path) == nodes, name
    assert "hair.glb" in run["viewerAfterPart"]
    assert pipe.calls[-1] == dict(pose="auto", seed=0, steps=None, refine=True, shape=(96, 96, 4))
    shot = tmp_path / "app.png"
    if os.environ.get("STDGEN_APP_SHOTS"):
        shutil.copy(shot, Path(os.environ["STDGEN_APP_SHOTS"]) / "app.png")
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] == 1280 and img.std() > 10  # a page with something drawn on it


def test_bad_uploads_show_clean_errors_and_the_app_keeps_working(browser, served, pictures, tmp_path):
    url, pipe = served
    n = len(pipe.calls)
    result = _check(browser, url, tmp_path, "--upload", pictures["good"], "--bad", pictures["large"],
                    "--bad", pictures["text"], "--bad", pictures["transparent"], "--example", 0, "--generate")
    assert result["failed"] is None, result["failed"]
    errors = {e["file"]: e for e in result["errors"]}
    # The oversized file is refused by the server before it is stored (gradio's limit, 20 MB).
    assert errors["large.png"]["message"] == 'File(s) exceed the maximum allowed size of 20.0 Mb: "large.png"'
    assert errors["notes.png"]["message"] == "notes.png: not a picture Pillow can read"
    assert errors["transparent.png"]["message"] == ("transparent.png: the picture is fully transparent; there is "
                                                    "no figure in it")
    # No refused file is shown as the picture to generate from.
    assert all(e["previewEmpty"] for e in result["errors"]), result["errors"]
    # None of them reached the pipeline; the example picture afterwards gives a character.
    assert len(pipe.calls) == n + 1
    [run] = result["runs"]
    assert _glb_nodes(run["files"]["whole"]) == ["body", "clothes", "hair"]
