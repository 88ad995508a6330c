"""Character -> VRM 1.0 (``VRMC_vrm``) or VRM 0.x (``VRM``), the format anime-avatar tools read.

The file is the skinned GLB scene of :mod:`stdgen.io.glb` in the skeleton's rest pose, which
VRM wants to be a T-pose (:func:`t_posed` raises the arms of a rest pose that is not one; the
character's current pose, e.g. its A-pose, is not baked in), plus:

* the humanoid bone map: every skeleton bone with a VRM humanoid name (the project's skeleton
  uses them), as a dict in 1.0, a list in 0.x (whose thumb names differ);
* meta: title, authors, version, licence fields. Nothing is claimed that we do not know: a
  character imported from a VRM file keeps its source's author and licence (``character.meta
  ["vrm_meta"]``); anything else defaults to the most restrictive permissions and an author the
  caller names (:class:`VrmMeta`);
* materials: MToon (``VRMC_materials_mtoon``; in 0.x the ``VRM/MToon`` material properties) or
  unlit (``KHR_materials_unlit``), with base-colour textures, named in VRoid's style per part
  (``N00_000_00_Body_00_SKIN``, ``N00_001_01_Tops_01_CLOTH``, ``N00_000_Hair_00_HAIR``...), so
  VRoid-aware tools and our own importer split them back into body / clothes / hair;
* VRM 0.x only: the model turned to face -Z, as 0.x files do.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from stdgen.errors import StdgenError
from stdgen.io.glb import GlbBuilder, SceneSpec, build_scene
from stdgen.structures.semantics import PARTS, Part

VRM_VERSIONS: tuple[str, ...] = ("1.0", "0.x")
MATERIAL_STYLES: tuple[str, ...] = ("mtoon", "unlit")
VRM1_LICENSE_URL = "https://vrm.dev/licenses/1.0/"

#: Garment name words -> VRoid's clothing category (checked in order; default Accessory).
_CLOTHING_CATEGORIES: tuple[tuple[str, str], ...] = (
    (r"(?i)one.?piece|dress|robe|gown|kimono", "Onepiece"),
    (r"(?i)shoe|boot|sock|sandal|heel|feet|foot", "Shoes"),
    (r"(?i)skirt|pant|trouser|short|bottom|legging|jean", "Bottoms"),
    (r"(?i)shirt|top|coat|jacket|blouse|sweater|hoodie|vest|sleeve|tee", "Tops"),
)


@dataclass
class VrmMeta:
    """The VRM meta block, in VRM 1.0's terms (0.x fields are derived from these).

    Defaults are the most restrictive choices: only the author may use the avatar, no
    redistribution, no modification, non-profit personal use only, credit required.
    ``authors`` must name who made the model; the CLI defaults it to the user running it.
    """

    name: str = "stdgen character"
    version: str = "1"
    authors: list[str] = field(default_factory=lambda: ["unknown"])
    copyright_information: str = ""
    contact_information: str = ""
    references: list[str] = field(default_factory=list)
    license_url: str = VRM1_LICENSE_URL
    avatar_permission: str = "onlyAuthor"
    commercial_usage: str = "personalNonProfit"
    credit_notation: str = "required"
    allow_redistribution: bool = False
    modification: str = "prohibited"
    allow_excessively_violent_usage: bool = False
    allow_excessively_sexual_usage: bool = False
    allow_political_or_religious_usage: bool = False
    allow_antisocial_or_hate_usage: bool = False
    other_license_url: str = ""

    def __post_init__(self) -> None:
        allowed = {
            "avatar_permission": ("onlyAuthor", "onlySeparatelyLicensedPerson", "everyone"),
            "commercial_usage": ("personalNonProfit", "personalProfit", "corporation"),
            "credit_notation": ("required", "unnecessary"),
            "modification": ("prohibited", "allowModification", "allowModificationRedistribution"),
        }
        for key, values in allowed.items():
            if getattr(self, key) not in values:
                raise StdgenError(f"VRM meta {key} must be one of {values}, got {getattr(self, key)!r}")
        if not self.authors or not all(isinstance(a, str) and a for a in self.authors):
            raise StdgenError("VRM meta needs at least one author")
        if not self.name:
            raise StdgenError("VRM meta needs a name (title)")

    def vrm1(self) -> dict:
        out = {
            "name": self.name, "version": self.version, "authors": list(self.authors),
            "licenseUrl": self.license_url, "avatarPermission": self.avatar_permission,
            "allowExcessivelyViolentUsage": self.allow_excessively_violent_usage,
            "allowExcessivelySexualUsage": self.allow_excessively_sexual_usage,
            "commercialUsage": self.commercial_usage,
            "allowPoliticalOrReligiousUsage": self.allow_political_or_religious_usage,
            "allowAntisocialOrHateUsage": self.allow_antisocial_or_hate_usage,
            "creditNotation": self.credit_notation, "allowRedistribution": self.allow_redistribution,
            "modification": self.modification,
        }
        for key, value in (("copyrightInformation", self.copyright_information),
                           ("contactInformation", self.contact_information),
                           ("otherLicenseUrl", self.other_license_url)):
            if value:
                out[key] = value
        if self.references:
            out["references"] = list(self.references)
        return out

    def vrm0(self) -> dict:
        # VRM 0.x has fewer, coarser fields ("Ussage" is the specification's spelling).
        allowed_user = {"onlyAuthor": "OnlyAuthor", "onlySeparatelyLicensedPerson": "ExplicitlyLicensedPerson",
                        "everyone": "Everyone"}[self.avatar_permission]
        yes_no = lambda b: "Allow" if b else "Disallow"
        if self.license_url == VRM1_LICENSE_URL:
            license_name = "Redistribution_Prohibited" if not self.allow_redistribution else "Other"
        else:
            license_name = "Other"
        return {
            "title": self.name, "version": self.version, "author": ", ".join(self.authors),
            "contactInformation": self.contact_information, "reference": ", ".join(self.references),
            "allowedUserName": allowed_user,
            "violentUssageName": yes_no(self.allow_excessively_violent_usage),
            "sexualUssageName": yes_no(self.allow_excessively_sexual_usage),
            "commercialUssageName": yes_no(self.commercial_usage != "personalNonProfit"),
            "otherPermissionUrl": self.license_url if license_name == "Other" else "",
            "licenseName": license_name, "otherLicenseUrl": self.other_license_url or "",
        }

    @classmethod
    def from_source(cls, vrm_meta: dict, **overrides) -> VrmMeta:
        """The meta of a character imported from a VRM file (its summarised ``vrm_meta``): the
        source's author and licence carry over, because the model is still theirs."""
        m = dict(vrm_meta or {})
        kw: dict = {}
        if "authors" in m or "author" in m:
            a = m.get("authors", m.get("author"))
            kw["authors"] = [str(x) for x in a] if isinstance(a, list) else [str(a)] if a else ["unknown"]
        name = m.get("name") or m.get("title")
        if name:
            kw["name"] = str(name)
        if m.get("version"):
            kw["version"] = str(m["version"])
        if "licenseUrl" in m:  # VRM 1.0 source: copy its permission fields verbatim
            kw["license_url"] = str(m["licenseUrl"])
            for src, dst in (("avatarPermission", "avatar_permission"), ("commercialUsage", "commercial_usage"),
                             ("creditNotation", "credit_notation"), ("modification", "modification"),
                             ("allowRedistribution", "allow_redistribution"),
                             ("copyrightInformation", "copyright_information")):
                if src in m:
                    kw[dst] = m[src]
        elif "licenseName" in m:  # VRM 0.x source: keep its licence by name and link
            kw["other_license_url"] = str(m.get("otherLicenseUrl") or "")
            kw["references"] = [f"source licence: {m['licenseName']}"]
            if m.get("contactInformation"):
                kw["contact_information"] = str(m["contactInformation"])
        kw.update(overrides)
        try:
            return cls(**kw)
        except StdgenError:
            # The source's permission fields are not VRM 1.0 values: keep who and what, and fall
            # back to the restrictive defaults for the rest.
            keep = {k: v for k, v in kw.items() if k in ("authors", "name", "version", "references", "license_url",
                                                         "other_license_url", "copyright_information",
                                                         "contact_information")}
            return cls(**{**keep, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def clothing_category(name: str) -> str:
    """VRoid's clothing category for a garment name (``Tops``, ``Bottoms``, ``Shoes``,
    ``Onepiece``; ``Accessory`` when the name says nothing)."""
    for pattern, category in _CLOTHING_CATEGORIES:
        if re.search(pattern, name or ""):
            return category
    return "Accessory"


def vroid_material_names(character) -> dict[str, list[str]]:
    """VRoid-style material names for every piece of every part (unique within the file)."""
    names = {
        "body": [f"N00_000_00_Body_{i:02d}_SKIN" for i in range(len(character.rest_meshes(Part.BODY)))],
        "clothes": [f"N00_{i + 1:03d}_01_{clothing_category(m.name)}_01_CLOTH"
                    for i, m in enumerate(character.rest_meshes(Part.CLOTHES))],
        "hair": [f"N00_000_Hair_{i:02d}_HAIR" for i in range(len(character.rest_meshes(Part.HAIR)))],
    }
    return names


def _check_exportable(character) -> None:
    from stdgen.io.humanoid import VRM_BONE_PARENTS, VRM_BONES, VRM_REQUIRED_BONES

    skel = character.skeleton
    if skel is None:
        raise StdgenError("VRM export needs a rigged character (a skeleton with skin weights); this one has "
                          "no skeleton")
    missing = [b for b in VRM_REQUIRED_BONES if b not in skel.names]
    if missing:
        raise StdgenError(f"VRM export: the skeleton lacks the required humanoid bones {missing}")
    for part in PARTS:
        for m in character.rest_meshes(part):
            if not m.is_empty and m.skin_joints is None:
                raise StdgenError(f"VRM export: the {part.key} piece {m.name!r} has no skin weights")
    # Humanoid bones must keep the VRM hierarchy: a bone's humanoid ancestor must be one of its
    # standard ancestors (optional bones may be skipped, e.g. no upperChest).
    for j, name in enumerate(skel.names):
        if name not in VRM_BONES or name == "hips":
            continue
        p = int(skel.parents[j])
        while p >= 0 and skel.names[p] not in VRM_BONES:
            p = int(skel.parents[p])
        parent_name = skel.names[p] if p >= 0 else None
        allowed = []
        a = VRM_BONE_PARENTS[name]
        while a is not None:
            allowed.append(a)
            a = VRM_BONE_PARENTS[a]
        if parent_name not in allowed:
            raise StdgenError(f"VRM export: bone {name!r} hangs under {parent_name!r}, which VRM's humanoid "
                              f"does not allow (allowed: {allowed})")


def _mtoon0_properties(name: str, texture_index: int | None, has_alpha_cutout: bool, base_linear) -> dict:
    """VRM 0.x MToon material properties for a lit colour texture and / or colour. VRM 0.x keeps
    colours in sRGB (glTF's baseColorFactor is linear)."""
    from stdgen.utils.color import linear_to_srgb

    tex = {} if texture_index is None else {"_MainTex": texture_index, "_ShadeTexture": texture_index}
    lit = [float(x) for x in linear_to_srgb(np.asarray(base_linear[:3]))] + [1.0]
    shade = [float(c * t) for c, t in zip(lit[:3], (0.78, 0.72, 0.8))] + [1.0]
    return {
        "name": name, "shader": "VRM/MToon", "renderQueue": 2450 if has_alpha_cutout else 2000,
        "keywordMap": {"_ALPHATEST_ON": True} if has_alpha_cutout else {},
        "tagMap": {"RenderType": "TransparentCutout" if has_alpha_cutout else "Opaque"},
        "floatProperties": {"_Cutoff": 0.5, "_BlendMode": 1 if has_alpha_cutout else 0, "_CullMode": 2,
                            "_ShadeShift": -0.05, "_ShadeToony": 0.9, "_ReceiveShadowRate": 1,
                            "_ShadingGradeRate": 1, "_LightColorAttenuation": 0, "_IndirectLightIntensity": 0.1,
                            "_OutlineWidthMode": 0, "_MToonVersion": 38},
        "vectorProperties": {"_Color": lit, "_ShadeColor": shade,
                             "_MainTex": [0, 0, 1, 1], "_ShadeTexture": [0, 0, 1, 1]},
        "textureProperties": tex,
    }


def t_posed(character, tol_deg: float = 5.0):
    """``character`` re-rested in a T-pose (VRM wants one: apps retarget animations from it).

    If the rest pose's upper arms are more than ``tol_deg`` off horizontal (hand-made models often
    droop a few degrees, which VRM apps accept, so those are left alone), the arms are raised
    to horizontal (keeping their heading; legs untouched) by skinning, and the result becomes the
    new rest: the pieces' vertices and the skeleton's joints move, the weights stay. Returns the
    character at rest (``pose=None``) either way."""
    from stdgen.data.posing import a_pose, upper_arm_angle
    from stdgen.structures.character import Character, Pose, Skeleton, skin_vertices

    skel = character.skeleton
    sides = [s for s in ("left", "right") if f"{s}UpperArm" in skel.names and f"{s}LowerArm" in skel.names]
    if all(abs(upper_arm_angle(skel, None, s)) <= tol_deg for s in sides):
        return character.with_pose(None)
    rot = a_pose(skel, 0.0).rotations.copy()
    for name in ("leftUpperLeg", "rightUpperLeg", "leftFoot", "rightFoot"):
        if name in skel.names:  # a_pose also spreads the legs: undo that, only the arms move
            rot[skel.index(name)] = np.eye(3, dtype=np.float32)
    pose = Pose(rot)
    new_skel = Skeleton(skel.names, skel.parents, skel.posed_joints(pose))

    def rest(m):
        if m.is_empty:
            return m
        return m.replace(vertices=skin_vertices(m.vertices, m.skin_joints, m.skin_weights, skel, pose),
                         normals=None)

    return Character(rest(character.body), [rest(m) for m in character.clothes],
                     [rest(m) for m in character.hair], new_skel, None, dict(character.meta))


def _material_ready(mesh):
    """MToon and most avatar apps ignore vertex colours: bake varying ones into a texture."""
    from stdgen.export.bake import bake_vertex_colors, uniform_color

    if mesh.texture is None and mesh.colors is not None and uniform_color(mesh) is None and not mesh.is_empty:
        return bake_vertex_colors(mesh)
    return mesh


def vrm_bytes(character, *, version: str = "1.0", meta: VrmMeta | None = None, material: str = "mtoon") -> bytes:
    """The bytes of the VRM file :func:`write_vrm` writes."""
    from stdgen.io.humanoid import VRM1_TO_VRM0, VRM_BONES
    from stdgen.io.vrm import VRM0_FACING

    if version not in VRM_VERSIONS:
        raise StdgenError(f"VRM version must be one of {VRM_VERSIONS}, got {version!r}")
    if material not in MATERIAL_STYLES:
        raise StdgenError(f"VRM material must be one of {MATERIAL_STYLES}, got {material!r}")
    _check_exportable(character)
    character = t_posed(character)
    if meta is None:
        src = character.meta.get("vrm_meta") if isinstance(character.meta, dict) else None
        meta = VrmMeta.from_source(src) if src else VrmMeta(name=str(character.meta.get("title") or "stdgen character"))
    rotation = VRM0_FACING if version == "0.x" else np.eye(3)
    b = GlbBuilder()
    # VRM 0.x MToon is described in the VRM extension, so the glTF materials there are unlit.
    style = material if version == "1.0" else "unlit"
    spec = SceneSpec({p.key: [_material_ready(m) for m in character.rest_meshes(p)] for p in PARTS},
                     material_names=vroid_material_names(character), skeleton=character.skeleton, pose=None,
                     material=style, rotation=rotation)
    built = build_scene(b, spec)
    skel = character.skeleton
    bones = {name: built.joints[j] for j, name in enumerate(skel.names) if name in VRM_BONES}
    if version == "1.0":
        ext = {"specVersion": "1.0", "meta": meta.vrm1(),
               "humanoid": {"humanBones": {name: {"node": node} for name, node in bones.items()}}}
        b.gltf.extensions = {"VRMC_vrm": ext}
        b.use_extension("VRMC_vrm")
    else:
        props = []
        for mat in b.gltf.materials:
            tex = mat.pbrMetallicRoughness.baseColorTexture
            props.append(_mtoon0_properties(mat.name, tex.index if tex is not None else None,
                                            mat.alphaMode == "MASK", mat.pbrMetallicRoughness.baseColorFactor)
                         if material == "mtoon"
                         else {"name": mat.name, "shader": "VRM_USE_GLTFSHADER", "renderQueue": 2000,
                               "keywordMap": {}, "tagMap": {}, "floatProperties": {}, "vectorProperties": {},
                               "textureProperties": {}})
        head = built.joints[skel.index("head")]
        ext = {
            "exporterVersion": b.gltf.asset.generator, "specVersion": "0.0", "meta": meta.vrm0(),
            "humanoid": {"humanBones": [{"bone": VRM1_TO_VRM0.get(name, name), "node": node, "useDefaultValues": True}
                                        for name, node in bones.items()],
                         "armStretch": 0.05, "legStretch": 0.05, "upperArmTwist": 0.5, "lowerArmTwist": 0.5,
                         "upperLegTwist": 0.5, "lowerLegTwist": 0.5, "feetSpacing": 0, "hasTranslationDoF": False},
            "firstPerson": {"firstPersonBone": head, "firstPersonBoneOffset": {"x": 0, "y": 0.06, "z": 0},
                            "meshAnnotations": [], "lookAtTypeName": "Bone"},
            "blendShapeMaster": {"blendShapeGroups": []},
            "secondaryAnimation": {"boneGroups": [], "colliderGroups": []},
            "materialProperties": props,
        }
        b.gltf.extensions = {"VRM": ext}
        b.use_extension("VRM")
    return b.finish()


def write_vrm(character, path: str | os.PathLike, *, version: str = "1.0", meta: VrmMeta | None = None,
              material: str = "mtoon") -> None:
    """Write ``character`` (with a humanoid skeleton and skin weights) as a VRM file, atomically.

    ``version`` ``"1.0"`` (default) or ``"0.x"``; ``meta`` the avatar's meta (default: carried
    over from an imported source file, else :class:`VrmMeta`'s restrictive defaults);
    ``material`` ``"mtoon"`` or ``"unlit"``. Raises :class:`~stdgen.errors.StdgenError` for a
    character VRM cannot hold (no skeleton, missing required bones, unskinned pieces).
    """
    from stdgen.utils.io import atomic_write

    data = vrm_bytes(character, version=version, meta=meta, material=material)
    with atomic_write(path) as f:
        f.write(data)
