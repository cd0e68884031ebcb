"""A deployment run through a real Prefect server, as the UI's Run button makes it.

The session fixture starts ``prefect server start`` on a free 127.0.0.1 port, creates the
process work pool and deploys ``deployments/prefect.yaml``; this test starts a worker, asks the
REST API for a run of ``nightly/nightly-manual`` with custom parameters, waits for the worker to finish
it, then checks the forecast batch on disk and the artifacts on the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from deployments.serve import LocalPrefect
from powercast.models.registry import champion_version, list_versions, read_card, read_history
from powercast.serving.forecast import FALLBACK_FAMILY
from powercast.serving.publish import list_issue_times, read_forecasts
from powercast.store.replay import replay_days

# Measured on these 28 days of the sample (seed 42): the fallback the night serves.
FALLBACK_ON_THE_28_DAYS = "same_hour_median_7d"

pytestmark = pytest.mark.prefect_server

METER = "sceaux_household"
RUN_TIMEOUT_S = 420
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CONFIG_TOML = """
[prepare.split]
mode = "trailing"
val_days = 7
"""


def deployment_id(api: httpx.Client, flow_name: str, deployment_name: str) -> str:
    """Return the id of a deployment, looked up by name as the UI does."""
    response = api.get(f"/deployments/name/{flow_name}/{deployment_name}")
    response.raise_for_status()
    return str(response.json()["id"])


def wait_for_terminal_state(api: httpx.Client, flow_run_id: str, timeout_s: float) -> dict[str, Any]:
    """Return the flow run once it reached a terminal state (fails the test after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flow_run = api.get(f"/flow_runs/{flow_run_id}").json()
        if flow_run["state_type"] in TERMINAL_STATES:
            return flow_run
        time.sleep(2)
    pytest.fail(f"flow run {flow_run_id} did not finish within {timeout_s} s (last state {flow_run['state_name']})")


@pytest.fixture()
def api(prefect_server: LocalPrefect) -> Iterator[httpx.Client]:
    """An HTTP client on the server's REST API."""
    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as client:
        yield client


def test_deployment_run_with_custom_parameters_publishes_forecasts_and_artifacts(
    prefect_worker: LocalPrefect,
    api: httpx.Client,
    sample_path: Path,
    tiny_training: dict[str, Any],
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    replay_days(sample_path, root / "landing", start_day=date(2010, 10, 1), n_days=35)
    config_file = tmp_path / "powercast.toml"
    config_file.write_text(CONFIG_TOML, encoding="utf-8")
    custom = {"root": str(root), "config_file": str(config_file), "lock_timeout_s": 30, **tiny_training}

    response = api.post(
        f"/deployments/{deployment_id(api, 'nightly', 'nightly-manual')}/create_flow_run",
        json={"parameters": {"params": custom}, "name": "integration-test-run"},
    )
    response.raise_for_status()
    flow_run = wait_for_terminal_state(api, response.json()["id"], RUN_TIMEOUT_S)

    assert flow_run["state_type"] == "COMPLETED", flow_run["state"]["message"]
    assert flow_run["parameters"]["params"]["hidden_sizes"] == tiny_training["hidden_sizes"]
    issue_times = list_issue_times(str(root))
    assert len(issue_times) == 1
    forecasts = read_forecasts(str(root))
    assert set(forecasts["meter_id"]) == {METER}
    assert len(forecasts) == tiny_training["horizon_steps"]
    assert forecasts["run_id"].str.endswith(flow_run["id"].replace("-", "")[:8]).all()
    trained = [read_card(str(root), METER, version) for version in list_versions(str(root), METER)]
    assert {card["cell"] for card in trained} == {"gru", "lstm", "combo"}  # combo: the mean of the two
    assert all(card["train_config"]["hidden_sizes"] == tiny_training["hidden_sizes"] for card in trained)
    assert all(card["training"]["device"] == "cpu" for card in trained)
    # What this seeded night decides: one epoch of 8-unit networks does not beat the best baseline,
    # same_hour_mean_7d, on the 7 validation days (145 windows; about 0.66 against 0.609 kW, a margin
    # far above numerical noise), so no champion is promoted and the forecast is the seasonal-naive
    # fallback, the baseline with the lowest MAE on the 28 days before the issue time.
    assert champion_version(str(root), METER) is None
    (decision,) = read_history(str(root), METER)
    assert (decision["promoted"], decision["winner"], decision["champion_after"]) == (False, None, None)
    assert (decision["best_baseline"], decision["n_val_windows"]) == ("same_hour_mean_7d", 145)
    assert decision["best_baseline_val_mae_kw"] == pytest.approx(0.6090, abs=5e-4)
    assert min(decision["challenger_val_mae_kw"].values()) > decision["best_baseline_val_mae_kw"]
    assert decision["reason"].endswith(
        "does not beat the best baseline same_hour_mean_7d (0.6090 kW); no champion is promoted"
    )
    assert decision["challenger_versions"] == {card["cell"]: card["version"] for card in trained}
    assert set(forecasts["model_version"]) == {FALLBACK_ON_THE_28_DAYS}
    assert set(forecasts["model"]) == {FALLBACK_FAMILY[FALLBACK_ON_THE_28_DAYS]}
    # issued at the local midnight after the last replayed day (4 November, Paris: UTC+1)
    assert (forecasts["issued_at"] == pd.Timestamp("2010-11-04T23:00Z")).all()

    artifacts = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}}).json()
    by_key = {artifact["key"]: artifact for artifact in artifacts}
    assert {"report-nightly", "leaderboard-nightly", "nightly-forecast-plot-0"} <= set(by_key)
    # Made in the flow's body: every artifact belongs to the flow run, none to a task run.
    assert [artifact["task_run_id"] for artifact in artifacts] == [None] * len(artifacts)
    leaderboard = _table_rows(by_key["leaderboard-nightly"])
    assert {"gru", "lstm"} <= {row["model"] for row in leaderboard}
    assert leaderboard[0]["verdict"].startswith("★ winner")
    assert leaderboard[0]["val MAE kW"] == min(row["val MAE kW"] for row in leaderboard)
    report = by_key["report-nightly"]["data"]
    served = forecasts["model_version"].iloc[0]
    assert f"- **{METER}**: served by the fallback **{served}** (" in report
    assert "because no champion yet: tonight's best challenger " in report
    assert f"- data root: `{root}`" in report and f"in `{root / 'forecasts'}/" in report and "file://" not in report
    assert f"(meter {METER} has no champion model yet)" in report
    assert "(test 0: the trailing split keeps no test days; set prepare.split.test_days)" in report


def _table_rows(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def test_server_rejects_out_of_bounds_parameters_before_any_run(api: httpx.Client) -> None:
    response = api.post(
        f"/deployments/{deployment_id(api, 'nightly', 'nightly-manual')}/create_flow_run",
        json={"parameters": {"params": {"max_epochs": 0}}},
    )
    assert response.status_code in (409, 422)
    assert "max_epochs" in response.text
