"""Every fast path against the PyTorch reference: face ids, values and vector-Jacobian products.

The CPU fast path (numba) runs here directly; the GPU fast path (Triton) runs its kernels through
Triton's interpreter in a subprocess (``TRITON_INTERPRET=1`` must be set before Triton loads).
On a CUDA machine ``test_gpu.py`` repeats the comparisons at full size.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from render_checks import AGREEMENT, assert_backend_matches, edge_scene, knot_scene, ranges_scene

from stdgen.render import rasterize, visibility

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("ortho", [False, True])
def test_numba_matches_reference_on_a_knot(ortho):
    m = assert_backend_matches("numba", knot_scene(3000, 3, 48, ortho=ortho))
    assert 0.1 < m["coverage"] < 0.9


@pytest.mark.parametrize("cull", [False, True])
def test_numba_matches_reference_on_awkward_triangles(cull):
    assert_backend_matches("numba", edge_scene(40), cull=cull)


def test_numba_matches_reference_in_range_mode():
    assert_backend_matches("numba", ranges_scene(32))


def test_numba_visibility_agrees_on_a_dense_mesh():
    sc = knot_scene(20000, 2, 128)
    f_ref = visibility(sc["pos"], sc["tri"], sc["res"], backend="torch")
    f_fast = visibility(sc["pos"], sc["tri"], sc["res"], backend="numba")
    assert float((f_ref == f_fast).float().mean()) >= AGREEMENT


def test_numba_in_float64_matches_reference():
    sc = knot_scene(1000, 2, 32)
    sc = {**sc, "pos": sc["pos"].double(), "attr": sc["attr"].double()}
    r_ref = rasterize(sc["pos"], sc["tri"], sc["res"], backend="torch")
    r_fast = rasterize(sc["pos"], sc["tri"], sc["res"], backend="numba")
    assert r_fast.dtype == torch.float64
    torch.testing.assert_close(r_fast, r_ref, rtol=1e-9, atol=1e-9)


def _run_triton_checks(*flags: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "render_checks.py"), "triton", "cpu", *flags],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_triton_kernels_match_reference_under_the_interpreter():
    pytest.importorskip("triton")
    out = _run_triton_checks("--quick", "--small-boxes")
    assert out.strip().endswith("ok") and "edge" in out and "ranges" in out


@pytest.mark.slow
def test_triton_kernels_match_reference_under_the_interpreter_all_scenes():
    pytest.importorskip("triton")
    out = _run_triton_checks()
    assert out.strip().endswith("ok") and "knot_ortho" in out and "edge_cull" in out
    out = _run_triton_checks("--small-boxes")
    assert out.strip().endswith("ok")
