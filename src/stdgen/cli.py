"""The ``stdgen`` command line.

Each stage package owns its commands in a ``cli.py`` with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed arguments, returning an exit
status). Registration is lazy: only the module of the command being run is imported (its
package may import torch); the others appear in ``stdgen --help`` through :data:`COMMANDS`' one-line
help, so ``stdgen --help`` imports neither torch nor numpy.

User errors (:class:`~stdgen.errors.StdgenError`) print one line and exit with status 2; an
operating-system error (read-only or full disk, a path of the wrong kind) prints one line and exits
with status 1; Ctrl-C exits with 130 and prints ``stdgen: interrupted``, at any moment from start-up on.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stdgen import __version__
from stdgen.errors import StdgenError

#: Top-level commands, in the order --help lists them: name -> (the module whose
#: ``register(subparsers)`` adds it, the one-line help shown by ``stdgen --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "render-demo": ("stdgen.commands.render_demo_cli",
                    "render a test figure made by code in the six generation views"),
    "data": ("stdgen.data.cli", "make, render and import training / evaluation characters"),
    "eval": ("stdgen.eval.cli", "evaluate predicted characters (the paper's Table 1 protocol, geometry, "
             "decomposition)"),
    "export": ("stdgen.export.cli", "export a character as VRM (1.0 or 0.x) or GLB"),
    "layers-demo": ("stdgen.commands.layers_demo_cli", "voxelise a procedural character and extract its body / "
                    "clothes / hair layers"),
    "reconstruct": ("stdgen.commands.reconstruct_cli", "six views -> layered character (S-LRM)"),
    "canonicalize": ("stdgen.commands.canonicalize_cli", "one picture in any pose -> the character in A-pose "
                     "(pose canonicalisation)"),
    "multiview": ("stdgen.commands.multiview_cli", "one A-pose picture -> six views of colour and normals "
                  "(multi-view diffusion)"),
    "refine": ("stdgen.refine.cli", "refine a character's coarse layer meshes against its views and texture them"),
    "generate": ("stdgen.commands.generate_cli", "one picture in, a layered (body / clothes / hair) textured 3D "
                 "character out (the whole pipeline)"),
    "train": ("stdgen.train.cli", "train a model (slrm, mvdiff, mvreg, canon, segment, toy) or export a run's weights"),
    "app": ("stdgen.app.cli", "the web app: upload a picture, watch the stages, view and download the 3D character"),
}
#: Modules whose ``register(subparsers)`` adds top-level commands.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _ in COMMANDS.values()))


def _command_of(argv: list[str]) -> str | None:
    """The command word of ``argv`` (its first argument not starting with ``-``), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``stdgen`` parser. With ``argv``, only the module of the command it names is imported
    (the others get a stand-in parser with their help line); without, every command is registered."""
    parser = argparse.ArgumentParser(
        prog="stdgen",
        description="stdgen: one picture of a character in, a layered (body / clothes / hair) 3D character out.",
    )
    parser.add_argument("--version", action="version", version=f"stdgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _command_of(argv)
    for module in COMMAND_MODULES:
        names = [n for n, (m, _) in COMMANDS.items() if m == module]
        if argv is None or wanted in names:
            importlib.import_module(module).register(sub)
        else:
            for name in names:
                sub.add_parser(name, help=COMMANDS[name][1])
    return parser


def _os_error_line(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


class _Interrupts:
    """Remembers a Ctrl-C: one landing inside an import (torch's, numpy's) may surface as another
    exception (an ImportError, a RecursionError of a half-imported module), which still means
    "interrupted"."""

    seen = False

    @classmethod
    def handler(cls, signum, frame):
        cls.seen = True
        raise KeyboardInterrupt


def _install_interrupt_handler() -> None:
    import signal
    import threading

    # Only over Python's own handler: a process started with Ctrl-C ignored (a background job,
    # a worker) keeps ignoring it.
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _Interrupts.handler)


def interrupted() -> int:
    """Say "stdgen: interrupted" and return 130 (the exit status of a Ctrl-C).

    CPython marks a KeyboardInterrupt raised while a C extension runs Python code through the
    ``PyRun_*`` API (torch does during its import) as "unhandled", and that mark survives the extension
    swallowing the exception: the interpreter then ends by killing itself with SIGINT (status -2)
    instead of exiting with 130. Running one trivial statement through that same API resets the mark."""
    print("stdgen: interrupted", file=sys.stderr)
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"pass")
    except (ImportError, AttributeError, OSError):  # not CPython: no such mark to clear
        pass
    return 130


def main(argv: list[str] | None = None) -> int:
    try:
        _Interrupts.seen = False
        _install_interrupt_handler()
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            # A group (like ``stdgen data``) without its subcommand, or no command at all.
            (getattr(args, "_group_parser", None) or parser).print_help(sys.stderr)
            return 2
        status = args.func(args)
    except StdgenError as exc:
        print(f"stdgen: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The machine said no (read-only or full disk, a file where a folder goes...): one line;
        # outputs are written atomically, so nothing half-written is left.
        print(f"stdgen: error: {_os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupted()
    except Exception:
        if _Interrupts.seen:
            return interrupted()
        raise
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
