"""The segmenter's training task: backgrounds, batches, losses, a smoke run (tiny preset, CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stdgen.train.backgrounds import KINDS, random_kinds, synthetic_backgrounds
from stdgen.train.tasks.segment import (
    PRESETS,
    SegmentTask,
    compose,
    mask_iou,
    segmentation_grid,
    soft_iou_loss,
    tiny,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_stream_batch(b: int = 2, v: int = 7, res: int = 32, seed: int = 0) -> dict:
    """A RenderStream-shaped batch: lit colour over black (premultiplied), a box figure per view."""
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(b, 1, v, 1, res, res)
    alpha[..., res // 8: 7 * res // 8, res // 3: 2 * res // 3] = 1.0
    n = torch.nn.functional.normalize(torch.randn(b, 1, v, 3, res, res, generator=g), dim=3) * alpha
    lit = torch.rand(b, 1, v, 3, res, res, generator=g) * alpha
    depth = (2.0 + torch.rand(b, 1, v, 1, res, res, generator=g) * 0.1) * alpha
    return {"lit": lit, "normal": n, "alpha": alpha, "depth": depth}


def test_backgrounds_ranges_and_variety():
    kinds = list(range(len(KINDS))) * 3
    bg = synthetic_backgrounds(kinds, 64, generator=torch.Generator().manual_seed(0))
    assert bg.shape == (len(kinds), 3, 64, 64) and bg.dtype == torch.float32
    assert bg.min() >= 0 and bg.max() <= 1 and torch.isfinite(bg).all()
    spatial = bg.std(dim=(2, 3)).amax(dim=1)  # (N,) variation across the picture
    per_kind = spatial.reshape(3, len(KINDS)).amax(dim=0)
    assert per_kind[KINDS.index("solid")] < 1e-6
    # Every other kind has structure (its two random colours could nearly coincide: 3 samples each).
    assert (per_kind[1:] > 0.02).all(), dict(zip(KINDS, per_kind.tolist()))
    # Pictures differ from each other, and the seed changes them.
    flat = bg.flatten(1)
    dist = torch.cdist(flat, flat)
    assert (dist + torch.eye(len(kinds)) * 1e9).min() > 1.0
    again = synthetic_backgrounds(kinds, 64, generator=torch.Generator().manual_seed(0))
    other = synthetic_backgrounds(kinds, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(bg, again) and not torch.allclose(bg, other)
    # Frequencies: stripes / checks / clutter carry sharp edges, gradients none.
    grad = (bg[..., 1:, :] - bg[..., :-1, :]).abs().amax(dim=(1, 2, 3)).reshape(3, len(KINDS)).amax(dim=0)
    assert grad[KINDS.index("linear")] < 0.1 and grad[KINDS.index("clutter")] > 0.2
    with pytest.raises(ValueError, match="kinds"):
        synthetic_backgrounds([len(KINDS)], 8)


def test_random_kinds_cover_all_kinds():
    k = random_kinds(400, np.random.default_rng(0))
    assert set(k) == set(range(len(KINDS)))


def test_losses_and_iou_analytic():
    t = torch.zeros(2, 1, 8, 8)
    t[:, :, :4] = 1  # top half
    big = (t * 2 - 1) * 50  # confident, right logits
    assert soft_iou_loss(big, t) < 1e-6
    assert soft_iou_loss(-big, t) == pytest.approx(1 - 1 / 65, abs=1e-6)  # 1 - (0 + 1) / (32 + 32 + 1)
    p = torch.zeros(2, 1, 8, 8)
    p[:, :, 2:6] = 1  # overlaps half of the top half
    torch.testing.assert_close(mask_iou(p, t), torch.full((2,), 16 / 48))
    torch.testing.assert_close(mask_iou(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)), torch.ones(1))
    bg = torch.full((1, 3, 2, 2), 0.5)
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    lit = torch.tensor([0.2, 0.4, 0.6]).reshape(1, 3, 1, 1) * a
    out = compose(lit, a, bg)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.2, 0.4, 0.6]))
    torch.testing.assert_close(out[0, :, 0, 1], torch.full((3,), 0.5))
    torch.testing.assert_close(out[0, :, 1, 0], torch.tensor([0.35, 0.45, 0.55]))


def test_make_batch_shapes_ranges_and_target():
    task = SegmentTask(tiny())
    raw = _fake_stream_batch()
    batch = task.make_batch(raw, torch.Generator().manual_seed(0), np.random.default_rng(0))
    n = 2 * tiny().views_per_character
    assert batch["image"].shape == (n, 3, 32, 32) and batch["alpha"].shape == (n, 1, 32, 32)
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1
    assert batch["alpha"].min() >= 0 and batch["alpha"].max() <= 1
    # No jitter, no styles: the picture is the render where alpha is 1 and background elsewhere.
    plain = SegmentTask(dataclasses.replace(tiny(), scale_range=(1.0, 1.0), shift_jitter=0.0, style_probability=0.0))
    b = plain.make_batch(raw, torch.Generator().manual_seed(0), np.random.default_rng(0))
    box = raw["alpha"][0, 0, 0]  # every view has the same box
    assert torch.allclose(b["alpha"], box.expand_as(b["alpha"]), atol=1e-5)
    # Inside the figure the picture is the render; outside, synthetic backgrounds (different per picture).
    lit = raw["lit"][:, 0].reshape(-1, 3, 32, 32)
    inside = box.expand(3, 32, 32) > 0.5
    for img in b["image"]:
        assert any(torch.allclose(img[inside], lit[j][inside]) for j in range(lit.shape[0]))
    assert b["image"][:, :, 0, 0].std(dim=0).max() > 0.01


def test_loss_falls_on_a_fixed_batch():
    task = SegmentTask(tiny())
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.make_batch(_fake_stream_batch(), torch.Generator().manual_seed(0), np.random.default_rng(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def total() -> torch.Tensor:
        terms = task.losses(model, batch, 0)
        assert set(terms) == {"bce", "dice"}
        return sum(terms.values())

    first = float(total().detach())
    for _ in range(40):
        opt.zero_grad()
        total().backward()
        opt.step()
    assert float(total().detach()) < 0.5 * first


def test_images_grid_and_presets():
    task = SegmentTask(tiny())
    model = task.build_model()
    batch = task.make_batch(_fake_stream_batch(), torch.Generator().manual_seed(0))
    grid = task.images(model, batch)["samples"]
    assert grid.shape == (2, 3, 32, 128) and grid.min() >= 0 and grid.max() <= 1
    torch.testing.assert_close(grid[:, :, :, 64:96], batch["alpha"][:2].expand(2, 3, 32, 32))
    g = segmentation_grid(torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    assert torch.equal(g[..., 24:], torch.zeros(1, 3, 8, 8))  # a full prediction shows the picture itself
    assert set(PRESETS) == {"tiny", "small", "paper"}
    assert PRESETS["paper"]().model == PRESETS["small"]().model
    for kw, field in (({"resolution": 31}, "resolution"), ({"scale_range": (1.2, 0.8)}, "scale_range"),
                      ({"views_per_character": 9}, "views_per_character"), ({"shift_jitter": 0.7}, "shift_jitter")):
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(tiny(), **kw)


def test_registry_knows_the_task():
    from stdgen.train.tasks import get_preset, get_task_class

    assert get_task_class("segment") is SegmentTask
    assert get_preset("segment", "tiny").resolution == 32


@pytest.mark.slow
def test_validate_on_the_render_stream():
    task = SegmentTask(tiny())
    model = task.build_model()
    m = task.validate(model, "cpu")
    assert set(m) == {"val/iou", "val/iou_min"} and 0 <= m["val/iou_min"] <= m["val/iou"] <= 1
    image, alpha = task._validation_batch(torch.device("cpu"))
    assert image.shape == (4, 3, 32, 32) and (alpha.flatten(1).amax(1) > 0.9).all()
    assert task.validate(model, "cpu") == m  # fixed pictures


@pytest.mark.slow
def test_two_step_smoke_run(tmp_path):
    """``stdgen train segment --preset tiny``: two steps on the real stream (CPU, ~20 s), weights exported."""
    from stdgen.cli import main
    from stdgen.models.segment import Segmenter

    run = tmp_path / "run"
    assert main(["train", "segment", "--preset", "tiny", "-o", str(run), "--steps", "2", "--device", "cpu",
                 "--quiet"]) == 0
    model = Segmenter.from_pretrained(run / "export")
    assert model.predict(np.zeros((40, 30, 3), np.uint8)).shape == (40, 30)
