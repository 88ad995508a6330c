"""The differentiable rasteriser: cameras and a few free functions over plain tensors.

    rast = rasterize(pos, tri, (H, W))            # (V, H, W, 4): u, v, z/w, face_id + 1
    out = interpolate(attr, rast, tri)             # (V, H, W, C)
    col = texture(tex, uv)                         # (V, H, W, C)
    col = antialias(col, rast, pos, tri)           # (V, H, W, C), gradients to pos

See :mod:`stdgen.render.camera` for the world, camera, clip and pixel conventions.

Every op has a plain PyTorch reference (``*_torch``, CPU and CUDA) and fast paths picked by
``backend="auto"``: numba kernels on the CPU (``_numba.py``), Triton kernels on CUDA
(``_triton.py``); ``backend="torch"`` forces the reference. Tests compare them.
"""

from stdgen.render.antialias import antialias, antialias_topology, antialias_torch
from stdgen.render.camera import (
    EVALUATION_AZIMUTHS,
    GENERATION_AZIMUTHS,
    Cameras,
    evaluation_views,
    face_closeup_views,
    frame_bounds,
    generation_views,
    look_at,
    orthographic_cameras,
    perspective_cameras,
    random_views,
    top_bottom_views,
)
from stdgen.render.interpolate import face_attribute, interpolate, interpolate_torch
from stdgen.render.rasterize import (
    VISIBILITY_BACKENDS,
    barycentrics,
    barycentrics_torch,
    rasterize,
    visibility,
    visibility_torch,
)
from stdgen.render.scene import RenderOutput, render_mesh
from stdgen.render.texture import texture

__all__ = [
    "EVALUATION_AZIMUTHS", "GENERATION_AZIMUTHS", "VISIBILITY_BACKENDS", "Cameras", "RenderOutput",
    "antialias", "antialias_topology", "antialias_torch", "barycentrics", "barycentrics_torch", "evaluation_views",
    "face_attribute", "face_closeup_views", "frame_bounds", "generation_views", "interpolate", "interpolate_torch",
    "look_at",
    "orthographic_cameras", "perspective_cameras", "random_views", "rasterize", "render_mesh",
    "texture", "top_bottom_views", "visibility", "visibility_torch",
]  # fmt: skip
