"""Malformed VRM / GLB files: a clear InputError naming the file and the problem, never a traceback
(also through the CLI: one line, no half-written output)."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from stdgen.data.vrm import import_vrm
from stdgen.errors import InputError
from stdgen.io.glb import read_character_glb, read_glb

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROBOT = FIXTURES / "debug_robot.vrm"  # VRM 1.0
GODETTE = FIXTURES / "Godette_vrm_v4.vrm"  # VRM 0.x, skinned


def split_glb(data: bytes) -> tuple[dict, bytes]:
    """(JSON dict, BIN chunk) of a well-formed GLB."""
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + jlen])
    rest = data[20 + jlen:]
    blen = struct.unpack_from("<I", rest, 0)[0]
    return doc, rest[8:8 + blen]


def join_glb(doc: dict, bin_chunk: bytes | None, *, json_length_delta: int = 0) -> bytes:
    """A GLB of ``doc`` and ``bin_chunk``; ``json_length_delta`` makes the JSON chunk header lie."""
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js) + json_length_delta, 0x4E4F534A) + js
    if bin_chunk is not None:
        body += struct.pack("<II", len(bin_chunk), 0x004E4942) + bin_chunk
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _damage(kind: str, path: Path) -> bytes:
    data = path.read_bytes()
    doc, blob = split_glb(data)
    if kind == "truncated":
        return data[: len(data) * 2 // 3]
    if kind == "truncated header":
        return data[:10]
    if kind == "wrong magic":
        return b"gLTF" + data[4:]
    if kind == "json length too long":
        return join_glb(doc, blob, json_length_delta=16)
    if kind == "json length too short":
        return join_glb(doc, blob, json_length_delta=-16)
    if kind == "missing bin chunk":
        return join_glb(doc, None)
    if kind == "external buffer":
        doc["buffers"][0]["uri"] = "elsewhere.bin"
        return join_glb(doc, blob)
    if kind == "short buffer":
        doc["buffers"][0]["byteLength"] = len(blob) + 1000
        return join_glb(doc, blob)
    if kind == "accessor count":
        doc["accessors"][0]["count"] = 10**7
        return join_glb(doc, blob)
    if kind == "accessor view":
        doc["accessors"][0]["bufferView"] = len(doc["bufferViews"]) + 3
        return join_glb(doc, blob)
    if kind == "accessor offset":
        doc["accessors"][0]["byteOffset"] = len(blob)
        return join_glb(doc, blob)
    if kind == "index past vertices":
        prim = doc["meshes"][0]["primitives"][0]
        n = doc["accessors"][prim["attributes"]["POSITION"]]["count"]
        # Point the indices at a float accessor read as indices... simpler: shrink POSITION.
        doc["accessors"][prim["attributes"]["POSITION"]]["count"] = max(1, n // 4)
        return join_glb(doc, blob)
    if kind == "no humanoid":
        ext = doc["extensions"]
        if "VRMC_vrm" in ext:
            ext["VRMC_vrm"]["humanoid"]["humanBones"] = {}
        else:
            ext["VRM"]["humanoid"]["humanBones"] = []
        return join_glb(doc, blob)
    if kind == "missing required bone":
        ext = doc["extensions"]
        if "VRMC_vrm" in ext:
            del ext["VRMC_vrm"]["humanoid"]["humanBones"]["leftUpperLeg"]
        else:
            bones = ext["VRM"]["humanoid"]["humanBones"]
            ext["VRM"]["humanoid"]["humanBones"] = [b for b in bones if b["bone"] != "leftUpperLeg"]
        return join_glb(doc, blob)
    if kind == "not a vrm":
        doc.pop("extensions")
        return join_glb(doc, blob)
    if kind == "node cycle":
        doc["nodes"][1].setdefault("children", []).append(0)
        doc["nodes"][0].setdefault("children", []).append(1)
        return join_glb(doc, blob)
    if kind == "bone node out of range":
        ext = doc["extensions"]
        if "VRMC_vrm" in ext:
            ext["VRMC_vrm"]["humanoid"]["humanBones"]["hips"]["node"] = 9999
        else:
            ext["VRM"]["humanoid"]["humanBones"][0]["node"] = 9999
        return join_glb(doc, blob)
    if kind == "broken image":
        view = doc["images"][0]["bufferView"]
        bv = doc["bufferViews"][view]
        b = bytearray(blob)
        b[bv.get("byteOffset", 0):bv.get("byteOffset", 0) + bv["byteLength"]] = b"\0" * bv["byteLength"]
        return join_glb(doc, bytes(b))
    raise AssertionError(kind)


CASES = {
    "truncated": "truncated",
    "truncated header": "truncated",
    "wrong magic": "not a GLB",
    "json length too long": "JSON chunk",
    "json length too short": "JSON chunk",
    "missing bin chunk": "buffer 0 is missing",
    "external buffer": "buffer 0 is missing",
    "short buffer": "buffer 0 is missing data",
    "accessor count": "accessor 0",
    "accessor view": "bufferView",
    "accessor offset": "accessor 0",
    "index past vertices": "indices point outside",
    "no humanoid": "without humanoid bones",
    "missing required bone": "lacks required bones",
    "not a vrm": "not a VRM file",
    "node cycle": "more than one parent|cycle",
    "bone node out of range": "node",
    "broken image": "cannot be decoded",
}


@pytest.mark.parametrize("source", [ROBOT, GODETTE], ids=["vrm1", "vrm0"])
@pytest.mark.parametrize("kind", list(CASES))
def test_malformed_file_raises_input_error_naming_file_and_problem(tmp_path, source, kind):
    bad = tmp_path / f"bad-{source.stem}.vrm"
    bad.write_bytes(_damage(kind, source))
    with pytest.raises(InputError, match=CASES[kind]) as info:
        import_vrm(bad)
    assert str(info.value).startswith(str(bad))


@pytest.mark.parametrize("kind", ["truncated", "wrong magic", "json length too short", "accessor view"])
def test_malformed_glb_readers_raise_input_error(tmp_path, kind):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(_damage(kind, ROBOT))
    for reader in (read_glb, read_character_glb):
        with pytest.raises(InputError, match="bad.glb"):
            reader(bad)


def test_missing_and_json_gltf_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        import_vrm(tmp_path / "nope.vrm")
    p = tmp_path / "scene.gltf"
    p.write_text('{"asset": {"version": "2.0"}}')
    with pytest.raises(InputError, match="JSON glTF"):
        import_vrm(p)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "stdgen", *args], capture_output=True, text=True, timeout=300)


def test_cli_reports_bad_files_in_one_line_and_writes_nothing(tmp_path):
    # A real process: what a user sees, tracebacks included if any slipped through.
    bad = tmp_path / "in" / "broken.vrm"
    bad.parent.mkdir()
    bad.write_bytes(_damage("json length too short", ROBOT))
    out = tmp_path / "out"
    r = _cli("data", "import-vrm", str(bad.parent), "-o", str(out), "--quiet")
    assert r.returncode == 1  # nothing could be imported
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "skipped" in ln]
    assert len(lines) == 1 and "broken.vrm" in lines[0] and "JSON chunk" in lines[0]
    assert "imported 0" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [".stdgen-output.json", "manifest.json"]  # no half-written folder

    r = _cli("export", str(bad), "--format", "vrm", "-o", str(tmp_path / "x.vrm"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "broken.vrm" in r.stderr
    assert not (tmp_path / "x.vrm").exists()
