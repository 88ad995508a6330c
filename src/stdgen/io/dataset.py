"""The on-disk dataset format: one folder per character (see ``docs/dataset.md``).

This module is the single reader and writer of the format; the renderer of the dataset
(``stdgen data render``), VRM import, evaluation and refinement all go through it.

A dataset directory holds one folder per character and ``manifest.json`` (:func:`read_manifest`).
A character folder holds::

    character.glb            the true parts in A-pose: nodes body, clothes, hair (textured)
    meta.json                provenance, framing, light, cameras of every view, encodings
    {layer}_{map}.png        one sprite sheet per layer set and map: the views side by side,
                             in meta.json's "views" order (view v at columns [v W, (v + 1) W))
    posed_rgb.png            random-pose front renders (canonicalisation pairs), if any
    preview.png              a picture to look at (not read back)

``layer`` is one of ``body``, ``body_clothes``, ``full`` (``stdgen.structures.semantics.LAYER_SETS``);
``map`` is one of:

=========  =========================  ====================================================
map        PNG                        meaning
=========  =========================  ====================================================
rgb        RGBA 8-bit                 unlit colour (albedo), straight alpha = antialiased mask
lit        RGB 8-bit                  cel-shaded colour under the key light (meta
                                      ``light_dir``), straight; its alpha is rgb's
normal     RGB 8-bit                  world-space unit normal n as (n + 1) / 2; 0 off the coverage
depth      grey 16-bit                camera-space depth in units of 1/4 mm; 0 off the coverage
sem        grey 8-bit                 Part value (0 body, 1 clothes, 2 hair); 255 background
=========  =========================  ====================================================

*Coverage* is where a triangle covers the pixel centre (``sem != 255``); normal, depth and sem are
defined there. The antialiased ``rgb`` alpha is slightly wider (partly covered edge pixels).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stdgen.errors import InputError
from stdgen.structures.semantics import BACKGROUND_LABEL, LAYER_SETS

FORMAT_NAME = "stdgen-character"
FORMAT_VERSION = 1
MAPS: tuple[str, ...] = ("rgb", "lit", "normal", "depth", "sem")
DEPTH_SCALE = 4000.0  # uint16 units per metre (1/4 mm); the largest depth is 16.38 m
#: View groups, in the order their views are listed in meta.json.
VIEW_GROUPS: tuple[str, ...] = ("eval", "top_bottom", "face", "random")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "stdgen-dataset"


@dataclass
class LayerRenders:
    """Renders of one layer set in V views (numpy, decoded).

    ``rgb`` (V, H, W, 4) uint8 straight alpha; ``lit`` (V, H, W, 3) uint8; ``normal`` (V, H, W, 3)
    float32 unit world normals (0 off the coverage); ``depth`` (V, H, W) float32 metres (0 off
    the coverage); ``sem`` (V, H, W) uint8. A map not loaded is ``None``.
    """

    rgb: np.ndarray | None = None
    lit: np.ndarray | None = None
    normal: np.ndarray | None = None
    depth: np.ndarray | None = None
    sem: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """(V, H, W) float32 coverage in [0, 1] (the rgb alpha)."""
        return self.rgb[..., 3].astype(np.float32) / 255.0

    @property
    def coverage(self) -> np.ndarray:
        """(V, H, W) bool: pixel centres covered by a triangle (where normal, depth, sem are set)."""
        if self.sem is not None:
            return self.sem != BACKGROUND_LABEL
        if self.normal is not None:
            return np.any(self.normal != 0, axis=-1)
        return self.rgb[..., 3] > 0

    def select(self, index: list[int]) -> LayerRenders:
        return LayerRenders(**{m: None if getattr(self, m) is None else getattr(self, m)[index] for m in MAPS})


@dataclass
class CharacterRenders:
    """A character folder in memory: view descriptions, per-layer renders and metadata.

    ``views`` is a list of dicts ``{"name", "group", "orthographic", "azimuth", "elevation",
    "world_to_cam" (4x4), "proj" (4x4)}`` in sprite order; ``layers`` maps a layer-set name to
    its :class:`LayerRenders`; ``posed_rgb`` (K, H, W, 4) random-pose front renders with
    ``meta["posed"]`` describing them.
    """

    views: list[dict]
    layers: dict[str, LayerRenders]
    meta: dict = field(default_factory=dict)
    posed_rgb: np.ndarray | None = None

    def view_index(self, group: str | None = None, names: list[str] | None = None) -> list[int]:
        """Indices of views in a group (``"gen"`` selects the six generation views), or by name."""
        if names is not None:
            lookup = {v["name"]: i for i, v in enumerate(self.views)}
            missing = [n for n in names if n not in lookup]
            if missing:
                raise KeyError(f"no views named {missing}")
            return [lookup[n] for n in names]
        if group == "gen":
            from stdgen.render.camera import GENERATION_AZIMUTHS

            by_az = {round(v["azimuth"]) % 360: i for i, v in enumerate(self.views) if v["group"] == "eval"}
            return [by_az[round(a) % 360] for a in GENERATION_AZIMUTHS]
        return [i for i, v in enumerate(self.views) if group is None or v["group"] == group]

    def cameras(self, index: list[int] | None = None, device="cpu"):
        """:class:`~stdgen.render.Cameras` of the selected views."""
        from stdgen.render.camera import Cameras

        sel = [self.views[i] for i in (index if index is not None else range(len(self.views)))]
        return Cameras.from_dict({
            "world_to_cam": [v["world_to_cam"] for v in sel],
            "proj": [v["proj"] for v in sel],
            "orthographic": [v["orthographic"] for v in sel],
            "names": [v["name"] for v in sel],
        }, device=device)

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])


# -- encoding -----------------------------------------------------------------------------------
def encode_normal(normal: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(V, H, W, 3) unit normals + (V, H, W) bool mask -> uint8 RGB."""
    enc = np.clip((normal * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
    return enc * mask[..., None].astype(np.uint8)


def decode_normal(rgb: np.ndarray) -> np.ndarray:
    n = rgb.astype(np.float32) / 255.0 * 2 - 1
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    covered = rgb.any(-1, keepdims=True)
    return np.where(covered, n / np.maximum(length, 1e-6), 0).astype(np.float32)


def encode_depth(depth: np.ndarray) -> np.ndarray:
    return np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def decode_depth(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float32) / DEPTH_SCALE


def _sprite(images: np.ndarray) -> np.ndarray:
    """(V, H, W, ...) -> (H, V W, ...)."""
    return np.concatenate(list(images), axis=1)


def _unsprite(sheet: np.ndarray, views: int, path: Path) -> np.ndarray:
    if sheet.shape[1] % views:
        raise InputError(f"{path}: width {sheet.shape[1]} is not a multiple of its {views} views")
    return np.stack(np.split(sheet, views, axis=1))


# -- writing ---------------------------------------------------------------------------------------
#: zlib level of the dataset's PNGs (1: fast; files stay lossless).
PNG_COMPRESS_LEVEL = 1


def write_renders(folder: str | Path, renders: CharacterRenders, *, preview: bool = True) -> None:
    """Write ``meta.json``, the sprite sheets of ``renders`` and (``preview``) ``preview.png`` into
    ``folder`` (which the caller creates atomically, e.g. with :func:`stdgen.utils.io.atomic_dir`).
    ``meta.json`` is written last, so a folder with one is complete."""
    from stdgen.utils.io import save_png

    folder = Path(folder)
    meta = dict(renders.meta)
    meta.update(format=FORMAT_NAME, version=FORMAT_VERSION, views=renders.views,
                layers=list(renders.layers), maps=list(MAPS), depth_scale=DEPTH_SCALE)
    jobs: list[tuple[Path, object]] = []  # (path, callable giving the image)
    for layer, r in renders.layers.items():
        if layer not in LAYER_SETS:
            raise ValueError(f"unknown layer set {layer!r}")
        mask = r.coverage
        jobs += [
            (folder / f"{layer}_rgb.png", lambda r=r: _sprite(r.rgb)),
            (folder / f"{layer}_lit.png", lambda r=r: _sprite(r.lit)),
            (folder / f"{layer}_normal.png", lambda r=r, m=mask: _sprite(encode_normal(r.normal, m))),
            (folder / f"{layer}_depth.png", lambda r=r, m=mask: _sprite(encode_depth(np.where(m, r.depth, 0)))),
            (folder / f"{layer}_sem.png", lambda r=r: _sprite(r.sem)),
        ]
    if renders.posed_rgb is not None and len(renders.posed_rgb):
        jobs.append((folder / "posed_rgb.png", lambda: _sprite(renders.posed_rgb)))
    if preview:
        jobs.append((folder / "preview.png", lambda: preview_image(renders)))

    # PNG encoding (zlib) releases the GIL: a few threads write the sheets side by side, and a
    # low compression level trades ~15 % larger files for several times faster writing.
    def write(job):
        path, image = job
        save_png(path, image(), compress_level=PNG_COMPRESS_LEVEL)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(write, jobs))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def preview_image(renders: CharacterRenders, size: int = 128) -> np.ndarray:
    """(H, W, 3) float picture of a character folder: per layer set, its unlit colour in the eight
    evaluation views over white; then the full set's normals and semantic labels; then the posed
    front renders. Views are shrunk to at most ``size`` pixels."""
    from stdgen.utils.io import image_grid

    idx = renders.view_index("eval") or list(range(len(renders.views)))
    step = max(1, renders.resolution // size)
    small = lambda a: a[:, ::step, ::step]  # nearest-neighbour shrink: enough to look at
    rows = []
    for layer in ("full", "body_clothes", "body"):
        if layer in renders.layers and renders.layers[layer].rgb is not None:
            rows.append(list(small(renders.layers[layer].rgb[idx]).astype(np.float32) / 255))
    full = renders.layers.get("full")
    if full is not None and full.normal is not None:
        cov = small(full.coverage[idx])[..., None]
        rows.append(list(np.where(cov, small(full.normal[idx]) * 0.5 + 0.5, 1.0)))
    if full is not None and full.sem is not None:
        palette = np.array([[0.95, 0.75, 0.6], [0.2, 0.4, 0.9], [0.45, 0.25, 0.1]], np.float32)
        sem = small(full.sem[idx])
        rows.append(list(np.where((sem == BACKGROUND_LABEL)[..., None], 1.0, palette[np.minimum(sem, 2)])))
    if renders.posed_rgb is not None and len(renders.posed_rgb):
        rows.append(list(small(renders.posed_rgb).astype(np.float32) / 255))
    return image_grid(rows)


# -- reading ---------------------------------------------------------------------------------------
#: The largest ``resolution`` a character folder may declare (a sheet is read only if its size
#: matches the one meta.json declares, so this bounds what a damaged folder can make us decode).
MAX_RESOLUTION = 8192
#: Pillow modes each map may be stored in (lossless PNG optimisers may turn RGBA into a palette or
#: grey+alpha, which convert back exactly); anything else is refused, never reinterpreted.
_MAP_MODES: dict[str, tuple[str, ...]] = {
    "rgb": ("RGBA", "LA", "PA", "P"),  # with its alpha: the antialiased mask
    "lit": ("RGB", "RGBA", "P", "L", "LA", "PA"),
    "normal": ("RGB", "RGBA", "P"),
    "depth": ("I;16", "I;16B", "I;16L", "I"),
    "sem": ("L",),
}
_MAP_CONVERT = {"rgb": "RGBA", "lit": "RGB", "normal": "RGB", "depth": "raw", "sem": "raw"}
#: The labels a ``sem`` sheet may hold: the parts and the background.
VALID_LABELS = (0, 1, 2, BACKGROUND_LABEL)


def _finite_matrix(value, path: Path, what: str) -> None:
    a = np.asarray(value, dtype=object)
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (4, 4) or a.dtype == bool:
        raise InputError(f"{path}: {what} is not a 4x4 matrix of numbers")
    if not np.isfinite(m).all():
        raise InputError(f"{path}: {what} holds a non-finite number (NaN or infinity)")


def check_meta(meta, path: str | Path) -> dict:
    """Check the shape of a character folder's meta.json (parsed): an object with this format and
    version, a whole ``resolution`` in [1, :data:`MAX_RESOLUTION`], ``layers`` from
    ``LAYER_SETS``, and a non-empty ``views`` list whose views have a name, a group, finite 4x4
    ``world_to_cam`` / ``proj`` matrices and finite angles. Raises an InputError naming ``path``
    and the problem; returns ``meta``."""
    import math

    path = Path(path)
    if not isinstance(meta, dict):
        raise InputError(f"{path}: not a JSON object (a {type(meta).__name__})")
    if meta.get("format") != FORMAT_NAME:
        raise InputError(f"{path}: not a {FORMAT_NAME} folder (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: format version {meta.get('version')}, this stdgen reads {FORMAT_VERSION}")
    res = meta.get("resolution")
    if isinstance(res, bool) or not isinstance(res, int | float) or not math.isfinite(res) or res != int(res) \
            or not 1 <= res <= MAX_RESOLUTION:
        raise InputError(f"{path}: resolution {res!r} is not a whole number in [1, {MAX_RESOLUTION}]")
    meta["resolution"] = int(res)
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers or any(layer not in LAYER_SETS for layer in layers):
        raise InputError(f"{path}: layers {layers!r} is not a list of layer sets from {list(LAYER_SETS)}")
    views = meta.get("views")
    if not isinstance(views, list) or not views:
        raise InputError(f"{path}: views {'missing' if views is None else repr(views)[:40]}: expected a "
                         "non-empty list of views")
    for i, v in enumerate(views):
        if not isinstance(v, dict):
            raise InputError(f"{path}: views[{i}] is not an object")
        if not isinstance(v.get("name"), str) or not isinstance(v.get("group"), str):
            raise InputError(f"{path}: views[{i}] has no name or group")
        for key in ("azimuth", "elevation"):
            x = v.get(key, 0.0)
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise InputError(f"{path}: views[{i}] ({v['name']}) {key} {x!r} is not a finite number")
        for key in ("world_to_cam", "proj"):
            _finite_matrix(v.get(key), path, f"views[{i}] ({v['name']}) {key}")
        if not isinstance(v.get("orthographic", False), bool):
            raise InputError(f"{path}: views[{i}] ({v['name']}) orthographic is not true or false")
    posed = meta.get("posed")
    if posed is not None and not isinstance(posed, list):
        raise InputError(f"{path}: posed is not a list")
    return meta


def read_meta(folder: str | Path) -> dict:
    """A character folder's meta.json, checked (:func:`check_meta`); a damaged one is an InputError
    naming the file and the problem."""
    folder = Path(folder)
    path = folder / "meta.json"
    if not path.is_file():
        raise InputError(f"{folder}: not a character folder (no meta.json)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None
    return check_meta(meta, path)


def read_sheet(path: Path, map_name: str, views: int, resolution: int) -> np.ndarray:
    """One sprite sheet of a map, checked and decoded to its stored values: (V, H, W[, C]).

    The file must be a PNG of exactly ``views * resolution`` x ``resolution`` pixels (checked before
    decoding), stored in a mode the map allows; ``sem`` labels must be parts or the background."""
    from PIL import Image

    from stdgen.io.images import has_alpha, read_image

    if not path.is_file():
        raise InputError(f"{path}: missing")
    try:
        with Image.open(path) as im:
            mode, alpha = im.mode, has_alpha(im)
    except Exception:  # unreadable or refused: read_image names the problem below
        mode, alpha = None, True
    if mode is not None and mode not in _MAP_MODES[map_name]:
        raise InputError(f"{path}: stored as {mode} pixels; a {map_name} sheet is "
                         f"{' / '.join(_MAP_MODES[map_name][:2])}")
    if map_name == "rgb" and not alpha:
        raise InputError(f"{path}: has no alpha channel (the mask); an rgb sheet is RGBA")
    arr = read_image(path, _MAP_CONVERT[map_name], formats=("PNG",),
                     expect_size=(views * resolution, resolution), max_pixels=views * resolution * resolution)
    if map_name == "sem":
        bad = ~np.isin(arr, VALID_LABELS)
        if bad.any():
            raise InputError(f"{path}: label {int(arr[bad][0])} is not a part (0 body, 1 clothes, 2 hair) or "
                             f"the background ({BACKGROUND_LABEL})")
    return _unsprite(arr, views, path)


def read_renders(folder: str | Path, layers: tuple[str, ...] | None = None,
                 maps: tuple[str, ...] | None = None, *, posed: bool | None = None) -> CharacterRenders:
    """Read a character folder (all layers and maps unless narrowed), checked: meta.json's shape,
    each sheet's file type, mode and size against meta.json, and the labels. ``posed``: read
    ``posed_rgb.png`` too (default: only when the whole folder is read). Any damage is an
    InputError naming the file and the problem."""
    folder = Path(folder)
    meta = read_meta(folder)
    views = meta["views"]
    res = meta["resolution"]
    whole = layers is None and maps is None
    layers = tuple(meta["layers"]) if layers is None else layers
    maps = MAPS if maps is None else maps
    out: dict[str, LayerRenders] = {}
    for layer in layers:
        if layer not in meta["layers"]:
            raise InputError(f"{folder}: has no {layer!r} renders (has {meta['layers']})")
        r = LayerRenders()
        for m in maps:
            arr = read_sheet(folder / f"{layer}_{m}.png", m, len(views), res)
            if m == "normal":
                arr = decode_normal(arr)
            elif m == "depth":
                arr = decode_depth(arr)
            setattr(r, m, arr)
        out[layer] = r
    posed_rgb = None
    if (whole if posed is None else posed) and meta.get("posed") and (folder / "posed_rgb.png").is_file():
        posed_rgb = read_sheet(folder / "posed_rgb.png", "rgb", len(meta["posed"]), res)
    return CharacterRenders(views=views, layers=out, meta=meta, posed_rgb=posed_rgb)


def missing_files(folder: str | Path, meta: dict | None = None) -> list[str]:
    """The files a complete character folder has that ``folder`` lacks (every layer and map its
    meta.json lists, ``character.glb``, ``posed_rgb.png`` if it has posed renders); an unreadable
    meta.json counts as missing."""
    folder = Path(folder)
    if meta is None:
        try:
            meta = read_meta(folder)
        except InputError:
            return ["meta.json"]
    names = [f"{layer}_{m}.png" for layer in meta["layers"] for m in meta.get("maps", MAPS)]
    names.append("character.glb")
    if meta.get("posed"):
        names.append("posed_rgb.png")
    return [n for n in names if not (folder / n).is_file()]


def character_folder_name(seed: int) -> str:
    """The folder name of a procedural character: its seed, zero-padded to seven digits."""
    return f"{int(seed):07d}"


def read_manifest(dataset: str | Path) -> dict:
    """``DIR/manifest.json``: ``{"format", "version", "characters": [{"id", "seed", "split",
    "source"}, ...], ...}`` (``id`` is the folder name). An empty manifest if there is none."""
    path = Path(dataset) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "version": FORMAT_VERSION, "characters": []}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("characters"), list):
        raise InputError(f"{path}: not a {MANIFEST_FORMAT} manifest (an object with format "
                         f"{MANIFEST_FORMAT!r} and a list of characters)")
    if any(not isinstance(e, dict) or not isinstance(e.get("id"), str) for e in manifest["characters"]):
        raise InputError(f"{path}: an entry of characters is not an object with an id")
    return manifest


def write_manifest(dataset: str | Path, characters: list[dict], **extra) -> Path:
    """Write ``DIR/manifest.json`` atomically, its entries sorted by ``id``; ``extra`` keys are
    stored beside them (e.g. the render configuration)."""
    from stdgen.utils.io import atomic_write

    path = Path(dataset) / MANIFEST_NAME
    entries = sorted(characters, key=lambda e: str(e["id"]))
    body = {"format": MANIFEST_FORMAT, "version": FORMAT_VERSION, **extra, "count": len(entries),
            "characters": entries}
    with atomic_write(path, "w") as f:
        f.write(json.dumps(body, indent=1))
    return path


def manifest_entry(folder: str | Path, meta: dict | None = None) -> dict:
    """The manifest entry of a character folder (from its ``meta.json``)."""
    folder = Path(folder)
    meta = read_meta(folder) if meta is None else meta
    return {"id": folder.name, "seed": meta.get("seed"), "split": meta.get("split"), "source": meta.get("source")}


def list_character_folders(dataset: str | Path) -> list[Path]:
    """Character folders of a dataset directory (those holding a meta.json), sorted by name."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputError(f"{dataset}: no such directory")
    return sorted(p for p in dataset.iterdir() if p.is_dir() and (p / "meta.json").is_file()
                  and not p.name.startswith("."))
