"""The figure segmenter: config checks, shapes, save/load, on tiny CPU configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stdgen.models.segment import Segmenter, SegmenterConfig, paper_config, small_config, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0) -> Segmenter:
    torch.manual_seed(seed)
    return Segmenter(tiny_config()).eval()


@pytest.mark.parametrize("kw,field", [({"channels": ()}, "channels"), ({"norm_groups": 5}, "norm_groups"),
                                      ({"convs_per_block": 0}, "convs_per_block"),
                                      ({"resolution": 30, "channels": (8, 16, 32)}, "resolution")])
def test_config_names_the_bad_field(kw, field):
    with pytest.raises(ValueError, match=field):
        SegmenterConfig(**kw)


def test_config_json_round_trip():
    c = SegmenterConfig.from_dict({"resolution": 64, "channels": [8, 16, 32], "convs_per_block": 1, "norm_groups": 4})
    assert c.channels == (8, 16, 32) and c.multiple == 4
    assert SegmenterConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="bogus"):
        SegmenterConfig.from_dict({"bogus": 1})


def test_sizes():
    n = Segmenter(small_config()).num_parameters()
    assert 1_000_000 <= n <= 2_000_000
    assert paper_config() == small_config()
    assert Segmenter(tiny_config()).num_parameters() < 10_000


def test_forward_shapes_and_bad_sides():
    m = _model()
    out = m(torch.rand(2, 3, 32, 48)).logits
    assert out.shape == (2, 1, 32, 48) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="multiples of 2"):
        m(torch.rand(1, 3, 31, 32))
    with pytest.raises(ValueError, match="image"):
        m(torch.rand(1, 4, 32, 32))


def test_predict_shapes_types_and_range():
    m = _model()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(50, 30, 3), dtype=np.uint8)
    a = m.predict(img)
    assert isinstance(a, np.ndarray) and a.shape == (50, 30) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1
    # uint8 and the same picture as float give the same alpha; an alpha channel is ignored.
    np.testing.assert_allclose(m.predict(img.astype(np.float32) / 255), a, atol=1e-6)
    rgba = np.concatenate([img, np.zeros((50, 30, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(m.predict(rgba), a)
    t = m.predict(torch.from_numpy(img))
    assert isinstance(t, torch.Tensor) and t.shape == (50, 30)
    assert m.predict(rng.random((300, 200, 3))).shape == (300, 200)  # larger than the working side
    with pytest.raises(ValueError, match="image"):
        m.predict(np.zeros((5, 5)))


def test_save_load_round_trip(tmp_path):
    m = _model(3)
    m.save_pretrained(tmp_path / "seg")
    back = Segmenter.from_pretrained(tmp_path / "seg")
    assert back.config == m.config
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(back(x).logits, m(x).logits)
    for k, v in m.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_build_is_deterministic_per_seed():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(_model(5)(x).logits, _model(5)(x).logits)
    assert not torch.equal(_model(5)(x).logits, _model(6)(x).logits)
