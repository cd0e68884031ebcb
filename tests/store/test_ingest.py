"""Ingest end to end with real files: counts, quarantine, idempotency, corrections, landing folders, bad files."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import LockedError, SourceFileError
from powercast.core.schemas import (
    MEASURED_COLUMNS,
    QUARANTINE_SCHEMA,
    REASON_BAD_METER_ID,
    REASON_FUTURE_TIMESTAMP,
    REASON_NON_NUMERIC,
    REASON_WRONG_COLUMN_COUNT,
    UCI_HEADER,
)
from powercast.store.ingest import ingest_paths
from powercast.store.manifest import read_manifest
from powercast.store.quarantine import read_quarantine
from powercast.store.readings import read_readings, summarize_partitions

METER = "sceaux_household"
UTC = timezone.utc


def _day(day: str, power: str = "1.000", minutes: int = 3) -> list[str]:
    return [f"{day};00:{m:02d}:00;{power};0.100;240.000;4.000;0.000;1.000;0.000" for m in range(minutes)]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in sorted((root / "store" / "readings").rglob("*.parquet"))
    }


def test_every_line_is_stored_or_quarantined(write_source, config: PowercastConfig) -> None:
    lines = [*_day("2/1/2007"), "2/1/2007;00:05:00;1.0;0.1", "2/1/2007;00:06:00;x;0.1;240;4;0;0;0", "2/1/2007;00:07:00;?;?;?;?;?;?;"]
    [report] = ingest_paths([write_source("mixed.txt", lines)], config)
    assert (report.rows_in, report.rows_stored, report.rows_quarantined, report.rows_missing) == (6, 4, 2, 1)
    assert report.rows_in == report.rows_stored + report.rows_quarantined


def test_quarantine_keeps_raw_line_file_line_number_and_reason(write_source, config: PowercastConfig) -> None:
    path = write_source("bad.txt", [*_day("2/1/2007", minutes=1), "2/1/2007;00:05:00;1.0;0.1", "2/1/2007;00:06:00;x;0.1;240;4;0;0;0"])
    [report] = ingest_paths([path], config, run_id="run-q")
    quarantine = read_quarantine(config.root)
    assert quarantine.schema == QUARANTINE_SCHEMA
    rows = quarantine.select(["source_file", "line_number", "raw_line", "reason", "run_id"]).to_pylist()
    assert rows == [
        {"source_file": str(path), "line_number": 3, "raw_line": "2/1/2007;00:05:00;1.0;0.1", "reason": REASON_WRONG_COLUMN_COUNT, "run_id": "run-q"},
        {"source_file": str(path), "line_number": 4, "raw_line": "2/1/2007;00:06:00;x;0.1;240;4;0;0;0", "reason": REASON_NON_NUMERIC, "run_id": "run-q"},
    ]


def test_duplicate_lines_are_quarantined_with_their_raw_text(write_source, config: PowercastConfig) -> None:
    line = _day("2/1/2007", minutes=1)[0]
    [report] = ingest_paths([write_source("dup.txt", [line, line])], config)
    assert (report.rows_stored, report.rows_quarantined) == (1, 1)
    assert read_quarantine(config.root)["raw_line"].to_pylist() == [line]


def test_question_mark_lines_are_stored_as_nulls(write_source, config: PowercastConfig) -> None:
    ingest_paths([write_source("gap.txt", ["2/1/2007;00:00:00;?;?;?;?;?;?;"])], config)
    row = read_readings(config.root, METER).to_pylist()[0]
    assert row["timestamp"] == datetime(2007, 1, 1, 23, 0, tzinfo=UTC)
    assert [row[name] for name in MEASURED_COLUMNS] == [None] * len(MEASURED_COLUMNS)


def test_reingesting_the_same_file_is_a_no_op_that_says_so(write_source, config: PowercastConfig) -> None:
    path = write_source("day.txt", _day("2/1/2007"))
    [first] = ingest_paths([path], config, run_id="run-1")
    before = _files(Path(config.root))
    [again] = ingest_paths([path], config, run_id="run-2")
    assert again.skipped and again.run_id == "run-1"
    assert (again.rows_stored, again.partitions_written) == (0, [])
    assert _files(Path(config.root)) == before
    assert read_manifest(config.root).num_rows == 1


def test_same_bytes_under_another_name_are_not_ingested_twice(write_source, config: PowercastConfig, tmp_path: Path) -> None:
    path = write_source("day.txt", _day("2/1/2007"))
    copy = tmp_path / "copy.txt"
    shutil.copy(path, copy)
    reports = ingest_paths([path, copy], config)
    assert [r.skipped for r in reports] == [False, True]
    assert read_readings(config.root, METER).num_rows == 3


def test_a_later_file_correcting_a_reading_replaces_it_and_is_counted(write_source, config: PowercastConfig) -> None:
    ingest_paths([write_source("day.txt", _day("2/1/2007"))], config)
    corrected = _day("2/1/2007")
    corrected[1] = corrected[1].replace("1.000", "2.500", 1)
    [report] = ingest_paths([write_source("fix.txt", corrected)], config)
    assert report.rows_replaced == 1
    assert read_manifest(config.root)["rows_replaced"].to_pylist() == [0, 1]
    assert read_readings(config.root, METER)["active_power_kw"].to_pylist() == [1.0, 2.5, 1.0]


def test_one_more_day_rewrites_only_that_months_partition(ingested_sample_root: str, write_source, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store", copy_function=shutil.copy2)
    before = _files(root)
    [report] = ingest_paths([write_source("next_day.txt", _day("27/11/2010", minutes=60))], PowercastConfig(root=str(root)))
    after = _files(root)
    november = "store/readings/meter_id=sceaux_household/year=2010/month=11/part-0.parquet"
    assert report.partitions_written == ["meter_id=sceaux_household/year=2010/month=11"]
    assert after[november] != before[november]
    assert {k: v for k, v in after.items() if k != november} == {k: v for k, v in before.items() if k != november}
    assert sum(s.rows for s in summarize_partitions(str(root))) == 174_063 + 60


def test_a_folder_ingests_only_files_not_ingested_yet(write_source, config: PowercastConfig) -> None:
    first = write_source("a_day1.txt", _day("2/1/2007"))
    write_source("b_day2.txt.gz", _day("3/1/2007"), compress=True)
    landing = first.parent
    assert [Path(r.source_file).name for r in ingest_paths([landing], config)] == ["a_day1.txt", "b_day2.txt.gz"]
    write_source("c_day3.txt", _day("4/1/2007"))
    write_source(".tmp-partial.txt", ["garbage"])
    reports = ingest_paths([landing], config)
    assert [Path(r.source_file).name for r in reports] == ["c_day3.txt"]
    assert ingest_paths([landing], config) == []
    assert read_readings(config.root, METER).num_rows == 9


def test_generic_csv_lands_each_meter_in_its_own_partitions(write_source, config: PowercastConfig) -> None:
    lines = ["2010-01-01T00:00:00Z,m1,1.0", "2010-01-01T00:00:00Z,m2,2.0", "2010-02-01T00:00:00Z,m2,3.0"]
    [report] = ingest_paths([write_source("meters.csv", lines, header="timestamp,meter_id,active_power_kw")], config)
    assert sorted(report.partitions_written) == [
        "meter_id=m1/year=2010/month=01",
        "meter_id=m2/year=2010/month=01",
        "meter_id=m2/year=2010/month=02",
    ]
    assert read_readings(config.root, "m2")["active_power_kw"].to_pylist() == [2.0, 3.0]


def _truncated_gzip(tmp_path: Path, sample_path: Path) -> Path:
    path = tmp_path / "cut.txt.gz"
    payload = sample_path.read_bytes()
    path.write_bytes(payload[: len(payload) * 2 // 3])
    return path


def _bad_file(kind: str, tmp_path: Path, sample_path: Path) -> Path:
    header = (";".join(UCI_HEADER) + "\n").encode()
    if kind == "missing":
        return tmp_path / "missing.txt"
    path = tmp_path / f"{kind}.txt"
    if kind == "truncated_gzip":
        return _truncated_gzip(tmp_path, sample_path)
    contents = {
        "empty": b"",
        "header_only": header,
        "wrong_header": b"date,power\n2007-01-01,1.0\n",
        "not_utf8": header + b"2/1/2007;00:00:00;1.0;0.1;240;4;0;0;0\n" + b"\xff\xfe;\x80\n" * 3,
        "empty_gzip": gzip.compress(b""),
    }
    path.write_bytes(contents[kind])
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "header_only", "wrong_header", "truncated_gzip", "not_utf8", "empty_gzip"])
def test_bad_file_fails_with_one_line_naming_it_and_writes_nothing(
    kind: str, tmp_path: Path, sample_path: Path, config: PowercastConfig
) -> None:
    path = _bad_file(kind, tmp_path, sample_path)
    with pytest.raises(SourceFileError) as error:
        ingest_paths([path], config)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert [child.name for child in Path(config.root).iterdir()] == ["locks"]


def test_unreadable_file_fails_naming_it(write_source, config: PowercastConfig) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = write_source("locked.txt", _day("2/1/2007"))
    path.chmod(0)
    with pytest.raises(SourceFileError, match="locked.txt: cannot be read"):
        ingest_paths([path], config)
    assert [child.name for child in Path(config.root).iterdir()] == ["locks"]


def test_a_bad_file_after_good_ones_keeps_the_good_ones_and_writes_nothing_of_its_own(
    write_source, config: PowercastConfig, tmp_path: Path, sample_path: Path
) -> None:
    good = write_source("good.txt", _day("2/1/2007"))
    bad = _truncated_gzip(tmp_path, sample_path)
    with pytest.raises(SourceFileError, match="cut.txt.gz"):
        ingest_paths([good, bad], config)
    assert read_manifest(config.root)["source_file"].to_pylist() == [str(good)]
    assert read_readings(config.root, METER).num_rows == 3
    assert read_quarantine(config.root).num_rows == 0


def test_meter_id_longer_than_128_characters_is_quarantined_as_bad_meter_id(write_source, config: PowercastConfig) -> None:
    longest, too_long = "a" * 128, "b" * 150
    lines = [f"2010-01-01T00:00:00Z,{longest},1.0,230.0", f"2010-01-01T00:00:00Z,{too_long},1.0,230.0"]
    [report] = ingest_paths([write_source("long.csv", lines, header="timestamp,meter_id,active_power_kw,voltage_v")], config)
    assert (report.rows_stored, report.rows_quarantined) == (1, 1)
    assert read_quarantine(config.root)["reason"].to_pylist() == [REASON_BAD_METER_ID]
    assert read_readings(config.root, longest).num_rows == 1


# A child process that holds the ingest lock, as another ingest run would, until it is killed.
INGEST_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from powercast.io.locking import INGEST_LOCK_NAME, named_lock
    with named_lock(sys.argv[1], INGEST_LOCK_NAME, timeout_s=30, holder="other-ingest"):
        Path(sys.argv[2]).write_text("held")
        time.sleep(60)
    """
)


def test_ingest_waits_for_another_process_ingest_lock_and_writes_nothing(
    write_source, config: PowercastConfig, tmp_path: Path
) -> None:
    source = write_source("day.txt", _day("2/1/2007"))
    marker = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", INGEST_LOCK_HOLDER, config.root, str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "lock holder did not take the ingest lock"
            time.sleep(0.05)
        with pytest.raises(LockedError, match="other-ingest"):
            ingest_paths([source], config, lock_timeout_s=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert [child.name for child in Path(config.root).iterdir()] == ["locks"]
    [report] = ingest_paths([source], config, lock_timeout_s=5)
    assert report.rows_stored == 3


def test_sample_ingest_counts_match_the_file(ingested_sample_root: str) -> None:
    manifest = read_manifest(ingested_sample_root).to_pylist()[0]
    assert manifest["rows_in"] == manifest["rows_stored"] + manifest["rows_quarantined"] == 174_063
    assert manifest["rows_missing"] == 12_468
    assert pq.ParquetFile(
        Path(ingested_sample_root) / "store/readings/meter_id=sceaux_household/year=2010/month=09/part-0.parquet"
    ).metadata.num_rows == 30 * 1440


@pytest.mark.slow
def test_full_file_ingests_every_row_with_its_missing_readings(full_data_path: Path, tmp_path: Path) -> None:
    config = PowercastConfig(root=str(tmp_path / "root"))
    [report] = ingest_paths([full_data_path], config, progress=False)
    assert report.rows_in == 2_075_259
    assert report.rows_in == report.rows_stored + report.rows_quarantined
    assert report.rows_missing == 26_001
    summaries = summarize_partitions(config.root)
    assert sum(s.rows for s in summaries) == report.rows_stored
    assert sum(s.rows_missing for s in summaries) == 26_001
    [again] = ingest_paths([full_data_path], config, progress=False)
    assert again.skipped


def test_readings_from_the_future_are_quarantined_and_the_rest_stored(write_source, config: PowercastConfig) -> None:
    """A meter whose clock jumped ahead: rows later than now + ingest.future_tolerance_h (2 h) never reach the store."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    stamps = [now - timedelta(hours=1), now + timedelta(hours=1), now + timedelta(hours=3), datetime(2099, 1, 1, tzinfo=UTC)]
    lines = [f"{stamp:%Y-%m-%dT%H:%M:%S}Z,m1,1.0" for stamp in stamps]
    [report] = ingest_paths([write_source("clock.csv", lines, header="timestamp,meter_id,active_power_kw")], config)
    assert (report.rows_in, report.rows_stored, report.rows_quarantined) == (4, 2, 2)
    assert read_readings(config.root, "m1")["timestamp"].to_pylist() == stamps[:2]
    quarantine = read_quarantine(config.root).to_pydict()
    assert quarantine["reason"] == [REASON_FUTURE_TIMESTAMP] * 2
    assert quarantine["line_number"] == [4, 5]


def test_the_future_tolerance_is_a_setting(write_source, config: PowercastConfig) -> None:
    stamp = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=30)
    lines = [f"{stamp:%Y-%m-%dT%H:%M:%S}Z,m1,1.0"]
    tolerant = config.with_overrides({"ingest.future_tolerance_h": 48})
    [report] = ingest_paths([write_source("ahead.csv", lines, header="timestamp,meter_id,active_power_kw")], tolerant)
    assert (report.rows_stored, report.rows_quarantined) == (1, 0)
