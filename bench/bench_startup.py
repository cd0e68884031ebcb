"""Benchmark: start-up of the ``powercast`` command against importing the libraries it stands on.

Whole processes, alternated (A B C A B C ...), medians of ``--repeats``:

* ``powercast --help``: the CLI's start-up (every command module is imported to build the parser);
* ``python -c "import pyarrow.csv, pyarrow.parquet, pyarrow.dataset"``: what an ingest needs at least;
* ``python -c pass``: the interpreter alone (the floor).

Then one ``python -X importtime -m powercast --help`` says what the start-up is made of: the
packages whose import took longest (cumulative, i.e. with what they import in turn). Writes
bench/results/startup.json and .md (startup-quick.* with --quick).

Usage: .venv/bin/python bench/bench_startup.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    REPO_ROOT,
    Contestant,
    ContestantRuns,
    alternate,
    finish,
    fmt,
    machine_description,
    markdown_table,
    ratio,
    spread,
)

POWERCAST_CLI = Path(sys.executable).with_name("powercast")
PYARROW_IMPORTS = "import pyarrow.csv, pyarrow.parquet, pyarrow.dataset"
LABELS = {
    "powercast --help": "`powercast --help`",
    "pyarrow imports": f"`python -c \"{PYARROW_IMPORTS}\"`",
    "python": "`python -c pass` (the interpreter alone)",
}
TOP_PACKAGES = 8


def contestants() -> list[Contestant]:
    """Return the CLI, the pyarrow imports an ingest needs and the bare interpreter, as whole processes."""
    return [
        Contestant("powercast --help", [str(POWERCAST_CLI), "--help"]),
        Contestant("pyarrow imports", [sys.executable, "-c", PYARROW_IMPORTS]),
        Contestant("python", [sys.executable, "-c", "pass"]),
    ]


def startup_table(runs: dict[str, ContestantRuns]) -> str:
    """Return medians, spread, peak RSS and each contestant's time as a multiple of the others."""
    median = {name: spread(run.wall_s)["median"] for name, run in runs.items()}
    rows = []
    for name, run in runs.items():
        wall = spread(run.wall_s)
        rows.append([
            LABELS[name], fmt(wall["median"]), f"{fmt(wall['min'])}–{fmt(wall['max'])}",
            fmt(spread(run.peak_rss_mib)["median"], 4), fmt(ratio(median[name], median["pyarrow imports"])),
            fmt(ratio(median[name], median["python"])),
        ])
    headers = ["contestant", "median s", "min–max s", "peak RSS MiB", "× pyarrow imports", "× interpreter"]
    return markdown_table(headers, rows)


def _import_lines(stderr: str) -> list[tuple[int, str, int]]:
    """Return (depth, module, cumulative µs) per ``-X importtime`` line, in the order printed (children first)."""
    lines = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        lines.append((depth, name.strip(), int(cumulative)))
    return lines


def import_breakdown(stderr: str) -> list[dict[str, Any]]:
    """Return the packages that cost most to import, by cumulative ms where another package first imported them.

    ``-X importtime`` prints a module after the modules it imported (one level deeper), so a line's
    parent is the next line printed at a shallower depth. A package's cost is counted where it is
    entered from outside itself (``torch`` imported by ``powercast.training``), with what it imports.
    """
    lines = _import_lines(stderr)
    cost_us: dict[str, int] = {}
    for index, (depth, name, cumulative_us) in enumerate(lines):
        parent = next((other for d, other, _ in lines[index + 1 :] if d < depth), None)
        package = name.split(".")[0]
        if package.startswith("_"):
            continue  # the interpreter's own bootstrap modules (_frozen_importlib_external, _io): not a choice
        if parent is None or parent.split(".")[0] != package:
            cost_us[package] = cost_us.get(package, 0) + cumulative_us
    total_us = sum(cumulative for depth, _, cumulative in lines if depth == 0)
    ranked = sorted(cost_us.items(), key=lambda item: item[1], reverse=True)[:TOP_PACKAGES]
    return [{"package": package, "cumulative_ms": round(us / 1000, 1), "share_of_imports": round(us / total_us, 3)}
            for package, us in ranked]


def measure_imports() -> list[dict[str, Any]]:
    """Run ``python -X importtime -m powercast --help`` once and return its top packages."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "powercast", "--help"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    )
    return import_breakdown(completed.stderr)


def main() -> int:
    """Alternate the three start-ups, break the CLI's down, print and write bench/results/startup.*."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 alternating rounds, no warm-up")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 7; 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 1; 0 with --quick)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    machine = machine_description()
    runs = alternate(contestants(), repeats, warmup)
    breakdown = measure_imports()
    breakdown_md = markdown_table(
        ["package (entered from outside itself)", "cumulative import ms", "share of all imports"],
        [[row["package"], fmt(row["cumulative_ms"]), f"{row['share_of_imports']:.0%}"] for row in breakdown],
    )
    sections = [
        (f"Start-up, whole processes (medians of {repeats}, alternated)", startup_table(runs)),
        ("What `powercast --help` imports (one `python -X importtime` run; nested packages overlap)", breakdown_md),
    ]
    figures = {"quick": args.quick, "warmup_rounds": warmup, "startup": {name: run.summary() for name, run in runs.items()},
               "import_breakdown": breakdown}
    return finish("startup", args.quick, machine, figures, sections)


if __name__ == "__main__":
    raise SystemExit(main())
