"""Test data of the evaluation tests: a small stand-in character and its ground-truth folder.

The stand-in is built from primitives (a body of capsules and a sphere, a hollow shirt shell, a
hair shell) with colour patterns so that image metrics have structure to see. It is test data,
not a character generator. Ground-truth folders are rendered by the dataset's own renderer
(``stdgen.data.render_dataset``) at a small resolution, as ``stdgen data render`` writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from stdgen.structures.character import Character, Skeleton
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import Part

RES = 64  # ground-truth resolution of the test folders


def _capsule(a, b, radius: float, count=(12, 12)) -> trimesh.Trimesh:
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    length = float(np.linalg.norm(d))
    cap = trimesh.creation.capsule(height=length, radius=radius, count=list(count))
    cap.apply_transform(trimesh.geometry.align_vectors([0.0, 0.0, 1.0], d / length))
    cap.apply_translation((a + b) / 2)
    return cap


def _coloured(tm: trimesh.Trimesh, base, stripes: float = 0.0, period: float = 0.05) -> Mesh:
    """A Mesh with vertex colours ``base``, optionally darkened in horizontal stripes."""
    v = np.asarray(tm.vertices)
    col = np.tile(np.asarray(base, np.float32), (len(v), 1))
    if stripes:
        band = (np.floor(v[:, 1] / period) % 2 == 0)[:, None]
        col = np.where(band, col * (1 - stripes), col)
    return Mesh(v, np.asarray(tm.faces), colors=col)


def _shell(outer: trimesh.Trimesh, inner: trimesh.Trimesh) -> trimesh.Trimesh:
    """A closed hollow shell: the outer surface and the inner one turned inside out."""
    inner = inner.copy()
    inner.invert()
    return trimesh.util.concatenate([outer, inner])


def standin_parts(seed: int = 0) -> dict[Part, Mesh]:
    """Body, clothes and hair of a 1.6 m stand-in in an A-like pose (feet at y = 0, facing +Z)."""
    rng = np.random.default_rng(seed)
    skin = (0.96, 0.8, 0.68)
    head = trimesh.creation.icosphere(subdivisions=3, radius=0.11)
    head.apply_translation((0, 1.45, 0))
    pieces = [head, _capsule((0, 0.85, 0), (0, 1.25, 0), 0.12),
              _capsule((0.15, 1.22, 0), (0.42, 0.95, 0), 0.04), _capsule((-0.15, 1.22, 0), (-0.42, 0.95, 0), 0.04),
              _capsule((0.08, 0.85, 0), (0.08, 0.06, 0), 0.055), _capsule((-0.08, 0.85, 0), (-0.08, 0.06, 0), 0.055)]
    body = merge_meshes([_coloured(p, skin) for p in pieces], label=Part.BODY, name="body")
    shirt_colour = tuple(rng.uniform(0.2, 0.8, 3))
    shirt = _shell(_capsule((0, 0.82, 0), (0, 1.24, 0), 0.15, (16, 12)), _capsule((0, 0.82, 0), (0, 1.24, 0), 0.135))
    clothes = _coloured(shirt, shirt_colour, stripes=0.4)
    clothes.label = Part.CLOTHES
    cap = _shell(trimesh.creation.icosphere(subdivisions=3, radius=0.125),
                 trimesh.creation.icosphere(subdivisions=3, radius=0.115))
    cap.apply_translation((0, 1.48, -0.045))
    hair = _coloured(cap, (0.45, 0.25, 0.1), stripes=0.3, period=0.03)
    hair.label = Part.HAIR
    return {Part.BODY: body, Part.CLOTHES: clothes, Part.HAIR: hair}


def standin_character(seed: int = 0) -> Character:
    p = standin_parts(seed)
    # A two-bone skeleton: the dataset's framing finds the head from the "head" joint.
    skeleton = Skeleton(["hips", "head"], [-1, 0], [(0.0, 0.85, 0.0), (0.0, 1.36, 0.0)])
    return Character(body=p[Part.BODY], clothes=[p[Part.CLOTHES]], hair=[p[Part.HAIR]], skeleton=skeleton,
                     meta={"seed": seed})


def _checker(size: tuple[int, int], cells: int, a, b) -> np.ndarray:
    """(H, W, 3) uint8 checkerboard of ``cells`` squares along the width (a plaid-like, high-frequency texture)."""
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    on = ((rows * cells // w) + (cols * cells // w)) % 2 == 0
    return np.where(on[..., None], np.asarray(a, np.uint8), np.asarray(b, np.uint8))


def _cylinder_uvs(tm: trimesh.Trimesh, y0: float, y1: float) -> np.ndarray:
    v = np.asarray(tm.vertices)
    u = np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi) + 0.5
    return np.stack([u, np.clip((v[:, 1] - y0) / (y1 - y0), 0, 1)], 1).astype(np.float32)


def textured_standin_character(seed: int = 0) -> Character:
    """The stand-in with textures the way a procedural character has them: a checked (plaid-like) shirt
    beside an untextured, vertex-coloured belt in the clothes, and two hair pieces with textures of
    different sizes. Merging a part's pieces into one mesh would bake the shirt to vertex colours and
    resample the hair textures into one atlas."""
    base = standin_parts(seed)
    shirt_tm = _capsule((0, 0.82, 0), (0, 1.24, 0), 0.15, (24, 16))
    shirt = Mesh(np.asarray(shirt_tm.vertices), np.asarray(shirt_tm.faces), uvs=_cylinder_uvs(shirt_tm, 0.6, 1.4),
                 texture=_checker((32, 32), 8, (200, 40, 40), (30, 40, 160)), label=Part.CLOTHES, name="shirt")
    belt = _coloured(_capsule((0, 0.8, 0), (0, 0.84, 0), 0.16), (0.1, 0.1, 0.1))
    belt.label, belt.name = Part.CLOTHES, "belt"
    cap_tm = trimesh.creation.icosphere(subdivisions=3, radius=0.125)
    cap_tm.apply_translation((0, 1.48, -0.045))
    cap = Mesh(np.asarray(cap_tm.vertices), np.asarray(cap_tm.faces), uvs=_cylinder_uvs(cap_tm, 1.35, 1.61),
               texture=_checker((16, 64), 16, (90, 50, 20), (160, 110, 60)), label=Part.HAIR, name="cap")
    bun_tm = trimesh.creation.icosphere(subdivisions=2, radius=0.06)
    bun_tm.apply_translation((0, 1.58, -0.13))
    bun = Mesh(np.asarray(bun_tm.vertices), np.asarray(bun_tm.faces), uvs=_cylinder_uvs(bun_tm, 1.52, 1.64),
               texture=_checker((32, 32), 4, (60, 30, 10), (200, 170, 90)), label=Part.HAIR, name="bun")
    skeleton = Skeleton(["hips", "head"], [-1, 0], [(0.0, 0.85, 0.0), (0.0, 1.36, 0.0)])
    return Character(body=base[Part.BODY], clothes=[shirt, belt], hair=[cap, bun], skeleton=skeleton,
                     meta={"seed": seed})


def write_truth(folder: Path, character: Character, resolution: int = RES) -> Path:
    """A ground-truth character folder as ``stdgen data render`` writes it (eval views only)."""
    from stdgen.data.render_dataset import RenderConfig, render_to_folder

    cfg = RenderConfig(resolution=resolution, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                       device="cpu")
    render_to_folder(character, folder, cfg, seed=int(character.meta.get("seed", 0)), source="test-standin")
    return folder


def write_prediction(folder: Path, parts: dict) -> Path:
    """A prediction folder: ``character.glb`` with nodes body, clothes, hair."""
    from stdgen.io.glb import write_glb

    folder.mkdir(parents=True, exist_ok=True)
    write_glb({Part.parse(k).key: m for k, m in parts.items()}, folder / "character.glb")
    return folder


# -- tiny random LPIPS weights (diffusers-style tiny models) ----------------------------------------
VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG_SLICE_ENDS = (4, 9, 16, 23, 30)
ALEX_CONVS = {0: 11, 3: 5, 6: 3, 8: 3, 10: 3}
ALEX_SLICE_ENDS = (2, 5, 8, 10, 12)


def _slice_of(i, ends):
    return next(k for k, e in enumerate(ends) if i < e) + 1


def tiny_lpips_state(kind="vgg", width=4, naming="lpips", seed=0) -> dict[str, torch.Tensor]:
    """Random LPIPS weights with the given layout and few channels (diffusers-style tiny model)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    cin = 3
    taps = []
    if kind == "vgg":
        convs = {i: 3 for i in VGG_CONVS}
        ends = VGG_SLICE_ENDS
        block_width = {0: width, 2: width, 5: 2 * width, 7: 2 * width}
    else:
        convs = ALEX_CONVS
        ends = ALEX_SLICE_ENDS
        block_width = {}
    for i, k in convs.items():
        cout = block_width.get(i, 3 * width)
        prefix = f"net.slice{_slice_of(i, ends)}.{i}" if naming == "lpips" else f"features.{i}"
        sd[f"{prefix}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5
        sd[f"{prefix}.bias"] = torch.randn(cout, generator=g) * 0.1
        cin = cout
    # Channels at each tap: the output of the last conv before each slice end.
    for e in ends:
        last = max(i for i in convs if i < e)
        key = (f"net.slice{_slice_of(last, ends)}.{last}" if naming == "lpips" else f"features.{last}") + ".weight"
        taps.append(sd[key].shape[0])
    for t, c in enumerate(taps):
        sd[f"lin{t}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g)
    return sd
