"""The readings store: partition layout, upsert semantics, and the read API with pruning."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from powercast.core.errors import StoreError
from powercast.core.schemas import (
    MEASURED_COLUMNS,
    READINGS_FILE_SCHEMA,
    READINGS_SCHEMA,
)
from powercast.store.readings import (
    list_meters,
    read_fleet_readings,
    read_readings,
    store_time_range,
    summarize_partitions,
    upsert_readings,
)

METER = "sceaux_household"
UTC = timezone.utc


def _readings(meter_id: str, start: datetime, minutes: int, power_kw: float | None = 1.0, sha: str = "a" * 64) -> pa.Table:
    times = [start + timedelta(minutes=i) for i in range(minutes)]
    columns = {name: pa.array([power_kw] * minutes, pa.float32()) for name in MEASURED_COLUMNS}
    return pa.table(
        {"meter_id": [meter_id] * minutes, "timestamp": pa.array(times, READINGS_SCHEMA.field("timestamp").type), **columns,
         "source_sha256": [sha] * minutes},
        schema=READINGS_SCHEMA,
    )


def _partition_file(root: Path, meter_id: str, year: int, month: int) -> Path:
    return root / "store" / "readings" / f"meter_id={meter_id}" / f"year={year:04d}" / f"month={month:02d}" / "part-0.parquet"


def test_upsert_writes_one_hive_partition_per_meter_and_utc_month(tmp_path: Path) -> None:
    outcome = upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 31, 23, 58, tzinfo=UTC), 4))
    assert outcome.partitions_written == ["meter_id=m1/year=2010/month=01", "meter_id=m1/year=2010/month=02"]
    assert pq.read_schema(_partition_file(tmp_path, "m1", 2010, 2)).remove_metadata() == READINGS_FILE_SCHEMA


def test_store_folder_reads_as_a_hive_dataset(tmp_path: Path) -> None:
    upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 3))
    upsert_readings(str(tmp_path), _readings("m2", datetime(2010, 1, 1, tzinfo=UTC), 2))
    table = ds.dataset(tmp_path / "store" / "readings", format="parquet", partitioning="hive").to_table()
    assert sorted(table["meter_id"].to_pylist()) == ["m1"] * 3 + ["m2"] * 2


def test_identical_rows_leave_the_partition_file_untouched(tmp_path: Path) -> None:
    rows = _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 10)
    upsert_readings(str(tmp_path), rows)
    before = _partition_file(tmp_path, "m1", 2010, 1).stat()
    outcome = upsert_readings(str(tmp_path), rows.slice(2, 5))
    after = _partition_file(tmp_path, "m1", 2010, 1).stat()
    assert outcome.partitions_written == []
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_values_replace_stored_readings_and_are_counted(tmp_path: Path) -> None:
    upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 10, power_kw=1.0))
    outcome = upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, 0, 8, tzinfo=UTC), 4, power_kw=2.0, sha="b" * 64))
    stored = read_readings(str(tmp_path), "m1")
    assert outcome.rows_replaced == 2
    assert stored.num_rows == 12
    assert stored["active_power_kw"].to_pylist() == [1.0] * 8 + [2.0] * 4
    assert stored["source_sha256"].to_pylist()[8:] == ["b" * 64] * 4


def test_all_missing_rows_never_replace_stored_readings(tmp_path: Path) -> None:
    upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 10, power_kw=1.0))
    before = _partition_file(tmp_path, "m1", 2010, 1).stat()
    outcome = upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, 0, 8, tzinfo=UTC), 2, power_kw=None, sha="b" * 64))
    after = _partition_file(tmp_path, "m1", 2010, 1).stat()
    stored = read_readings(str(tmp_path), "m1")
    assert (outcome.rows_replaced, outcome.partitions_written) == (0, [])
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert stored["active_power_kw"].to_pylist() == [1.0] * 10
    assert stored["source_sha256"].to_pylist() == ["a" * 64] * 10


def test_upsert_refuses_two_rows_for_one_meter_and_timestamp(tmp_path: Path) -> None:
    rows = _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 2)
    with pytest.raises(StoreError, match="same meter and timestamp twice"):
        upsert_readings(str(tmp_path), pa.concat_tables([rows, rows]))
    assert not (tmp_path / "store").exists()


def test_read_returns_the_half_open_range_sorted_with_the_readings_schema(ingested_sample_root: str) -> None:
    start, end = datetime(2010, 9, 30, 12, tzinfo=UTC), datetime(2010, 10, 1, 12, tzinfo=UTC)
    table = read_readings(ingested_sample_root, METER, start, end)
    assert table.schema == READINGS_SCHEMA
    assert table.num_rows == 24 * 60
    assert table["timestamp"][0].as_py() == start
    assert table["timestamp"][-1].as_py() == end - timedelta(minutes=1)
    times = table["timestamp"].to_pylist()
    assert times == sorted(times)


def test_read_with_columns_returns_meter_timestamp_and_those_columns(ingested_sample_root: str) -> None:
    table = read_readings(ingested_sample_root, METER, columns=["voltage_v", "active_power_kw"])
    assert table.column_names == ["meter_id", "timestamp", "active_power_kw", "voltage_v"]
    assert table.num_rows == 174_063


def test_read_opens_only_partitions_that_overlap_the_range(ingested_sample_root: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    _partition_file(root, METER, 2010, 7).write_bytes(b"not parquet")
    september = read_readings(str(root), METER, datetime(2010, 9, 1, tzinfo=UTC), datetime(2010, 9, 2, tzinfo=UTC))
    assert september.num_rows == 1440
    with pytest.raises(StoreError, match="month=07"):
        read_readings(str(root), METER, datetime(2010, 7, 30, tzinfo=UTC), datetime(2010, 8, 2, tzinfo=UTC))


def test_read_of_an_unknown_meter_names_the_known_ones(ingested_sample_root: str) -> None:
    with pytest.raises(StoreError, match="unknown meter 'nope'.*sceaux_household"):
        read_readings(ingested_sample_root, "nope")


def test_read_refuses_a_naive_bound(ingested_sample_root: str) -> None:
    with pytest.raises(StoreError, match="no timezone"):
        read_readings(ingested_sample_root, METER, start_utc=datetime(2010, 9, 1))


def test_read_refuses_an_unknown_column(ingested_sample_root: str) -> None:
    with pytest.raises(StoreError, match="temperature"):
        read_readings(ingested_sample_root, METER, columns=["temperature"])


def test_time_range_is_the_first_and_last_stored_timestamp(ingested_sample_root: str) -> None:
    first, last = store_time_range(ingested_sample_root, METER)
    assert first == datetime(2010, 7, 28, 23, 0, tzinfo=UTC)
    assert last == datetime(2010, 11, 26, 20, 2, tzinfo=UTC)


def test_list_meters_names_every_meter_with_data(tmp_path: Path) -> None:
    assert list_meters(str(tmp_path)) == []
    upsert_readings(str(tmp_path), _readings("m2", datetime(2010, 1, 1, tzinfo=UTC), 1))
    upsert_readings(str(tmp_path), _readings("m1", datetime(2010, 1, 1, tzinfo=UTC), 1))
    assert list_meters(str(tmp_path)) == ["m1", "m2"]


def test_summary_counts_rows_and_missing_readings_per_month(ingested_sample_root: str) -> None:
    summaries = summarize_partitions(ingested_sample_root)
    assert [(s.year, s.month) for s in summaries] == [(2010, 7), (2010, 8), (2010, 9), (2010, 10), (2010, 11)]
    assert sum(s.rows for s in summaries) == 174_063
    assert sum(s.rows_missing for s in summaries) == 12_468


def _fleet_root(tmp_path: Path, ingested_sample_root: str) -> str:
    """Return a root holding the real sample as three meters (one copy of its partitions per meter)."""
    source = Path(ingested_sample_root) / "store" / "readings" / f"meter_id={METER}"
    for meter_id in ("a", "b", "c"):
        shutil.copytree(source, tmp_path / "store" / "readings" / f"meter_id={meter_id}")
    return str(tmp_path)


def test_one_scan_reads_many_meters_exactly_as_reading_each(tmp_path: Path, ingested_sample_root: str) -> None:
    root = _fleet_root(tmp_path, ingested_sample_root)
    end = datetime(2010, 10, 15, 12, tzinfo=UTC)
    for columns in (None, ["timestamp", "active_power_kw"]):
        tables, failures = read_fleet_readings(root, ["c", "a", "nowhere"], end_utc=end, columns=columns)
        assert sorted(tables) == ["a", "c"]
        assert "unknown meter 'nowhere'" in failures["nowhere"]
        for meter_id, table in tables.items():
            assert table.equals(read_readings(root, meter_id, end_utc=end, columns=columns))
            assert table["timestamp"].to_pylist()[-1] < end and table.num_rows > 100_000


def test_a_damaged_partition_fails_its_meter_alone_in_a_fleet_read(tmp_path: Path, ingested_sample_root: str) -> None:
    root = _fleet_root(tmp_path, ingested_sample_root)
    _partition_file(tmp_path, "b", 2010, 9).write_bytes(b"not parquet")
    tables, failures = read_fleet_readings(root, ["a", "b", "c"])
    assert sorted(tables) == ["a", "c"] and list(failures) == ["b"]
    assert "meter_id=b/year=2010/month=09" in failures["b"]
    assert tables["a"].equals(read_readings(root, "a"))


def test_a_partition_lacking_a_column_fails_its_meter_in_a_fleet_read(tmp_path: Path, ingested_sample_root: str) -> None:
    # A dataset scan would fill the missing column with nulls; the fleet read refuses the file as read_readings does.
    root = _fleet_root(tmp_path, ingested_sample_root)
    damaged = _partition_file(tmp_path, "c", 2010, 9)
    pq.write_table(pq.read_table(damaged).drop_columns(["voltage_v"]), damaged)
    tables, failures = read_fleet_readings(root, ["a", "c"], columns=["timestamp", "voltage_v"])
    assert list(tables) == ["a"] and "meter_id=c/year=2010/month=09" in failures["c"]
