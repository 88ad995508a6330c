"""Grid placement."""

import numpy as np
import pytest

from stdgen.geometry.grid import Grid


def test_points_and_bounds():
    g = Grid.from_bounds([-1, 0, 2], [1, 3, 4], (5, 4, 3))
    assert g.cells == (4, 3, 2)
    assert np.allclose(g.spacing, (0.5, 1.0, 1.0))
    p = g.points_numpy()
    assert p.shape == (5, 4, 3, 3)
    assert np.allclose(p[0, 0, 0], [-1, 0, 2]) and np.allclose(p[-1, -1, -1], [1, 3, 4])
    assert np.allclose(p[2, 1, 0], [0, 1, 2])
    assert np.allclose(g.points().numpy(), p)
    assert np.allclose(g.hi, [1, 3, 4])


def test_bad_grids():
    with pytest.raises(ValueError, match="shape"):
        Grid((1, 4, 4), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        Grid((4, 4, 4), (0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="exceed"):
        Grid.from_bounds([0, 0, 0], [1, 0, 1], 4)
