"""The tree keeps its shape: library layers import downwards only, and the library never imports Prefect."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY = REPO_ROOT / "src" / "powercast"
LAYER_PACKAGES = ("core", "io", "store", "prepare", "models", "reporting", "training", "serving", "experiments", "cli")


def test_import_contracts_hold() -> None:
    """`lint-imports` checks the contracts in pyproject.toml: library layers, no Prefect in the library."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    completed = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "3 kept, 0 broken" in completed.stdout


def test_every_library_module_sits_in_a_layer() -> None:
    """Only the package's face (`__init__`, `__main__`) lives outside a layer subpackage."""
    loose = sorted(p.name for p in LIBRARY.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside a layer package: {loose}"
    packages = sorted(p.name for p in LIBRARY.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(LAYER_PACKAGES)


def test_each_layer_says_what_it_may_import() -> None:
    for name in LAYER_PACKAGES:
        docstring = ast.get_docstring(ast.parse((LIBRARY / name / "__init__.py").read_text())) or ""
        assert "Layer" in docstring and "mport" in docstring, f"powercast.{name}.__init__ docstring: {docstring!r}"
