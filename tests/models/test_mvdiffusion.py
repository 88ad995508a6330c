"""Multi-view diffusion: the diffusion toolkit, the model and its training task, on tiny CPU configs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from multiview_standin import fake_stream_batch

from stdgen.models.diffusion.attention import (
    Attention,
    domain_sequences,
    from_domain_sequences,
    from_image_sequences,
    from_row_sequences,
    image_sequences,
    masked_reference_attention,
    row_sequences,
)
from stdgen.models.diffusion.flow import FlowMatching
from stdgen.models.mvdiffusion import (
    MultiViewDiffusion,
    MultiViewDiffusionConfig,
    paper_config,
    prepare_image,
    small_config,
    tiny_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(seed: int = 0, shape=(2, 2, 3, 4, 5, 16)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("same,regroup,back", [("row", row_sequences, from_row_sequences),
                                               ("pixel", domain_sequences, from_domain_sequences),
                                               ("view", image_sequences, from_image_sequences)])
def test_grouped_attention_equals_masked_full_attention(same, regroup, back):
    torch.manual_seed(0)
    attn = Attention(16, heads=4, zero_init=False).double()
    t = _grid().double()
    fast = back(attn(regroup(t)), t.shape)
    ref = masked_reference_attention(attn, t, same)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


def test_row_attention_mixes_only_rows_across_views():
    """Changing one row of one view changes that row (all views, same domain) and nothing else."""
    torch.manual_seed(0)
    attn = Attention(16, heads=2, zero_init=False).double()
    t = _grid().double()
    u = t.clone()
    u[0, 1, 2, 3] += 1.0  # batch 0, domain 1, view 2, row 3
    d = (back := from_row_sequences)(attn(row_sequences(u)), u.shape) - back(attn(row_sequences(t)), t.shape)
    changed = d.abs().amax(dim=-1) > 1e-12  # (B, D, V, H, W)
    assert changed[0, 1, :, 3].all()
    changed[0, 1, :, 3] = False
    assert not changed.any()


def test_regroupings_round_trip():
    t = _grid(1)
    for f, g in ((row_sequences, from_row_sequences), (domain_sequences, from_domain_sequences),
                 (image_sequences, from_image_sequences)):
        assert torch.equal(g(f(t), t.shape), t)


def test_flow_matching_path_and_exact_velocity_sampler():
    """With the true velocity of a single clean point, Euler integration lands on it exactly."""
    fm = FlowMatching(shift=2.0)
    x0 = torch.randn(3, 4)
    eps = torch.randn(3, 4)
    s = torch.tensor([0.0, 0.5, 1.0])
    xt = fm.noisy(x0, eps, s)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[2], eps[2])
    torch.testing.assert_close(fm.denoised(xt, fm.velocity(x0, eps), s), x0)
    target = torch.randn(2, 3)

    def v(x, sigma):  # velocity of the straight path through x towards `target`
        return (x - target) / sigma[:, None].clamp_min(1e-6)

    out = fm.sample(v, (2, 3), steps=5, seed=1)
    torch.testing.assert_close(out, target, rtol=1e-4, atol=1e-4)
    assert torch.all((fm.sample_sigma(1000, "cpu") >= 0) & (fm.sample_sigma(1000, "cpu") <= 1))


def test_training_flow_moves_only_the_training_times():
    """A task's ``sigma_logit_mean`` draws more training steps near pure noise; the sampler's
    schedule (shift) is untouched."""
    from stdgen.models.diffusion.flow import training_flow

    fm = FlowMatching(shift=1.5, prediction="x")
    moved = training_flow(fm, 1.0)
    assert (moved.shift, moved.prediction, fm.logit_mean) == (1.5, "x", 0.0)
    g = lambda: torch.Generator().manual_seed(0)
    base, high = fm.sample_sigma(20000, "cpu", g()), moved.sample_sigma(20000, "cpu", g())
    # Analytic shares above sigma 0.9 (t > 6/7): 1 - Phi(logit(6/7) - mean) = 3.7 % and 21.5 %.
    assert abs(float((base > 0.9).float().mean()) - 0.037) < 0.01
    assert abs(float((high > 0.9).float().mean()) - 0.215) < 0.015
    assert torch.all(high >= base)  # same normal draws, moved up: monotone in the mean


def test_clean_image_prediction_samples_its_estimate_and_trains_on_the_velocity_loss():
    """prediction="x": an oracle that outputs the clean point lands on it exactly at any step count;
    the loss is the velocity error (equal to the "v" loss of the implied velocity above the floor)."""
    fm = FlowMatching(shift=2.0, prediction="x")
    target = torch.randn(2, 3)
    for steps in (1, 4):
        out = fm.sample(lambda x, sigma: target.expand_as(x), (2, 3), steps=steps, seed=3)
        torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)
    x0, eps = torch.randn(4, 5), torch.randn(4, 5)
    sigma = torch.tensor([0.01, 0.2, 0.6, 1.0])
    xt = fm.noisy(x0, eps, sigma)
    guess = torch.randn(4, 5)
    v_loss = FlowMatching().loss(fm.velocity_of(guess, xt, sigma), x0, eps, sigma)
    x_loss = fm.loss(guess, x0, eps, sigma)
    torch.testing.assert_close(x_loss[1:], v_loss[1:], rtol=1e-4, atol=1e-4)
    # Below the floor the weight is capped: 1 / 0.05^2, not 1 / 0.01^2.
    torch.testing.assert_close(x_loss[0], (guess[0] - x0[0]).square() / 0.05 ** 2)
    assert fm.loss(x0, x0, eps, sigma).abs().max() == 0
    with pytest.raises(ValueError, match="prediction"):
        FlowMatching(prediction="eps")
    with pytest.raises(ValueError, match="prediction"):
        dataclasses.replace(tiny_config(), prediction="eps")


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="attention_levels"):
        MultiViewDiffusionConfig(channels=(32, 64), attention_levels=(True,))
    with pytest.raises(ValueError, match="resolution"):
        dataclasses.replace(tiny_config(), resolution=17)
    with pytest.raises(ValueError, match="norm_groups"):
        dataclasses.replace(tiny_config(), norm_groups=7)
    cfg = tiny_config()
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _tiny_model(seed: int = 0) -> MultiViewDiffusion:
    torch.manual_seed(seed)
    return MultiViewDiffusion(tiny_config())


def test_forward_shapes_and_condition_drop():
    m = _tiny_model()
    x = torch.randn(2, 2, 6, 4, 16, 16)
    cond = torch.randn(2, 4, 16, 16)
    out = m(x, torch.rand(2), cond).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    # Dropping the condition of sample 1 leaves sample 0 untouched.
    keep = torch.tensor([True, False])
    out2 = m(x, torch.rand(2, generator=torch.Generator().manual_seed(0)), cond, keep).sample
    out3 = m(x, torch.rand(2, generator=torch.Generator().manual_seed(0)), cond).sample
    torch.testing.assert_close(out2[0], out3[0])
    with pytest.raises(ValueError, match="cond"):
        m(x, torch.rand(2), torch.randn(2, 3, 16, 16))


def test_views_interact_through_row_attention():
    """Perturbing view 0 changes view 5's prediction (joint denoising), but only in the rows that
    the perturbation can reach through the convolutions' receptive field and row attention."""
    m = _tiny_model()
    with torch.no_grad():
        for p in m.parameters():  # open the zero-initialised residual branches
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    x = torch.randn(1, 2, 6, 4, 16, 16)
    cond = torch.randn(1, 4, 16, 16)
    s = torch.tensor([0.5])
    base = m(x, s, cond).sample
    y = x.clone()
    y[0, 0, 0] += torch.randn(4, 16, 16)
    assert (m(y, s, cond).sample[0, 0, 5] - base[0, 0, 5]).abs().max() > 1e-6


def test_generate_is_deterministic_per_seed():
    m = _tiny_model()
    with torch.no_grad():
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    img = torch.rand(4, 24, 20)
    rgba, normal = m.generate(img, seed=3, steps=3)
    assert rgba.shape == (6, 4, 16, 16) and normal.shape == (6, 3, 16, 16)
    assert rgba.min() >= 0 and rgba.max() <= 1 and normal.min() >= 0 and normal.max() <= 1
    rgba2, normal2 = m.generate(img, seed=3, steps=3)
    assert torch.equal(rgba, rgba2) and torch.equal(normal, normal2)
    rgba3, _ = m.generate(img, seed=4, steps=3)
    assert not torch.equal(rgba, rgba3)


def test_prepare_image_composites_over_white_and_pads():
    img = torch.zeros(4, 8, 4)
    img[0] = 1.0  # red where opaque
    img[3, 2:6, 1:3] = 1.0
    out = prepare_image(img, 8)
    assert out.shape == (4, 8, 8)
    assert torch.allclose(out[:3, 0, 0], torch.ones(3))  # transparent -> white
    assert torch.allclose(out[:, 3, 3], torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_paper_config_builds_and_runs_forward_at_tiny_resolution():
    m = MultiViewDiffusion(paper_config())
    assert m.num_parameters() > 100e6
    with torch.no_grad():
        out = m(torch.randn(1, 2, 6, 4, 16, 16), torch.rand(1), torch.randn(1, 4, 16, 16)).sample
    assert out.shape == (1, 2, 6, 4, 16, 16)


def test_small_config_size():
    m = MultiViewDiffusion(small_config())
    assert 10e6 < m.num_parameters() < 16e6  # int8 export ~13 MB: within the bundled-weights budget


# ------------------------------------------------------------------------------------------ task
def test_task_loss_decreases_on_a_fixed_batch():
    from stdgen.train.tasks.mvdiff import MultiViewTask, tiny

    task = MultiViewTask(tiny())
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.make_batch(fake_stream_batch(), torch.Generator().manual_seed(0))
    assert batch["target"].shape == (2, 2, 6, 4, 16, 16) and batch["cond"].shape == (2, 4, 16, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def total(step: int) -> torch.Tensor:
        torch.manual_seed(1000)  # the same noise and sigmas every evaluation
        terms = task.losses(model, batch, step)
        assert set(terms) == {"rgb", "alpha", "normal"}
        return sum(terms.values())

    with torch.no_grad():
        first = total(0).item()
    for step in range(30):
        opt.zero_grad()
        total(step).backward()
        opt.step()
    with torch.no_grad():
        last = total(0).item()
    # Predicting zero costs ~5 (unit-variance noise plus the images); 30 steps of the tiny model take
    # off about 40 % (a detached or mis-wired branch takes off almost nothing).
    assert last < 0.7 * first, (first, last)


def test_task_images_and_metrics_shapes():
    from stdgen.train.tasks.mvdiff import MultiViewTask, multiview_metrics, tiny

    task = MultiViewTask(tiny())
    model = task.build_model()
    batch = task.make_batch(fake_stream_batch(), None)
    grids = task.images(model, batch)
    assert grids["samples"].shape == (1, 3, 64, 7 * 16)
    true = (batch["target"] + 1) / 2
    m = multiview_metrics(true, true)
    assert torch.allclose(m["ssim"], torch.ones(2, 6, dtype=torch.float64))
    assert torch.allclose(m["mask_iou"], torch.ones(2, 6, dtype=torch.float64))
    assert float(m["normal_deg"].nanmean()) < 1e-3


def test_preset_validation():
    from stdgen.train.tasks.mvdiff import PRESETS, tiny

    for make in PRESETS.values():
        make()
    with pytest.raises(ValueError, match="resolution_schedule"):
        dataclasses.replace(tiny(), resolution_schedule=((5, 16),))
    with pytest.raises(ValueError, match="cond_dropout"):
        dataclasses.replace(tiny(), cond_dropout=1.5)
    with pytest.raises(ValueError, match="sigma_logit_mean"):
        dataclasses.replace(tiny(), sigma_logit_mean=9.0)
    p = dataclasses.replace(small := PRESETS["small"](), resolution_schedule=((0, 128), (100, 256)))
    assert (p.resolution(99), p.resolution(100)) == (128, 256) and small.batch_size == 16


# ------------------------------------------------------------------------------------------- CLI
def test_write_views_layout(tmp_path):
    import numpy as np

    from stdgen.commands.multiview_cli import write_views
    from stdgen.utils.io import load_png

    rgba = torch.rand(6, 4, 8, 8)
    normal = torch.rand(6, 3, 8, 8)
    write_views(tmp_path / "out", rgba, normal)
    rgb = load_png(tmp_path / "out" / "rgb.png")
    assert rgb.shape == (8, 48, 4)
    # View 3 sits at columns 24..31, unchanged up to 8-bit rounding.
    np.testing.assert_allclose(rgb[:, 24:32] / 255.0, rgba[3].permute(1, 2, 0).numpy(), atol=0.5 / 255 + 1e-6)
    assert load_png(tmp_path / "out" / "normal.png").shape == (8, 48, 3)
    assert (tmp_path / "out" / "views.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left


def test_multiview_cli_errors(tmp_path, capsys):
    from stdgen.cli import main

    assert main(["multiview", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["multiview", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "not a picture" in capsys.readouterr().err
    assert main(["multiview", str(bad), "-o", str(tmp_path / "o"), "--steps", "0"]) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_small_preset_trains_and_samples_on_cuda_in_bf16():
    from stdgen.train.tasks.mvdiff import MultiViewTask, small

    task = MultiViewTask(small())
    torch.manual_seed(0)
    model = task.build_model().cuda()
    raw = {k: v.cuda() for k, v in fake_stream_batch(b=4, res=128).items()}
    batch = task.make_batch(raw, torch.Generator(device="cuda").manual_seed(0))
    with torch.autocast("cuda", torch.bfloat16):
        loss = sum(task.losses(model, batch, 0).values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    rgba, normal = model.generate(torch.rand(4, 256, 256), seed=0, steps=2)
    assert rgba.shape == (6, 4, 256, 256) and normal.shape == (6, 3, 256, 256)
    rgba2, _ = model.generate(torch.rand(4, 256, 256, generator=torch.Generator().manual_seed(0)), seed=0, steps=2)
    rgba3, _ = model.generate(torch.rand(4, 256, 256, generator=torch.Generator().manual_seed(0)), seed=0, steps=2)
    torch.testing.assert_close(rgba2, rgba3)  # seeded on the GPU too (bf16 kernels are deterministic here)


def test_config_accepts_json_lists():
    cfg = tiny_config()
    d = cfg.to_dict()
    assert isinstance(d["channels"], list)
    again = MultiViewDiffusionConfig(**{k: v for k, v in d.items() if k != "_class_name"})
    assert again == cfg and isinstance(again.channels, tuple)


def test_save_load_round_trip(tmp_path):
    m = _tiny_model()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    m.save_pretrained(tmp_path / "w")
    back = MultiViewDiffusion.from_pretrained(tmp_path / "w")
    assert back.config == m.config
    img = torch.rand(4, 16, 16)
    a, b = m.generate(img, seed=1, steps=2), back.generate(img, seed=1, steps=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.slow
def test_task_batches_from_the_render_stream():
    """The real stream (procedural characters, CPU renderer): keys, shapes, ranges, and the lit
    front view as the condition."""
    from stdgen.train.tasks.mvdiff import MultiViewTask, tiny

    task = MultiViewTask(dataclasses.replace(tiny(), resolution_schedule=((0, 32),), pool_size=1,
                                             style_probability=0.0, scale_jitter=0.0, shift_jitter=0.0))
    batch = next(task.batches(rank=0, world_size=1, device=torch.device("cpu"), seed=0))
    t, c = batch["target"], batch["cond"]
    assert t.shape == (2, 2, 6, 4, 32, 32) and c.shape == (2, 4, 32, 32)
    assert t.min() >= -1 and t.max() <= 1 and c.min() >= 0 and c.max() <= 1
    fg = t[:, 0, :, 3] > 0.9
    assert fg.any(dim=(2, 3)).all()  # every view shows the character
    norms = t[:, 1, :, :3].norm(dim=2)
    torch.testing.assert_close(norms[fg], torch.ones_like(norms[fg]), atol=1e-3, rtol=0)
    # The condition's silhouette is the front view's (no jitter here).
    torch.testing.assert_close(c[:, 3], (t[:, 0, 2, 3] + 1) / 2)
    assert set(task.losses(task.build_model(), batch, 0)) == {"rgb", "alpha", "normal"}


def test_short_attention_matches_sdpa():
    from stdgen.models.diffusion.attention import short_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 3, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(short_attention(q, k, v), ref, rtol=1e-6, atol=1e-6)


def test_pixel_refiner_starts_as_the_model_without_it(tmp_path):
    import dataclasses

    torch.manual_seed(0)
    old = MultiViewDiffusion(tiny_config()).eval()
    new = MultiViewDiffusion(dataclasses.replace(tiny_config(), pixel_refiner=8)).eval()
    with pytest.raises(RuntimeError, match="refiner"):
        new.load_state_dict(old.state_dict(), strict=True)
    new.load_state_dict(new.complete_state(dict(old.state_dict())), strict=True)
    args = (torch.randn(2, 2, 6, 4, 16, 16), torch.rand(2), torch.randn(2, 4, 16, 16))
    with torch.no_grad():
        assert torch.equal(old(*args).sample, new(*args).sample)
        new.refiner[2].weight.add_(0.01)  # once trained it changes the output, neighbours included
        diff = (new(*args).sample - old(*args).sample).abs()
    assert diff.amax() > 0 and (diff.flatten(0, 3).amax(0) > 0).all()
    new.save_pretrained(tmp_path / "w")
    back = MultiViewDiffusion.from_pretrained(tmp_path / "w")
    assert back.config.pixel_refiner == 8 and torch.equal(back.refiner[2].weight, new.refiner[2].weight)
    assert new.complete_state(dict(new.state_dict())).keys() == new.state_dict().keys()


def test_task_init_adds_the_pixel_refiner():
    import dataclasses

    from stdgen.train.tasks.mvdiff import MultiViewTask, tiny

    old = MultiViewDiffusion(tiny_config())
    p = tiny()
    task = MultiViewTask(dataclasses.replace(p, model=dataclasses.replace(p.model, pixel_refiner=4)))
    model = task.build_model()
    model.load_state_dict(task.adapt_init(model, dict(old.state_dict())), strict=True)
    assert torch.count_nonzero(model.refiner[2].weight) == 0
