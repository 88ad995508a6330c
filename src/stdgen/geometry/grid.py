"""Regular sampling grids and the output type of surface extraction.

A :class:`Grid` places ``shape = (X, Y, Z)`` sample points (grid *vertices*) at
``origin + (i, j, k) * spacing``; fields sampled on it are arrays/tensors ``(X, Y, Z, ...)``
indexed ``[i, j, k]`` with i along world x, j along y, k along z. Cubes (cells) are
``(X - 1, Y - 1, Z - 1)``. Spacing may differ per axis, so the paper's 100 x 100 x 150 grid over a
tall character is a ``Grid`` like any other.

Both extractors (:func:`stdgen.geometry.flexicubes.flexicubes`, differentiable, and
:func:`stdgen.geometry.marching.marching_cubes`, fast) return an :class:`IsoSurface`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part


@dataclass(frozen=True)
class Grid:
    """``shape`` (X, Y, Z) vertex counts (each >= 2), ``origin`` (3,) position of vertex (0, 0, 0)
    in metres, ``spacing`` (3,) distance between neighbouring vertices per axis."""

    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 2:
            raise ValueError(f"Grid: shape must be three sizes >= 2, got {self.shape}")
        spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(self.spacing, float), (3,)))
        if min(spacing) <= 0:
            raise ValueError(f"Grid: spacing must be positive, got {self.spacing}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "origin", tuple(float(o) for o in np.asarray(self.origin, float).reshape(3)))
        object.__setattr__(self, "spacing", spacing)

    @classmethod
    def from_bounds(cls, lo, hi, shape) -> Grid:
        """A grid whose first and last vertices sit on the corners ``lo`` and ``hi`` (each (3,))."""
        lo, hi = np.asarray(lo, float).reshape(3), np.asarray(hi, float).reshape(3)
        shape = tuple(int(s) for s in np.broadcast_to(np.asarray(shape), (3,)))
        if np.any(hi <= lo):
            raise ValueError(f"Grid.from_bounds: hi {hi} must exceed lo {lo}")
        return cls(shape, tuple(lo), tuple((hi - lo) / (np.asarray(shape) - 1)))

    @classmethod
    def cube(cls, resolution: int, half_extent: float = 1.0) -> Grid:
        """``resolution``^3 vertices spanning [-half_extent, half_extent]^3."""
        return cls.from_bounds([-half_extent] * 3, [half_extent] * 3, resolution)

    @property
    def cells(self) -> tuple[int, int, int]:
        return (self.shape[0] - 1, self.shape[1] - 1, self.shape[2] - 1)

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.origin)

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(self.spacing) * (np.asarray(self.shape) - 1)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vertex coordinates along x, y and z (1D float64 arrays)."""
        return tuple(self.origin[a] + self.spacing[a] * np.arange(self.shape[a]) for a in range(3))

    def points(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(X, Y, Z, 3)`` vertex positions."""
        xs, ys, zs = (torch.as_tensor(a, dtype=dtype, device=device) for a in self.axes())
        return torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), -1)

    def points_numpy(self) -> np.ndarray:
        """``(X, Y, Z, 3)`` float64 vertex positions."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"), -1)


@dataclass
class IsoSurface:
    """An extracted surface as tensors.

    ``vertices`` (V, 3) float, differentiable where the extractor is; ``faces`` (F, 3) int64,
    counter-clockwise seen from outside (the side where the field is positive); ``l_dev`` the
    FlexiCubes deviation regulariser (a 0-d tensor; zero for marching cubes).
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    l_dev: torch.Tensor

    @property
    def is_empty(self) -> bool:
        return self.faces.shape[0] == 0

    def to_mesh(self, *, label: Part | None = None, name: str = "") -> Mesh:
        """The surface as a plain (numpy) :class:`Mesh`."""
        return Mesh(self.vertices.detach().cpu().numpy(), self.faces.cpu().numpy(), label=label, name=name)

    @classmethod
    def empty(cls, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> IsoSurface:
        return cls(torch.zeros(0, 3, dtype=dtype, device=device), torch.zeros(0, 3, dtype=torch.int64, device=device),
                   torch.zeros((), dtype=dtype, device=device))
