"""Global models over the five real meters of the sample: one network per cell, selection per meter."""

from __future__ import annotations

from pathlib import Path

import pytest

from powercast.core.config import PowercastConfig
from powercast.models.registry import champion_version, read_card
from powercast.prepare.datamodule import fleet_train_loader, fleet_val_loader
from powercast.prepare.series import prepare_meter
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters
from powercast.training.fleet import train_fleet

CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
TINY = {
    "prepare.lookback_steps": 24,
    "prepare.split": {"mode": "trailing", "val_days": 14, "test_days": 0},
    "train.hidden_sizes": [8],
    "train.ensemble_members": 1,
    "train.max_epochs": 2,
    "train.batch_size": 64,
    "train.global_steps_per_epoch": 15,
    "train.global_val_windows": 300,
    "train.accelerator": "cpu",
    "train.cpu_threads": 1,
    "train.refit_on_validation": False,
}


@pytest.fixture(scope="module")
def fleet_root(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("fleet-train") / "root")
    config = PowercastConfig(root=root).with_overrides({"ingest.channel_meters": CHANNELS})
    ingest_paths([sample_path], config, run_id="ingest")
    return root


def _config(root: str, scope: str) -> PowercastConfig:
    return PowercastConfig(root=root).with_overrides({**TINY, "train.scope": scope})


def test_a_global_pass_costs_its_step_budget_whatever_the_fleet(fleet_root: str) -> None:
    config = _config(fleet_root, "global")
    series = [prepare_meter(config, meter_id) for meter_id in list_meters(fleet_root)]
    for fleet in (series[:1], series):
        loader = fleet_train_loader(fleet, batch_size=64, n_batches=15, seed=1)
        assert len(loader) == 15
    windows = sum(len(item.window_starts["val"]) for item in series)
    assert len(fleet_val_loader(series, 64, max_windows=300, seed=1).dataset) == min(300, windows)


def test_both_scopes_compete_per_meter_and_the_winner_serves(fleet_root: str) -> None:
    config = _config(fleet_root, "both")
    meters = list_meters(fleet_root)
    result = train_fleet(config, meters, run_id="night1", progress=False)
    assert result.failures == {}
    assert set(result.global_fits) == {"gru", "lstm"}
    for meter_id, outcome in result.outcomes.items():
        contestants = {row["model"] for row in outcome.leaderboard if row["window_set"] == "val"}
        assert {"gru", "lstm", "gru_global", "lstm_global", "seasonal_naive_24h"} <= contestants
        val_mae = {row["model"]: row["mae_kw"] for row in outcome.leaderboard if row["window_set"] == "val"}
        best = outcome.decision.best_challenger
        challengers = {name: mae for name, mae in val_mae.items() if name in {"gru", "lstm", "gru_global", "lstm_global"}}
        assert best == min(challengers, key=challengers.get)  # lowest validation MAE among every challenger
        if outcome.decision.promoted:
            winner = outcome.decision.winner
            assert winner == best
            version = champion_version(fleet_root, meter_id)
            assert version == f"night1-{winner}"
            card = read_card(fleet_root, meter_id, version)
            assert card["training"]["scope"] == ("global" if winner.endswith("_global") else "local")


def test_a_meter_that_cannot_be_prepared_fails_alone(fleet_root: str) -> None:
    config = _config(fleet_root, "global")
    result = train_fleet(config, ["sceaux_household.kitchen", "no_such_meter"], run_id="night3", progress=False)
    assert set(result.failures) == {"no_such_meter"}
    assert set(result.outcomes) == {"sceaux_household.kitchen"}
