"""The tree keeps its shape: layers import downwards only, the library never imports Prefect, functions stay short."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60  # body lines, docstring excluded
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


def _long_functions(paths: list[Path], base: Path) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring does not count
            if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(base)}:{node.lineno} {node.name}")
    return found


def test_no_function_runs_past_sixty_lines() -> None:
    sources = sorted(LIBRARY.rglob("*.py")) + sorted((REPO_ROOT / "flows").rglob("*.py"))
    assert _long_functions(sources, REPO_ROOT) == []


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    long_module = tmp_path / "long.py"
    long_module.write_text("def f():\n    '''doc'''\n" + "    x = 1\n" * (MAX_FUNCTION_LINES + 1))
    short_module = tmp_path / "short.py"
    short_module.write_text("def g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert _long_functions([long_module, short_module], tmp_path) == ["long.py:1 f"]
