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


def test_fit_shift_ignores_a_few_wrong_vectors():
    from stdgen.pipeline.detail import fit_shift

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (400, 2))
    tgt = pts + np.array([3.0, -5.0]) + rng.normal(0, 0.3, (400, 2))
    tgt[:60] += rng.uniform(-40, 40, (60, 2))  # 15 % of the flow gone astray
    np.testing.assert_allclose(fit_shift(pts, tgt), [3.0, -5.0], atol=0.3)


def _with_eyes(pic: np.ndarray, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """The picture with two dark eyes in its head (moved by ``shift`` rows, columns) and their mask."""
    side = pic.shape[0]
    out = pic.copy()
    eyes = np.zeros(pic.shape[:2], bool)
    r0 = round(0.17 * side) + shift[0]
    for c0 in (round(0.46 * side), round(0.54 * side)):
        eyes[r0:r0 + 3, c0 + shift[1]:c0 + shift[1] + 3] = True
    out[eyes, :3] = 20
    return out, eyes


def test_the_head_comes_back_in_one_piece():
    """A face the redrawing lost (two eyes) comes back at the redrawing's head, from a picture moved by
    a few pixels; the per-pixel colour test alone (no head band) does not bring it."""
    plain = _square(figure_picture(128, 128, seed=3), 128)
    can = _soft(plain, 32)  # the redrawing: no eyes
    truth, eyes = _with_eyes(plain)
    pic = np.zeros_like(truth)
    pic[2:, 3:] = truth[:-2, :-3]  # the posed picture's head sits 2 px lower and 3 px to the right
    with_head, weight = transfer_picture(pic, can)
    without, _ = transfer_picture(pic, can, TransferConfig(head_fraction=0))
    assert float(weight[eyes].mean()) > 0.9
    err_head = _fg_error(with_head, truth, eyes)
    err_none = _fg_error(without, truth, eyes)
    assert err_head < 25 and err_head < 0.3 * err_none, (err_head, err_none)


def test_the_head_takes_the_pictures_outline_near_the_redrawings():
    """The redrawing's head drawn narrower than the picture's: the result's head is as wide as the
    picture's; below the head band the silhouette stays the redrawing's."""
    pic = _square(figure_picture(128, 128, seed=4), 128)
    narrow = pic.copy()
    y, x = np.mgrid[0:128, 0:128]
    narrow[(y < 0.22 * 128) & (abs(x - 64) > 0.06 * 128), 3] = 0
    can = _soft(narrow, 32)
    out, _ = transfer_picture(pic, can)
    head_rows = slice(round(0.12 * 128), round(0.17 * 128))
    width = lambda a: (a[head_rows] > 127).sum(1).mean()
    assert width(out[..., 3]) > width(narrow[..., 3]) + 3
    assert abs(width(out[..., 3]) - width(pic[..., 3])) < 2.5
    from PIL import Image

    upsampled = np.asarray(Image.fromarray(can).resize((128, 128), Image.BICUBIC))
    body = slice(round(0.4 * 128), 128)
    np.testing.assert_allclose(out[body, :, 3].astype(float), upsampled[body, :, 3].astype(float), atol=40)


def _chw01(rgba: np.ndarray):
    import torch

    return torch.from_numpy(rgba).permute(2, 0, 1).float() / 255.0


def test_the_back_takes_the_mirrored_pictures_detail_below_the_head():
    """A back drawn softly in the picture's colours (as the 128 px multi-view model draws it) takes
    the mirrored picture's stripes below the head; the head and the silhouette stay the back's."""
    from PIL import Image

    from stdgen.pipeline.pipeline import mirrored_detail

    pic = _striped(128, seed=5)
    mirrored = pic[:, ::-1].copy()
    soft_back = np.asarray(Image.fromarray(_soft(mirrored, 32)).resize((128, 128), Image.BICUBIC))
    back = _chw01(soft_back)
    out = mirrored_detail(_chw01(pic), back, 32, 0.15)
    assert out.shape == back.shape
    assert np.array_equal(out[3].numpy(), back[3].numpy())
    got = (out[:3].permute(1, 2, 0).numpy() * 255).astype(np.float32)
    rows = np.flatnonzero((soft_back[..., 3] > 127).any(1))
    top, height = rows[0], rows[-1] - rows[0]
    body = _inner(mirrored) & (np.arange(128)[:, None] > top + 0.3 * height)
    assert _fg_error(got, mirrored, body) < 0.3 * _fg_error(soft_back, mirrored, body)
    head = (soft_back[..., 3] > 127) & (np.arange(128)[:, None] < top + 0.19 * height)
    assert _fg_error(got, soft_back, head) < 1.0  # the head: the back's own colours


def test_a_back_unlike_the_picture_keeps_its_colours():
    from stdgen.pipeline.pipeline import mirrored_detail

    pic = _striped(96, seed=6)
    other = pic[:, ::-1].copy()
    other[..., :3] = (0, 0, 255)  # a back all in one colour the picture does not have
    back = _chw01(other)
    out = mirrored_detail(_chw01(pic), back, 24, 0.1)
    inner = _inner(other)
    assert float((out - back).abs()[:3].permute(1, 2, 0).numpy()[inner].max()) < 0.1


def _two_tone(side: int, top: tuple, bottom: tuple) -> np.ndarray:
    """``(S, S, 4)`` float: a box figure, its upper half one colour and its lower half another."""
    x = np.ones((side, side, 4), np.float32)
    x[..., 3] = 0
    x[side // 8:7 * side // 8, side // 4:3 * side // 4, 3] = 1
    x[:side // 2, ..., :3] = top
    x[side // 2:, ..., :3] = bottom
    return x


def test_colour_match_moves_the_views_by_the_fronts_drift():
    from stdgen.pipeline.detail import apply_colour_match, fit_colour_match

    # The generated front drew the top too pale (0.9 where the picture has 0.6) and the bottom right.
    gen = _two_tone(64, (0.9, 0.8, 0.7), (0.2, 0.3, 0.6))
    pic = _two_tone(64, (0.6, 0.5, 0.2), (0.2, 0.3, 0.6))
    match = fit_colour_match(gen, pic)
    assert match is not None
    side_view = _two_tone(64, (0.9, 0.8, 0.7), (0.2, 0.3, 0.6))
    side_view[..., 3] = 0
    side_view[8:56, 24:40, 3] = 1  # narrower, like a side view: the same rows
    out = apply_colour_match(side_view[None], match)[0]
    # The pale top moves most of the way to the picture's colour; the matching bottom stays.
    top, bottom = out[16, 32, :3], out[48, 32, :3]
    assert np.abs(top - (0.6, 0.5, 0.2)).max() < 0.05, top
    assert np.abs(bottom - (0.2, 0.3, 0.6)).max() < 0.02, bottom
    np.testing.assert_array_equal(out[..., 3], side_view[..., 3])
    # A colour the front never shows (green) keeps its colour.
    other = side_view.copy()
    other[8:56, 24:40, :3] = (0.1, 0.8, 0.1)
    np.testing.assert_allclose(apply_colour_match(other[None], match)[0], other, atol=0.01)


def test_colour_match_needs_overlapping_silhouettes():
    from stdgen.pipeline.detail import apply_colour_match, fit_colour_match

    gen = _two_tone(64, (0.9, 0.8, 0.7), (0.2, 0.3, 0.6))
    empty = gen.copy()
    empty[..., 3] = 0
    assert fit_colour_match(gen, empty) is None
    np.testing.assert_array_equal(apply_colour_match(gen[None], None), gen[None])


def test_resize_of_colours_matches_skimage_on_the_whole_array():
    """The channel-by-channel resize gives skimage's 3-D spline resize (which also runs along the
    channel axis, at its nodes) at a fraction of the cost."""
    from skimage.transform import resize

    from stdgen.pipeline.detail import _resize

    rng = np.random.default_rng(3)
    for shape, side in (((64, 64, 3), 128), ((96, 96, 4), 40)):
        x = rng.random(shape).astype(np.float32)
        shrink = side < shape[0]
        ref = resize(x, (side, side, shape[2]), order=1 if shrink else 3, anti_aliasing=shrink, preserve_range=True)
        out = _resize(x, side)
        assert out.shape == ref.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, atol=1e-3)  # a quarter of one 8-bit step
