"""The deterministic multi-view predictor, its training task, and the diffusion sampler started from
its mean (SDEdit), on tiny CPU configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from multiview_standin import fake_stream_batch

from stdgen.models.diffusion.flow import FlowMatching
from stdgen.models.mvdiffusion import (
    MultiViewDiffusion,
    MultiViewRegressor,
    MultiViewRegressorConfig,
    small_regressor_config,
    tiny_config,
    tiny_regressor_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int = 0) -> MultiViewRegressor:
    torch.manual_seed(seed)
    return MultiViewRegressor(tiny_regressor_config()).eval()


def test_output_layout_and_ranges():
    m = _tiny()
    out = m.sample(torch.rand(2, 4, 16, 16))
    assert out.shape == (2, 2, 6, 4, 16, 16)
    assert out.min() >= 0 and out.max() <= 1
    # One alpha for both domains.
    assert torch.equal(out[:, 0, :, 3], out[:, 1, :, 3])
    rgba, normal = m.generate(torch.rand(4, 24, 24), resolution=16)
    assert rgba.shape == (6, 4, 16, 16) and normal.shape == (6, 3, 16, 16)
    with pytest.raises(ValueError, match="multiples of 2"):
        m(torch.rand(1, 4, 15, 15))


def test_heads_are_linear_so_exact_targets_do_not_saturate():
    """A target of exactly 1 (the white background) is reached at a finite output: the heads are affine
    in the backbone's output, so L1 keeps a full gradient on the figure. With sigmoid heads the logits
    grew without end and the figure's colours came out white (session j's first weights)."""
    m = _tiny()
    with torch.no_grad():
        m.unet.conv_out.bias.fill_(1.0)
        m.unet.conv_out.weight.zero_()
    out = m(torch.rand(1, 4, 16, 16))
    torch.testing.assert_close(out, torch.ones_like(out))
    with torch.no_grad():
        m.unet.conv_out.bias.fill_(3.0)
    with torch.no_grad():
        assert float(m(torch.rand(1, 4, 16, 16)).min()) == 2.0
        assert float(m.sample(torch.rand(1, 4, 16, 16)).max()) == 1.0
    # The gradient of the output with respect to the last layer's bias is 0.5 whatever its value.
    m.zero_grad()
    m(torch.rand(1, 4, 16, 16))[0, 0, 2, 0].sum().backward()
    assert float(m.unet.conv_out.bias.grad[2 * 7]) == 0.5 * 16 * 16


def test_views_see_the_whole_picture():
    """A change in one corner of the picture reaches the far corner of every view (the middle block's
    attention): a convolution-only path of this depth would not."""
    m = _tiny()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.1)
    x = torch.rand(1, 4, 16, 16)
    y = x.clone()
    y[:, :, :2, :2] = 1 - y[:, :, :2, :2]
    d = (m(x) - m(y)).abs()[0, :, :, :, -1, -1]  # the opposite corner pixel, every domain / view / channel
    assert (d > 1e-6).all()


def test_sample_is_deterministic_and_ignores_the_seed():
    m = _tiny()
    c = torch.rand(2, 4, 16, 16)
    assert torch.equal(m.sample(c, seed=0), m.sample(c, seed=5, steps=9))


def test_config_validation_and_size():
    with pytest.raises(ValueError, match="views"):
        MultiViewRegressorConfig(views=4)
    with pytest.raises(ValueError, match="norm_groups"):
        dataclasses.replace(tiny_regressor_config(), norm_groups=7)
    n = sum(p.numel() for p in MultiViewRegressor(small_regressor_config()).parameters())
    assert 7.5e6 < n < 9e6, n  # the bundled-weights budget: int8 about 8 MB


def test_save_load_round_trip(tmp_path):
    m = _tiny()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    m.save_pretrained(tmp_path / "w")
    back = MultiViewRegressor.from_pretrained(tmp_path / "w")
    assert back.config == m.config
    c = torch.rand(1, 4, 16, 16)
    assert torch.equal(m.sample(c), back.sample(c))


def test_sampler_started_from_a_mean():
    """SDEdit start: with an oracle clean-image network the sampler lands on its estimate whatever the
    start; the first step's input is the init noised to exactly ``start_sigma``; ``start_sigma`` 1
    is the ordinary sampler."""
    fm = FlowMatching(shift=2.0, prediction="x")
    target, init = torch.randn(2, 3), torch.randn(2, 3)
    seen = []

    def oracle(x, sigma):
        seen.append((x.clone(), sigma.clone()))
        return target.expand_as(x)

    out = fm.sample(oracle, (2, 3), steps=3, seed=4, init=init, start_sigma=0.4)
    torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)
    eps = torch.randn((2, 3), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(seen[0][0], 0.6 * init + 0.4 * eps)
    torch.testing.assert_close(seen[0][1], torch.full((2,), 0.4))
    assert len(seen) == 3 and all(float(s[0]) < float(seen[0][1][0]) for _, s in seen[1:])
    # The steps are the full schedule's spacing: uniform in the unshifted time.
    t = [fm.unshifted(float(s[0])) for _, s in seen]
    assert abs((t[0] - t[1]) - (t[1] - t[2])) < 1e-6
    a = fm.sample(oracle, (2, 3), steps=2, seed=1, init=init, start_sigma=1.0)
    b = fm.sample(oracle, (2, 3), steps=2, seed=1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="start_sigma"):
        fm.sample(oracle, (2, 3), steps=2, init=init, start_sigma=0.0)
    with pytest.raises(ValueError, match="init"):
        fm.sample(oracle, (2, 3), steps=2, init=torch.zeros(3, 3), start_sigma=0.5)


def test_diffusion_model_from_the_regressors_mean(monkeypatch):
    """The diffusion model's first step sees the mean (in model space) noised to ``start_sigma`` with
    the seed's noise, at that noise level; the result is seeded."""
    torch.manual_seed(0)
    diff = MultiViewDiffusion(dataclasses.replace(tiny_config(), prediction="x", default_guidance=1.0)).eval()
    mean = _tiny().sample(c := torch.rand(1, 4, 16, 16))
    seen = []
    forward = diff.forward
    monkeypatch.setattr(diff, "forward", lambda x, sigma, *a: seen.append((x.clone(), sigma.clone()))
                        or forward(x, sigma, *a))
    out = diff.sample(c, seed=1, steps=2, init=mean, start_sigma=0.3)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(seen[0][0], 0.7 * (mean * 2 - 1) + 0.3 * eps)
    torch.testing.assert_close(seen[0][1], torch.tensor([0.3]))
    assert len(seen) == 2 and torch.equal(out, diff.sample(c, seed=1, steps=2, init=mean, start_sigma=0.3))


def test_task_loss_decreases_on_a_fixed_batch():
    from stdgen.train.tasks.mvreg import MultiViewRegressionTask, tiny

    task = MultiViewRegressionTask(tiny())
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.make_batch(fake_stream_batch(), torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    terms = task.losses(model, batch, 0)
    assert set(terms) == {"rgb", "alpha", "normal", "ssim"}
    first = float(sum(terms.values()).detach())
    for step in range(30):
        opt.zero_grad()
        sum(task.losses(model, batch, step).values()).backward()
        opt.step()
    last = float(sum(task.losses(model, batch, 0).values()))
    assert last < 0.6 * first, (first, last)
    assert task.images(model, batch)["samples"].shape == (1, 3, 64, 7 * 16)


def test_task_repeats_each_streamed_batch(monkeypatch):
    """``batch_repeats``: each streamed batch gives that many training batches, each jittered anew."""
    from stdgen.train.tasks.mvreg import MultiViewRegressionTask, tiny

    raw = [fake_stream_batch(), fake_stream_batch()]
    task = MultiViewRegressionTask(dataclasses.replace(tiny(), batch_repeats=3, style_probability=0.0))
    monkeypatch.setattr(task, "_stream", lambda *a, **k: iter(raw))
    it = task.batches(rank=0, world_size=1, device=torch.device("cpu"), seed=0)
    got = [next(it) for _ in range(3)]
    assert all(torch.equal(g["target"], got[0]["target"]) for g in got)
    assert not torch.equal(got[0]["cond"], got[1]["cond"])  # fresh jitter per repeat
    with pytest.raises(ValueError, match="batch_repeats"):
        dataclasses.replace(tiny(), batch_repeats=0)
    with pytest.raises(ValueError, match="MultiViewRegressorConfig"):
        dataclasses.replace(tiny(), model=tiny_config())
