"""The web app's work, without the web: checking an upload, running the pipeline in a worker thread
while its stages are reported as events, and keeping each run's files in a folder of its own.

Nothing here imports gradio, so the logic is tested by calling it directly (``tests/app/``); the
page (:mod:`stdgen.app.ui`) only turns :class:`Event` s into component updates.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stdgen.errors import InputError, StdgenError
from stdgen.io.images import image_size, read_image
from stdgen.io.outputs import atomic_dir

log = logging.getLogger(__name__)

#: The pipeline's stages, in order (``stdgen.pipeline``'s ``progress`` / ``on_stage`` names).
STAGES: tuple[str, ...] = ("preprocess", "canonicalize", "multiview", "reconstruct", "refine", "export")
#: What the part selector offers, and the GLB of the run folder each shows.
PART_FILES: dict[str, str] = {"whole": "character.glb", "body": "body.glb", "clothes": "clothes.glb",
                              "hair": "hair.glb"}
#: The largest picture the app decodes (16.7 megapixels, 64 MiB as RGBA): smaller than the command
#: line's limit (``stdgen.io.images.MAX_IMAGE_PIXELS``) because several visitors may upload at once.
APP_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class AppConfig:
    """Limits of the web app.

    ``max_upload_mb``: the largest upload, in megabytes of 2**20 bytes (gradio's "mb"), 0.01 to 1000.
    ``concurrency``: pictures generated at once (the rest wait in the queue), 1 to 16.
    ``queue_size``: requests waiting at most (more are turned away), 1 to 1000.
    ``keep_runs``: the runs whose files are kept for download (older ones are deleted), 1 to 10000.
    """

    max_upload_mb: float = 20.0
    concurrency: int = 1
    queue_size: int = 16
    keep_runs: int = 32

    def __post_init__(self):
        if not 0.01 <= self.max_upload_mb <= 1000:
            raise StdgenError(f"max_upload_mb must be between 0.01 and 1000, got {self.max_upload_mb}")
        for name, hi in (("concurrency", 16), ("queue_size", 1000), ("keep_runs", 10000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise StdgenError(f"{name} must be an integer between 1 and {hi}, got {value!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


@dataclass(frozen=True)
class Options:
    """What a visitor chose: ``pose`` "auto" | "apose", ``seed`` 0 to 2**31 - 1, ``steps`` the
    diffusion steps (``None``: the pipeline's default) 1 to 200, ``refine`` on / off."""

    pose: str = "auto"
    seed: int = 0
    steps: int | None = None
    refine: bool = True

    def __post_init__(self):
        if self.pose not in ("auto", "apose"):
            raise StdgenError(f"pose must be 'auto' or 'apose', got {self.pose!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise StdgenError(f"seed must be a whole number from 0 to {2**31 - 1}, got {self.seed!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or not 1 <= self.steps <= 200):
            raise StdgenError(f"steps must be a whole number from 1 to 200 (or empty for the default), "
                              f"got {self.steps!r}")

    @classmethod
    def from_form(cls, pose: Any, seed: Any, steps: Any, refine: Any) -> Options:
        """From the page's widgets: numbers arrive as floats (or ``None`` when a box is empty);
        ``steps`` 0 or empty means the pipeline's default."""
        def whole(value, name):
            if value is None or value == "":
                return None
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise StdgenError(f"{name} must be a whole number, got {value!r}") from None
            if not f.is_integer():
                raise StdgenError(f"{name} must be a whole number, got {value!r}")
            return int(f)

        seed = whole(seed, "seed")
        steps = whole(steps, "steps")
        return cls(pose=str(pose), seed=0 if seed is None else seed, steps=None if steps == 0 else steps,
                   refine=bool(refine))


def read_upload(path: str | os.PathLike, config: AppConfig, name: str | None = None) -> np.ndarray:
    """The uploaded picture at ``path`` as ``(H, W, 3|4)`` uint8, or a one-line
    :class:`~stdgen.errors.StdgenError` a visitor understands: too large a file, not a picture,
    too many pixels, fully transparent, or one flat colour (no figure to make a character of).
    ``name``: the file's name as the visitor knows it (default: ``path``'s name)."""
    path = Path(path)
    label = name or path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise StdgenError(f"{label}: the upload did not arrive; please upload it again") from None
    if size > config.max_upload_bytes:
        raise StdgenError(f"{label}: {size / 2**20:.1f} MB is larger than this app's upload limit of "
                          f"{config.max_upload_mb:g} MB; upload a smaller picture")
    if size == 0:
        raise StdgenError(f"{label}: the file is empty; upload a picture (PNG, JPEG, WebP)")
    try:
        width, height = image_size(path)
    except InputError:
        read_image(path, "auto", max_pixels=APP_MAX_PIXELS, what=label)  # raises it again, naming ``label``
        raise
    if width * height > APP_MAX_PIXELS:
        raise StdgenError(f"{label}: {width}x{height} pixels is more than this app's limit of "
                          f"{APP_MAX_PIXELS / 1e6:.1f} megapixels (4096x4096); upload a smaller picture")
    image = read_image(path, "auto", max_pixels=APP_MAX_PIXELS, what=label)
    if image.shape[2] == 4 and int(image[..., 3].max()) == 0:
        raise StdgenError(f"{label}: the picture is fully transparent; there is no figure in it")
    flat = image[..., :3] if image.shape[2] == 3 else image[..., :3][image[..., 3] > 0]
    if np.ptp(flat.reshape(-1, 3), axis=0).max(initial=0) == 0:
        raise StdgenError(f"{label}: the picture is one flat colour; there is no figure in it")
    return image


@dataclass
class Event:
    """One step of a run, as the page shows it.

    ``kind``: "progress" (``stage``, ``fraction`` of that stage), "stage" (``stage`` finished;
    ``images`` its pictures: "canonical" ``(H, W, 4)``, "views_rgb" ``(6, R, R, 4)``,
    "views_normal" ``(6, R, R, 3)``, all uint8), or "done" (``run`` holds the result).
    """

    kind: str
    stage: str | None = None
    fraction: float = 0.0
    images: dict[str, np.ndarray] = field(default_factory=dict)
    run: Run | None = None


@dataclass(frozen=True)
class Run:
    """A finished run: its folder (``character.glb``, ``body.glb``, ``clothes.glb``, ``hair.glb``,
    ``canonical.png``, ``views.png``, ``report.json``, ...), per-stage seconds and peak memory."""

    folder: Path
    seconds: dict[str, float]
    peak_memory: Any
    settings: dict[str, Any]

    def part_file(self, part: str) -> Path:
        """The GLB the part selector shows for ``part`` ("whole", "body", "clothes", "hair")."""
        if part not in PART_FILES:
            raise StdgenError(f"part must be one of {', '.join(PART_FILES)}, got {part!r}")
        return self.folder / PART_FILES[part]


class Cancelled(Exception):
    """Raised inside the pipeline (from its progress callback) when the visitor has gone."""


class RunStore:
    """The folders of finished runs under ``root`` (made if missing): each written atomically
    (``.tmp-*`` then renamed), the oldest deleted beyond ``keep`` so a long-running app does not
    fill the disk."""

    def __init__(self, root: str | os.PathLike, keep: int = 32):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._lock = threading.Lock()

    def save(self, write: Callable[[Path], None]) -> Path:
        """A new run folder filled by ``write(folder)``; nothing is left of it if ``write`` fails."""
        folder = self.root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        with atomic_dir(folder) as tmp:
            write(tmp)
        self._prune()
        return folder

    def runs(self) -> list[Path]:
        """Finished run folders, oldest first."""
        return sorted((p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("run-")),
                      key=lambda p: (p.stat().st_mtime, p.name))

    def _prune(self) -> None:
        with self._lock:
            for old in self.runs()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)


def default_results_root() -> Path:
    """A fresh private folder for one app's runs, in the system's temporary folder."""
    return Path(tempfile.mkdtemp(prefix="stdgen-app-"))


def generate_events(pipeline: Callable[..., Any], image: np.ndarray, options: Options, store: RunStore,
                    save_output: Callable[[Any, Path], Any], *, cancel: threading.Event | None = None
                    ) -> Iterator[Event]:
    """Run ``pipeline(image, ...)`` in a worker thread and yield its :class:`Event` s as they come,
    ending with "done" (the run saved in ``store`` by ``save_output(out, folder)``).

    A :class:`~stdgen.errors.StdgenError` of the pipeline is raised here, in the caller's thread.
    Closing the generator (the visitor left) sets ``cancel``: the pipeline stops at its next
    progress report, and the generator returns once the worker has ended, so the app's concurrency
    limit holds for the work actually running.
    """
    events: queue.Queue = queue.Queue()
    cancel = cancel or threading.Event()

    def progress(stage: str, fraction: float) -> None:
        if cancel.is_set():
            raise Cancelled
        events.put(Event("progress", stage=stage, fraction=float(fraction)))

    def on_stage(stage: str, images: dict) -> None:
        if cancel.is_set():
            raise Cancelled
        events.put(Event("stage", stage=stage, images=dict(images)))

    def work() -> None:
        try:
            out = pipeline(image, pose=options.pose, seed=options.seed, steps=options.steps,
                           refine=options.refine, progress=progress, on_stage=on_stage)
            folder = store.save(lambda tmp: save_output(out, tmp))
            run = Run(folder=folder, seconds={k: float(v) for k, v in dict(out.seconds).items()},
                      peak_memory=getattr(out, "peak_memory", None), settings=dict(getattr(out, "settings", {})))
            events.put(Event("done", run=run))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            events.put(exc)

    worker = threading.Thread(target=work, name="stdgen-app-run", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if isinstance(item, Cancelled):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.kind == "done":
                return
    finally:
        cancel.set()
        worker.join()


def seconds_table(run: Run) -> str:
    """Per-stage seconds as a Markdown table, stages in pipeline order, with a peak memory column when
    ``run.peak_memory`` is per stage (a dict stage -> bytes), else a line under it."""
    order = [s for s in STAGES if s in run.seconds] + [s for s in run.seconds if s not in STAGES]
    peaks = run.peak_memory if isinstance(run.peak_memory, dict) and set(run.peak_memory) <= set(run.seconds) else None
    if peaks:
        rows = ["| stage | seconds | peak memory |", "|---|---:|---:|"]
        rows += [f"| {s} | {run.seconds[s]:.2f} | {_bytes(peaks.get(s))} |" for s in order]
        rows.append(f"| **total** | **{sum(run.seconds.values()):.2f}** | **{_bytes(max(peaks.values()))}** |")
        return "\n".join(rows)
    rows = ["| stage | seconds |", "|---|---:|"]
    rows += [f"| {s} | {run.seconds[s]:.2f} |" for s in order]
    rows.append(f"| **total** | **{sum(run.seconds.values()):.2f}** |")
    memory = _memory_text(run.peak_memory)
    return "\n".join(rows) + (f"\n\nPeak memory: {memory}" if memory else "")


def _memory_text(peak: Any) -> str:
    if peak is None:
        return ""
    if isinstance(peak, dict):
        return ", ".join(f"{k} {_bytes(v)}" for k, v in peak.items() if v is not None)
    return _bytes(peak)


def _bytes(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value / 2**20:.0f} MiB" if value >= 2**20 else f"{value:.0f} B"
    return str(value)


def views_sheet(images: dict[str, np.ndarray]) -> np.ndarray:
    """The "multiview" stage's six colour views (``(6, R, R, 4)`` or ``(6, R, R, 3)``, composited on
    white) above its six normal views, as one ``(2 R, 6 R, 3)`` uint8 picture (a row is left white
    when its views are missing; normals are resized to the colour views' size)."""
    rgb, normal = images.get("views_rgb"), images.get("views_normal")
    if rgb is None and normal is None:
        raise ValueError("views_sheet: no views_rgb or views_normal in the stage's images")
    side = int((rgb if rgb is not None else normal).shape[1])
    rows = []
    for views in (rgb, normal):
        if views is None:
            rows.append(np.full((side, 6 * side, 3), 255, np.uint8))
            continue
        tiles = []
        for v in np.asarray(views):
            v = _resized(v, side)
            if v.shape[2] == 4:  # over white, as the page's background
                a = v[..., 3:].astype(np.float32) / 255
                v = (v[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
            tiles.append(v[..., :3])
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    if image.shape[0] == side and image.shape[1] == side:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
