"""The paper's multi-layer dataset renders of a character (the protocol; see ``docs/dataset.md``).

Per character, from **one framing** (``stdgen.render.frame_bounds`` of the A-posed character,
shared by every orthographic view so a pixel means the same size in each):

* ``eval``: eight orthographic views at elevation 0, azimuths 0, 45, ..., 315 (they contain the
  six generation views -90, -45, 0, 45, 90, 180);
* ``top_bottom``: orthographic, straight down and straight up;
* ``face``: five orthographic close-ups of the face (azimuths -40 ... 40, elevation 5);
* ``random``: perspective views at random azimuths / elevations (count configurable);

each rendered for the three layer sets (``full``, ``body``, ``body_clothes``) as unlit colour,
lit (cel-shaded) colour, antialiased mask, world normals, camera-space depth and semantic labels;
plus random-pose front renders paired with the A-pose front view (canonicalisation pairs).

The renderer is batched: :func:`render_jobs` draws any number of (character, cameras, layer sets)
jobs in one rasteriser call (range mode), so the disk writer (one character at a time) and the
on-the-fly GPU stream (:mod:`stdgen.data.stream`, many characters per batch) share one code path.
The three layer sets are nested prefixes of one face array (body faces first, then clothes,
then hair), so each image just draws a prefix of its character's faces.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from stdgen.structures.character import Character, Pose, skin_vertices
from stdgen.structures.mesh import vertex_normals
from stdgen.structures.semantics import BACKGROUND_LABEL, LAYER_SETS, PARTS, Part

#: Layer sets in the order images are stored (nested: each is a prefix of the next).
LAYER_ORDER: tuple[str, ...] = ("body", "body_clothes", "full")
#: Azimuths (degrees) of the face close-ups; their elevation.
FACE_AZIMUTHS: tuple[float, ...] = (-40.0, -20.0, 0.0, 20.0, 40.0)
FACE_ELEVATION = 5.0
#: Unlit colour of pieces that have neither a texture nor vertex colours.
DEFAULT_COLOR = (0.8, 0.8, 0.8)
#: The image maps the renderer produces (``docs/dataset.md`` has their encodings on disk).
RENDER_MAPS: tuple[str, ...] = ("alpha", "rgb", "lit", "normal", "depth", "sem")

# Distinct streams of randomness drawn from one character seed.
_RNG_VIEWS, _RNG_LIGHT, _RNG_POSES = 1, 2, 3


@dataclass
class RenderConfig:
    """What to render per character.

    ``resolution`` image side in pixels; ``random_views`` perspective views at random angles (the
    paper used 20); ``face_views`` / ``top_bottom`` whether to render those groups;
    ``posed_views`` random-pose front renders (canonicalisation pairs; 0 for none);
    ``margin`` the framing margin of :func:`~stdgen.render.frame_bounds`; ``random_light`` draws
    the key light's direction per character (else the fixed default light);
    ``antialias`` antialiases colour and mask edges; ``backend`` the rasteriser's visibility
    backend; ``device`` where to render (``auto``: CUDA if present).
    """

    resolution: int = 512
    random_views: int = 4
    face_views: bool = True
    top_bottom: bool = True
    posed_views: int = 2
    margin: float = 1.1
    random_light: bool = False
    antialias: bool = True
    backend: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 16 <= int(self.resolution) <= 4096:
            raise ValueError(f"resolution must be in [16, 4096], got {self.resolution}")
        if self.random_views < 0 or self.posed_views < 0:
            raise ValueError("random_views and posed_views must be >= 0")
        if not self.margin >= 1.0:
            raise ValueError(f"margin must be >= 1, got {self.margin}")

    def content(self) -> dict:
        """The fields that decide the pixels (not where or how fast they are computed)."""
        d = asdict(self)
        for k in ("backend", "device"):
            d.pop(k)
        return d


# -- scene arrays ------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One posed character as flat arrays, ready to upload (plain numpy, picklable).

    ``vertices`` (N, 3) float32 world positions; ``normals`` (N, 3) unit vertex normals;
    ``colors`` (N, 3) float32 unlit vertex colours (used where a face has no texture);
    ``faces`` (F, 3) int32 ordered by part: body faces, then clothes, then hair, so each layer set
    is a prefix; ``layer_faces`` faces in each layer-set prefix; ``face_labels`` (F,) uint8
    ``Part`` values; ``face_texture`` (F,) int32 index into ``textures`` or -1; ``corner_uvs``
    (F, 3, 2) float32 glTF UVs per face corner; ``textures`` list of (h, w, 3) uint8;
    ``topology`` (F, 3) int64 edge neighbours for antialiasing (-1 on open edges).
    """

    vertices: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    faces: np.ndarray
    layer_faces: dict[str, int]
    face_labels: np.ndarray
    face_texture: np.ndarray
    corner_uvs: np.ndarray
    textures: list[np.ndarray]
    topology: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_faces(self) -> int:
        return len(self.faces)


def edge_neighbours(faces: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """``(F, 3)`` int64: for edge k of face f (``faces[f, k] -> faces[f, (k + 1) % 3]``) the other
    face sharing it, or -1 (an open edge, or one shared by more than two faces) -- the topology
    :func:`stdgen.render.antialias` takes, computed as :func:`stdgen.render.antialias_topology`
    does (vertices at identical positions welded first), in numpy, which sorts much faster here.
    """
    t = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(t) == 0:
        return np.zeros((0, 3), np.int64)
    if vertices is not None:
        v = np.ascontiguousarray(np.asarray(vertices, np.float32) + np.float32(0))  # -0.0 -> 0.0
        _, weld = np.unique(v.view(np.dtype((np.void, 12))).ravel(), return_inverse=True)
        t = weld.reshape(-1)[t]
    b = t[:, [1, 2, 0]]
    n = int(t.max()) + 1
    key = (np.minimum(t, b) * n + np.maximum(t, b)).ravel()
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.concatenate([[True], sk[1:] != sk[:-1]])
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)[group]
    pair = np.bincount(group)[group] == 2
    partner = np.where(np.arange(len(sk)) == first, first + 1, first)
    nbr_sorted = np.where(pair, order[np.minimum(partner, len(sk) - 1)] // 3, -1)
    nbr = np.empty(len(sk), np.int64)
    nbr[order] = nbr_sorted
    return nbr.reshape(-1, 3)


def scene_from_character(character: Character, pose: Pose | None | str = "character", *,
                         topology: np.ndarray | None = None) -> Scene:
    """Flatten a character (in its own pose, or in ``pose``) into a :class:`Scene`.

    Every piece (the body, each garment, each hair piece) keeps its own texture or vertex
    colours, so nothing is resampled; pieces are posed with linear blend skinning. The
    antialiasing topology depends on the faces only (vertices welded in the rest pose): pass
    ``topology`` from another scene of the same character to skip recomputing it.
    """
    if isinstance(pose, str):
        pose = character.pose
    posed = pose is not None and character.skeleton is not None and not pose.is_identity()
    verts, normals, colors, faces, labels, ftex, cuvs, textures, topo = [], [], [], [], [], [], [], [], []
    counts = {p: 0 for p in PARTS}
    v_off = f_off = 0
    for part in PARTS:
        for mesh in character.rest_meshes(part):
            if mesh is None or mesh.is_empty:
                continue
            v = mesh.vertices
            if posed:
                if mesh.skin_joints is None:
                    raise ValueError(f"mesh {mesh.name!r} has no skin weights, so it cannot be posed")
                v = skin_vertices(v, mesh.skin_joints, mesh.skin_weights, character.skeleton, pose)
            f = mesh.faces
            n = mesh.normals if (mesh.normals is not None and not posed) else vertex_normals(v, f).astype(np.float32)
            verts.append(v)
            normals.append(n)
            faces.append(f + v_off)
            labels.append(np.full(len(f), int(part), np.uint8))
            if mesh.texture is not None and mesh.uvs is not None:
                uf = mesh.uv_faces if mesh.uv_faces is not None else f
                cuvs.append(mesh.uvs[uf])
                ftex.append(np.full(len(f), len(textures), np.int32))
                textures.append(np.ascontiguousarray(mesh.texture[..., :3]))
                colors.append(np.full((len(v), 3), DEFAULT_COLOR, np.float32))
            else:
                cuvs.append(np.zeros((len(f), 3, 2), np.float32))
                ftex.append(np.full(len(f), -1, np.int32))
                colors.append(mesh.colors if mesh.colors is not None
                              else np.full((len(v), 3), DEFAULT_COLOR, np.float32))
            if topology is None:
                t = edge_neighbours(f, mesh.vertices)
                topo.append(np.where(t >= 0, t + f_off, -1))
            counts[part] += len(f)
            v_off += len(v)
            f_off += len(f)
    if not faces:
        raise ValueError("character has no geometry")
    if topology is not None and len(topology) != f_off:
        raise ValueError(f"topology has {len(topology)} faces, the character {f_off}")
    layer_faces = {}
    for name in LAYER_ORDER:
        parts = LAYER_SETS[name]
        # The stored order relies on each layer set being the first parts in layer order.
        if tuple(parts) != PARTS[: len(parts)]:
            raise ValueError(f"layer set {name!r} is not a prefix of the part order")
        layer_faces[name] = int(sum(counts[p] for p in parts))
    return Scene(
        vertices=np.concatenate(verts).astype(np.float32),
        normals=np.concatenate(normals).astype(np.float32),
        colors=np.concatenate(colors).astype(np.float32),
        faces=np.concatenate(faces).astype(np.int32),
        layer_faces=layer_faces,
        face_labels=np.concatenate(labels),
        face_texture=np.concatenate(ftex),
        corner_uvs=np.concatenate(cuvs).astype(np.float32),
        textures=textures,
        topology=np.concatenate(topo) if topology is None else topology,
        meta={"faces": {p.key: counts[p] for p in PARTS}, "vertices": int(v_off)},
    )


# -- framing and views -------------------------------------------------------------------------------
@dataclass
class Framing:
    """One framing per character: ``center`` (3,) and ``half_size`` of the orthographic views
    (:func:`~stdgen.render.frame_bounds` of the A-posed character's bounds), and the face
    close-ups' ``head_center`` (3,) and ``head_half_size``, all in metres."""

    center: tuple[float, float, float]
    half_size: float
    head_center: tuple[float, float, float]
    head_half_size: float
    margin: float

    def to_dict(self) -> dict:
        return asdict(self)


def frame_character(character: Character, margin: float = 1.1, scene: Scene | None = None) -> Framing:
    """The framing of a (posed) character; the head box comes from the ``head`` joint and the top of
    the body (or the top sixth of the body's bounds when there is no skeleton). ``scene``, the
    character's :class:`Scene` in the same pose, saves merging its parts to find the bounds."""
    from stdgen.render.camera import frame_bounds

    if scene is not None:
        bounds = np.stack([scene.vertices.min(0), scene.vertices.max(0)])
        body = scene.vertices[np.unique(scene.faces[: scene.layer_faces["body"]])]
    else:
        bounds = character.bounds()
        body = character.part(Part.BODY).vertices
    center, half = frame_bounds(bounds, margin)
    top = float(body[:, 1].max())
    if character.skeleton is not None and "head" in character.skeleton.names:
        hj = character.posed_joints()[character.skeleton.index("head")]
        base = float(hj[1])
        hx, hz = float(hj[0]), float(hj[2])
    else:
        bb = np.stack([body.min(0), body.max(0)])
        base = top - float(bb[1, 1] - bb[0, 1]) / 6
        hx, hz = float((bb[0, 0] + bb[1, 0]) / 2), float((bb[0, 2] + bb[1, 2]) / 2)
    head_h = float(max(top - base, 1e-3))
    # The face sits in the lower part of the head box; frame the whole head plus a little hair.
    head_center = (hx, float(base + 0.5 * head_h), hz)
    return Framing(tuple(float(c) for c in center), float(half), head_center, float(0.8 * head_h), float(margin))


def _view_dicts(cams, group: str, target) -> list[dict]:
    """View descriptions (as stored in ``meta.json``) of a batch of cameras looking at ``target``."""
    eyes = cams.centers.cpu().numpy().astype(np.float64)
    out = []
    for i in range(len(cams)):
        d = eyes[i] - np.asarray(target, np.float64)
        r = max(np.linalg.norm(d), 1e-12)
        out.append({
            "name": cams.names[i], "group": group, "orthographic": bool(cams.orthographic[i]),
            "azimuth": round(math.degrees(math.atan2(d[0], d[2])), 4),
            "elevation": round(math.degrees(math.asin(np.clip(d[1] / r, -1, 1))), 4),
            "world_to_cam": cams.world_to_cam[i].cpu().tolist(), "proj": cams.proj[i].cpu().tolist(),
        })
    return out


def character_views(framing: Framing, config: RenderConfig, seed: int):
    """The cameras of a character's render set and their descriptions, in storage order
    (``eval``, ``top_bottom``, ``face``, ``random``). Returns ``(Cameras (V), list of V dicts)``."""
    from stdgen.render.camera import (
        Cameras,
        evaluation_views,
        face_closeup_views,
        random_views,
        top_bottom_views,
    )

    c, h = framing.center, framing.half_size
    groups = [("eval", evaluation_views(center=c, half_size=h), c)]
    if config.top_bottom:
        groups.append(("top_bottom", top_bottom_views(center=c, half_size=h), c))
    if config.face_views:
        groups.append(("face", face_closeup_views(framing.head_center, framing.head_half_size,
                                                  azimuths=FACE_AZIMUTHS, elevation=FACE_ELEVATION),
                       framing.head_center))
    if config.random_views:
        gen = torch.Generator().manual_seed(_derive_seed(seed, _RNG_VIEWS))
        groups.append(("random", random_views(config.random_views, gen, center=c, half_size=h), c))
    cams = Cameras.cat([g[1] for g in groups])
    views = [v for name, cam, target in groups for v in _view_dicts(cam, name, target)]
    return cams, views


def front_camera(framing: Framing):
    """The orthographic front view (azimuth 0) of a framing, named ``front``."""
    from stdgen.render.camera import orthographic_cameras

    return orthographic_cameras([0.0], 0.0, center=framing.center, half_size=framing.half_size, names=["front"])


def _derive_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for one stream of randomness of a character (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, stream]).generate_state(2, np.uint64)[0]
               & np.uint64(0x7FFFFFFFFFFFFFFF))


def light_direction(seed: int, random: bool) -> tuple[float, float, float]:
    """The key light (world direction towards it): the renderer's default, or a random direction
    in front of and above the character (elevation 15-70 degrees, azimuth within 70 of the front)."""
    from stdgen.render.shade import DEFAULT_LIGHT

    if not random:
        d = np.asarray(DEFAULT_LIGHT, np.float64)
    else:
        rng = np.random.default_rng(_derive_seed(seed, _RNG_LIGHT))
        az, el = math.radians(rng.uniform(-70, 70)), math.radians(rng.uniform(15, 70))
        d = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    d = d / np.linalg.norm(d)
    return tuple(round(float(x), 6) for x in d)


# -- batched rendering -------------------------------------------------------------------------------
@dataclass
class RenderJob:
    """One character drawn from V cameras for some layer sets (images ordered layer-major).

    ``light_dir`` the key light (default: the renderer's); ``color_matrices`` optional (3, 3, 3)
    linear maps applied to the unlit colour of each part (``Part`` order), for re-colouring.
    """

    scene: Scene
    cameras: object  # stdgen.render.Cameras (V)
    layers: tuple[str, ...] = LAYER_ORDER
    light_dir: tuple[float, float, float] | None = None
    color_matrices: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        return len(self.layers) * len(self.cameras)


def _texture_bank(textures: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """All textures flattened into one (T, 3) uint8 tensor, and (K, 3) int64 rows
    ``(offset, width, height)``."""
    if not textures:
        return torch.zeros(1, 3, dtype=torch.uint8, device=device), torch.zeros(1, 3, dtype=torch.long, device=device)
    sizes = np.array([[t.shape[1], t.shape[0]] for t in textures], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]])
    info = np.concatenate([offsets[:, None], sizes], 1)
    # Upload texture by texture and join on the device: a batch holds ~200 MB of textures, and one
    # host-side concatenation of them cost more than the whole GPU render.
    flat = torch.cat([_as_tensor(t).to(device).reshape(-1, 3) for t in textures])
    return flat, torch.from_numpy(info).to(device)


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory where torch allows it (read-only arrays are copied)."""
    return torch.from_numpy(np.ascontiguousarray(a) if a.flags.writeable else np.array(a))


def sample_bank(bank: torch.Tensor, info: torch.Tensor, tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookups with clamped edges, each sample from its own texture.

    ``bank`` (T, 3) uint8 texels, ``info`` (K, 3) ``(offset, width, height)``, ``tex`` (P,) texture
    index per sample, ``uv`` (P, 2) glTF UVs (texel centres at ``(i + 0.5) / size``). Returns
    (P, 3) float32 in [0, 1] (the same values as :func:`stdgen.render.texture` gives one texture).
    """
    off, w, h = info[tex, 0], info[tex, 1], info[tex, 2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    xf, yf = torch.floor(x), torch.floor(y)
    fx, fy = (x - xf)[:, None], (y - yf)[:, None]
    x0, y0 = xf.long(), yf.long()
    # Clamp each neighbour index once (clamp-to-edge), then gather the four texels.
    x1 = torch.minimum(torch.clamp(x0 + 1, min=0), w - 1)
    y1 = torch.minimum(torch.clamp(y0 + 1, min=0), h - 1)
    x0 = torch.minimum(torch.clamp(x0, min=0), w - 1)
    y0 = torch.minimum(torch.clamp(y0, min=0), h - 1)
    r0, r1 = off + y0 * w, off + y1 * w
    top = bank[r0 + x0].float() * (1 - fx) + bank[r0 + x1].float() * fx
    bottom = bank[r1 + x0].float() * (1 - fx) + bank[r1 + x1].float() * fx
    return (top * (1 - fy) + bottom * fy) * (1.0 / 255.0)


def render_jobs(jobs: list[RenderJob], resolution: int, *, device: str | torch.device = "cpu",
                backend: str = "auto", antialiasing: bool = True, maps: tuple[str, ...] = RENDER_MAPS) -> dict:
    """Render every job's images in one batched rasteriser call.

    Returns a dict of tensors over all I images (job-major, then layer, then view), on ``device``:
    ``alpha`` (I, H, W, 1) antialiased coverage; ``rgb`` (I, H, W, 3) unlit colour and ``lit``
    (I, H, W, 3) cel-shaded colour, both premultiplied by ``alpha``; ``normal`` (I, H, W, 3) unit
    world normals (0 off the coverage); ``depth`` (I, H, W, 1) camera-space metres (0 off);
    ``sem`` (I, H, W) uint8 ``Part`` values (``BACKGROUND_LABEL`` off); plus ``covered``
    (I, H, W) bool, the pixel centres a triangle covers. Only the requested ``maps`` are filled.
    """
    from stdgen.render import shade
    from stdgen.render.antialias import antialias
    from stdgen.render.rasterize import rasterize

    dev = torch.device(device)
    res = int(resolution)
    pos_parts, tri_parts, depth_parts, base_face_parts, ranges, image_job = [], [], [], [], [], []
    base_v = base_f = rep_v = rep_f = 0
    base = {k: [] for k in ("normals", "colors", "faces", "labels", "ftex", "cuvs")}
    textures: list[np.ndarray] = []
    lights = []
    for j, job in enumerate(jobs):
        s = job.scene
        n, f = len(s.vertices), s.num_faces
        verts = torch.from_numpy(s.vertices).to(dev)
        faces = torch.from_numpy(s.faces).to(dev).long()
        cams = job.cameras.to(dev)
        views = len(cams)
        clip = cams.clip(verts)  # (V, N, 4)
        zcam = -cams.to_camera(verts)[..., 2]  # (V, N)
        pos_parts.append(clip.reshape(-1, 4))
        depth_parts.append(zcam.reshape(-1))
        vo = rep_v + torch.arange(views, device=dev) * n  # vertex offset of each view's copy
        tri_parts.append((faces[None] + vo[:, None, None]).reshape(-1, 3))
        base_face_parts.append((torch.arange(f, device=dev) + base_f).repeat(views))
        for layer in job.layers:
            count = s.layer_faces[layer]
            for v in range(views):
                ranges.append((rep_f + v * f, count))
                image_job.append(j)
        base["normals"].append(s.normals)
        base["colors"].append(s.colors)
        base["faces"].append(s.faces.astype(np.int64) + base_v)
        base["labels"].append(s.face_labels)
        base["ftex"].append(np.where(s.face_texture >= 0, s.face_texture + len(textures), -1))
        base["cuvs"].append(s.corner_uvs)
        textures.extend(s.textures)
        lights.append(job.light_dir if job.light_dir is not None else shade.DEFAULT_LIGHT)
        base_v += n
        base_f += f
        rep_v += views * n
        rep_f += views * f
    pos = torch.cat(pos_parts)
    tri = torch.cat(tri_parts).to(torch.int32)
    ranges_t = torch.tensor(ranges, dtype=torch.int64, device=dev)
    images = len(ranges)
    rast = rasterize(pos, tri, (res, res), ranges=ranges_t, backend=backend)

    b_normals = torch.from_numpy(np.concatenate(base["normals"])).to(dev)
    b_colors = torch.from_numpy(np.concatenate(base["colors"])).to(dev)
    b_faces = torch.from_numpy(np.concatenate(base["faces"])).to(dev)
    b_labels = torch.from_numpy(np.concatenate(base["labels"])).to(dev)
    b_ftex = torch.from_numpy(np.concatenate(base["ftex"]).astype(np.int64)).to(dev)
    b_cuvs = torch.from_numpy(np.concatenate(base["cuvs"])).to(dev)
    base_face = torch.cat(base_face_parts)
    rep_depth = torch.cat(depth_parts)

    # Work on covered pixels only: gather per-pixel attributes with the rasteriser's barycentrics.
    hw = res * res
    flat = rast.reshape(-1, 4)
    pix = torch.nonzero(flat[:, 3] > 0).squeeze(1)
    gf = flat[pix, 3].long() - 1  # face in the replicated (rasterised) array
    bf = base_face[gf]  # the same face in the character's own arrays
    bary = torch.stack([flat[pix, 0], flat[pix, 1], 1 - flat[pix, 0] - flat[pix, 1]], 1)  # (P, 3)
    out: dict[str, torch.Tensor] = {}
    covered = torch.zeros(images * hw, dtype=torch.bool, device=dev)
    covered[pix] = True
    out["covered"] = covered.view(images, res, res)
    want = set(maps)
    need_color = bool(want & {"alpha", "rgb", "lit"})
    vidx = b_faces[bf]  # (P, 3) base vertex ids
    normal = None
    if "normal" in want or "lit" in want:
        normal = torch.nn.functional.normalize((bary[..., None] * b_normals[vidx]).sum(1), dim=-1, eps=1e-20)
    if "normal" in want:
        out["normal"] = _scatter(normal, pix, images, res, 3)
    if "depth" in want:
        d = (bary * rep_depth[tri[gf].long()]).sum(1, keepdim=True)
        out["depth"] = _scatter(d, pix, images, res, 1)
    if "sem" in want:
        sem = torch.full((images * hw,), BACKGROUND_LABEL, dtype=torch.uint8, device=dev)
        sem[pix] = b_labels[bf]
        out["sem"] = sem.view(images, res, res)
    if need_color:
        albedo = (bary[..., None] * b_colors[vidx]).sum(1)
        ftex = b_ftex[bf]
        textured = torch.nonzero(ftex >= 0).squeeze(1)
        if textured.numel():
            bank, info = _texture_bank(textures, dev)
            uv = (bary[textured, :, None] * b_cuvs[bf[textured]]).sum(1)
            albedo[textured] = sample_bank(bank, info, ftex[textured], uv)
        if any(job.color_matrices is not None for job in jobs):
            job_of_pixel = torch.tensor(image_job, device=dev)[pix // hw]
            mats = np.stack([np.eye(3, dtype=np.float32)[None].repeat(3, 0) if job.color_matrices is None
                             else np.asarray(job.color_matrices, np.float32) for job in jobs])  # (J, 3, 3, 3)
            m = torch.from_numpy(mats).to(dev)[job_of_pixel, b_labels[bf].long()]  # (P, 3, 3)
            albedo = torch.einsum("pab,pb->pa", m, albedo).clamp(0, 1)
        channels = [albedo]
        if "lit" in want:
            # Pixels are sorted by image and images by job, so each job's pixels are one slice.
            first_image = np.cumsum([0] + [job.num_images for job in jobs])
            bounds = torch.searchsorted(pix, torch.tensor(first_image * hw, device=dev)).tolist()
            lit = torch.empty_like(albedo)
            for j, light in enumerate(lights):
                a, b = bounds[j], bounds[j + 1]
                if b > a:
                    lit[a:b] = shade.shade_toon(albedo[a:b], normal[a:b], light)
            channels.append(lit)
        channels.append(torch.ones_like(albedo[:, :1]))
        stacked = _scatter(torch.cat(channels, 1), pix, images, res, sum(c.shape[1] for c in channels))
        if antialiasing:
            # Each view's copy of a character's faces has its neighbours offset like its faces.
            topo_parts = []
            f_off = 0
            for job in jobs:
                t = torch.from_numpy(job.scene.topology).to(dev)
                f, views = job.scene.num_faces, len(job.cameras)
                off = f_off + torch.arange(views, device=dev)[:, None, None] * f
                topo_parts.append(torch.where(t >= 0, t[None] + off, t[None]).reshape(-1, 3))
                f_off += views * f
            topology = torch.cat(topo_parts)
            stacked = antialias(stacked, rast, pos, tri, topology, ranges=ranges_t)
        out["alpha"] = stacked[..., -1:].clamp(0, 1)
        out["rgb"] = stacked[..., :3].clamp(min=0)
        out["rgb"] = torch.minimum(out["rgb"], out["alpha"])
        if "lit" in want:
            out["lit"] = torch.minimum(stacked[..., 3:6].clamp(min=0), out["alpha"])
    return out


def _scatter(values: torch.Tensor, pix: torch.Tensor, images: int, res: int, channels: int) -> torch.Tensor:
    out = torch.zeros(images * res * res, channels, dtype=values.dtype, device=values.device)
    out[pix] = values
    return out.view(images, res, res, channels)


# -- one character -----------------------------------------------------------------------------------
def posed_front_renders(character: Character, poses: list[Pose], config: RenderConfig, light_dir, device,
                        topology: np.ndarray | None = None):
    """Full-layer orthographic front renders of the character in each pose, each framed by its own
    bounds (a posed character's extent differs from the A-pose's). Returns ((K, H, W, 4) straight
    RGBA uint8 unlit colour, list of K descriptions)."""
    if not poses:
        return None, []
    jobs, descs = [], []
    for k, pose in enumerate(poses):
        posed = character.with_pose(pose)
        scene = scene_from_character(posed, topology=topology)
        topology = scene.topology
        fr = frame_character(posed, config.margin, scene)
        cam = front_camera(fr)
        cam.names = [f"posed_{k:02d}"]
        jobs.append(RenderJob(scene, cam, ("full",), light_dir))
        d = _view_dicts(cam, "posed", fr.center)[0]
        d["pose"] = {"rotations": np.round(pose.rotations, 6).tolist(),
                     "translation": np.round(pose.translation, 6).tolist()}
        descs.append(d)
    out = render_jobs(jobs, config.resolution, device=device, backend=config.backend,
                      antialiasing=config.antialias, maps=("alpha", "rgb"))
    return to_rgba8(out["rgb"], out["alpha"]), descs


def to_rgba8(rgb: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """Premultiplied colour (..., 3) and alpha (..., 1) -> straight-alpha RGBA uint8 (..., 4)
    (colour 0 where the alpha byte is 0)."""
    shape = rgb.shape[:-1]
    a = alpha.reshape(-1)
    out = torch.zeros(a.shape[0], 4, dtype=torch.uint8, device=rgb.device)
    # Only pixels with some coverage: most of an image is background.
    idx = torch.nonzero(a >= 0.5 / 255).squeeze(1)
    if idx.numel():
        av = a[idx].clamp(max=1)[:, None]
        straight = (rgb.reshape(-1, 3)[idx] / av).clamp(0, 1)
        out[idx] = torch.cat([straight, av], 1).mul_(255).round_().to(torch.uint8)
    return out.reshape(*shape, 4).cpu().numpy()


def render_character(character: Character, config: RenderConfig | None = None, *, seed: int | None = None,
                     poses: list[Pose] | None = None):
    """The full per-character render set of an A-posed character as a
    :class:`~stdgen.data.dataset_format.CharacterRenders` (numpy; write it with ``write_renders``).

    ``seed`` (default ``character.meta["seed"]``, else 0) seeds the random views, the random light
    and the random poses. ``poses``: the poses of the canonicalisation pairs; by default
    ``config.posed_views`` poses from :func:`stdgen.data.posing.random_pose`.
    """
    from stdgen.data.dataset_format import CharacterRenders, LayerRenders
    from stdgen.utils.device import resolve_device

    config = config or RenderConfig()
    seed = int(character.meta.get("seed", 0) if seed is None else seed)
    dev = resolve_device(config.device)
    scene = scene_from_character(character)
    framing = frame_character(character, config.margin, scene)
    cams, views = character_views(framing, config, seed)
    light = light_direction(seed, config.random_light)
    with torch.inference_mode():
        out = render_jobs([RenderJob(scene, cams, LAYER_ORDER, light)], config.resolution, device=dev,
                          backend=config.backend, antialiasing=config.antialias)
        nv = len(cams)
        layers = {}
        for li, name in enumerate(LAYER_ORDER):
            sl = slice(li * nv, (li + 1) * nv)
            rgba = to_rgba8(out["rgb"][sl], out["alpha"][sl])
            lit = to_rgba8(out["lit"][sl], out["alpha"][sl])[..., :3]
            layers[name] = LayerRenders(
                rgb=rgba, lit=lit, normal=out["normal"][sl].cpu().numpy(),
                depth=out["depth"][sl, ..., 0].cpu().numpy(), sem=out["sem"][sl].cpu().numpy())
        if poses is None:
            poses = default_poses(character, config.posed_views, seed)
        posed_rgb, posed = posed_front_renders(character, poses, config, light, dev, scene.topology)
    meta = {
        "seed": seed,
        "resolution": config.resolution,
        "framing": framing.to_dict(),
        "light_dir": list(light),
        "render_config": config.content(),
        "a_pose_front": next(i for i, v in enumerate(views) if v["group"] == "eval" and round(v["azimuth"]) == 0),
        "posed": posed,
        "geometry": scene.meta,
        "character": _jsonable(character.meta),
    }
    return CharacterRenders(views=views, layers=layers, meta=meta, posed_rgb=posed_rgb)


def _jsonable(d: dict) -> dict:
    """The entries of ``d`` that JSON can hold (provenance from the generator)."""
    import json

    out = {}
    for k, v in d.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = v
    return out


def default_poses(character: Character, count: int, seed: int) -> list[Pose]:
    """``count`` random natural poses (:func:`stdgen.data.posing.random_pose`) seeded by ``seed``."""
    if count <= 0 or character.skeleton is None:
        return []
    from stdgen.data.posing import random_pose

    rng = np.random.default_rng(_derive_seed(seed, _RNG_POSES))
    return [random_pose(character.skeleton, rng) for _ in range(count)]


# -- a dataset directory -----------------------------------------------------------------------------
def procedural_character(seed: int) -> Character:
    """The procedural character of ``seed`` in the canonical A-pose (the dataset's source)."""
    from stdgen.data.posing import a_pose
    from stdgen.data.procedural import make_character

    character = make_character(seed)
    if character.skeleton is not None and (character.pose is None or character.pose.is_identity()):
        character = character.with_pose(a_pose(character.skeleton))
    character.meta.setdefault("seed", int(seed))
    return character


def write_character_folder(folder, renders, character: Character) -> dict:
    """Write a rendered character's folder atomically (all of it appears at once, or nothing):
    sprite sheets, ``preview.png``, ``character.glb``, ``meta.json``. Returns its manifest entry."""
    from pathlib import Path

    from stdgen.data.dataset_format import manifest_entry, write_renders
    from stdgen.export.glb import write_glb
    from stdgen.utils.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        # Skinned (rest meshes + skeleton + the A-pose as joint rotations) when the character has a
        # skeleton, so the folder's GLB can be exported to VRM; readers still see the posed parts.
        skinned = character.skeleton is not None and all(
            m.skin_joints is not None for p in Part for m in character.rest_meshes(p))
        write_glb(character, tmp / "character.glb", skinned=skinned)
        write_renders(tmp, renders)
    return manifest_entry(folder, renders.meta)


def render_to_folder(character: Character, folder, config: RenderConfig, *, seed: int, source: str,
                     poses: list[Pose] | None = None) -> dict:
    """Render a character and write its folder (see :func:`write_character_folder`)."""
    from pathlib import Path

    from stdgen.data.splits import split_of

    renders = render_character(character, config, seed=seed, poses=poses)
    renders.meta.update(id=Path(folder).name, split=split_of(seed), source=source)
    return write_character_folder(folder, renders, character)


def folder_status(folder, config: RenderConfig) -> str:
    """``"missing"``, ``"done"`` (a complete folder rendered with the same settings) or
    ``"different"`` (complete, but rendered with other settings)."""
    from pathlib import Path

    from stdgen.data.dataset_format import missing_files, read_meta
    from stdgen.errors import InputError

    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        return "missing"
    try:
        meta = read_meta(folder)
    except InputError:
        return "missing"  # unreadable: render it again (atomically replacing it)
    if missing_files(folder, meta):
        return "missing"  # incomplete (a file deleted since): render it again
    return "done" if meta.get("render_config") == config.content() else "different"


def _init_worker() -> None:
    # One thread per worker process: the parallelism is across characters.
    torch.set_num_threads(1)


def _worker_render(make, seed: int, folder, config: RenderConfig, source: str) -> dict:
    return render_to_folder(make(seed), folder, config, seed=seed, source=source)


def _worker_make(make, seed: int, config: RenderConfig):
    character = make(seed)
    return character, default_poses(character, config.posed_views, seed)


def _bounded(executor, fn, items, workers: int):
    """Yield ``fn(*item)`` results in completion order, keeping at most ``2 * workers`` in flight."""
    from concurrent.futures import FIRST_COMPLETED, wait

    # Work left in flight when the consumer stops is not cancelled here: _consume stops the workers
    # (cancelled futures of a pool whose workers are killed make CPython 3.11's pool thread raise).
    items = iter(items)
    pending = set()
    while True:
        while len(pending) < 2 * workers:
            item = next(items, None)
            if item is None:
                break
            pending.add(executor.submit(fn, *item))
        if not pending:
            return
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            yield f.result()


def render_dataset_dir(out_dir, seeds: list[int], config: RenderConfig, *, make=None,
                       source: str = "procedural", workers: int = 0, progress: bool = True,
                       manifest_every_s: float = 10.0, overwrite: bool = False) -> dict:
    """Render characters ``make(seed)`` for ``seeds`` into ``out_dir``, one folder each.

    Resumable: folders already rendered with the same settings are skipped, ``.tmp-*`` leftovers
    of an interrupted run are removed first, and every folder is written atomically, so a killed
    run leaves complete folders only. A folder rendered with other settings is an error (use a
    new directory). ``DIR/manifest.json`` lists every complete character folder (id, seed, split,
    source); it is rewritten every ``manifest_every_s`` seconds and at the end, also when
    interrupted. ``workers`` > 0 runs that many processes: on the CPU each renders whole
    characters; with a CUDA device they make the characters and this process renders them.
    ``make(seed) -> Character`` (A-posed) defaults to :func:`procedural_character`.
    The output is claimed first (:func:`stdgen.io.outputs.claim_output_dir`): a new or empty folder,
    or a dataset this command made; a character folder of the same name that is not one (no
    meta.json) is refused. ``overwrite`` lifts both refusals.
    Returns counts: ``rendered``, ``skipped``, ``removed_temporaries`` and the ``manifest`` path.
    """
    import os
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm import tqdm

    from stdgen.data.dataset_format import (
        character_folder_name,
        list_character_folders,
        manifest_entry,
        read_manifest,
        write_manifest,
    )
    from stdgen.errors import StdgenError
    from stdgen.io.outputs import claim_output_dir, claim_subfolder, mark_output_dir
    from stdgen.utils.device import resolve_device
    from stdgen.utils.io import remove_stale_temporaries

    make = make or procedural_character
    out = claim_output_dir(out_dir, "data render", overwrite=overwrite, recognise=is_dataset_dir)
    if out.exists() and not out.is_dir():
        os.unlink(out)  # --overwrite of a file where the dataset goes
    out.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out, "data render")
    removed = remove_stale_temporaries(out)
    known = {e["id"]: e for e in read_manifest(out)["characters"]}
    entries = {}
    for folder in list_character_folders(out):
        entries[folder.name] = known.get(folder.name) or manifest_entry(folder)

    todo = []
    for seed in seeds:
        folder = claim_subfolder(out / character_folder_name(seed), overwrite=overwrite)
        status = folder_status(folder, config)
        if status == "different":
            raise StdgenError(f"{folder} was rendered with other settings than these; "
                              "render into a new output directory (or delete that one)")
        if status == "missing":
            todo.append(seed)
    skipped = len(seeds) - len(todo)
    dev = resolve_device(config.device)
    extra = {"render_config": config.content()}
    last = time.monotonic()
    rendered = 0
    bar = tqdm(total=len(seeds), initial=skipped, unit="char", desc="render", disable=not progress)
    try:
        if workers <= 0:
            results = (render_to_folder(make(s), out / character_folder_name(s), config, seed=s, source=source)
                       for s in todo)
            results = _consume(results)
        else:
            from stdgen.utils.process import pool_worker_init, start_pool_workers

            # Workers ignore Ctrl-C (the parent stops them) and end with the parent, also on kill -9.
            executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=pool_worker_init,
                                           initargs=(os.getpid(), f"{__name__}:_init_worker"))
            start_pool_workers(executor, workers)
            if dev.type == "cuda":
                def gpu_results():
                    made = _bounded(executor, _worker_make, [(make, s, config) for s in todo], workers)
                    for character, poses in made:
                        seed = int(character.meta["seed"])
                        yield render_to_folder(character, out / character_folder_name(seed), config, seed=seed,
                                               source=source, poses=poses)
                results = gpu_results()
            else:
                results = _bounded(executor, _worker_render,
                                   [(make, s, out / character_folder_name(s), config, source) for s in todo], workers)
            results = _consume(results, executor)
        for entry in results:
            entries[entry["id"]] = entry
            rendered += 1
            bar.update(1)
            if time.monotonic() - last > manifest_every_s:
                write_manifest(out, list(entries.values()), **extra)
                last = time.monotonic()
    finally:
        bar.close()
        # Only folders that are really there (complete) go into the manifest.
        present = {p.name for p in list_character_folders(out)}
        path = write_manifest(out, [e for k, e in entries.items() if k in present], **extra)
    return {"rendered": rendered, "skipped": skipped, "removed_temporaries": removed, "manifest": path}


def is_dataset_dir(folder) -> bool:
    """Whether ``folder`` is a dataset directory (it has a readable ``manifest.json``)."""
    from stdgen.data.dataset_format import read_manifest
    from stdgen.errors import InputError

    try:
        return (folder / "manifest.json").is_file() and bool(read_manifest(folder))
    except InputError:
        return False


def _consume(results, executor=None):
    """Pass results through, shutting the worker pool down (cancelling queued work) at the end.
    Interrupted (Ctrl-C or an error), the workers are stopped at once rather than left to finish
    their characters: their half-written folders are ``.tmp-*`` ones, removed by the next run."""
    finished = False
    try:
        yield from results
        finished = True
    finally:
        if executor is not None:
            if not finished:
                _stop_workers(executor)
            executor.shutdown(wait=True, cancel_futures=finished)


def _stop_workers(executor) -> None:
    procs = list((getattr(executor, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)
