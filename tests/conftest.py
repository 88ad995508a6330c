"""Fixtures shared across test folders."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: thread start-up and contention on a shared 2-core machine cost more than the maths.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_bundled_weights(tmp_path_factory, monkeypatch):
    """The package's bundled weights hidden (an empty folder instead), and $STDGEN_WEIGHTS unset: for
    tests of what happens when no weights are found anywhere."""
    import stdgen.weights

    empty = tmp_path_factory.mktemp("no-bundled-weights")
    monkeypatch.setattr(stdgen.weights, "bundled_dir", lambda: empty)
    monkeypatch.delenv("STDGEN_WEIGHTS", raising=False)
    return empty
