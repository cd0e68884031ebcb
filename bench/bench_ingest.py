"""Benchmark: ingest the full UCI file into a fresh data root, re-ingest it, then ingest one more day.

Each stage runs in its own process so its peak RSS is its own: ``peak_rss_mib`` is the process's
``ru_maxrss`` at the end (interpreter and imports included) and ``import_rss_mib`` is the RSS
just before the stage starts, so their difference is what ingest itself needed. The "one more
day" file is the file's last day (26/11/2010, via ``replay_days``) with its date moved to
27/11/2010, i.e. a night's arrival after the full history. Prints a table and writes
bench/results/ingest.json.

Usage: .venv/bin/python bench/bench_ingest.py [--data PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "ingest.json"
KIB_PER_MIB = 1024


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB_PER_MIB
    return float("nan")


def run_stage(root: str, path: str) -> dict[str, Any]:
    """Return the ingest figures of one stage, measured in this process."""
    from powercast.core.config import PowercastConfig
    from powercast.store.ingest import ingest_paths

    import_rss_mib = _rss_mib()
    started = time.perf_counter()
    [report] = ingest_paths([path], PowercastConfig(root=root), progress=False)
    elapsed_s = time.perf_counter() - started
    return {
        "rows_in": report.rows_in,
        "rows_stored": report.rows_stored,
        "rows_missing": report.rows_missing,
        "rows_quarantined": report.rows_quarantined,
        "rows_replaced": report.rows_replaced,
        "skipped": report.skipped,
        "partitions_written": report.partitions_written,
        "elapsed_s": round(elapsed_s, 3),
        "import_rss_mib": round(import_rss_mib, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB, 1),
    }


def _stage_in_subprocess(root: str, path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--stage-root", root, "--stage-path", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _next_day_file(data: Path, workdir: Path) -> Path:
    from powercast.store.replay import replay_days

    [last_day] = replay_days(data, workdir / "last_day", start_day=date(2010, 11, 26), n_days=1)
    text = gzip.decompress(last_day.read_bytes()).decode("utf-8").replace("26/11/2010;", "27/11/2010;")
    target = workdir / "household_power_consumption_2010-11-27.txt.gz"
    target.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return target


def _table(results: dict[str, dict[str, Any]]) -> str:
    headers = ["stage", "rows_in", "stored", "missing", "quarantined", "replaced", "partitions", "elapsed_s", "import_MiB", "peak_MiB"]
    rows = [
        [
            stage,
            r["rows_in"],
            r["rows_stored"],
            r["rows_missing"],
            r["rows_quarantined"],
            r["rows_replaced"],
            len(r["partitions_written"]),
            f"{r['elapsed_s']:.2f}",
            f"{r['import_rss_mib']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for stage, r in results.items()
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)) for row in [headers, *rows]]
    return "\n".join(lines)


def main() -> int:
    """Run the three stages, print the table and write bench/results/ingest.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="full UCI file (default: ../shared/data)")
    parser.add_argument("--stage-root", help=argparse.SUPPRESS)
    parser.add_argument("--stage-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_root:
        print(json.dumps(run_stage(args.stage_root, args.stage_path)))
        return 0
    if not args.data.is_file():
        print(f"bench_ingest: data file {args.data} not found (needs ../shared beside the repo)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
        root = str(Path(workdir) / "root")
        results = {
            "full_ingest": _stage_in_subprocess(root, args.data),
            "re_ingest": _stage_in_subprocess(root, args.data),
        }
        results["one_more_day"] = _stage_in_subprocess(root, _next_day_file(args.data, Path(workdir)))
    print(_table(results))
    payload = {
        "data": str(args.data),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "stages": results,
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
