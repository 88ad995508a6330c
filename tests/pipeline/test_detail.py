"""The picture's pixels carried onto the canonicaliser's redrawing (stdgen.pipeline.detail)."""

from __future__ import annotations

import numpy as np
import pytest

from stdgen.pipeline.detail import TransferConfig, transfer_picture

from .tiny_pipeline import figure_picture


def _square(rgba: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgba.shape[:2]
    s = max(h, w)
    canvas = np.zeros((s, s, 4), np.uint8)
    canvas[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = rgba
    return np.asarray(Image.fromarray(canvas).resize((side, side), Image.LANCZOS))


def _striped(side: int, seed: int = 0) -> np.ndarray:
    """A figure with fine horizontal stripes: detail a soft redrawing loses."""
    pic = _square(figure_picture(96, 96, seed=seed), side)
    y = np.arange(side)[:, None]
    stripes = ((y // 3) % 2 == 0)[..., None]
    rgb = np.where(stripes, pic[..., :3], (pic[..., :3] * 0.4).astype(np.uint8))
    return np.concatenate([rgb, pic[..., 3:]], -1)


def _soft(pic: np.ndarray, side: int) -> np.ndarray:
    """The redrawing's stand-in: the picture blurred as ``TransferConfig.softness`` assumes, then shrunk
    to ``side`` (the stripes averaged away)."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    sigma = 0.8 * pic.shape[0] / side
    a = pic.astype(np.float32) / 255
    pre = np.concatenate([a[..., :3] * a[..., 3:], a[..., 3:]], -1)
    pre = gaussian_filter(pre, (sigma, sigma, 0))
    rgb = np.where(pre[..., 3:] > 1e-3, pre[..., :3] / np.maximum(pre[..., 3:], 1e-3), 1.0)
    out = (np.clip(np.concatenate([rgb, pre[..., 3:]], -1), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.asarray(Image.fromarray(out).resize((side, side), Image.BOX))


def _inner(rgba: np.ndarray) -> np.ndarray:
    """The figure's pixels at least 3 px inside its outline."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(rgba[..., 3] > 127, iterations=3)


def _fg_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(a[..., :3].astype(float) - b[..., :3].astype(float))[mask].mean())


def test_an_aligned_picture_gives_its_own_pixels_back():
    pic = _striped(96)
    can = _soft(pic, 24)
    out, weight = transfer_picture(pic, can)
    inner = _inner(pic)
    assert out.shape == (96, 96, 4) and out.dtype == np.uint8
    assert float(weight[inner].mean()) > 0.9
    from PIL import Image

    upsampled = np.asarray(Image.fromarray(can).resize((96, 96)))
    # The stripes come back: much closer to the picture than the soft redrawing is (1.7 against 29.7
    # grey levels when written).
    assert _fg_error(out, pic, inner) < 0.2 * _fg_error(upsampled, pic, inner)


def test_a_moved_picture_is_pulled_into_place():
    """The picture 4 px to the right of the redrawing: its pixels land where the redrawing has them."""
    truth = _striped(96)
    pic = np.zeros_like(truth)
    pic[:, 4:] = truth[:, :-4]
    can = _soft(truth, 24)
    out, weight = transfer_picture(pic, can)
    inner = _inner(truth)
    from PIL import Image

    upsampled = np.asarray(Image.fromarray(can).resize((96, 96)))
    assert float(weight[inner].mean()) > 0.9
    assert _fg_error(out, truth, inner) < 0.2 * _fg_error(upsampled, truth, inner)


def test_a_picture_that_does_not_match_is_not_used():
    """Colours that disagree with the redrawing everywhere: the redrawing is kept as it is."""
    pic = _striped(96)
    other = pic.copy()
    other[..., :3] = 255 - other[..., :3]
    can = _soft(pic, 24)
    out, weight = transfer_picture(other, can, TransferConfig(tolerance=0.1))
    assert float(weight.max()) < 0.05
    from PIL import Image

    upsampled = np.asarray(Image.fromarray(can).resize((96, 96), Image.BICUBIC))
    assert _fg_error(out, upsampled, _inner(pic)) < 4
    # The silhouette is always the redrawing's.
    np.testing.assert_allclose(out[..., 3].astype(float), upsampled[..., 3].astype(float), atol=40)


def test_inputs_are_checked():
    pic = _striped(64)
    with pytest.raises(ValueError, match="picture"):
        transfer_picture(pic[..., :3], _soft(pic, 32))
    with pytest.raises(ValueError, match="larger"):
        transfer_picture(_soft(pic, 32), pic)
    with pytest.raises(ValueError, match="tolerance"):
        TransferConfig(tolerance=0)


def test_deterministic():
    pic = _striped(64, seed=2)
    can = _soft(pic, 24)
    a, wa = transfer_picture(pic, can)
    b, wb = transfer_picture(pic, can)
    assert np.array_equal(a, b) and np.array_equal(wa, wb)
