"""The trainer on the CPU with the toy task: smoke run through every feature, exact resume, time box, init."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch

from stdgen.errors import StdgenError
from stdgen.train import export_run, make_task, train
from stdgen.train.tasks.toy import ToyField

#: Quick runs: every step logged, no TensorBoard (its import dominates a few-step run), no images/validation.
QUICK = ["train.log_every=1", "train.tensorboard=false", "train.image_every=0", "train.val_every=0",
         "train.warmup_steps=2"]


def task(*extra: str):
    return make_task("toy", "tiny", [*QUICK, *extra])


def losses(run_dir) -> list[tuple[int, float, dict]]:
    out = []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out.append((rec["step"], rec["loss"], rec["terms"]))
    return out


def ckpt(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_smoke_two_steps_through_everything(tmp_path):
    """Two steps with TensorBoard, images and validation; checkpoint; resume two more; export fp32 / fp16 /
    int8; from_pretrained of each equals the EMA weights within the storage tolerance."""
    run = tmp_path / "run"
    over = ["train.log_every=1", "train.image_every=2", "train.val_every=2", "train.warmup_steps=2"]
    records = []
    s = train(make_task("toy", "tiny", over), run, steps=2, device="cpu", preset_name="tiny", overrides=over,
              callback=records.append)
    assert s["step"] == 2 and s["stopped"] == "steps" and s["samples_seen"] == 8
    assert [r["step"] for r in records] == [1, 2]
    assert {"checkpoint.pt", "export", "log.jsonl", "run.json"} <= {p.name for p in run.iterdir()}
    if importlib.util.find_spec("tensorboard") is not None:  # a test extra; the trainer runs without it
        assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 2] and set(log[2]["validation"]) == {"mse", "psnr"}
    assert set(log[0]) == {"step", "stage", "loss", "terms", "lr", "grad_norm", "samples_per_s", "elapsed_s"}
    assert set(log[0]["terms"]) == {"mse", "l1"} and log[0]["loss"] == pytest.approx(sum(log[0]["terms"].values()))
    assert log[0]["lr"] == pytest.approx(3e-4 * 0.5) and log[1]["lr"] == pytest.approx(3e-4)

    s = train(make_task("toy", "tiny", over), run, steps=4, resume=True, device="cpu")
    assert s["start_step"] == 2 and s["step"] == 4 and s["samples_seen"] == 16
    info = json.loads((run / "run.json").read_text())
    assert info["task"] == "toy" and info["preset"] == "tiny" and info["overrides"]["train.val_every"] == "2"
    assert info["step"] == 4 and info["samples_seen"] == 16 and info["config"]["batch_size"] == 4
    assert [(c["start_step"], c["end_step"]) for c in info["chunks"]] == [(0, 2), (2, 4)]
    assert info["gpu_minutes_total"] == 0.0 and info["seconds_total"] > 0 and "git_revision" in info
    assert info["model_class"] == "ToyField"
    assert info["num_parameters"] == ToyField(task().preset.model).num_parameters()

    shadow = ckpt(run)["ema"]["shadow"]
    exported = ToyField.from_pretrained(run / "export")
    for k, v in shadow.items():
        assert torch.equal(exported.state_dict()[k], v), k  # the end-of-chunk export holds the EMA weights
    xy = torch.rand(5, 2) * 2 - 1
    ref = exported(xy).color
    for dtype, tol in (("fp32", 0.0), ("fp16", 2e-3), ("int8", 2e-2)):
        export_run(run, tmp_path / dtype, dtype=dtype)
        m = ToyField.from_pretrained(tmp_path / dtype)
        assert (m(xy).color - ref).abs().max().item() <= tol, dtype
        meta = json.loads((tmp_path / dtype / "config.json").read_text())
        assert meta["_class_name"] == "ToyField" and meta["hidden"] == 16


def test_resume_equals_uninterrupted_bitwise(tmp_path):
    """Six steps in one go against chunks of 2 + 2 + 2, with a stage change (only the head trains from step
    3) between the chunks: identical losses, weights, EMA and optimiser state, bit for bit."""
    extra = "freeze_at=3"
    train(task(extra), tmp_path / "a", steps=6, device="cpu")
    for stop in (2, 4, 6):
        train(task(extra), tmp_path / "b", steps=stop, resume=stop > 2, device="cpu")
    la, lb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [x[0] for x in la] == [1, 2, 3, 4, 5, 6]
    assert la == lb  # exact float equality
    ca, cb = ckpt(tmp_path / "a"), ckpt(tmp_path / "b")
    assert ca["step"] == cb["step"] == 6 and ca["stage"] == cb["stage"] == 1
    for part in ("model",):
        for k in ca[part]:
            assert torch.equal(ca[part][k], cb[part][k]), k
    for k in ca["ema"]["shadow"]:
        assert torch.equal(ca["ema"]["shadow"][k], cb["ema"]["shadow"][k]), k
    for pa, pb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # the stage really froze the MLP: its weights after step 3 equal those at the step-4 chunk boundary
    first_layer = "mlp.0.weight"
    assert torch.equal(ca["model"][first_layer], ckpt_after(tmp_path, extra, 3)["model"][first_layer])


def ckpt_after(tmp_path, extra, steps):
    run = tmp_path / f"c{steps}"
    train(task(extra), run, steps=steps, device="cpu")
    return ckpt(run)


def test_deterministic_and_seeded(tmp_path):
    train(task(), tmp_path / "a", steps=3, device="cpu")
    train(task(), tmp_path / "b", steps=3, device="cpu")
    train(task("train.seed=1"), tmp_path / "c", steps=3, device="cpu")
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a")[0][1] != losses(tmp_path / "c")[0][1]


def test_log_past_the_checkpoint_is_dropped_on_resume(tmp_path):
    run = tmp_path / "r"
    train(task(), run, steps=2, device="cpu")
    with open(run / "log.jsonl", "a") as f:  # a chunk that died after logging step 3 but before saving
        f.write(json.dumps({"step": 3, "loss": 9.0, "terms": {}}) + "\n")
    train(task(), run, steps=3, resume=True, device="cpu")
    assert [x[0] for x in losses(run)] == [1, 2, 3] and losses(run)[2][1] != 9.0


def test_time_box_ends_cleanly_with_a_checkpoint(tmp_path):
    run = tmp_path / "t"
    t0 = time.monotonic()
    s = train(task("train.max_steps=1000000", "train.log_every=50"), run, minutes=0.03, device="cpu")
    wall = time.monotonic() - t0
    assert s["stopped"] == "time" and 0 < s["step"] < 1_000_000
    assert ckpt(run)["step"] == s["step"] and (run / "export" / "model.safetensors").is_file()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "time" and info["step"] == s["step"]
    assert losses(run)[-1][0] == s["step"]  # the steps after the last log step are logged too
    assert wall < 1.8 + 10  # 1.8 s box; generous slack for a loaded CI machine
    s2 = train(task("train.max_steps=1000000", "train.log_every=50"), run, steps=s["step"] + 2, resume=True,
               device="cpu")
    assert s2["step"] == s["step"] + 2


def test_init_loads_weights_with_a_fresh_optimiser(tmp_path):
    train(task(), tmp_path / "a", steps=3, device="cpu")
    s = train(task(), tmp_path / "b", steps=0, init=tmp_path / "a" / "export", device="cpu")
    assert s["step"] == 0
    c = ckpt(tmp_path / "b")
    assert c["optimizer"]["state"] == {}
    src = ToyField.from_pretrained(tmp_path / "a" / "export").state_dict()
    assert all(torch.equal(c["model"][k], v) for k, v in src.items())
    with pytest.raises(StdgenError, match=r"weights do not match the model: .*shape mismatches"):
        train(task("model.hidden=8"), tmp_path / "c", steps=1, init=tmp_path / "a" / "export", device="cpu")


def test_run_folder_errors(tmp_path):
    train(task(), tmp_path / "a", steps=1, device="cpu")
    with pytest.raises(StdgenError, match="already holds a run"):
        train(task(), tmp_path / "a", steps=2, device="cpu")
    with pytest.raises(StdgenError, match="--resume: no checkpoint.pt in"):
        train(task(), tmp_path / "none", steps=2, resume=True, device="cpu")
    with pytest.raises(StdgenError, match="--init is only for a new run"):
        train(task(), tmp_path / "a", resume=True, init=tmp_path, device="cpu")
    with pytest.raises(ValueError, match=r"batch_size 3 does not split over 2 ranks"):
        task("batch_size=3").local_batch_size(2)
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(StdgenError, match="unreadable checkpoint"):
        train(task(), tmp_path / "a", steps=2, resume=True, device="cpu")


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    t = task()
    real = t.losses
    t.losses = lambda model, batch, step: {k: v * float("nan") for k, v in real(model, batch, step).items()}
    with pytest.raises(StdgenError, match="non-finite loss at step 1"):
        train(t, tmp_path / "n", steps=3, device="cpu")
