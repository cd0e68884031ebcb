"""The quarantine: one Parquet file per run and source file, read back in run order with QUARANTINE_SCHEMA."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from powercast.core.errors import StoreError
from powercast.core.schemas import QUARANTINE_SCHEMA, REASON_NON_NUMERIC
from powercast.store.quarantine import read_quarantine, write_quarantine

SHA = "0123456789ab" + "c" * 52


def _rows(run_id: str, lines: list[int]) -> pa.Table:
    n = len(lines)
    return pa.table(
        {
            "source_file": ["day.txt"] * n,
            "source_sha256": [SHA] * n,
            "line_number": lines,
            "raw_line": [f"line {line}" for line in lines],
            "reason": [REASON_NON_NUMERIC] * n,
            "detail": ["not a number"] * n,
            "run_id": [run_id] * n,
            "quarantined_at": pa.array([datetime(2010, 1, 1, tzinfo=timezone.utc)] * n, QUARANTINE_SCHEMA.field("quarantined_at").type),
        },
        schema=QUARANTINE_SCHEMA,
    )


def test_rows_are_written_to_one_file_per_run_and_source_file(tmp_path: Path) -> None:
    path = write_quarantine(str(tmp_path), "ingest-1", SHA, _rows("ingest-1", [3, 7]))
    assert path == f"{tmp_path}/store/quarantine/run_id=ingest-1/part-0123456789ab.parquet"
    assert Path(path).is_file()


def test_no_rows_write_no_file(tmp_path: Path) -> None:
    assert write_quarantine(str(tmp_path), "ingest-1", SHA, QUARANTINE_SCHEMA.empty_table()) is None
    assert not (tmp_path / "store").exists()


def test_read_returns_every_run_in_run_order_with_the_schema(tmp_path: Path) -> None:
    write_quarantine(str(tmp_path), "ingest-20100102", SHA, _rows("ingest-20100102", [5]))
    write_quarantine(str(tmp_path), "ingest-20100101", SHA, _rows("ingest-20100101", [2, 4]))
    table = read_quarantine(str(tmp_path))
    assert table.schema == QUARANTINE_SCHEMA
    assert table["run_id"].to_pylist() == ["ingest-20100101"] * 2 + ["ingest-20100102"]
    assert table["line_number"].to_pylist() == [2, 4, 5]


def test_read_of_a_root_without_quarantine_is_empty(tmp_path: Path) -> None:
    assert read_quarantine(str(tmp_path)) == QUARANTINE_SCHEMA.empty_table()


def test_rows_missing_a_column_are_refused_naming_the_schema(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="QUARANTINE_SCHEMA"):
        write_quarantine(str(tmp_path), "ingest-1", SHA, _rows("ingest-1", [1]).drop_columns(["reason"]))


def test_an_unreadable_quarantine_file_names_itself(tmp_path: Path) -> None:
    broken = tmp_path / "store" / "quarantine" / "run_id=ingest-1" / "part-0123456789ab.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match="part-0123456789ab.parquet"):
        read_quarantine(str(tmp_path))
