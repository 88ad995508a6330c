"""UV atlases: valid charts, and the helper process gives what charting in-process gives."""

import os
import signal

import numpy as np
import trimesh

from stdgen.refine.atlas import AtlasWorker, uv_atlas


def _mesh():
    m = trimesh.creation.icosphere(3)
    return np.asarray(m.vertices) * [0.3, 0.8, 0.2], np.asarray(m.faces)


def test_uv_atlas_charts_every_face_inside_the_square():
    v, f = _mesh()
    uvs, uv_faces = uv_atlas(v, f, size=256, padding=2)
    assert uv_faces.shape == f.shape and uvs.shape[1] == 2
    assert uvs.min() >= 0 and uvs.max() <= 1
    # Every triangle keeps a positive UV area (no chart collapsed to a line).
    a, b, c = (uvs[uv_faces[:, k]] for k in range(3))
    area = 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    assert (area > 0).all()


def test_atlas_worker_matches_in_process_and_survives_a_dead_helper():
    v, f = _mesh()
    want = uv_atlas(v, f, 256, 2, 64)
    with AtlasWorker() as worker:
        assert worker._pool is not None
        got = worker.submit(v, f, 256, 2, 64).result()
        assert got[1].shape == want[1].shape
        np.testing.assert_allclose(got[0], want[0], atol=1e-6)
        np.testing.assert_array_equal(got[1], want[1])
        # Kill the helper: the next atlas is made here instead, the same.
        for pid in list(worker._pool._processes):
            os.kill(pid, signal.SIGKILL)
        again = worker.submit(v, f, 256, 2, 64).result()
        np.testing.assert_array_equal(again[1], want[1])
