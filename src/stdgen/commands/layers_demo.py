"""``stdgen layers-demo``: voxelise a character, extract its layers, write meshes and pictures.

The demo shows what the S-LRM's last stage can at best produce at a grid resolution: the
character's true field (:mod:`stdgen.geometry.voxelize`) goes through the semantic-equivalent SDF
and FlexiCubes (:mod:`stdgen.geometry.layers`), and the extracted parts are compared with the
true ones (Chamfer distance and F-score in units of the character's height, from
:mod:`stdgen.geometry.metrics`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stdgen.geometry.grid import Grid
from stdgen.geometry.layers import LayerConfig, LayerMeshes, extract_layers
from stdgen.geometry.voxelize import VoxelField, voxelize_character
from stdgen.structures.mesh import Mesh, merge_meshes, sample_texture_at_vertices
from stdgen.structures.semantics import PARTS, Part

#: Display colours of the parts in sections and label renders (sRGB).
PART_COLORS: dict[Part, tuple[float, float, float]] = {
    Part.BODY: (0.96, 0.78, 0.66),
    Part.CLOTHES: (0.30, 0.50, 0.85),
    Part.HAIR: (0.55, 0.33, 0.22),
}


@dataclass
class DemoResult:
    """What :func:`layers_demo` made: the field, the meshes, per-part metrics, timings (s)."""

    field: VoxelField
    meshes: LayerMeshes
    metrics: dict[Part, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def part_metrics(pred: dict[Part, Mesh], true: dict[Part, Mesh], *, count: int = 100_000,
                 thresholds=(0.01,)) -> dict[Part, dict[str, float]]:
    """Per-part Chamfer / F-score between extracted and true parts, in units of the true height."""
    from stdgen.geometry.metrics import character_height, mesh_metrics

    height = character_height(true)
    out = {}
    for p in PARTS:
        if (pred.get(p) is None or pred[p].is_empty) and (true.get(p) is None or true[p].is_empty):
            continue
        out[p] = mesh_metrics(pred.get(p) or _empty(), true.get(p) or _empty(), scale=1.0 / height, count=count,
                              thresholds=thresholds)
    return out


def _empty() -> Mesh:
    return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int32))


def transfer_colors(mesh: Mesh, source: Mesh) -> Mesh:
    """``mesh`` with vertex colours of the nearest ``source`` vertex (texture or vertex colours)."""
    from scipy.spatial import cKDTree

    if mesh.is_empty or source is None or source.is_empty:
        return mesh
    if source.texture is not None and source.uvs is not None:
        cols = sample_texture_at_vertices(source)
    elif source.colors is not None:
        cols = source.colors
    else:
        return mesh.replace(colors=np.tile(np.asarray(PART_COLORS.get(mesh.label, (0.8, 0.8, 0.8)), np.float32),
                                           (mesh.num_vertices, 1)))
    _, idx = cKDTree(source.vertices).query(mesh.vertices, k=1, workers=-1)
    return mesh.replace(colors=cols[idx])


def layers_demo(character, *, resolution=128, config: LayerConfig | None = None,
                count: int = 100_000) -> DemoResult:
    """Voxelise ``character`` at ``resolution``, extract layers and parts, measure them."""
    timings = {}
    t0 = time.perf_counter()
    fld = voxelize_character(character, resolution)
    timings["voxelize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    meshes = extract_layers(fld.sdf, fld.probs, fld.grid, config or LayerConfig())
    timings["extract"] = time.perf_counter() - t0
    true = {p: character.part(p) for p in PARTS}
    for p in PARTS:
        meshes.parts[p] = transfer_colors(meshes.parts[p], true[p])
    t0 = time.perf_counter()
    metrics = part_metrics(meshes.parts, true, count=count)
    timings["metrics"] = time.perf_counter() - t0
    return DemoResult(fld, meshes, metrics, timings)


def write_demo(result: DemoResult, character, out_dir: str | Path, *, image_size: int = 384) -> list[Path]:
    """Write body/clothes/hair/character GLBs, layers.png and section.png into ``out_dir``
    (atomically: the folder appears complete or not at all)."""
    from stdgen.io.glb import write_glb
    from stdgen.io.outputs import write_output_dir
    from stdgen.utils.io import save_png

    out_dir = Path(out_dir)
    names = []
    with write_output_dir(out_dir, "layers-demo") as tmp:
        for p in PARTS:
            write_glb({p.key: result.meshes.parts[p]}, tmp / f"{p.key}.glb")
            names.append(f"{p.key}.glb")
        write_glb({p.key: result.meshes.parts[p] for p in PARTS}, tmp / "character.glb")
        names.append("character.glb")
        save_png(tmp / "layers.png", layers_picture(result.meshes.parts, character, image_size))
        save_png(tmp / "section.png", section_picture(result.field, result.meshes.parts, character))
        names += ["layers.png", "section.png"]
    return [out_dir / n for n in names]


# --- pictures -----------------------------------------------------------------------------------


def _render(mesh: Mesh, cams, size: int) -> np.ndarray:
    from stdgen.render import render_mesh

    out = render_mesh(mesh, cams, size, shading="toon")
    return out.composite(1.0).cpu().numpy()


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` (H, W, 3) float with ``text`` written in its top-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    try:
        font = ImageFont.load_default(size=max(12, img.shape[0] // 24))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    ImageDraw.Draw(im).text((6, 4), text, fill=(40, 40, 40), font=font)
    return np.asarray(im, np.float32) / 255.0


def layers_picture(parts: dict[Part, Mesh], character, size: int = 384) -> np.ndarray:
    """Rows: the true parts and the extracted parts (body, clothes, hair, all; front and back each),
    then an exploded three-quarter view of the extracted parts pulled apart sideways and up."""
    from stdgen.render import orthographic_cameras
    from stdgen.render.camera import frame_bounds
    from stdgen.utils.io import image_grid

    centre, half = frame_bounds(character.bounds(), 1.08)
    cams = orthographic_cameras([0.0, 180.0], 0.0, center=centre, half_size=half)
    rows = []
    for title, source in (("true", {p: character.part(p) for p in PARTS}), ("extracted", parts)):
        row = []
        merged = merge_meshes([source[p] for p in PARTS if not source[p].is_empty])
        for name, m in [(p.key, source[p]) for p in PARTS] + [("all", merged)]:
            imgs = _render(m, cams, size)
            row += [_caption(imgs[0], f"{title} {name}, front"), _caption(imgs[1], "back")]
        rows.append(row)
    # Exploded: each part slid sideways and lifted by a share of the height, seen from the front-left.
    b = character.bounds()
    height = float(b[1, 1] - b[0, 1])
    width = float(max(b[1, 0] - b[0, 0], b[1, 2] - b[0, 2]))
    pieces = []
    for i, p in enumerate(PARTS):
        m = parts[p]
        if not m.is_empty:
            shift = np.array([1.25 * max(width, 0.4 * height) * i, 0.15 * height * i, 0.0], np.float32)
            pieces.append(m.replace(vertices=m.vertices + shift))
    if pieces:
        wide = merge_meshes(pieces)
        lo, hi = wide.bounds()
        c = tuple(float(x) for x in (lo + hi) / 2)
        cols = len(rows[0])
        h_px = int(size * 1.2)
        aspect = cols * size / h_px
        half_h = 0.55 * float(max(hi[1] - lo[1], (hi[0] - lo[0]) / aspect))
        cam = orthographic_cameras([25.0], 10.0, center=c, half_size=half_h, aspect=aspect)
        from stdgen.render import render_mesh

        exploded = render_mesh(wide, cam, (h_px, cols * size), shading="toon").composite(1.0).cpu().numpy()[0]
        rows.append([_caption(exploded, "extracted parts, exploded")])
    top = image_grid(rows[:2])
    if len(rows) == 2:
        return top
    bottom = image_grid(rows[2:])
    w = max(top.shape[1], bottom.shape[1])
    pad = lambda im: np.pad(im, ((0, 0), (0, w - im.shape[1]), (0, 0)), constant_values=1.0)
    return np.concatenate([pad(top), pad(bottom)], 0)


def _torso_height(character) -> float:
    if character.skeleton is not None:
        names = character.skeleton.names
        joints = character.posed_joints()
        for name in ("chest", "upperChest", "spine"):
            if name in names:
                return float(joints[names.index(name), 1])
    b = character.bounds()
    return float(b[0, 1] + 0.65 * (b[1, 1] - b[0, 1]))


def section_picture(fld: VoxelField, parts: dict[Part, Mesh], character, pixels: int = 560) -> np.ndarray:
    """Two cross-sections of the field, coloured by class (white outside), with the extracted
    part meshes' outlines drawn on top: horizontal through the torso (seen from above, front at
    the bottom) and vertical through the character's middle (seen from the front)."""
    y = _torso_height(character)
    z = float(np.mean(character.bounds()[:, 2]))
    panels = [_section(fld, parts, axis=1, value=y, pixels=pixels),
              _section(fld, parts, axis=2, value=z, pixels=pixels)]
    h = max(p.shape[0] for p in panels)
    panels = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for p in panels]
    sep = np.ones((h, 8, 3), np.float32)
    return np.concatenate([panels[0], sep, panels[1]], 1)


def _section(fld: VoxelField, parts: dict[Part, Mesh], *, axis: int, value: float, pixels: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    grid: Grid = fld.grid
    idx = int(round((value - grid.origin[axis]) / grid.spacing[axis]))
    idx = min(max(idx, 0), grid.shape[axis] - 1)
    value = grid.origin[axis] + idx * grid.spacing[axis]
    inside = np.take(fld.sdf, idx, axis=axis) < 0
    labels = np.take(fld.labels, idx, axis=axis)
    # Image axes: horizontal section -> columns x, rows z (front, +z, at the bottom);
    # vertical section -> columns x, rows -y (up at the top).
    if axis == 1:
        cols_ax, rows_ax, flip_rows = 0, 2, False
        img_lab, img_in = labels.T, inside.T  # (Z, X)
    else:
        cols_ax, rows_ax, flip_rows = 0, 1, True
        img_lab, img_in = labels.T[::-1], inside.T[::-1]  # (Y, X) top row = highest y
    rgb = np.ones(img_lab.shape + (3,), np.float32)
    for p in PARTS:
        rgb[(img_lab == int(p)) & img_in] = np.asarray(PART_COLORS[p]) * 0.55 + 0.45  # light fill
    scale = pixels / max(img_lab.shape)
    w, h = int(round(img_lab.shape[1] * scale)), int(round(img_lab.shape[0] * scale))
    im = Image.fromarray((rgb * 255).astype(np.uint8)).resize((w, h), Image.NEAREST)
    draw = ImageDraw.Draw(im)

    def to_px(pts):
        c = (pts[:, cols_ax] - grid.origin[cols_ax]) / grid.spacing[cols_ax]
        r = (pts[:, rows_ax] - grid.origin[rows_ax]) / grid.spacing[rows_ax]
        if flip_rows:
            r = (grid.shape[rows_ax] - 1) - r
        return np.stack([(c + 0.5) * scale, (r + 0.5) * scale], -1)

    normal = np.zeros(3)
    normal[axis] = 1.0
    origin = np.zeros(3)
    origin[axis] = value
    for p in PARTS:
        m = parts.get(p)
        if m is None or m.is_empty:
            continue
        segs = _plane_segments(m, origin, normal)
        col = tuple(int(255 * c * 0.8) for c in PART_COLORS[p])
        for a, b in segs:
            pa, pb = to_px(np.stack([a, b]))
            draw.line([tuple(pa), tuple(pb)], fill=col, width=2)
    return np.asarray(im, np.float32) / 255.0


def _plane_segments(mesh: Mesh, origin: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(S, 2, 3) segments where ``mesh`` crosses the plane."""
    import trimesh.intersections

    segs = trimesh.intersections.mesh_plane(mesh.to_trimesh(), normal, origin)
    return np.asarray(segs).reshape(-1, 2, 3)
