"""Export: layered characters as GLB and VRM (0.x / 1.0)."""

from stdgen.export.glb import read_character_glb, read_glb, write_glb

__all__ = ["read_character_glb", "read_glb", "write_glb"]
