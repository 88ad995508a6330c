"""A stand-in for ``stdgen.pipeline.StdGENPipeline`` and its ``save_output`` (same call signature,
same stages and files, no models), and the pictures the app's tests upload."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from stdgen.errors import StdgenError

STAGES = ("preprocess", "canonicalize", "multiview", "reconstruct", "refine", "export")
#: Box sizes (x, y, z) and centres of the stand-in character's parts: three meshes a test can tell apart.
PARTS = {"body": ((0.3, 1.2, 0.2), (0, 0.6, 0)), "clothes": ((0.36, 0.5, 0.26), (0, 0.75, 0)),
         "hair": ((0.34, 0.2, 0.3), (0, 1.3, 0))}


class FakePipeline:
    """Called like the real pipeline: reports every stage through ``progress`` / ``on_stage`` with
    pictures of the real shapes, sleeping ``delay`` seconds per stage; ``fail`` raises that
    :class:`StdgenError` at the reconstruct stage. ``calls`` records the keyword arguments."""

    def __init__(self, delay: float = 0.05, fail: str | None = None):
        self.delay = delay
        self.fail = fail
        self.calls: list[dict] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each call, time.monotonic()

    def __call__(self, image, *, pose="auto", seed=0, steps=None, refine=True, mask=None, progress=None,
                 on_stage=None):
        self.calls.append(dict(pose=pose, seed=seed, steps=steps, refine=refine, shape=np.shape(image)))
        start = time.monotonic()
        image = np.asarray(image)
        rgba = image if image.shape[2] == 4 else np.concatenate([image, np.full(image.shape[:2] + (1,), 255,
                                                                                np.uint8)], -1)
        canonical = np.asarray(Image.fromarray(rgba).resize((128, 128)))
        views_rgb = np.stack([np.roll(canonical, 8 * i, axis=1) for i in range(6)])
        ramp = np.linspace(0, 255, 64).astype(np.uint8)
        views_normal = np.stack([np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.uint8(40 * i)), -1)
                                 for i in range(6)])
        seconds = {}
        for stage in STAGES:
            if stage == "canonicalize" and pose == "apose" or stage == "refine" and not refine:
                continue
            t = time.perf_counter()
            for k in range(3):
                if progress is not None:
                    progress(stage, k / 2)
                time.sleep(self.delay / 3)
            if stage == "reconstruct" and self.fail:
                raise StdgenError(self.fail)
            if on_stage is not None and stage == "canonicalize":
                on_stage(stage, {"canonical": canonical})
            elif on_stage is not None and stage == "multiview":
                on_stage(stage, {"views_rgb": views_rgb, "views_normal": views_normal})
            elif on_stage is not None:
                on_stage(stage, {})
            seconds[stage] = time.perf_counter() - t
        self.spans.append((start, time.monotonic()))
        return SimpleNamespace(character=PARTS, canonical=canonical, views_rgb=views_rgb, views_normal=views_normal,
                               seconds=seconds, peak_memory={s: (100 + i) * 2**20 for i, s in enumerate(seconds)},
                               settings=dict(pose=pose, seed=seed, steps=steps, refine=refine))


def fake_save_output(out, folder, fmt="glb") -> None:
    """Writes ``character.glb`` (one scene, nodes body, clothes, hair), a GLB per part, the pictures
    and ``report.json`` into ``folder``, like ``stdgen.pipeline.save_output``."""
    import trimesh

    folder = Path(folder)
    colours = {"body": (230, 190, 160, 255), "clothes": (200, 60, 60, 255), "hair": (60, 60, 200, 255)}
    scene = trimesh.Scene()
    for name, (extents, centre) in out.character.items():
        box = trimesh.creation.box(extents=extents)
        box.apply_translation(centre)
        box.visual.face_colors = colours[name]
        scene.add_geometry(box, node_name=name, geom_name=name)
        part = trimesh.Scene()
        part.add_geometry(box, node_name=name, geom_name=name)
        (folder / f"{name}.glb").write_bytes(part.export(file_type="glb"))
    (folder / "character.glb").write_bytes(scene.export(file_type="glb"))
    Image.fromarray(out.canonical).save(folder / "canonical.png")
    Image.fromarray(np.concatenate(list(out.views_rgb[..., :3]), 1)).save(folder / "views.png")
    (folder / "report.json").write_text(json.dumps({"seconds": out.seconds, "settings": out.settings}))


def figure_picture(size: int = 96) -> np.ndarray:
    """An ``(size, size, 4)`` uint8 picture: a coloured figure (head, body, legs) on transparency."""
    img = np.zeros((size, size, 4), np.uint8)
    y, x = np.mgrid[:size, :size] / size
    head = (x - 0.5) ** 2 + (y - 0.2) ** 2 < 0.01
    body = (abs(x - 0.5) < 0.12) & (y > 0.3) & (y < 0.65)
    legs = (abs(abs(x - 0.5) - 0.06) < 0.04) & (y >= 0.65) & (y < 0.95)
    img[head] = (240, 200, 170, 255)
    img[body] = (200, 60, 60, 255)
    img[legs] = (60, 60, 120, 255)
    return img


@pytest.fixture
def fake_pipeline() -> FakePipeline:
    return FakePipeline()


@pytest.fixture(scope="session")
def make_pipeline() -> type[FakePipeline]:
    """The stand-in's class, for tests that set its ``delay`` or ``fail``."""
    return FakePipeline


@pytest.fixture(scope="session")
def save_output():
    """The stand-in for ``stdgen.pipeline.save_output``."""
    return fake_save_output


@pytest.fixture
def figure() -> np.ndarray:
    return figure_picture()


@pytest.fixture(scope="session")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """Uploads: a good picture, a transparent one, a flat one, a non-picture with a .png name, a
    large file (25 MB of noise as PNG) and a decompression bomb (a tiny file, 9000 x 8000 pixels)."""
    tmp_path = tmp_path_factory.mktemp("pictures")
    out = {}
    out["good"] = tmp_path / "figure.png"
    Image.fromarray(figure_picture()).save(out["good"])
    out["transparent"] = tmp_path / "transparent.png"
    Image.fromarray(np.zeros((64, 64, 4), np.uint8)).save(out["transparent"])
    out["flat"] = tmp_path / "flat.jpg"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(out["flat"])
    out["text"] = tmp_path / "notes.png"
    out["text"].write_text("this is not a picture\n" * 20)
    out["large"] = tmp_path / "large.png"
    noise = np.random.default_rng(0).integers(0, 256, (2900, 2900, 3), dtype=np.uint8)
    Image.fromarray(noise).save(out["large"], compress_level=0)
    out["bomb"] = tmp_path / "bomb.png"
    out["bomb"].write_bytes(png_header(9000, 8000))
    return out


def png_header(width: int, height: int) -> bytes:
    """A PNG file that is only a header claiming ``width`` x ``height`` grey pixels (a decompression
    bomb as a reader meets it: the size is all it must look at)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
