"""The S-LRM task's supervision geometry and a few CPU steps of its losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdgen.structures.semantics import Part


@pytest.fixture(scope="module")
def stream_batch():
    from stdgen.train.tasks.slrm import SLRMTask, tiny

    task = SLRMTask(tiny())
    return task, next(task.batches(rank=0, world_size=1, device="cpu", seed=0))


def test_true_depths_land_on_the_character(stream_batch):
    """Rays of the target views at the true depth (normalised t) hit the character's surface: the
    world points lie within about a pixel of the full mesh."""
    from stdgen.data.render_dataset import procedural_character
    from stdgen.geometry.nearest import NearestPoints
    from stdgen.structures.mesh import merge_meshes

    task, batch = stream_batch
    o, d, tpd, rows, cols = task._rays(batch, [0, 2, 5, batch["rgb"].shape[2] - 1], 2, (0, 1))
    full = list(batch["layers"]).index("full")
    dep = batch["depth"][:, full][:, [0, 2, 5, batch["rgb"].shape[2] - 1], 0][..., rows, :][..., cols].reshape(1, 4, -1)
    a = batch["alpha"][:, full][:, [0, 2, 5, batch["rgb"].shape[2] - 1], 0][..., rows, :][..., cols].reshape(1, 4, -1)
    pts_n = o + (dep * tpd)[..., None] * d
    pts_w = batch["center"][:, None, None] + batch["half_size"][:, None, None, None] * pts_n
    sel = pts_w[a > 0.99].numpy()
    ch = procedural_character(int(batch["seed"][0]))
    mesh = merge_meshes([ch.part(p) for p in Part])
    surface = NearestPoints(torch.from_numpy(mesh.vertices))
    dist = surface.query(torch.from_numpy(sel))[0].numpy()
    pixel = 2 * float(batch["half_size"][0]) / task.preset.resolution
    assert len(sel) > 50
    assert np.median(dist) < 0.5 * pixel
    assert np.quantile(dist, 0.9) < 1.5 * pixel


def test_losses_through_the_stages(stream_batch):
    task, batch = stream_batch
    torch.manual_seed(0)
    model = task.build_model()
    g = torch.Generator().manual_seed(0)
    l0 = task.losses(model, batch, 0, generator=g)
    assert set(l0) == {"mse", "mse_fg", "ssim", "mask", "depth", "eikonal"}
    # The foreground colour term is the colour error on the true foreground only: at least the
    # whole-image MSE's share there (background rays are white in both).
    assert l0["mse_fg"] / task.preset.loss.mse_fg >= l0["mse"] / task.preset.loss.mse
    task.on_stage_change(model, 1)
    assert model.config.lora_rank == task.preset.lora_rank
    groups = task.param_groups(model, task.preset.stage1_step)
    trainable = {id(p) for grp in groups for p in grp["params"]}
    assert {id(p) for p in model.lora_parameters()} <= trainable
    assert id(model.encoder.stem.conv1.weight) not in trainable  # base frozen (base_lr_scale = 0)
    l1 = task.losses(model, batch, task.preset.stage1_step, generator=g)
    assert "sem" in l1
    l2 = task.losses(model, batch, task.preset.stage2_step, generator=g)
    assert {"sem_body", "mse_body_clothes", "mask_full"} <= set(l2)
    total = sum(l2.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.lora_parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lora_parameters())


def test_validate_and_images_under_autocast(stream_batch):
    """The trainer validates inside bf16 autocast on CUDA; the stream's renderer must still run in
    float32 there (the first GPU run stopped on exactly this). CPU autocast stands in for CUDA's."""
    task, batch = stream_batch
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = task.validate(model, "cpu")
        grids = task.images(model, batch)
    assert set(metrics) == {"iou_full", "psnr_full", "iou_body", "psnr_body"}
    assert all(np.isfinite(v) for v in metrics.values())
    assert grids["slrm"].shape[1] == 3 and torch.isfinite(grids["slrm"].float()).all()
