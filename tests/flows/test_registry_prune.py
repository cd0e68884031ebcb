"""The night's last step prunes the meters it trained; a prune that fails is a warning, never a failed night."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from model_records import model_record
from prefect import flow

from flows.nightly import prune_after_the_night
from powercast.core.config import PowercastConfig
from powercast.models.registry import list_versions, promote, register_model
from powercast.prepare.series import PreparedSeries
from powercast.training.fit import build_forecaster

pytestmark = pytest.mark.prefect_server

METER, UNTRAINED = "sceaux_household", "meter-without-news"


@flow
def night_end(config: PowercastConfig, run_id: str, trained: list[str]) -> tuple[int | None, str]:
    """The end of a night: prune, then the night's own result (what pruning removed, or None when it failed)."""
    report = prune_after_the_night(config, run_id, trained)
    return (None if report is None else report.versions_removed), "forecasts published"


def test_the_night_prunes_the_versions_of_older_runs_of_the_meters_it_trained(
    prefect_harness: None, tmp_path: Path, tiny_prepared: PreparedSeries, tiny_config: PowercastConfig
) -> None:
    root = str(tmp_path / "registry")
    torch.manual_seed(0)
    network = build_forecaster(tiny_prepared, tiny_config.train, "gru").eval()
    for meter in (METER, UNTRAINED):
        for night in ("night1", "night2"):
            record = dataclasses.replace(model_record(tiny_prepared, tiny_config), run_id=night)
            register_model(root, meter, f"{night}-gru", network, record)
        promote(root, meter, "night2-gru", run_id="night2")
    config = PowercastConfig(root=root).with_overrides({"registry.keep_runs": 1})
    state = night_end(config, "night3", [METER], return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == (1, "forecasts published")
    assert list_versions(root, METER) == ["night2-gru"]
    assert list_versions(root, UNTRAINED) == ["night1-gru", "night2-gru"]  # not trained tonight: left for its night


def test_a_prune_that_fails_leaves_the_night_completed(prefect_harness: None, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "models").write_text("a file where the registry folder should be")
    state = night_end(PowercastConfig(root=str(root)), "night1", [METER], return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == (None, "forecasts published")  # the prune task failed, the night did not
