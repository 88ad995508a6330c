"""Geometry: the shared :class:`Mesh` type, semantic fields, FlexiCubes and layer extraction."""

from stdgen.geometry.mesh import Mesh, merge_meshes

__all__ = ["Mesh", "merge_meshes"]
