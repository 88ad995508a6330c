"""The ``stdgen data`` command group.

Each subcommand lives in the module that owns it; those modules expose ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

#: Modules adding ``stdgen data`` subcommands (``sample``, ``render``, ``import-vrm``).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "stdgen.data.sample_cli",
    "stdgen.data.render_cli",
    "stdgen.data.vrm.cli",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make, render and import training / evaluation characters",
                       description="Make, render and import characters for training and evaluation.")
    p.set_defaults(func=None, _group_parser=p)
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(dsub)
