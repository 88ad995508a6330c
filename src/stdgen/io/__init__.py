"""Files in and out: the one reader and writer of glTF / GLB / VRM, of character folders and of pictures.

Modules (imported lazily, so ``import stdgen.io`` stays light):

- :mod:`~stdgen.io.gltf` the checked GLB container (``load_glb`` -> ``GltfFile``: accessors,
  images, node hierarchy, every index and byte range checked);
- :mod:`~stdgen.io.vrm` VRM / glTF documents -> world-space primitives (``read_vrm``,
  ``extract_primitives``, ``build_skeleton``, ``weld_vertices``);
- :mod:`~stdgen.io.glb` stdgen's character GLB: ``write_glb``, ``read_glb`` ({node: Mesh}),
  ``read_parts`` ({Part: Mesh}, the one GLB -> per-part meshes), ``read_character_glb``
  (skinned GLB -> Character), and the scene builder the VRM writer uses;
- :mod:`~stdgen.io.humanoid` VRM humanoid bone names;
- :mod:`~stdgen.io.dataset` the character-folder format (``read_renders``, ``write_renders``,
  ``read_meta``, ``list_character_folders``, normal / depth encodings), validated on read;
- :mod:`~stdgen.io.images` the one image reader for pictures that come from users (``read_image``:
  by content, any mode to RGB / RGBA, size checked before decoding; ``cap_resolution``);
- :mod:`~stdgen.io.outputs` one way to claim and write an output path (``claim_output_dir``,
  ``claim_output_file``, ``write_output_dir``: claimed, never clobbered, written atomically).

Everything here may import :mod:`stdgen.structures` and :mod:`stdgen.render` (cameras), never a
stage above.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_glb": "gltf", "GltfFile": "gltf",
    "read_vrm": "vrm", "extract_primitives": "vrm", "VrmDocument": "vrm",
    "write_glb": "glb", "read_glb": "glb", "read_parts": "glb", "read_character_glb": "glb",
    "read_renders": "dataset", "write_renders": "dataset", "read_meta": "dataset",
    "list_character_folders": "dataset", "CharacterRenders": "dataset",
    "read_image": "images", "image_size": "images", "cap_resolution": "images",
    "claim_output_dir": "outputs", "claim_output_file": "outputs", "claim_subfolder": "outputs",
    "write_output_dir": "outputs", "remove_leftovers": "outputs",
}  # fmt: skip

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"stdgen.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'stdgen.io' has no attribute {name!r}")
