"""stdgen: one picture of a character in, a layered 3D character (body, clothes, hair) out.

The package is laid out by pipeline stage:

- :mod:`stdgen.render`   differentiable rasteriser and cameras
- :mod:`stdgen.geometry` meshes, semantic fields, FlexiCubes, layer extraction
- :mod:`stdgen.data`     procedural characters, VRM import, dataset renders
- :mod:`stdgen.eval`     metrics and the evaluation protocol
- :mod:`stdgen.refine`   multi-layer mesh refinement and texturing
- :mod:`stdgen.export`   GLB / VRM writers

Importing :mod:`stdgen` is cheap: it pulls in no heavy dependency.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
