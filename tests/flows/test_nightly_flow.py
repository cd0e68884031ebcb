"""Three simulated nights: replay drops one day into landing each night, the nightly flow runs.

The flows run in this process against the session's throw-away Prefect server
(``prefect_harness``), with a tiny training budget: this checks the orchestration, not the models.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pyarrow as pa
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType

from flows.forecast import forecast
from flows.nightly import nightly
from flows.params import ForecastParams, NightlyParams
from powercast.core.schemas import MEASURED_COLUMNS, READINGS_SCHEMA, UTC_US
from powercast.models.registry import (
    CHALLENGER_VERSIONS_KEY,
    CHAMPION_AFTER_KEY,
    CHAMPION_BEFORE_KEY,
    list_versions,
    promote,
    read_card,
    read_history,
)
from powercast.serving.publish import list_issue_times, read_forecasts
from powercast.store.readings import read_readings, upsert_readings
from powercast.store.replay import replay_days

pytestmark = pytest.mark.prefect_server

METER = "sceaux_household"
HISTORY_START = date(2010, 10, 1)
HISTORY_DAYS = 35
NIGHTS = 3
# A short validation period keeps the tiny models' data small; the forecast fallback still has
# its calibration days.
CONFIG_TOML = """
[prepare.split]
mode = "trailing"
val_days = 7
"""


@dataclass
class Nights:
    root: Path
    landing: Path
    states: list[Any]
    day_files: list[Path]


@pytest.fixture(scope="module")
def three_nights(
    prefect_harness: None, sample_path: Path, tiny_training: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Nights:
    """Run the nightly flow on three consecutive nights; return where everything went."""
    base = tmp_path_factory.mktemp("nights")
    root, landing = base / "root", base / "root" / "landing"
    config_file = base / "powercast.toml"
    config_file.write_text(CONFIG_TOML, encoding="utf-8")
    day_files = replay_days(sample_path, landing, start_day=HISTORY_START, n_days=HISTORY_DAYS)
    # Each night prunes the meter to its last run (the rollback target and champion stay).
    params = NightlyParams(
        root=str(root), config_file=str(config_file), lock_timeout_s=30, keep_runs=1, **tiny_training
    )
    states = []
    for night in range(NIGHTS):
        new_day = HISTORY_START + timedelta(days=HISTORY_DAYS + night)
        day_files += replay_days(sample_path, landing, start_day=new_day, n_days=1)
        states.append(nightly(params, return_state=True))
    return Nights(root=root, landing=landing, states=states, day_files=day_files)


def descendant_flow_runs(flow_run_id: UUID) -> list[FlowRun]:
    """Return every flow run started under ``flow_run_id`` (sub-flows, their sub-flows, ...), read from the API."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
    return [run for child in children for run in (child, *descendant_flow_runs(child.id))]


def test_each_cell_trains_in_its_own_task_run_before_one_selection(three_nights: Nights) -> None:
    nightly_run_id = three_nights.states[0].state_details.flow_run_id
    # The sub-run's name carries the night's run id (nightly-<start>-<8 hex of the flow run id>).
    run_hex = str(nightly_run_id).replace("-", "")[:8]
    (meter_training,) = [
        run
        for run in descendant_flow_runs(nightly_run_id)
        if run.name.startswith(f"train {METER} · nightly-") and run.name.endswith(run_hex)
    ]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[meter_training.id]))
        )
    names = sorted(run.name for run in task_runs)
    assert [name for name in names if name.startswith("train-")] == ["train-gru", "train-lstm"]
    assert sum(name.startswith("decide_champion") for name in names) == 1
    assert all(run.state_type == StateType.COMPLETED for run in task_runs)


def test_every_night_completes(three_nights: Nights) -> None:
    assert [state.type.value for state in three_nights.states] == ["COMPLETED"] * NIGHTS


def test_three_nights_publish_three_consecutive_batches(three_nights: Nights) -> None:
    issue_times = list_issue_times(str(three_nights.root))
    assert len(issue_times) == NIGHTS
    assert [later - earlier for earlier, later in zip(issue_times, issue_times[1:])] == [pd.Timedelta(days=1)] * 2
    latest = read_forecasts(str(three_nights.root))
    assert set(latest["meter_id"]) == {METER}
    assert pd.Timestamp(latest["issued_at"].iloc[0]) == issue_times[-1]


def test_registry_history_has_a_decision_per_night(three_nights: Nights) -> None:
    history = read_history(str(three_nights.root), METER)
    run_ids = [entry["run_id"] for entry in history]
    assert len(run_ids) == NIGHTS
    assert len(set(run_ids)) == NIGHTS


def test_each_night_prunes_the_versions_of_older_runs(three_nights: Nights) -> None:
    """keep_runs=1: the last night's versions, its champion before and after (and their members) stay."""
    root = str(three_nights.root)
    history = read_history(root, METER)
    last = history[-1]
    protected = {last[CHAMPION_BEFORE_KEY], last[CHAMPION_AFTER_KEY]} - {None}
    for version in list(protected):  # a combination's members stay with it
        protected |= set(read_card(root, METER, version)["hparams"].get("member_versions", []))
    older = {version for entry in history[:-1] for version in entry[CHALLENGER_VERSIONS_KEY].values()}
    versions = set(list_versions(root, METER))
    assert older - protected, "every version of the older nights is a champion's: the nights left nothing to prune"
    assert not (older - protected) & versions
    assert set(last[CHALLENGER_VERSIONS_KEY].values()) | protected <= versions
    assert "| prune | " in _run_report(three_nights.states[-1].state_details.flow_run_id)  # the step's time


def test_store_holds_each_replayed_reading_once(three_nights: Nights) -> None:
    readings = read_readings(str(three_nights.root), METER, columns=["timestamp"]).to_pandas()
    lines_replayed = sum(len(gzip.decompress(path.read_bytes()).splitlines()) - 1 for path in three_nights.day_files)
    assert readings["timestamp"].is_unique
    assert len(readings) == lines_replayed


def test_failing_meter_does_not_stop_the_others(three_nights: Nights) -> None:
    params = ForecastParams(root=str(three_nights.root), meters=[METER, "no_such_meter"], lock_timeout_s=30)
    state = forecast(params, return_state=True)
    assert state.is_failed()
    assert "no_such_meter" in state.message
    published = read_forecasts(str(three_nights.root))
    assert set(published["meter_id"]) == {METER}


def test_dry_run_writes_nothing(prefect_harness: None, sample_path: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    replay_days(sample_path, root / "landing", start_day=HISTORY_START, n_days=2)
    before = sorted(path.relative_to(root) for path in root.rglob("*"))
    state = nightly(NightlyParams(root=str(root), dry_run=True), return_state=True)
    assert state.is_completed()
    assert sorted(path.relative_to(root) for path in root.rglob("*")) == before


def test_night_without_new_readings_forecasts_with_the_champion_and_does_not_train(three_nights: Nights) -> None:
    root = str(three_nights.root)
    champion = list_versions(root, METER)[-1]
    promote(root, METER, champion, run_id="test-promotion")
    history_before = read_history(root, METER)

    state = nightly(NightlyParams(root=root, lock_timeout_s=30), return_state=True)

    assert state.is_completed()
    assert read_history(root, METER) == history_before
    assert set(read_forecasts(root)["model_version"]) == {champion}


def _run_report(flow_run_id: UUID) -> str:
    """Return the markdown report a flow run wrote, read back from the Prefect API."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    (report,) = [artifact.data for artifact in artifacts if artifact.key == "report-nightly"]
    return report


def test_readings_from_the_future_in_the_store_are_ignored_and_reported(three_nights: Nights, tmp_path: Path) -> None:
    """A store written before ingest quarantined future readings: the night still forecasts, and says why."""
    root = tmp_path / "root"
    shutil.copytree(three_nights.root, root)
    champion = list_versions(str(root), METER)[-1]
    promote(str(root), METER, champion, run_id="test-promotion")
    issued_before = list_issue_times(str(root))[-1]
    last_real = read_readings(str(root), METER).to_pandas()["timestamp"].max()
    # Three readings from a meter clock that jumped to 2099, stored as an older powercast would have.
    stamps = pd.date_range("2099-01-01", periods=3, freq="1min", tz="UTC")
    future = pa.table(
        {
            "meter_id": [METER] * 3,
            "timestamp": pa.array(stamps, type=UTC_US),
            **{name: pa.array([0.5] * 3, type=pa.float32()) for name in MEASURED_COLUMNS},
            "source_sha256": ["0" * 64] * 3,
        }
    )
    upsert_readings(str(root), future.select(READINGS_SCHEMA.names).cast(READINGS_SCHEMA))

    state = nightly(NightlyParams(root=str(root), lock_timeout_s=30), return_state=True)

    assert state.is_completed(), state.message
    published = read_forecasts(str(root))
    assert set(published["model_version"]) == {champion}, "no new readings: the champion forecasts, nothing retrains"
    assert list_issue_times(str(root))[-1] == issued_before, "the issue time must come from the real readings"
    assert published["target_time"].min() > last_real
    report = _run_report(state.state_details.flow_run_id)
    assert f"{METER}: 3 stored reading(s) stamped at or after" in report
    assert "the latest 2099-01-01T00:02Z, ignored: a clock that ran ahead" in report
