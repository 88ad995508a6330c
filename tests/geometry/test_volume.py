"""Volume rendering against a brute-force per-sample loop, and the equations' special cases."""

import math

import pytest
import torch

from stdgen.geometry.volume import composite, render_rays
from stdgen.structures.semantics import LAYER_SETS, Part


def _samples(seed, rays=5, n=9, k=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sigma = torch.rand(rays, n, generator=g, dtype=dtype) * 4
    color = torch.rand(rays, n, 3, generator=g, dtype=dtype)
    t = torch.sort(torch.rand(rays, n, generator=g, dtype=dtype) * 2 + 0.5, -1).values
    logits = torch.randn(rays, n, k, generator=g, dtype=dtype) * 2
    return sigma, color, t, logits


def _brute(sigma, color, t, logits, kept):
    """One ray, one sample at a time, straight from the equations."""
    rays, n = sigma.shape
    out_c, out_s, out_o, out_d = [], [], [], []
    for r in range(rays):
        trans, c, s, o, d = 1.0, 0.0, 0.0, 0.0, 0.0
        for i in range(n):
            delta = (t[r, i + 1] - t[r, i]) if i + 1 < n else (t[r, i] - t[r, i - 1])
            alpha = 1 - math.exp(-float(sigma[r, i]) * float(delta))
            p = torch.softmax(logits[r, i], -1)
            q = 1.0 if kept is None else float(sum(p[int(x)] for x in kept))
            w = trans * alpha * q
            c = c + w * color[r, i]
            s = s + w * p
            o += w
            d += w * float(t[r, i])
            trans *= 1 - alpha * q
        out_c.append(c)
        out_s.append(s)
        out_o.append(o)
        out_d.append(d)
    return torch.stack(out_c), torch.stack(out_s), torch.tensor(out_o), torch.tensor(out_d)


@pytest.mark.parametrize("kept", [None, (Part.BODY,), (Part.CLOTHES,), LAYER_SETS["body_clothes"]])
def test_matches_brute_force(kept):
    sigma, color, t, logits = _samples(1)
    out = composite(sigma, color, t, logits=logits, kept=kept)
    c, s, o, d = _brute(sigma, color, t, logits, kept)
    # The 1e-10 in the transmittance product is below these tolerances.
    torch.testing.assert_close(out.color, c, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(out.semantics, s, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(out.opacity, o.to(out.opacity), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(out.depth, d.to(out.depth), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(out.semantics.sum(-1), out.opacity)


def test_eq2_with_certain_semantic_is_eq1_and_all_kept_is_plain():
    sigma, color, t, logits = _samples(2)
    certain = torch.full_like(logits, -1e4)
    certain[..., int(Part.HAIR)] = 1e4  # p_hair = 1 everywhere
    plain = composite(sigma, color, t, logits=certain)
    eq2 = composite(sigma, color, t, logits=certain, kept=Part.HAIR)
    torch.testing.assert_close(eq2.color, plain.color)
    torch.testing.assert_close(eq2.opacity, plain.opacity)
    # With p_body = 0 the body rendering is empty.
    assert composite(sigma, color, t, logits=certain, kept=Part.BODY).opacity.abs().max() < 1e-12
    a = composite(sigma, color, t, logits=logits, kept=LAYER_SETS["full"])
    b = composite(sigma, color, t, logits=logits)
    torch.testing.assert_close(a.color, b.color, rtol=0, atol=0)
    torch.testing.assert_close(a.semantics, b.semantics, rtol=0, atol=0)


def test_uniform_slab_opacity_closed_form():
    # Constant density over [0, L]: opacity 1 - exp(-sigma L), and with N bins exactly that.
    n, length, density = 64, 0.8, 3.0
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n * length
    out = composite(torch.full((1, n), density, dtype=torch.float64), torch.ones(1, n, 3, dtype=torch.float64),
                    t[None], deltas=torch.full((1, n), length / n, dtype=torch.float64))
    # 1e-7: the 1e-10 added to each transmittance factor (cumprod gradient safety) adds up over 64 samples.
    assert abs(out.opacity.item() - (1 - math.exp(-density * length))) < 1e-7


def test_gradients_by_finite_differences():
    sigma, color, t, logits = _samples(3, rays=2, n=5)
    args = [sigma.requires_grad_(), color.requires_grad_(), logits.requires_grad_()]

    def fn(s, c, lg):
        o = composite(s, c, t, logits=lg, kept=[Part.BODY, Part.HAIR])
        return o.color, o.semantics, o.depth

    assert torch.autograd.gradcheck(fn, args)


def _field(points):
    """A soft sphere of radius 0.5 whose class depends on height (body below, hair above)."""
    r = points.norm(dim=-1)
    sigma = 30 * torch.sigmoid((0.5 - r) * 40)
    color = torch.stack([points[:, 0].abs(), points[:, 1].abs(), r], -1)
    logits = torch.stack([-10 * points[:, 1], torch.zeros_like(r), 10 * points[:, 1]], -1)
    return sigma, color, logits


def test_render_rays_chunking_and_checkpointing():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(7, 11, 3, generator=g, dtype=torch.float64) * 0.2 + torch.tensor([0.0, 0.0, 2.0],
                                                                                        dtype=torch.float64)
    d = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand(7, 11, 3)
    whole = render_rays(_field, o, d, 1.0, 3.0, 48, kept=Part.BODY, chunk=10_000)
    chunked = render_rays(_field, o, d, 1.0, 3.0, 48, kept=Part.BODY, chunk=13)
    assert whole.color.shape == (7, 11, 3) and whole.semantics.shape == (7, 11, 3)
    torch.testing.assert_close(whole.color, chunked.color)
    torch.testing.assert_close(whole.weights, chunked.weights)
    assert whole.opacity.max() > 0.5  # the sphere is hit

    planes = o.clone().requires_grad_()
    a = render_rays(_field, planes, d, 1.0, 3.0, 16, chunk=20).color.sum()
    ga = torch.autograd.grad(a, planes)[0]
    b = render_rays(_field, planes, d, 1.0, 3.0, 16, chunk=20, checkpoint=True).color.sum()
    gb = torch.autograd.grad(b, planes)[0]
    torch.testing.assert_close(ga, gb)


def test_bad_inputs():
    sigma, color, t, logits = _samples(0)
    with pytest.raises(ValueError, match="needs class logits"):
        composite(sigma, color, t, kept=Part.BODY)
    with pytest.raises(ValueError, match="color"):
        composite(sigma, color[:, :3], t)
    with pytest.raises(ValueError, match="empty"):
        composite(sigma, color, t, logits=logits, kept=[])


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    sigma, color, t, logits = _samples(4, rays=64, n=32)
    a = composite(sigma, color, t, logits=logits, kept=Part.CLOTHES)
    b = composite(sigma.cuda(), color.cuda(), t.cuda(), logits=logits.cuda(), kept=Part.CLOTHES)
    torch.testing.assert_close(a.color, b.color.cpu())
    torch.testing.assert_close(a.semantics, b.semantics.cpu())
