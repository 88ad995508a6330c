"""The S-LRM task through the trainer on CUDA in bf16: every stage, validation and sample grids inside
autocast, export and reload (run with -m gpu on the GPU machine)."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


def test_slrm_stages_on_cuda(tmp_path):
    from stdgen.models.slrm import SLRM
    from stdgen.train import make_task, train

    task = make_task("slrm", "tiny", ["train.log_every=1", "train.tensorboard=false", "train.image_every=2",
                                      "train.val_every=2", "stage1_step=2", "stage2_step=4"])
    summary = train(task, tmp_path / "run", steps=6, device="cuda")
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows if "terms" in r][-1] == 2
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "terms" in r)
    assert any("validation" in r for r in rows)
    assert (tmp_path / "run" / "images" / "slrm_latest.png").is_file()
    model = SLRM.from_pretrained(tmp_path / "run" / "export", device="cuda")
    assert model.config.lora_rank == 0  # exported merged
    del summary
