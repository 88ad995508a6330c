"""Progress reporting: the library calls ``progress(done, total)``; command-line modules turn it
into a bar with :class:`LazyBar` (the bar itself, e.g. tqdm, is imported only by them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LazyBar:
    """A ``progress(done, total)`` callback that opens a bar at its first call.

    ``make(total=, initial=)`` builds the bar (``functools.partial(tqdm, desc=..., unit=...)``); it
    needs ``update(n)``, ``close()`` and a count ``n``. The bar opens only when the work starts,
    so errors raised by the checks before it print on a line of their own. Use as a context
    manager: the bar is closed (its line ended) before an error propagates.
    """

    def __init__(self, make: Callable[..., Any]):
        self.make = make
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.make(total=total, initial=done)
        else:
            self.bar.total = total
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> LazyBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
