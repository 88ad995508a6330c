"""The fast marching-cubes path: closed forms, orientation, agreement with FlexiCubes."""

import math

import numpy as np
import torch

from stdgen.geometry.flexicubes import flexicubes
from stdgen.geometry.grid import Grid, IsoSurface
from stdgen.geometry.marching import marching_cubes


def test_sphere_closed_oriented_and_accurate():
    grid = Grid.from_bounds([-1, -0.9, -1.1], [1, 1.1, 0.9], (64, 64, 64))
    c = np.array([0.05, 0.1, -0.1])
    r = 0.7
    sdf = np.linalg.norm(grid.points_numpy() - c, axis=-1) - r
    out = marching_cubes(sdf, grid)
    assert isinstance(out, IsoSurface) and out.l_dev.item() == 0
    tm = out.to_mesh().to_trimesh()
    assert tm.is_watertight and tm.is_winding_consistent
    assert abs(tm.volume / (4 / 3 * math.pi * r**3) - 1) < 0.01  # positive: faces wind outward
    assert abs(tm.area / (4 * math.pi * r**2) - 1) < 0.01
    assert np.abs(np.linalg.norm(out.vertices.numpy() - c, axis=1) - r).max() < 0.01


def test_agrees_with_flexicubes_and_keeps_device_dtype():
    grid = Grid.cube(40, 1.0)
    p = grid.points(dtype=torch.float64)
    sdf = torch.maximum(p.abs().amax(-1) - 0.5, 0.3 - p.norm(dim=-1))  # a cube with a spherical cavity
    a = marching_cubes(sdf, grid)
    b = flexicubes(sdf, grid)
    assert a.vertices.dtype == torch.float64 and a.faces.dtype == torch.int64
    va, vb = a.to_mesh().to_trimesh(), b.to_mesh().to_trimesh()
    assert abs(va.volume - vb.volume) / vb.volume < 0.01
    assert abs(va.volume - (1.0 - 4 / 3 * math.pi * 0.3**3)) < 0.02


def test_empty():
    grid = Grid.cube(8)
    assert marching_cubes(np.ones(grid.shape), grid).is_empty
    assert marching_cubes(-torch.ones(grid.shape), grid).is_empty
