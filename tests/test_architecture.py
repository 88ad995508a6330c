"""The package's import rules (``docs/architecture.md``): the import-linter contracts in
``pyproject.toml`` hold, and no private name (``_x``) is imported across packages."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _package_of(module: str) -> str:
    """``stdgen.data.vrm.cli`` -> ``stdgen.data``; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_imports_across_packages(src: Path = SRC) -> list[str]:
    """``"importer: from module import _name"`` for every private name one package imports from another."""
    found = []
    for path in sorted((src / "stdgen").rglob("*.py")):
        importer = _module_name(path, src)
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:  # relative: resolve against the importer's package
                base = importer.split(".") if is_package else importer.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("stdgen.") or _package_of(module) == _package_of(importer):
                continue
            private_module = any(p.startswith("_") and not p.startswith("__") for p in module.split("."))
            for alias in node.names:
                if private_module or (alias.name.startswith("_") and not alias.name.startswith("__")):
                    found.append(f"{importer}: from {module} import {alias.name}")
    return found


def test_no_private_name_crosses_a_package():
    assert private_imports_across_packages() == []


def test_the_private_name_check_finds_a_crossing(tmp_path):
    pkg = tmp_path / "stdgen"
    for sub in ("a", "b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from stdgen.b.y import _hidden, shown\nfrom stdgen.a.z import _own\n")
    (pkg / "b" / "y.py").write_text("from ..a._impl import thing\n")
    assert private_imports_across_packages(tmp_path) == [
        "stdgen.a.x: from stdgen.b.y import _hidden",
        "stdgen.b.y: from stdgen.a._impl import thing",
    ]


def test_import_contracts_hold():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
