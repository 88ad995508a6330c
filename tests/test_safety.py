"""Issue 12: never lose a user's data. One test (or a few) per defect D1-D18 of the issue.

Every command is run as a user would (``stdgen.cli.main``, or a subprocess where signals are
involved) against a small stand-in dataset (64 px, eight views). Each case checks the exit status,
that the error is one line without a traceback, and that nothing of the user's was touched.
Memory stays bounded: the "bombs" are hand-made PNG headers that announce huge sizes (only the
header is ever read), never pictures decoded at that size.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval.helpers import standin_character  # tests/eval/helpers.py: the shared stand-in character
from stdgen.cli import main
from stdgen.errors import InputError
from stdgen.io.dataset import read_renders

SRC = str(Path(__file__).resolve().parents[1] / "src")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# -- helpers -----------------------------------------------------------------------------------------
def render_config():
    from stdgen.data.render_dataset import RenderConfig

    return RenderConfig(resolution=64, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                        device="cpu")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A dataset made by ``data render``'s code (stand-in character, seed 0 -> folder 0000000)."""
    from stdgen.data.render_dataset import render_dataset_dir

    root = tmp_path_factory.mktemp("safety") / "ds"
    render_dataset_dir(root, [0], render_config(), make=standin_character, progress=False)
    return root


@pytest.fixture()
def ds(tmp_path, dataset) -> Path:
    """A private copy of the dataset (the test may damage it)."""
    shutil.copytree(dataset, tmp_path / "ds")
    return tmp_path / "ds"


@pytest.fixture()
def pred(tmp_path, dataset) -> Path:
    """Predictions: the true character.glb copied."""
    (tmp_path / "pred" / "0000000").mkdir(parents=True)
    shutil.copy(dataset / "0000000" / "character.glb", tmp_path / "pred" / "0000000" / "character.glb")
    return tmp_path / "pred"


def run(capsys, *args) -> tuple[int, str]:
    """``stdgen ARGS`` in this process: (exit status, stderr)."""
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def one_line_error(err: str) -> str:
    """The error line; fails if there is a traceback or more than one ``stdgen:`` line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("stdgen:")]
    assert len(lines) == 1 and lines[0].startswith("stdgen: error: "), err
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces ``width`` x ``height`` grey pixels, with almost no data: a
    decompression bomb as far as any reader that trusts the header is concerned."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def stdgen_process(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "stdgen", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def group_members(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- D1 refine -o ------------------------------------------------------------------------------------
def test_d01_refine_never_replaces_its_input_or_foreign_files(capsys, ds, tmp_path):
    before = snapshot(ds)
    for out in (ds, ds / "0000000"):
        for extra in ((), ("--overwrite",)):
            status, err = run(capsys, "refine", ds / "0000000", "-o", out, "--steps", 2, "--fine-steps", 0, *extra)
            assert status == 2 and "input of this run" in one_line_error(err)
    assert snapshot(ds) == before
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    for out, what in ((tmp_path / "keep.txt", "is a file"), (tmp_path / "photos", "did not make (holiday.jpg)")):
        status, err = run(capsys, "refine", ds / "0000000", "-o", out, "--steps", 2)
        assert status == 2 and what in one_line_error(err)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"jpeg"


# -- D2 eval -o = the pictures folder --------------------------------------------------------------
def test_d02_eval_never_replaces_its_inputs(capsys, ds, pred, tmp_path):
    p = tmp_path / "p"
    p.mkdir()
    Image.new("RGBA", (64, 64)).save(p / "0000000.png")
    shutil.copy(p / "0000000.png", p / "holiday.png")
    before = snapshot(tmp_path)
    for args in (("--images", p, "-o", p), ("--images", p, "-o", pred), (ds, "-o", ds), (ds, "-o", pred),
                 ("--images", p, "-o", p, "--overwrite"), ("--images", p, "-o", tmp_path)):
        status, err = run(capsys, "eval", pred, *args)
        assert status == 2 and "input of this run" in one_line_error(err)
    assert snapshot(tmp_path) == before
    # A folder of PNGs that is not a report is not a report.
    (tmp_path / "pics").mkdir()
    shutil.copy(p / "holiday.png", tmp_path / "pics" / "holiday.png")
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "pics")
    assert status == 2 and "did not make (holiday.png)" in one_line_error(err)


# -- D3 layers-demo -o FILE ------------------------------------------------------------------------
def test_d03_layers_demo_keeps_an_existing_file(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("hi\n")
    status, err = run(capsys, "layers-demo", "--res", 16, "--image-size", 32, "-o", tmp_path / "keep.txt")
    assert status == 2 and "exists and is a file" in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # and no hidden .tmp-old-keep.txt
    assert (tmp_path / "keep.txt").read_text() == "hi\n"


# -- D4 same-named subfolders that are not the command's --------------------------------------------
def test_d04_data_render_keeps_a_foreign_character_folder(capsys, tmp_path):
    from stdgen.data.render_dataset import render_dataset_dir

    out = tmp_path / "o"
    (out / "0000000").mkdir(parents=True)
    (out / "0000000" / "mydata.txt").write_text("mine")
    status, err = run(capsys, "data", "render", "--count", 1, "--resolution", 64, "-o", out, "--quiet")
    assert status == 2 and "did not make (0000000)" in one_line_error(err)
    # Inside a dataset this command made, a foreign folder of a character's name is refused too.
    ds2 = tmp_path / "ds2"
    render_dataset_dir(ds2, [], render_config(), make=standin_character, progress=False)
    (ds2 / "0000000").mkdir()
    (ds2 / "0000000" / "mydata.txt").write_text("mine")
    status, err = run(capsys, "data", "render", "--count", 1, "--resolution", 64, "-o", ds2, "--quiet")
    assert status == 2 and "0000000: exists and holds files stdgen did not make (mydata.txt)" in one_line_error(err)
    assert (ds2 / "0000000" / "mydata.txt").read_text() == "mine"
    assert (out / "0000000" / "mydata.txt").read_text() == "mine"


def test_d04_data_sample_and_import_vrm_keep_foreign_folders(capsys, tmp_path):
    from stdgen.io.outputs import mark_output_dir

    for command, sub, args in (("sample", "0000", ("--count", 1, "--resolution", 16, "--quiet")),
                               ("import-vrm", "vrm-debug_robot", (FIXTURES / "debug_robot.vrm", "--resolution", 64,
                                                                  "--quiet"))):
        for marked in (False, True):
            out = tmp_path / f"{command}-{marked}"
            (out / sub).mkdir(parents=True)
            (out / sub / "mydata.txt").write_text("mine")
            if marked:  # a folder the command made before, holding a foreign subfolder
                mark_output_dir(out, f"data {command}")
            status, err = run(capsys, "data", command, *args, "-o", out)
            assert status == 2 and "did not make" in one_line_error(err)
            assert (out / sub / "mydata.txt").read_text() == "mine"


# -- D5 eval --images: work resolution capped, absurd sizes refused ----------------------------------
def test_d05_pictures_are_capped_and_absurd_sizes_refused(capsys, pred, tmp_path):
    from stdgen.eval.protocol import load_picture
    from stdgen.io.images import MAX_WORK_SIDE

    q = tmp_path / "q"
    q.mkdir()
    Image.new("RGBA", (9000, 1), (255, 0, 0, 255)).save(q / "wide.png")
    rgb, mask = load_picture(q / "wide.png")
    assert rgb.shape == (MAX_WORK_SIDE, MAX_WORK_SIDE, 3) and mask.shape == (MAX_WORK_SIDE, MAX_WORK_SIDE)
    assert mask.sum() == pytest.approx(MAX_WORK_SIDE * 1, rel=0.01)  # one row of the padded square
    png_header(q / "0000000.png", 10000, 10000)  # the 12 KB palette picture, as a header
    status, err = run(capsys, "eval", pred, "--images", q, "-o", tmp_path / "r5")
    assert status == 2 and "10000x10000 pixels is more than" in one_line_error(err)
    assert not (tmp_path / "r5").exists()


# -- D6 decompression bombs everywhere ----------------------------------------------------------------
def test_d06_decompression_bombs_are_one_line_errors(capsys, ds, pred, tmp_path):
    png_header(ds / "0000000" / "full_rgb.png", 30000, 30000)
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r6")
    assert status == 2 and "full_rgb.png" in one_line_error(err)
    status, err = run(capsys, "refine", ds / "0000000", "-o", tmp_path / "o6", "--steps", 2)
    assert status == 2 and "full_rgb.png" in one_line_error(err)
    p = tmp_path / "p"
    p.mkdir()
    png_header(p / "0000000.png", 30000, 30000)
    status, err = run(capsys, "eval", pred, "--images", p, "-o", tmp_path / "r6b")
    assert status == 2 and "0000000.png: refused, too many pixels" in one_line_error(err)
    Image.new("RGB", (64, 64)).save(p / "0000000.png")
    m = tmp_path / "m"
    m.mkdir()
    png_header(m / "0000000.png", 30000, 30000)
    status, err = run(capsys, "eval", pred, "--images", p, "--masks", m, "-o", tmp_path / "r6c")
    assert status == 2 and "refused, too many pixels" in one_line_error(err)


def test_d06_d09_generated_view_sheets(tmp_path):
    from stdgen.eval.protocol import _load_sprite

    rng = np.random.default_rng(0)
    sheet = rng.integers(0, 256, (16, 96, 3), dtype=np.uint8)
    Image.fromarray(sheet).save(tmp_path / "rgb.png")
    want = _load_sprite(tmp_path / "rgb.png", 6)
    # D9: a palette sheet is read as colours, not as raw palette indices.
    Image.fromarray(sheet).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    pal = _load_sprite(tmp_path / "p.png", 6)
    assert pal.shape == want.shape == (6, 16, 16, 3)
    assert np.abs(pal.astype(int) - want).mean() < 12  # the adaptive palette's rounding, not indices
    # Grey + alpha (a ValueError traceback before) and CMYK (read as RGBA before) are converted.
    Image.fromarray(np.stack([sheet[..., 0], sheet[..., 1]], -1), "LA").save(tmp_path / "la.png")
    la = _load_sprite(tmp_path / "la.png", 6)
    assert la.shape == (6, 16, 16, 4) and np.array_equal(la[..., 0], la[..., 2])
    Image.fromarray(sheet).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert _load_sprite(tmp_path / "c.jpg", 6).shape == (6, 16, 16, 3)
    png_header(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(InputError, match="bomb.png"):
        _load_sprite(tmp_path / "bomb.png", 6)


def test_d09_palette_mv_rgb_scores_like_rgb(capsys, ds, pred, tmp_path):
    full = read_renders(ds / "0000000", layers=("full",), maps=("rgb",))
    gen = full.view_index("gen")
    sheet = np.concatenate(list(full.layers["full"].rgb[gen]), axis=1)  # (64, 6 * 64, 4): the truth itself
    scores = {}
    for kind in ("RGBA", "P"):
        im = Image.fromarray(sheet)
        if kind == "P":
            im = im.convert("P", palette=Image.Palette.ADAPTIVE)  # drops the alpha: masks come from the truth
        im.save(pred / "0000000" / "mv_rgb.png")
        out = tmp_path / f"r9{kind}"
        status, err = run(capsys, "eval", pred, ds, "-o", out, "--no-geometry", "--no-volume", "--no-register")
        assert status == 0, err
        row = (out / "metrics.csv").read_text().splitlines()
        cols = dict(zip(row[0].split(","), row[1].split(",")))
        scores[kind] = float(cols["mv_ssim"])
    assert scores["RGBA"] > 0.95 and scores["P"] > 0.9  # an index image would score about 0


# -- D7 the character-folder reader checks the folder ------------------------------------------------
def _edit_meta(folder: Path, fn) -> None:
    p = folder / "meta.json"
    meta = json.loads(p.read_text())
    meta = fn(meta)
    p.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    (lambda m: [], "meta.json: not a JSON object"),
    (lambda m: {**m, "resolution": float("nan")}, "resolution nan is not a whole number"),
    (lambda m: {k: v for k, v in m.items() if k != "views"}, "views missing"),
    (lambda m: {**m, "views": None}, "views missing"),
    (lambda m: {**m, "views": [{"name": "x"}]}, "views[0] has no name or group"),
    (lambda m: {**m, "layers": "full"}, "layers 'full' is not a list"),
])
def test_d07_damaged_meta_json(ds, damage, message):
    _edit_meta(ds / "0000000", damage)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_renders(ds / "0000000")


def test_d07_sheets_checked_against_meta(ds):
    folder = ds / "0000000"
    rgba = np.asarray(Image.open(folder / "full_rgb.png"))
    Image.fromarray(rgba[..., 0]).save(folder / "full_rgb.png")  # grey: no mask
    with pytest.raises(InputError, match="full_rgb.png: stored as L pixels; a rgb sheet is RGBA"):
        read_renders(folder)
    # Grey + alpha (what a lossless PNG optimiser may write for a grey sheet) converts back exactly.
    Image.fromarray(np.stack([rgba[..., 0], rgba[..., 3]], -1), "LA").save(folder / "full_rgb.png")
    got = read_renders(folder, layers=("full",), maps=("rgb",)).layers["full"].rgb
    assert np.array_equal(got[..., 3], np.stack(np.split(rgba[..., 3], got.shape[0], axis=1)))
    Image.fromarray(rgba[:32]).save(folder / "full_rgb.png")  # another height
    with pytest.raises(InputError, match=r"full_rgb.png: 512x32 pixels, expected 512x64"):
        read_renders(folder)
    (folder / "full_normal.png").unlink()
    with pytest.raises(InputError, match="full_normal.png: missing"):
        read_renders(folder, layers=("full",), maps=("normal",))


def test_d07_truncated_posed_rgb(capsys, ds, pred, tmp_path):
    folder = ds / "0000000"
    _edit_meta(folder, lambda m: {**m, "posed": [{"name": "posed_0"}]})
    data = (folder / "full_rgb.png").read_bytes()
    (folder / "posed_rgb.png").write_bytes(data[:2000])
    with pytest.raises(InputError, match="posed_rgb.png"):
        read_renders(folder)  # the whole folder: a one-line error
    read_renders(folder, layers=("full",), maps=("rgb", "normal", "sem"))  # eval / refine: never read
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r7", "--no-geometry", "--no-volume")
    assert status == 0, err


def test_d07_commands_give_one_line(capsys, ds, pred, tmp_path):
    (ds / "0000000" / "meta.json").write_text("[]")
    status, err = run(capsys, "refine", ds / "0000000", "-o", tmp_path / "o7")
    assert status == 2 and "meta.json: not a JSON object" in one_line_error(err)
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r7")
    assert status == 2 and "meta.json: not a JSON object" in one_line_error(err)


# -- D8 corrupt ground truth that still decodes -------------------------------------------------------
def _nan_camera(m):
    m["views"][0]["world_to_cam"][0][0] = float("nan")
    return m


def test_d08_corrupt_truth_is_refused(capsys, ds, pred, tmp_path):
    folder = ds / "0000000"
    original = {n: (folder / n).read_bytes() for n in ("meta.json", "full_rgb.png", "full_sem.png")}
    _edit_meta(folder, _nan_camera)
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r8")
    assert status == 2 and "world_to_cam holds a non-finite number" in one_line_error(err)
    status, err = run(capsys, "refine", folder, "-o", tmp_path / "o8")
    assert status == 2 and "world_to_cam holds a non-finite number" in one_line_error(err)
    (folder / "meta.json").write_bytes(original["meta.json"])
    # CMYK JPEG bytes under a .png name.
    Image.open(folder / "full_rgb.png").convert("RGB").convert("CMYK").save(folder / "full_rgb.png", format="JPEG")
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r8")
    assert status == 2 and "full_rgb.png: stored as CMYK" in one_line_error(err)
    (folder / "full_rgb.png").write_bytes(original["full_rgb.png"])
    sem = np.asarray(Image.open(folder / "full_sem.png")).copy()
    sem[sem == 1] = 7
    Image.fromarray(sem).save(folder / "full_sem.png")
    status, err = run(capsys, "eval", pred, ds, "-o", tmp_path / "r8")
    assert status == 2 and "full_sem.png: label 7 is not a part" in one_line_error(err)
    assert not (tmp_path / "r8").exists()


# -- D10 OS errors on the output side -------------------------------------------------------------------
def test_d10_wrong_kind_of_path(capsys, ds, tmp_path):
    (tmp_path / "e").mkdir()
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "e")
    assert status == 2 and "is a folder" in one_line_error(err)
    (tmp_path / "README.md").write_text("# mine")
    status, err = run(capsys, "render-demo", "-o", tmp_path / "README.md")
    assert status == 2 and "exists and is a file" in one_line_error(err)
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "no" / "x.glb")
    assert status == 2 and "does not exist" in one_line_error(err)
    assert (tmp_path / "README.md").read_text() == "# mine"


def test_d10_read_only_and_full_disk(capsys, monkeypatch, ds, tmp_path):
    import tempfile

    real_mkdtemp, real_mkstemp = tempfile.mkdtemp, tempfile.mkstemp

    def read_only(*a, dir=None, **k):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    status, err = run(capsys, "render-demo", "-o", tmp_path / "o10", "--resolution", 16, "--device", "cpu")
    assert status == 1 and one_line_error(err).endswith("Permission denied")
    monkeypatch.setattr(tempfile, "mkdtemp", real_mkdtemp)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    status, err = run(capsys, "render-demo", "-o", tmp_path / "o10", "--resolution", 16, "--device", "cpu")
    assert status == 1 and one_line_error(err) == "stdgen: error: No space left on device"
    monkeypatch.undo()

    def full_file(*a, dir=None, **k):
        raise OSError(28, "No space left on device", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", full_file)
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "x.glb")
    assert status == 1 and "No space left on device" in one_line_error(err)
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # nothing half-written, no empty folder


# -- D11 --device checked up front ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("render-demo", "-o", "{out}"),
    ("data", "sample", "--count", "1", "-o", "{out}"),
    ("data", "render", "--count", "1", "-o", "{out}"),
    ("data", "import-vrm", str(FIXTURES / "debug_robot.vrm"), "-o", "{out}"),
    ("eval", "{pred}", "{ds}", "-o", "{out}"),
    ("refine", "{ds}/0000000", "-o", "{out}"),
])
def test_d11_bad_device_is_one_line_before_any_output(capsys, dataset, pred, tmp_path, args):
    out = tmp_path / "o11"
    filled = [a.format(out=out, pred=pred, ds=dataset) for a in args]
    status, err = run(capsys, *filled, "--device", "banana")
    assert status == 2 and "--device 'banana': not a device" in one_line_error(err)
    assert not out.exists()


# -- D12 manifest.json / import.json of the wrong shape --------------------------------------------
def test_d12_wrong_json_shapes(capsys, ds, tmp_path):
    (ds / "manifest.json").write_text("[]")
    status, err = run(capsys, "data", "render", "--count", 1, "--resolution", 64, "-o", ds, "--quiet")
    assert status == 2 and "manifest.json: not a stdgen-dataset manifest" in one_line_error(err)
    (ds / "manifest.json").write_text('{"format": "stdgen-dataset", "characters": [3]}')
    status, err = run(capsys, "data", "render", "--count", 1, "--resolution", 64, "-o", ds, "--quiet")
    assert status == 2 and "manifest.json: an entry of characters" in one_line_error(err)
    (ds / "0000000" / "import.json").write_text("[]")
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "x.glb")
    assert status == 0 and "Traceback" not in err and "import.json: not an import report" in err
    assert (tmp_path / "x.glb").is_file()
    # Exporting again over its own earlier export needs no --overwrite; over another file it does.
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "x.glb")
    assert status == 0, err
    (tmp_path / "y.glb").write_bytes(b"not ours")
    status, err = run(capsys, "export", ds / "0000000", "--format", "glb", "-o", tmp_path / "y.glb")
    assert status == 2 and "not written by stdgen export" in one_line_error(err)


# -- D13 interrupting --workers ------------------------------------------------------------------------
def _start_workers(tmp_path) -> subprocess.Popen:
    # Enough characters that the run cannot finish before the interrupt, even on an idle machine.
    proc = stdgen_process("data", "render", "--count", 60, "--workers", 2, "--resolution", 32, "--no-face",
                          "--no-top-bottom", "--random-views", 0, "--posed-views", 0, "--device", "cpu",
                          "-o", "w", "--quiet", cwd=tmp_path)
    # The parent, the resource tracker and two workers.
    assert wait_for(lambda: len(group_members(proc.pid)) >= 4, 120), proc.communicate(timeout=5)
    return proc


def test_d13_ctrl_c_stops_workers_at_once(tmp_path):
    proc = _start_workers(tmp_path)
    time.sleep(1.0)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 130 and err == "stdgen: interrupted\n", err
    assert took < 8, took  # the workers do not finish their characters first
    assert wait_for(lambda: not group_members(proc.pid), 10)  # workers and resource tracker gone
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    folders = sorted(p.name for p in (tmp_path / "w").iterdir() if not p.name.startswith("."))
    assert sorted(e["id"] for e in manifest["characters"]) == [f for f in folders if f != "manifest.json"]


def test_d13_kill_9_of_the_parent_ends_the_workers(tmp_path):
    proc = _start_workers(tmp_path)
    members = [p for p in group_members(proc.pid) if p != proc.pid]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)  # (not communicate: the workers hold the pipes until they are gone)
    assert wait_for(lambda: not any(alive(p) for p in members), 10), [p for p in members if alive(p)]


# -- D14 the atlas helper and Ctrl-C / kill -9 ------------------------------------------------------
def test_d14_atlas_helper_is_apart_from_ctrl_c_and_dies_with_its_parent(tmp_path):
    script = (
        "import os, sys, numpy as np\n"
        "from stdgen.refine.atlas import AtlasWorker\n"
        "w = AtlasWorker()\n"
        "v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)\n"
        "f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])\n"
        "w.submit(v, f, 64, 2, 4).result()\n"
        "print(w._proc.pid, os.getpgid(w._proc.pid), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    line = proc.stdout.readline().split()
    assert line, proc.communicate(timeout=5)
    helper, helper_group = int(line[0]), int(line[1])
    # In a group of its own: a terminal's Ctrl-C (sent to the foreground group) never reaches it.
    assert helper_group != proc.pid
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    assert wait_for(lambda: not alive(helper), 10)
    # And kill -9 of the parent ends it as well.
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    helper = int(proc.stdout.readline().split()[0])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_for(lambda: not alive(helper), 10)
    assert proc.stderr.read() == ""  # the helper printed nothing


# -- D15 Ctrl-C at start-up; --help without torch --------------------------------------------------
def test_d15_help_imports_no_torch():
    code = ("import sys\nfrom stdgen.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                         "PYTHONPATH": SRC})
    assert out.stderr.strip() == "False False", out.stderr
    assert "render-demo" in out.stdout and "refine" in out.stdout


@pytest.mark.parametrize("delay", [0.6, 1.5])
def test_d15_ctrl_c_at_start_up_exits_130(tmp_path, delay):
    proc = stdgen_process("render-demo", "-o", tmp_path / "o15", "--resolution", 16, cwd=tmp_path)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "stdgen: interrupted\n", (proc.returncode, err)
    assert not (tmp_path / "o15").exists()


# -- D16 refine removes the leftovers of a killed run -------------------------------------------------
def test_d16_refine_removes_leftovers(monkeypatch, ds, tmp_path):
    import stdgen.refine.core as core
    import stdgen.refine.folder as pl
    from stdgen.refine.schedule import RefineResult
    from stdgen.structures.semantics import PARTS

    # A killed run's leftovers beside the output.
    (tmp_path / ".tmp-out.k1ll3d").mkdir()
    (tmp_path / ".tmp-out.k1ll3d" / "character.glb").write_bytes(b"half")
    (tmp_path / ".tmp-out.png").write_bytes(b"half")
    (tmp_path / ".tmp-old-out").mkdir()
    # The optimisation itself is not what this test is about: the coarse meshes come back unchanged.
    monkeypatch.setattr(core, "refine_character", lambda coarse, targets, cfg, **k: RefineResult(
        meshes=dict(coarse), stages={}, seconds={p.key: 0.0 for p in PARTS}))
    cfg = core.RefineConfig()
    cfg.texture.mode = "vertex"
    cfg.report.metrics = False
    cfg.coarse.resolution = 16
    pl.refine_folder(ds / "0000000", tmp_path / "out", config=cfg)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ds") == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".stdgen-output.json", "before_after.png", "character.glb", "report.json"]


# -- D17 a --coarse OBJ with NaN ------------------------------------------------------------------------
def test_d17_nan_coarse_mesh(capsys, ds, tmp_path):
    c = tmp_path / "c17"
    c.mkdir()
    for part in ("body", "clothes", "hair"):
        (c / f"{part}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv nan nan nan\nf 1 2 3\nf 1 2 4\n")
    status, err = run(capsys, "refine", ds / "0000000", "-o", tmp_path / "o17", "--coarse", c, "--quiet")
    assert status == 2 and "body.obj: 1 vertices with a non-finite coordinate" in one_line_error(err)


# -- D18 data render's resume checks the folder, not meta.json alone ----------------------------------
def test_d18_resume_rerenders_an_incomplete_folder(ds):
    from stdgen.data.render_dataset import folder_status, render_dataset_dir

    cfg = render_config()
    assert folder_status(ds / "0000000", cfg) == "done"
    (ds / "0000000" / "full_normal.png").unlink()
    assert folder_status(ds / "0000000", cfg) == "missing"
    result = render_dataset_dir(ds, [0], cfg, make=standin_character, progress=False)
    assert result["rendered"] == 1 and result["skipped"] == 0
    assert read_renders(ds / "0000000", layers=("full",), maps=("normal",)).layers["full"].normal.shape[0] == 8
