"""On-the-fly multi-layer renders for training: characters made on CPU workers, rendered in batches
on the GPU (or the CPU), so training never waits on disk.

    stream = RenderStream(StreamConfig(batch_size=8, resolution=256, workers=14, device="cuda"))
    for batch in stream:              # or DataLoader(stream, batch_size=None)
        batch["rgb"]                  # (B, L, V, 3, H, W) unlit colour over the background
        batch["sem"]                  # (B, L, V, H, W) uint8 Part values, 255 background

Two levels: :class:`CharacterSource` is an ``IterableDataset`` whose DataLoader workers make
characters (procedural generation, posing, flattening into a :class:`~stdgen.render.batch.Scene`);
:class:`RenderStream` (an ``IterableDataset`` too, iterated in the training process) gathers
``batch_size`` of them and renders all their views and layer sets in one batched rasteriser call
on ``device`` (:func:`~stdgen.render.batch.render_jobs`, the code the disk writer uses).

Fresh characters by default (every sample a new seed of the split). ``pool_size > 0`` instead
keeps a pool of generated characters per worker and draws variants of them: the arm-angle
augmented A-pose (:func:`stdgen.data.posing.augmented_a_pose`) and new clothes / hair colours;
throughput figures for that mode must state the pool size (variants of one character are not
distinct characters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from stdgen.data.render_dataset import Framing, _derive_seed, frame_character, light_direction
from stdgen.render.batch import LAYER_ORDER, RenderJob, Scene, render_jobs, scene_from_character
from stdgen.structures.semantics import BACKGROUND_LABEL, Part

#: Maps a stream batch can hold (``alpha`` is always there).
STREAM_MAPS: tuple[str, ...] = ("rgb", "lit", "normal", "depth", "sem")
_RNG_POOL, _RNG_BATCH = 11, 12


@dataclass
class StreamConfig:
    """What the stream yields and how it is made.

    ``batch_size`` characters per batch; ``resolution`` image side; ``views``: ``"eval"`` (the
    eight evaluation views, which hold the six generation views) or ``"gen"`` (the six generation
    views); ``random_views`` extra perspective views per character; ``layers`` layer sets;
    ``maps`` the maps to return (fewer is faster); ``split``/``start``/``count``: characters are
    the split's seeds from index ``start`` on, ``count`` per pass (``None``: endless);
    ``workers`` DataLoader processes making characters (0: in this process); ``pool_size`` > 0
    re-poses and re-colours a pool of that many characters per worker instead of making new ones,
    and ``pool_refresh`` is the share of draws that first replace a random pool member by a new
    character (the next seeds of the split; 0: the pool never changes — a 15-minute multi-view run
    then saw only its 192 starting characters and learnt their hair styles, see the README);
    ``background``: ``"black"`` (colour stays premultiplied), ``"white"`` or ``"random"`` (a random
    colour or vertical gradient per image); ``random_light`` a random key light per character;
    ``rank``/``world_size`` shard the seeds across distributed processes; ``seed`` seeds the
    augmentations; ``prefetch_thread`` receives the workers' characters on a background thread.

    Canonicalisation pairs: ``posed_input`` also renders each character in a random pose
    (:func:`stdgen.data.posing.random_pose`) from one random camera (``posed_*`` entries of the
    batch); the A-pose views then show the exact A-pose (no arm-angle augmentation in pool mode).
    A fraction ``apose_input_fraction`` of the inputs keep the A-pose (arms within 5 degrees of it:
    the A-pose check's positives). The input camera: azimuth within ``+-posed_azimuth``, elevation
    within ``+-posed_elevation`` degrees, perspective (40 degree field of view) with probability
    ``posed_perspective`` else orthographic, framing the posed character's bounds zoomed by a
    factor in ``posed_scale`` and shifted by up to ``posed_shift`` of the frame.

    3D supervision: ``points3d`` > 0 adds ``points3d`` labelled points per character (``points``,
    ``point_labels``; see :func:`sample_points3d`), half near the part surfaces (isotropic Gaussian
    offsets of ``points3d_spread`` times the framing's half size: ~4 mm on a 0.8 m half size), half
    uniform in the framing box. They come from the A-pose scene that is rendered (pool variants'
    augmented arms included), not from the ``posed_input`` scene. ``points3d_fill_gaps``: the air
    between a garment (or hair) and the layers inside it is labelled as that garment, the
    voxeliser's convention (:func:`fill_layer_gaps`), instead of outside.

    ``skin_recolor``: in pool mode, the share of variants whose skin is re-toned to an evenly drawn
    skin tone (:func:`random_recolor`), so dark and pale skin are seen equally often.
    """

    batch_size: int = 8
    resolution: int = 256
    views: str = "eval"
    random_views: int = 0
    layers: tuple[str, ...] = LAYER_ORDER
    maps: tuple[str, ...] = STREAM_MAPS
    split: str = "train"
    start: int = 0
    count: int | None = None
    workers: int = 0
    pool_size: int = 0
    pool_refresh: float = 0.0
    background: str = "white"
    random_light: bool = True
    margin: float = 1.1
    antialias: bool = True
    device: str = "auto"
    backend: str = "auto"
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    #: With workers: receive the workers' characters on a background thread, so taking them off
    #: the DataLoader overlaps the rendering of the previous batch.
    prefetch_thread: bool = True
    posed_input: bool = False
    apose_input_fraction: float = 0.0
    posed_azimuth: float = 20.0
    posed_elevation: float = 15.0
    posed_perspective: float = 0.5
    posed_scale: tuple[float, float] = (0.8, 1.15)
    posed_shift: float = 0.08
    points3d: int = 0
    points3d_spread: float = 0.005
    points3d_fill_gaps: bool = False
    skin_recolor: float = 0.0

    def __post_init__(self) -> None:
        if self.views not in ("eval", "gen"):
            raise ValueError(f"views: expected 'eval' or 'gen', got {self.views!r}")
        if self.background not in ("black", "white", "random"):
            raise ValueError(f"background: expected black, white or random, got {self.background!r}")
        if self.split not in ("train", "validation", "test"):
            raise ValueError(f"split: expected train, validation or test, got {self.split!r}")
        unknown = set(self.maps) - set(STREAM_MAPS)
        if unknown:
            raise ValueError(f"maps: unknown {sorted(unknown)}; choose from {STREAM_MAPS}")
        unknown = set(self.layers) - set(LAYER_ORDER)
        if unknown:
            raise ValueError(f"layers: unknown {sorted(unknown)}; choose from {LAYER_ORDER}")
        if self.batch_size < 1 or self.workers < 0 or self.pool_size < 0 or self.random_views < 0:
            raise ValueError("batch_size must be >= 1; workers, pool_size and random_views >= 0")
        for name in ("apose_input_fraction", "posed_perspective", "pool_refresh", "skin_recolor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {getattr(self, name)}")
        self.posed_scale = tuple(self.posed_scale)
        if len(self.posed_scale) != 2 or not 0 < self.posed_scale[0] <= self.posed_scale[1]:
            raise ValueError(f"posed_scale: expected (low, high) with 0 < low <= high, got {self.posed_scale}")
        if not 0 <= self.posed_azimuth <= 180 or not 0 <= self.posed_elevation <= 80 or not 0 <= self.posed_shift < 0.5:
            raise ValueError(f"posed_azimuth / posed_elevation / posed_shift: expected in [0, 180] / [0, 80] / "
                             f"[0, 0.5), got {self.posed_azimuth}, {self.posed_elevation}, {self.posed_shift}")
        self.points3d_fill_gaps = bool(self.points3d_fill_gaps)
        if self.points3d < 0 or not 0 < self.points3d_spread < 0.5:
            raise ValueError(f"points3d / points3d_spread: expected >= 0 / in (0, 0.5), got {self.points3d}, "
                             f"{self.points3d_spread}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world_size {self.world_size}")


def split_seed(split: str, index: int) -> int:
    """The ``index``-th seed of a split (train seeds skip the held-out ranges)."""
    from stdgen.data import splits

    if split == "train":
        return splits.train_seed(index)
    r = splits.TEST if split == "test" else splits.VALIDATION
    if not 0 <= index < len(r):
        raise IndexError(f"the {split} split has {len(r)} seeds; index {index} is past its end")
    return r[index]


def hue_matrix(hue_deg: float, saturation: float = 1.0, value: float = 1.0) -> np.ndarray:
    """(3, 3) linear RGB map: rotate the hue by ``hue_deg`` about the grey axis, scale the
    saturation (distance from grey) and the value (brightness)."""
    k = np.full(3, 1 / math.sqrt(3))
    grey = np.outer(k, k)
    a = math.radians(hue_deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = math.cos(a) * np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * grey
    return (value * (grey + saturation * rot @ (np.eye(3) - grey))).astype(np.float32)


def random_recolor(rng: np.random.Generator, skin_tone=None, skin_recolor: float = 0.0) -> np.ndarray:
    """(3, 3, 3) per-part colour maps for a re-coloured variant: clothes and hair get independent
    random hues, saturations and brightnesses; the body (skin, eyes) is kept, except that with
    probability ``skin_recolor`` (and a known ``skin_tone``, the character's sRGB skin colour) its
    skin is re-toned to one of :data:`~stdgen.data.procedural.params.SKIN_TONES` drawn **evenly**
    (the generator draws the two darkest 3-4 % of the time), by the per-channel ratio of the two
    tones. With ``skin_recolor`` 0 the draws are exactly those of the plain re-colouring."""
    mats = np.stack([np.eye(3, dtype=np.float32)] * 3)
    for part in (Part.CLOTHES, Part.HAIR):
        mats[part] = hue_matrix(rng.uniform(0, 360), rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.15))
    if skin_recolor > 0 and skin_tone is not None and rng.uniform() < skin_recolor:
        from stdgen.data.procedural.params import SKIN_TONES

        target = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) + rng.normal(0, 0.012, 3)
        ratio = np.clip(target, 0.05, 1.0) / np.clip(np.asarray(skin_tone, np.float64), 0.05, 1.0)
        mats[Part.BODY] = np.diag(ratio.astype(np.float32))
    return mats


def sample_points3d(scene: Scene, center, half_size: float, n: int, rng: np.random.Generator,
                    spread: float = 0.005, *, fill_gaps: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled points of a scene for 3D supervision: (n, 3) float32 world points and (n,)
    uint8 labels.

    ``n // 2`` near the surfaces: an equal share per present part (so the hidden body gets as
    many as the clothes, whose shells have twice the area), area-weighted over the part's
    triangles, moved by isotropic Gaussian offsets of std ``spread * half_size``; the rest uniform
    in the framing box ``center +- half_size`` (the S-LRM's normalised ``[-1, 1]^3``).

    Label: the :class:`Part` of the innermost part whose closed mesh contains the point (body
    before clothes before hair: a point inside both a sleeve and the arm in it is body, the class
    the body-only render shows there), 255 outside every part, which includes the air between a
    garment and the skin. Inside tests: the ray winding number
    (:func:`stdgen.geometry.inside.contains`; the procedural garments and hair pieces are closed
    shells, a few mm thick). ``fill_gaps``: then :func:`fill_layer_gaps` labels the air between a
    layer and the layers inside it as that layer.
    """
    import numba

    from stdgen.geometry.inside import triangle_winding_numbers

    v = np.asarray(scene.vertices, np.float32)
    # Faces are ordered by part, each layer set a prefix: a part's faces are a slice.
    ends = [0] + [scene.layer_faces[name] for name in ("body", "body_clothes", "full")]
    parts = [(p, v[scene.faces[ends[p]:ends[p + 1]]]) for p in Part]  # (F, 3, 3) float32 triangles per part
    parts = [(p, tri) for p, tri in parts if len(tri)]
    n_near = n // 2 if parts else 0
    chunks = []
    for k, (_, tri) in enumerate(parts):
        m = n_near // len(parts) + (k < n_near % len(parts))
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        cum = np.cumsum(np.linalg.norm(np.cross(e1, e2), axis=1))
        t = np.minimum(np.searchsorted(cum, rng.uniform(0, cum[-1], m), side="right"), len(tri) - 1)
        a, b = rng.uniform(size=(2, m, 1))
        flip = (a + b) > 1  # fold the square onto the triangle: uniform barycentrics
        a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
        offsets = rng.normal(0, spread * half_size, (m, 3)).astype(np.float32)
        chunks.append(tri[t, 0] + a.astype(np.float32) * e1[t] + b.astype(np.float32) * e2[t] + offsets)
    chunks.append(np.asarray(center, np.float64) + rng.uniform(-half_size, half_size, (n - n_near, 3)))
    pts = np.concatenate(chunks).astype(np.float32)
    labels = np.full(n, BACKGROUND_LABEL, np.uint8)
    # One thread: the workers are the parallelism (numba's pool in each of them only oversubscribes
    # the cores; on 2 shared cores it more than doubled the time).
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for part, tri in parts:
            flat = tri.reshape(-1, 3)
            # Only points not yet in an inner part, inside this part's bounds, go to the inside test.
            inb = np.all((pts >= _columns(flat, np.min)) & (pts <= _columns(flat, np.max)), 1)
            cand = np.nonzero((labels == BACKGROUND_LABEL) & inb)[0]
            if len(cand):
                # The float32 points and triangles, exactly in float64 (the kernels' type).
                inside = triangle_winding_numbers(tri, pts[cand]) != 0
                labels[cand[inside]] = int(part)
    finally:
        numba.set_num_threads(threads)
    if fill_gaps:
        labels = fill_layer_gaps(dict(parts), pts, labels)
    return pts, labels


def fill_layer_gaps(parts: dict[Part, np.ndarray], points: np.ndarray, labels: np.ndarray,
                    candidates: int = 8) -> np.ndarray:
    """The voxeliser's convention for the air under a layer (:func:`stdgen.geometry.voxelize.voxelize_parts`):
    a point outside every part (label 255) that lies in a thin gap between layer P (clothes, then
    hair) and the layers inside it (within :data:`~stdgen.geometry.voxelize.DEFAULT_FILL_DISTANCE`
    of P, the two distances summing to at most :data:`~stdgen.geometry.voxelize.DEFAULT_MAX_GAP`, the
    nearest points on the two lying on opposite sides of it) is labelled P. ``parts``: triangles
    ``(F, 3, 3)`` per part (world metres); ``points`` ``(N, 3)``; ``labels`` ``(N,)`` uint8 (a new
    array is returned). Nearest points: exact on the ``candidates`` triangles with the nearest
    centroids."""
    from scipy.spatial import cKDTree

    from stdgen.geometry.voxelize import DEFAULT_FILL_DISTANCE, DEFAULT_MAX_GAP, closest_points_on_triangles

    labels = labels.copy()

    def nearest(tri: np.ndarray, x: np.ndarray, tree=None) -> tuple[np.ndarray, np.ndarray]:
        """(closest points (P, 3), distances (P,)) of ``x`` on triangles ``tri``."""
        tri = np.ascontiguousarray(tri, np.float64)
        k = min(candidates, len(tri))
        _, idx = (tree or cKDTree(tri.mean(1))).query(x, k=k)
        idx = idx.reshape(len(x), k)
        best, best_d = np.zeros_like(x), np.full(len(x), np.inf)
        for j in range(k):
            q = closest_points_on_triangles(tri, idx[:, j], x)
            d = np.linalg.norm(q - x, axis=1)
            closer = d < best_d
            best[closer], best_d[closer] = q[closer], d[closer]
        return best, best_d

    inner: list[np.ndarray] = []
    for part in (Part.BODY, Part.CLOTHES, Part.HAIR):
        tri = parts.get(part)
        if tri is None or not len(tri):
            continue
        if inner and DEFAULT_MAX_GAP[part] > 0:
            cand = np.nonzero(labels == BACKGROUND_LABEL)[0]
            if len(cand):
                x = points[cand].astype(np.float64)
                # Most candidates are far from the layer: a centroid query (within the reach plus a
                # large triangle's size) drops them before the exact closest points.
                tree = cKDTree(tri.mean(1))
                d0, _ = tree.query(x, k=1, distance_upper_bound=DEFAULT_FILL_DISTANCE[part] + 0.02)
                x, cand = x[np.isfinite(d0)], cand[np.isfinite(d0)]
                q_own, d_own = nearest(tri, x, tree)
                near = d_own <= DEFAULT_FILL_DISTANCE[part]
                if len(x) and near.any():
                    x, q_own, d_own, cand = x[near], q_own[near], d_own[near], cand[near]
                    q_in, d_in = nearest(np.concatenate(inner), x)
                    between = ((q_in - x) * (q_own - x)).sum(1) < 0
                    labels[cand[between & (d_in + d_own <= DEFAULT_MAX_GAP[part])]] = int(part)
        inner.append(tri)
    return labels


def _columns(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (np.min / np.max) of each column of (N, C) ``a``: 10-30x faster than ``a.min(0)``
    for narrow ``a`` (numpy reduces those along axis 0 element by element)."""
    return np.array([reduce(a[:, i]) for i in range(a.shape[1])])


@dataclass
class SourceItem:
    """A made character, ready to render: its scene arrays, framing, and what it is; with
    ``StreamConfig.points3d``, labelled 3D points of the scene (``points`` (N, 3) float32 world,
    ``point_labels`` (N,) uint8, see :func:`sample_points3d`)."""

    scene: Scene
    framing: Framing
    seed: int
    variant: int
    light_dir: tuple[float, float, float]
    color_matrices: np.ndarray | None = None
    posed: PosedInput | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None


@dataclass
class PosedInput:
    """The posed input of a canonicalisation pair: the scene in that pose, its camera (``azimuth``,
    ``elevation`` degrees, ``orthographic``, ``center`` (3,), ``half_size``: the half height of the
    frame at the centre's depth), the upper-arm angles (left, right) in degrees below horizontal,
    and whether the input keeps the A-pose."""

    scene: Scene
    azimuth: float
    elevation: float
    orthographic: bool
    center: tuple[float, float, float]
    half_size: float
    arm_deg: tuple[float, float]
    is_apose: bool


_SCENE_ARRAYS = ("vertices", "normals", "colors", "faces", "face_labels", "face_texture", "corner_uvs", "topology")


def _to_shared(item: SourceItem) -> SourceItem:
    """In a DataLoader worker: pack the scene's arrays (and textures) into one byte tensor, which
    travels to the training process through shared memory instead of being pickled through a pipe.
    One tensor per scene, not one per array: each shared tensor costs a file descriptor and a
    mapping, and at ~15 arrays per item those dominated the stream's time. The 3D points travel
    in the scene's buffer."""
    extra = [] if item.points is None else [item.points, item.point_labels]
    item.points = item.point_labels = None
    _pack_scene(item.scene, extra)
    if item.posed is not None:
        _pack_scene(item.posed.scene)
    return item


def _pack_scene(sc: Scene, extra: list[np.ndarray] = ()) -> None:
    """Pack the scene's arrays, its textures, then ``extra`` arrays into one byte tensor."""
    arrays = [np.ascontiguousarray(getattr(sc, n)) for n in _SCENE_ARRAYS]
    arrays += [np.ascontiguousarray(t) for t in sc.textures]
    arrays += [np.ascontiguousarray(a) for a in extra]
    layout, size = [], 0
    for arr in arrays:
        size = -(-size // 64) * 64  # 64-byte aligned views on the other side
        layout.append((size, arr.dtype.str, arr.shape))
        size += arr.nbytes
    buf = np.empty(max(size, 1), np.uint8)
    for arr, (off, _, _) in zip(arrays, layout):
        buf[off:off + arr.nbytes] = arr.reshape(-1).view(np.uint8)
    for n in _SCENE_ARRAYS:
        setattr(sc, n, None)
    sc.textures = []
    sc._packed = (torch.from_numpy(buf), layout, len(extra))  # transport only, removed on arrival


def _from_shared(item: SourceItem) -> SourceItem:
    """In the training process: the scenes' arrays as views into the shared buffers (no copy)."""
    extra = _unpack_scene(item.scene)
    if extra:
        item.points, item.point_labels = extra
    if item.posed is not None:
        _unpack_scene(item.posed.scene)
    return item


def _unpack_scene(sc: Scene) -> list[np.ndarray]:
    """Restore the scene's arrays; returns the ``extra`` arrays packed with them."""
    packed = getattr(sc, "_packed", None)
    if packed is None:
        return []
    buf = packed[0].numpy()
    arrays = [buf[off:off + int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize].view(dt).reshape(shape)
              for off, dt, shape in packed[1]]
    n_extra = packed[2]
    for n, arr in zip(_SCENE_ARRAYS, arrays):
        setattr(sc, n, arr)
    sc.textures = arrays[len(_SCENE_ARRAYS):len(arrays) - n_extra]
    del sc._packed
    return arrays[len(arrays) - n_extra:]


class CharacterSource(IterableDataset):
    """Characters made on CPU (in DataLoader workers): yields :class:`SourceItem`.

    Seeds are sharded over ``world_size`` ranks times the DataLoader's workers, so no two
    workers make the same character. ``make(seed) -> Character`` (A-posed) defaults to the
    procedural generator.
    """

    def __init__(self, config: StreamConfig, make=None):
        super().__init__()
        self.config = config
        self.make = make

    def _make(self, seed: int):
        if self.make is not None:
            return self.make(seed)
        from stdgen.data.render_dataset import procedural_character

        return procedural_character(seed)

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        c = self.config
        return c.rank * nw + wid, c.world_size * nw

    def _item(self, character, seed: int, variant: int, rng: np.random.Generator | None,
              topology: np.ndarray | None = None) -> SourceItem:
        c = self.config
        color = None
        if rng is not None and character.skeleton is not None and not c.posed_input:
            from stdgen.data.posing import augmented_a_pose

            character = character.with_pose(augmented_a_pose(character.skeleton, rng))
        if rng is not None:
            tone = (character.meta.get("body") or {}).get("skin_tone") if c.skin_recolor > 0 else None
            color = random_recolor(rng, tone, c.skin_recolor)
        light_seed = seed if variant == 0 else _derive_seed(seed, 1000 + variant)
        scene = scene_from_character(character, topology=topology)
        posed = None
        if c.posed_input and character.skeleton is not None:
            prng = rng if rng is not None else np.random.default_rng(_derive_seed(c.seed, _derive_seed(seed, 3000)))
            posed = self._posed(character, prng, scene.topology)
        framing = frame_character(character, c.margin, scene)
        points = labels = None
        if c.points3d:
            # Own generator: the other draws (and so the renders) do not depend on points3d.
            grng = np.random.default_rng(_derive_seed(c.seed, _derive_seed(seed, 4000 + variant)))
            points, labels = sample_points3d(scene, framing.center, framing.half_size, c.points3d, grng,
                                             c.points3d_spread, fill_gaps=c.points3d_fill_gaps)
        return SourceItem(scene, framing, seed, variant, light_direction(light_seed, c.random_light), color, posed,
                          points, labels)

    def _posed(self, character, rng: np.random.Generator, topology: np.ndarray | None) -> PosedInput:
        """The character in a random pose (or, with ``apose_input_fraction``, a near A-pose) and a
        random input camera (see :class:`StreamConfig`)."""
        from stdgen.data.posing import augmented_a_pose, random_pose, upper_arm_angle

        c = self.config
        sk = character.skeleton
        is_apose = bool(rng.uniform() < c.apose_input_fraction)
        pose = augmented_a_pose(sk, rng, jitter_deg=5.0, asymmetry_deg=2.0) if is_apose else random_pose(sk, rng)
        posed = character.with_pose(pose)
        scene = scene_from_character(posed, topology=topology)
        fr = frame_character(posed, c.margin, scene)
        half = fr.half_size / float(rng.uniform(*c.posed_scale))
        shift = rng.uniform(-c.posed_shift, c.posed_shift, size=2) * 2 * half
        center = (fr.center[0] - float(shift[0]), fr.center[1] - float(shift[1]), fr.center[2])
        arms = tuple(float(upper_arm_angle(sk, pose, side)) for side in ("left", "right"))
        return PosedInput(scene, float(rng.uniform(-c.posed_azimuth, c.posed_azimuth)),
                          float(rng.uniform(-c.posed_elevation, c.posed_elevation)),
                          bool(rng.uniform() >= c.posed_perspective), center, float(half), arms, is_apose)

    def __iter__(self):
        c = self.config
        shard, shards = self._shard()
        if c.pool_size <= 0:
            index = c.start + shard
            while c.count is None or index < c.start + c.count:
                seed = split_seed(c.split, index)
                yield self._item(self._make(seed), seed, 0, None)
                index += shards
            return
        # Pool mode: this worker's share of the pool, then endless (or count) random variants.
        pool = []
        for k in range(c.pool_size):
            seed = split_seed(c.split, c.start + shard + k * shards)
            character = self._make(seed)
            # The antialiasing topology depends on the faces only: compute it once per pool member.
            pool.append((seed, character, scene_from_character(character).topology))
        rng = np.random.default_rng(_derive_seed(c.seed, _RNG_POOL * 1000 + shard))
        total = None if c.count is None else len(range(shard, c.count, shards))
        k, fresh = 0, c.pool_size
        while total is None or k < total:
            variant = 1 + shard + k * shards  # unique across workers; 0 marks a fresh character
            k += 1
            slot = int(rng.integers(len(pool)))
            if c.pool_refresh > 0 and rng.uniform() < c.pool_refresh:
                seed = split_seed(c.split, c.start + shard + fresh * shards)  # this worker's next seed
                fresh += 1
                character = self._make(seed)
                pool[slot] = (seed, character, scene_from_character(character).topology)
            seed, character, topology = pool[slot]
            yield self._item(character, seed, variant, rng, topology)


def stream_cameras(framing: Framing, config: StreamConfig, seed: int, variant: int):
    """The cameras of one stream sample: the evaluation (or generation) views, then random views."""
    from stdgen.render.camera import Cameras, evaluation_views, generation_views, random_views

    make = evaluation_views if config.views == "eval" else generation_views
    cams = [make(center=framing.center, half_size=framing.half_size)]
    if config.random_views:
        gen = torch.Generator().manual_seed(_derive_seed(seed, 2000 + variant))
        cams.append(random_views(config.random_views, gen, center=framing.center, half_size=framing.half_size))
    return Cameras.cat(cams) if len(cams) > 1 else cams[0]


def backgrounds(images: int, res: int, generator: torch.Generator, device) -> torch.Tensor:
    """(I, H, 1, 3) random backgrounds (broadcast along W): half plain colours, half vertical
    two-colour gradients."""
    a = torch.rand(images, 1, 1, 3, generator=generator).to(device)
    b = torch.rand(images, 1, 1, 3, generator=generator).to(device)
    plain = (torch.rand(images, generator=generator) < 0.5).to(device)
    b = torch.where(plain[:, None, None, None], a, b)
    t = torch.linspace(0, 1, res, device=device)[None, :, None, None]
    return a * (1 - t) + b * t  # (I, H, 1, 3), broadcast along W


class RenderStream(IterableDataset):
    """Batches of multi-layer renders made on the fly (see the module docstring).

    Each batch is a dict: ``rgb`` and ``lit`` (B, L, V, 3, H, W) float colour over the
    background; ``alpha`` (B, L, V, 1, H, W) antialiased coverage; ``normal`` (B, L, V, 3, H, W)
    unit world normals (0 off the coverage); ``depth`` (B, L, V, 1, H, W) camera-space metres (0
    off); ``sem`` (B, L, V, H, W) uint8 ``Part`` values (255 background); ``world_to_cam`` and
    ``proj`` (B, V, 4, 4); ``center`` (B, 3) and ``half_size`` (B,) the framing of the orthographic
    views (world point = center + half_size * normalised point); ``light_dir`` (B, 3); ``seed``
    and ``variant`` (B,) int64 (variant 0: a fresh character; pool variants are numbered from 1);
    ``layers`` the layer-set names of axis L; ``view_names`` the V view names; with ``points3d``,
    ``points`` (B, N, 3) float32 world points and ``point_labels`` (B, N) uint8 (``Part`` of the
    innermost part containing the point, 255 outside; :func:`sample_points3d`). Only the requested maps are
    present; all tensors are on the render device. A last partial batch is yielded too.
    """

    def __init__(self, config: StreamConfig, make=None):
        super().__init__()
        self.config = config
        self.source = CharacterSource(config, make)

    def _items(self):
        c = self.config
        if c.workers <= 0:
            yield from self.source
            return
        from torch.utils.data import DataLoader

        loader = DataLoader(self.source, batch_size=None, num_workers=c.workers, collate_fn=_to_shared,
                            prefetch_factor=max(2, 2 * c.batch_size // c.workers + 1),
                            multiprocessing_context="spawn", worker_init_fn=_worker_init)
        loader_iter = iter(loader)
        items = (_from_shared(item) for item in loader_iter)
        ahead = _background(items, depth=2 * c.batch_size) if c.prefetch_thread else items
        try:
            yield from ahead
        finally:
            # Stop in order, now rather than at garbage collection: first the receiving thread,
            # then the worker processes (left to the iterator's finaliser, workers busy making a
            # character were killed mid-way and aborted noisily).
            ahead.close()
            shutdown = getattr(loader_iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def __iter__(self):
        from stdgen.utils.device import resolve_device

        c = self.config
        dev = resolve_device(c.device)
        gen = torch.Generator().manual_seed(_derive_seed(c.seed, _RNG_BATCH))
        batch: list[SourceItem] = []
        for item in self._items():
            batch.append(item)
            if len(batch) == c.batch_size:
                yield self.render_batch(batch, dev, gen)
                batch = []
        if batch:
            yield self.render_batch(batch, dev, gen)

    @torch.no_grad()  # not inference_mode: a model in training could not save its tensors for backward
    def render_batch(self, items: list[SourceItem], device, generator: torch.Generator) -> dict:
        c = self.config
        cams = [stream_cameras(it.framing, c, it.seed, it.variant) for it in items]
        jobs = [RenderJob(it.scene, cam, tuple(c.layers), it.light_dir, it.color_matrices)
                for it, cam in zip(items, cams)]
        maps = tuple(c.maps) + ("alpha",)
        # Renders stay float32 when the caller trains under autocast (validation draws inside it).
        with torch.autocast(torch.device(device).type, enabled=False):
            out = render_jobs(jobs, c.resolution, device=device, backend=c.backend, antialiasing=c.antialias,
                              maps=maps)
        b, nl, nv, res = len(items), len(c.layers), len(cams[0]), c.resolution
        images = b * nl * nv

        def shaped(t: torch.Tensor) -> torch.Tensor:  # (I, H, W, C) -> (B, L, V, C, H, W)
            return t.reshape(b, nl, nv, res, res, t.shape[-1]).permute(0, 1, 2, 5, 3, 4)

        alpha = out["alpha"]
        bg = None
        if c.background == "white":
            bg = torch.ones(1, 1, 1, 3, device=device)
        elif c.background == "random":
            # One background per (character, view), shared by its layer sets.
            per_view = backgrounds(b * nv, res, generator, device).reshape(b, 1, nv, res, 1, 3)
            bg = per_view.expand(b, nl, nv, res, 1, 3).reshape(images, res, 1, 3)
        batch = {"alpha": shaped(alpha)}
        for key in ("rgb", "lit"):
            if key in c.maps:
                col = out[key] if bg is None else out[key] + bg * (1 - alpha)
                batch[key] = shaped(col)
        for key in ("normal", "depth"):
            if key in c.maps:
                batch[key] = shaped(out[key])
        if "sem" in c.maps:
            batch["sem"] = out["sem"].reshape(b, nl, nv, res, res)
        batch["world_to_cam"] = torch.stack([cam.world_to_cam for cam in cams]).to(device)
        batch["proj"] = torch.stack([cam.proj for cam in cams]).to(device)
        batch["center"] = torch.tensor([it.framing.center for it in items], dtype=torch.float32, device=device)
        batch["half_size"] = torch.tensor([it.framing.half_size for it in items], dtype=torch.float32, device=device)
        batch["light_dir"] = torch.tensor([it.light_dir for it in items], dtype=torch.float32, device=device)
        batch["seed"] = torch.tensor([it.seed for it in items], dtype=torch.int64)
        batch["variant"] = torch.tensor([it.variant for it in items], dtype=torch.int64)
        batch["layers"] = tuple(c.layers)
        batch["view_names"] = list(cams[0].names)
        if c.points3d:
            batch["points"] = torch.from_numpy(np.stack([it.points for it in items])).to(device)
            batch["point_labels"] = torch.from_numpy(np.stack([it.point_labels for it in items])).to(device)
        if c.posed_input:
            batch.update(self.render_posed(items, device, generator))
        return batch

    def render_posed(self, items: list[SourceItem], device, generator: torch.Generator) -> dict:
        """The posed inputs of a batch (full layer set, one camera each): ``posed_rgb`` /
        ``posed_lit`` (B, 3, H, W) over the background, ``posed_alpha`` (B, 1, H, W), ``posed_normal``
        / ``posed_depth`` when those maps are streamed, ``posed_arm_deg`` (B, 2) upper-arm angles
        (left, right), ``posed_is_apose`` (B,) bool, ``posed_orthographic`` (B,) bool."""
        from stdgen.render.camera import orthographic_cameras, perspective_cameras

        c = self.config
        if any(it.posed is None for it in items):
            raise ValueError("posed_input: every character needs a skeleton to be posed")
        jobs = []
        fov = 40.0
        for it in items:
            p = it.posed
            if p.orthographic:
                cam = orthographic_cameras([p.azimuth], p.elevation, center=p.center, half_size=p.half_size,
                                           names=["posed"])
            else:
                dist = p.half_size / math.tan(math.radians(fov) / 2)
                cam = perspective_cameras([p.azimuth], p.elevation, dist, center=p.center, fov_y_deg=fov,
                                          near=max(0.01, dist - 3 * p.half_size), far=dist + 3 * p.half_size,
                                          names=["posed"])
            jobs.append(RenderJob(p.scene, cam, ("full",), it.light_dir, it.color_matrices))
        maps = tuple(m for m in c.maps if m != "sem") + ("alpha",)
        with torch.autocast(torch.device(device).type, enabled=False):  # float32 renders, as render_batch's
            out = render_jobs(jobs, c.resolution, device=device, backend=c.backend, antialiasing=c.antialias,
                              maps=maps)
        alpha = out["alpha"]
        b, res = len(items), c.resolution
        bg = None
        if c.background == "white":
            bg = torch.ones(1, 1, 1, 3, device=device)
        elif c.background == "random":
            bg = backgrounds(b, res, generator, device)
        chw = lambda t: t.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        batch = {"posed_alpha": chw(alpha)}
        for key in ("rgb", "lit"):
            if key in c.maps:
                batch[f"posed_{key}"] = chw(out[key] if bg is None else out[key] + bg * (1 - alpha))
        for key in ("normal", "depth"):
            if key in c.maps:
                batch[f"posed_{key}"] = chw(out[key])
        batch["posed_arm_deg"] = torch.tensor([it.posed.arm_deg for it in items], dtype=torch.float32, device=device)
        batch["posed_is_apose"] = torch.tensor([it.posed.is_apose for it in items], dtype=torch.bool, device=device)
        batch["posed_orthographic"] = torch.tensor([it.posed.orthographic for it in items], dtype=torch.bool)
        return batch


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _background(items, depth: int):
    """Iterate ``items`` on a daemon thread, up to ``depth`` ahead; errors are re-raised here.
    Closing the returned generator stops the thread (and drops ``items``)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for x in items:
                if not put(x):
                    return
        except BaseException as e:  # handed to the consumer
            put(_Failure(e))
            return
        put(end)

    thread = threading.Thread(target=pump, name="stdgen-stream-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is end:
                return
            if isinstance(x, _Failure):
                raise x.error
            yield x
    finally:
        stop.set()
        thread.join(timeout=5)


def _worker_init(_worker_id: int) -> None:
    import atexit

    # Each worker makes whole characters; parallelism is across workers, not threads.
    torch.set_num_threads(1)
    # End the worker the way a forked multiprocessing child ends, without the interpreter's final
    # teardown: there, native thread pools of the libraries that made characters were destroyed
    # while still running and aborted the process ("terminate called without an active
    # exception"). multiprocessing's own exit steps (flushing queues) run first.
    atexit.register(_exit_worker)


def _exit_worker() -> None:
    import os
    from multiprocessing import util

    util._exit_function()
    os._exit(0)
