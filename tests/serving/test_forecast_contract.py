"""The forecast contract as consumers see it: schema on disk, other readers, the documented examples."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from powercast.core.schemas import (
    FORECAST_CONTRACT_VERSION,
    FORECAST_METADATA_KEYS,
    FORECAST_SCHEMA,
)
from powercast.serving.publish import latest_pointer, publish_batch

CONTRACT_DOC = Path(__file__).resolve().parents[2] / "docs" / "forecast-contract.md"
METER = "sceaux_household"


def _doc_examples() -> list[tuple[str, str]]:
    """Return (heading, code) for every ```python block of the contract document."""
    examples, heading = [], "intro"
    for block in re.split(r"^(### .*)$", CONTRACT_DOC.read_text(encoding="utf-8"), flags=re.MULTILINE):
        if block.startswith("### "):
            heading = block[4:].strip()
            continue
        for code in re.findall(r"```python\n(.*?)```", block, flags=re.DOTALL):
            examples.append((heading, code))
    return examples


@pytest.fixture()
def data_root(tmp_path, forecast_batch_factory, monkeypatch) -> Path:
    """A data root ``var/`` (cwd = its parent) with two issue times and a stray temporary file."""
    monkeypatch.chdir(tmp_path)
    publish_batch("var", [forecast_batch_factory(METER, "2010-08-16T23:00Z"), forecast_batch_factory("m2", "2010-08-16T23:00Z")])
    publish_batch("var", forecast_batch_factory(METER, "2010-08-17T23:00Z", level_kw=2.0))
    # what a publisher killed mid-write leaves behind; the documented globs must not read it
    stray = tmp_path / "var/forecasts/issue_date=2010-08-17/.tmp-issued_at=20100817T230000Z.parquet-0123abcd.tmp"
    stray.write_bytes(b"PAR1 half written")
    return tmp_path / "var"


def test_written_batch_schema_equals_the_contract(data_root):
    schema = pq.read_schema(data_root / "forecasts" / latest_pointer(str(data_root))["path"])

    metadata = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert schema.remove_metadata().equals(FORECAST_SCHEMA, check_metadata=False)
    assert [field.nullable for field in schema] == [False] * len(FORECAST_SCHEMA)
    assert set(FORECAST_METADATA_KEYS) <= set(metadata)
    assert metadata["powercast.contract_version"] == FORECAST_CONTRACT_VERSION
    assert float(metadata["powercast.interval_coverage"]) == pytest.approx(0.8)
    assert json.loads(metadata["powercast.training_end"]) == {METER: "2009-07-01T00:00:00Z"}
    assert json.loads(metadata["powercast.validation_mae_kw"]) == {METER: 0.42}


def test_duckdb_reads_a_batch_with_contract_types(data_root):
    path = data_root / "forecasts" / latest_pointer(str(data_root))["path"]

    relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY horizon_h")

    types = dict(zip(relation.columns, map(str, relation.types)))
    assert types["issued_at"] == types["target_time"] == "TIMESTAMP WITH TIME ZONE"
    assert (types["horizon_h"], types["yhat_kw"], types["meter_id"]) == ("SMALLINT", "FLOAT", "VARCHAR")
    assert relation.fetchnumpy()["yhat_kw"].tolist() == pq.read_table(path)["yhat_kw"].to_pylist()


def test_polars_reads_a_batch_with_contract_types(data_root):
    path = data_root / "forecasts" / latest_pointer(str(data_root))["path"]

    frame = pl.read_parquet(path)

    assert frame.schema["issued_at"] == pl.Datetime("us", "UTC")
    assert (frame.schema["horizon_h"], frame.schema["yhat_lo_kw"]) == (pl.Int16, pl.Float32)
    assert frame.height == 24 and frame["model"].unique().to_list() == ["gru"]


def test_documented_glob_skips_temporary_files_in_duckdb_and_polars(data_root):
    pattern = f"{data_root}/forecasts/issue_date=*/issued_at=*.parquet"

    duck_rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)").fetchall()[0][0]
    polars_rows = pl.scan_parquet(pattern, hive_partitioning=True).select(pl.len()).collect().item()

    assert duck_rows == polars_rows == 24 * 3


# What the fixture published, as each example must read it back.
LATEST_UTC = pd.Timestamp("2010-08-17T23:00Z")  # METER only, level 2 kW
EARLIER_UTC = pd.Timestamp("2010-08-16T23:00Z")  # METER and m2, level 1 kW
DISPLAY_COLUMNS = ["meter_id", "target_time", "yhat_kw", "yhat_lo_kw", "yhat_hi_kw", "model"]


def _factory_yhat_kw(level_kw: float, steps: int = 24) -> np.ndarray:
    """The point forecast ``forecast_batch_factory`` writes for horizons 1..steps."""
    horizons = np.arange(1, steps + 1)
    return (level_kw + 0.5 * np.sin(horizons / 24 * 2 * np.pi)).astype(np.float32)


def _check_pandas_latest(namespace: dict[str, Any], printed: list[Any]) -> None:
    batch = namespace["batch"]
    assert list(batch.columns) == FORECAST_SCHEMA.names
    assert len(batch) == 24 and set(batch["meter_id"]) == {METER}
    assert (batch["issued_at"] == LATEST_UTC).all()
    np.testing.assert_allclose(batch["yhat_kw"].to_numpy(), _factory_yhat_kw(2.0))
    (head,) = printed
    assert list(head.columns) == DISPLAY_COLUMNS and len(head) == 5
    assert head["target_time"].tolist() == [LATEST_UTC + pd.Timedelta(hours=h) for h in range(5)]


def _check_pandas_issue_time(namespace: dict[str, Any], printed: list[Any]) -> None:
    batch = namespace["batch"]
    assert set(batch["meter_id"]) == {METER}  # the filter left m2's rows of that file out
    np.testing.assert_allclose(batch["yhat_kw"].to_numpy(), _factory_yhat_kw(1.0))
    assert printed == [24, EARLIER_UTC]


def _check_pyarrow_schema(namespace: dict[str, Any], printed: list[Any]) -> None:
    assert namespace["table"].schema.remove_metadata().equals(FORECAST_SCHEMA)
    assert set(namespace["metadata"]) == set(FORECAST_METADATA_KEYS)
    assert printed == [pa.timestamp("us", tz="UTC"), FORECAST_CONTRACT_VERSION, "0.8", {METER: 0.42}]


def _check_pyarrow_range(namespace: dict[str, Any], printed: list[Any]) -> None:
    names = [Path(f).name for f in namespace["files"]]  # one file per issue time, the temporary file left out
    assert [name.split(".")[0] for name in names] == ["issued_at=20100816T230000Z", "issued_at=20100817T230000Z"]
    assert all(name.endswith(".parquet") and not name.startswith(".") for name in names)
    assert printed == [24 * 3, pa.timestamp("us", tz="UTC")]
    issued = namespace["history"].column("issued_at").to_pylist()
    assert sorted(set(issued)) == [EARLIER_UTC.to_pydatetime(), LATEST_UTC.to_pydatetime()]


def _check_polars(namespace: dict[str, Any], printed: list[Any]) -> None:
    head, per_day = printed
    assert head.columns == ["meter_id", "target_time", "yhat_kw"] and head.height == 5
    np.testing.assert_allclose(head["yhat_kw"].to_numpy(), _factory_yhat_kw(2.0)[:5])
    assert namespace["batch"].height == 24
    assert per_day.rows() == [(date(2010, 8, 16), 48), (date(2010, 8, 17), 24)]


def _check_duckdb(namespace: dict[str, Any], printed: list[Any]) -> None:
    head, history, metadata = printed
    assert head.columns == DISPLAY_COLUMNS
    rows = head.fetchall()
    assert len(rows) == 5 and {row[0] for row in rows} == {METER} and {row[5] for row in rows} == {"gru"}
    np.testing.assert_allclose([row[2] for row in rows], _factory_yhat_kw(2.0)[:5])
    by_issue = [(issue_date, issued_at, n) for issue_date, issued_at, n, _ in history.fetchall()]
    assert by_issue == [(date(2010, 8, 17), LATEST_UTC, 24), (date(2010, 8, 16), EARLIER_UTC, 48)]
    np.testing.assert_allclose([mean for *_, mean in history.fetchall()], [2.0, 1.0], atol=1e-6)
    pairs = dict(metadata.fetchall())
    assert set(pairs) == set(FORECAST_METADATA_KEYS)
    assert pairs["powercast.contract_version"] == FORECAST_CONTRACT_VERSION
    assert json.loads(pairs["powercast.validation_mae_kw"]) == {METER: 0.42}


def _check_powercast(namespace: dict[str, Any], printed: list[Any]) -> None:
    assert printed == [pytest.approx(0.8), 24]
    assert (namespace["latest"]["issued_at"] == LATEST_UTC).all() and len(namespace["latest"]) == 24
    one_day = namespace["one_day"]
    assert set(one_day["meter_id"]) == {METER} and (one_day["issued_at"] == EARLIER_UTC).all()


# One check per ```python example of the contract document, by its heading.
EXAMPLE_CHECKS: dict[str, Callable[[dict[str, Any], list[Any]], None]] = {
    "pandas: the latest batch": _check_pandas_latest,
    "pandas: the batch issued at a given time": _check_pandas_issue_time,
    "pyarrow: schema, metadata and the contract check": _check_pyarrow_schema,
    "pyarrow: every batch of a date range": _check_pyarrow_range,
    "polars": _check_polars,
    "DuckDB": _check_duckdb,
    "powercast itself": _check_powercast,
}


def test_every_contract_document_example_has_a_check():
    assert [heading for heading, _ in _doc_examples()] == list(EXAMPLE_CHECKS)


@pytest.mark.parametrize(("heading", "code"), _doc_examples(), ids=[h for h, _ in _doc_examples()])
def test_contract_document_example_reads_the_published_batches(data_root, heading, code):
    printed: list[Any] = []

    def record_print(*values: Any, **_: Any) -> None:
        """Keep what the example prints, as objects (a DuckDB relation stays a relation)."""
        printed.extend(values)

    namespace: dict[str, Any] = {"__name__": "doc_example", "print": record_print}
    exec(compile(code, f"{CONTRACT_DOC.name}: {heading}", "exec"), namespace)

    EXAMPLE_CHECKS[heading](namespace, printed)
