"""VRM export: round trips through our importer, meta, materials, errors, the export CLI."""

import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from stdgen.data.posing import a_pose
from stdgen.data.vrm import VrmImportConfig, import_vrm
from stdgen.errors import StdgenError
from stdgen.export.bake import bake_vertex_colors, uniform_color
from stdgen.export.vrm import VrmMeta, clothing_category, vrm_bytes, write_vrm
from stdgen.io.glb import read_character_glb, write_glb
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import PARTS, Part

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from vrm_fixtures import capsule_character, procedural_character  # noqa: E402

ROUND_TRIP = VrmImportConfig(pose="rest", drop_transparent=False)


#: The characters the round trips use: the procedural one (seed 3) and the hand-built capsule
#: character (per-corner UVs, a one-colour garment).
CHARACTERS = {"capsule": capsule_character, "procedural": procedural_character}


def _assert_same_character(got, want):
    height = want.height
    tol = 1e-5 * height
    assert got.skeleton.names == want.skeleton.names
    np.testing.assert_array_equal(got.skeleton.parents, want.skeleton.parents)
    np.testing.assert_allclose(got.skeleton.joints, want.skeleton.joints, atol=tol)
    for part in PARTS:
        a, b = want.part(part), got.part(part)
        assert b.num_faces == a.num_faces, part
        # Same triangles, corner by corner (files split vertices at UV seams; the importer welds).
        np.testing.assert_allclose(b.vertices[b.faces], a.vertices[a.faces], atol=tol)
        if a.texture is not None:
            np.testing.assert_array_equal(b.texture, a.texture)
            ua = a.uvs[a.uv_faces if a.uv_faces is not None else a.faces]
            ub = b.uvs[b.uv_faces if b.uv_faces is not None else b.faces]
            np.testing.assert_allclose(ub, ua, atol=1e-6)
        elif a.colors is not None:
            np.testing.assert_allclose(b.colors[b.faces], a.colors[a.faces], atol=2e-3)
        # Same skinning (weights renormalised to float32 on the way).
        ja = a.skin_joints[a.faces.reshape(-1)]
        wa = a.skin_weights[a.faces.reshape(-1)]
        jb = b.skin_joints[b.faces.reshape(-1)]
        wb = b.skin_weights[b.faces.reshape(-1)]
        dense_a = np.zeros((len(ja), len(want.skeleton)))
        dense_b = np.zeros_like(dense_a)
        np.add.at(dense_a, (np.repeat(np.arange(len(ja)), ja.shape[1]), ja.reshape(-1)), wa.reshape(-1))
        np.add.at(dense_b, (np.repeat(np.arange(len(jb)), jb.shape[1]), jb.reshape(-1)), wb.reshape(-1))
        np.testing.assert_allclose(dense_b, dense_a, atol=1e-6)


@pytest.mark.parametrize("name", ["procedural", "capsule"])
@pytest.mark.parametrize("version", ["1.0", "0.x"])
def test_character_round_trips_through_vrm(tmp_path, version, name):
    ch = CHARACTERS[name]()
    path = tmp_path / "c.vrm"
    write_vrm(ch, path, version=version)
    result = import_vrm(path, ROUND_TRIP)
    assert result.report["vrm_version"] == version
    assert result.report["warnings"] == []
    _assert_same_character(result.character, ch)


def test_capsule_character_round_trips_with_a_pose(tmp_path):
    ch = capsule_character()
    write_vrm(ch, tmp_path / "c.vrm")
    got = import_vrm(tmp_path / "c.vrm").character  # A-posed like the original would be
    want = ch.with_pose(a_pose(ch.skeleton))
    for part in PARTS:
        a, b = want.part(part), got.part(part)
        np.testing.assert_allclose(b.vertices[b.faces], a.vertices[a.faces], atol=1e-5 * want.height)


def test_skinned_glb_reads_back_as_the_same_character(tmp_path):
    ch = capsule_character()
    ch = ch.with_pose(a_pose(ch.skeleton))
    write_glb(ch, tmp_path / "c.glb", skinned=True)
    got = read_character_glb(tmp_path / "c.glb")
    _assert_same_character(got.with_pose(None), ch.with_pose(None))
    np.testing.assert_allclose(got.pose.rotations, ch.pose.rotations, atol=1e-5)
    np.testing.assert_allclose(got.pose.translation, ch.pose.translation, atol=1e-6)
    for part in PARTS:  # posed as written
        np.testing.assert_allclose(got.part(part).vertices[got.part(part).faces],
                                   ch.part(part).vertices[ch.part(part).faces], atol=1e-5)


def test_vrm_json_has_humanoid_meta_and_vroid_material_names():
    ch = capsule_character()
    g = pygltflib.GLTF2.load_from_bytes(vrm_bytes(ch, meta=VrmMeta(name="Capsule", authors=["Tester"])))
    ext = g.extensions["VRMC_vrm"]
    assert ext["specVersion"] == "1.0"
    bones = ext["humanoid"]["humanBones"]
    assert set(bones) == set(ch.skeleton.names)
    for name, entry in bones.items():
        assert g.nodes[entry["node"]].name == name
        assert not g.nodes[entry["node"]].rotation  # rest pose, world-aligned bones
    meta = ext["meta"]
    assert meta["name"] == "Capsule" and meta["authors"] == ["Tester"]
    assert meta["avatarPermission"] == "onlyAuthor" and meta["allowRedistribution"] is False
    assert meta["modification"] == "prohibited" and meta["commercialUsage"] == "personalNonProfit"
    names = [m.name for m in g.materials]
    assert names == ["N00_000_00_Body_00_SKIN", "N00_001_01_Tops_01_CLOTH", "N00_002_01_Bottoms_01_CLOTH",
                     "N00_000_Hair_00_HAIR"]
    assert all("VRMC_materials_mtoon" in m.extensions for m in g.materials)
    # Textured pieces carry their texture; the one-colour shirt its colour as the material's.
    assert g.materials[0].pbrMetallicRoughness.baseColorTexture is not None
    assert g.materials[1].pbrMetallicRoughness.baseColorTexture is None
    shirt = np.array(g.materials[1].pbrMetallicRoughness.baseColorFactor[:3])
    assert shirt[0] > 0.5 > shirt[2]  # red
    # Skins: inverse bind matrices undo the rest joints.
    assert len(g.skins) == 1 and len(g.skins[0].joints) == len(ch.skeleton)


def test_vrm0_meta_and_facing():
    ch = capsule_character()
    g = pygltflib.GLTF2.load_from_bytes(vrm_bytes(ch, version="0.x"))
    ext = g.extensions["VRM"]
    assert ext["meta"]["allowedUserName"] == "OnlyAuthor" and ext["meta"]["licenseName"] == "Redistribution_Prohibited"
    bones = {b["bone"]: b["node"] for b in ext["humanoid"]["humanBones"]}
    assert len(bones) == len(ch.skeleton)
    # 0.x faces -Z: the left hand's joint is at -X in the file.
    hand = g.nodes[bones["leftHand"]]
    x = 0.0
    i = bones["leftHand"]
    parents = {c: p for p, n in enumerate(g.nodes) for c in (n.children or [])}
    while i is not None:
        x += g.nodes[i].translation[0]
        i = parents.get(i)
    assert hand is not None and x < 0
    assert [p["shader"] for p in ext["materialProperties"]] == ["VRM/MToon"] * 4


def test_meta_from_an_imported_source_keeps_author_and_licence():
    m = VrmMeta.from_source({"name": "Src", "authors": ["A", "B"], "licenseUrl": "https://example.org/l",
                             "avatarPermission": "everyone", "allowRedistribution": True,
                             "modification": "allowModification"})
    assert m.authors == ["A", "B"] and m.license_url == "https://example.org/l"
    assert m.avatar_permission == "everyone" and m.allow_redistribution and m.modification == "allowModification"
    m0 = VrmMeta.from_source({"title": "Godette", "author": "SirRichard94", "licenseName": "CC_BY"})
    assert m0.authors == ["SirRichard94"] and m0.name == "Godette" and "CC_BY" in m0.references[0]
    with pytest.raises(StdgenError, match="avatar_permission"):
        VrmMeta(avatar_permission="anyone")
    with pytest.raises(StdgenError, match="author"):
        VrmMeta(authors=[])


def test_unexportable_characters_are_user_errors():
    ch = capsule_character()
    with pytest.raises(StdgenError, match="no skeleton"):
        vrm_bytes(ch.__class__(ch.body, skeleton=None))
    skel = ch.skeleton
    renamed = skel.__class__([n if n != "leftFoot" else "leftFootX" for n in skel.names], skel.parents, skel.joints)
    with pytest.raises(StdgenError, match="leftFoot"):
        vrm_bytes(ch.__class__(ch.body, ch.clothes, ch.hair, renamed))
    bare = ch.body.replace(skin_joints=None, skin_weights=None)
    with pytest.raises(StdgenError, match="no skin weights"):
        vrm_bytes(ch.__class__(bare, ch.clothes, ch.hair, skel))
    with pytest.raises(StdgenError, match="version"):
        vrm_bytes(ch, version="2.0")


def test_clothing_categories():
    assert [clothing_category(n) for n in ("shirt", "long_skirt", "boots", "dress", "ribbon", "")] == \
        ["Tops", "Bottoms", "Shoes", "Onepiece", "Accessory", "Accessory"]


def test_baked_vertex_colours_render_like_the_vertex_colours():
    import trimesh

    from stdgen.render.camera import orthographic_cameras
    from stdgen.render.scene import render_mesh

    tm = trimesh.creation.icosphere(2)
    v = np.asarray(tm.vertices, np.float32)
    colors = np.stack([(v[:, 0] + 1) / 2, (v[:, 1] + 1) / 2, 0.3 + 0 * v[:, 2]], 1)
    mesh = Mesh(v, tm.faces, colors=colors)
    assert uniform_color(mesh) is None and uniform_color(mesh.replace(colors=np.full_like(colors, 0.4))) is not None
    baked = bake_vertex_colors(mesh, size=128)
    assert baked.texture.shape == (128, 128, 3) and baked.colors is None
    np.testing.assert_array_equal(baked.faces, mesh.faces)
    cams = orthographic_cameras([0.0, 180.0], 20.0, half_size=1.2)
    a = render_mesh(mesh, cams, 64, shading="flat").rgb.numpy()
    b = render_mesh(baked, cams, 64, shading="flat").rgb.numpy()
    diff = np.abs(a - b).max(-1)
    # Alike everywhere but a few pixels where a chart seam meets a texel edge.
    assert diff.mean() < 0.005 and np.quantile(diff, 0.995) < 0.05


def _cli(capsys, *args):
    """Run the CLI in this process (as ``stdgen ARGS``); returns (exit status, stdout, stderr)."""
    from stdgen.cli import main

    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_export_cli_glb_to_vrm_and_back(tmp_path, capsys):
    ch = capsule_character()
    ch = ch.with_pose(a_pose(ch.skeleton))
    write_glb(ch, tmp_path / "character.glb", skinned=True)
    status, _, err = _cli(capsys, "export", str(tmp_path), "--format", "vrm", "-o", str(tmp_path / "c.vrm"),
                          "--author", "Me", "--title", "Caps")
    assert status == 0, err
    result = import_vrm(tmp_path / "c.vrm", ROUND_TRIP)
    assert result.report["meta"]["authors"] == ["Me"] and result.report["meta"]["name"] == "Caps"
    _assert_same_character(result.character, ch.with_pose(None))
    status, _, err = _cli(capsys, "export", str(tmp_path / "character.glb"), "--format", "glb",
                          "-o", str(tmp_path / "again.glb"))
    assert status == 0, err
    _assert_same_character(read_character_glb(tmp_path / "again.glb").with_pose(None), ch.with_pose(None))
    # An unrigged GLB cannot become a VRM: one line, exit status 2.
    write_glb({Part.BODY: ch.body}, tmp_path / "plain.glb")
    status, _, err = _cli(capsys, "export", str(tmp_path / "plain.glb"), "--format", "vrm", "-o",
                          str(tmp_path / "p.vrm"))
    assert status == 2 and "no skeleton" in err and err.count("\n") == 1
    assert not (tmp_path / "p.vrm").exists()


def test_a_posed_rest_is_exported_as_a_t_pose(tmp_path):
    from stdgen.data.posing import leg_spread_angle, upper_arm_angle
    from stdgen.export.vrm import t_posed
    from stdgen.structures.character import Character, Skeleton

    ch = capsule_character()
    assert t_posed(ch).body is ch.body  # already a T-pose: untouched
    # Make the A-pose the rest pose (as a character built in A-pose would have it).
    posed = ch.with_pose(a_pose(ch.skeleton))
    a_rest = Character(posed.part(Part.BODY), [posed.part(Part.CLOTHES)], [posed.part(Part.HAIR)],
                       Skeleton(ch.skeleton.names, ch.skeleton.parents, posed.posed_joints()))
    assert upper_arm_angle(a_rest.skeleton, None) > 40
    write_vrm(a_rest, tmp_path / "a.vrm")
    got = import_vrm(tmp_path / "a.vrm", ROUND_TRIP).character
    for side in ("left", "right"):
        assert abs(upper_arm_angle(got.skeleton, None, side)) < 1.0
        assert abs(leg_spread_angle(got.skeleton, None, side) - leg_spread_angle(a_rest.skeleton, None, side)) < 1e-3
    for part in PARTS:
        assert got.part(part).num_faces == a_rest.part(part).num_faces
    # Posed back to the A-pose, it is the character we started from (up to blend-skinning error
    # near the shoulders).
    back = got.with_pose(a_pose(got.skeleton))
    err = np.abs(back.part(Part.BODY).vertices[back.part(Part.BODY).faces]
                 - posed.part(Part.BODY).vertices[posed.part(Part.BODY).faces]).max(-1)
    assert np.median(err) < 1e-4 and err.max() < 0.05
