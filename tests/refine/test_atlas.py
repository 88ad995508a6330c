"""UV atlases: valid charts, and the helper process gives what charting in-process gives."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import trimesh

from stdgen.refine.atlas import AtlasPool, AtlasWorker, uv_atlas


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
        first, second = worker.submit(v, f, 256, 2, 64), worker.submit(v * 2, f, 256, 2, 64)
        got = first.result()
        assert worker._proc is not None and worker._proc.poll() is None  # charted in the helper
        np.testing.assert_allclose(got[0], want[0], atol=1e-6)
        np.testing.assert_array_equal(got[1], want[1])
        assert second.result()[1].shape == f.shape
        # Kill the helper: later atlases are made here instead, the same.
        worker._proc.kill()
        worker._proc.wait()
        again = worker.submit(v, f, 256, 2, 64).result()
        np.testing.assert_array_equal(again[1], want[1])
    assert worker._proc is None


def test_atlas_worker_does_not_rerun_an_unguarded_script(tmp_path):
    # A user's script without a main guard: the helper must not import it (a multiprocessing
    # child would, and run the script's work twice).
    marker = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        import trimesh
        from stdgen.refine.atlas import AtlasWorker
        with open({str(marker)!r}, "a") as fh:
            fh.write("run\\n")
        m = trimesh.creation.icosphere(2)
        with AtlasWorker() as w:
            uvs, uv_faces = w.submit(m.vertices, m.faces, 128, 2, 16).result()
        assert uv_faces.shape == m.faces.shape
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text() == "run\n"


def test_atlas_pool_charts_in_separate_helpers_with_the_same_results():
    v, f = _mesh()
    meshes = [(v, f), (v * [1.5, 1, 1], f), (v * [1, 0.5, 2], f)]
    want = [uv_atlas(a, b, 256, 2, 64) for a, b in meshes]
    with AtlasPool(3) as pool:
        pending = [pool.submit(a, b, 256, 2, 64) for a, b in meshes]
        got = [p.result() for p in pending]
        pids = {w._proc.pid for w in pool.workers}
        assert len(pids) == 3  # one helper per part, charting at once
    for (uvs, uv_faces), (wuvs, wfaces) in zip(got, want):
        np.testing.assert_allclose(uvs, wuvs, atol=1e-6)
        np.testing.assert_array_equal(uv_faces, wfaces)
    assert all(w._proc is None for w in pool.workers)
    with pytest.raises(ValueError, match="processes"):
        AtlasPool(0)
