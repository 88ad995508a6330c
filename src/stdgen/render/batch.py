"""The batched renderer of layered characters: many (character, cameras, layer sets) in one call.

:func:`scene_from_character` flattens a posed :class:`~stdgen.structures.character.Character` into a
:class:`Scene` (flat arrays; faces ordered body, clothes, hair so each layer set is a prefix);
:func:`render_jobs` draws any number of :class:`RenderJob` in one rasteriser call (range mode) and
returns unlit and lit colour, antialiased coverage, world normals, depth and semantic labels as
tensors; :func:`to_rgba8` quantises colour as the dataset stores it. The dataset writer
(:mod:`stdgen.data.render_dataset`), the on-the-fly stream and the evaluator all render through it,
so ground truth and predictions are drawn the same way. Textures are sampled with
:func:`stdgen.render.texture.sample_bank`, edges antialiased over
:func:`stdgen.render.antialias.antialias_topology_numpy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from stdgen.render.antialias import antialias_topology_numpy
from stdgen.render.texture import sample_bank, texture_bank
from stdgen.structures.character import Character, Pose, skin_vertices
from stdgen.structures.mesh import vertex_normals
from stdgen.structures.semantics import BACKGROUND_LABEL, LAYER_SETS, PARTS

#: Layer sets in the order images are stored (nested: each is a prefix of the next).
LAYER_ORDER: tuple[str, ...] = ("body", "body_clothes", "full")
#: Unlit colour of pieces that have neither a texture nor vertex colours.
DEFAULT_COLOR = (0.8, 0.8, 0.8)
#: The image maps the renderer produces (``docs/dataset.md`` has their encodings on disk).
RENDER_MAPS: tuple[str, ...] = ("alpha", "rgb", "lit", "normal", "depth", "sem")


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
                t = antialias_topology_numpy(f, mesh.vertices)
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
            bank, info = texture_bank(textures, dev)
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
