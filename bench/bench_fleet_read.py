"""Benchmark: reading a fleet's history, one dataset scan against meter by meter.

A global night reads every meter's series at once. ``read_fleet_readings`` lists the store once
and reads every meter's month files in one multithreaded ``pyarrow.dataset`` scan; the
alternative, what ``prepare_meter`` does for one meter, is ``read_readings`` per meter (a listing
and a file open per meter and month). Both read the same columns (timestamp and active power)
of the synthetic store ``bench/bench_fleet.py`` wrote (``bench/results/fleet-<N>``; run it first
with ``--sizes N``); the rows are synthetic, only the cost is measured.

Whole processes, alternated (A B A B ...), medians of ``--repeats``; each child reports the read
alone (start-up and imports excluded) and its rows. Writes bench/results/fleet_read.json and .md.

Usage: .venv/bin/python bench/bench_fleet_read.py [--meters 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    RESULTS_DIR,
    Contestant,
    alternate,
    finish,
    fmt,
    machine_description,
    markdown_table,
    ratio,
    spread,
)

COLUMNS = ["timestamp", "active_power_kw"]
END_UTC = datetime(2010, 11, 26, tzinfo=UTC)  # the end of the history bench_fleet writes
WAYS = ("one scan", "meter by meter")


def read_once(way: str, root: str) -> dict[str, float]:
    """Read every meter of ``root`` one ``way``; return the seconds of the read and the rows read."""
    from powercast.store.readings import list_meters, read_fleet_readings, read_readings

    meters = list_meters(root)
    started = time.perf_counter()
    if way == "one scan":
        tables, failures = read_fleet_readings(root, meters, end_utc=END_UTC, columns=COLUMNS)
        if failures:
            raise SystemExit(f"meters that could not be read: {failures}")
    else:
        tables = {meter_id: read_readings(root, meter_id, end_utc=END_UTC, columns=COLUMNS) for meter_id in meters}
    read_s = time.perf_counter() - started
    return {"read_s": read_s, "meters": len(tables), "rows": sum(table.num_rows for table in tables.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000, help="fleet size: reads bench/results/fleet-<N>")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = RESULTS_DIR / f"fleet-{args.meters}"
    if args.child:
        print(json.dumps(read_once(args.child, str(root))))
        return 0
    if not (root / "store" / "readings").is_dir():
        raise SystemExit(f"no store at {root}: run `.venv/bin/python bench/bench_fleet.py --sizes {args.meters}` first")
    script = str(Path(__file__).resolve())
    contestants = [
        Contestant(way, [sys.executable, script, "--meters", str(args.meters), "--child", way]) for way in WAYS
    ]
    runs = alternate(contestants, repeats=args.repeats)
    read_s = {way: spread(runs[way].reported("read_s")) for way in WAYS}
    rows = [
        [way, fmt(read_s[way]["median"]), f"{fmt(read_s[way]['min'])}–{fmt(read_s[way]['max'])}",
         fmt(spread(runs[way].peak_rss_mib)["median"], 4), runs[way].reports[0]["rows"]]
        for way in WAYS
    ]
    table = markdown_table(["read", "median s", "min–max s", "peak RSS MiB", "rows"], rows)
    scan_vs_each = ratio(read_s["one scan"]["median"], read_s["meter by meter"]["median"])
    figures = {
        "meters": args.meters,
        "read_s": read_s,
        "scan_over_meter_by_meter": scan_vs_each,
        "runs": {way: run.summary() for way, run in runs.items()},
    }
    sections = [(f"Reading {args.meters} synthetic meters' history (timestamp, active power)", table),
                ("One scan / meter by meter", f"{fmt(scan_vs_each)} (medians)")]
    return finish("fleet_read", False, machine_description(), figures, sections)


if __name__ == "__main__":
    raise SystemExit(main())
