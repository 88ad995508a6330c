"""A careful reader of binary glTF 2.0 (GLB, and VRM files, which are GLBs with extensions).

:func:`load_glb` checks the container itself (magic, version, lengths, chunk layout) and then lets
pygltflib parse the JSON (``GLTF2.load_from_bytes``: pygltflib's ``load`` picks its parser by the
file's extension and fails on ``.vrm``). The returned :class:`GltfFile` reads accessors, images
and the node hierarchy with every index and byte range checked, so a malformed or hostile file
raises :class:`~stdgen.errors.InputError` naming the file and the problem, never an
``IndexError`` deep inside numpy, and never allocates more than the file's own size suggests.

Everything here is format-level; what the data *means* (parts, humanoid bones, facing) is
decided by :mod:`stdgen.io.vrm` and :func:`stdgen.io.glb.read_glb`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stdgen.errors import InputError

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

COMPONENT_DTYPES: dict[int, type] = {
    5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32,
}  # fmt: skip
TYPE_WIDTHS: dict[str, int] = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

#: Largest image (in pixels) decoded; a bigger one is refused rather than allocated (a damaged PNG
#: header can claim any size).
MAX_IMAGE_PIXELS = 8192 * 8192

#: Errors that pygltflib, numpy or PIL raise on nonsense values in a file. At the file boundary
#: these become an InputError; anywhere else they stay bugs.
MALFORMED_ERRORS = (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError,
                    ZeroDivisionError, RecursionError, UnicodeError, struct.error, np.linalg.LinAlgError)


def as_int(value, what: str, path, *, lo: int = 0, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi) or an InputError saying what it was meant to be."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{path}: {what} is {value!r}, expected an integer")
    v = int(value)
    if v < lo or (hi is not None and v >= hi):
        rng = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
        raise InputError(f"{path}: {what} is {v}, outside {rng}")
    return v


def as_floats(value, n: int, what: str, path) -> np.ndarray:
    """A list of ``n`` finite numbers as float64, or an InputError."""
    try:
        a = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} is not a list of numbers") from None
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise InputError(f"{path}: {what} must be {n} finite numbers, got {value!r}")
    return a


@dataclass
class GltfFile:
    """A parsed GLB: the pygltflib document, its binary chunk, and checked accessors into it.

    ``doc`` is a ``pygltflib.GLTF2``; ``buffers[i]`` the bytes of buffer i (the GLB's BIN chunk,
    or a ``data:`` URI); ``raw_json`` the JSON chunk as plain dicts (for extensions, which
    pygltflib keeps as dicts anyway).
    """

    path: Path
    doc: object
    raw_json: dict
    buffers: list[bytes]
    _images: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _parents: np.ndarray | None = field(default=None, repr=False)

    # -- lists with checked indexing -----------------------------------------------------------
    def items(self, kind: str) -> list:
        """``doc.<kind>`` (``"nodes"``, ``"meshes"``, ...) as a list; an InputError if not one."""
        value = getattr(self.doc, kind, None)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InputError(f"{self.path}: '{kind}' is not a list")
        return value

    def item(self, kind: str, index, what: str | None = None):
        """``doc.<kind>[index]`` with the index checked; ``what`` names the referrer in errors."""
        seq = self.items(kind)
        i = as_int(index, what or f"{kind} index", self.path)
        if i >= len(seq):
            raise InputError(f"{self.path}: {what or kind[:-1]} refers to {kind[:-1]} {i}, "
                             f"but the file has {len(seq)} {kind}")
        return seq[i]

    # -- accessors -----------------------------------------------------------------------------
    def _view_bytes(self, view_index, what: str) -> tuple[bytes, int, int, int | None]:
        """(buffer bytes, start, length, byteStride) of a buffer view, bounds-checked."""
        bv = self.item("bufferViews", view_index, what)
        b = as_int(bv.buffer, f"bufferView {view_index}'s buffer", self.path)
        if b >= len(self.buffers) or self.buffers[b] is None:
            raise InputError(f"{self.path}: bufferView {view_index} uses buffer {b}, which is missing")
        data = self.buffers[b]
        start = as_int(bv.byteOffset or 0, f"bufferView {view_index}'s byteOffset", self.path)
        length = as_int(bv.byteLength, f"bufferView {view_index}'s byteLength", self.path)
        if start + length > len(data):
            raise InputError(f"{self.path}: bufferView {view_index} (bytes {start}..{start + length}) runs past "
                             f"the end of buffer {b} ({len(data)} bytes)")
        stride = None
        if bv.byteStride is not None:
            stride = as_int(bv.byteStride, f"bufferView {view_index}'s byteStride", self.path, lo=4, hi=253)
        return data, start, length, stride

    def view_bytes(self, view_index, what: str = "bufferView") -> bytes:
        """The bytes of a buffer view."""
        data, start, length, _ = self._view_bytes(view_index, what)
        return data[start:start + length]

    def _read_dense(self, view_index, offset: int, count: int, dtype: np.dtype, width: int, what: str,
                    allow_stride: bool = True) -> np.ndarray:
        data, start, length, stride = self._view_bytes(view_index, what)
        elem = dtype.itemsize * width
        stride = stride if (stride and allow_stride) else elem
        if stride < elem:
            raise InputError(f"{self.path}: {what}: byteStride {stride} is smaller than one element ({elem})")
        need = offset + (stride * (count - 1) + elem if count else 0)
        if need > length:
            raise InputError(f"{self.path}: {what} reads {need} bytes from bufferView {view_index}, "
                             f"which has {length}")
        begin = start + offset
        if count == 0:
            return np.zeros((0, width), dtype)
        if stride == elem:
            return np.frombuffer(data, dtype, count * width, begin).reshape(count, width).copy()
        raw = np.frombuffer(data, np.uint8, need - offset, begin)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(count, elem), strides=(stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def accessor(self, index, what: str | None = None, *, normalize: bool = True) -> np.ndarray:
        """Accessor ``index`` as an array ``(count, width)`` (``MAT4`` as ``(count, 16)``, column-major
        as stored). Normalised integers become float32 in [0, 1] / [-1, 1] when ``normalize``.
        Sparse accessors are applied. Everything is bounds-checked."""
        what = what or f"accessor {index}"
        acc = self.item("accessors", index, what)
        i = int(index)
        ctype, kind = acc.componentType, acc.type
        if ctype not in COMPONENT_DTYPES or kind not in TYPE_WIDTHS:
            raise InputError(f"{self.path}: accessor {i} has unsupported type {kind!r}/{ctype!r}")
        dtype = np.dtype(COMPONENT_DTYPES[ctype]).newbyteorder("<")
        width = TYPE_WIDTHS[kind]
        count = as_int(acc.count, f"accessor {i}'s count", self.path, lo=0)
        if count * width * dtype.itemsize > sum(len(b or b"") for b in self.buffers) and acc.sparse is None:
            raise InputError(f"{self.path}: accessor {i} claims {count} elements, more than the file holds")
        if acc.bufferView is None:
            out = np.zeros((count, width), dtype)
        else:
            offset = as_int(acc.byteOffset or 0, f"accessor {i}'s byteOffset", self.path)
            if offset % dtype.itemsize:
                raise InputError(f"{self.path}: accessor {i}'s byteOffset {offset} is not aligned")
            out = self._read_dense(acc.bufferView, offset, count, dtype, width, f"accessor {i}")
        if acc.sparse is not None:
            out = self._apply_sparse(i, acc.sparse, out, dtype, width, count)
        if normalize and acc.normalized and dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.maximum(out.astype(np.float32) / info.max, -1.0).astype(np.float32)
        return out

    def _apply_sparse(self, i: int, sparse, out: np.ndarray, dtype, width: int, count: int) -> np.ndarray:
        n = as_int(sparse.count, f"accessor {i}'s sparse count", self.path, lo=1, hi=count + 1)
        idx, val = sparse.indices, sparse.values
        if idx is None or val is None:
            raise InputError(f"{self.path}: accessor {i}'s sparse part lacks indices or values")
        ict = idx.componentType
        if ict not in (5121, 5123, 5125):
            raise InputError(f"{self.path}: accessor {i}'s sparse indices have component type {ict!r}")
        ioff = as_int(idx.byteOffset or 0, f"accessor {i}'s sparse indices byteOffset", self.path)
        voff = as_int(val.byteOffset or 0, f"accessor {i}'s sparse values byteOffset", self.path)
        ind = self._read_dense(idx.bufferView, ioff, n, np.dtype(COMPONENT_DTYPES[ict]).newbyteorder("<"), 1,
                               f"accessor {i}'s sparse indices", allow_stride=False).reshape(-1)
        vals = self._read_dense(val.bufferView, voff, n, dtype, width, f"accessor {i}'s sparse values",
                                allow_stride=False)
        if n and int(ind.max()) >= count:
            raise InputError(f"{self.path}: accessor {i}'s sparse indices point past its {count} elements")
        out = out.copy()
        out[ind.astype(np.int64)] = vals
        return out

    # -- images ----------------------------------------------------------------------------------
    def image(self, image_index) -> np.ndarray:
        """Image ``image_index`` decoded: (H, W, 3) or (H, W, 4) uint8 sRGB, row 0 at the top."""
        i = as_int(image_index, "image index", self.path)
        if i in self._images:
            return self._images[i]
        img = self.item("images", i, "a texture")
        if img.bufferView is not None:
            data = self.view_bytes(img.bufferView, f"image {i}")
        elif isinstance(img.uri, str) and img.uri.startswith("data:"):
            data = _data_uri(img.uri, self.path, f"image {i}")
        else:
            raise InputError(f"{self.path}: image {i} is not embedded in the file (uri {img.uri!r})")
        self._images[i] = decode_image(data, f"{self.path}: image {i}")
        return self._images[i]

    # -- nodes -------------------------------------------------------------------------------------
    def parents(self) -> np.ndarray:
        """(N,) parent node index per node, -1 for roots; an InputError for a node with two parents
        or a cycle."""
        if self._parents is not None:
            return self._parents
        nodes = self.items("nodes")
        parents = np.full(len(nodes), -1, np.int64)
        for i, node in enumerate(nodes):
            children = node.children or []
            if not isinstance(children, list):
                raise InputError(f"{self.path}: node {i}'s children is not a list")
            for c in children:
                c = as_int(c, f"a child of node {i}", self.path, hi=len(nodes))
                if parents[c] >= 0 or c == i:
                    raise InputError(f"{self.path}: node {c} has more than one parent")
                parents[c] = i
        # A cycle leaves nodes whose chain of parents never reaches a root.
        depth = np.full(len(nodes), -1, np.int64)
        for i in range(len(nodes)):
            chain = []
            j = i
            while j >= 0 and depth[j] < 0 and len(chain) <= len(nodes):
                chain.append(j)
                j = parents[j]
            if len(chain) > len(nodes) or (j >= 0 and j in chain):
                raise InputError(f"{self.path}: the node hierarchy has a cycle (through node {i})")
            base = depth[j] if j >= 0 else -1
            for k, node_index in enumerate(reversed(chain)):
                depth[node_index] = base + 1 + k
        self._parents = parents
        return parents

    def local_matrix(self, index: int) -> np.ndarray:
        """(4, 4) float64 local transform of node ``index`` (its ``matrix`` or T @ R @ S)."""
        node = self.item("nodes", index)
        if node.matrix is not None:
            m = as_floats(node.matrix, 16, f"node {index}'s matrix", self.path)
            return m.reshape(4, 4).T  # glTF stores column-major
        m = np.eye(4)
        if node.scale is not None:
            m[:3, :3] = np.diag(as_floats(node.scale, 3, f"node {index}'s scale", self.path))
        if node.rotation is not None:
            q = as_floats(node.rotation, 4, f"node {index}'s rotation", self.path)
            m[:3, :3] = quaternion_matrix(q) @ m[:3, :3]
        if node.translation is not None:
            m[:3, 3] = as_floats(node.translation, 3, f"node {index}'s translation", self.path)
        return m

    def world_matrices(self) -> np.ndarray:
        """(N, 4, 4) world transform of every node (the file's rest / bind-time state)."""
        parents = self.parents()
        n = len(parents)
        world = np.zeros((n, 4, 4))
        done = np.zeros(n, bool)
        for i in range(n):
            chain = []
            j = i
            while j >= 0 and not done[j]:
                chain.append(j)
                j = parents[j]
            base = world[j] if j >= 0 else np.eye(4)
            for k in reversed(chain):
                world[k] = base @ self.local_matrix(k)
                done[k] = True
                base = world[k]
        return world

    def scene_nodes(self) -> list[int]:
        """Indices of the nodes in the default scene (roots and all their descendants), in
        depth-first order; every node when the file has no scenes."""
        nodes = self.items("nodes")
        parents = self.parents()
        scenes = self.items("scenes")
        if not scenes:
            roots = [i for i in range(len(nodes)) if parents[i] < 0]
        else:
            s = self.item("scenes", self.doc.scene if self.doc.scene is not None else 0, "the default scene")
            roots = [as_int(r, "a scene root node", self.path, hi=len(nodes)) for r in (s.nodes or [])]
        order, stack, seen = [], list(reversed(roots)), set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            order.append(i)
            stack.extend(reversed([int(c) for c in (nodes[i].children or [])]))
        return order


# -- loading -----------------------------------------------------------------------------------------
def load_glb(path: str | os.PathLike, data: bytes | None = None) -> GltfFile:
    """Read and check a GLB / VRM file (or ``data``, its bytes, named ``path`` in errors)."""
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) < 12:
        raise InputError(f"{path}: truncated: {len(data)} bytes is too short for a GLB header")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != GLB_MAGIC:
        if data[:1] == b"{":
            raise InputError(f"{path}: is a JSON glTF (.gltf); only binary glTF (GLB / VRM) is read")
        raise InputError(f"{path}: not a GLB / VRM file (magic {magic!r}, expected b'glTF')")
    if version != 2:
        raise InputError(f"{path}: GLB container version {version}; only version 2 is read")
    if length > len(data):
        raise InputError(f"{path}: truncated: the header says {length} bytes, the file has {len(data)}")
    if length < 20:
        raise InputError(f"{path}: the header's length {length} leaves no room for the JSON chunk")
    # Chunks: JSON first (required), then an optional BIN; others are skipped as the spec says.
    chunks: list[tuple[int, bytes]] = []
    pos = 12
    while pos < length:
        after_json = len(chunks) == 1 and chunks[0][0] == CHUNK_JSON
        if pos + 8 > length:
            if after_json:
                raise InputError(f"{path}: the JSON chunk's length ({len(chunks[0][1])} bytes) is wrong: "
                                 f"it leaves {length - pos} stray bytes at its end")
            raise InputError(f"{path}: truncated chunk header at byte {pos}")
        clen, ctype = struct.unpack_from("<II", data, pos)
        end = pos + 8 + clen
        if end > length or (after_json and ctype != CHUNK_BIN and clen % 4):
            # A chunk right after the JSON that is no BIN chunk is where a lying JSON length shows.
            if after_json or (len(chunks) >= 2 and chunks[1][0] != CHUNK_BIN):
                # What follows the JSON chunk is no chunk at all: its length field lied.
                raise InputError(f"{path}: the JSON chunk's length ({len(chunks[0][1])} bytes) is wrong: "
                                 f"no valid chunk follows it at byte {20 + len(chunks[0][1])}")
            what = "JSON" if ctype == CHUNK_JSON else "BIN" if ctype == CHUNK_BIN else f"0x{ctype:08x}"
            raise InputError(f"{path}: the {what} chunk at byte {pos} says it has {clen} bytes, "
                             f"which runs past the end of the file ({length} bytes)")
        chunks.append((ctype, data[pos + 8:end]))
        pos = end
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise InputError(f"{path}: the first chunk is not the JSON chunk")
    json_bytes = chunks[0][1]
    bins = [c for t, c in chunks[1:] if t == CHUNK_BIN]
    if len(bins) > 1:
        raise InputError(f"{path}: more than one BIN chunk")
    try:
        raw_json = json.loads(json_bytes.decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: the JSON chunk is not valid JSON (is its length right?): {exc}") from None
    if not isinstance(raw_json, dict):
        raise InputError(f"{path}: the JSON chunk is not a JSON object")
    asset = raw_json.get("asset")
    version_field = asset.get("version") if isinstance(asset, dict) else None
    if not str(version_field).startswith("2."):
        raise InputError(f"{path}: not glTF 2.0 (asset.version {version_field!r})")

    # pygltflib parses the JSON into its dataclasses (from our checked JSON + BIN chunks only).
    import pygltflib

    clean = _glb_bytes(json_bytes, bins[0] if bins else None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = pygltflib.GLTF2.load_from_bytes(clean)
    except Exception as exc:  # pygltflib raises many kinds of error on odd JSON
        raise InputError(f"{path}: malformed glTF JSON ({type(exc).__name__}: {exc})") from None
    if doc is None:
        raise InputError(f"{path}: malformed glTF (no JSON chunk)")

    buffers: list[bytes] = []
    for i, buf in enumerate(raw_json.get("buffers") or []):
        if not isinstance(buf, dict):
            raise InputError(f"{path}: buffer {i} is not a JSON object")
        blen = as_int(buf.get("byteLength"), f"buffer {i}'s byteLength", path)
        uri = buf.get("uri")
        if uri is None:
            if i != 0:
                raise InputError(f"{path}: buffer {i} has no uri; only buffer 0 can be the GLB's BIN chunk")
            if not bins:
                raise InputError(f"{path}: buffer 0 is missing: the file has no BIN chunk")
            if len(bins[0]) < blen:
                raise InputError(f"{path}: buffer 0 is missing data: byteLength {blen}, BIN chunk {len(bins[0])} bytes")
            buffers.append(bins[0][:blen])
        elif isinstance(uri, str) and uri.startswith("data:"):
            b = _data_uri(uri, path, f"buffer {i}")
            if len(b) < blen:
                raise InputError(f"{path}: buffer {i} is missing data: byteLength {blen}, data URI {len(b)} bytes")
            buffers.append(b[:blen])
        else:
            raise InputError(f"{path}: buffer {i} is missing: it is an external file ({uri!r}), "
                             "and only self-contained GLB / VRM files are read")
    return GltfFile(path=path, doc=doc, raw_json=raw_json, buffers=buffers)


def _glb_bytes(json_bytes: bytes, bin_bytes: bytes | None) -> bytes:
    """A minimal GLB holding exactly these two chunks (what pygltflib gets to parse)."""
    out = [struct.pack("<II", len(json_bytes), CHUNK_JSON), json_bytes]
    if bin_bytes is not None:
        out += [struct.pack("<II", len(bin_bytes), CHUNK_BIN), bin_bytes]
    body = b"".join(out)
    return struct.pack("<4sII", GLB_MAGIC, 2, 12 + len(body)) + body


def _data_uri(uri: str, path, what: str) -> bytes:
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        raise InputError(f"{path}: {what} has a data URI that is not base64")
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        raise InputError(f"{path}: {what} has a malformed base64 data URI") from None


def decode_image(data: bytes, what: str) -> np.ndarray:
    """PNG / JPEG bytes -> (H, W, 3|4) uint8 (alpha kept when the image has it)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS or w <= 0 or h <= 0:
                raise InputError(f"{what}: {w}x{h} pixels is larger than the {MAX_IMAGE_PIXELS} allowed")
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's note on palette transparency: handled by convert
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except InputError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise InputError(f"{what} cannot be decoded ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(arr)


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """glTF quaternion (x, y, z, w) -> (3, 3) rotation (normalised first; zero -> identity)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        return np.eye(3)
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
