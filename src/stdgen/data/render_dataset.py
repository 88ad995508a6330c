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

The renderer is batched (:mod:`stdgen.render.batch`): :func:`~stdgen.render.batch.render_jobs`
draws any number of (character, cameras, layer sets) jobs in one rasteriser call (range mode), so
the disk writer (one character at a time), the on-the-fly GPU stream (:mod:`stdgen.data.stream`,
many characters per batch) and the evaluator share one code path. The three layer sets are nested
prefixes of one face array (body faces first, then clothes, then hair), so each image just draws a
prefix of its character's faces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from stdgen.render.batch import LAYER_ORDER, RenderJob, Scene, render_jobs, scene_from_character, to_rgba8
from stdgen.structures.character import Character, Pose
from stdgen.structures.semantics import Part

#: Azimuths (degrees) of the face close-ups; their elevation.
FACE_AZIMUTHS: tuple[float, ...] = (-40.0, -20.0, 0.0, 20.0, 40.0)
FACE_ELEVATION = 5.0

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


def render_character(character: Character, config: RenderConfig | None = None, *, seed: int | None = None,
                     poses: list[Pose] | None = None):
    """The full per-character render set of an A-posed character as a
    :class:`~stdgen.io.dataset.CharacterRenders` (numpy; write it with ``write_renders``).

    ``seed`` (default ``character.meta["seed"]``, else 0) seeds the random views, the random light
    and the random poses. ``poses``: the poses of the canonicalisation pairs; by default
    ``config.posed_views`` poses from :func:`stdgen.data.posing.random_pose`.
    """
    from stdgen.io.dataset import CharacterRenders, LayerRenders
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

    from stdgen.io.dataset import manifest_entry, write_renders
    from stdgen.io.glb import write_glb
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

    from stdgen.errors import InputError
    from stdgen.io.dataset import missing_files, read_meta

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
                       source: str = "procedural", workers: int = 0,
                       progress: Callable[[int, int], None] | None = None, manifest_every_s: float = 10.0,
                       overwrite: bool = False) -> dict:
    """Render characters ``make(seed)`` for ``seeds`` into ``out_dir``, one folder each.

    Resumable: folders already rendered with the same settings are skipped, ``.tmp-*`` leftovers
    of an interrupted run are removed first, and every folder is written atomically, so a killed
    run leaves complete folders only. A folder rendered with other settings is an error (use a
    new directory). ``DIR/manifest.json`` lists every complete character folder (id, seed, split,
    source); it is rewritten every ``manifest_every_s`` seconds and at the end, also when
    interrupted. ``workers`` > 0 runs that many processes: on the CPU each renders whole
    characters; with a CUDA device they make the characters and this process renders them.
    ``make(seed) -> Character`` (A-posed) defaults to :func:`procedural_character`.
    ``progress(done, total)`` is called once before the work (``done`` = folders already there)
    and after each folder written (the CLI draws its bar from it).
    The output is claimed first (:func:`stdgen.io.outputs.claim_output_dir`): a new or empty folder,
    or a dataset this command made; a character folder of the same name that is not one (no
    meta.json) is refused. ``overwrite`` lifts both refusals.
    Returns counts: ``rendered``, ``skipped``, ``removed_temporaries`` and the ``manifest`` path.
    """
    import os
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from stdgen.errors import StdgenError
    from stdgen.io.dataset import (
        character_folder_name,
        list_character_folders,
        manifest_entry,
        read_manifest,
        write_manifest,
    )
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
    if progress:
        progress(skipped, len(seeds))
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
            if progress:
                progress(skipped + rendered, len(seeds))
            if time.monotonic() - last > manifest_every_s:
                write_manifest(out, list(entries.values()), **extra)
                last = time.monotonic()
    finally:
        # Only folders that are really there (complete) go into the manifest.
        present = {p.name for p in list_character_folders(out)}
        path = write_manifest(out, [e for k, e in entries.items() if k in present], **extra)
    return {"rendered": rendered, "skipped": skipped, "removed_temporaries": removed, "manifest": path}


def is_dataset_dir(folder) -> bool:
    """Whether ``folder`` is a dataset directory (it has a readable ``manifest.json``)."""
    from stdgen.errors import InputError
    from stdgen.io.dataset import read_manifest

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
