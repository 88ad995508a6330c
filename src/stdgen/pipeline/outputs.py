"""The files of one generated character, and the pictures of the ``export`` stage.

:func:`save_output` writes a :class:`~stdgen.pipeline.pipeline.GenerateOutput` into a new folder,
atomically (a temporary sibling renamed at the end: a failed or interrupted write leaves nothing):

- ``character.glb``: one scene, nodes ``body``, ``clothes``, ``hair`` (textured); ``body.glb``,
  ``clothes.glb``, ``hair.glb``: one part each (a part the character lacks has no file). With
  ``fmt="obj"``: ``character.obj`` + ``character.mtl`` (one group per part) and ``body.obj`` ... with
  their ``.mtl`` and texture PNGs instead;
- ``canonical.png``: the A-pose front picture the views were made from (RGBA);
- ``views.png``: the six generated views, colour over white above normals;
- ``mv_rgb.png`` / ``mv_normal.png``: the same views as the dataset's sprite sheets (RGBA colour;
  normals as ``(n + 1) / 2``), which ``stdgen eval`` scores as generated views (its 2D row);
- ``turntable.gif``: a full turn of the character;
- ``preview.png``: the framed input beside the front render, the parts side by side, the character
  exploded (front and 45 degrees);
- ``report.json``: version, weights, seed, settings, per-stage seconds and peak memory, face counts,
  the detected pose, the front silhouette IoU.

Every file but ``report.json`` (which holds the timings) is a function of the output alone, written
without timestamps: the same output gives the same bytes.

The pictures come from :func:`preview_picture` and :func:`turntable_frames`, drawn with the batched
renderer (:mod:`stdgen.render.batch`), in the framing of the input (:data:`~.pipeline.WORLD_CENTER`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from stdgen.errors import StdgenError

#: The files :func:`save_output` writes (besides the per-part models), in the issue's order.
PICTURE_FILES: tuple[str, ...] = ("canonical.png", "views.png", "mv_rgb.png", "mv_normal.png", "turntable.gif",
                                  "preview.png", "report.json")
FORMATS: tuple[str, ...] = ("glb", "obj")
#: The command name in the output folder's marker (``stdgen generate`` may rewrite its own folders).
COMMAND = "generate"


# -- rendering -----------------------------------------------------------------------------------------
def _render(character, azimuths, size: int, *, center, half_size: float, device="cpu", lit: bool = True):
    """``character`` from orthographic cameras at ``azimuths`` (degrees, elevation 0) ->
    (``(V, S, S, 3)`` float colour over white, ``(V, S, S)`` alpha); blank for an empty character."""
    from stdgen.render.batch import RenderJob, render_jobs, scene_from_character
    from stdgen.render.camera import orthographic_cameras

    v = len(azimuths)
    try:
        scene = scene_from_character(character)
    except ValueError:  # nothing to draw
        return np.ones((v, size, size, 3), np.float32), np.zeros((v, size, size), np.float32)
    cams = orthographic_cameras(list(azimuths), 0.0, center=tuple(float(c) for c in center),
                                half_size=float(half_size), device=device)
    key = "lit" if lit else "rgb"
    with torch.inference_mode():
        out = render_jobs([RenderJob(scene, cams, ("full",))], size, device=device, maps=("alpha", key))
    a = out["alpha"].float().cpu().numpy()
    rgb = out[key].float().cpu().numpy() + (1 - a)  # premultiplied -> over white
    return np.clip(rgb, 0, 1), a[..., 0]


def _moved(mesh, offset) -> object:
    return dataclasses.replace(mesh, vertices=mesh.vertices + np.asarray(offset, np.float32), normals=mesh.normals)


def _framing(character) -> tuple[np.ndarray, float]:
    """Centre and half size of a view that holds the whole character (10 % margin)."""
    b = character.bounds()
    return (b[0] + b[1]) / 2, float(max(b[1, 1] - b[0, 1], b[1, 0] - b[0, 0], 1e-3) / 2 * 1.1)


def preview_picture(character, framed: np.ndarray, canonical: np.ndarray, *, size: int = 256,
                    device="cpu") -> np.ndarray:
    """``(H, W, 3)`` uint8, two rows of ``size`` px tiles. Top: the framed input, the canonical
    picture, the front render (unlit colour, in the input's framing: it should match the input), and
    the front render lit. Bottom: body, clothes and hair side by side (front, lit), the character
    exploded (parts pulled apart sideways) from the front and from 45 degrees."""
    from stdgen.pipeline.pipeline import WORLD_CENTER, WORLD_HALF_SIZE
    from stdgen.structures.character import Character
    from stdgen.structures.semantics import PARTS, Part

    def over_white(rgba: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(rgba)).permute(2, 0, 1)[None].float() / 255.0
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="area" if rgba.shape[0] > size else "bilinear")
        x = t[0].permute(1, 2, 0).numpy()
        return x[..., :3] * x[..., 3:] + (1 - x[..., 3:])

    top = [over_white(framed), over_white(canonical)]
    flat, _ = _render(character, [0.0], size, center=WORLD_CENTER, half_size=WORLD_HALF_SIZE, device=device, lit=False)
    lit, _ = _render(character, [0.0], size, center=WORLD_CENTER, half_size=WORLD_HALF_SIZE, device=device)
    top += [flat[0], lit[0]]
    bottom = []
    parts = {p: character.part(p) for p in PARTS}
    present = {p: m for p, m in parts.items() if not m.is_empty}
    if present:
        center, half = _framing(character)
        for p in PARTS:
            one = Character.from_parts({p: parts[p]}) if p in present else Character.from_parts({})
            bottom.append(_render(one, [0.0], size, center=center, half_size=half, device=device)[0][0])
        width = float(character.bounds()[1, 0] - character.bounds()[0, 0])
        shift = {Part.BODY: 0.0, Part.CLOTHES: -0.9 * width, Part.HAIR: 0.9 * width}
        exploded = Character.from_parts({p: _moved(m, (shift[p], 0.0, 0.0)) for p, m in present.items()})
        ec, eh = _framing(exploded)
        bottom += list(_render(exploded, [0.0, 45.0], size, center=ec, half_size=eh, device=device)[0])
    rows = [top, bottom] if bottom else [top]
    pad = 2
    ncol = max(len(r) for r in rows)
    out = np.ones((len(rows) * (size + pad) + pad, ncol * (size + pad) + pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (size + pad), pad + j * (size + pad)
            out[y:y + size, x:x + size] = tile
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def turntable_frames(character, *, size: int = 256, frames: int = 24, device="cpu") -> np.ndarray:
    """``(T, S, S, 3)`` uint8: the character (lit) turning once around its vertical axis."""
    from stdgen.pipeline.pipeline import WORLD_CENTER, WORLD_HALF_SIZE

    az = [360.0 * k / frames for k in range(frames)]
    rgb, _ = _render(character, az, size, center=WORLD_CENTER, half_size=WORLD_HALF_SIZE, device=device)
    return (rgb * 255 + 0.5).astype(np.uint8)


def front_silhouette_iou(character, canonical: np.ndarray, *, device="cpu") -> float:
    """IoU of the character's front silhouette (rendered in the input's framing) with the canonical
    picture's (alpha > 0.5): how well the result keeps the picture's outline (1 = the same)."""
    from stdgen.pipeline.pipeline import WORLD_CENTER, WORLD_HALF_SIZE

    side = canonical.shape[0]
    _, alpha = _render(character, [0.0], side, center=WORLD_CENTER, half_size=WORLD_HALF_SIZE, device=device)
    pred, true = alpha[0] > 0.5, canonical[..., 3] >= 128
    union = int((pred | true).sum())
    return float((pred & true).sum()) / union if union else 0.0


def export_pictures(character, framed: np.ndarray, canonical: np.ndarray, *, size: int = 256, frames: int = 24,
                    device="cpu") -> tuple[np.ndarray, np.ndarray, dict]:
    """The ``export`` stage's pictures and checks: (:func:`preview_picture`, :func:`turntable_frames`,
    ``{"front_silhouette_iou": ..., "faces": {part: count}}``)."""
    from stdgen.structures.semantics import PARTS

    preview = preview_picture(character, framed, canonical, size=size, device=device)
    turn = turntable_frames(character, size=size, frames=frames, device=device)
    checks = {"front_silhouette_iou": round(front_silhouette_iou(character, canonical, device=device), 4),
              "faces": {p.key: int(len(character.part(p).faces)) for p in PARTS}}
    return preview, turn, checks


# -- writing -------------------------------------------------------------------------------------------
def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def views_picture(views_rgb: np.ndarray, views_normal: np.ndarray) -> np.ndarray:
    """``(6, R, R, 4)`` and ``(6, R, R, 3)`` uint8 -> ``(2 R + 6, 6 R + 14, 3)`` uint8: the colour
    views over white (top row) above the normal maps (bottom), azimuths -90 ... 180."""
    from stdgen.utils.io import image_grid

    rgba = views_rgb.astype(np.float32) / 255.0
    rgb = [v[..., :3] * v[..., 3:] + (1 - v[..., 3:]) for v in rgba]
    nrm = [v.astype(np.float32) / 255.0 for v in views_normal]
    return (np.clip(image_grid([rgb, nrm]), 0, 1) * 255 + 0.5).astype(np.uint8)


def _gif_bytes(frames: np.ndarray, seconds_per_turn: float = 4.0) -> bytes:
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = io.BytesIO()
    duration = max(20, round(1000 * seconds_per_turn / max(1, len(images))))
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   optimize=False)
    return buf.getvalue()


def _obj_files(meshes: dict, stem: str) -> dict[str, bytes]:
    """Wavefront OBJ of ``{name: Mesh}`` (one group per name) -> ``{file name: bytes}``: ``stem.obj``,
    ``stem.mtl`` and one ``stem_<name>.png`` per textured mesh. UVs flipped to OBJ's bottom-left origin;
    vertex colours (untextured meshes) as the common ``v x y z r g b`` extension."""
    files: dict[str, bytes] = {}
    obj = [f"# stdgen generate\nmtllib {stem}.mtl\n"]
    mtl = ["# stdgen generate\n"]
    v_off = vt_off = 0
    for name, m in meshes.items():
        textured = m.texture is not None and m.uvs is not None
        mtl.append(f"newmtl {name}\nKd 1.000000 1.000000 1.000000\nKa 0 0 0\nKs 0 0 0\nillum 1\n")
        if textured:
            tex = f"{stem}_{name}.png"
            files[tex] = _png_bytes(m.texture[..., :3])
            mtl.append(f"map_Kd {tex}\n")
        mtl.append("\n")
        lines = [f"o {name}\ng {name}\nusemtl {name}\n"]
        if m.colors is not None and not textured:
            lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}\n"
                      for (x, y, z), (r, g, b) in zip(m.vertices.tolist(), m.colors.tolist())]
        else:
            lines += [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in m.vertices.tolist()]
        if textured:
            uv = m.uvs
            lines += [f"vt {u:.6f} {1.0 - w:.6f}\n" for u, w in uv.tolist()]
            uf = m.uv_faces if m.uv_faces is not None else m.faces
            lines += [f"f {a + v_off + 1}/{d + vt_off + 1} {b + v_off + 1}/{e + vt_off + 1} {c + v_off + 1}/"
                      f"{g + vt_off + 1}\n" for (a, b, c), (d, e, g) in zip(m.faces.tolist(), uf.tolist())]
            vt_off += len(uv)
        else:
            lines += [f"f {a + v_off + 1} {b + v_off + 1} {c + v_off + 1}\n" for a, b, c in m.faces.tolist()]
        v_off += len(m.vertices)
        obj += lines
    files[f"{stem}.obj"] = "".join(obj).encode()
    files[f"{stem}.mtl"] = "".join(mtl).encode()
    return files


def model_files(character, fmt: str = "glb") -> dict[str, bytes]:
    """The 3D files of :func:`save_output`: ``{file name: bytes}``."""
    from stdgen.io.glb import glb_bytes
    from stdgen.structures.semantics import PARTS

    present = {p.key: character.part(p) for p in PARTS if not character.part(p).is_empty}
    if not present:
        raise StdgenError("the character has no geometry to write")
    if fmt == "glb":
        files = {"character.glb": glb_bytes(present)}
        files.update({f"{k}.glb": glb_bytes({k: m}) for k, m in present.items()})
        return files
    files = _obj_files(present, "character")
    for k, m in present.items():
        files.update(_obj_files({k: m}, k))
    return files


def report_dict(output) -> dict:
    """``report.json``'s content (plain JSON values)."""
    s = output.settings
    return {
        "version": s.get("version"),
        "weights": s.get("weights"),
        "seed": s.get("seed"),
        "settings": {k: v for k, v in s.items() if k not in ("version", "weights", "seed")},
        "pose": output.pose,
        "seconds": {**output.seconds, "total": round(sum(output.seconds.values()), 3)},
        "cpu_seconds": {**output.cpu_seconds, "total": round(sum(output.cpu_seconds.values()), 3)},
        "peak_memory": output.peak_memory,
        "faces": output.checks.get("faces"),
        "front_silhouette_iou": output.checks.get("front_silhouette_iou"),
        "views": int(len(output.views_rgb)),
        "view_resolution": int(output.views_rgb.shape[1]),
    }


def output_files(output, fmt: str = "glb") -> dict[str, bytes]:
    """Every file of :func:`save_output` as ``{name: bytes}`` (``report.json`` last)."""
    if fmt not in FORMATS:
        raise StdgenError(f"fmt: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    files = model_files(output.character, fmt)
    files["canonical.png"] = _png_bytes(output.canonical)
    files["views.png"] = _png_bytes(views_picture(output.views_rgb, output.views_normal))
    # The views side by side, -90 ... 180, as the dataset stores them: `stdgen eval`'s generated views.
    files["mv_rgb.png"] = _png_bytes(np.concatenate(list(output.views_rgb), axis=1))
    files["mv_normal.png"] = _png_bytes(np.concatenate(list(output.views_normal), axis=1))
    preview, frames = output.preview, output.turntable
    if preview is None or frames is None:  # an output made without the export stage's pictures
        preview, frames, checks = export_pictures(output.character, output.input_rgba, output.canonical)
        output.checks = {**checks, **output.checks}
    files["turntable.gif"] = _gif_bytes(frames)
    files["preview.png"] = _png_bytes(preview)
    files["report.json"] = (json.dumps(report_dict(output), indent=2) + "\n").encode()
    return files


def save_output(output, folder: str | os.PathLike, fmt: str = "glb", *, overwrite: bool = False) -> Path:
    """Write ``output``'s files (module docstring) into ``folder``, which must not exist (or be an
    empty folder, or one ``stdgen generate`` wrote; ``overwrite`` allows any other folder). Atomic:
    the files go into a temporary sibling renamed to ``folder`` at the end. Returns ``folder``."""
    from stdgen.io.outputs import claim_output_dir, write_output_dir

    out = claim_output_dir(folder, COMMAND, overwrite=overwrite)
    files = output_files(output, fmt)  # everything made before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    with write_output_dir(out, COMMAND) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return out
