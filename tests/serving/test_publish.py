"""Publishing forecast batches: layout, immutable files, the latest pointer, retention and sweep."""

from __future__ import annotations

import errno
import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from powercast.core.errors import ForecastError
from powercast.core.schemas import FORECAST_SCHEMA
from powercast.serving import publish
from powercast.serving.contract import ForecastBatch
from powercast.serving.publish import latest_pointer, list_issue_times, publish_batch, read_forecasts

DAY_1 = "2010-08-16T23:00Z"
DAY_2 = "2010-08-17T23:00Z"


def _forecasts(root: Path) -> Path:
    return root / "forecasts"


def _batch_files(root: Path) -> list[Path]:
    return sorted(_forecasts(root).rglob("*.parquet"))


def test_batch_lands_under_issue_date_with_manifest_and_latest(tmp_path, forecast_batch_factory):
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    folder = _forecasts(tmp_path) / "issue_date=2010-08-17"
    manifest = json.loads((folder / "issued_at=20100817T230000Z.manifest.json").read_text())
    latest = json.loads((_forecasts(tmp_path) / "latest.json").read_text())
    assert _batch_files(tmp_path) == [Path(published.path)]
    assert re.fullmatch(
        r"issued_at=20100817T230000Z\.published=\d{8}T\d{6}\.\d{6}Z\.parquet", Path(published.path).name
    )
    assert manifest["path"] == latest["path"] == f"issue_date=2010-08-17/{Path(published.path).name}"
    assert latest["manifest"] == "issue_date=2010-08-17/issued_at=20100817T230000Z.manifest.json"
    assert manifest["sha256"] == published.sha256 == latest["sha256"]
    assert (manifest["rows"], manifest["meters"], manifest["run_id"]) == (24, ["m1"], "run-test")
    assert manifest["models"]["m1"]["model"] == "gru"
    assert manifest["superseded"] == [] and published.swept == ()


def test_one_file_holds_every_meter_of_an_issue_time(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_2), forecast_batch_factory("m2", DAY_2)])

    files = _batch_files(tmp_path)
    frame = read_forecasts(str(tmp_path))
    assert len(files) == 1 and files[0].name.startswith("issued_at=20100817T230000Z.")
    assert frame.groupby("meter_id").size().to_dict() == {"m1": 24, "m2": 24}


def test_republish_writes_a_new_file_and_never_touches_the_old_one(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1, level_kw=1.0))
    first = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, level_kw=1.0))
    other_day = _forecasts(tmp_path) / "issue_date=2010-08-16"
    before = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in other_day.iterdir()}
    old_file = Path(first.path)
    old_state = (old_file.read_bytes(), old_file.stat().st_ino, old_file.stat().st_mtime_ns)

    second = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-again", level_kw=5.0))

    after = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in other_day.iterdir()}
    frame = read_forecasts(str(tmp_path), issued_at=DAY_2)
    manifest = json.loads(Path(second.manifest_path).read_text())
    assert after == before
    assert second.path != first.path and second.path > first.path  # a new name, sorting after the old one
    assert (old_file.read_bytes(), old_file.stat().st_ino, old_file.stat().st_mtime_ns) == old_state
    assert set(frame["run_id"]) == {"run-again"} and frame["yhat_kw"].min() > 4
    assert [entry["path"] for entry in manifest["superseded"]] == [f"issue_date=2010-08-17/{old_file.name}"]
    kept_until = pd.Timestamp(manifest["superseded"][0]["kept_until"]) - pd.Timestamp(
        manifest["superseded"][0]["superseded_at"]
    )
    assert kept_until == pd.Timedelta(seconds=publish.SUPERSEDED_RETENTION_S)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_republishing_identical_rows_writes_nothing(tmp_path, forecast_batch_factory):
    first = publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_2), forecast_batch_factory("m2", DAY_2)])
    pointers = [Path(first.manifest_path), _forecasts(tmp_path) / "latest.json"]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in pointers]

    again = publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_2), forecast_batch_factory("m2", DAY_2)])

    assert again.path == first.path and again.sha256 == first.sha256 and again.latest_updated
    assert _batch_files(tmp_path) == [Path(first.path)]
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in pointers] == before


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
    widened = good.table.set_column(
        index, pa.field("horizon_h", pa.int64(), nullable=False), good.table["horizon_h"].cast(pa.int64())
    )

    with pytest.raises(ForecastError, match="does not match forecast contract"):
        ForecastBatch(widened, 0.8, None, None, None)


def test_two_issue_times_in_one_publish_are_refused(tmp_path, forecast_batch_factory):
    with pytest.raises(ForecastError, match="one issue time per call"):
        publish_batch(str(tmp_path), [forecast_batch_factory("m1", DAY_1), forecast_batch_factory("m2", DAY_2)])


class _Clock:
    """Stands in for publish._utc_now: the publish clock, moved by hand."""

    def __init__(self, start: str = "2024-05-01T00:00Z") -> None:
        self.now = pd.Timestamp(start).to_pydatetime()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def test_superseded_file_stays_for_the_retention_then_a_later_publish_sweeps_it(
    tmp_path, forecast_batch_factory, monkeypatch
):
    clock = _Clock()
    monkeypatch.setattr(publish, "_utc_now", clock)
    first = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1, run_id="run-1"))
    clock.advance(hours=1)
    second = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1, run_id="run-2"))

    clock.advance(hours=24, seconds=-1)  # 1 s before the first file's time is up
    kept = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))
    clock.advance(seconds=1)
    swept = publish_batch(str(tmp_path), forecast_batch_factory("m1", "2010-08-18T23:00Z"))

    assert kept.swept == () and swept.swept == (first.path,)
    assert _batch_files(tmp_path) == sorted(Path(p) for p in (second.path, kept.path, swept.path))
    assert json.loads(Path(second.manifest_path).read_text())["path"].endswith(Path(second.path).name)
    assert set(read_forecasts(str(tmp_path), issued_at=DAY_1)["run_id"]) == {"run-2"}


def test_a_zero_retention_sweeps_at_once_but_never_the_current_file(tmp_path, forecast_batch_factory):
    for run in range(4):
        published = publish_batch(
            str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id=f"run-{run}"), retention_s=0
        )

    assert _batch_files(tmp_path) == [Path(published.path)]
    assert set(read_forecasts(str(tmp_path))["run_id"]) == {"run-3"}
    assert json.loads(Path(published.manifest_path).read_text())["superseded"] == []


def test_file_names_stay_unique_and_ordered_when_the_clock_stands_or_steps_back(
    tmp_path, forecast_batch_factory, monkeypatch
):
    clock = _Clock()
    monkeypatch.setattr(publish, "_utc_now", clock)
    paths = []
    for run in range(3):
        paths.append(publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id=f"run-{run}")).path)
        clock.advance(seconds=-5 * run)

    assert len(set(paths)) == 3 and paths == sorted(paths)
    assert set(read_forecasts(str(tmp_path))["run_id"]) == {"run-2"}


def test_leftovers_of_a_failed_publish_are_swept_after_the_retention(tmp_path, forecast_batch_factory, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(publish, "_utc_now", clock)
    current = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))
    folder = Path(current.path).parent
    # a publish that wrote its file but died before the manifest, and one killed mid-write
    orphan = folder / "issued_at=20100817T230000Z.published=20240501T000001.000000Z.parquet"
    orphan.write_bytes(Path(current.path).read_bytes())
    stale_temp = folder / ".tmp-issued_at=20100817T230000Z.parquet-0123abcd.tmp"
    stale_temp.write_bytes(b"PAR1 half written")
    day_old = clock.now.timestamp() - 25 * 3600
    os.utime(stale_temp, (day_old, day_old))
    clock.advance(hours=24, seconds=2)
    fresh_temp = folder / ".tmp-issued_at=20100817T230000Z.manifest.json-4567cdef.tmp"
    fresh_temp.write_bytes(b"{")
    os.utime(fresh_temp, (clock.now.timestamp() - 60, clock.now.timestamp() - 60))
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1))

    assert sorted(published.swept) == sorted([str(orphan), str(stale_temp)])
    assert fresh_temp.exists() and Path(current.path).exists()


def test_a_failed_manifest_write_leaves_the_previous_batch_current(tmp_path, forecast_batch_factory, monkeypatch):
    root = str(tmp_path)
    before = publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-before"))
    pointers = {p: p.read_bytes() for p in (Path(before.manifest_path), _forecasts(tmp_path) / "latest.json")}
    real_write = publish.atomic_write_bytes

    def disk_full_on_json(path, payload, filesystem=None):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, payload, filesystem)

    monkeypatch.setattr(publish, "atomic_write_bytes", disk_full_on_json)
    with pytest.raises(
        ForecastError, match=rf"could not write {re.escape(before.manifest_path)}: No space left"
    ) as failed:
        publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-after"))

    assert isinstance(failed.value.__cause__, OSError)  # the flows see the full disk and retry
    assert {p: p.read_bytes() for p in pointers} == pointers
    assert set(read_forecasts(root)["run_id"]) == {"run-before"}
    assert len(_batch_files(tmp_path)) == 2  # the new file, named by nothing, waits for the sweep


def test_a_root_in_the_1_0_layout_is_read_and_its_old_file_swept_after_a_republish(
    tmp_path, forecast_batch_factory, monkeypatch
):
    clock = _Clock()
    monkeypatch.setattr(publish, "_utc_now", clock)
    root = str(tmp_path)
    published = publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-1-0"))
    legacy = Path(published.path).with_name("issued_at=20100817T230000Z.parquet")  # the name powercast 1.0 wrote
    Path(published.path).rename(legacy)
    for pointer in (Path(published.manifest_path), _forecasts(tmp_path) / "latest.json"):
        pointer.write_text(pointer.read_text().replace(Path(published.path).name, legacy.name))
    assert set(read_forecasts(root)["run_id"]) == {"run-1-0"}

    kept = publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-new"))
    clock.advance(hours=24)
    swept = publish_batch(root, forecast_batch_factory("m1", DAY_1))

    assert kept.swept == () and swept.swept == (str(legacy),) and not legacy.exists()
    assert set(read_forecasts(root)["run_id"]) == {"run-new"}


@pytest.mark.parametrize("retention_s", [-1, float("nan"), float("inf"), "24h"])
def test_a_retention_that_is_not_a_finite_non_negative_number_is_refused(tmp_path, forecast_batch_factory, retention_s):
    with pytest.raises(ForecastError, match="retention_s=.* must be a finite number of seconds >= 0"):
        publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2), retention_s=retention_s)


def test_a_pointer_naming_a_path_outside_forecasts_is_refused(tmp_path, forecast_batch_factory):
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))
    latest = _forecasts(tmp_path) / "latest.json"
    latest.write_text(json.dumps({**json.loads(latest.read_text()), "path": "../../etc/passwd"}))

    with pytest.raises(ForecastError, match=r"latest.json field 'path' must be a path inside forecasts/"):
        read_forecasts(str(tmp_path))


def test_read_forecasts_reads_the_pointer_again_when_its_file_was_swept_in_between(
    tmp_path, forecast_batch_factory, monkeypatch
):
    root = str(tmp_path)
    publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-1"))
    real_read_bytes = publish.read_bytes
    first_file_read = []

    def swept_once(path, filesystem=None):
        if str(path).endswith(".parquet") and not first_file_read:
            first_file_read.append(path)  # the publish below moves the pointer and sweeps this file now
            publish_batch(root, forecast_batch_factory("m1", DAY_2, run_id="run-2"), retention_s=0)
        return real_read_bytes(path, filesystem)

    monkeypatch.setattr(publish, "read_bytes", swept_once)
    frame = read_forecasts(root)

    assert not Path(first_file_read[0]).exists()
    assert set(frame["run_id"]) == {"run-2"}


def test_history_from_the_manifests_has_one_file_per_issue_time_while_a_glob_also_finds_superseded_ones(
    tmp_path, forecast_batch_factory
):
    for run in ("run-1", "run-2"):
        publish_batch(str(tmp_path), [forecast_batch_factory(m, DAY_1, run_id=run) for m in ("m1", "m2")])
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2))

    manifests = sorted(_forecasts(tmp_path).glob("issue_date=*/issued_at=*.manifest.json"))
    current = [_forecasts(tmp_path) / json.loads(m.read_text())["path"] for m in manifests]
    history = pq.ParquetDataset(current).read()
    globbed = sorted(_forecasts(tmp_path).glob("issue_date=*/issued_at=*.parquet"))

    assert history.num_rows == 24 * 3 and set(history["run_id"].to_pylist()) == {"run-2", "run-test"}
    assert len(globbed) == 3 and [t.isoformat() for t in list_issue_times(str(tmp_path))] == [
        "2010-08-16T23:00:00+00:00",
        "2010-08-17T23:00:00+00:00",
    ]


def test_a_manifest_listing_another_file_as_superseded_deletes_nothing(tmp_path, forecast_batch_factory):
    """A damaged manifest must not turn the sweep against latest.json or another issue time's file."""
    publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_1, run_id="run-1"))
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-2"))
    manifest_path = Path(published.manifest_path)
    manifest = json.loads(manifest_path.read_text())
    manifest["superseded"] = [{"path": "latest.json", "superseded_at": DAY_1, "kept_until": "2000-01-01T00:00:00Z"}]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ForecastError, match="lists 'latest.json' as superseded"):
        publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-3"))
    assert (tmp_path / "forecasts" / "latest.json").is_file()
    assert read_forecasts(str(tmp_path))["run_id"].unique().tolist() == ["run-2"]


def test_a_manifest_listing_another_issue_time_of_its_day_deletes_nothing(tmp_path, forecast_batch_factory):
    """Two issue times share a date folder: one's damaged manifest must not sweep the other's file."""
    noon = "2010-08-17T12:00Z"
    other = publish_batch(str(tmp_path), forecast_batch_factory("m1", noon, run_id="run-noon"))
    published = publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-2"))
    manifest_path = Path(published.manifest_path)
    manifest = json.loads(manifest_path.read_text())
    stale = {"path": f"issue_date=2010-08-17/{Path(other.path).name}", "superseded_at": noon, "kept_until": "2000-01-01T00:00:00Z"}
    manifest["superseded"] = [stale]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ForecastError, match="as superseded, which is not one of its batch files"):
        publish_batch(str(tmp_path), forecast_batch_factory("m1", DAY_2, run_id="run-3"))
    assert Path(other.path).is_file()
