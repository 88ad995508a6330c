"""VRM 0.x / 1.0 files -> a layered :class:`~stdgen.structures.character.Character`.

Reading the file (document, world-space primitives, humanoid skeleton) is :mod:`stdgen.io.vrm`'s;
here:

1. :func:`split` - body / clothes / hair by names (:mod:`stdgen.data.vrm.split`), with a reason
   per primitive.
2. :func:`import_vrm` - puts it together: a Character in the canonical A-pose (posed by skinning
   through the humanoid bones) and a JSON-able report of what went where.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from stdgen.data.vrm.split import PartRules, load_part_rules
from stdgen.errors import InputError, StdgenError
from stdgen.io.gltf import MALFORMED_ERRORS
from stdgen.io.vrm import (
    Primitive,
    VrmDocument,
    build_skeleton,
    extract_primitives,
    read_vrm,
    skin_to_bones,
    weld_vertices,
)
from stdgen.structures.character import Character
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part


class SkipImport(StdgenError):
    """A file that is valid but not imported as asked (e.g. it lacks a part that was required)."""


@dataclass
class VrmImportConfig:
    """How :func:`import_vrm` turns a file into a character.

    ``parts``: a part-rules YAML (None: the packaged VRoid naming, ``stdgen/data/vrm/parts.yaml``).
    ``require_all_parts``: raise :class:`SkipImport` unless body, clothes and hair are all found
    (otherwise a file that cannot be split comes in as body only, with a warning).
    ``pose``: ``"a"`` the canonical A-pose (arms ``arm_angle_deg`` below horizontal) or ``"rest"``.
    ``drop_transparent``: drop triangles whose base colour is transparent everywhere they are
    sampled (alpha below the material's cutoff under alphaMode MASK, below
    ``blend_alpha_threshold`` under BLEND): VRM eyelashes, highlights and lines are cut-out quads,
    and our renderer draws textures opaque. ``weld``: merge vertices the file split only for UV
    seams (same position, normal, colour and skinning), so closed surfaces come out closed.
    ``ground``: shift the character vertically so its lowest rest vertex is at y = 0 (VRM files
    already stand on y = 0 by convention, so this is off by default).
    """

    parts: str | os.PathLike | None = None
    require_all_parts: bool = False
    pose: str = "a"
    arm_angle_deg: float = 45.0
    drop_transparent: bool = True
    blend_alpha_threshold: float = 0.05
    weld: bool = True
    ground: bool = False


@dataclass
class VrmImport:
    """The result of :func:`import_vrm`: the character and a JSON-able report (``import.json``)."""

    character: Character
    report: dict


# -- 4. split ----------------------------------------------------------------------------------------
def split(prims: list[Primitive], rules: PartRules) -> list[tuple[Primitive, Part, str]]:
    """Each primitive with its part and the reason."""
    return [(p, *rules.classify(p.names)) for p in prims]


# -- 5. putting it together ----------------------------------------------------------------------------
def _to_mesh(p: Primitive, skin_joints: np.ndarray, skin_weights: np.ndarray, part: Part, weld: bool) -> Mesh:
    name = p.names.get("material") or p.names.get("mesh") or "primitive"
    mesh = Mesh(p.vertices, p.faces, normals=p.normals, colors=p.colors, uvs=p.uvs,
                uv_faces=p.uv_faces, texture=p.texture, label=part, name=name,
                skin_joints=skin_joints, skin_weights=skin_weights)
    return weld_vertices(mesh) if weld else mesh


def _summarise_meta(doc: VrmDocument) -> dict:
    m = doc.meta
    if doc.version == "1.0":
        keys = ("name", "version", "authors", "copyrightInformation", "licenseUrl", "avatarPermission",
                "commercialUsage", "creditNotation", "allowRedistribution", "modification")
    else:
        keys = ("title", "version", "author", "contactInformation", "reference", "licenseName",
                "otherLicenseUrl", "allowedUserName", "commercialUssageName")
    return {k: m[k] for k in keys if k in m and isinstance(m[k], str | int | float | bool | list)}


def import_vrm(path: str | os.PathLike, config: VrmImportConfig | None = None, *,
               rules: PartRules | None = None, data: bytes | None = None) -> VrmImport:
    """Import one VRM 0.x / 1.0 file as a Character (A-posed unless ``config.pose == "rest"``) and
    the report of what went where. Malformed files raise InputError; a file that cannot meet
    ``config.require_all_parts`` raises :class:`SkipImport` with the reason."""
    config = config or VrmImportConfig()
    if config.pose not in ("a", "rest"):
        raise StdgenError(f"pose must be 'a' or 'rest', got {config.pose!r}")
    rules = rules or load_part_rules(config.parts)
    doc = read_vrm(path, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in damaged float data -> checked below
            return _import(doc, config, rules)
    except (InputError, SkipImport):
        raise
    except MALFORMED_ERRORS as exc:
        raise InputError(f"{doc.path}: malformed VRM ({type(exc).__name__}: {exc})") from None


def _import(doc: VrmDocument, config: VrmImportConfig, rules: PartRules) -> VrmImport:
    path = doc.path
    skeleton, node_bone = build_skeleton(doc)
    prims, skipped = extract_primitives(doc, drop_transparent=config.drop_transparent,
                                        blend_alpha_threshold=config.blend_alpha_threshold)
    if not prims:
        raise InputError(f"{path}: no triangle meshes in the default scene")
    warnings_out: list[str] = []
    assigned = split(prims, rules)
    found = {part for _, part, _ in assigned if any(len(p.faces) for p, pt, _ in assigned if pt == part)}
    if config.require_all_parts and found != set(PARTS):
        lacking = [p.key for p in PARTS if p not in found]
        raise SkipImport(f"{path}: cannot be split into body, clothes and hair (no {', '.join(lacking)} "
                         f"primitives by the rules in {rules.source})")
    if Part.CLOTHES not in found and Part.HAIR not in found:
        warnings_out.append("no clothes or hair primitives found by the part rules: imported as body only")
        assigned = [(p, Part.BODY, why if part == Part.BODY else f"{why}; body only") for p, part, why in assigned]
    else:
        for part in PARTS:
            if part not in found:
                warnings_out.append(f"no {part.key} primitives found by the part rules")

    meshes: dict[Part, list[Mesh]] = {p: [] for p in PARTS}
    records = []
    for p, part, why in assigned:
        sj, sw = skin_to_bones(p.influence_nodes, p.influence_weights, node_bone)
        records.append({**{k: v for k, v in p.info.items() if not k.startswith("_")}, "part": part.key,
                        "why": why, "triangles": int(len(p.faces)), "textured": p.texture is not None})
        if len(p.faces):
            meshes[part].append(_to_mesh(p, sj, sw, part, config.weld))
    if not meshes[Part.BODY]:
        raise SkipImport(f"{path}: has no body primitives by the rules in {rules.source}")

    body = merge_meshes(meshes[Part.BODY], label=Part.BODY, name="body") if len(meshes[Part.BODY]) > 1 \
        else meshes[Part.BODY][0]
    character = Character(body=body, clothes=meshes[Part.CLOTHES], hair=meshes[Part.HAIR], skeleton=skeleton)
    shift = 0.0
    if config.ground:
        low = min(float(m.vertices[:, 1].min()) for p in PARTS for m in character.rest_meshes(p) if m.num_vertices)
        if abs(low) > 0:
            shift = -low
            _shift_character(character, shift)
    if config.pose == "a":
        from stdgen.data.posing import a_pose

        character.pose = a_pose(skeleton, config.arm_angle_deg)
    report = {
        "file": str(path),
        "vrm_version": doc.version,
        "meta": _summarise_meta(doc),
        "humanoid_bones": len(doc.bones),
        "skeleton": list(skeleton.names),
        "part_rules": rules.source,
        "pose": "A-pose" if config.pose == "a" else "rest",
        "ground_shift_m": shift,
        "parts": {p.key: {"meshes": len(character.rest_meshes(p)),
                          "triangles": int(sum(m.num_faces for m in character.rest_meshes(p)))} for p in PARTS},
        "primitives": records,
        "skipped_primitives": skipped,
        "warnings": warnings_out,
    }
    character.meta = {"source": str(path), "source_format": f"VRM {doc.version}",
                      "vrm_meta": _summarise_meta(doc), "title": _title(doc)}
    return VrmImport(character, report)


def _title(doc: VrmDocument) -> str:
    m = doc.meta
    t = m.get("name") if doc.version == "1.0" else m.get("title")
    return t if isinstance(t, str) and t else re.sub(r"\.vrm$", "", doc.path.name, flags=re.I)


def _shift_character(character: Character, dy: float) -> None:
    for part in PARTS:
        for m in character.rest_meshes(part):
            m.vertices = m.vertices + np.array([0, dy, 0], np.float32)
    character.skeleton.joints = character.skeleton.joints + np.array([0, dy, 0], np.float32)
    character._cache.clear()

