"""The one image reader: by content, any mode, bounded.

Every picture a user can hand to stdgen (input pictures, masks, generated views, the sprite sheets
of a character folder) is read through :func:`read_image`:

- the format is recognised from the bytes, never from the file name;
- the size is read from the header and checked **before** the pixels are decoded: more than
  :data:`MAX_IMAGE_PIXELS` pixels (or a size other than the one the caller expects) is refused, so a
  12 KB "decompression bomb" never becomes gigabytes of memory;
- whatever the stored mode (palette, grey, grey+alpha, 16-bit, CMYK, bilevel), the result is 8-bit
  ``RGB`` or ``RGBA`` (or kept as stored with ``mode="raw"`` for data maps such as 16-bit depth);
- every failure (truncated file, not an image, Pillow's ``DecompressionBombError``) is an
  :class:`~stdgen.errors.InputError` naming the file.

:func:`cap_resolution` shrinks a picture to the working resolution a stage needs, so no stage ever
renders at a picture's own (possibly huge) size.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from stdgen.errors import InputError

#: The largest picture read, in pixels (8192 x 8192, 67 megapixels; the VRM importer's texture
#: limit). An RGBA picture of this size takes 256 MiB decoded.
MAX_IMAGE_PIXELS = 8192 * 8192
#: The largest side of a picture that a stage works with (see :func:`cap_resolution`).
MAX_WORK_SIDE = 1024

_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file's header, without decoding the pixels."""
    im = _open(Path(path))
    try:
        return im.size
    finally:
        im.close()


def _open(path: Path, what: str | None = None):
    from PIL import Image, UnidentifiedImageError

    label = what or str(path)
    try:
        with warnings.catch_warnings():
            # Sizes are checked by read_image itself, against a documented limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not a picture") from None
    except UnidentifiedImageError:
        raise InputError(f"{label}: not a picture Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{label}: refused, too many pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{label}: unreadable picture ({exc})") from None


def has_alpha(im) -> bool:
    """Whether a Pillow image carries transparency (an alpha channel, or a palette/grey tRNS)."""
    return im.mode in _ALPHA_MODES or "transparency" in im.info


def read_image(path: str | os.PathLike, mode: str = "auto", *, max_pixels: int = MAX_IMAGE_PIXELS,
               expect_size: tuple[int, int] | None = None, formats: tuple[str, ...] | None = None,
               what: str | None = None) -> np.ndarray:
    """Read a picture as a uint8 array.

    ``mode``: ``"RGB"`` -> (H, W, 3); ``"RGBA"`` -> (H, W, 4) (opaque when the file has no alpha);
    ``"auto"`` -> RGBA when the file has transparency, else RGB; ``"L"`` -> (H, W) grey;
    ``"raw"`` -> the stored values as they are ((H, W) or (H, W, C), uint8 or uint16 for 16-bit
    grey), for data maps whose numbers mean something (labels, depth).
    16-bit pictures are reduced to 8 bits (top byte), CMYK is converted to RGB, palettes expanded.

    ``max_pixels``: refuse larger pictures before decoding. ``expect_size``: ``(width, height)``
    the file must have (checked before decoding). ``formats``: accepted Pillow formats (e.g.
    ``("PNG",)``), ``None`` for any. Raises :class:`~stdgen.errors.InputError` naming the file.
    """
    from PIL import Image

    path = Path(path)
    label = what or str(path)
    im = _open(path, label)
    try:
        w, h = im.size
        if formats is not None and im.format not in formats:
            raise InputError(f"{label}: a {im.format} file, expected {' or '.join(formats)}")
        if expect_size is not None and (w, h) != tuple(expect_size):
            raise InputError(f"{label}: {w}x{h} pixels, expected {expect_size[0]}x{expect_size[1]}")
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise InputError(f"{label}: {w}x{h} pixels is more than the {max_pixels} this reads "
                             f"(stdgen.io.images.MAX_IMAGE_PIXELS)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
            arr = _convert(im, mode)
        except InputError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise InputError(f"{label}: unreadable picture ({exc})") from None
    finally:
        im.close()
    return arr


def _convert(im, mode: str) -> np.ndarray:
    if mode == "raw":
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im)
            if a.dtype != np.uint16:
                if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
                    raise ValueError(f"{im.mode} values outside 16 bits")
                a = a.astype(np.uint16)
            return a.copy()
        return np.asarray(im).copy()
    if mode not in ("RGB", "RGBA", "auto", "L"):
        raise ValueError(f"mode must be RGB, RGBA, auto, L or raw, got {mode!r}")
    alpha = has_alpha(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Pillow's own I -> L conversion clips instead of scaling: scale 16 bits down to 8 here.
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode != "F" else max(1.0, float(np.nanmax(a)) if a.size else 1.0)
        from PIL import Image

        im = Image.fromarray(np.clip(np.nan_to_num(a) / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        alpha = False
    elif im.mode == "CMYK":
        im = im.convert("RGB")
        alpha = False
    target = {"auto": "RGBA" if alpha else "RGB"}.get(mode, mode)
    if im.mode == "P" and target != "L":
        im = im.convert("RGBA")  # expands the palette with its transparency
    if im.mode != target:
        im = im.convert(target)
    return np.asarray(im).copy()


def cap_resolution(image: np.ndarray, max_side: int = MAX_WORK_SIDE) -> np.ndarray:
    """Shrink ``image`` ((H, W) or (H, W, C), uint8 or float) so its longer side is at most
    ``max_side`` (aspect kept, area-averaged); smaller pictures are returned unchanged."""
    from PIL import Image

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BOX)).copy()
    channels = [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[2])]
    out = [np.asarray(Image.fromarray(np.asarray(c, np.float32), "F").resize(size, Image.Resampling.BOX))
           for c in channels]
    return (out[0] if a.ndim == 2 else np.stack(out, -1)).astype(a.dtype)
