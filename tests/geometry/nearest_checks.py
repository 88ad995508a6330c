"""The Triton nearest-point kernel against scipy, on CPU tensors through Triton's interpreter.

Run as ``TRITON_INTERPRET=1 python tests/geometry/nearest_checks.py`` (the variable must be set
before Triton loads, hence a subprocess of the test); prints ``ok``.
"""

import numpy as np
import torch
from scipy.spatial import cKDTree

from stdgen.geometry.nearest import NearestPoints


def main() -> None:
    rng = np.random.default_rng(5)
    # Sizes that leave partial blocks of queries and of points.
    pts = rng.normal(size=(301, 3)) * [0.3, 0.8, 0.2] + [0.1, 0.9, 0.0]
    q = rng.normal(size=(203, 3)) * 0.5 + [0.1, 0.9, 0.0]
    pts[7] = pts[3]  # an exact tie: the lower index wins
    q[0] = pts[3]
    nn = NearestPoints(pts, backend="triton")
    d, i = nn.query(torch.as_tensor(q, dtype=torch.float32))
    ref_d, ref_i = cKDTree(pts).query(q)
    assert i.shape == (203, 1) and i.dtype == torch.long
    assert (i[:, 0].numpy() == ref_i).all(), np.nonzero(i[:, 0].numpy() != ref_i)
    assert int(i[0, 0]) == 3
    np.testing.assert_allclose(d[:, 0].numpy(), ref_d, atol=2e-6)
    # k > 1 goes to the tiles.
    d4, i4 = nn.query(torch.as_tensor(q), k=4)
    assert (i4.numpy() == cKDTree(pts).query(q, k=4)[1]).mean() > 0.99
    print("ok")


if __name__ == "__main__":
    main()
