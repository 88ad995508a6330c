"""DDP on the CPU (gloo): two processes with the global batch split between them train like one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from stdgen.train import make_task, train

QUICK = ["train.log_every=1", "train.tensorboard=false", "train.image_every=0", "train.val_every=0",
         "train.warmup_steps=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str, steps: int, resume: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(make_task("toy", "tiny", QUICK), run_dir, steps=steps, resume=resume, device="cpu")


def spawn(run_dir, steps: int, resume: bool = False) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(run_dir), steps, resume), nprocs=2, join=True)


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def test_ranks_split_the_global_batch():
    task = make_task("toy", "tiny", QUICK)
    one = next(iter(task.batches(rank=0, world_size=1, device=torch.device("cpu"), seed=0, start=3)))
    halves = [next(iter(task.batches(rank=r, world_size=2, device=torch.device("cpu"), seed=0, start=3)))
              for r in range(2)]
    assert halves[0]["xy"].shape[0] == 2 and not torch.equal(halves[0]["xy"], halves[1]["xy"])
    assert torch.equal(torch.cat([h["xy"] for h in halves]), one["xy"])


def test_two_gloo_ranks_match_one_process(tmp_path):
    """Same global batch (4: 2 per rank): the rank-averaged losses match the single process to float
    rounding (DDP averages the two half-batch gradients; the sum order differs), and so do the weights."""
    train(make_task("toy", "tiny", QUICK), tmp_path / "one", steps=4, device="cpu")
    spawn(tmp_path / "two", steps=4)
    l1, l2 = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in l1] == [s for s, _ in l2] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(l1, l2):
        assert abs(a - b) <= 1e-6 * abs(a), (a, b)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-7)
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["world_size"] == 2 and info["samples_seen"] == 16


@pytest.mark.slow
def test_ddp_resume_matches_uninterrupted_ddp(tmp_path):
    """Two ranks, 4 steps in one go against 2 + 2 with a resume: the same losses bit for bit (each rank
    restores its own RNG state and data position)."""
    spawn(tmp_path / "a", steps=4)
    spawn(tmp_path / "b", steps=2)
    spawn(tmp_path / "b", steps=4, resume=True)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    """The documented command: torchrun --nproc_per_node=2 -m stdgen train toy ... (gloo on the CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "stdgen", "train", "toy", "--preset", "tiny", "-o", str(tmp_path / "r"), "--steps", "3",
           "--device", "cpu", "--quiet", *[a for s in QUICK for a in ("--set", s)]]
    subprocess.run(cmd, check=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert [s for s, _ in losses(tmp_path / "r")] == [1, 2, 3]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["world_size"] == 2
