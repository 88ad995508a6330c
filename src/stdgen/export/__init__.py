"""Export: layered characters as GLB (and VRM)."""

from stdgen.export.glb import read_glb, write_glb

__all__ = ["read_glb", "write_glb"]
