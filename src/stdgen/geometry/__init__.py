"""Geometry: semantic fields, FlexiCubes, layer extraction and mesh metrics (over
:class:`stdgen.structures.Mesh`).

Modules (imported lazily, so ``import stdgen.geometry`` stays light):

- :mod:`~stdgen.geometry.inside` point-in-mesh tests (``contains``, ``contains_grid``);
- :mod:`~stdgen.geometry.volume` volume rendering with semantics (Eqs. 1, 2, 6-8);
- :mod:`~stdgen.geometry.triplane` bilinear triplane lookup;
- :mod:`~stdgen.geometry.semantic_sdf` the semantic-equivalent SDF (Eqs. 3, 10);
- :mod:`~stdgen.geometry.grid` sampling grids and the ``IsoSurface`` output type;
- :mod:`~stdgen.geometry.flexicubes` differentiable FlexiCubes (``flexicubes_ref``: the slow
  reference; ``flexicubes_tables``: the tables, generated);
- :mod:`~stdgen.geometry.marching` fast marching cubes;
- :mod:`~stdgen.geometry.layers` body / clothes / hair extraction;
- :mod:`~stdgen.geometry.voxelize` a character -> SDF grid + class probabilities;
- :mod:`~stdgen.geometry.nearest` nearest-point search (k-d tree on the host, Triton on a GPU);
- :mod:`~stdgen.commands.layers_demo` ``stdgen layers-demo``.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "contains": "inside", "contains_grid": "inside",
    "composite": "volume", "render_rays": "volume", "RayBundle": "volume",
    "sample_triplane": "triplane",
    "NearestPoints": "nearest",
    "semantic_sdf": "semantic_sdf", "layer_sdf": "semantic_sdf",
    "Grid": "grid", "IsoSurface": "grid",
    "flexicubes": "flexicubes", "marching_cubes": "marching",
    "LayerConfig": "layers", "LayerMeshes": "layers", "extract_layers": "layers",
    "VoxelField": "voxelize", "voxelize_character": "voxelize", "voxelize_parts": "voxelize",
    "sample_surface": "metrics", "point_metrics": "metrics", "mesh_metrics": "metrics",
    "chamfer_distance": "metrics", "fscore": "metrics", "surface_metrics": "surface_metrics",
}  # fmt: skip

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"stdgen.geometry.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'stdgen.geometry' has no attribute {name!r}")
