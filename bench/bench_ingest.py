"""Benchmark: ingest against its alternatives, and one night's day into stores of growing history.

1. **Full file, whole processes, alternated** (A B C ... A B C ..., medians of ``--repeats``):
   ``powercast ingest`` into a fresh data root (the CLI, start-up included) against the floor
   (``gzip -dc`` to /dev/null), pandas with an explicit date format, the tutorial's pandas with an
   inferred date format, a bare pyarrow CSV read + Parquet write, and DuckDB's CSV reader into
   Parquet. The alternatives parse and write; none validates, quarantines, deduplicates or keeps a
   manifest, which powercast does.
2. **Stages** (what this script measured before, kept): the full file into a fresh root, the same
   file again (a no-op: its sha256 is in the manifest), each in its own process, with the rows the
   ingest report counted, the RSS after imports and the peak RSS.
3. **One day into stores of 3 months, 1 year and 4 years** (``--quick``: 30, 60 and 120 days of the
   sample): each store is built once; the day is the data's last day, cut with ``replay_days`` and
   re-dated to the following days (one new day per run, as nights arrive). Only the one-day ingest
   call is timed (``ingest_s``, inside its process); the whole process's wall time is shown too.

Targets (reported, never asserted): full ingest ≤ 4× the floor and ≥ 2× faster than pandas with an
explicit format; one day ≤ 0.3 s and flat in history (longest ≤ 1.3× shortest). Writes
bench/results/ingest.json and ingest.md (ingest-quick.* with --quick).

Usage: .venv/bin/python bench/bench_ingest.py [--quick] [--data PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    FULL_DATA,
    KIB_PER_MIB,
    SAMPLE_DATA,
    Contestant,
    ContestantRuns,
    alternate,
    finish,
    fmt,
    machine_description,
    markdown_table,
    ratio,
    rss_floor_mib,
    run_process,
    spread,
    target,
    targets_table,
)

POWERCAST_CLI = Path(sys.executable).with_name("powercast")
FULL_HISTORY_DAYS = (91, 365, None)  # None: the whole file (~4 years)
QUICK_HISTORY_DAYS = (30, 60, None)  # None: the whole sample (~120 days)
UCI_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB_PER_MIB
    return float("nan")


def run_stage(root: str, path: str) -> dict[str, Any]:
    """Return the ingest figures of one stage, measured in this process (the ingest call alone is timed)."""
    from powercast.cli.ingest import spare_pyarrows_pandas_probe
    from powercast.core.config import PowercastConfig
    from powercast.store.ingest import ingest_paths

    spare_pyarrows_pandas_probe()  # as `powercast ingest` does: no pandas import inside the timed call
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
        "partitions_written": len(report.partitions_written),
        "elapsed_s": round(elapsed_s, 4),
        "import_rss_mib": round(import_rss_mib, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB, 1),
    }


# --- the alternatives, each run in its own process by ``--alt NAME`` --------------------------


def _alt_pandas(source: str, out: str, explicit_format: bool) -> int:
    import pandas as pd

    frame = pd.read_csv(source, sep=";", na_values="?", low_memory=False)
    stamps = frame.pop("Date") + " " + frame.pop("Time")
    if explicit_format:
        frame.insert(0, "timestamp", pd.to_datetime(stamps, format=UCI_DATE_FORMAT))
    else:
        # The tutorials' read_csv(parse_dates={'dt': ['Date', 'Time']}, dayfirst=True) was removed in
        # pandas 3; its nearest form today lets to_datetime infer the format, day first.
        frame.insert(0, "timestamp", pd.to_datetime(stamps, dayfirst=True))
    frame.to_parquet(out, index=False)
    return len(frame)


def _alt_pyarrow(source: str, out: str) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(
        source,
        parse_options=pacsv.ParseOptions(delimiter=";"),
        convert_options=pacsv.ConvertOptions(null_values=["?"], strings_can_be_null=True),
    )
    pq.write_table(table, out)
    return table.num_rows


def _alt_duckdb(source: str, out: str) -> int:
    import duckdb

    connection = duckdb.connect()
    connection.execute(
        f"COPY (SELECT * FROM read_csv('{source}', delim=';', nullstr='?', header=true)) TO '{out}' (FORMAT parquet)"
    )
    [(rows,)] = connection.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()
    return int(rows)


ALTERNATIVES: dict[str, Callable[[str, str], int]] = {
    "pandas_format": lambda source, out: _alt_pandas(source, out, explicit_format=True),
    "pandas_inferred": lambda source, out: _alt_pandas(source, out, explicit_format=False),
    "pyarrow": _alt_pyarrow,
    "duckdb": _alt_duckdb,
}
ALTERNATIVE_LABELS = {
    "powercast": "`powercast ingest` (parse, validate, quarantine, split, upsert, manifest)",
    "floor": "`gzip -dc` > /dev/null (the floor: decompression alone)",
    "pandas_format": "pandas `read_csv` + `to_datetime(format=...)` + `to_parquet`",
    "pandas_inferred": "pandas `read_csv` + `to_datetime(dayfirst=True)`, format inferred + `to_parquet`",
    "pyarrow": "pyarrow `csv.read_csv` + `parquet.write_table` (dates stay text)",
    "duckdb": "DuckDB `COPY (SELECT * FROM read_csv(...)) TO parquet` (dates stay text)",
}


def run_alternative(name: str, source: str, out: str) -> dict[str, Any]:
    """Run one alternative in this process; return its rows and in-process seconds (printed as JSON)."""
    started = time.perf_counter()
    rows = ALTERNATIVES[name](source, out)
    return {"rows": rows, "elapsed_s": round(time.perf_counter() - started, 4)}


# --- 1. the full file against its alternatives --------------------------------------------------


def full_contestants(data: Path) -> list[Contestant]:
    """Return powercast's CLI, the floor and every alternative, each as a whole process on ``data``."""
    contestants = [
        Contestant("powercast", [str(POWERCAST_CLI), "ingest", "--quiet", "--root", "{run_dir}/root", str(data)]),
        Contestant("floor", ["gzip", "-dc", str(data)], capture_stdout=False),
    ]
    for name in ALTERNATIVES:
        argv = [sys.executable, __file__, "--alt", name, "--alt-source", str(data), "--alt-out", "{run_dir}/out.parquet"]
        contestants.append(Contestant(name, argv))
    return contestants


def full_table(runs: dict[str, ContestantRuns]) -> tuple[str, list[dict[str, Any]]]:
    """Return the full-file table (medians and ratios to the floor and to powercast) and its targets."""
    median = {name: spread(run.wall_s)["median"] for name, run in runs.items()}
    rows = []
    for name, run in runs.items():
        wall, rss = spread(run.wall_s), spread(run.peak_rss_mib)
        rows.append([
            ALTERNATIVE_LABELS[name], fmt(wall["median"]), f"{fmt(wall['min'])}–{fmt(wall['max'])}",
            fmt(rss["median"], 4), fmt(ratio(median[name], median["floor"])),
            fmt(ratio(median[name], median["powercast"])),
        ])
    headers = ["contestant", "median s", "min–max s", "peak RSS MiB", "× floor", "÷ powercast (>1: powercast faster)"]
    targets = [
        target("full ingest ≤ 4× the floor", ratio(median["powercast"], median["floor"]), 4.0, "× floor"),
        target("full ingest ≥ 2× faster than pandas (explicit format)",
               ratio(median["pandas_format"], median["powercast"]), 2.0, "×", at_most=False),
        target("full ingest ≥ 2× faster than pandas (inferred format)",
               ratio(median["pandas_inferred"], median["powercast"]), 2.0, "×", at_most=False),
    ]
    return markdown_table(headers, rows), targets


# --- 2. stages and 3. stores of growing history -------------------------------------------------


def _stage(root: Path, path: Path) -> dict[str, Any]:
    # Through the launcher, like every contestant: a child forked from this process (which holds
    # the decompressed text) would report this process's RSS as its own peak.
    argv = [sys.executable, __file__, "--stage-root", str(root), "--stage-path", str(path)]
    with tempfile.TemporaryDirectory(prefix="bench-stage-") as run_dir:
        wall_s, _, report = run_process(Contestant("stage", argv), 0, Path(run_dir))
    return {**report, "process_wall_s": round(wall_s, 4)}


def _uci_day(text: str) -> date:
    day, month, year = (int(part) for part in text.split("/"))
    return date(year, month, day)


def _uci_text(day: date) -> str:
    return f"{day.day}/{day.month}/{day.year}"


def history_file(text: str, last_day: date, days: int, workdir: Path) -> Path:
    """Write the last ``days`` days of the UCI ``text`` (ending on ``last_day``) as a gzip file."""
    first_day = last_day - timedelta(days=days - 1)
    start = text.find(f"\n{_uci_text(first_day)};")
    if start < 0:
        raise ValueError(f"no line on {first_day} in the data: cannot cut {days} days of history")
    header_end = text.index("\n")
    target_path = workdir / f"history_{days}d.txt.gz"
    # Level 1: the cut is set-up, not measured; the store it builds is the same at any level.
    target_path.write_bytes(gzip.compress((text[: header_end + 1] + text[start + 1 :]).encode("utf-8"), 1, mtime=0))
    return target_path


def day_file_maker(data: Path, last_day: date, workdir: Path) -> Callable[[int], Path]:
    """Return ``day_path(i)``: the last day re-dated to ``last_day + 1 + i``, so each run brings a new night."""
    from powercast.store.replay import replay_days

    [base] = replay_days(data, workdir / "replayed", start_day=last_day, n_days=1)
    base_text = gzip.decompress(base.read_bytes()).decode("utf-8")
    made: dict[int, Path] = {}

    def day_path(run_index: int) -> Path:
        if run_index not in made:
            day = last_day + timedelta(days=1 + run_index)
            text = base_text.replace(f"\n{_uci_text(last_day)};", f"\n{_uci_text(day)};")
            made[run_index] = workdir / f"household_power_consumption_{day.isoformat()}.txt.gz"
            made[run_index].write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        return made[run_index]

    return day_path


def build_stores(data: Path, history_days: tuple[int | None, ...], workdir: Path) -> tuple[dict, dict, date]:
    """Build one store per history length (the whole file for None); return (stores, stage figures, last day)."""
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    first_day = _uci_day(text[text.index("\n") + 1 :].split(";", 1)[0])
    last_day = _uci_day(text[text.rindex("\n", 0, len(text.rstrip("\n"))) + 1 :].split(";", 1)[0])
    stores: dict[str, dict[str, Any]] = {}
    stages: dict[str, dict[str, Any]] = {}
    for days in history_days:
        n_days = days or (last_day - first_day).days + 1
        label = f"{n_days} d" + (" (all)" if days is None else "")
        root = workdir / f"store_{n_days}d"
        source = data if days is None else history_file(text, last_day, days, workdir)
        stages[f"build store {label}"] = _stage(root, source)
        if days is None:
            # The stages this script always measured: the whole file, then the same file again (a no-op).
            stages["full ingest"] = stages.pop(f"build store {label}")
            stages["re-ingest (same file)"] = _stage(root, source)
        stores[label] = {"root": root, "history_days": n_days}
    return stores, stages, last_day


def stages_table(stages: dict[str, dict[str, Any]]) -> str:
    """Return the in-process figures of each stage (the ingest call alone is timed)."""
    headers = ["stage", "rows_in", "stored", "missing", "quarantined", "skipped", "partitions", "ingest s",
               "whole process s", "RSS after imports MiB", "peak RSS MiB"]
    rows = [
        [name, s["rows_in"], s["rows_stored"], s["rows_missing"], s["rows_quarantined"], s["skipped"],
         s["partitions_written"], fmt(s["elapsed_s"]), fmt(s["process_wall_s"]), fmt(s["import_rss_mib"], 4),
         fmt(s["peak_rss_mib"], 4)]
        for name, s in stages.items()
    ]
    return markdown_table(headers, rows)


def history_comparison(
    stores: dict[str, dict[str, Any]], day_path: Callable[[int], Path], repeats: int, warmup: int
) -> tuple[dict[str, ContestantRuns], str, list[dict[str, Any]]]:
    """Alternate one-day ingests over the stores; return the runs, the table and the targets."""

    def argv_for(root: Path) -> Callable[[int, Path], list[str]]:
        return lambda run_index, _run_dir: [sys.executable, __file__, "--stage-root", str(root),
                                            "--stage-path", str(day_path(run_index))]

    contestants = [Contestant(label, argv_for(store["root"])) for label, store in stores.items()]
    runs = alternate(contestants, repeats, warmup)
    ingest_s = {label: spread(run.reported("elapsed_s"))["median"] for label, run in runs.items()}
    shortest = next(iter(ingest_s))
    rows = []
    for label, run in runs.items():
        inner, wall = spread(run.reported("elapsed_s")), spread(run.wall_s)
        rows.append([
            label, fmt(inner["median"]), f"{fmt(inner['min'])}–{fmt(inner['max'])}", fmt(ratio(ingest_s[label], ingest_s[shortest])),
            fmt(wall["median"]), fmt(spread(run.peak_rss_mib)["median"], 4),
        ])
    headers = ["store history", "one-day ingest s (median)", "min–max s", f"× {shortest}", "whole process s", "peak RSS MiB"]
    longest = list(ingest_s)[-1]
    targets = [
        target(f"one day ≤ 0.3 s ({longest} store)", ingest_s[longest], 0.3, "s"),
        target(f"flat in history ({longest} ≤ 1.3× {shortest})", ratio(ingest_s[longest], ingest_s[shortest]), 1.3, "×"),
    ]
    return runs, markdown_table(headers, rows), targets


# --- main ---------------------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled sample, fewer repeats (under a minute)")
    parser.add_argument("--data", type=Path, help="UCI file (default: ../shared/data, or the sample with --quick)")
    parser.add_argument("--repeats", type=int, help="timed runs per contestant (default 3; 5 for the one-day ingest)")
    parser.add_argument("--warmup", type=int, help="untimed alternating rounds first (default 1; 0 with --quick)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--stage-root", help=argparse.SUPPRESS)
    parser.add_argument("--stage-path", help=argparse.SUPPRESS)
    parser.add_argument("--alt", choices=sorted(ALTERNATIVES), help=argparse.SUPPRESS)
    parser.add_argument("--alt-source", help=argparse.SUPPRESS)
    parser.add_argument("--alt-out", help=argparse.SUPPRESS)
    return parser.parse_args()


def compare(data: Path, args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the three parts; return the figures for the JSON file and the titled tables."""
    # Quick: no warm-up round, three timed ones; the median drops a cold first run all the same.
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    full_repeats = args.repeats or 3
    day_repeats = args.repeats or (3 if args.quick else 5)
    print(f"full file, {full_repeats} alternating rounds (+{warmup} warm-up)", file=sys.stderr)
    full_runs = alternate(full_contestants(data), full_repeats, warmup, workdir)
    full_md, full_targets = full_table(full_runs)
    print("stores of growing history (built once)", file=sys.stderr)
    stores, stages, last_day = build_stores(data, QUICK_HISTORY_DAYS if args.quick else FULL_HISTORY_DAYS, workdir)
    day_path = day_file_maker(data, last_day, workdir)
    print(f"one day into each store, {day_repeats} alternating rounds (+{warmup} warm-up)", file=sys.stderr)
    day_runs, day_md, day_targets = history_comparison(stores, day_path, day_repeats, warmup)
    targets = full_targets + day_targets
    figures = {
        "data": str(data),
        "quick": args.quick,
        "warmup_rounds": warmup,
        "rss_floor_mib": rss_floor_mib(),
        "full_file": {name: run.summary() for name, run in full_runs.items()},
        "stages": stages,
        "one_day": {label: {"history_days": stores[label]["history_days"], **run.summary()}
                    for label, run in day_runs.items()},
        "targets": targets,
    }
    rows_in = stages["full ingest"]["rows_in"]
    sections = [
        (f"Full file into Parquet, whole processes ({rows_in:,} lines; medians of {full_repeats}, alternated)", full_md),
        ("Stages (each in its own process; the ingest call alone is timed)", stages_table(stages)),
        (f"One day into stores of growing history (the ingest call alone; medians of {day_repeats}, alternated)", day_md),
        ("Targets (reported, not asserted)", targets_table(targets)),
    ]
    return figures, sections


def main() -> int:
    """Run the comparisons, print the tables and write bench/results/ingest.json and ingest.md."""
    args = _parse_args()
    if args.stage_root:
        print(json.dumps(run_stage(args.stage_root, args.stage_path)))
        return 0
    if args.alt:
        print(json.dumps(run_alternative(args.alt, args.alt_source, args.alt_out)))
        return 0
    data = args.data or (SAMPLE_DATA if args.quick else FULL_DATA)
    if not data.is_file():
        print(f"bench_ingest: data file {data} not found (needs ../shared beside the repo, or --quick)", file=sys.stderr)
        return 1
    machine = machine_description()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.workdir))
    try:
        figures, sections = compare(data, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish("ingest", args.quick, machine, figures, sections)


if __name__ == "__main__":
    raise SystemExit(main())
