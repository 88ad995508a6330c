"""GLB write -> read round trips and malformed-input errors."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from stdgen.errors import InputError
from stdgen.io.glb import read_glb, write_glb
from stdgen.structures.character import Character, Pose, Skeleton
from stdgen.structures.mesh import Mesh


def _sphere(scale=1.0, **kw) -> Mesh:
    tm = trimesh.creation.icosphere(2)
    return Mesh(tm.vertices * scale, tm.faces, **kw)


def test_textured_and_coloured_parts_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    base = _sphere()
    f = base.num_faces
    uvs = rng.random((3 * f, 2)).astype(np.float32)
    tex = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
    body = base.replace(uvs=uvs, uv_faces=np.arange(3 * f).reshape(-1, 3), texture=tex)
    clothes = _sphere(1.1, colors=rng.random((base.num_vertices, 3)))
    write_glb({"body": body, "clothes": clothes}, tmp_path / "c.glb")
    got = read_glb(tmp_path / "c.glb")
    assert set(got) == {"body", "clothes", "hair"}
    assert got["hair"].is_empty
    # Same triangles at the same positions (vertices may be split at UV seams).
    np.testing.assert_allclose(got["body"].vertices[got["body"].faces], body.vertices[body.faces], atol=1e-6)
    np.testing.assert_array_equal(got["body"].texture, tex)
    np.testing.assert_allclose(got["body"].uvs[got["body"].faces], uvs[body.uv_faces], atol=1e-6)
    np.testing.assert_allclose(got["clothes"].colors, clothes.colors, atol=1e-5)  # sRGB -> linear -> sRGB


def test_skinned_character_reads_back_posed(tmp_path):
    body = _sphere()
    v = body.vertices
    joints = np.zeros((len(v), 4), np.int32)
    joints[:, 0] = (v[:, 1] > 0).astype(np.int32)
    weights = np.zeros((len(v), 4), np.float32)
    weights[:, 0] = 1
    body = body.replace(skin_joints=joints, skin_weights=weights)
    skel = Skeleton(["hips", "spine"], [-1, 0], [[0, 0, 0], [0, 0.4, 0]])
    rot = np.tile(np.eye(3), (2, 1, 1))
    rot[1] = Rotation.from_euler("z", 35, degrees=True).as_matrix()
    ch = Character(body, skeleton=skel, pose=Pose(rot))
    write_glb(ch, tmp_path / "s.glb", skinned=True)
    got = read_glb(tmp_path / "s.glb")["body"]
    posed = ch.part("body")
    assert not np.allclose(posed.vertices, v)  # the pose really moves something
    np.testing.assert_allclose(got.vertices[got.faces], posed.vertices[posed.faces], atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate", "magic", "json_length"])
def test_malformed_files_raise_input_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "c.glb"
    write_glb({"body": _sphere(colors=np.full((162, 3), 0.5))}, path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "magic":
        raw[:4] = b"gLTF"
    else:
        raw[12:16] = (len(raw) * 2).to_bytes(4, "little")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="bad.glb"):
        read_glb(bad)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_glb(tmp_path / "nope.glb")


def test_read_parts_gives_every_part_labelled_and_from_parts_goes_back(tmp_path):
    from stdgen.io.glb import read_parts
    from stdgen.structures.semantics import PARTS, Part

    body, hair = _sphere(), _sphere(1.2)
    write_glb({"body": body, "hair": hair}, tmp_path / "c.glb")
    parts = read_parts(tmp_path / "c.glb")
    assert list(parts) == list(PARTS)
    for p, m in parts.items():
        assert (m.label, m.name) == (p, p.key)
    assert parts[Part.CLOTHES].is_empty and parts[Part.CLOTHES].faces.shape == (0, 3)
    np.testing.assert_allclose(parts[Part.HAIR].vertices[parts[Part.HAIR].faces], hair.vertices[hair.faces],
                               atol=1e-6)
    character = Character.from_parts(parts)
    assert character.clothes == [] and len(character.hair) == 1
    back = character.parts()
    for p in PARTS:
        np.testing.assert_array_equal(back[p].vertices, parts[p].vertices)
        np.testing.assert_array_equal(back[p].faces, parts[p].faces)
    # No body at all: an empty body mesh, so a renderer draws nothing for it.
    assert Character.from_parts({Part.HAIR: hair}).body.is_empty
    with pytest.raises(InputError, match="missing"):
        read_parts(tmp_path / "nope.glb")
