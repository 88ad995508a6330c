import numpy as np
import pytest
import torch

from stdgen.eval.registration import horizontal_shifts, overlap_by_shift, shift_images


def _blob_masks(b=3, h=24, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = []
    for _ in range(b):
        cy, cx = torch.randint(8, h - 8, (2,), generator=g).tolist()
        cx = int(torch.randint(12, w - 12, (1,), generator=g))
        m = ((yy - cy) ** 2 / 30 + (xx - cx) ** 2 / 12 < 1).float()
        m[cy, max(cx - 6, 0):cx] = 1  # an asymmetric arm so the overlap has one maximum
        masks.append(m)
    return torch.stack(masks)


def test_overlap_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(2, 5, 9, generator=g)
    mov = torch.rand(2, 5, 9, generator=g)
    got = overlap_by_shift(ref, mov)
    for s in range(-8, 9):
        want = (ref * shift_images(mov, torch.tensor([s, s]), fill=0)).sum((1, 2)).double()
        assert torch.allclose(got[:, s + 8], want, atol=1e-9)


@pytest.mark.parametrize("k", [-9, -3, -1, 0, 2, 7])
def test_shifted_mask_is_found_and_undone(k):
    ref = _blob_masks()
    mov = shift_images(ref, torch.full((3,), k), fill=0)
    s = horizontal_shifts(ref, mov)
    assert s.tolist() == [-k] * 3
    back = shift_images(mov, s, fill=0)
    assert torch.equal(back, ref)


def test_max_shift_bounds_the_search_and_ties_prefer_small_shifts():
    ref = _blob_masks(1)
    mov = shift_images(ref, torch.tensor([8]), fill=0)
    assert int(horizontal_shifts(ref, mov, max_shift=3)[0]) == -3  # best within the bound
    # An empty moving mask overlaps nothing at any shift: no shift.
    assert int(horizontal_shifts(ref, torch.zeros_like(ref))[0]) == 0
    # A horizontally uniform band overlaps equally at every small shift: no shift.
    band = torch.zeros(1, 10, 30)
    band[:, 4:6, :] = 1
    assert int(horizontal_shifts(band, band.clone())[0]) == 0


def test_shift_images_fills_and_keeps_channels():
    img = torch.arange(2 * 3 * 5 * 2, dtype=torch.float32).view(2, 3, 5, 2)
    out = shift_images(img, torch.tensor([2, -1]), fill=-1)
    assert torch.equal(out[0, :, 2:], img[0, :, :3]) and (out[0, :, :2] == -1).all()
    assert torch.equal(out[1, :, :4], img[1, :, 1:]) and (out[1, :, 4:] == -1).all()
    assert (shift_images(img, torch.tensor([9, -9]), fill=0) == 0).all()
    np.testing.assert_array_equal(shift_images(img, torch.tensor([0, 0])).numpy(), img.numpy())
