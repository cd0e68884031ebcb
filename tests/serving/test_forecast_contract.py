"""The forecast contract as consumers see it: schema on disk, other readers, the documented examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
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


@pytest.mark.parametrize(("heading", "code"), _doc_examples(), ids=[h for h, _ in _doc_examples()])
def test_contract_document_example_runs(data_root, heading, code, capsys):
    exec(compile(code, f"{CONTRACT_DOC.name}: {heading}", "exec"), {"__name__": "doc_example"})

    assert capsys.readouterr().out.strip(), f"example {heading!r} printed nothing"
