import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from stdgen.geometry.nearest import NearestPoints


@pytest.mark.parametrize("backend", ["kdtree", "brute"])
def test_nearest_points_agree_with_scipy(backend):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(3000, 3)) * [0.3, 0.8, 0.2] + [0.1, 0.9, -0.05]  # a character-sized cloud off the origin
    q = rng.normal(size=(1700, 3)) * 0.5 + [0.1, 0.9, 0.0]
    ref_d, ref_i = cKDTree(pts).query(q, k=4)
    nn = NearestPoints(pts, backend=backend)
    d, i = nn.query(torch.as_tensor(q, dtype=torch.float32), k=4)
    assert d.shape == (1700, 4) and i.dtype == torch.long
    # float32 queries: the distances agree to float32 rounding of the query, the indices exactly
    # (no near-ties at this density).
    np.testing.assert_allclose(d.numpy(), ref_d, atol=1e-6)
    assert (i.numpy() == ref_i).mean() > 0.999
    d1, i1 = nn.query(torch.as_tensor(q), k=1)
    np.testing.assert_array_equal(i1[:, 0].numpy(), ref_i[:, 0])
    np.testing.assert_allclose(d1[:, 0].numpy(), ref_d[:, 0], rtol=1e-9, atol=1e-12)


def test_nearest_points_tiles_cover_every_query(monkeypatch):
    import stdgen.geometry.nearest as nearest

    monkeypatch.setattr(nearest, "_TILE_ENTRIES", 1000)  # many tiles, the last one partial
    rng = np.random.default_rng(1)
    pts = rng.random((300, 3))
    q = rng.random((1001, 3))
    _, i = NearestPoints(pts, backend="brute").query(torch.as_tensor(q))
    np.testing.assert_array_equal(i[:, 0].numpy(), cKDTree(pts).query(q)[1])


def test_nearest_points_exact_at_millimetre_spacing():
    # Points a millimetre apart a metre from the origin: the float64 expansion still orders them.
    base = np.array([0.4, 1.3, -0.2])
    pts = base + np.stack(np.meshgrid(*[np.arange(10) * 1e-3] * 3, indexing="ij"), -1).reshape(-1, 3)
    q = pts + 0.3e-3  # 0.3 mm off each point: the nearest is the point itself
    _, i = NearestPoints(pts, backend="brute").query(torch.as_tensor(q))
    np.testing.assert_array_equal(i[:, 0].numpy(), np.arange(len(pts)))


def test_nearest_points_bad_input():
    with pytest.raises(ValueError, match="backend"):
        NearestPoints(np.zeros((3, 3)), backend="octree")
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        NearestPoints(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="k must be"):
        NearestPoints(np.zeros((3, 3))).query(torch.zeros(2, 3), k=4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nearest_points_cuda_matches_kdtree():
    rng = np.random.default_rng(2)
    pts = rng.random((20000, 3))
    q = torch.as_tensor(rng.random((30000, 3)), dtype=torch.float32, device="cuda")
    nn = NearestPoints(pts, "cuda")
    assert nn.backend == "triton"
    d1, i1 = nn.query(q)
    ref1_d, ref1_i = cKDTree(pts).query(q.cpu().double().numpy())
    assert (i1[:, 0].cpu().numpy() == ref1_i).mean() > 0.999
    np.testing.assert_allclose(d1[:, 0].cpu().numpy(), ref1_d, atol=2e-6)
    d, i = nn.query(q, k=2)
    assert i.device.type == "cuda"
    ref_d, ref_i = cKDTree(pts).query(q.cpu().double().numpy(), k=2)
    np.testing.assert_allclose(d.cpu().numpy(), ref_d, atol=1e-6)
    assert (i.cpu().numpy() == ref_i).mean() > 0.999


def test_triton_kernel_matches_scipy_under_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    script = Path(__file__).parent / "nearest_checks.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_max_distance_marks_far_neighbours_as_scipy_does():
    rng = np.random.default_rng(6)
    pts = rng.random((400, 3))
    q = rng.random((300, 3)) * 1.5
    ref_d, ref_i = cKDTree(pts).query(q, k=3, distance_upper_bound=0.08)
    for backend in ("kdtree", "brute"):
        d, i = NearestPoints(pts, backend=backend).query(torch.as_tensor(q), k=3, max_distance=0.08)
        far = np.isinf(ref_d)
        assert far.any() and (~far).any()
        np.testing.assert_array_equal(np.isinf(d.numpy()), far)
        np.testing.assert_array_equal(i.numpy()[far], 400)
        np.testing.assert_array_equal(i.numpy()[~far], ref_i[~far])
