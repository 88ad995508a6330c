"""The ``stdgen`` command line.

Each stage package owns its commands in a ``cli.py`` with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed arguments, returning an exit
status). Registration imports nothing heavy, so ``stdgen --help`` stays fast.

User errors (:class:`~stdgen.errors.StdgenError`) print one line and exit with status 2;
Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stdgen import __version__
from stdgen.errors import StdgenError

#: Modules whose ``register(subparsers)`` adds top-level commands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "stdgen.commands.render_demo_cli",
    "stdgen.data.cli",
    "stdgen.eval.cli",
    "stdgen.export.cli",
    "stdgen.commands.layers_demo_cli",
    "stdgen.commands.reconstruct_cli",
    "stdgen.refine.cli",
    "stdgen.train.cli",
    "stdgen.models.mvdiffusion.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stdgen",
        description="stdgen: one picture of a character in, a layered (body / clothes / hair) 3D character out.",
    )
    parser.add_argument("--version", action="version", version=f"stdgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        # A group (like ``stdgen data``) without its subcommand, or no command at all.
        (getattr(args, "_group_parser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        status = args.func(args)
    except StdgenError as exc:
        print(f"stdgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stdgen: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
