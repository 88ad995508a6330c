"""The Triton fast path on a CUDA device against the PyTorch reference (run with ``-m gpu``)."""

import pytest
import torch
from render_checks import assert_backend_matches, edge_scene, in_float64, knot_scene, ranges_scene

from stdgen.render import antialias, interpolate, rasterize, visibility

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("ortho", [False, True])
def test_triton_matches_reference_on_a_knot(ortho):
    # float32, the production path: sliver triangles make single pixels and the gradients of their
    # corners differ by rounding (GPU fused multiply-adds), hence the looser per-pixel and VJP bounds.
    assert_backend_matches("triton", knot_scene(20000, 4, 256, "cuda", ortho=ortho), uv_tol=2e-2, vjp_rtol=1e-2)
    # float64: the same algebra to high precision.
    assert_backend_matches("triton", in_float64(knot_scene(20000, 4, 256, "cuda", ortho=ortho)), uv_tol=1e-6,
                           value_rtol=1e-9, vjp_rtol=1e-8)


@pytest.mark.parametrize("cull", [False, True])
def test_triton_matches_reference_on_awkward_triangles(cull):
    assert_backend_matches("triton", edge_scene(96, "cuda"), cull=cull)


def test_triton_matches_reference_in_range_mode():
    assert_backend_matches("triton", ranges_scene(64, "cuda"))


def test_triton_visibility_matches_numba_on_a_million_faces():
    sc = knot_scene(1_000_000, 2, 1024, "cuda")
    f_gpu = visibility(sc["pos"], sc["tri"], sc["res"], backend="triton").cpu()
    f_cpu = visibility(sc["pos"].cpu(), sc["tri"].cpu(), sc["res"], backend="numba")
    assert float((f_gpu == f_cpu).float().mean()) >= 0.999


def test_triton_hot_path_never_waits_for_the_gpu():
    """forward + backward of rasterize / interpolate / antialias without a host synchronisation
    (after a first call, which checks the triangle indices once)."""
    sc = knot_scene(20000, 4, 256, "cuda")
    pos = sc["pos"].clone().requires_grad_(True)

    def step():
        rast = rasterize(pos, sc["tri"], sc["res"])
        col = interpolate(sc["attr"], rast, sc["tri"])
        out = antialias(col, rast, pos, sc["tri"], sc["topo"])
        out.backward(torch.ones_like(out))

    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(pos.grad).all()


def test_triton_survives_out_of_range_indices_without_faulting():
    """The kernels range-check indices read from data: a face id past tri draws nothing."""
    sc = knot_scene(2000, 2, 64, "cuda")
    rast = rasterize(sc["pos"], sc["tri"], sc["res"])
    out = interpolate(sc["attr"], rast, sc["tri"][:10])  # rast refers to faces beyond these 10
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()


def test_render_mesh_on_cuda_matches_the_cpu():
    from stdgen.commands.render_demo import demo_figure
    from stdgen.render import frame_bounds, generation_views, render_mesh

    mesh = demo_figure(64)
    center, half = frame_bounds(mesh.bounds())
    outs = [render_mesh(mesh, generation_views(center=center, half_size=half, device=d), 128) for d in ("cpu", "cuda")]
    agree = float((outs[0].rast[..., 3] == outs[1].rast[..., 3].cpu()).float().mean())
    assert agree >= 0.999
    for name in ("rgb", "alpha", "normal", "depth"):
        a, b = getattr(outs[0], name), getattr(outs[1], name).cpu()
        assert float((a - b).abs().gt(1e-3).float().mean()) < 1e-3, name


def test_forward_can_be_captured_in_a_cuda_graph():
    """The hot path launches kernels only (no host syncs, no host-side shapes from data), so a
    render can be captured once and replayed with new vertex positions."""
    sc = knot_scene(20000, 4, 256, "cuda")
    static_pos = sc["pos"].clone()

    def render():
        rast = rasterize(static_pos, sc["tri"], sc["res"])
        return antialias(interpolate(sc["attr"], rast, sc["tri"]), rast, static_pos, sc["tri"], sc["topo"])

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        render()  # warm up: compile, check indices once
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = render()
    moved = sc["pos"] * torch.tensor([1.0, 1.0, 1.0, 1.05], device="cuda")  # zoom out a little
    static_pos.copy_(moved)
    graph.replay()
    with torch.no_grad():
        eager = antialias(interpolate(sc["attr"], rasterize(moved, sc["tri"], sc["res"]), sc["tri"]),
                          rasterize(moved, sc["tri"], sc["res"]), moved, sc["tri"], sc["topo"])
    torch.testing.assert_close(static_out, eager)


def test_rasterize_under_inference_mode_checks_indices_every_call():
    # Inference tensors have no version counter, so the index-check cache must not key on it.
    sc = knot_scene(2000, 2, 64, "cuda")
    with torch.inference_mode():
        tri = sc["tri"].clone()
        first = rasterize(sc["pos"], tri, sc["res"])
        assert torch.equal(first, rasterize(sc["pos"], tri, sc["res"]))
        bad = tri.clone()
        bad[0, 0] = sc["pos"].shape[-2]
        with pytest.raises(ValueError, match="indices"):
            rasterize(sc["pos"], bad, sc["res"])
