"""The ingest manifest: one row per ingested file, by sha256, written atomically."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from powercast.core.errors import StoreError
from powercast.core.schemas import MANIFEST_SCHEMA
from powercast.io.layout import MANIFEST
from powercast.store.manifest import (
    append_manifest,
    find_ingested,
    ingested_sha256s,
    read_manifest,
)


def _row(sha: str, rows_in: int = 3) -> pa.Table:
    return pa.table(
        {
            "source_file": ["/landing/a.txt"],
            "source_sha256": [sha],
            "run_id": ["run-1"],
            "ingested_at": pa.array([datetime(2010, 11, 27, tzinfo=timezone.utc)], MANIFEST_SCHEMA.field("ingested_at").type),
            "rows_in": [rows_in],
            "rows_stored": [rows_in - 1],
            "rows_missing": [0],
            "rows_quarantined": [1],
            "rows_replaced": [0],
            "partitions_written": [1],
        },
        schema=MANIFEST_SCHEMA,
    )


def test_manifest_of_a_fresh_root_is_empty(tmp_path: Path) -> None:
    manifest = read_manifest(str(tmp_path))
    assert manifest.num_rows == 0
    assert manifest.schema == MANIFEST_SCHEMA


def test_appended_rows_are_read_back(tmp_path: Path) -> None:
    append_manifest(str(tmp_path), _row("a" * 64))
    append_manifest(str(tmp_path), _row("b" * 64, rows_in=7))
    assert ingested_sha256s(str(tmp_path)) == {"a" * 64, "b" * 64}
    assert find_ingested(str(tmp_path), "b" * 64)["rows_in"] == 7
    assert find_ingested(str(tmp_path), "c" * 64) is None


def test_manifest_file_matches_the_schema(tmp_path: Path) -> None:
    append_manifest(str(tmp_path), _row("a" * 64))
    assert pq.read_schema(tmp_path / MANIFEST).remove_metadata() == MANIFEST_SCHEMA


def test_appending_an_ingested_sha256_again_is_refused(tmp_path: Path) -> None:
    append_manifest(str(tmp_path), _row("a" * 64))
    with pytest.raises(StoreError, match="already in the manifest"):
        append_manifest(str(tmp_path), _row("a" * 64))
    assert read_manifest(str(tmp_path)).num_rows == 1


def test_unreadable_manifest_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / MANIFEST).write_bytes(b"garbage")
    with pytest.raises(StoreError, match="manifest"):
        read_manifest(str(tmp_path))


def test_ingested_sample_is_in_the_manifest_with_its_counts(ingested_sample_root: str) -> None:
    rows = read_manifest(ingested_sample_root).to_pylist()
    assert len(rows) == 1
    assert (rows[0]["rows_in"], rows[0]["rows_stored"], rows[0]["rows_missing"]) == (174_063, 174_063, 12_468)
    assert rows[0]["run_id"] == "fixture-sample"
