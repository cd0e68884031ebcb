"""Publishing forecast batches: layout, atomic replace, the latest pointer, concurrent readers."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from powercast.core.errors import ForecastError
from powercast.core.schemas import FORECAST_METADATA_KEYS, FORECAST_SCHEMA
from powercast.serving import publish
from powercast.serving.contract import ForecastBatch
from powercast.serving.publish import latest_pointer, list_issue_times, publish_batch, read_forecasts

DAY_1 = "2010-08-16T23:00Z"
DAY_2 = "2010-08-17T23:00Z"


def _forecasts(root: Path) -> Path:
    return root / "forecasts"


def test_batch_lands_under_issue_date_with_manifest_and_latest(tmp_path, forecast_batch_factory):
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    batch_file = _forecasts(tmp_path) / "issue_date=2010-08-17" / "issued_at=20100817T230000Z.parquet"
    manifest = json.loads(batch_file.with_name("issued_at=20100817T230000Z.manifest.json").read_text())
    latest = json.loads((_forecasts(tmp_path) / "latest.json").read_text())
    assert Path(published.path) == batch_file
    assert manifest["sha256"] == published.sha256 == latest["sha256"]
    assert (manifest["rows"], manifest["meters"], manifest["run_id"]) == (24, ["m1"], "run-test")
    assert manifest["models"]["m1"]["model"] == "gru"
    assert latest["path"] == "issue_date=2010-08-17/issued_at=20100817T230000Z.parquet"


def test_one_file_holds_every_meter_of_an_issue_time(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_2), forecast_batch_factory("m2", DAY_2)])

    files = sorted(p.name for p in _forecasts(tmp_path).rglob("*.parquet"))
    frame = read_forecasts(str(tmp_path))
    assert files == ["issued_at=20100817T230000Z.parquet"]
    assert frame.groupby("meter_id").size().to_dict() == {"m1": 24, "m2": 24}


def test_republish_replaces_batch_and_leaves_other_days_untouched(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1, level_kw=1.0))
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, level_kw=1.0))
    other_day = _forecasts(tmp_path) / "issue_date=2010-08-16"
    before = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in other_day.iterdir()}
    replaced = _forecasts(tmp_path) / "issue_date=2010-08-17" / "issued_at=20100817T230000Z.parquet"
    inode_before = replaced.stat().st_ino

    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-again", level_kw=5.0))

    after = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in other_day.iterdir()}
    frame = read_forecasts(str(tmp_path), issued_at=DAY_2)
    assert after == before
    assert replaced.stat().st_ino != inode_before  # a rename of a new file, not an in-place rewrite
    assert set(frame["run_id"]) == {"run-again"} and frame["yhat_kw"].min() > 4
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_republishing_one_meter_keeps_the_other_meters_rows(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_2), forecast_batch_factory("m2", DAY_2)])

    publish_batch(str(tmp_path), forecast_batch_factory("m2", DAY_2, run_id="run-fix", model="seasonal_naive"))

    frame = read_forecasts(str(tmp_path))
    runs = frame.groupby("meter_id")["run_id"].first().to_dict()
    assert runs == {"m1": "run-test", "m2": "run-fix"}
    assert set(frame.attrs["powercast"]["powercast.validation_mae_kw"]) == {"m1", "m2"}


def test_publishing_an_older_issue_time_keeps_latest_on_the_newest(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1))

    assert not published.latest_updated
    assert latest_pointer(str(tmp_path))["issued_at"] == "2010-08-17T23:00:00Z"
    assert [t.isoformat() for t in list_issue_times(str(tmp_path))] == [
        "2010-08-16T23:00:00+00:00",
        "2010-08-17T23:00:00+00:00",
    ]


def test_read_forecasts_by_issue_time_and_meter(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_1), forecast_batch_factory("m2", DAY_1)])
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    frame = read_forecasts(str(tmp_path), issued_at="2010-08-17T00:00+01:00", meter_id="m2")

    assert set(frame["meter_id"]) == {"m2"} and len(frame) == 24
    assert frame["issued_at"].iloc[0].isoformat() == "2010-08-16T23:00:00+00:00"
    assert list(frame.attrs["powercast"]["powercast.training_end"]) == ["m2"]


def test_reading_an_unknown_meter_names_the_meters_present(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    with pytest.raises(ForecastError, match=r"meters in it: \['m1'\]"):
        read_forecasts(str(tmp_path), meter_id="nope")


def test_reading_before_any_publish_says_what_to_run(tmp_path):
    with pytest.raises(ForecastError, match="powercast forecast"):
        read_forecasts(str(tmp_path))


def test_reading_an_unpublished_issue_time_is_refused(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    with pytest.raises(ForecastError, match="no complete forecast batch issued at 2010-08-16T23:00:00Z"):
        read_forecasts(str(tmp_path), issued_at=DAY_1)


def test_file_that_disagrees_with_its_manifest_is_refused(tmp_path, forecast_batch_factory, monkeypatch):
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))
    other = pq.read_table(published.path)
    pq.write_table(other.slice(0, 3), published.path)  # a crash between file and manifest looks like this
    monkeypatch.setattr(publish, "READ_RETRY_S", 0.1)

    with pytest.raises(ForecastError, match="does not match the sha256"):
        read_forecasts(str(tmp_path), issued_at=DAY_2)


def test_naive_issue_time_is_refused(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    with pytest.raises(ForecastError, match="has no timezone"):
        read_forecasts(str(tmp_path), issued_at="2010-08-17 23:00")


def test_batch_with_interval_not_around_yhat_is_refused(forecast_batch_factory):
    good = forecast_batch_factory("m1", DAY_2)
    swapped = good.table.set_column(
        FORECAST_SCHEMA.get_field_index("yhat_lo_kw"), FORECAST_SCHEMA.field("yhat_lo_kw"), good.table["yhat_hi_kw"]
    )

    with pytest.raises(ForecastError, match="yhat_lo_kw <= yhat_kw <= yhat_hi_kw"):
        ForecastBatch(swapped, 0.8, None, None, None)


def test_batch_with_wrong_column_type_is_refused(forecast_batch_factory):
    good = forecast_batch_factory("m1", DAY_2)
    index = FORECAST_SCHEMA.get_field_index("horizon_h")
    widened = good.table.set_column(index, pa.field("horizon_h", pa.int64(), nullable=False), good.table["horizon_h"].cast(pa.int64()))

    with pytest.raises(ForecastError, match="does not match forecast contract"):
        ForecastBatch(widened, 0.8, None, None, None)


def test_two_issue_times_in_one_publish_are_refused(tmp_path, forecast_batch_factory):
    with pytest.raises(ForecastError, match="one issue time per call"):
        publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_1), forecast_batch_factory("m2", DAY_2)])


def _poll_latest(root: str, ready, stop, results) -> None:
    """Reader process: follow latest.json the way a consumer would until told to stop."""
    reads, problems = 0, []
    ready.set()
    while not stop.is_set():
        try:
            pointer = json.loads((Path(root) / "forecasts" / "latest.json").read_text())
            # one open handle, as docs/forecast-contract.md advises: a path-based read_table opens
            # the file twice and can straddle a re-publish of the same issue time
            with open(Path(root) / "forecasts" / pointer["path"], "rb") as handle:
                raw = pq.read_table(handle)
            keys = {k.decode() for k in raw.schema.metadata}
            if not raw.schema.remove_metadata().equals(FORECAST_SCHEMA) or not set(FORECAST_METADATA_KEYS) <= keys:
                problems.append(f"schema/metadata differ from the contract in {pointer['path']}")
            if raw.num_rows != pointer["rows"]:
                problems.append(f"{pointer['path']}: {raw.num_rows} rows, pointer says {pointer['rows']}")
            frame = read_forecasts(root)
            if len(frame) != 48 or frame["issued_at"].nunique() != 1:
                problems.append(f"read_forecasts returned {len(frame)} rows")
            reads += 1
        except Exception as exc:  # noqa: BLE001 - any failure is what this reader reports
            problems.append(f"{type(exc).__name__}: {exc}")
    results.put((reads, problems))


def test_reader_polling_latest_never_sees_a_partial_batch(tmp_path, forecast_batch_factory):
    root = str(tmp_path)
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    reader = context.Process(target=_poll_latest, args=(root, ready, stop, results))
    publish_batch(root, [forecast_batch_factory("m1", DAY_1), forecast_batch_factory("m2", DAY_1)])
    reader.start()
    try:
        assert ready.wait(60), "reader process did not start"
        publishes, started = 0, time.monotonic()
        while publishes < 60 or time.monotonic() - started < 2.0:
            # every issue time is published three times: it becomes latest, then is replaced twice
            issued = (pd.Timestamp(DAY_2) + pd.Timedelta(days=publishes // 3)).isoformat()
            level = 1.0 + publishes % 7
            batch = [forecast_batch_factory(m, issued, run_id=f"run-{publishes}", level_kw=level) for m in ("m1", "m2")]
            publish_batch(root, batch)
            publishes += 1
    finally:
        stop.set()
        reads, problems = results.get(timeout=60)
        reader.join(timeout=60)
    assert problems == []
    assert reads >= 10, f"reader only completed {reads} reads; the test did not overlap with publishing"
    assert os.path.isfile(Path(root) / "forecasts" / latest_pointer(root)["path"])
