"""The trainer on CUDA: bf16 autocast, fused AdamW, exact resume, export (run with -m gpu on the GPU machine)."""

from __future__ import annotations

import json

import pytest
import torch

from stdgen.train import make_task, train
from stdgen.train.tasks.toy import ToyField

pytestmark = pytest.mark.gpu

QUICK = ["train.log_every=1", "train.tensorboard=false", "train.image_every=0", "train.val_every=0",
         "train.warmup_steps=2", "model.hidden=64"]


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


@pytest.fixture(autouse=True)
def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


def test_cuda_bf16_fused_and_resume(tmp_path, monkeypatch):
    seen = {}
    real_adamw = torch.optim.AdamW

    def spy(*args, **kwargs):
        seen["fused"] = kwargs.get("fused")
        return real_adamw(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    dtypes = []
    task = make_task("toy", "tiny", QUICK)
    real_losses = task.losses

    def spy_losses(model, batch, step):
        out = model(batch["xy"])
        dtypes.append(out.logits.dtype)
        return real_losses(model, batch, step)

    task.losses = spy_losses
    s = train(task, tmp_path / "a", steps=6, device="cuda")
    assert s["step"] == 6 and seen["fused"] is True and set(dtypes) == {torch.bfloat16}
    train(make_task("toy", "tiny", QUICK), tmp_path / "b", steps=3, device="cuda")
    train(make_task("toy", "tiny", QUICK), tmp_path / "b", steps=6, resume=True, device="cuda")
    la, lb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [x[0] for x in la] == [x[0] for x in lb]
    for (_, a), (_, b) in zip(la, lb):
        assert a == b or abs(a - b) <= 1e-6 * abs(a), (a, b)  # cuBLAS is deterministic for fixed shapes
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert info["gpu"] == torch.cuda.get_device_name() and info["gpu_minutes_total"] > 0
    m = ToyField.from_pretrained(tmp_path / "b" / "export", device="cuda", dtype=torch.bfloat16)
    assert m.head.weight.dtype == torch.bfloat16 and m.head.weight.device.type == "cuda"
