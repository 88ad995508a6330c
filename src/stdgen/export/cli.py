"""``stdgen export``: a character GLB (or a character folder) -> VRM 1.0 / 0.x or GLB."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a character as VRM (1.0 or 0.x) or GLB",
        description="Export a character: CHARACTER is a skinned character GLB (as `stdgen data import-vrm` "
        "writes) or a character folder holding character.glb. --format vrm writes a VRM 1.0 avatar (or 0.x "
        "with --vrm-version 0.x) in its rest pose with the humanoid bone map, MToon materials and meta; "
        "--format glb writes the layered GLB (nodes body, clothes, hair), skinned when the input is. "
        "VRM needs a rigged character; a mesh without a skeleton can only go out as GLB.",
    )
    p.add_argument("character", metavar="CHARACTER_GLB_OR_DIR", help="character .glb, or a folder with character.glb")
    p.add_argument("--format", choices=("vrm", "glb"), required=True, help="output format")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    p.add_argument("--overwrite", action="store_true", help="replace FILE even if stdgen did not write it")
    p.add_argument("--vrm-version", choices=("1.0", "0.x"), default="1.0", help="VRM version (default 1.0)")
    p.add_argument("--material", choices=("mtoon", "unlit"), default="mtoon", help="VRM material (default mtoon)")
    p.add_argument("--title", default=None, help="VRM meta title (default: the character's, else the file name)")
    p.add_argument("--author", action="append", default=None,
                   help="VRM meta author (repeatable; default: the source file's author for imported "
                   "characters, else the user running this)")
    p.add_argument("--license-url", default=None,
                   help="VRM meta licence URL (default: the source's, else the VRM Public License 1.0 with "
                   "its most restrictive permissions)")
    p.set_defaults(func=_run)


def _input_glb(path: Path) -> Path:
    from stdgen.errors import InputError

    if path.is_dir():
        glb = path / "character.glb"
        if not glb.is_file():
            raise InputError(f"{path}: a folder without character.glb")
        return glb
    if not path.is_file():
        raise InputError(f"{path}: no such file or directory")
    return path


def _run(args: argparse.Namespace) -> int:
    import json

    from stdgen.errors import StdgenError
    from stdgen.export.vrm import VrmMeta, write_vrm
    from stdgen.io.glb import read_character_glb, write_glb
    from stdgen.io.outputs import claim_output_file

    src = Path(args.character)
    glb = _input_glb(src)
    out = claim_output_file(args.output, "export", overwrite=args.overwrite, inputs=[glb],
                            recognise=written_by_stdgen)
    character = read_character_glb(glb)
    # A folder made by import-vrm knows where the character came from: keep its meta.
    report = glb.parent / "import.json"
    if report.is_file():
        try:
            rep = json.loads(report.read_text())
        except (ValueError, OSError):
            rep = None
        meta = rep.get("meta") if isinstance(rep, dict) else None
        if isinstance(meta, dict):
            character.meta["vrm_meta"] = meta
            title = meta.get("name") or meta.get("title")
            character.meta["title"] = title if isinstance(title, str) else None
        else:
            import sys

            print(f"stdgen: warning: {report}: not an import report (no meta object); ignored", file=sys.stderr)
    if args.format == "glb":
        write_glb(character, out, skinned=character.skeleton is not None)
        print(f"wrote {out}")
        return 0
    if character.skeleton is None:
        raise StdgenError(f"{glb}: has no skeleton; VRM export needs a rigged character (export it as --format glb)")
    # The file holds the A-pose; VRM wants the rest pose (meshes are stored at rest, so drop the pose).
    character = character.with_pose(None)
    overrides = {}
    if args.title:
        overrides["name"] = args.title
    if args.author:
        overrides["authors"] = list(args.author)
    if args.license_url:
        overrides["license_url"] = args.license_url
    source_meta = character.meta.get("vrm_meta")
    if source_meta:
        meta = VrmMeta.from_source(source_meta, **overrides)
    else:
        overrides.setdefault("name", character.meta.get("title") or src.stem)
        overrides.setdefault("authors", [_user()])
        meta = VrmMeta(**overrides)
    write_vrm(character, out, version=args.vrm_version, meta=meta, material=args.material)
    print(f"wrote {out} (VRM {args.vrm_version})")
    return 0


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def written_by_stdgen(path: Path) -> bool:
    """Whether ``path`` is a binary glTF (GLB / VRM) whose ``asset.generator`` is stdgen's: such a
    file is an earlier export and may be replaced without ``--overwrite``."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(20)
            if len(head) < 20 or head[:4] != b"glTF":
                return False
            length, kind = struct.unpack("<II", head[12:20])
            if kind != 0x4E4F534A or length > 1 << 26:  # the JSON chunk comes first
                return False
            doc = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return False
    gen = doc.get("asset", {}).get("generator", "") if isinstance(doc, dict) else ""
    return isinstance(gen, str) and gen.startswith("stdgen")
