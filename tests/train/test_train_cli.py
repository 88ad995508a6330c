"""``stdgen train`` and ``stdgen train export`` end to end (in process)."""

from __future__ import annotations

import json

import pytest
import torch

from stdgen.cli import main
from stdgen.train.tasks.toy import ToyField

QUICK = ["--set", "train.log_every=1", "--set", "train.tensorboard=false", "--set", "train.val_every=0",
         "--set", "train.image_every=0"]


def test_train_resume_export(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy", "--preset", "tiny", "-o", str(run), "--steps", "2", "--device", "cpu", "--quiet",
                 *QUICK]) == 0
    assert "steps 0 -> 2 (steps)" in capsys.readouterr().out
    # --resume takes the stored overrides; a new --set goes on top
    assert main(["train", "toy", "--preset", "tiny", "-o", str(run), "--steps", "3", "--resume", "--quiet",
                 "--set", "train.lr=1e-3"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["step"] == 3 and info["overrides"]["train.tensorboard"] == "false"
    assert info["overrides"]["train.lr"] == "1e-3" and info["config"]["train"]["lr"] == 1e-3
    assert not (run / "tb").exists()
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["lr"] == pytest.approx(1e-3 * 3 / 10)  # the new lr, in warm-up (10 steps)
    assert main(["train", "export", str(run), "-o", str(tmp_path / "w"), "--dtype", "int8"]) == 0
    m = ToyField.from_pretrained(tmp_path / "w")
    ref = ToyField.from_pretrained(run / "export")
    xy = torch.rand(4, 2)
    assert (m(xy).color - ref(xy).color).abs().max() < 2e-2


def test_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import stdgen.train.tasks as reg

    # A task registered before its module lands (canon was, until issue 15).
    monkeypatch.setitem(reg.TASKS, "canon", "stdgen.train.tasks.ghost")
    monkeypatch.setitem(reg.PRESETS, "canon", {p: f"stdgen.train.tasks.ghost:{p}" for p in ("tiny", "small", "paper")})
    assert main(["train", "canon", "--preset", "tiny", "-o", str(tmp_path / "x")]) == 2
    assert "stdgen: error: task 'canon' is registered but its module" in capsys.readouterr().err
    assert main(["train", "toy", "--preset", "tiny", "-o", str(tmp_path / "x"), "--set", "train.lr=-1"]) == 2
    assert "lr: expected 0 < lr <= 1, got -1.0" in capsys.readouterr().err
    assert main(["train", "toy", "--preset", "tiny", "-o", str(tmp_path / "x"), "--resume"]) == 2
    assert "--resume: no readable run.json" in capsys.readouterr().err
    assert main(["train", "export", str(tmp_path / "x"), "-o", str(tmp_path / "y")]) == 2
    assert "no readable run.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "toy", "--preset", "huge", "-o", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert main(["train"]) == 2  # the group without a task prints its help
