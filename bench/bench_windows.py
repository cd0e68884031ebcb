"""Benchmark: time and peak memory to build full-history windows from the full UCI file.

For each (frequency, lookback) case, ``prepare_series`` turns the whole ../shared/data file into
a ``PreparedSeries`` (resample, gaps, split, scaler, features, window index) and a
``WindowDataModule`` is built over it (including its O(T) NaN guard). Each case runs in a fresh
process so that memory freed by one case cannot hide the next one's growth. Reported per case:
wall time of each stage, tracemalloc peak (Python + numpy allocations), peak RSS growth over
the readings already in memory (sampled every 2 ms), and the bytes a materialised copy of all
windows would need, for contrast. Prints a table and writes bench/results/windows.json.

Usage: .venv/bin/python bench/bench_windows.py [--data PATH] [--horizon STEPS]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from powercast.core.config import PrepareConfig, SplitConfig
from powercast.core.schemas import MEASURED_COLUMNS, UCI_HEADER
from powercast.io.atomic import atomic_write_bytes
from powercast.prepare.datamodule import WindowDataModule
from powercast.prepare.series import prepare_series
from powercast.prepare.windows import sliding_windows

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "windows.json"
CASES: tuple[tuple[str, int], ...] = (("1h", 168), ("1h", 1440), ("1min", 168), ("1min", 1440))
UCI_CLOCK = timezone(timedelta(hours=1))
MIB = 1024 * 1024


def read_uci_file(path: Path) -> pd.DataFrame:
    """Return the UCI file's readings with a UTC ``timestamp`` and ``MEASURED_COLUMNS`` ('?' as NaN)."""
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=";"),
        convert_options=pacsv.ConvertOptions(
            null_values=["?", ""],
            column_types={name: pa.float32() for name in UCI_HEADER[2:]} | {"Date": pa.string(), "Time": pa.string()},
        ),
    )
    local = pc.strptime(
        pc.binary_join_element_wise(table["Date"], table["Time"], " "), format="%d/%m/%Y %H:%M:%S", unit="us"
    )
    frame = table.select(list(UCI_HEADER[2:])).rename_columns(list(MEASURED_COLUMNS)).to_pandas()
    # The UCI clock is a fixed +01:00 offset; subtracting it gives UTC.
    utc = pd.to_datetime(local.to_numpy(zero_copy_only=False) - np.timedelta64(1, "h")).tz_localize("UTC")
    frame.insert(0, "timestamp", utc)
    return frame


class RssPeak:
    """Samples this process's RSS in a thread; ``peak_bytes`` is the highest value seen."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak_bytes = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss)


def measure(build: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Return (result, elapsed_s, tracemalloc peak MiB, RSS growth MiB) of one call of ``build``."""
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    tracemalloc.start()
    with RssPeak() as rss:
        started = time.perf_counter()
        result = build()
        elapsed_s = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed_s, traced_peak / MIB, (rss.peak_bytes - rss_before) / MIB


def time_only(build: Callable[[], Any], repeats: int = 3) -> float:
    """Return the best wall time of ``repeats`` calls (no tracemalloc overhead)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        build()
        best = min(best, time.perf_counter() - started)
    return best


def run_case(readings: pd.DataFrame, freq: str, lookback_steps: int, horizon_steps: int) -> dict[str, Any]:
    """Return the measurements of one (frequency, lookback) case."""
    config = PrepareConfig(
        freq=freq, lookback_steps=lookback_steps, horizon_steps=horizon_steps, split=SplitConfig.reference()
    )

    def build() -> tuple[Any, WindowDataModule]:
        prepared = prepare_series(readings, config, "sceaux_household")
        return prepared, WindowDataModule(prepared)

    (prepared, module), _, traced_mib, rss_mib = measure(build)
    prepare_s = time_only(lambda: prepare_series(readings, config, "sceaux_household"), repeats=2)
    datamodule_s = time_only(lambda: WindowDataModule(prepared))
    windows = sliding_windows(prepared.inputs, lookback_steps + horizon_steps)
    n_windows = int(sum(starts.size for starts in prepared.window_starts.values()))
    n_features = len(prepared.feature_names)
    materialised_mib = n_windows * (lookback_steps * n_features + horizon_steps) * 4 / MIB
    first_batch = next(iter(module.train_dataloader()))
    return {
        "freq": freq,
        "lookback_steps": lookback_steps,
        "horizon_steps": horizon_steps,
        "grid_steps": len(prepared.index_utc),
        "features": n_features,
        "windows": {split: int(starts.size) for split, starts in prepared.window_starts.items()},
        "origins": {split: int(starts.size) for split, starts in prepared.origin_starts.items()},
        "exclusions": prepared.exclusions,
        "prepare_s": round(prepare_s, 3),
        "datamodule_s": round(datamodule_s, 4),
        "tracemalloc_peak_mib": round(traced_mib, 1),
        "rss_growth_peak_mib": round(rss_mib, 1),
        "inputs_mib": round(prepared.inputs.nbytes / MIB, 2),
        "window_view_shares_memory": bool(np.shares_memory(windows, prepared.inputs)),
        "materialised_windows_mib": round(materialised_mib, 1),
        "batch_shapes": [list(first_batch[0].shape), list(first_batch[1].shape)],
    }


def main() -> None:
    """Run every case, print the table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UCI text file (.txt or .txt.gz)")
    parser.add_argument("--horizon", type=int, default=24, help="horizon in steps for every case")
    parser.add_argument("--case", help="run one case FREQ:LOOKBACK in this process and print its JSON")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"data file {args.data} not found: pass --data or place it under ../shared/data/")
    if args.case:
        freq, lookback = args.case.split(":")
        started = time.perf_counter()
        readings = read_uci_file(args.data)
        row = run_case(readings, freq, int(lookback), args.horizon)
        row["read_s"] = round(time.perf_counter() - started, 2)
        row["readings"] = len(readings)
        print(json.dumps(row, default=str))
        return
    results = []
    for freq, lookback in CASES:
        command = [sys.executable, __file__, "--data", str(args.data), "--horizon", str(args.horizon)]
        child = subprocess.run([*command, "--case", f"{freq}:{lookback}"], capture_output=True, text=True, check=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"read {results[0]['readings']:,} readings from {args.data.name} in {results[0]['read_s']:.1f} s per case\n")
    header = (
        f"{'freq':<5} {'L':>5} {'H':>3} {'grid T':>9} {'windows':>9} {'prepare s':>9} {'datamod s':>9} "
        f"{'tracemalloc MiB':>15} {'RSS+ MiB':>9} {'inputs MiB':>10} {'copy would be MiB':>17}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['freq']:<5} {row['lookback_steps']:>5} {row['horizon_steps']:>3} {row['grid_steps']:>9,} "
            f"{sum(row['windows'].values()):>9,} {row['prepare_s']:>9.2f} {row['datamodule_s']:>9.3f} "
            f"{row['tracemalloc_peak_mib']:>15.1f} {row['rss_growth_peak_mib']:>9.1f} {row['inputs_mib']:>10.2f} "
            f"{row['materialised_windows_mib']:>17,.0f}"
        )
    report = {
        "benchmark": "bench_windows",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_file": str(args.data),
        "readings": results[0]["readings"],
        "machine": {"platform": platform.platform(), "cpus": psutil.cpu_count(), "python": platform.python_version()},
        "split": "reference (train < 2009-07-01 <= val < 2010-01-01 <= test)",
        "cases": results,
    }
    atomic_write_bytes(RESULTS_PATH, (json.dumps(report, indent=2, default=str) + "\n").encode())
    print(f"\nwrote {RESULTS_PATH.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
