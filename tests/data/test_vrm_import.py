"""VRM import: real sample files, facing, A-posing, weights, the part split and its rules."""

import functools
import io
import math
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from stdgen.data.posing import upper_arm_angle
from stdgen.data.vrm import SkipImport, VrmImportConfig, import_vrm, load_part_rules
from stdgen.data.vrm.split import parse_part_rules
from stdgen.errors import InputError
from stdgen.io.vrm import extract_primitives, read_vrm, weld_vertices
from stdgen.structures.character import Pose
from stdgen.structures.semantics import PARTS, Part

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared" / "data" / "vrm"
sys.path.insert(0, str(FIXTURES))
from vrm_fixtures import capsule_character  # noqa: E402

GODETTE = FIXTURES / "Godette_vrm_v4.vrm"
ROBOT = FIXTURES / "debug_robot.vrm"
# The other samples live in the shared folder beside the repository (present here and in CI).
OTHER_SAMPLES = ("01_Crimsom_Avatar.vrm", "VRMC_vrm_expressions_isBinary_Overrides.vrm",
                 "VRMC_materials_mtoon_UV_Animation_Test.vrm")
SAMPLES = [GODETTE, ROBOT] + [SHARED / n for n in OTHER_SAMPLES]
T_POSE_SAMPLES = [GODETTE, SHARED / "01_Crimsom_Avatar.vrm"]
REST = VrmImportConfig(pose="rest", drop_transparent=False, weld=False)


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"sample {path} is not there (the shared folder is missing)")
    return path


def _file_triangles(path: Path) -> int:
    """Triangles the file draws, counted by trimesh (an independent reader), instances included."""
    scene = trimesh.load(path, file_type="glb", process=False, force="scene")
    return sum(len(scene.geometry[scene.graph[n][1]].faces) for n in scene.graph.nodes_geometry)


@functools.lru_cache(maxsize=32)
def _file_image(path: Path, material_name: str) -> np.ndarray:
    """The base-colour image of a material, decoded straight from the file with pygltflib + PIL."""
    g = pygltflib.GLTF2().load_binary(str(path))
    mat = next(m for m in g.materials if m.name == material_name)
    tex = g.textures[mat.pbrMetallicRoughness.baseColorTexture.index]
    bv = g.bufferViews[g.images[tex.source].bufferView]
    blob = g.binary_blob()
    with Image.open(io.BytesIO(blob[bv.byteOffset or 0:(bv.byteOffset or 0) + bv.byteLength])) as im:
        alpha = "A" in im.mode or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if alpha else "RGB"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_imports_with_the_files_triangles_and_textures(path):
    path = _need(path)
    result = import_vrm(path, REST)
    ch = result.character
    total = sum(ch.part(p).num_faces for p in PARTS)
    assert total == _file_triangles(path)
    assert sum(r["triangles"] for r in result.report["primitives"]) == total
    # Every primitive's texture is the file's image of its material (or, when that image is one
    # colour, the primitive carries that colour).
    doc = read_vrm(path)
    prims, _ = extract_primitives(doc, drop_transparent=False)
    checked = 0
    for p in prims:
        mat = p.names["material"]
        g = doc.gltf.doc.materials[[m.name for m in doc.gltf.doc.materials].index(mat)] if mat else None
        if g is None or g.pbrMetallicRoughness is None or g.pbrMetallicRoughness.baseColorTexture is None:
            continue
        image = _file_image(path, mat)
        if p.texture is not None:
            np.testing.assert_array_equal(p.texture, image)
        else:
            assert p.info.get("constant_texture")
            np.testing.assert_allclose(p.colors[0], image.reshape(-1, image.shape[2])[0, :3] / 255.0, atol=1e-6)
        checked += 1
    assert checked > 0
    # Weights sum to one and point at real bones.
    for part in PARTS:
        for m in ch.rest_meshes(part):
            np.testing.assert_allclose(m.skin_weights.sum(1), 1.0, atol=1e-5)
            assert m.skin_joints.min() >= 0 and m.skin_joints.max() < len(ch.skeleton)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_imported_characters_face_plus_z_with_left_on_plus_x(path):
    path = _need(path)
    skel = import_vrm(path, REST).character.skeleton
    j = {n: skel.joints[i] for i, n in enumerate(skel.names)}
    assert j["leftUpperArm"][0] > j["hips"][0] > j["rightUpperArm"][0]
    assert j["leftUpperLeg"][0] > j["rightUpperLeg"][0]
    assert j["head"][1] > j["hips"][1] > j["leftFoot"][1]
    if "leftToes" in j:  # toes point forward: a rotation to +Z, not a mirror
        assert j["leftToes"][2] > j["leftFoot"][2]


def test_vrm0_is_turned_not_mirrored():
    # Godette (0.x) faces -Z in the file: her toes there point to -Z. After import, +Z.
    doc = read_vrm(GODETTE)
    world = doc.gltf.world_matrices()
    foot, toes = doc.bones["leftFoot"], doc.bones["leftToes"]
    assert world[toes][2, 3] < world[foot][2, 3]
    skel = import_vrm(GODETTE, REST).character.skeleton
    assert skel.joints[skel.index("leftToes")][2] > skel.joints[skel.index("leftFoot")][2]
    # Her left hand is at -X in the 0.x file (facing -Z), +X after the half turn.
    assert world[doc.bones["leftHand"]][0, 3] < 0 < skel.joints[skel.index("leftHand")][0]


@pytest.mark.parametrize("path", T_POSE_SAMPLES, ids=lambda p: p.name)
def test_t_pose_files_come_out_in_a_pose(path):
    path = _need(path)
    ch = import_vrm(path).character  # default: A-pose
    for side in ("left", "right"):
        assert upper_arm_angle(ch.skeleton, None, side) < 10  # the file really is a T-pose
        assert abs(upper_arm_angle(ch.skeleton, ch.pose, side) - 45) <= 2
    # The mesh follows: vertices carried by the forearm now lie about 45 degrees below the
    # shoulder joint (they were near horizontal at rest).
    body = ch.part(Part.BODY)
    rest = ch.rest_meshes(Part.BODY)[0]
    fore = ch.skeleton.index("leftLowerArm")
    sel = (rest.skin_joints[:, 0] == fore) & (rest.skin_weights[:, 0] > 0.9)
    assert sel.sum() > 5
    shoulder = ch.posed_joints()[ch.skeleton.index("leftUpperArm")]
    d = body.vertices[sel].mean(0) - shoulder
    angle = math.degrees(math.atan2(-d[1], math.hypot(d[0], d[2])))
    d0 = rest.vertices[sel].mean(0) - ch.skeleton.joints[ch.skeleton.index("leftUpperArm")]
    angle0 = math.degrees(math.atan2(-d0[1], math.hypot(d0[0], d0[2])))
    assert angle0 < 12 and 38 < angle < 52


def test_posing_with_the_rest_pose_returns_the_rest_mesh():
    ch = import_vrm(GODETTE, REST).character
    # Rotations that are the identity only up to rounding, so the full skinning path runs.
    n = len(ch.skeleton)
    a = np.deg2rad(30.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    almost = np.tile(rz @ rz.T, (n, 1, 1))
    pose = Pose(almost)
    assert not pose.is_identity()
    rest = ch.part(Part.BODY)
    posed = ch.with_pose(pose).part(Part.BODY)
    np.testing.assert_allclose(posed.vertices, rest.vertices, atol=1e-5)


def test_godette_is_body_only_with_a_warning_and_skipped_when_all_parts_are_required():
    result = import_vrm(GODETTE)
    assert result.character.clothes == [] and result.character.hair == []
    assert any("body only" in w for w in result.report["warnings"])
    assert all(r["part"] == "body" for r in result.report["primitives"])
    why = {r["material"]: r["why"] for r in result.report["primitives"]}
    assert why["Body"].startswith("material name 'Body' matches /")
    assert why["Backpack"].startswith("mesh name 'BodyMesh' matches /")  # no rule for the material
    with pytest.raises(SkipImport, match="cannot be split"):
        import_vrm(GODETTE, VrmImportConfig(require_all_parts=True))


def test_vroid_named_file_splits_into_three_parts(tmp_path):
    from stdgen.export.vrm import write_vrm

    ch = capsule_character()
    write_vrm(ch, tmp_path / "c.vrm")
    result = import_vrm(tmp_path / "c.vrm", VrmImportConfig(require_all_parts=True))
    got = result.character
    assert [m.num_faces for m in got.clothes] == [m.num_faces for m in ch.clothes]
    assert got.hair[0].num_faces == ch.hair[0].num_faces
    parts = {r["material"]: r["part"] for r in result.report["primitives"]}
    assert parts == {"N00_000_00_Body_00_SKIN": "body", "N00_001_01_Tops_01_CLOTH": "clothes",
                     "N00_002_01_Bottoms_01_CLOTH": "clothes", "N00_000_Hair_00_HAIR": "hair"}


def test_part_rules_are_overridable(tmp_path):
    # Godette's backpack is an accessory: a user's rules can say so.
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {pattern: Backpack, part: clothes}\n  - {pattern: '.', part: body}\n")
    result = import_vrm(GODETTE, VrmImportConfig(parts=rules))
    assert [r["part"] for r in result.report["primitives"] if r["material"] == "Backpack"] == ["clothes"]
    assert len(result.character.clothes) == 1 and result.character.clothes[0].num_faces == 368
    assert result.report["part_rules"] == str(rules)


@pytest.mark.parametrize("data, message", [
    ({"rules": []}, "non-empty list"),
    ({"rules": [{"pattern": "(", "part": "body"}]}, "bad pattern"),
    ({"rules": [{"pattern": "x", "part": "shoes"}]}, "part must be"),
    ({"rules": [{"pattern": "x", "part": "body"}], "colour": 1}, "unknown keys"),
    ({"rules": [{"pattern": "x", "part": "body"}], "match_order": ["texture"]}, "match_order"),
])
def test_bad_part_rules_are_user_errors(data, message):
    with pytest.raises(InputError, match=message):
        parse_part_rules(data, "rules.yaml")


def test_default_rules_follow_vroid_naming():
    rules = load_part_rules()
    cases = {
        "N00_000_00_Body_00_SKIN (Instance)": Part.BODY, "N00_000_00_FaceMouth_00_FACE (Instance)": Part.BODY,
        "N00_000_00_EyeIris_00_EYE (Instance)": Part.BODY, "N00_000_00_FaceBrow_00_FACE": Part.BODY,
        "N00_000_Hair_00_HAIR_01 (Instance)": Part.HAIR, "N00_000_00_HairBack_00_HAIR": Part.HAIR,
        "N00_001_01_Tops_01_CLOTH (Instance)": Part.CLOTHES, "N00_002_03_Bottoms_01_CLOTH": Part.CLOTHES,
        "N00_007_01_Shoes_01_CLOTH": Part.CLOTHES, "N00_010_01_Onepiece_00_CLOTH": Part.CLOTHES,
        "N00_000_00_Accessory_CLOTH": Part.CLOTHES, "N00_000_00_EyeExtra_01_EYE": Part.BODY,
    }
    for name, part in cases.items():
        assert rules.classify({"material": name, "mesh": "Body", "node": "Body"})[0] == part, name
    # The material decides before the mesh: VRoid's "Body" mesh also holds the garments.
    assert rules.classify({"material": "Tops", "mesh": "Body"})[0] == Part.CLOTHES
    # Only the mesh name known: it decides.
    assert rules.classify({"material": None, "mesh": "Hair001"})[0] == Part.HAIR


def test_weld_merges_seam_duplicates_only():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    uv = np.array([[0, 0], [0.5, 0], [0, 0.5], [0.6, 0], [1, 1], [0, 0.6]], np.float32)
    from stdgen.structures.mesh import Mesh

    m = weld_vertices(Mesh(v, f, uvs=uv))
    assert m.num_vertices == 4
    np.testing.assert_array_equal(m.vertices[m.faces], v[f])  # same triangles
    np.testing.assert_array_equal(m.uvs[m.uv_faces], uv[f])  # same UVs per corner
    # Different normals keep vertices apart (hard edges stay hard).
    n = np.array([[0, 0, 1]] * 3 + [[0, 1, 0]] * 3, np.float32)
    assert weld_vertices(Mesh(v, f, uvs=uv, normals=n)).num_vertices == 6


def test_cut_out_triangles_are_dropped_and_reported(tmp_path):
    from stdgen.export.vrm import write_vrm

    ch = capsule_character()
    hair = ch.hair[0]
    # Make the left half of the hair texture fully transparent: triangles mapped only there are
    # cut-outs (eyelash-style), the others stay.
    tex = np.concatenate([hair.texture, np.full(hair.texture.shape[:2] + (1,), 255, np.uint8)], 2)
    tex[:, : tex.shape[1] // 2, 3] = 0
    ch.hair[0] = hair.replace(texture=tex)
    write_vrm(ch, tmp_path / "c.vrm")
    corner_u = hair.uvs[hair.uv_faces][..., 0]
    expect = int((corner_u.max(1) < 0.45).sum())  # all of a face well inside the clear half
    assert 0 < expect < hair.num_faces
    result = import_vrm(tmp_path / "c.vrm")
    record = next(r for r in result.report["primitives"] if r["part"] == "hair")
    assert record["alpha_mode"] == "MASK"
    dropped = record["dropped_transparent"]
    assert expect <= dropped <= int((corner_u.min(1) < 0.5).sum())
    assert result.character.hair[0].num_faces == hair.num_faces - dropped
    kept = import_vrm(tmp_path / "c.vrm", VrmImportConfig(drop_transparent=False)).character
    assert kept.hair[0].num_faces == hair.num_faces


def test_repeating_uvs_are_shifted_per_face():
    from stdgen.io.vrm import _wrap_uvs_per_face

    uv = np.array([[1.1, 0.2], [1.4, 0.2], [1.1, 0.6], [-0.9, -0.5], [-0.6, -0.5], [-0.9, -0.1]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    corner, uv_faces = _wrap_uvs_per_face(uv, faces, (10497, 10497))
    np.testing.assert_allclose(corner[uv_faces[0]], [[0.1, 0.2], [0.4, 0.2], [0.1, 0.6]], atol=1e-12)
    np.testing.assert_allclose(corner[uv_faces[1]], [[0.1, 0.5], [0.4, 0.5], [0.1, 0.9]], atol=1e-12)
    mirrored, _ = _wrap_uvs_per_face(uv, faces, (33648, 10497))  # u mirrored in odd tiles
    np.testing.assert_allclose(mirrored[:3, 0], [0.9, 0.6, 0.9], atol=1e-12)


def test_vertices_without_weights_stay_in_place_on_the_nearest_bone(tmp_path):
    import struct

    from stdgen.export.vrm import vrm_bytes
    from stdgen.io.vrm import extract_primitives

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_vrm_malformed import join_glb, split_glb

    data = vrm_bytes(capsule_character())
    doc, blob = split_glb(data)
    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"][prim["attributes"]["WEIGHTS_0"]]
    view = doc["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    b = bytearray(blob)
    b[start:start + 10 * 16] = struct.pack("<40f", *([0.0] * 40))  # the first ten vertices: no weight
    path = tmp_path / "w.vrm"
    path.write_bytes(join_glb(doc, bytes(b)))
    pos_acc = doc["accessors"][prim["attributes"]["POSITION"]]
    pview = doc["bufferViews"][pos_acc["bufferView"]]
    p0 = pview.get("byteOffset", 0) + pos_acc.get("byteOffset", 0)
    raw = np.frombuffer(blob, np.float32, 30, p0).reshape(10, 3)
    prims, _ = extract_primitives(read_vrm(path), drop_transparent=False)
    np.testing.assert_allclose(prims[0].vertices[:10], raw, atol=1e-6)  # not collapsed to the origin
    assert (prims[0].influence_weights[:10, 0] == 1).all()
    np.testing.assert_allclose(prims[0].influence_weights.sum(1), 1.0, atol=1e-6)


def test_morph_targets_apply_at_their_default_weights(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_vrm_malformed import join_glb, split_glb

    doc, blob = split_glb(GODETTE.read_bytes())
    face = doc["meshes"][0]
    assert len(face["primitives"][0]["targets"]) > 1
    face["weights"] = [0.5] + [0.0] * (len(face["primitives"][0]["targets"]) - 1)
    path = tmp_path / "smile.vrm"
    path.write_bytes(join_glb(doc, blob))
    base, _ = extract_primitives(read_vrm(GODETTE), drop_transparent=False)
    morphed, _ = extract_primitives(read_vrm(path), drop_transparent=False)
    delta_acc = read_vrm(GODETTE).gltf.accessor(face["primitives"][0]["targets"][0]["POSITION"])
    # The face's skin is at its bind pose, so the displacement is the target's, turned to face +Z.
    expect = 0.5 * delta_acc.astype(np.float64) * np.array([-1.0, 1.0, -1.0])
    np.testing.assert_allclose(morphed[0].vertices - base[0].vertices, expect, atol=1e-6)
    assert np.abs(expect).max() > 1e-3  # the target really moves something
