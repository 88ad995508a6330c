"""Memory: 8 views at 1024 x 1024 of a 200k-face mesh on the CPU, with a measured peak."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, time
import torch
from stdgen.render import evaluation_views, frame_bounds, render_mesh
from stdgen.commands.render_demo import torus_knot

mesh = torus_knot(200_000)
center, half = frame_bounds(mesh.bounds())
cams = evaluation_views(center=center, half_size=half)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
with torch.no_grad():
    out = render_mesh(mesh, cams, 1024, shading="lambert")
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"faces": mesh.num_faces, "coverage": float(out.alpha.mean()), "seconds": elapsed,
                  "peak_mb": peak / 1024, "before_mb": base / 1024,
                  "outputs_mb": sum(x.numel() * x.element_size() for x in
                                    (out.rgb, out.alpha, out.normal, out.depth, out.rast)) / 2**20}))
"""


@pytest.mark.slow
def test_eight_1024_views_of_a_200k_face_mesh_fit_in_memory():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(report)
    assert report["faces"] >= 199_000 and report["coverage"] > 0.05
    # The five output images alone are ~390 MB; the render may add little more than them on top of
    # the mesh and the interpreter (a full (pixel x triangle) expansion would need tens of GB).
    assert report["peak_mb"] - report["before_mb"] < 2.5 * report["outputs_mb"] + 300, report
    assert report["peak_mb"] < 2500, report
