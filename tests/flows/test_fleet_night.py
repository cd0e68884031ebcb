"""The nightly run over a fleet: five real meters, sequentially and on a real Dask local cluster.

Both runs start from the same stored readings (the bundled sample's house total and its four
sub-metering channels) with one meter's store files broken, and use a tiny pinned training
budget (one torch thread, so float sums happen in the same order in every process). The Dask run
must publish exactly the sequential run's rows, the broken meter must fail alone, and the run
report must name it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from flows.nightly import nightly
from flows.params import NightlyParams
from powercast.core.config import PowercastConfig
from powercast.serving.publish import read_forecasts
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters
from powercast.store.replay import replay_days

pytestmark = pytest.mark.prefect_server

CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
BROKEN_METER = "sceaux_household.laundry"
HOUSE = "sceaux_household"
CONFIG_TOML = """
[prepare.split]
mode = "trailing"
val_days = 7
"""


@dataclass
class FleetNight:
    root: Path
    state: Any


@pytest.fixture(scope="module")
def fleet_store(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding 35 days of the five real meters, one of them with a corrupted partition."""
    root = tmp_path_factory.mktemp("fleet") / "root"
    landing = root.parent / "landing"
    replay_days(sample_path, landing, start_day=date(2010, 10, 1), n_days=35)
    config = PowercastConfig(root=str(root)).with_overrides({"ingest.channel_meters": CHANNELS})
    ingest_paths([landing], config, run_id="fleet-ingest")
    assert len(list_meters(str(root))) == 5
    for part in (root / "store" / "readings" / f"meter_id={BROKEN_METER}").rglob("*.parquet"):
        part.write_bytes(b"not parquet: a disk error ate this file")
    return root


def _night(
    fleet_store: Path, tmp_path_factory: pytest.TempPathFactory, tiny_training: dict[str, Any], runner: str
) -> FleetNight:
    root = tmp_path_factory.mktemp(f"night-{runner}") / "root"
    shutil.copytree(fleet_store, root)
    config_file = root.parent / "powercast.toml"
    config_file.write_text(CONFIG_TOML, encoding="utf-8")
    params = NightlyParams(
        root=str(root),
        config_file=str(config_file),
        lock_timeout_s=30,
        as_of=date(2010, 11, 5),
        task_runner=runner,
        dask_workers=2,
        **{**tiny_training, "cpu_threads": 1},
    )
    return FleetNight(root=root, state=nightly(params, return_state=True))


@pytest.fixture(scope="module")
def sequential_night(
    prefect_harness: None, fleet_store: Path, tmp_path_factory: pytest.TempPathFactory, tiny_training: dict[str, Any]
) -> FleetNight:
    return _night(fleet_store, tmp_path_factory, tiny_training, "sequential")


@pytest.fixture(scope="module")
def dask_night(
    prefect_harness: None, fleet_store: Path, tmp_path_factory: pytest.TempPathFactory, tiny_training: dict[str, Any]
) -> FleetNight:
    return _night(fleet_store, tmp_path_factory, tiny_training, "dask")


def _published(root: Path) -> pd.DataFrame:
    """Return the night's published rows without the run id (each run has its own), in a fixed order."""
    (batch,) = sorted((root / "forecasts").rglob("*.parquet"))
    frame = pd.read_parquet(batch)
    # A network's version is <run_id>-<cell>: keep the cell, drop the run's own id.
    frame["model_version"] = [version.rpartition("-")[2] for version in frame["model_version"]]
    return frame.drop(columns=["run_id"]).sort_values(["meter_id", "horizon_h"]).reset_index(drop=True)


def _validation_scores(root: Path) -> pd.DataFrame:
    """Return every meter's leaderboard scores (model, window set, MAE, RMSE) of the night's training."""
    frames = []
    for path in sorted((root / "runs").glob("*/*/leaderboard.parquet")):
        frame = pd.read_parquet(path, columns=["meter_id", "model", "window_set", "mae_kw", "rmse_kw"])
        frames.append(frame)
    return pd.concat(frames).sort_values(["meter_id", "model", "window_set"]).reset_index(drop=True)


def test_a_broken_meter_fails_alone_and_the_others_are_published(sequential_night: FleetNight) -> None:
    assert sequential_night.state.is_failed()
    assert BROKEN_METER in sequential_night.state.message
    published = _published(sequential_night.root)
    assert set(published["meter_id"]) == {f"sceaux_household{suffix}" for suffix in ("", ".kitchen", ".heater_ac", ".rest")}
    assert (published.groupby("meter_id").size() == 24).all()


def test_the_run_report_names_the_failed_meter_and_the_fleet(sequential_night: FleetNight) -> None:
    flow_run_id = sequential_night.state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    (report,) = [artifact.data for artifact in artifacts if artifact.key == "report-nightly"]
    assert "## Fleet" in report
    assert "meters served: 4 of 5; failed: 1 (sceaux_household.laundry)" in report
    assert "slowest meters: " in report
    assert f"**{BROKEN_METER}**: FAILED" in report


def test_dask_and_sequential_runs_publish_identical_batches(sequential_night: FleetNight, dask_night: FleetNight) -> None:
    assert dask_night.state.is_failed() and BROKEN_METER in dask_night.state.message
    pd.testing.assert_frame_equal(_published(dask_night.root), _published(sequential_night.root))


def test_dask_and_sequential_training_give_identical_metrics(sequential_night: FleetNight, dask_night: FleetNight) -> None:
    sequential = _validation_scores(sequential_night.root)
    assert {"gru", "lstm"} <= set(sequential["model"])  # the networks trained on every healthy meter
    assert sequential["meter_id"].nunique() == 4
    pd.testing.assert_frame_equal(_validation_scores(dask_night.root), sequential)


def test_a_global_night_trains_one_model_per_cell_for_the_fleet_and_own_models_only_where_asked(
    prefect_harness: None, fleet_store: Path, tmp_path_factory: pytest.TempPathFactory, tiny_training: dict[str, Any]
) -> None:
    # Both scopes, but only the house trains its own models (train.local_meters): the channels are
    # served by the global networks alone, which still learn from every meter.
    root = tmp_path_factory.mktemp("night-global") / "root"
    shutil.copytree(fleet_store, root)
    params = NightlyParams(
        root=str(root),
        lock_timeout_s=30,
        as_of=date(2010, 11, 5),
        scope="both",
        local_meters=[HOUSE],
        global_steps_per_epoch=10,
        **{**tiny_training, "cpu_threads": 1},
    )
    state = nightly(params, return_state=True)
    assert state.is_failed() and BROKEN_METER in state.message  # the broken meter still fails alone
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])))
    assert [run.name for run in task_runs].count("train-global-models") == 1
    healthy = {f"sceaux_household{suffix}" for suffix in ("", ".kitchen", ".heater_ac", ".rest")}
    assert set(_published(root)["meter_id"]) == healthy
    for meter_id in healthy:
        (leaderboard,) = (root / "runs").glob(f"*/{meter_id}/leaderboard.json")
        models = {row["model"] for row in json.loads(leaderboard.read_text())["rows"]}
        own = set(tiny_training["cells"])  # the house's own networks
        assert {"gru_global", "lstm_global"} <= models
        assert own <= models if meter_id == HOUSE else not own & models
    assert len(list((root / "runs").glob("*/_fleet"))) == 1
    # The next night has no new readings: no meter retrains, so no global model is trained for nothing.
    again = nightly(params, return_state=True)
    assert again.is_failed() and BROKEN_METER in again.message
    assert len(list((root / "runs").glob("*/_fleet"))) == 1
    assert set(read_forecasts(str(root))["meter_id"]) == healthy  # the current batch (the first stays for readers)
