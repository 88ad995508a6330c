"""``stdgen data import-vrm``: VRM files -> dataset folders, rendered like ``stdgen data render``.

Each imported file becomes one folder in the dataset directory holding what ``stdgen data
render`` writes for a procedural character (the same views, maps and format: the renders come
from :func:`stdgen.data.render_dataset.render_character`) plus ``character.glb`` (A-pose, nodes
body / clothes / hair, textured and skinned, so ``stdgen export`` can turn it back into VRM) and
``import.json`` (which primitive went to which part and why; skipped primitives; warnings).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

VRM_SUFFIXES = (".vrm",)
IMPORT_REPORT = "import.json"


def register(sub: argparse._SubParsersAction) -> None:
    from stdgen.data.render_cli import add_render_options

    p = sub.add_parser(
        "import-vrm",
        help="import VRM 0.x / 1.0 characters into a dataset directory (one folder each)",
        description="Import VRM files (or every .vrm under the given directories): split each into body, "
        "clothes and hair by VRoid's naming (or the rules of --parts), pose it to the canonical A-pose and "
        "render it with the protocol of `stdgen data render` into DIR, one folder per character, with "
        "character.glb and import.json (what went where, and why). Resumable: files already imported with "
        "the same settings are skipped. Exits 1 when no file could be imported.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="VRM files or directories holding them")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="dataset directory")
    p.add_argument("--parts", metavar="YAML", default=None,
                   help="part-split rules (default: VRoid's naming, stdgen/data/vrm/parts.yaml)")
    p.add_argument("--require-all-parts", action="store_true",
                   help="skip files that do not split into body, clothes and hair (default: import them as "
                   "far as they split, a file without clothes or hair as body only, with a warning)")
    p.add_argument("--split", choices=("train", "validation", "test"), default="train",
                   help="the split the imported characters belong to (default train)")
    add_render_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


@dataclass
class _Job:
    path: Path
    name: str


def find_vrm_files(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The VRM files named or found (recursively, sorted) under ``inputs``, and the inputs that
    are neither, with the reason."""
    files: list[Path] = []
    bad: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VRM_SUFFIXES)
            if not found:
                bad.append((item, "a directory without .vrm files"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            bad.append((item, "no such file or directory"))
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, bad


def folder_names(files: list[Path]) -> list[str]:
    """One dataset folder name per file: its stem made filesystem-safe, with a short hash of the
    path appended where two files share a stem (so names are stable across runs)."""
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", f.stem).strip("._") or "character" for f in files]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [f"vrm-{s}" if counts[s] == 1 else
            f"vrm-{s}-{hashlib.sha1(str(f.resolve()).encode()).hexdigest()[:8]}" for f, s in zip(files, stems)]


def file_seed(data: bytes) -> int:
    """A seed drawn from the file's bytes (random views and poses repeat for the same file), kept
    out of the held-out seed ranges so an imported character never collides with one."""
    from stdgen.data.splits import split_of

    seed = zlib.crc32(data) & 0x7FFFFFFF
    while split_of(seed) != "train":
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    return seed


def import_status(folder: Path, digest: str, config_content: dict) -> str:
    """``"missing"``, ``"done"`` (imported from these very bytes with these render settings) or
    ``"different"`` (a complete folder made from another file or with other settings)."""
    import json

    from stdgen.errors import InputError
    from stdgen.io.dataset import read_meta

    report = folder / IMPORT_REPORT
    if not (folder / "meta.json").is_file() or not report.is_file():
        return "missing"
    try:
        meta = read_meta(folder)
        rep = json.loads(report.read_text())
    except (InputError, ValueError):
        return "missing"  # unreadable: import it again (atomically replacing the folder)
    if not isinstance(rep, dict):
        return "missing"  # damaged: import it again
    from stdgen.io.dataset import missing_files

    if missing_files(folder, meta):
        return "missing"  # incomplete: import it again
    same = rep.get("sha256") == digest and meta.get("render_config") == config_content
    return "done" if same else "different"


def import_one(path: Path, folder: Path, config, import_config, rules, split: str) -> dict:
    """Import, A-pose, render and write one file's folder atomically. Returns its manifest entry
    and the import's warnings (raises InputError / SkipImport for a file that cannot be imported)."""
    import json

    from stdgen.data.render_dataset import render_character
    from stdgen.data.vrm.importer import import_vrm
    from stdgen.io.dataset import manifest_entry, write_renders
    from stdgen.io.glb import write_glb
    from stdgen.utils.io import atomic_dir

    data = path.read_bytes()
    result = import_vrm(path, import_config, rules=rules, data=data)
    character = result.character
    seed = file_seed(data)
    character.meta["seed"] = seed
    renders = render_character(character, config, seed=seed)
    renders.meta.update(id=folder.name, split=split, source="vrm", source_file=str(path),
                        title=character.meta.get("title"))
    report = {**result.report, "sha256": hashlib.sha256(data).hexdigest(), "seed": seed, "folder": folder.name}
    with atomic_dir(folder) as tmp:
        write_glb(character, tmp / "character.glb", skinned=True)
        (tmp / IMPORT_REPORT).write_text(json.dumps(report, indent=1))
        write_renders(tmp, renders)
    return manifest_entry(folder, renders.meta), list(result.report["warnings"])


def _run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from stdgen.data.render_cli import render_config_from_args
    from stdgen.data.vrm.importer import SkipImport, VrmImportConfig
    from stdgen.data.vrm.split import load_part_rules
    from stdgen.errors import InputError, StdgenError
    from stdgen.io.dataset import list_character_folders, manifest_entry, read_manifest, write_manifest
    from stdgen.utils.io import remove_stale_temporaries

    config = render_config_from_args(args)
    rules = load_part_rules(args.parts)
    import_config = VrmImportConfig(parts=args.parts, require_all_parts=args.require_all_parts)
    files, bad = find_vrm_files(args.inputs)
    if not files:
        reasons = "; ".join(f"{i}: {r}" for i, r in bad) or "nothing given"
        raise StdgenError(f"no VRM files to import ({reasons})")
    from stdgen.data.render_dataset import is_dataset_dir
    from stdgen.io.outputs import claim_output_dir, claim_subfolder, mark_output_dir

    # Only character subfolders are written (never DIR as a whole), so DIR may hold the inputs.
    out = claim_output_dir(args.output, "data import-vrm", overwrite=args.overwrite, recognise=is_dataset_dir)
    if out.exists() and not out.is_dir():
        out.unlink()  # --overwrite of a file where the dataset goes
    out.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out, "data import-vrm")
    remove_stale_temporaries(out)
    known = {e["id"]: e for e in read_manifest(out)["characters"]}
    entries = {f.name: known.get(f.name) or manifest_entry(f) for f in list_character_folders(out)}

    imported, already = 0, 0
    skipped: list[tuple[str, str]] = list(bad)
    warned: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), unit="file", desc="import-vrm", disable=args.quiet)
    try:
        for path, name in zip(files, folder_names(files)):
            folder = claim_subfolder(out / name, ("meta.json", IMPORT_REPORT), overwrite=args.overwrite)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                skipped.append((str(path), f"cannot be read ({exc.strerror})"))
                bar.update(1)
                continue
            status = import_status(folder, digest, config.content())
            if status == "done":
                already += 1
            elif status == "different":
                skipped.append((str(path), f"{folder} holds another import (other file or settings); "
                                "import into a new directory or delete that folder"))
            else:
                try:
                    entries[name], notes = import_one(path, folder, config, import_config, rules, args.split)
                    warned.extend((str(path), w) for w in notes)
                    imported += 1
                except (InputError, SkipImport) as exc:
                    skipped.append((str(path), str(exc)))
            bar.update(1)
    finally:
        bar.close()
        present = {p.name for p in list_character_folders(out)}
        write_manifest(out, [e for k, e in entries.items() if k in present], render_config=config.content())
    print(f"imported {imported}, already there {already}, skipped {len(skipped)}")
    for item, note in warned:
        print(f"  warning {item}: {note}", file=sys.stderr)
    for item, reason in skipped:
        print(f"  skipped {item}: {reason}", file=sys.stderr)
    return 0 if imported + already > 0 else 1
