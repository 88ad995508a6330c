"""Generated views carried row by row onto a known silhouette (stdgen.pipeline.silhouette)."""

from __future__ import annotations

import numpy as np
import pytest

from stdgen.pipeline.silhouette import apply_row_warp, fit_to_silhouette, row_warp


def _box(h, w, x0, x1, y0=0, y1=None):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_one_run_is_stretched_linearly():
    src, tgt = _box(4, 40, 10, 20), _box(4, 40, 5, 35)
    ys, xs = row_warp(src, tgt)
    # Target pixel centre x + 0.5 in [5, 35) maps to 10 + (x + 0.5 - 5) / 3 in source edge coordinates.
    x = np.arange(5, 35)
    np.testing.assert_allclose(xs[0, 5:35], 10 + (x + 0.5 - 5) / 3 - 0.5)
    np.testing.assert_array_equal(ys, np.broadcast_to(np.arange(4)[:, None], (4, 40)))
    # A ramp in x carries over as the same ramp, stretched: the target's ends read the source's ends.
    ramp = np.broadcast_to(np.arange(40, dtype=float), (4, 40))[None]
    out = apply_row_warp(ramp, src, (ys, xs))[0, 0]
    assert out[5] == pytest.approx(10.0, abs=0.2) and out[34] == pytest.approx(19.0, abs=0.2)
    assert np.all(np.diff(out[5:35]) >= 0)


def test_runs_match_in_order_and_keep_their_own_colours():
    """Arm, torso, arm: each target run reads its own source run, and the background never bleeds in."""
    h, w = 6, 60
    src = _box(h, w, 5, 10) | _box(h, w, 20, 40) | _box(h, w, 50, 55)
    tgt = _box(h, w, 2, 9) | _box(h, w, 18, 42) | _box(h, w, 51, 58)
    colour = np.zeros((1, h, w))
    colour[0, :, 5:10], colour[0, :, 20:40], colour[0, :, 50:55] = 1.0, 2.0, 3.0
    colour[0, ~src] = 99.0  # background: must never reach the target silhouette
    out = fit_to_silhouette(colour, src.astype(float), tgt.astype(float))[0]
    assert np.all(out[:, 2:9] == 1.0) and np.all(out[:, 18:42] == 2.0) and np.all(out[:, 51:58] == 3.0)


def test_rows_whose_runs_do_not_pair_take_the_shift_of_their_paired_neighbours():
    h, w = 9, 40
    src = _box(h, w, 10, 20, 1, 9)
    tgt = _box(h, w, 12, 22, 0, 9)
    tgt[4, 16] = tgt[4, 17] = False  # row 4: two target runs against one source run
    ys, xs = row_warp(src, tgt)
    assert ys[0, 12] == 1  # row 0 has no source foreground: it reads the nearest source row
    np.testing.assert_allclose(xs[3, 12:22], np.arange(12, 22) - 2)  # paired: shifted by the runs' offset
    np.testing.assert_allclose(xs[4, 12:22], np.arange(12, 22) - 2)  # unpaired: its neighbours' shift
    # Nothing pairs anywhere: the identity.
    ys, xs = row_warp(_box(h, w, 10, 30), _box(h, w, 5, 15) | _box(h, w, 25, 35))
    np.testing.assert_allclose(xs, np.broadcast_to(np.arange(w, dtype=float), (h, w)))


def test_same_silhouette_leaves_the_image_as_it_is():
    rng = np.random.default_rng(0)
    m = _box(16, 16, 3, 13, 2, 15)
    img = rng.random((3, 16, 16))
    out = fit_to_silhouette(img, m.astype(float), m.astype(float))
    np.testing.assert_allclose(out[:, m], img[:, m], atol=1e-12)


def test_masks_of_different_shapes_are_an_error():
    with pytest.raises(ValueError, match="one shape"):
        row_warp(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
