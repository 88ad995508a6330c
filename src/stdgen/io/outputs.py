"""Claiming an output path, and writing it atomically.

The rule every command follows (see the README's "Safety" section):

- an output path is **claimed, never clobbered**: writing into a new path, an empty folder, or a
  folder this same command made before (recognised by its marker file :data:`MARKER_NAME`, which
  lists what the command wrote there, or by a legacy recogniser such as a dataset manifest) is
  fine; anything else (a file where a folder goes, a folder holding other files) is refused with a
  one-line :class:`~stdgen.errors.StdgenError`, unless the user passes ``--overwrite``;
- the **inputs** of a run (a character folder, a dataset, a pictures folder) are never replaced,
  not even with ``--overwrite``: an output equal to an input, or holding one, is always refused;
- results are written into a ``.tmp-*`` sibling and renamed into place at the end
  (:func:`write_output_dir`), so a killed run leaves the old result or nothing; the ``.tmp-*``
  leftovers of a killed run are removed by the next run (:func:`remove_leftovers`).

Typical use in a command::

    out = claim_output_dir(args.output, "refine", overwrite=args.overwrite, inputs=[folder])
    ...                                   # the work
    with write_output_dir(out, "refine") as tmp:
        write_glb(..., tmp / "character.glb")
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from stdgen.errors import StdgenError
from stdgen.utils.io import TMP_PREFIX, atomic_dir, atomic_path, atomic_write, remove_stale_temporaries

__all__ = [
    "MARKER_NAME",
    "TMP_PREFIX",
    "atomic_dir",
    "atomic_path",
    "atomic_write",
    "claim_output_dir",
    "claim_output_file",
    "claim_subfolder",
    "mark_output_dir",
    "read_marker",
    "remove_leftovers",
    "remove_stale_temporaries",
    "write_output_dir",
]

#: The marker file a command leaves in a folder it made: ``{"made_by": "stdgen <command>",
#: "files": [...]}`` (``files`` is ``null`` for folders whose contents the command manages itself,
#: such as a dataset directory).
MARKER_NAME = ".stdgen-output.json"


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of ``folder`` (``None`` if it has none, or an unreadable one)."""
    path = Path(folder) / MARKER_NAME
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("made_by"), str) else None


def mark_output_dir(folder: str | os.PathLike, command: str, files: Iterable[str] | None = None) -> Path:
    """Write ``folder``'s marker: made by ``stdgen <command>``, holding ``files`` (``None``: the
    command manages the folder's contents itself)."""
    path = Path(folder) / MARKER_NAME
    body = {"made_by": f"stdgen {command}", "files": None if files is None else sorted(files)}
    with atomic_write(path, "w") as f:
        json.dump(body, f, indent=1)
    return path


def _related(out: Path, inputs: Iterable[str | os.PathLike]) -> Path | None:
    """The first input that ``out`` is, holds, or lies inside of (paths resolved)."""
    for i in inputs:
        if i is None:
            continue
        i = Path(i).resolve()
        if out == i or i.is_relative_to(out) or out.is_relative_to(i):
            return i
    return None


def _made_here(folder: Path, command: str, recognise: Callable[[Path], bool] | None) -> bool:
    marker = read_marker(folder)
    if marker is not None and marker["made_by"] == f"stdgen {command}":
        files = marker.get("files")
        if files is None:
            return True
        # A folder the command replaces as a whole may hold only what the command wrote there.
        extra = {p.name for p in folder.iterdir()} - set(files) - {MARKER_NAME}
        return not {n for n in extra if not n.startswith(TMP_PREFIX)}
    return recognise is not None and recognise(folder)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(TMP_PREFIX))


def claim_output_dir(path: str | os.PathLike, command: str, *, overwrite: bool = False,
                     inputs: Iterable[str | os.PathLike] = (), option: str = "-o",
                     recognise: Callable[[Path], bool] | None = None) -> Path:
    """Check that ``stdgen <command>`` may write the folder ``path``; return it as a ``Path``.

    Allowed: a new path; an empty folder; a folder with this command's marker (holding only what
    it wrote, for folders replaced as a whole); a folder ``recognise(folder)`` accepts (e.g. an
    older dataset with its manifest); with ``overwrite``, any other folder or file. Never allowed:
    ``path`` is, holds, or is inside one of ``inputs`` and is not this command's own (an existing
    file or folder there would be an input's file). Raises a one-line
    :class:`~stdgen.errors.StdgenError` naming ``option`` and the path.
    """
    out = Path(path)
    given = f"{option} {path}"
    resolved = out.resolve()
    inp = _related(resolved, inputs)
    if inp is not None and (resolved == inp or inp.is_relative_to(resolved)):
        raise StdgenError(f"{given}: is or holds an input of this run ({inp}); inputs are never "
                          "written over, not even with --overwrite: choose another output folder")
    if not os.path.lexists(out):
        return out
    if out.is_symlink() and not out.is_dir():
        raise StdgenError(f"{given}: is a link to something that is not a folder; choose another output folder")
    if not out.is_dir():
        if inp is not None:
            raise StdgenError(f"{given}: is a file inside an input of this run ({inp}); choose another output")
        if overwrite:
            return out
        raise StdgenError(f"{given}: exists and is a file, not a folder; give a new folder (or --overwrite "
                          "to replace the file)")
    try:
        names = _listing(out)
        ours = not names or _made_here(out, command, recognise)
    except OSError as exc:
        raise StdgenError(f"{given}: cannot be read ({exc.strerror})") from None
    if ours:
        return out
    if inp is not None:
        raise StdgenError(f"{given}: is a folder inside an input of this run ({inp}) that stdgen {command} did "
                          "not make; choose another output folder")
    if overwrite:
        return out
    marker = read_marker(out)
    known = set(marker.get("files") or []) if marker and marker["made_by"] == f"stdgen {command}" else set()
    foreign = [n for n in names if n not in known and n != MARKER_NAME] or names
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise StdgenError(f"{given}: exists and holds files stdgen {command} did not make ({shown}); give a new "
                      "or empty folder (or --overwrite to replace it)")


def claim_output_file(path: str | os.PathLike, command: str, *, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike] = (), option: str = "-o",
                      recognise: Callable[[Path], bool] | None = None) -> Path:
    """Check that ``stdgen <command>`` may write the file ``path``: a new path, a file
    ``recognise(path)`` accepts (e.g. one stdgen wrote), or with ``overwrite`` any other file.
    A folder or an input is always refused."""
    out = Path(path)
    given = f"{option} {path}"
    resolved = out.resolve()
    inp = _related(resolved, inputs)
    if inp is not None and (resolved == inp or inp.is_relative_to(resolved)):
        raise StdgenError(f"{given}: is an input of this run; choose another output file")
    if not os.path.lexists(out):
        if not out.parent.is_dir():
            raise StdgenError(f"{given}: the folder {out.parent} does not exist")
        return out
    if out.is_dir():
        raise StdgenError(f"{given}: is a folder; give a file name inside it instead")
    if overwrite or (recognise is not None and recognise(out)):
        return out
    raise StdgenError(f"{given}: exists and was not written by stdgen {command}; give a new file name "
                      "(or --overwrite to replace it)")


def claim_subfolder(folder: str | os.PathLike, made_by: Iterable[str] = ("meta.json",), *,
                    overwrite: bool = False) -> Path:
    """Check that a per-item subfolder (a character folder of a dataset) may be (re)written: it is
    new, empty, or holds one of the files ``made_by`` that mark it as this command's. Returns it."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return folder
    if folder.is_dir() and not folder.is_symlink():
        names = _listing(folder)
        if not names or any((folder / m).is_file() for m in made_by) or overwrite:
            return folder
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise StdgenError(f"{folder}: exists and holds files stdgen did not make ({shown}); move it away "
                          "(or --overwrite to replace it)")
    if overwrite:
        return folder
    raise StdgenError(f"{folder}: exists and is not a folder; move it away (or --overwrite to replace it)")


def remove_leftovers(path: str | os.PathLike) -> int:
    """Delete the ``.tmp-<name>.*`` / ``.tmp-old-<name>`` siblings that a killed atomic write of
    ``path`` left beside it; return how many."""
    from stdgen.utils.io import remove_path

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return 0
    n = 0
    for p in parent.iterdir():
        if p.name.startswith(f"{TMP_PREFIX}{path.name}.") or p.name == f"{TMP_PREFIX}old-{path.name}":
            remove_path(p)
            n += 1
    return n


@contextlib.contextmanager
def write_output_dir(path: str | os.PathLike, command: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the block ends without error, mark it as
    made by ``stdgen <command>`` (listing its files) and rename it to ``path`` (replacing what
    :func:`claim_output_dir` allowed). Leftovers of a killed earlier write are removed first."""
    remove_leftovers(path)
    with atomic_dir(path) as tmp:
        yield tmp
        mark_output_dir(tmp, command, [p.name for p in tmp.iterdir()])
