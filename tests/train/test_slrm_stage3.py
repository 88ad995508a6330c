"""The S-LRM task's stage 3 (mesh): the preset fields, Eq. 10 on the grid, the mesh terms of an
analytic sphere, and a tiny-preset step whose mesh terms alone reach the model's weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stdgen.geometry.grid import Grid
from stdgen.structures.semantics import LAYER_SETS, NUM_PARTS, Part


@pytest.fixture(scope="module")
def stage3_batch():
    from stdgen.train.tasks.slrm import SLRMTask, tiny

    task = SLRMTask(dataclasses.replace(tiny(), stage3_step=4))
    return task, next(task.batches(rank=0, world_size=1, device="cpu", seed=0))


def test_preset_stage3_fields():
    from stdgen.train.tasks.slrm import STAGE3_OFF, SLRMPreset, SLRMTask, tiny

    p = tiny()
    assert p.stage3_step == STAGE3_OFF > p.train.max_steps  # off unless set
    assert SLRMTask(p).stage(p.train.max_steps) == 2
    assert "normal" not in SLRMTask(p).stream_config(rank=0, world_size=1, device="cpu", seed=0).maps
    on = dataclasses.replace(p, stage3_step=5)
    task = SLRMTask(on)
    assert [task.stage(s) for s in (0, 2, 3, 4, 5, 9)] == [0, 1, 2, 2, 3, 3]
    assert "normal" in task.stream_config(rank=0, world_size=1, device="cpu", seed=0).maps
    for field, value in (("stage3_step", p.stage2_step - 1), ("stage3_grid", 4), ("stage3_views", 0),
                         ("stage3_characters", -1), ("stage3_ray_stride", 3)):
        with pytest.raises(ValueError, match=f"SLRMPreset.{field}"):
            dataclasses.replace(p, **{field: value})
    assert isinstance(SLRMPreset().stage3_grid, int)


def _eq10_reference(f: np.ndarray, p: np.ndarray, kept: list[int], scale: float) -> np.ndarray:
    """method.md's Eq. 10 written out point by point."""
    out = np.empty_like(f)
    for idx in np.ndindex(f.shape):
        dropped = [p[idx][s] for s in range(NUM_PARTS) if s not in kept]
        term = (max(dropped) - max(p[idx][s] for s in kept)) if dropped else -np.inf
        out[idx] = max(f[idx], scale * term)
    return out


def test_layer_set_sdfs_are_eq10_and_differentiable():
    from stdgen.train.tasks.slrm import layer_set_sdfs

    g = torch.Generator().manual_seed(0)
    grid = Grid.cube(5, 1.0)
    f = (torch.rand(5, 5, 5, generator=g, dtype=torch.float64) - 0.5) * 0.6
    probs = torch.softmax(torch.randn(5, 5, 5, NUM_PARTS, generator=g, dtype=torch.float64) * 2, -1)
    out = layer_set_sdfs(f, probs, grid, list(LAYER_SETS))
    assert set(out) == set(LAYER_SETS)
    scale = grid.spacing[0]  # one cell, as inference extracts
    for name, kept in LAYER_SETS.items():
        ref = _eq10_reference(f.numpy(), probs.numpy(), [int(Part.parse(k)) for k in kept], scale)
        np.testing.assert_allclose(out[name].numpy(), ref, rtol=0, atol=1e-12)
    assert torch.equal(out["full"], f)  # every part kept: the plain field
    # Gradients w.r.t. the field and the class logits (max is smooth away from ties, which random
    # values do not hit).
    logits = torch.randn(2, 2, 2, NUM_PARTS, generator=g, dtype=torch.float64, requires_grad=True)
    f2 = ((torch.rand(2, 2, 2, generator=g, dtype=torch.float64) - 0.5) * 0.2).requires_grad_()
    small = Grid.cube(2, 1.0)

    def composed(a, b):
        return torch.stack(list(layer_set_sdfs(a, torch.softmax(b, -1), small, ["body", "body_clothes"]).values()))

    torch.autograd.gradcheck(composed, (f2, logits))


def _sphere(res: int, radius: float) -> tuple[torch.Tensor, Grid]:
    grid = Grid.cube(res, 1.0)
    return grid.points().norm(dim=-1) - radius, grid


def test_mesh_terms_of_a_sphere():
    """Against renders of a finely extracted sphere, the coarse sphere's terms are small; a sphere
    too small (field + 0.06) has larger mask and depth terms, and their gradient w.r.t. the grid
    values asks to lower the field, i.e. to grow the sphere."""
    from stdgen.geometry.flexicubes import flexicubes
    from stdgen.render import orthographic_cameras, perspective_cameras, render_mesh
    from stdgen.render.camera import Cameras
    from stdgen.train.tasks.slrm import mesh_terms

    cams = Cameras.cat([orthographic_cameras([0.0, 90.0, 200.0], 10.0, half_size=1.0),
                        perspective_cameras([45.0], 20.0, 3.0)])
    fine, fine_grid = _sphere(64, 0.5)
    truth = render_mesh(flexicubes(fine, fine_grid).to_mesh(), cams, 48)
    alpha = (truth.alpha > 0.5).float()
    sdf, grid = _sphere(32, 0.5)
    good = mesh_terms(sdf, grid, cams, truth.normal, alpha, truth.depth)
    assert all(torch.isfinite(v) for v in good.values())
    assert good["normal"] < 0.01 and good["depth"] < 0.01 and good["mask"] < 0.002 and good["dev"] < 0.01
    shrunk = (sdf + 0.06).requires_grad_()
    bad = mesh_terms(shrunk, grid, cams, truth.normal, alpha, truth.depth)
    assert bad["mask"] > 0.02 and bad["depth"] > 0.05 and bad["normal"] > 0.1
    for k in ("mask", "depth"):
        (grad,) = torch.autograd.grad(bad[k], shrunk, retain_graph=True)
        assert torch.isfinite(grad).all()
        assert grad.sum() > 0, k  # d(term)/d(uniform offset) > 0: lowering the field helps
    (grad,) = torch.autograd.grad(bad["normal"] + bad["dev"], shrunk)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # No surface in the box: the no-mesh values, still attached to the graph.
    empty = mesh_terms((sdf.abs() + 0.1).requires_grad_(), grid, cams, truth.normal, alpha, truth.depth)
    assert float(empty["normal"].detach()) == 1.0 and empty["mask"].requires_grad


def test_stage3_step_mesh_terms_reach_the_weights(stage3_batch):
    """One stage-3 step of the tiny preset: one forward call, finite mesh terms for every kept set,
    and non-zero gradients on the model's weights from the mesh terms alone."""
    task, batch = stage3_batch
    assert "normal" in batch
    torch.manual_seed(0)
    model = task.build_model()
    task.on_stage_change(model, 3)  # LoRA, as the trainer does from stage 1 on
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    step = task.preset.stage3_step
    assert task.stage(step) == 3
    out = task.losses(model, batch, step, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1
    mesh = {k: v for k, v in out.items() if k.startswith("mesh_")}
    assert set(mesh) == {f"mesh_{t}_{s}" for t in ("normal", "depth", "mask", "dev") for s in LAYER_SETS}
    assert {"mse_body", "mask_full", "sem_body_clothes"} <= set(out)  # stage 2's terms stay
    assert all(torch.isfinite(v) for v in mesh.values())
    sum(mesh.values()).backward()
    for name, params in (("sdf_decoder", list(model.sdf_decoder.parameters())),
                         ("sem_decoder", list(model.sem_decoder.parameters())),
                         ("lora", model.lora_parameters()), ("encoder", list(model.encoder.parameters()))):
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert model.rgb_decoder[0].weight.grad is None  # colour does not enter the mesh terms


def test_stage3_subset_views_and_autocast(stage3_batch):
    """``stage3_characters`` / ``stage3_views`` / ``stage3_ray_stride`` and the zero-weight switch;
    under (CPU) bf16 autocast the mesh part still runs in float32."""
    from stdgen.train.tasks.slrm import SLRMLossWeights, SLRMTask

    task, batch = stage3_batch
    p = dataclasses.replace(task.preset, stage3_characters=1, stage3_views=1, stage3_ray_stride=2,
                            loss=SLRMLossWeights(mesh_dev=0.0, mesh_mask=0.0))
    t = SLRMTask(p)
    torch.manual_seed(0)
    model = t.build_model()
    points = []
    model.register_forward_pre_hook(lambda m, a, kw: points.append(kw["points"].shape[1]), with_kwargs=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = t.losses(model, batch, p.stage3_step, generator=torch.Generator().manual_seed(1))
    keys = {k for k in out if k.startswith("mesh_")}
    assert keys == {f"mesh_{k}_{s}" for k in ("normal", "depth") for s in LAYER_SETS}
    assert all(torch.isfinite(out[k].float()) for k in keys)
    off = dataclasses.replace(p, loss=SLRMLossWeights(mesh_normal=0, mesh_depth=0, mesh_mask=0, mesh_dev=0))
    out = SLRMTask(off).losses(model, batch, p.stage3_step, generator=torch.Generator().manual_seed(1))
    assert not any(k.startswith("mesh_") for k in out)
    t.losses(model, batch, p.stage2_step, generator=torch.Generator().manual_seed(1))
    # Stage 3 at stride 2, the tiny preset's 4 before it: four times the rays; the grid joins the
    # forward's points only while mesh terms are on.
    rays = [n - 6 * p.eikonal_points for n in points]
    samples = p.num_uniform + 2 * p.num_guided
    assert rays[2] == p.target_views * (p.resolution // p.ray_stride) ** 2 * samples
    assert rays[1] == 4 * rays[2] and rays[0] == rays[1] + p.stage3_grid**3
