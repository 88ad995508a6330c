"""Pose canonicalisation: the model, its A-pose check, its training task and CLI, on tiny CPU configs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from stdgen.models.canonical import (
    Canonicalizer,
    CanonicalizerConfig,
    paper_config,
    small_config,
    tiny_config,
)
from stdgen.models.canonical.model import (
    FIGURE_HEIGHT,
    ReferenceContext,
    frame_like_dataset,
    reference_attention_reference,
    to_straight_rgba,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0, **kw) -> Canonicalizer:
    torch.manual_seed(seed)
    m = Canonicalizer(dataclasses.replace(tiny_config(), **kw))
    # Zero-initialised output projections make a fresh model ignore attention; open them so the
    # tests see the reference path.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.abs().sum() == 0 and ("to_out" in name or "net.2" in name or "conv_out" in name):
                p.normal_(0, 0.2)
    return m


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("field,value,msg", [
    ("channels", (16, 20), "norm_groups"),
    ("attention_levels", (True,), "attention_levels"),
    ("patch_size", 3, "patch_size"),
    ("resolution", 18, "resolution"),
    ("check_threshold", 1.0, "check_threshold"),
    ("check_resolution", 2, "check_resolution"),
    ("default_guidance", 0.5, "default_guidance"),
    ("shift", 0.5, "shift"),
])
def test_config_validation_names_field(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        dataclasses.replace(tiny_config(), **{field: value})


def test_config_json_round_trip():
    c = small_config()
    d = json.loads(json.dumps(c.to_dict()))
    assert CanonicalizerConfig.from_dict(d) == c


# ------------------------------------------------------------------------------------------ model
def test_forward_shapes():
    m = _model()
    out = m(_rand(2, 4, 16, 16), torch.rand(2), _rand(2, 4, 32, 32, seed=1), torch.tensor([True, False]))
    assert out.sample.shape == (2, 4, 16, 16)
    assert out.pose.shape == (2, 3)
    with pytest.raises(ValueError, match="reference"):
        m(_rand(2, 4, 16, 16), torch.rand(2), _rand(2, 4, 18, 18))


def test_reference_attention_equals_concatenated_kv_reference():
    m = _model()
    block = m.denoiser.attention_modules()[0]
    x = _rand(2, 5, block.norm_self.normalized_shape[0])
    ref = _rand(2, 7, x.shape[-1], seed=1)
    fast = block.self_attn(x, torch.cat([x, ref], dim=1))
    slow = reference_attention_reference(block.self_attn, x, ref)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    # And the block reads its own bank slot: the same block with another reference differs.
    h = _rand(2, x.shape[-1], 2, 2, seed=2)
    ctx = ReferenceContext("read", _rand(2, 4, 16, seed=3), {block.index: ref[:, :4]})
    ctx2 = ReferenceContext("read", ctx.tokens, {block.index: ref[:, :4] + 1})
    assert not torch.allclose(block(h, ctx), block(h, ctx2))


def test_reference_banks_match_denoiser_blocks():
    m = _model()
    ctx = m.encode_reference(_rand(1, 4, 16, 16))
    dn = m.denoiser.attention_modules()
    assert sorted(k for k in ctx.bank if k >= 0) == [b.index for b in dn]
    for b in dn:  # same layer, same width and token count (same resolution)
        assert ctx.bank[b.index].shape[-1] == b.norm_self.normalized_shape[0]


def test_reference_changes_the_output():
    m = _model()
    x, s = _rand(1, 4, 16, 16), torch.full((1,), 0.5)
    a = m(x, s, _rand(1, 4, 16, 16, seed=1)).sample
    b = m(x, s, _rand(1, 4, 16, 16, seed=2)).sample
    assert (a - b).abs().mean() > 1e-3
    # Dropped: the reference no longer matters.
    keep = torch.tensor([False])
    c = m(x, s, _rand(1, 4, 16, 16, seed=1), keep).sample
    d = m(x, s, _rand(1, 4, 16, 16, seed=2), keep).sample
    torch.testing.assert_close(c, d)


def test_unused_reference_parameters_are_only_after_the_last_block():
    m = Canonicalizer(dataclasses.replace(tiny_config(), attention_levels=(False, True)))
    unused = m.unused_reference_parameters()
    up_path = ("reference_net.up_res.", "reference_net.upsample.", "reference_net.up_attn.")
    assert unused and all(n.startswith(up_path) for n in unused)
    ref = _rand(2, 4, 16, 16)
    out = m(_rand(2, 4, 16, 16), torch.rand(2), ref, torch.tensor([True, False]))
    (out.sample.sum() + out.pose.sum()).backward()
    no_grad = {n for n, p in m.named_parameters() if p.grad is None}
    assert no_grad == set(unused)


def test_sampling_is_seeded_and_shapes():
    m = _model()
    ref = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    a = m.sample(ref, seed=3, steps=2)
    b = m.sample(ref, seed=3, steps=2)
    c = m.sample(ref, seed=4, steps=2)
    assert a.shape == (2, 4, 16, 16) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert m.sample(ref, seed=3, steps=2, guidance=1.0, resolution=32).shape == (2, 4, 32, 32)


def test_canonicalize_and_pil_helper():
    from PIL import Image

    m = _model()
    img = torch.rand(4, 20, 12, generator=torch.Generator().manual_seed(0))
    out = m.canonicalize(img, seed=0, steps=2)
    assert out.shape == (4, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out, m.canonicalize(img, seed=0, steps=2))
    pil = m.canonicalize_pil(Image.new("RGB", (24, 24), (200, 30, 30)), seed=0, steps=1)
    assert pil.mode == "RGBA" and pil.size == (16, 16)
    ok, p = m.is_a_pose(img)
    assert isinstance(ok, bool) and 0.0 <= p <= 1.0 and ok == (p >= m.config.check_threshold)


def test_save_load_round_trip(tmp_path):
    m = _model()
    m.save_pretrained(tmp_path / "w")
    m2 = Canonicalizer.from_pretrained(tmp_path / "w")
    ref = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m.sample(ref, seed=0, steps=2), m2.sample(ref, seed=0, steps=2))
    assert m2.config == m.config


def test_paper_config_builds_and_runs_forward_at_tiny_resolution():
    m = Canonicalizer(paper_config())
    assert m.num_parameters() > 100e6
    with torch.no_grad():
        out = m(torch.randn(1, 4, 16, 16), torch.rand(1), torch.randn(1, 4, 16, 16))
    assert out.sample.shape == (1, 4, 16, 16) and out.pose.shape == (1, 3)


def test_small_config_size():
    m = Canonicalizer(small_config())
    assert 8e6 < m.num_parameters() < 13e6  # ~11 MB in int8: within the bundled-weights budget


def test_straight_rgba_and_dataset_framing():
    x = torch.ones(4, 8, 8)
    x[3] = 0
    x[3, 2:6, 3:5] = 0.5
    x[:3, 2:6, 3:5] = 0.6  # 0.2 straight colour over white at alpha 0.5: 0.2 * 0.5 + 0.5
    s = to_straight_rgba(x)
    torch.testing.assert_close(s[:3, 3, 3], torch.full((3,), 0.2))
    assert (s[:3, 0, 0] == 1).all()
    # A 10 x 4 figure off-centre -> height 91 % of 64, centred.
    img = torch.zeros(4, 40, 30)
    img[:3] = 0.3
    img[3, 5:15, 2:6] = 1.0
    f = frame_like_dataset(img, 64)
    rows = torch.nonzero((f[3] > 0.5).any(1)).flatten()
    cols = torch.nonzero((f[3] > 0.5).any(0)).flatten()
    assert abs((rows[-1] - rows[0] + 1).item() - FIGURE_HEIGHT * 64) <= 1.5
    assert abs((rows[0] + rows[-1]).item() / 2 - 31.5) <= 1 and abs((cols[0] + cols[-1]).item() / 2 - 31.5) <= 1
    torch.testing.assert_close(f[:3, 32, 32], torch.full((3,), 0.3), atol=1e-3, rtol=0)


def test_frame_reference_matches_dataset_framing():
    # The batched re-framing of model-space pictures agrees with frame_like_dataset (one picture at a
    # time, [0, 1] straight RGBA) to within a pixel's bilinear difference.
    m = _model(concat_reference=True)
    img = torch.zeros(4, 32, 32)
    img[:3] = 1.0
    img[3, 6:20, 10:16] = 1.0
    img[:3, 6:20, 10:16] = torch.tensor([0.2, 0.4, 0.8])[:, None, None]
    empty = torch.cat([torch.ones(3, 32, 32), torch.zeros(1, 32, 32)])
    batch = torch.stack([img, empty]) * 2 - 1
    out = (m.frame_reference(batch) + 1) / 2
    want = frame_like_dataset(img, 32)
    a, b = out[0, 3] > 0.5, want[3] > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.85
    assert abs(int(a.any(1).sum()) - FIGURE_HEIGHT * 32) <= 1.5
    torch.testing.assert_close(out[0, :3, 16, 16], torch.tensor([0.2, 0.4, 0.8]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], (batch[1] + 1) / 2)  # nothing to frame: unchanged


def test_concat_reference_uses_the_pixels_and_widens_old_weights():
    old = _model(seed=3)
    new = Canonicalizer(dataclasses.replace(tiny_config(), concat_reference=True))
    assert new.denoiser.conv_in.weight.shape[1] == 2 * old.denoiser.conv_in.weight.shape[1]
    state = new.widen_input_state(dict(old.state_dict()))
    new.load_state_dict(state, strict=True)
    x, s, ref = _rand(2, 4, 16, 16), torch.rand(2), _rand(2, 4, 16, 16, seed=1)
    # Zero weights on the new channels: the widened model computes what the old one did.
    torch.testing.assert_close(new(x, s, ref).sample, old(x, s, ref).sample, rtol=1e-5, atol=1e-5)
    # Once they are non-zero, the re-framed reference pixels reach the output.
    with torch.no_grad():
        new.denoiser.conv_in.weight[:, 16:].normal_(0, 0.3)
    ctx = new.encode_reference(ref)
    assert ctx.pixels is not None and ctx.pixels.shape == ref.shape
    a = new.denoise(x, s, ctx)
    ctx.pixels = ctx.pixels + 1
    assert (new.denoise(x, s, ctx) - a).abs().mean() > 1e-3
    # Through the trainer's --init path too (load_weights with the task's adapt_init).
    from stdgen.models.modeling import load_weights
    from stdgen.train.tasks.canon import CanonTask, tiny

    task = CanonTask(dataclasses.replace(tiny(), model=new.config))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        old.save_pretrained(d)
        fresh = task.build_model()
        load_weights(fresh, d, adapt=lambda st: task.adapt_init(fresh, st))
    torch.testing.assert_close(fresh.denoiser.conv_in.weight[:, :16], old.denoiser.conv_in.weight)


# ------------------------------------------------------------------------------------------ task
def _fake_stream_batch(b: int = 2, res: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(b, 1, 6, 1, res, res)
    alpha[..., res // 8: 7 * res // 8, res // 3: 2 * res // 3] = 1.0
    lit = torch.rand(b, 1, 6, 3, res, res, generator=g) * alpha + (1 - alpha)
    pa = torch.zeros(b, 1, res, res)
    pa[..., res // 4: 3 * res // 4, res // 4: res // 2] = 1.0
    return {"lit": lit, "alpha": alpha, "posed_lit": torch.rand(b, 3, res, res, generator=g) * pa + (1 - pa),
            "posed_alpha": pa, "posed_normal": torch.nn.functional.normalize(torch.randn(b, 3, res, res), dim=1) * pa,
            "posed_depth": 2.0 * pa, "posed_is_apose": torch.arange(b) % 2 == 0,
            "posed_arm_deg": torch.tensor([[45.0, 44.0], [-10.0, 30.0]])[:b]}


def test_task_loss_decreases_on_a_fixed_batch():
    from stdgen.train.tasks.canon import CanonTask, tiny

    task = CanonTask(tiny())
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.make_batch(_fake_stream_batch(), torch.Generator().manual_seed(0))
    assert batch["target"].shape == (2, 4, 16, 16) and batch["ref"].shape == (2, 4, 16, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def total(step: int) -> torch.Tensor:
        torch.manual_seed(1000)  # the same noise, sigmas and dropout every evaluation
        terms = task.losses(model, batch, step)
        assert set(terms) == {"rgb", "alpha", "check", "arms"}
        return sum(terms.values())

    with torch.no_grad():
        first = total(0).item()
    for step in range(30):
        opt.zero_grad()
        total(step).backward()
        opt.step()
    with torch.no_grad():
        last = total(0).item()
    assert last < 0.7 * first, (first, last)


def test_task_images_and_metrics():
    from stdgen.train.tasks.canon import CanonTask, canon_metrics, tiny

    task = CanonTask(tiny())
    model = task.build_model()
    batch = task.make_batch(_fake_stream_batch(), None)
    assert task.images(model, batch)["samples"].shape == (1, 3, 16, 48)
    true = (batch["target"] + 1) / 2
    m = canon_metrics(true, true)
    assert torch.allclose(m["ssim"], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(m["mask_iou"], torch.ones(2, dtype=torch.float64))
    posed = batch["ref"]
    assert float(canon_metrics(posed, true)["mask_iou"].mean()) < 0.9


def test_preset_validation():
    from stdgen.train.tasks.canon import tiny

    p = tiny()
    with pytest.raises(ValueError, match="resolution"):
        dataclasses.replace(p, resolution=10)
    with pytest.raises(ValueError, match="apose_fraction"):
        dataclasses.replace(p, apose_fraction=1.5)
    with pytest.raises(ValueError, match="batch_repeats"):
        dataclasses.replace(p, batch_repeats=0)
    with pytest.raises(ValueError, match="sigma_logit_mean"):
        dataclasses.replace(p, sigma_logit_mean=-5.0)


def test_batch_repeats_reuse_each_streamed_batch(monkeypatch):
    # Each streamed batch gives batch_repeats training batches (same target, fresh augmentation draw).
    import stdgen.data.stream as stream
    from stdgen.train.tasks.canon import CanonTask, tiny

    raws = [_fake_stream_batch(seed=k) for k in range(3)]
    monkeypatch.setattr(stream, "RenderStream", lambda cfg: iter(raws))
    task = CanonTask(dataclasses.replace(tiny(), batch_repeats=2))
    it = task.batches(rank=0, world_size=1, device="cpu", seed=0)
    got = [next(it) for _ in range(4)]
    torch.testing.assert_close(got[0]["target"], got[1]["target"])
    torch.testing.assert_close(got[2]["target"], got[3]["target"])
    assert not torch.equal(got[1]["target"], got[2]["target"])


@pytest.mark.slow
def test_stream_posed_inputs():
    from stdgen.data.stream import RenderStream, StreamConfig

    cfg = StreamConfig(batch_size=2, resolution=32, views="gen", layers=("full",), maps=("lit",), count=2,
                       posed_input=True, apose_input_fraction=1.0, device="cpu")
    b = next(iter(RenderStream(cfg)))
    assert b["posed_lit"].shape == (2, 3, 32, 32) and b["posed_alpha"].shape == (2, 1, 32, 32)
    assert b["posed_is_apose"].all()
    assert ((b["posed_arm_deg"] - 45).abs() < 8).all()  # the positives: within 5 + asymmetry of 45


@pytest.mark.slow
def test_train_canon_tiny_smoke(tmp_path):
    from stdgen.cli import main

    run = tmp_path / "run"
    assert main(["train", "canon", "--preset", "tiny", "-o", str(run), "--steps", "2", "--device", "cpu", "--quiet",
                 "--set", "train.val_every=2"]) == 0
    lines = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    val = [d["validation"] for d in lines if "validation" in d][-1]
    assert {"val/ssim", "val/psnr_fg", "val/mask_iou", "val/apose_accuracy"} <= set(val)
    m = Canonicalizer.from_pretrained(run / "export")
    assert m.config == tiny_config()


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    _model().save_pretrained(root / "canon")
    return root


def _picture(path, size=(24, 32)):
    from PIL import Image

    img = Image.new("RGBA", size, (0, 0, 0, 0))
    for x in range(8, 16):
        for y in range(4, 28):
            img.putpixel((x, y), (200, 40, 40, 255))
    img.save(path)
    return path


def test_canonicalize_cli_writes_both_pictures(tmp_path, weights, capsys):
    from PIL import Image

    from stdgen.cli import main

    src = _picture(tmp_path / "in.png")
    out = tmp_path / "apose.png"
    args = ["canonicalize", str(src), "-o", str(out), "--steps", "2", "--weights", str(weights), "--device", "cpu",
            "--quiet", "--pose", "any"]
    assert main(args) == 0
    a, pair = Image.open(out), Image.open(tmp_path / "apose_before_after.png")
    assert a.mode == "RGBA" and a.size == (16, 16)
    assert pair.size[1] == 16 and pair.size[0] > 32
    assert main(args) == 0  # its own outputs are replaced without --overwrite
    # --pose apose: only re-framed; the figure is 91 % of the height.
    assert main(args[:-1] + ["apose"]) == 0
    import numpy as np

    alpha = np.asarray(Image.open(out))[..., 3] > 127
    rows = np.nonzero(alpha.any(1))[0]
    assert abs(rows[-1] - rows[0] + 1 - FIGURE_HEIGHT * 16) <= 1.5
    assert not list(tmp_path.glob(".tmp*"))


def test_canonicalize_cli_one_line_errors(tmp_path, weights, capsys, no_bundled_weights):
    from stdgen.cli import main

    src = _picture(tmp_path / "in.png")
    foreign = tmp_path / "mine.png"
    foreign.write_bytes(b"not stdgen's")
    cases = [
        (["canonicalize", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")], "no such file"),
        (["canonicalize", str(src), "-o", str(tmp_path / "o.png"), "--steps", "0"], "--steps"),
        (["canonicalize", str(src), "-o", str(tmp_path / "o.jpg")], ".png"),
        (["canonicalize", str(src), "-o", str(tmp_path / "o.png"), "--device", "gpu9"], "not a device"),
        (["canonicalize", str(src), "-o", str(src)], "input"),
        (["canonicalize", str(src), "-o", str(foreign), "--weights", str(weights)], "--overwrite"),
        (["canonicalize", str(src), "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "none"),
          "--device", "cpu"], "canon"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert foreign.read_bytes() == b"not stdgen's"
    assert not (tmp_path / "o.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_small_preset_trains_and_samples_on_cuda_in_bf16():
    from stdgen.train.tasks.canon import CanonTask, small

    task = CanonTask(small())
    torch.manual_seed(0)
    model = task.build_model().cuda()
    raw = {k: v.cuda() for k, v in _fake_stream_batch(b=2, res=128).items()}
    batch = task.make_batch(raw, torch.Generator(device="cuda").manual_seed(0))
    with torch.autocast("cuda", torch.bfloat16):
        loss = sum(task.losses(model, batch, 0).values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    img = torch.rand(4, 200, 150, generator=torch.Generator().manual_seed(0))
    a = model.canonicalize(img, seed=0, steps=2, guidance=2.0)
    b = model.canonicalize(img, seed=0, steps=2, guidance=2.0)
    assert a.shape == (4, 128, 128)
    torch.testing.assert_close(a, b)
