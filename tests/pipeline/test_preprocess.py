"""Preprocessing: the figure's alpha (mask / own alpha / segmenter) and the dataset framing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stdgen.errors import StdgenError
from stdgen.pipeline.preprocess import (
    FIGURE_HEIGHT,
    MIN_FIGURE_PIXELS,
    alpha_of,
    figure_box,
    frame_figure,
    grabcut_available,
    preprocess_image,
    refine_alpha,
    rgba_of,
)


def _rect(h=200, w=120, box=(50, 30, 150, 50), colour=(1.0, 0.0, 0.0)) -> np.ndarray:
    """(h, w, 4) float: an opaque rectangle rows box[0]:box[2], columns box[1]:box[3], transparent elsewhere."""
    img = np.zeros((h, w, 4), np.float32)
    t, l, b, r = box
    img[t:b, l:r, :3] = colour
    img[t:b, l:r, 3] = 1
    return img


class _StubSegmenter:
    """Returns a fixed alpha (what a trained segmenter would), and records its input."""

    def __init__(self, alpha: np.ndarray):
        self.alpha, self.seen = alpha, None

    def predict(self, image):
        self.seen = image
        return self.alpha


@pytest.mark.parametrize("size", [110, 55, 220])  # figure 100 px tall: exact, shrunk 2x, grown 2x
def test_rectangle_lands_centred_at_91_percent_height(size):
    out = frame_figure(_rect(), size)
    assert out.shape == (size, size, 4) and out.dtype == np.float32
    a = out[..., 3].astype(np.float64)
    k = size / 110  # the 100-px-tall figure's crop side is 110 px
    # Measured with sub-pixel accuracy: the alpha summed down / across the figure, and its centroid.
    height, width = a.sum(axis=0).max(), a.sum(axis=1).max()
    assert height == pytest.approx(100 * k, abs=1e-3) and width == pytest.approx(20 * k, abs=1e-3)
    assert height / size == pytest.approx(FIGURE_HEIGHT, abs=1e-5)
    yy, xx = np.mgrid[:size, :size] + 0.5
    assert (a * yy).sum() / a.sum() == pytest.approx(size / 2, abs=1e-4)
    assert (a * xx).sum() / a.sum() == pytest.approx(size / 2, abs=1e-4)
    # Straight colour is kept (premultiplied resampling: no dark fringe at the edge pixels).
    fg = out[..., 3] > 0.01
    np.testing.assert_allclose(out[fg][:, :3], np.broadcast_to([1, 0, 0], (int(fg.sum()), 3)), atol=1e-5)
    assert (out[~fg][:, :3] == 0).all() and (out[..., 3][~fg] <= 0.01).all()


def test_off_centre_and_wide_figures():
    # A figure at the picture's corner is moved to the centre; a figure wider than tall fits its width.
    out = frame_figure(_rect(h=300, w=300, box=(0, 0, 100, 20)), 110)
    t, l, b, r = figure_box(out[..., 3])
    assert (t, b, l, r) == (5, 105, 45, 65)
    out = frame_figure(_rect(h=100, w=300, box=(40, 10, 60, 210)), 110)
    t, l, b, r = figure_box(out[..., 3])
    assert (l, r, t, b) == (5, 105, 50, 60)


def test_empty_transparent_and_tiny_figures_are_refused():
    with pytest.raises(StdgenError, match="no figure"):
        frame_figure(np.zeros((64, 64, 4), np.uint8), 64)
    with pytest.raises(StdgenError, match="no figure"):
        preprocess_image(np.zeros((64, 64, 4), np.uint8), 64)  # fully transparent RGBA
    tiny = _rect(h=400, w=400, box=(10, 10, 17, 17))  # 49 px < MIN_FIGURE_PIXELS
    assert 49 < MIN_FIGURE_PIXELS
    with pytest.raises(StdgenError, match="only 49 figure pixels"):
        frame_figure(tiny, 64)
    with pytest.raises(StdgenError, match="size"):
        frame_figure(_rect(), 4)
    with pytest.raises(StdgenError, match="4 channels"):
        frame_figure(_rect()[..., :3], 64)


def test_rgba_alpha_is_kept():
    img = (_rect() * 255).astype(np.uint8)
    img[..., 3] = np.where(img[..., 3] > 0, 200, 0)  # partial alpha passes through as it is
    seg = _StubSegmenter(np.zeros((200, 120), np.float32))
    a = alpha_of(img, segmenter=seg)
    np.testing.assert_array_equal(a, img[..., 3] / np.float32(255))
    assert seg.seen is None  # the segmenter is not asked


def test_user_mask_wins(tmp_path):
    img = _rect()
    mask = np.zeros((200, 120), np.uint8)
    mask[10:60, 60:100] = 255
    seg = _StubSegmenter(np.ones((200, 120), np.float32))
    np.testing.assert_array_equal(alpha_of(img, mask=mask, segmenter=seg), mask / np.float32(255))
    Image.fromarray(mask).save(tmp_path / "m.png")
    a = alpha_of(img[..., :3], mask=tmp_path / "m.png", segmenter=seg)
    np.testing.assert_array_equal(a, mask / np.float32(255))
    assert seg.seen is None
    out = preprocess_image(img[..., :3], 110, mask=str(tmp_path / "m.png"))
    t, l, b, r = figure_box(out[..., 3])
    assert b - t == 100 and r - l == 80 and t == 110 - b and l == 110 - r
    # A mask picture with transparency gives its alpha.
    rgba = np.zeros((200, 120, 4), np.uint8)
    rgba[..., 3] = mask
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m4.png")
    np.testing.assert_array_equal(alpha_of(img, mask=tmp_path / "m4.png"), mask / np.float32(255))
    with pytest.raises(StdgenError, match="but the picture is 120x200"):
        alpha_of(img, mask=np.zeros((10, 10), np.uint8))
    with pytest.raises(StdgenError, match="no such file|not found|missing"):
        alpha_of(img, mask=tmp_path / "missing.png")


def test_segmenter_used_for_opaque_pictures():
    img = _rect()[..., :3] * 0.5 + 0.25  # opaque RGB
    pred = np.zeros((200, 120), np.float32)
    pred[20:180, 40:80] = 0.9
    seg = _StubSegmenter(pred)
    a = alpha_of(img, segmenter=seg, refine_edges=False)
    np.testing.assert_array_equal(a, pred)
    assert seg.seen.shape == (200, 120, 3)
    # An RGBA picture that is fully opaque carries no alpha: the segmenter decides.
    opaque = np.concatenate([img, np.ones((200, 120, 1), np.float32)], axis=2)
    np.testing.assert_array_equal(alpha_of(opaque, segmenter=seg, refine_edges=False), pred)
    with pytest.raises(StdgenError, match="--mask"):
        alpha_of(img)


def test_real_segmenter_shapes():
    import torch

    from stdgen.models.segment import Segmenter, tiny_config

    torch.manual_seed(0)
    seg = Segmenter(tiny_config()).eval()
    img = np.random.default_rng(0).integers(0, 256, (70, 40, 3), dtype=np.uint8)
    a = alpha_of(img, segmenter=seg, refine_edges=False)
    assert a.shape == (70, 40) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1


def test_rgba_of_checks_shapes():
    assert rgba_of(np.zeros((4, 5, 3), np.uint8), np.ones((4, 5))).shape == (4, 5, 4)
    with pytest.raises(StdgenError, match="does not match"):
        rgba_of(np.zeros((4, 5, 3), np.uint8), np.ones((5, 4)))
    with pytest.raises(StdgenError, match="NaN"):
        rgba_of(np.full((4, 5, 3), np.nan, np.float32), np.ones((4, 5)))


def test_refine_without_opencv_keeps_alpha(monkeypatch):
    """Without OpenCV (its import made to fail) the alpha comes back unchanged."""
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    assert not grabcut_available()
    a = np.linspace(0, 1, 200 * 120, dtype=np.float32).reshape(200, 120)
    assert refine_alpha(np.zeros((200, 120, 3), np.float32), a) is a


def test_grabcut_snaps_a_blurry_alpha_to_the_colour_edge():
    """A red rectangle on blue; the predicted alpha is the rectangle grown by 4 px with a soft edge
    (sure only inside it): GrabCut puts the edge back on the colour boundary."""
    rgb = np.zeros((120, 100, 3), np.float32)
    rgb[..., 2] = 1
    rgb[30:90, 30:70] = [1, 0, 0]
    yy, xx = np.mgrid[:120, :100]
    d = np.maximum(np.maximum(30 - yy, yy - 89), np.maximum(30 - xx, xx - 69))  # <= 0 inside the rectangle
    pred = np.clip(0.5 - (d - 4) / 12, 0, 1).astype(np.float32)
    out = refine_alpha(rgb, pred)
    true = (d <= 0).astype(np.float32)
    iou_before = ((pred > 0.5) & (true > 0)).sum() / ((pred > 0.5) | (true > 0)).sum()
    iou_after = ((out > 0.5) & (true > 0)).sum() / ((out > 0.5) | (true > 0)).sum()
    assert iou_before < 0.8 and iou_after > 0.98
