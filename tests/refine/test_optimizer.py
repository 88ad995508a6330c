"""The per-vertex Adam: converges, carries its state through a remesh, step scaled by edge length."""

import numpy as np
import torch
import trimesh

from stdgen.refine.optimizer import VertexAdam, VertexAdamConfig, smooth_gradient
from stdgen.refine.remesh import remesh


def test_converges_on_a_quadratic_and_steps_scale_with_edge_length():
    target = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    x = torch.zeros(2, 3)
    opt = VertexAdam(2, config=VertexAdamConfig(lr=0.1, floor=0.0))
    ell = torch.tensor([1.0, 1.0])
    for it in range(400):
        g = 2 * (x - target)
        opt.step(x, g, ell, lr=0.1 * 0.01 ** (it / 399))
    assert torch.allclose(x, target, atol=0.02)
    # The first step has length lr * edge length * sqrt(3) / sqrt(3) per vertex (Adam's unit step).
    for scale in (1.0, 0.01):
        y = torch.zeros(1, 3)
        o = VertexAdam(1, config=VertexAdamConfig(lr=0.1, floor=0.0))
        o.step(y, torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([scale]))
        assert torch.allclose(y, torch.full((1, 3), -0.1 * scale))


def test_floor_slows_vertices_with_weak_gradients():
    x = torch.zeros(3, 3)
    opt = VertexAdam(3, config=VertexAdamConfig(lr=0.1, floor=1.0))
    g = torch.tensor([[10.0, 0, 0], [10.0, 0, 0], [0.01, 0, 0]])
    opt.step(x, g, torch.ones(3))
    assert abs(x[2, 0]) < 0.01 * abs(x[0, 0])


def test_state_survives_remeshing_as_vertex_attributes():
    s = trimesh.creation.icosphere(2)
    v = np.asarray(s.vertices)
    f = np.asarray(s.faces)
    x = torch.tensor(v, dtype=torch.float32)
    opt = VertexAdam(len(v))
    g = torch.tensor(v, dtype=torch.float32)  # a radial gradient
    opt.step(x, g, torch.full((len(v),), 0.1))
    attrs = opt.export_state()
    v2, f2, _, attrs2, stats = remesh(x.double().numpy(), f, np.full(len(v), 0.1), attrs)
    assert stats.splits > 0
    opt.import_state(attrs2, "cpu")
    assert opt.state["adam_m"].shape == (len(v2), 3)
    # New vertices inherited a moment pointing outward like their neighbours'.
    m = opt.state["adam_m"].double().numpy()
    cos = (m * v2).sum(1) / (np.linalg.norm(m, axis=1) * np.linalg.norm(v2, axis=1))
    assert cos.min() > 0.9
    assert torch.all(opt.state["adam_t"] == 1)


def test_smooth_gradient_keeps_constants_and_damps_spikes():
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4]])
    const = torch.ones(5, 3)
    assert torch.allclose(smooth_gradient(const, edges, 2.0, 10), const)
    spike = torch.zeros(5, 1)
    spike[2] = 1.0
    out = smooth_gradient(spike, edges, 2.0, 10)
    assert out[2] < 0.6 and out[1] > 0 and out[3] > 0
