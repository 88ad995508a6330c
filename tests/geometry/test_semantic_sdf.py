"""The semantic-equivalent SDF, Eqs. 3 and 10, on random fields."""

import numpy as np
import pytest
import torch

from stdgen.geometry.semantic_sdf import layer_sdf, semantic_sdf
from stdgen.structures.semantics import LAYER_SETS, PARTS, Part


def _field(seed, shape=(7, 5, 6)):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=shape)
    logits = rng.normal(size=shape + (3,)) * 2
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return f, p


@pytest.mark.parametrize("part", PARTS)
def test_eq3_principles(part):
    f, p = _field(int(part))
    s = int(part)
    others = np.delete(p, s, axis=-1).max(-1)
    fs = semantic_sdf(f, p, part)
    # Positive wherever the original field is positive.
    assert np.all(fs[f > 0] > 0)
    # Negative where inside and s wins strictly; positive where inside and s loses.
    assert np.all(fs[(f < 0) & (p[..., s] > others)] < 0)
    assert np.all(fs[(f < 0) & (p[..., s] < others)] > 0)
    # Where f = 0 but s does not win, still positive (the part ends there).
    f0 = np.where(p[..., s] < others, 0.0, f)
    assert np.all(semantic_sdf(f0, p, part)[p[..., s] < others] > 0)
    # Zero at a semantic boundary inside (s ties with the best other class).
    tie = p.copy()
    tie[..., s] = others
    tie /= tie.sum(-1, keepdims=True)
    inside = -np.abs(f)
    assert np.all(semantic_sdf(inside, tie, part) == 0)


def test_eq10_kept_sets():
    f, p = _field(5)
    # P = all parts is the plain field; P = {s} is Eq. 3.
    assert np.array_equal(layer_sdf(f, p, LAYER_SETS["full"]), f)
    for part in PARTS:
        assert np.allclose(layer_sdf(f, p, [part]), semantic_sdf(f, p, part))
    # {body, clothes}: inside where the better of body/clothes beats hair.
    fp = layer_sdf(f, p, LAYER_SETS["body_clothes"])
    keep = p[..., :2].max(-1) > p[..., 2]
    assert np.all(fp[(f < 0) & keep] < 0) and np.all(fp[(f < 0) & ~keep] > 0) and np.all(fp[f > 0] > 0)
    # Nested layer sets give nested regions.
    r_b, r_bc = layer_sdf(f, p, "body") < 0, fp < 0
    assert np.all(r_bc[r_b])


def test_scale_keeps_signs_and_torch_matches_numpy():
    f, p = _field(9)
    for part in PARTS:
        a = semantic_sdf(f, p, part)
        b = semantic_sdf(f, p, part, scale=0.01)
        assert np.array_equal(np.sign(a), np.sign(b))
        t = semantic_sdf(torch.tensor(f), torch.tensor(p), part, scale=0.3)
        assert np.allclose(t.numpy(), semantic_sdf(f, p, part, scale=0.3))
    t = layer_sdf(torch.tensor(f), torch.tensor(p), [Part.BODY, "clothes"])
    assert np.allclose(t.numpy(), layer_sdf(f, p, LAYER_SETS["body_clothes"]))


def test_bad_inputs():
    f, p = _field(1)
    with pytest.raises(ValueError, match="probabilities"):
        semantic_sdf(f, p[..., :2], Part.BODY)
    with pytest.raises(ValueError, match="at least one"):
        layer_sdf(f, p, [])
    with pytest.raises(ValueError, match="positive"):
        layer_sdf(f, p, "body", scale=0.0)
    with pytest.raises(ValueError, match="unknown part"):
        semantic_sdf(f, p, "shoes")
