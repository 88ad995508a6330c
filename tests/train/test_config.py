"""TrainConfig validation and schedule, --set overrides, the task / preset registry."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from stdgen.errors import StdgenError
from stdgen.train.config import TrainConfig, apply_overrides, parse_overrides
from stdgen.train.tasks import PRESETS, TASKS, get_preset, get_task_class, make_task
from stdgen.train.tasks.toy import ToyConfig, ToyPreset, ToyTask


@pytest.mark.parametrize(("kw", "msg"), [
    ({"lr": 0.0}, "lr: expected 0 < lr <= 1, got 0.0"),
    ({"betas": (0.9, 1.0)}, r"betas: expected two values in \[0, 1\), got \(0.9, 1.0\)"),
    ({"warmup_steps": -1}, "warmup_steps: expected >= 0, got -1"),
    ({"max_steps": 0}, "max_steps: expected >= 1, got 0"),
    ({"ema_decay": 1.0}, r"ema_decay: expected a value in \[0, 1\) \(0 = off\), got 1.0"),
    ({"log_every": 0}, "log_every: expected >= 1, got 0"),
    ({"grad_clip": float("nan")}, "grad_clip: expected >= 0"),
])
def test_train_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_schedule_warmup_then_cosine():
    c = TrainConfig(lr=1e-3, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert [c.lr_factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert c.lr_factor(4) == 1.0
    assert math.isclose(c.lr_factor(9), 0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert math.isclose(c.lr_factor(14), 0.1) and math.isclose(c.lr_factor(100), 0.1)
    assert TrainConfig(warmup_steps=0, max_steps=10).lr_factor(0) == 1.0


def test_overrides_nested_typed_and_validated():
    p = apply_overrides(ToyPreset(), ["train.lr=1e-4", "batch_size=16", "model.hidden=8", "train.betas=0.8,0.9",
                                      "train.bf16=false", "points=7"])
    assert p.train.lr == 1e-4 and p.batch_size == 16 and p.model.hidden == 8 and p.points == 7
    assert p.train.betas == (0.8, 0.9) and p.train.bf16 is False and isinstance(p.model, ToyConfig)
    assert apply_overrides(p, {"train.betas": "[0.5, 0.6]"}).train.betas == (0.5, 0.6)
    assert ToyPreset().train.lr == 3e-4  # the original is untouched
    with pytest.raises(StdgenError, match="--set model.width=3: unknown key 'width' in ToyConfig; known: depth,"):
        apply_overrides(p, ["model.width=3"])
    with pytest.raises(StdgenError, match="--set model.hidden=1: hidden: expected 2..4096, got 1"):
        apply_overrides(p, ["model.hidden=1"])
    with pytest.raises(StdgenError, match="--set batch_size=x: expected an integer"):
        apply_overrides(p, ["batch_size=x"])
    with pytest.raises(StdgenError, match="is a group"):
        apply_overrides(p, ["train=3"])
    with pytest.raises(StdgenError, match="--set expects KEY=VALUE, got 'lr'"):
        parse_overrides(["lr"])


def test_registry_errors_are_one_line():
    assert set(TASKS) == {"slrm", "mvdiff", "mvreg", "canon", "segment", "toy"}
    assert PRESETS["toy"]["tiny"] == "stdgen.train.tasks.toy:tiny"
    with pytest.raises(StdgenError, match="unknown task 'nope'; known tasks: canon, mvdiff, mvreg, segment, slrm, toy"):
        get_preset("nope", "tiny")
    with pytest.raises(StdgenError, match="unknown preset 'huge' for task 'toy'; known presets: tiny, small, paper"):
        get_preset("toy", "huge")
    assert get_task_class("toy") is ToyTask
    task = make_task("toy", "small", ["batch_size=2"])
    assert isinstance(task, ToyTask) and task.preset.batch_size == 2
    for name in ("tiny", "small", "paper"):
        assert isinstance(get_preset("toy", name), ToyPreset)


def test_registered_task_without_module(monkeypatch):
    import stdgen.train.tasks as reg

    monkeypatch.setitem(reg.TASKS, "ghost", "stdgen.train.tasks.ghost")
    monkeypatch.setitem(reg.PRESETS, "ghost", {"tiny": "stdgen.train.tasks.ghost:tiny"})
    with pytest.raises(StdgenError, match="task 'ghost' is registered but its module stdgen.train.tasks.ghost is not"):
        get_preset("ghost", "tiny")


def test_cli_registration_imports_no_torch():
    code = "import sys, stdgen.train.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_overrides_that_must_change_together():
    # use_normals and model.in_channels are validated against each other: one at a time each fails,
    # given together in either order they apply; alone the first still fails with its own message.
    small = get_preset("slrm", "small")
    for order in (["use_normals=true", "model.in_channels=6"], ["model.in_channels=6", "use_normals=true"]):
        p = apply_overrides(small, order + ["points3d=128"])
        assert p.use_normals is True and p.model.in_channels == 6 and p.points3d == 128
    with pytest.raises(StdgenError, match="--set use_normals=true: .*must match model.in_channels"):
        apply_overrides(small, ["use_normals=true"])
    with pytest.raises(StdgenError, match="--set use_normals=true: .*must match model.in_channels"):
        apply_overrides(small, ["use_normals=true", "model.in_channels=3"])
    with pytest.raises(StdgenError, match="unknown key 'nope'"):
        apply_overrides(small, ["use_normals=true", "model.in_channels=6", "model.nope=1"])
