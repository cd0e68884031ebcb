"""What every benchmark in bench/ shares: the machine, alternating whole-process runs, results files.

The machine these benchmarks run on is shared and loaded, so an absolute time says little on its
own. Every comparison therefore runs its contestants alternately in one run (A B C A B C ...), so
that a burst of load from a neighbour hits all of them alike, and reports medians and ratios.

``alternate`` runs each contestant as a whole process (``subprocess``): its start-up is counted and
its peak memory is its own (``ru_maxrss`` of that child, from ``os.wait4``). A contestant may print
one JSON object as the last line of its stdout; the runner keeps it per run (``reports``), so a
child can report a figure it measured inside itself (e.g. the ingest call alone, without start-up).

``write_results`` writes ``bench/results/<name>.json`` (the machine, then the figures) and
``bench/results/<name>.md`` (the machine in one line, then the tables).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SAMPLE_DATA = REPO_ROOT / "data" / "sample" / "household_power_consumption_last120d.txt.gz"
FULL_DATA = REPO_ROOT.parent / "shared" / "data" / "household_power_consumption.txt.gz"
KIB_PER_MIB = 1024
# Distributions (not import names) whose versions decide what a benchmark measures.
LIBRARIES: tuple[str, ...] = (
    "powercast", "torch", "pytorch-lightning", "lightning", "numpy", "pandas", "pyarrow", "scikit-learn",
    "duckdb", "prefect",
)

# argv of a contestant, or a function of (run index, fresh run folder) returning it: the index
# counts every run of that contestant (warm-up included), so each run can get its own input.
Argv = Sequence[str] | Callable[[int, Path], Sequence[str]]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / KIB_PER_MIB**2, 1)
    except OSError:
        pass
    return None


# Device nodes of NVIDIA (CUDA) and AMD (ROCm) drivers: without any, torch cannot see a GPU, and
# importing torch only to ask would cost seconds of every benchmark's start on a loaded machine.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def _gpu() -> dict[str, Any]:
    """Return what torch sees: the card's name and memory, or why there is none."""
    if "torch" not in sys.modules and not any(os.path.exists(node) for node in GPU_DEVICE_NODES):
        return {"name": None, "why_none": f"no GPU device node ({', '.join(GPU_DEVICE_NODES)})"}
    try:
        import torch
    except ImportError:
        return {"name": None, "why_none": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"name": None, "why_none": f"torch {torch.__version__} sees no CUDA device"}
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / KIB_PER_MIB**3, 1),
        "count": torch.cuda.device_count(),
        "bf16": bool(torch.cuda.is_bf16_supported()),
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None  # not installed: said as such rather than left out
    return versions


def machine_description() -> dict[str, Any]:
    """Return the machine a result was measured on: CPU, cores, memory, GPU, load, library versions."""
    return {
        "measured_at_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        # The load at the start says how busy the neighbours were: why absolute times vary between runs.
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "gpu": _gpu(),
        "versions": _versions(),
    }


def machine_line(machine: Mapping[str, Any]) -> str:
    """Return the machine in one markdown line (CPU, cores, memory, GPU, load, main versions)."""
    gpu = machine["gpu"]["name"] or "no GPU"
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
    return (
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, {machine['memory_gib']} GiB, {gpu}; "
        f"load average (1/5/15 min) {'/'.join(str(v) for v in machine['load_average_1_5_15'])}; {versions}"
    )


@dataclass(frozen=True)
class Contestant:
    """One whole-process contestant of a comparison.

    ``argv`` may hold ``{run_dir}``, replaced by a fresh empty folder per run (removed after it), or
    be a function of (run index, run folder). ``capture_stdout=False`` sends stdout to /dev/null,
    for a contestant whose output is the work itself (``gzip -dc``): writing it to a file would
    time the disk, not the contestant.
    """

    name: str
    argv: Argv
    capture_stdout: bool = True
    env: Mapping[str, str] | None = None


@dataclass
class ContestantRuns:
    """What ``alternate`` measured for one contestant; the warm-up runs are kept apart."""

    name: str
    wall_s: list[float] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    warmup_wall_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return medians, minima and maxima of wall time and peak RSS, and every run."""
        return {
            "wall_s": spread(self.wall_s),
            "peak_rss_mib": spread(self.peak_rss_mib),
            "runs_wall_s": [round(value, 4) for value in self.wall_s],
            "warmup_wall_s": [round(value, 4) for value in self.warmup_wall_s],
            "reports": self.reports,
        }

    def reported(self, key: str) -> list[float]:
        """Return one numeric figure the child reported, per timed run."""
        return [float(report[key]) for report in self.reports if key in report]


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Return median, min and max (None for no values): the only way a time is reported here."""
    if not values:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _resolved_argv(contestant: Contestant, run_index: int, run_dir: Path) -> list[str]:
    if callable(contestant.argv):
        return [str(part) for part in contestant.argv(run_index, run_dir)]
    return [str(part).replace("{run_dir}", str(run_dir)) for part in contestant.argv]


def _last_json_line(text: str) -> dict[str, Any] | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and lines[-1].lstrip().startswith("{"):
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            return None
    return None


# The child that times a contestant. A child's ru_maxrss starts at the RSS of the process it was
# forked from (Linux copies the parent's high-water mark at fork and keeps it across exec; Python's
# vfork does the same), so a benchmark that had imported torch would see every contestant at
# >= its own 400 MiB. This launcher is a bare ``python -S`` (about 7 MiB): it forks and execs the
# contestant, times it from fork to exit and writes "<seconds> <ru_maxrss KiB> <exit code>".
_LAUNCHER = """
import os, sys, time
result_path, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed_s = time.perf_counter() - started
with open(result_path, "w") as result:
    result.write(f"{elapsed_s!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_process(contestant: Contestant, run_index: int, run_dir: Path) -> tuple[float, float, dict[str, Any] | None]:
    """Run one contestant once; return (wall seconds, peak RSS in MiB, its JSON report or None).

    Wall time runs from fork to exit (exec and the contestant's whole start-up included); the peak
    RSS is the contestant's own ``ru_maxrss`` with a floor of the launcher's few MiB (see
    ``rss_floor_mib``). Raises RuntimeError with its stderr tail if it fails.
    """
    argv = _resolved_argv(contestant, run_index, run_dir)
    env = None if contestant.env is None else {**os.environ, **contestant.env}
    stdout_path, stderr_path, result_path = (run_dir / name for name in ("_stdout.txt", "_stderr.txt", "_result.txt"))
    with open(stdout_path, "wb") as out_file, open(stderr_path, "wb") as err_file:
        stdout = out_file if contestant.capture_stdout else subprocess.DEVNULL
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(result_path), *argv],
            stdout=stdout, stderr=err_file, env=env, cwd=REPO_ROOT, check=False,
        )
    fields = result_path.read_text(encoding="ascii").split() if result_path.is_file() else []
    if len(fields) != 3 or fields[2] != "0":
        tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{contestant.name} failed ({' '.join(fields) or 'no result'}): {' '.join(argv)}\n{tail}")
    wall_s, maxrss_kib = float(fields[0]), int(fields[1])  # ru_maxrss is in KiB on Linux
    report = _last_json_line(stdout_path.read_text(encoding="utf-8", errors="replace")) if contestant.capture_stdout else None
    return wall_s, maxrss_kib / KIB_PER_MIB, report


def rss_floor_mib() -> float:
    """Return the peak RSS ``run_process`` reports for ``true``: peaks at or below it are not resolved."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        _, rss_mib, _ = run_process(Contestant("true", ["true"], capture_stdout=False), 0, Path(folder))
    return round(rss_mib, 1)


def alternate(
    contestants: Sequence[Contestant],
    repeats: int,
    warmup: int = 1,
    workdir: Path | None = None,
    progress: bool = True,
) -> dict[str, ContestantRuns]:
    """Run every contestant ``warmup + repeats`` times in alternating order (A B C A B C ...).

    The warm-up rounds (page cache, byte-code caches) are run the same way and kept apart. Each run
    gets a fresh folder under ``workdir`` (a temporary one by default), removed after the run.
    """
    runs = {contestant.name: ContestantRuns(contestant.name) for contestant in contestants}
    base = Path(tempfile.mkdtemp(prefix="bench-alternate-", dir=workdir))
    try:
        for round_index in range(warmup + repeats):
            for contestant in contestants:
                run_dir = base / f"{len(runs)}-{round_index}-{contestant.name}"
                run_dir.mkdir()
                wall_s, rss_mib, report = run_process(contestant, round_index, run_dir)
                shutil.rmtree(run_dir, ignore_errors=True)
                record = runs[contestant.name]
                if round_index < warmup:
                    record.warmup_wall_s.append(wall_s)
                    continue
                record.wall_s.append(wall_s)
                record.peak_rss_mib.append(rss_mib)
                if report is not None:
                    record.reports.append(report)
                if progress:
                    print(f"  round {round_index - warmup + 1}/{repeats} {contestant.name}: {wall_s:.3f} s", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return runs


def alternate_in_process(
    contestants: Mapping[str, Callable[[int], Any]], repeats: int, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    """Call each function ``warmup + repeats`` times alternately (A B A B ...); return its time spread.

    For work that only makes sense inside one process (a forecast from models already in memory,
    a training epoch): the function gets the run index; start-up is not part of what is timed.
    """
    times_s: dict[str, list[float]] = {name: [] for name in contestants}
    warmups_s: dict[str, list[float]] = {name: [] for name in contestants}
    for round_index in range(warmup + repeats):
        for name, function in contestants.items():
            started = time.perf_counter()
            function(round_index)
            elapsed_s = time.perf_counter() - started
            (warmups_s if round_index < warmup else times_s)[name].append(elapsed_s)
    return {
        name: {"wall_s": spread(times_s[name]), "runs_wall_s": [round(v, 4) for v in times_s[name]],
               "warmup_wall_s": [round(v, 4) for v in warmups_s[name]]}
        for name in contestants
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator (None when either is missing or the denominator is 0)."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def target(name: str, measured: float | None, limit: float, unit: str, at_most: bool = True) -> dict[str, Any]:
    """Return a target's verdict: met or missed, and by how much (a fraction of the limit). Never asserts."""
    comparator = "≤" if at_most else "≥"
    verdict: dict[str, Any] = {"target": name, "limit": f"{comparator} {limit:g} {unit}", "unit": unit}
    if measured is None:
        return {**verdict, "measured": None, "met": None, "by": "not measured"}
    met = measured <= limit if at_most else measured >= limit
    missed_by = (measured - limit) / limit if at_most else (limit - measured) / limit
    by = "met" if met else f"missed by {missed_by:.0%}"
    return {**verdict, "measured": round(measured, 4), "met": met, "by": by}


def fmt(value: float | None, digits: int = 3) -> str:
    """Return a number to ``digits`` significant digits for a table ('–' when missing)."""
    if value is None:
        return "–"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"  # no exponent for large numbers: 4,204 ms, not 4.2e+03
    return f"{value:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a GitHub markdown table (also readable printed to a terminal)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
    """Return the targets as a markdown table: what, limit, measured, verdict."""
    rows = [[t["target"], t["limit"], f"{fmt(t['measured'])} {t['unit']}", t["by"]] for t in targets]
    return markdown_table(["target", "limit", "measured", "verdict"], rows)


def write_results(
    name: str, machine: Mapping[str, Any], figures: Mapping[str, Any], sections: Sequence[tuple[str, str]]
) -> tuple[Path, Path]:
    """Write bench/results/<name>.json (machine + figures) and <name>.md (machine line + titled tables)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps({"machine": machine, **figures}, indent=2, default=str) + "\n", encoding="utf-8")
    parts = [f"# {name}", "", f"Machine: {machine_line(machine)}", ""]
    for title, table in sections:
        parts += [f"## {title}", "", table, ""]
    md_path.write_text("\n".join(parts), encoding="utf-8")
    return json_path, md_path


def finish(
    name: str, quick: bool, machine: Mapping[str, Any], figures: Mapping[str, Any], sections: Sequence[tuple[str, str]]
) -> int:
    """Print the tables, write ``<name>[-quick].json|.md`` and say where; return the exit status 0."""
    print_sections(sections)
    json_path, md_path = write_results(f"{name}-quick" if quick else name, machine, figures, sections)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


def print_sections(sections: Sequence[tuple[str, str]]) -> None:
    """Print the titled tables written to the markdown file, for whoever ran the script."""
    for title, table in sections:
        print(f"\n{title}\n{table}")


def add_set_option(parser: Any) -> None:
    """Add the repeatable ``--set KEY=JSON`` option (any dotted configuration override) to ``parser``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other dotted override, e.g. --set 'train.hidden_sizes=[128]' (repeatable)",
    )


def set_overrides(parser: Any, items: Sequence[str]) -> dict[str, Any]:
    """Return the dotted overrides of ``--set`` items; a malformed one exits through ``parser.error`` naming it."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value:
            parser.error(f"--set {item!r}: expected KEY=JSON, e.g. 'train.hidden_sizes=[128]'")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            parser.error(f"--set {item!r}: the value is not JSON ({exc})")
    return overrides

