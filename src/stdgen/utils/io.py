"""File output that never leaves a half-written result, and image helpers.

``atomic_write(path)`` and ``atomic_dir(path)`` write into a temporary sibling and rename it
into place only when the block finishes without error, so an interrupted run leaves either
the old result or nothing (plus, at worst, a ``.tmp-*`` sibling that the next run removes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create private (0600 / 0700) entries; the results should get the permissions a
# plain open() / mkdir() would give them, so datasets written here are readable by others as usual.
_UMASK = _read_umask()
_FILE_MODE = 0o666 & ~_UMASK
_DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path`` for writers that want a filename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        os.chmod(tmp, _DIR_MODE)
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(path)
            old = path.with_name(TMP_PREFIX + "old-" + path.name)
            remove_path(old)
            os.replace(path, old)
            os.replace(tmp, path)
            remove_path(old)  # a file where the folder goes is removed too, not left behind hidden
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete ``.tmp-*`` leftovers of interrupted atomic writes in ``directory``; return how many."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    n = 0
    for p in directory.iterdir():
        if p.name.startswith(TMP_PREFIX):
            remove_path(p)
            n += 1
    return n


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any shape) -> uint8, rounded and clipped."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray, *, compress_level: int = 6) -> None:
    """Write an (H, W), (H, W, 1|3|4) image atomically. Floats are taken as [0, 1]; uint16 kept.
    ``compress_level`` is zlib's 0 (none, fastest) .. 9 (smallest)."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8 and img.dtype != np.uint16:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", compress_level=compress_level)


def load_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG as a uint8 (or uint16) array, (H, W) or (H, W, C)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).copy()


def image_grid(rows: list[list[np.ndarray]], pad: int = 2, background: float = 1.0) -> np.ndarray:
    """Tile float RGB images (H, W, 3) in [0, 1] into one picture; rows may differ in length."""
    cells = [im for row in rows for im in row]
    h = max(im.shape[0] for im in cells)
    w = max(im.shape[1] for im in cells)
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), background, np.float32)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            im = np.asarray(im, np.float32)
            if im.ndim == 2:
                im = np.repeat(im[..., None], 3, axis=2)
            if im.shape[2] == 4:  # composite over the background
                a = im[..., 3:4]
                im = im[..., :3] * a + background * (1 - a)
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + im.shape[0], x : x + im.shape[1]] = im[..., :3]
    return out
