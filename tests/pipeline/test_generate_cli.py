"""``stdgen generate``: the batch, the files, and every error the issue lists (one line, non-zero exit,
nothing half-written), on tiny random weights."""

from __future__ import annotations

import json
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from stdgen.cli import main

from .tiny_pipeline import figure_picture, save_tiny_weights, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(autouse=True)
def tiny_settings(monkeypatch):
    """The CLI's pipeline with the tiny test settings (the defaults are sized for the bundled models)."""
    import stdgen.pipeline.pipeline as pl

    monkeypatch.setattr(pl, "PipelineConfig", lambda: tiny_config())


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


def _one_error_line(capsys, status, code=2):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == code, err
    assert len(err) == 1 and err[0].startswith("stdgen: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_batch_folder_writes_one_folder_per_picture(weights, tmp_path, capsys):
    pics = tmp_path / "pics"
    pics.mkdir()
    _save(pics / "alpha.png", figure_picture(seed=1))
    _save(pics / "white.jpg", figure_picture(alpha=False, seed=2))  # no alpha: the segmenter finds the figure
    (pics / "notes.txt").write_text("not a picture, not picked up")
    out = tmp_path / "out"
    status = main(["generate", str(pics), "-o", str(out), "--weights", str(weights), "--pose", "apose", "--quiet",
                   "--no-refine", "--seed", "2"])
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "white"]
    for name in ("alpha", "white"):
        files = {p.name for p in (out / name).iterdir()}
        assert {"character.glb", "body.glb", "canonical.png", "views.png", "turntable.gif", "preview.png",
                "report.json"} <= files
        report = json.loads((out / name / "report.json").read_text())
        assert report["seed"] == 2 and report["settings"]["refine"] is False
    printed = capsys.readouterr().out
    assert printed.count("wrote ") == 2
    # The folders are prediction folders that `stdgen eval PRED --images PICTURES` reads.
    alpha_only = tmp_path / "alpha_only"
    alpha_only.mkdir()
    (alpha_only / "alpha.png").write_bytes((pics / "alpha.png").read_bytes())
    assert main(["eval", str(out), "--images", str(alpha_only), "-o", str(tmp_path / "report"), "--quiet"]) == 0
    metrics = (tmp_path / "report" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("character,silhouette_iou") and metrics[1].startswith("alpha,")
    # A second run may replace its own folders without --overwrite.
    assert main(["generate", str(pics / "alpha.png"), "-o", str(out), "--weights", str(weights), "--pose", "apose",
                 "--quiet", "--no-refine", "--format", "obj"]) == 0
    assert (out / "alpha" / "character.obj").is_file() and not (out / "alpha" / "character.glb").exists()


def test_mask_file_is_used(weights, tmp_path, capsys):
    pic = figure_picture(alpha=False)
    mask = np.zeros(pic.shape[:2], np.uint8)
    mask[10:80, 20:44] = 255  # a box: the framing follows the mask, not the picture
    _save(tmp_path / "p.png", pic)
    _save(tmp_path / "m.png", mask)
    assert main(["generate", str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), "--weights", str(weights),
                 "--mask", str(tmp_path / "m.png"), "--pose", "apose", "--quiet", "--no-refine"]) == 0
    canonical = np.asarray(Image.open(tmp_path / "o" / "p" / "canonical.png"))
    rows = np.flatnonzero((canonical[..., 3] > 127).any(1))
    cols = np.flatnonzero((canonical[..., 3] > 127).any(0))
    # The 70 x 24 box, framed to 91 % of 64 px: 58 x 20 px.
    assert abs(len(rows) - 58) <= 1 and abs(len(cols) - 20) <= 1


def _bomb(path):
    """A valid small PNG whose header claims 30000 x 30000 pixels (a decompression bomb's signature)."""
    _save(path, np.zeros((4, 4, 3), np.uint8))
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", 30000, 30000)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def _cases(tmp):
    transparent = np.zeros((64, 64, 4), np.uint8)
    flat = np.full((64, 64, 3), 180, np.uint8)
    good = _save(tmp / "good.png", figure_picture())
    truncated = tmp / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:100])
    (tmp / "text.png").write_text("hello, not a picture")
    (tmp / "empty_dir").mkdir()
    return {
        "missing": ([str(tmp / "nope.png")], "nope.png: no such file or folder"),
        "not an image": ([str(tmp / "text.png")], "text.png: not a picture Pillow can read"),
        "truncated": ([str(truncated)], "truncated.png: unreadable picture"),
        "empty folder": ([str(tmp / "empty_dir")], "a folder with no pictures"),
        "transparent": ([str(_save(tmp / "clear.png", transparent))], "fully transparent"),
        "one colour": ([str(_save(tmp / "flat.png", flat))], "every pixel has one colour"),
        "tiny": ([str(_save(tmp / "tiny.png", figure_picture(12, 8)))], "8x12 pixels is too small"),
        "bomb": ([str(_bomb(tmp / "bomb.png"))], "bomb.png: (refused, too many pixels|30000x30000 pixels is more)"),
        "same stem": ([str(good), str(_save(tmp / "good.jpg", figure_picture(alpha=False)))], "two pictures named"),
        "bad steps": ([str(good), "--steps", "0"], "--steps must be between 1 and 1000"),
        "bad seed": ([str(good), "--seed", "-3"], "--seed must be 0 or more"),
        "bad device": ([str(good), "--device", "tpu"], "--device 'tpu': not a device"),
        "mask missing": ([str(good), "--mask", str(tmp / "nomask.png")], "--mask .*nomask.png: no such file"),
        "mask size": ([str(good), "--mask", str(_save(tmp / "m.png", np.zeros((10, 10), np.uint8)))],
                      "10x10 pixels, but the picture is 64x96"),
        "mask batch": ([str(good), str(_save(tmp / "b.png", figure_picture())), "--mask", str(tmp / "m.png")],
                       "--mask goes with one picture, got 2"),
        "weights missing": ([str(good), "--weights", str(tmp / "noweights")], "--weights .*noweights: no such folder"),
    }


CASES = ["missing", "not an image", "truncated", "empty folder", "transparent", "one colour", "tiny", "bomb",
         "same stem", "bad steps", "bad seed", "bad device", "mask missing", "mask size", "mask batch",
         "weights missing"]


@pytest.mark.parametrize("case", CASES)
def test_input_errors_are_one_line_and_write_nothing(tmp_path, capsys, case, monkeypatch):
    import stdgen.pipeline.pipeline as pl

    # Every one of these is caught before a model is loaded.
    monkeypatch.setattr(pl.StdGENPipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))
    args, message = _cases(tmp_path)[case]
    out = tmp_path / "out"
    line = _one_error_line(capsys, main(["generate", *args, "-o", str(out), "--quiet"]))
    assert re.search(message, line), line
    assert not out.exists()


def test_weights_folder_incomplete_or_corrupt(weights, tmp_path, capsys):
    import shutil

    good = _save(tmp_path / "good.png", figure_picture())
    partial = tmp_path / "partial"
    shutil.copytree(weights, partial)
    shutil.rmtree(partial / "canon")
    line = _one_error_line(capsys, main(["generate", str(good), "-o", str(tmp_path / "o1"), "--weights", str(partial),
                                         "--quiet"]))
    assert "no canon/ in it" in line and not (tmp_path / "o1").exists()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(weights, corrupt)
    (corrupt / "slrm" / "model.safetensors").write_bytes(b"\x00" * 64)
    line = _one_error_line(capsys, main(["generate", str(good), "-o", str(tmp_path / "o2"), "--weights", str(corrupt),
                                         "--quiet"]))
    assert "slrm" in line and "safetensors" in line and not (tmp_path / "o2").exists()
    (corrupt / "slrm" / "config.json").write_text("{not json")
    line = _one_error_line(capsys, main(["generate", str(good), "-o", str(tmp_path / "o3"), "--weights", str(corrupt),
                                         "--quiet"]))
    assert "config.json" in line and not (tmp_path / "o3").exists()


@pytest.mark.parametrize("stage", ["multiview", "refine"])
@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_is_one_line_with_the_smaller_setting(weights, tmp_path, capsys, monkeypatch, stage, error):
    import stdgen.pipeline.pipeline as pl

    def boom(*a, **k):
        raise error("out of memory (stand-in)")

    monkeypatch.setattr(pl.StdGENPipeline, {"multiview": "generate_views", "refine": "refine"}[stage], boom)
    good = _save(tmp_path / "good.png", figure_picture())
    out = tmp_path / "out"
    line = _one_error_line(capsys, main(["generate", str(good), "-o", str(out), "--weights", str(weights), "--quiet",
                                         "--pose", "apose"]))
    assert f"out of memory in the {stage} stage" in line
    assert ("--no-refine" if stage == "refine" else "--steps") in line
    assert not out.exists() or not any(out.iterdir())


def test_interrupted_or_failed_batch_keeps_finished_folders_only(weights, tmp_path, capsys, monkeypatch):
    import stdgen.pipeline.outputs as po

    pics = tmp_path / "pics"
    pics.mkdir()
    _save(pics / "a.png", figure_picture(seed=1))
    _save(pics / "b.png", figure_picture(seed=2))
    real = po._gif_bytes
    calls = []

    def second_fails(frames, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(frames, *a, **k)

    monkeypatch.setattr(po, "_gif_bytes", second_fails)
    out = tmp_path / "out"
    status = main(["generate", str(pics), "-o", str(out), "--weights", str(weights), "--quiet", "--pose", "apose",
                   "--no-refine"])
    assert status == 130
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # b: nothing, not even a temporary folder
    assert (out / "a" / "report.json").is_file()


def test_foreign_output_folder_is_refused_untouched(weights, tmp_path, capsys):
    good = _save(tmp_path / "good.png", figure_picture())
    taken = tmp_path / "out" / "good"
    taken.mkdir(parents=True)
    (taken / "thesis.tex").write_text("precious")
    line = _one_error_line(capsys, main(["generate", str(good), "-o", str(tmp_path / "out"), "--weights",
                                         str(weights), "--quiet"]))
    assert "did not make" in line and "--overwrite" in line
    assert sorted(p.name for p in taken.iterdir()) == ["thesis.tex"]


def test_an_empty_picture_found_by_the_pipeline_is_one_line(weights, tmp_path, capsys):
    """A picture with some transparency and no figure: refused at preprocessing, nothing written."""
    pic = np.zeros((64, 64, 4), np.uint8)
    pic[..., :3] = 90
    pic[:2, :2, 3] = 255  # 4 opaque pixels: not fully transparent, but no figure
    path = _save(tmp_path / "speck.png", pic)
    out = tmp_path / "out"
    line = _one_error_line(capsys, main(["generate", str(path), "-o", str(out), "--weights", str(weights), "--quiet"]))
    assert "no figure" in line or "only 4 figure pixels" in line
    assert not out.exists() or not any(out.iterdir())
