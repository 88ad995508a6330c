"""Helper processes that stop with their parent.

A worker or helper process calls :func:`die_with_parent` first thing. It then

- ignores Ctrl-C (SIGINT goes to the whole foreground process group; the parent decides what
  happens, and the child prints no ``KeyboardInterrupt`` traceback of its own);
- is killed by the kernel when the parent dies, even by ``kill -9`` (Linux ``PR_SET_PDEATHSIG``);
- as a fallback (other systems, or a parent that died before the call), a daemon thread polls the
  parent's pid and ends the process when it changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig(sig: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None, poll_s: float = 0.5, ignore_sigint: bool = True) -> None:
    """Make this process end when its parent (``parent_pid``, default the current parent) ends."""
    parent = os.getppid() if parent_pid is None else parent_pid
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the kernel could be told
        os._exit(1)

    def watch() -> None:
        import time

        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="stdgen-parent-watch", daemon=True).start()


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside this block begin with Ctrl-C ignored (the disposition is inherited
    across ``exec``), so a Ctrl-C while they are still starting up (importing torch, before
    :func:`die_with_parent` runs) prints nothing from them. In this process a Ctrl-C landing inside
    the block (a few milliseconds of process creation) is dropped. Only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def start_pool_workers(executor, count: int) -> None:
    """Start ``count`` worker processes of a ``ProcessPoolExecutor`` now (it starts them lazily,
    one per submitted task), with Ctrl-C ignored in them from the start."""
    with children_ignore_sigint():
        for _ in range(count):
            executor.submit(os.getpid)


def pool_worker_init(parent_pid: int, init: str | None = None, *args) -> None:
    """A process pool's ``initializer``: :func:`die_with_parent` first, then ``init``
    (``"module:function"``, called with ``args``). Naming the real initializer by string keeps this
    light: a spawned worker unpickles its initializer before running it, and a heavy module there
    (torch) would leave the worker unwatched for the seconds its import takes."""
    die_with_parent(parent_pid)
    if init:
        import importlib

        module, name = init.split(":")
        getattr(importlib.import_module(module), name)(*args)
