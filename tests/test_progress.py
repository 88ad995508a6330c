"""stdgen.utils.progress.LazyBar: the CLI's bar over the library's progress(done, total) callback."""

import pytest

from stdgen.utils.progress import LazyBar


class FakeBar:
    made: list = []

    def __init__(self, total, initial):
        self.total, self.n, self.closed = total, initial, False
        FakeBar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


def test_the_bar_opens_at_the_first_call_and_closes_on_errors():
    FakeBar.made = []
    with pytest.raises(RuntimeError), LazyBar(FakeBar) as progress:
        assert FakeBar.made == []  # nothing drawn before the work starts
        progress(2, 5)  # two already done
        progress(3, 5)
        progress(5, 5)
        raise RuntimeError
    (bar,) = FakeBar.made
    assert (bar.total, bar.n, bar.closed) == (5, 5, True)
    with LazyBar(FakeBar):  # never called: no bar at all
        pass
    assert len(FakeBar.made) == 1
