"""UV atlases of refined parts (xatlas), in this process or in a helper process.

xatlas holds Python's GIL while it charts, so a thread would stall the refinement beside it;
:class:`AtlasWorker` runs the charting in a helper process instead (``python -m
stdgen.refine.atlas``, which imports only numpy and xatlas), where it overlaps the next part's
refinement for real; :class:`AtlasPool` keeps several, so that the parts chart at once. The
helper is a plain subprocess fed pickled meshes over a pipe, not a
``multiprocessing`` child: those re-import the caller's main script, which in a script without an
``if __name__ == "__main__"`` guard would run the caller's work a second time.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, size: int = 1024, padding: int = 4,
             max_charts_hint: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """xatlas UVs for a mesh: ``(uvs (M, 2) float32 in [0, 1], uv_faces (F, 3) int32)``.

    The UVs follow the glTF convention as far as this module is concerned (texel row = v * size);
    geometry vertices are not split (``uv_faces`` indexes the UVs per face corner). No chart is
    larger than ``1 / max_charts_hint`` of the surface. xatlas holds the GIL while it works: to
    overlap it with other Python work, run it in another process (:class:`AtlasWorker`).
    """
    import xatlas

    v = np.ascontiguousarray(vertices, np.float32)
    f = np.ascontiguousarray(faces, np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f)
    chart = xatlas.ChartOptions()
    # Capping the chart area and skipping xatlas's re-seeding iterations make chart growing about
    # five times faster on our meshes (measured on a 54k-face refined clothes mesh, 2-core machine:
    # 4.7 s at 1/64 of the area with one iteration, 1.0 s at 1/256 with none; 1,520 charts instead
    # of 900, packing utilisation 0.77 instead of 0.78): more, smaller charts, the same texels.
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    chart.max_chart_area = float(area / max_charts_hint)
    chart.max_iterations = 0
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding)
    pack.bilinear = True
    pack.rotate_charts = True
    pack.blockAlign = True
    atlas.generate(chart, pack)
    _vmapping, indices, uvs = atlas[0]
    return np.asarray(uvs, np.float32), np.asarray(indices, np.int32).reshape(-1, 3)


class AtlasWorker:
    """Charts meshes in one helper process, in the order they are submitted.

    ``submit(vertices, faces, size, padding, charts_hint)`` returns a handle whose ``result()`` is
    :func:`uv_atlas`'s result. One thread of this process feeds the helper and waits for it (in
    I/O, without the GIL). Should the helper fail to start or die, the work is done in this
    process instead (the same result, only not overlapped). Use as a context manager.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._failed = False
        self._feeder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stdgen-atlas")

    def submit(self, vertices: np.ndarray, faces: np.ndarray, size: int = 1024, padding: int = 4,
               charts_hint: int = 256) -> PendingAtlas:
        args = (np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.int64), int(size),
                int(padding), int(charts_hint))
        return PendingAtlas(self._feeder.submit(self._round_trip, args), args)

    def _round_trip(self, args: tuple):
        """In the feeder thread: the helper's answer for ``args`` (an exception if it failed)."""
        if self._failed:
            raise _HelperGone("no atlas helper")
        try:
            if self._proc is None:
                # Its own process group: a Ctrl-C at the terminal goes to this process only, which
                # then closes the helper's input (the helper also ends if this process is killed).
                self._proc = subprocess.Popen([sys.executable, "-m", "stdgen.refine.atlas"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, process_group=0)
            pickle.dump(args, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
            answer = pickle.load(self._proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self._failed = True
            raise _HelperGone(str(exc)) from exc
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self._feeder.shutdown(wait=True, cancel_futures=True)
        if self._proc is not None:
            try:
                self._proc.stdin.close()  # the helper's loop ends at end of input
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> AtlasWorker:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._proc is not None:
            self._proc.kill()  # interrupted or failed: do not wait for an atlas nobody will use
        self.close()


class AtlasPool:
    """``processes`` :class:`AtlasWorker` helpers; each ``submit`` goes to the next in turn, so the
    atlases of successive parts chart at once where the host has cores to spare (on a GPU machine the
    charting, not the refinement, is the refine stage's critical path). The same results as one
    worker. Use as a context manager."""

    def __init__(self, processes: int = 1) -> None:
        if int(processes) < 1:
            raise ValueError(f"AtlasPool: processes must be >= 1, got {processes}")
        self.workers = [AtlasWorker() for _ in range(int(processes))]
        self._turn = 0

    def submit(self, vertices: np.ndarray, faces: np.ndarray, size: int = 1024, padding: int = 4,
               charts_hint: int = 256) -> PendingAtlas:
        worker = self.workers[self._turn % len(self.workers)]
        self._turn += 1
        return worker.submit(vertices, faces, size, padding, charts_hint)

    def close(self) -> None:
        for w in self.workers:
            w.close()

    def __enter__(self) -> AtlasPool:
        return self

    def __exit__(self, *exc) -> None:
        for w in self.workers:
            w.__exit__(*exc)


class _HelperGone(RuntimeError):
    """The helper process could not be started or stopped answering."""


class PendingAtlas:
    """An atlas being made by :class:`AtlasWorker`: ``result()`` waits for it (or, if the helper
    process is gone or was never there, makes it here)."""

    def __init__(self, future: Future, args: tuple) -> None:
        self._future, self._args = future, args

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self._future.result()
        except _HelperGone:
            return uv_atlas(*self._args)


def _serve() -> None:
    """The helper's loop: pickled ``uv_atlas`` arguments in on stdin, results (or the exception)
    out on stdout, until stdin ends."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            args = pickle.load(stdin)
        except EOFError:
            return
        try:
            answer = uv_atlas(*args)
        except Exception as exc:  # sent back, raised in the caller
            answer = exc
        pickle.dump(answer, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


if __name__ == "__main__":
    from stdgen.utils.process import die_with_parent

    # Ctrl-C is the parent's (no traceback from here); end with the parent, also on kill -9.
    die_with_parent()
    _serve()
