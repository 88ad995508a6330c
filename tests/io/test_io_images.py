"""stdgen.io.images: one reader for every mode, sizes refused before decoding, work resolution capped."""

import numpy as np
import pytest
from PIL import Image

from stdgen.errors import InputError
from stdgen.io.images import MAX_IMAGE_PIXELS, cap_resolution, image_size, read_image


@pytest.fixture()
def rgba():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)
    a[..., 3] = np.where(rng.random((12, 20)) > 0.5, 255, 0)
    return a


def test_modes_convert_to_the_same_colours(tmp_path, rgba):
    rgb = rgba[..., :3]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    want_p = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    assert read_image(tmp_path / "rgb.png", "RGBA")[..., 3].min() == 255  # opaque when there is no alpha
    assert np.array_equal(read_image(tmp_path / "p.png"), want_p)  # palette expanded, not raw indices
    # Grey + alpha: colour channels equal the grey level, alpha kept.
    la = np.stack([rgba[..., 0], rgba[..., 3]], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    got = read_image(tmp_path / "la.png")
    assert got.shape == (12, 20, 4)
    assert np.array_equal(got[..., 0], la[..., 0]) and np.array_equal(got[..., 3], la[..., 1])


def test_sixteen_bit_and_cmyk(tmp_path):
    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    got = read_image(tmp_path / "g16.png")
    assert got.dtype == np.uint8 and got.shape == (8, 8, 3)
    assert np.abs(got[..., 0].astype(int) - np.round(grey16 / 65535 * 255)).max() <= 1  # scaled, not clipped
    assert np.array_equal(read_image(tmp_path / "g16.png", "raw"), grey16)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)  # pure red in CMYK
    red = read_image(tmp_path / "cmyk.jpg")
    assert red.shape == (8, 8, 3) and red[..., 0].min() > 240 and red[..., 1:].max() < 15


def test_by_content_not_extension(tmp_path, rgba):
    Image.fromarray(rgba).save(tmp_path / "really_png.jpg", format="PNG")
    assert np.array_equal(read_image(tmp_path / "really_png.jpg", "RGBA"), rgba)
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(InputError, match="text.png: not a picture"):
        read_image(tmp_path / "text.png")
    with pytest.raises(InputError, match="expected PNG"):
        Image.fromarray(rgba[..., :3]).save(tmp_path / "j.png", format="JPEG")
        read_image(tmp_path / "j.png", formats=("PNG",))


def test_truncated_file_is_one_input_error(tmp_path, rgba):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png: unreadable picture"):
        read_image(tmp_path / "t.png")


def test_bomb_refused_before_decoding(tmp_path):
    # 9000 x 8000 palette picture: a few hundred KB on disk, 288 MB as RGBA. Only the header is read.
    Image.new("P", (9000, 8000), 0).save(tmp_path / "bomb.png", transparency=0)
    assert image_size(tmp_path / "bomb.png") == (9000, 8000)
    with pytest.raises(InputError, match="9000x8000 pixels is more than"):
        read_image(tmp_path / "bomb.png", max_pixels=4096 * 4096)
    assert MAX_IMAGE_PIXELS == 8192 * 8192
    with pytest.raises(InputError, match="expected 100x100"):
        read_image(tmp_path / "bomb.png", expect_size=(100, 100))


def test_cap_resolution():
    a = np.zeros((3000, 1, 3), np.uint8)
    assert cap_resolution(a, 1024).shape == (1024, 1, 3)
    b = np.full((400, 300), 0.5, np.float32)
    got = cap_resolution(b, 200)
    assert got.shape == (200, 150) and got.dtype == np.float32 and np.allclose(got, 0.5)
    c = np.ones((10, 10, 4), np.uint8)
    assert cap_resolution(c, 64) is c
