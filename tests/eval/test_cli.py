import csv
import shutil

import numpy as np
import pytest
from safetensors.torch import save_file

from stdgen.cli import main
from stdgen.eval import protocol as pr
from stdgen.utils.io import save_png

from .helpers import tiny_lpips_state


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_eval_writes_csv_summary_and_pictures(truth_dir, pred_root, tmp_path, capsys):
    (pred_root / "zz-extra").mkdir()
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.md").write_text("an earlier report is replaced")
    assert main(["eval", str(pred_root), str(truth_dir), "-o", str(out), "--points", "2000"]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["character"] for r in rows] == ["a", "b"]
    assert all(float(r["ssim"]) == 1 and float(r["chamfer"]) == 0 for r in rows)
    # No weights given: the learned metrics say so instead of a number.
    assert all(r["lpips"] == "not computed" and r["clip"] == "not computed" for r in rows)
    summary = (out / "summary.md").read_text()
    assert "0.937" in summary and "0.88" in summary  # the paper's numbers beside ours
    assert "not computed" in summary and "`zz-extra`" in summary
    assert "F-score@0.01" in summary and "height" in summary
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs and all(p.split("_")[0] in ("best", "median", "worst") for p in pngs)
    assert "evaluated 2 characters" in capsys.readouterr().out


def test_eval_with_local_lpips_weights_fills_the_column(truth_dir, pred_root, tmp_path):
    save_file(tiny_lpips_state("vgg"), str(tmp_path / "lpips.safetensors"))
    shutil.copy(truth_dir / "b" / "character.glb", pred_root / "a" / "character.glb")
    out = tmp_path / "report"
    assert main(["eval", str(pred_root), str(truth_dir), "-o", str(out), "--no-geometry", "--no-volume",
                 "--lpips-weights", str(tmp_path / "lpips.safetensors")]) == 0
    rows = {r["character"]: r for r in _rows(out / "metrics.csv")}
    assert float(rows["b"]["lpips"]) == pytest.approx(0, abs=1e-6)
    assert float(rows["a"]["lpips"]) > 0
    assert "chamfer" not in rows["a"]


def test_user_errors_exit_2_with_one_line_and_no_report(truth_dir, tmp_path, capsys):
    out = tmp_path / "report"
    (tmp_path / "pred" / "a").mkdir(parents=True)
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stdgen: error:") and err.count("\n") == 1  # one line, before any progress bar
    assert "a/character.glb: missing" in err and "Traceback" not in err
    # A malformed file found during the run: the error still gets its own last line.
    (tmp_path / "pred" / "a" / "character.glb").write_bytes(b"not a glb at all, no")
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "-o", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("stdgen: error:") and "a/character.glb" in last
    assert not out.exists()
    assert main(["eval", str(tmp_path / "pred"), "-o", str(out)]) == 2  # neither GT_DIR nor --images
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "--images", str(tmp_path), "-o", str(out)]) == 2
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "-o", str(out), "--lpips-weights",
                 str(tmp_path / "none.pth")]) == 2
    assert "none.pth" in capsys.readouterr().err
    # The report folder is replaced as a whole: never one holding other things (like the inputs).
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "-o", str(tmp_path / "pred")]) == 2
    assert main(["eval", str(tmp_path / "pred"), str(truth_dir), "-o", str(tmp_path)]) == 2
    assert "is or holds an input of this run" in capsys.readouterr().err
    assert (tmp_path / "pred" / "a").is_dir()


def test_eval_images_mode(pred_root, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    parts = pr.load_parts(pred_root / "a" / "character.glb")
    view = pr.render_parts(parts, pr.input_camera(parts), 48, background=0.0)
    straight = np.where(view.alpha[..., None] > 0, view.rgb / np.maximum(view.alpha[..., None], 1e-6), 0)
    save_png(pics / "a.png", np.concatenate([straight[0], view.alpha[0][..., None]], -1))
    save_png(pics / "lonely.png", np.zeros((16, 16, 4), np.uint8))
    out = tmp_path / "report"
    assert main(["eval", str(pred_root), "--images", str(pics), "-o", str(out)]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["character"] for r in rows] == ["a"] and float(rows[0]["silhouette_iou"]) == pytest.approx(1)
    summary = (out / "summary.md").read_text()
    assert "Input-view fidelity" in summary and "`lonely`" in summary and "`b`" in summary
    assert list(out.glob("best_a.png"))
