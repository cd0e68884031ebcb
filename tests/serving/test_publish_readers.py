"""Consumers reading by path (pandas, polars, DuckDB) never trip over a re-publish.

Each reader runs in its own process, as a consumer would, and loops: read the pointer
(``latest.json``, the manifest it names, or an older issue time's manifest), then read the
Parquet file that pointer names *by path* with its own library. Path-based readers open a
file more than once (footer, then row groups); before batches were immutable, a re-publish
renamed a new file over the old one between those opens and the read failed.
Meanwhile the main process re-publishes the newest issue time, publishes new ones, and
re-publishes an older one, with a short retention so that superseded files are swept while
the readers run.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pandas as pd

from powercast.core.schemas import FORECAST_SCHEMA
from powercast.serving.publish import latest_pointer, publish_batch

OLD_DAY = "2010-08-16T23:00Z"
FIRST_NEW_DAY = "2010-08-17T23:00Z"
METERS = ("m1", "m2")
HORIZON_STEPS = 24
PUBLISH_FOR_S = 6.0  # the machine may be shared: the loop is bounded by time, the counts are checked after
MIN_PUBLISHES = 30
MIN_READS = 20
# Superseded files are swept this long after they stop being current: short enough that sweeps
# happen during the test, far longer than one read (milliseconds) even on a loaded 2-core machine.
RETENTION_S = 3.0
READERS = ("pandas", "polars", "duckdb")


def _level_kw(publish_number: int) -> float:
    return 1.0 + publish_number % 7


def _read_by_path(reader: str, path: str, connection=None) -> pd.DataFrame:
    """Read one Parquet file by path with a consumer's library; return it as pandas for the checks."""
    if reader == "pandas":
        return pd.read_parquet(path)
    if reader == "polars":
        import polars as pl

        return pl.read_parquet(path).to_pandas()
    return connection.sql(f"SELECT * FROM read_parquet('{path}')").df()  # one DuckDB connection, many queries


def _problems_in(frame: pd.DataFrame, pointer: dict, path: str) -> list[str]:
    """Return what makes ``frame`` not the complete batch ``pointer`` announces (empty when it is)."""
    missing = [name for name in FORECAST_SCHEMA.names if name not in frame.columns]
    if missing:  # DuckDB adds the hive column issue_date by itself: extra columns are the reader's
        return [f"{path}: columns {missing} missing from {list(frame.columns)}"]
    problems = []
    if len(frame) != pointer["rows"] or sorted(frame["meter_id"].unique()) != pointer["meters"]:
        problems.append(f"{path}: {len(frame)} rows of {sorted(frame['meter_id'].unique())}, pointer says {pointer}")
    if frame.isna().any().any():
        problems.append(f"{path}: null values")
    if {pd.Timestamp(t).tz_convert("UTC") for t in frame["issued_at"]} != {pd.Timestamp(pointer["issued_at"])}:
        problems.append(f"{path}: issued_at {frame['issued_at'].unique()} vs pointer {pointer['issued_at']}")
    runs = frame["run_id"].unique()
    if len(runs) != 1:
        return [*problems, f"{path}: rows of several publishes {runs}"]
    if "run_id" in pointer and runs[0] != pointer["run_id"]:  # a manifest names the run its file holds
        problems.append(f"{path}: rows of {runs[0]}, its manifest announces {pointer['run_id']}")
    expected_kw = _level_kw(int(runs[0].removeprefix("run-")))
    for meter_id, rows in frame.groupby("meter_id"):
        # the factory's daily sine sums to 0 over 24 steps, so the mean is the publish's level
        if (
            sorted(rows["horizon_h"]) != list(range(1, HORIZON_STEPS + 1))
            or abs(rows["yhat_kw"].mean() - expected_kw) > 1e-3
        ):
            problems.append(f"{path}: meter {meter_id} is not the complete batch of {runs[0]}")
    return problems


def _pointer(forecasts: Path, cycle: int, old_manifest: str) -> dict:
    """Return the pointer a consumer would follow: latest.json, its manifest, or an older issue time's manifest."""
    latest = json.loads((forecasts / "latest.json").read_text())
    if cycle % 3 == 0:
        return latest
    manifest = latest["manifest"] if cycle % 3 == 1 else old_manifest
    return json.loads((forecasts / manifest).read_text())


def _read_in_a_loop(reader: str, root: str, old_manifest: str, ready, stop, results) -> None:
    """Reader process: follow the pointers and read the current batch by path until told to stop."""
    forecasts = Path(root) / "forecasts"
    reads, problems = 0, []
    connection = None
    if reader == "duckdb":
        import duckdb

        connection = duckdb.connect()
    _read_by_path(reader, str(forecasts / _pointer(forecasts, 0, old_manifest)["path"]), connection)  # warm up
    ready.set()
    while not stop.is_set():
        try:
            pointer = _pointer(forecasts, reads, old_manifest)
            path = str(forecasts / pointer["path"])
            problems.extend(_problems_in(_read_by_path(reader, path, connection), pointer, path))
        except Exception as exc:  # noqa: BLE001 - any failure is what this reader reports
            problems.append(f"{type(exc).__name__}: {exc}")
        reads += 1
    results.put((reader, reads, problems[:20], len(problems)))


def _publish(root: str, factory, publish_number: int, issued_at: str):
    """Publish every meter for ``issued_at``; the run id and level say which publish a row came from."""
    level_kw = _level_kw(publish_number)
    batches = [factory(meter_id, issued_at, run_id=f"run-{publish_number}", level_kw=level_kw) for meter_id in METERS]
    return publish_batch(root, batches, retention_s=RETENTION_S)


def _publish_while_readers_run(root: str, factory) -> tuple[int, int]:
    """Publish for PUBLISH_FOR_S; return (publishes, superseded files they swept)."""
    publishes, swept, started = 0, 0, time.monotonic()
    while time.monotonic() - started < PUBLISH_FOR_S:
        if publishes % 5 == 4:
            issued_at = OLD_DAY  # a correction of an older issue time: latest.json stays where it is
        else:  # each new issue time is published once, then re-published three times
            issued_at = (pd.Timestamp(FIRST_NEW_DAY) + pd.Timedelta(days=publishes // 5)).isoformat()
        swept += len(_publish(root, factory, publishes, issued_at).swept)
        publishes += 1
    return publishes, swept


def test_pandas_polars_and_duckdb_readers_never_fail_during_republishes(tmp_path, forecast_batch_factory):
    root = str(tmp_path)
    old_manifest = (
        Path(_publish(root, forecast_batch_factory, 0, OLD_DAY).manifest_path)
        .relative_to(tmp_path / "forecasts")
        .as_posix()
    )
    _publish(root, forecast_batch_factory, 0, FIRST_NEW_DAY)
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    ready = {reader: context.Event() for reader in READERS}
    processes = [
        context.Process(target=_read_in_a_loop, args=(reader, root, old_manifest, ready[reader], stop, results))
        for reader in READERS
    ]
    for process in processes:
        process.start()
    try:
        assert all(event.wait(60) for event in ready.values()), "a reader process did not start"
        publishes, swept = _publish_while_readers_run(root, forecast_batch_factory)
    finally:
        stop.set()
        outcomes = {
            reader: (reads, problems, count)
            for reader, reads, problems, count in (results.get(timeout=60) for _ in READERS)
        }
        for process in processes:
            process.join(timeout=60)
    print(f"\n{publishes} publishes, {swept} files swept; reads per reader: { {r: o[0] for r, o in outcomes.items()} }")
    print(f"failures per reader: { {r: o[2] for r, o in outcomes.items()} }")
    assert {reader: problems for reader, (_, problems, _) in outcomes.items()} == {reader: [] for reader in READERS}
    assert publishes >= MIN_PUBLISHES, f"only {publishes} publishes in {PUBLISH_FOR_S} s"
    assert all(reads >= MIN_READS for reads, _, _ in outcomes.values()), (
        f"too few reads overlapped the publishes: {outcomes}"
    )
    assert swept > 0, "no superseded file was swept while the readers ran"
    assert (tmp_path / "forecasts" / latest_pointer(root)["path"]).is_file()
