"""The batched renderer's helpers agree with the renderer's single-image ops."""

import numpy as np
import torch

from stdgen.render.antialias import antialias_topology, antialias_topology_numpy
from stdgen.render.texture import sample_bank, texture, texture_bank


def test_the_texture_bank_samples_as_texture_does():
    rng = np.random.default_rng(0)
    textures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((5, 7), (16, 3), (1, 1))]
    bank, info = texture_bank(textures, "cpu")
    uv = torch.from_numpy(rng.uniform(-0.2, 1.2, (300, 2)).astype(np.float32))  # outside [0, 1]: clamped
    which = torch.from_numpy(rng.integers(0, len(textures), 300))
    got = sample_bank(bank, info, which, uv)
    for k, tex in enumerate(textures):
        sel = which == k
        ref = texture(torch.from_numpy(tex).float() / 255, uv[sel][None, None])[0, 0]
        torch.testing.assert_close(got[sel], ref, atol=2e-6, rtol=0)


def test_the_host_topology_is_the_renderers():
    rng = np.random.default_rng(1)
    # A strip of quads with duplicated (seam) vertices, an edge shared by three faces and an open border.
    verts = rng.random((12, 3)).astype(np.float32)
    verts[6:9] = verts[0:3]  # a seam: same positions, other indices
    faces = np.array([[0, 1, 2], [2, 1, 3], [3, 1, 4], [6, 7, 8], [8, 7, 9], [1, 3, 10], [5, 10, 11]], np.int64)
    for weld in (False, True):
        ref = antialias_topology(torch.from_numpy(faces), torch.from_numpy(verts) if weld else None).numpy()
        np.testing.assert_array_equal(antialias_topology_numpy(faces, verts if weld else None), ref)
    assert (antialias_topology_numpy(faces) == -1).any() and (antialias_topology_numpy(faces) >= 0).any()
