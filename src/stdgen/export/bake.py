"""Vertex colours -> a base-colour texture, for formats whose materials ignore vertex colours.

VRM's MToon (and many avatar apps) shade with the material's base colour and texture only, so a
vertex-coloured piece would come out white. A piece of one colour becomes a material colour
(:func:`stdgen.io.glb.uniform_color`); any other is unwrapped with xatlas and its colours rasterised into a
texture with our own rasteriser (UV space as the screen), the empty texels filled from the
nearest covered one so bilinear filtering at chart borders does not pull in the background.
"""

from __future__ import annotations

import numpy as np

from stdgen.io.glb import uniform_color
from stdgen.structures.mesh import Mesh

__all__ = ["bake_vertex_colors", "uniform_color"]


def bake_vertex_colors(mesh: Mesh, size: int = 512) -> Mesh:
    """A copy of ``mesh`` with its vertex colours baked into a ``(size, size, 3)`` texture over an
    xatlas unwrap (``uvs`` + per-corner ``uv_faces``; vertices, faces and skinning unchanged)."""
    import torch
    import xatlas
    from scipy import ndimage

    from stdgen.render.interpolate import interpolate
    from stdgen.render.rasterize import rasterize

    if mesh.colors is None:
        raise ValueError(f"mesh {mesh.name!r} has no vertex colours to bake")
    vmapping, indices, uvs = xatlas.parametrize(mesh.vertices, mesh.faces)
    uvs = np.asarray(uvs, np.float32)
    indices = np.asarray(indices, np.int64)
    if indices.shape != mesh.faces.shape or not np.array_equal(np.asarray(vmapping)[indices], mesh.faces):
        raise RuntimeError("xatlas changed the faces; cannot keep the mesh's geometry")
    # UV space as the screen: u -> x, v (down, glTF) -> y down, i.e. NDC y = 1 - 2 v.
    clip = np.stack([uvs[:, 0] * 2 - 1, 1 - uvs[:, 1] * 2, np.zeros(len(uvs)), np.ones(len(uvs))], 1)
    pos = torch.from_numpy(clip.astype(np.float32))[None]
    tri = torch.from_numpy(indices.astype(np.int32))
    rast = rasterize(pos, tri, (size, size))
    colors = torch.from_numpy(mesh.colors[np.asarray(vmapping)].astype(np.float32))
    img = interpolate(colors[None], rast, tri)[0].numpy()
    covered = rast[0, ..., 3].numpy() > 0
    if covered.any():
        # Fill uncovered texels from the nearest covered texel (chart gutters for bilinear filtering).
        _, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
        img = img[iy, ix]
    tex = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return mesh.replace(colors=None, uvs=uvs, uv_faces=indices.astype(np.int32), texture=tex)
