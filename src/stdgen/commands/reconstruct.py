"""``stdgen reconstruct``: six views -> body / clothes / hair meshes with the S-LRM (no optimisation).

Inputs are read here, handed to :func:`stdgen.models.slrm.reconstruct.reconstruct` as tensors, and the
outputs written as a prediction folder that ``stdgen eval`` reads: ``character.glb`` (nodes body,
clothes, hair), ``body.glb``, ``clothes.glb``, ``hair.glb``, ``preview.png``, ``report.json``.

An input is a dataset character folder (its six generation views and framing, from ``meta.json``),
a dataset folder (every character folder in it, each to ``OUT_DIR/<name>/``), or a folder of six
pictures named by azimuth (``-90.png``, ``-45.png``, ``0.png``, ``45.png``, ``90.png``, ``180.png``,
RGBA or RGB on white, framed as the dataset frames its views).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stdgen.errors import StdgenError

logger = logging.getLogger(__name__)

__all__ = ["ViewSet", "preview_picture", "read_view_folder", "read_views", "reconstruct_views"]

GEN_NAMES: tuple[str, ...] = ("-90", "-45", "0", "45", "90", "180")


@dataclass
class ViewSet:
    """Six input views of one character: ``images`` (6, 3, H, W) float in [0, 1] over white,
    ``normals`` (6, 3, H, W) as (n + 1) / 2 or None, ``center`` (3,), ``half_size``, ``name``."""

    images: torch.Tensor
    normals: torch.Tensor | None
    center: tuple[float, float, float]
    half_size: float
    name: str


def _over_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return rgba[..., :3].astype(np.float32) / 255.0 * a + (1 - a)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """(V, H, W, C) float -> (V, size, size, C) (area-averaged down, bilinear up)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    mode = "area" if images.shape[1] > size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kw).permute(0, 2, 3, 1).numpy()


def read_views(folder: Path, size: int, normals: bool = False) -> ViewSet:
    """A dataset character folder's six generation views (resized to ``size``) and its framing."""
    from stdgen.io.dataset import read_renders

    maps = ("rgb", "normal") if normals else ("rgb",)
    renders = read_renders(folder, layers=("full",), maps=maps)
    idx = renders.view_index("gen")
    layer = renders.layers["full"]
    imgs = _resize(_over_white(layer.rgb[idx]), size)
    nrm = None
    if normals:
        mask = layer.mask[idx][..., None]
        enc = (layer.normal[idx] + 1) / 2 * mask + (1 - mask)
        nrm = torch.from_numpy(_resize(enc.astype(np.float32), size)).permute(0, 3, 1, 2)
    framing = renders.meta.get("framing") or {}
    center = tuple(float(c) for c in framing.get("center", (0.0, 0.0, 0.0)))
    half = float(framing.get("half_size", 1.0))
    return ViewSet(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), nrm, center, half, folder.name)


def read_view_folder(folder: Path, size: int) -> ViewSet:
    """Six pictures named by azimuth; the framing is unknown, so the result is in the normalised frame
    scaled to a 1.6 m tall character (``half_size`` 0.88 m: height = 91 % of the image)."""
    from stdgen.io.images import read_image

    imgs = []
    for name in GEN_NAMES:
        hits = [p for p in folder.iterdir()
                if p.stem == name and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
        if not hits:
            raise StdgenError(f"{folder}: no picture named {name}.png (need the six views {', '.join(GEN_NAMES)})")
        rgba = read_image(hits[0], "RGBA")
        if rgba.shape[0] != rgba.shape[1]:
            raise StdgenError(f"{hits[0]}: expected a square picture, got {rgba.shape[1]}x{rgba.shape[0]}")
        imgs.append(_resize(_over_white(rgba)[None], size)[0])
    arr = np.stack(imgs)
    return ViewSet(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), None, (0.0, 0.88, 0.0), 0.88, folder.name)


def reconstruct_views(model, views: ViewSet, *, device, config=None):
    """Run the S-LRM on a :class:`ViewSet` -> :class:`~stdgen.models.slrm.reconstruct.ReconstructOutput`."""
    from stdgen.models.slrm.reconstruct import reconstruct
    from stdgen.render.camera import generation_views

    cams = generation_views(center=(0.0, 0.0, 0.0), half_size=1.0)  # the normalised frame
    x = views.images
    if model.config.in_channels == 6:
        if views.normals is None:
            raise StdgenError("these weights read normal maps too: give a dataset folder (it has them)")
        x = torch.cat([x, views.normals], 1)
    return reconstruct(model, x.to(device), cams.world_to_cam, cams.proj, center=views.center,
                       half_size=views.half_size, config=config, name=views.name)


def preview_picture(character, size: int = 256, device="cpu") -> np.ndarray:
    """(H, W, 3) uint8: the parts side by side (front), the whole character exploded (front and 45
    degrees: parts pulled apart sideways), and a cross-section (front half cut away, seen from 30
    degrees) showing the hollow clothes around the body."""
    from stdgen.render.camera import orthographic_cameras
    from stdgen.render.scene import render_mesh
    from stdgen.structures.mesh import Mesh, merge_meshes
    from stdgen.structures.semantics import Part

    parts = {p: character.part(p) for p in Part}
    allv = np.concatenate([m.vertices for m in parts.values() if len(m.vertices)] or [np.zeros((1, 3))])
    lo, hi = allv.min(0), allv.max(0)
    center = (lo + hi) / 2
    half = float(max(hi[1] - lo[1], hi[0] - lo[0]) / 2 * 1.1 + 1e-3)
    tiles = []

    def shot(mesh: Mesh, az: float, shading: str = "toon", c=center, h=half) -> np.ndarray:
        cams = orthographic_cameras([az], 0.0, center=tuple(float(v) for v in c), half_size=h, device=device)
        out = render_mesh(mesh, cams, size, shading=shading)
        rgb = out.rgb[0].cpu().numpy()
        a = out.alpha[0].cpu().numpy()
        return rgb * a + (1 - a)

    for p in Part:
        tiles.append(shot(parts[p], 0.0))
    tiles.append(shot(merge_meshes([m for m in parts.values() if len(m.faces)]), 0.0))
    # Exploded: body in place, clothes and hair moved apart along x.
    width = float(hi[0] - lo[0])
    moved = []
    for k, p in enumerate(Part):
        m = parts[p]
        if len(m.faces):
            moved.append(Mesh(m.vertices + np.array([(k - 1) * width * 0.9, 0, 0], np.float32), m.faces,
                              colors=m.colors, label=p))
    exploded = merge_meshes(moved) if moved else parts[Part.BODY]
    tiles.append(shot(exploded, 0.0, h=half * 1.8))
    # Cross-section: drop the faces in front of the centre plane, look in from 30 degrees.
    cut = []
    for p in (Part.BODY, Part.CLOTHES):
        m = parts[p]
        if len(m.faces):
            keep = m.vertices[m.faces][:, :, 2].max(1) < center[2]
            cut.append(Mesh(m.vertices, m.faces[keep], colors=m.colors, label=p))
    if cut:
        tiles.append(shot(merge_meshes(cut), 30.0, shading="normal"))
    return (np.concatenate(tiles, 1).clip(0, 1) * 255 + 0.5).astype(np.uint8)


def refine_reconstruction(character, folder: Path, *, device="cpu"):
    """``--refine``: the reconstructed parts refined against the character folder's six generation views
    (colour, masks, normal maps of the full character: what the multi-view model will give) and
    textured (:func:`stdgen.refine.refine_and_texture`)."""
    from stdgen.io.dataset import read_renders
    from stdgen.refine import RefineViews, refine_and_texture
    from stdgen.structures.semantics import Part

    if not len(character.body.faces):
        raise StdgenError(f"{folder}: the reconstruction has no body to refine")
    renders = read_renders(folder, layers=("full",), maps=("rgb", "normal"))
    views = RefineViews.from_renders(renders, "full")
    coarse = {Part.BODY: character.body, Part.CLOTHES: character.clothes[0] if character.clothes else None,
              Part.HAIR: character.hair[0] if character.hair else None}
    return refine_and_texture({p: m for p, m in coarse.items() if m is not None}, views, device=device)


def run(inputs: list[Path], output: Path, *, weights_dir=None, device="cpu", grid: int = 128, overwrite=False,
        refine: bool = False, progress=None) -> list[dict]:
    """Reconstruct each input into ``output`` (one character input: the folder itself; a dataset or
    several inputs: a subfolder per character). Every prediction folder is claimed first (a new path,
    or one this command wrote; anything else needs ``overwrite``, and inputs are never written over)
    and written atomically. Returns the reports."""
    from PIL import Image

    from stdgen.io.glb import write_glb
    from stdgen.io.outputs import claim_output_dir, write_output_dir
    from stdgen.models.slrm import SLRM
    from stdgen.models.slrm.reconstruct import ReconstructConfig
    from stdgen.weights import find_weights

    jobs: list[tuple[Path, Path]] = []
    for inp in inputs:
        if (inp / "meta.json").is_file() or any(inp.glob("0.png")) or any(inp.glob("0.jpg")):
            jobs.append((inp, output if len(inputs) == 1 else output / inp.name))
        elif inp.is_dir():
            chars = sorted(p for p in inp.iterdir() if (p / "meta.json").is_file())
            if not chars:
                raise StdgenError(f"{inp}: neither a character folder, a dataset folder nor six views")
            jobs += [(c, output / c.name) for c in chars]
        else:
            raise StdgenError(f"{inp}: not a folder")
    if refine:
        no_maps = [str(src) for src, _ in jobs if not (src / "meta.json").is_file()]
        if no_maps:
            raise StdgenError(f"--refine needs the views' normal maps: {no_maps[0]} is six pictures, not a dataset "
                              "character folder")
    for _, dst in jobs:
        claim_output_dir(dst, "reconstruct", overwrite=overwrite, inputs=inputs)
    wdir = find_weights("slrm", weights_dir)
    model = SLRM.from_pretrained(wdir, device=device)
    config = ReconstructConfig(grid_resolution=grid)
    reports = []
    if progress is not None:
        progress(0, len(jobs))
    for k, (src, dst) in enumerate(jobs):
        t0 = time.perf_counter()
        if (src / "meta.json").is_file():
            views = read_views(src, model.config.image_size, normals=model.config.in_channels == 6)
        else:
            views = read_view_folder(src, model.config.image_size)
        t_read = time.perf_counter() - t0
        with torch.inference_mode():
            out = reconstruct_views(model, views, device=device, config=config)
        ch = out.character
        if refine:
            t1 = time.perf_counter()
            ch = refine_reconstruction(ch, src, device=device)
            out.seconds["refine"] = time.perf_counter() - t1
        parts = {"body": ch.body, "clothes": ch.clothes[0] if ch.clothes else None,
                 "hair": ch.hair[0] if ch.hair else None}
        report = {"input": str(src), "weights": str(wdir), "grid": grid, "device": str(device), "refined": refine,
                  "faces": {n: int(len(m.faces)) if m is not None else 0 for n, m in parts.items()},
                  "seconds": {"read": round(t_read, 3), **{n: round(v, 3) for n, v in out.seconds.items()}}}
        t0 = time.perf_counter()
        dst.parent.mkdir(parents=True, exist_ok=True)
        with write_output_dir(dst, "reconstruct") as tmp:
            present = {n: m for n, m in parts.items() if m is not None and len(m.faces)}
            write_glb(present, tmp / "character.glb")
            for n, m in present.items():
                write_glb({n: m}, tmp / f"{n}.glb")
            Image.fromarray(preview_picture(ch, device=device)).save(tmp / "preview.png")
            report["seconds"]["write"] = round(time.perf_counter() - t0, 3)
            (tmp / "report.json").write_text(json.dumps(report, indent=2))
        reports.append(report)
        if progress is not None:
            progress(k + 1, len(jobs))
    return reports
