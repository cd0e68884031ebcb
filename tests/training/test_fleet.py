"""Global models over the five real meters of the sample: one network per cell, selection per meter."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from powercast.core.config import PowercastConfig
from powercast.core.errors import ConfigError, TrainingError
from powercast.models.registry import (
    CARD_FILE,
    GLOBAL_NETWORK_FILE,
    champion_version,
    list_versions,
    load_champion,
    load_model,
    read_card,
)
from powercast.prepare.datamodule import fleet_train_loader, fleet_val_loader
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.serving.forecast import make_forecast_batch
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters
from powercast.training.fleet import (
    GlobalFit,
    fit_global,
    fit_global_models,
    global_challenger,
    local_challengers,
    prepare_fleet,
    train_fleet,
)
from powercast.training.pipeline import (
    SELECTION_SET,
    ChallengerFit,
    forecast_module_kw,
    select_and_register,
    window_inputs,
    window_targets_kw,
)

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
        challengers = {
            row["model"]: row["mae_kw"]
            for row in outcome.leaderboard
            if row["window_set"] == "val" and row["kind"] == "challenger"
        }
        # Local networks, hgb and their combination; the global models are networks only.
        assert set(challengers) == {"gru", "lstm", "hgb", "combo", "gru_global", "lstm_global"}
        best = outcome.decision.best_challenger
        assert best == min(challengers, key=challengers.get)  # lowest validation MAE among every challenger
        if outcome.decision.promoted:
            winner = outcome.decision.winner
            assert winner == best
            version = champion_version(fleet_root, meter_id)
            assert version == f"night1-{winner}"
            card = read_card(fleet_root, meter_id, version)
            scopes = {"global" if name.endswith("_global") else "local" for name in card["hparams"].get("member_versions", [winner])}
            assert card["training"]["scope"] == (scopes.pop() if len(scopes) == 1 else "mixed")


def test_only_the_local_meters_train_their_own_models_and_the_global_ones_learn_from_all(fleet_root: str) -> None:
    house, kitchen, laundry = "sceaux_household", "sceaux_household.kitchen", "sceaux_household.laundry"
    config = _config(fleet_root, "both").with_overrides({"train.cells": ["lstm", "hgb"], "train.local_meters": [house]})
    result = train_fleet(config, [house, kitchen, laundry], run_id="house-only", progress=False)
    assert result.failures == {} and result.failed_cells == {}
    assert set(result.global_fits) == {"lstm"}
    # The global network learned every meter, not only the one that trains its own models.
    assert result.global_fits["lstm"].fit.module.hparams.meter_ids == [house, kitchen, laundry]

    def challengers(meter_id: str) -> set[str]:
        board = result.outcomes[meter_id].leaderboard
        return {row["model"] for row in board if row["window_set"] == "val" and row["kind"] == "challenger"}

    assert challengers(house) == {"lstm", "hgb", "lstm_global", "combo"}
    for meter_id in (kitchen, laundry):
        assert challengers(meter_id) == {"lstm_global"}
        tonight = [version for version in list_versions(fleet_root, meter_id) if version.startswith("house-only-")]
        assert tonight == ["house-only-lstm_global"]  # nothing of its own was trained or registered
    assert {"house-only-lstm", "house-only-hgb"} <= set(list_versions(fleet_root, house))


def test_failed_global_networks_leave_the_meters_own_models_to_compete(
    fleet_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the global fit fails as a diverging one does. The night goes on as the flow's does:
    # the house selects among its own models, a meter served only by global networks fails alone, saying why.
    def diverging(*args: object, **kwargs: object) -> None:
        raise TrainingError("model lstm_global: the training loss became nan")

    monkeypatch.setattr("powercast.training.fleet.fit_global", diverging)
    house, kitchen = "sceaux_household", "sceaux_household.kitchen"
    config = _config(fleet_root, "both").with_overrides({"train.cells": ["lstm", "hgb"], "train.local_meters": [house]})
    result = train_fleet(config, [house, kitchen], run_id="global-fails", progress=False)
    assert result.global_failure == "model lstm_global: the training loss became nan"
    assert result.global_fits == {}
    assert set(result.outcomes) == {house}
    board = result.outcomes[house].leaderboard
    assert {row["model"] for row in board if row["window_set"] == "val" and row["kind"] == "challenger"} == {
        "lstm", "hgb", "combo"
    }
    assert set(result.failures) == {kitchen}
    assert "no challenger to select from" in result.failures[kitchen]
    assert "the training loss became nan" in result.failures[kitchen]


@pytest.mark.parametrize("scope", ["local", "global"])
def test_local_meters_outside_both_scopes_is_refused_naming_the_setting(fleet_root: str, scope: str) -> None:
    with pytest.raises(ConfigError, match=r"train.local_meters \['sceaux_household'\] needs train.scope 'both'"):
        _config(fleet_root, scope).with_overrides({"train.local_meters": ["sceaux_household"]})
    with pytest.raises(ConfigError, match="not meter ids"):
        _config(fleet_root, "both").with_overrides({"train.local_meters": ["../etc"]})
    with pytest.raises(ConfigError, match=r"train.local_meters needs a network among train.cells"):
        _config(fleet_root, "both").with_overrides({"train.cells": ["hgb"], "train.local_meters": ["sceaux_household"]})


def test_a_meter_that_cannot_be_prepared_fails_alone(fleet_root: str) -> None:
    config = _config(fleet_root, "global")
    result = train_fleet(config, ["sceaux_household.kitchen", "no_such_meter"], run_id="night3", progress=False)
    assert set(result.failures) == {"no_such_meter"}
    assert set(result.outcomes) == {"sceaux_household.kitchen"}


@pytest.fixture(scope="module")
def alternating_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three synthetic meters whose days alternate between a morning and an evening profile.

    Made for this mechanics test, never an accuracy claim: every baseline repeats a day of the
    wrong parity (yesterday, a week ago) or averages both, while a network that reads the last
    week sees which profile comes next, so the global model wins these meters.
    """
    hours = pd.date_range("2010-01-04", periods=80 * 24, freq="1h", tz="UTC")
    day, hour = (hours - hours[0]).days, hours.hour
    morning, evening = np.exp(-((hour - 8) ** 2) / 6.0), np.exp(-((hour - 19) ** 2) / 6.0)
    rows = []
    for index, scale in enumerate((0.8, 1.5, 3.0)):
        kw = 0.3 + scale * np.where(day % 2 == 0, morning, evening)
        meter_id = f"synthetic-alternating-{index}"
        rows.append(pd.DataFrame({"timestamp": hours, "meter_id": meter_id, "active_power_kw": kw}))
    landing = tmp_path_factory.mktemp("alternating")
    source = landing / "alternating.csv"
    pd.concat(rows).to_csv(source, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    root = str(landing / "root")
    ingest_paths([source], PowercastConfig(root=root), run_id="ingest")
    return root


def test_one_global_network_serves_every_meter_it_wins(alternating_root: str) -> None:
    config = PowercastConfig(root=alternating_root).with_overrides(
        {
            **TINY,
            "prepare.lookback_steps": 168,
            "train.hidden_sizes": [16],
            "train.max_epochs": 4,
            "train.global_steps_per_epoch": 40,
            "train.scope": "global",
        }
    )
    result = train_fleet(config, list_meters(alternating_root), run_id="night2", progress=False)
    winners = [meter_id for meter_id, outcome in result.outcomes.items() if outcome.decision.promoted]
    assert sorted(winners) == list_meters(alternating_root), "the global model beats every baseline here"
    for meter_id in winners:
        champion = load_champion(alternating_root, meter_id)
        # The only contestants are the two global networks, and their combination (the mean of both).
        networks = champion.members or (champion,)
        assert all(network.version.endswith("_global") for network in networks)
        assert {network.version for network in networks} <= set(list_versions(alternating_root, meter_id))
        prepared = prepare_meter(config, meter_id)
        # Issue at the last validation midnight whose week of inputs is complete (no gap fallback).
        start = int(prepared.origin_starts["val"][-1])
        batch = make_forecast_batch(config, meter_id, prepared.index_utc[start + prepared.lookback_steps], run_id="fc")
        assert batch.model == champion.cell  # the contract names the cell (gru, lstm, combo); the version says global
        assert batch.model_version == champion.version
        assert np.isfinite(batch.table["yhat_kw"].to_numpy()).all()
    for meter_id in result.outcomes:  # every contestant is written under every meter, winner or not
        written = {version for version in list_versions(alternating_root, meter_id) if version.startswith("night2-")}
        assert written == {"night2-gru_global", "night2-lstm_global", "night2-combo"}


def test_a_global_network_is_chosen_on_validation_then_refit_on_it(fleet_root: str) -> None:
    """With refit on, selection scores the held-out global fit and the refit (train + validation windows) serves."""
    config = _config(fleet_root, "global").with_overrides({"train.refit_on_validation": True, "train.cells": ["gru"]})
    series = [prepare_meter(config, meter_id) for meter_id in list_meters(fleet_root)]
    [trained] = fit_global_models(config, series, run_id="refit", progress=False).values()
    assert trained.refit is not None and trained.refit.epochs_run == trained.fit.best_epoch + 1
    assert trained.refit.stopped_by == "max_epochs"
    prepared = series[0]
    challenger = global_challenger(trained, "gru_global", prepared)
    held_out_kw = forecast_module_kw(trained.fit.module, prepared, prepared.window_starts["val"])
    np.testing.assert_array_equal(challenger.forecasts_kw["val"], held_out_kw)
    windows = window_inputs(prepared, prepared.window_starts["val"][:16])
    assert not np.allclose(challenger.served_module.forecast_scaled(windows), trained.fit.module.forecast_scaled(windows))


def test_a_global_network_trains_on_two_devices_each_on_half_the_step_budget(fleet_root: str, tmp_path: Path) -> None:
    # Two CPU processes stand in for two GPUs: Lightning's DDP (spawned processes, gloo) is the
    # same path a multi-GPU machine takes with train.global_devices = its GPU count.
    config = _config(fleet_root, "global").with_overrides({"train.global_devices": 2, "train.cells": ["gru"]})
    series, left_out = prepare_fleet(config, list_meters(fleet_root))
    assert not left_out
    fit = fit_global(config, series, "gru", tmp_path / "gru_global", progress=False)
    log = pd.read_csv(tmp_path / "gru_global" / "csv" / "gru_global" / "metrics.csv")
    # 15 batches of 64 per epoch shared by 2 processes: 8 steps each (the last padded), not a full pass.
    assert log["step"].max() + 1 == 2 * 8
    assert fit.epochs_run == 2 and fit.stopped_by == "max_epochs" and np.isfinite(fit.best_val_mae)
    challenger = global_challenger(GlobalFit(fit), "gru", series[0])
    assert all(np.isfinite(forecast).all() for forecast in challenger.forecasts_kw.values())


def test_more_devices_than_the_machine_has_gpus_is_refused_before_the_fleet_is_read(
    fleet_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's GPU count is the one thing stood in for: a one-GPU machine asked for two.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    config = _config(fleet_root, "global").with_overrides({"train.global_devices": 2, "train.accelerator": "auto"})
    with pytest.raises(ConfigError, match=r"train.global_devices=2 but this machine has 1 GPU\(s\)"):
        train_fleet(config, list_meters(fleet_root), run_id="two-devices")
    assert not (Path(fleet_root) / "runs" / "two-devices").exists()


def test_a_training_process_that_fails_is_a_training_error_naming_the_model(fleet_root: str, tmp_path: Path) -> None:
    # A NaN loss inside a spawned process reaches the caller as torch's ProcessRaisedException unless
    # turned back into the TrainingError the one-process fit raises (callers keep a held-out fit on it).
    config = _config(fleet_root, "global").with_overrides({"train.global_devices": 2, "train.cells": ["gru"]})
    series, _ = prepare_fleet(config, list_meters(fleet_root))
    # Inputs and targets near float32's largest value: finite (the windows' own check passes), the loss overflows.
    poisoned = [dataclasses.replace(item, inputs=np.full_like(item.inputs, 3e38)) for item in series]
    with pytest.raises(TrainingError, match="model gru_global: a training process failed: .*training loss became"):
        fit_global(config, poisoned, "gru", tmp_path / "gru_global", progress=False)


@pytest.fixture()
def fresh_alternating_root(alternating_root: str, tmp_path: Path) -> str:
    """A copy of ``alternating_root``'s readings with no model registered yet (no champion to beat)."""
    root = tmp_path / "root"
    shutil.copytree(alternating_root, root, ignore=shutil.ignore_patterns("models", "runs", "locks"))
    return str(root)


def _alternating_config(root: str, **overrides: object) -> PowercastConfig:
    return PowercastConfig(root=root).with_overrides(
        {
            **TINY,
            "prepare.lookback_steps": 168,
            "train.hidden_sizes": [16],
            "train.max_epochs": 4,
            "train.global_steps_per_epoch": 40,
            "train.scope": "global",
            "train.cells": ["gru"],
            **overrides,
        }
    )


def _served_and_reloaded_forecasts(
    config: PowercastConfig, root: str, meter_id: str, trained: GlobalFit
) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Return (the in-memory challenger's scaled validation forecasts, the reloaded champion's, its card, and the
    shared ``network.json`` the card names), after checking that the weights are stored once, in the shared folder."""
    prepared = prepare_meter(config, meter_id)
    windows = window_inputs(prepared, prepared.window_starts["val"][:32])
    in_memory = global_challenger(trained, "gru_global", prepared).served_module.forecast_scaled(windows)
    champion = load_champion(root, meter_id)
    assert champion.version.endswith("-gru_global")
    card = read_card(root, meter_id, champion.version)
    models = Path(root) / "models"
    [shared] = (models / "_global" / champion.version).iterdir()  # one network folder for every meter it serves
    assert card["global_network"] == {"version": champion.version, "network_id": shared.name}
    assert [path.name for path in (models / meter_id / champion.version).iterdir()] == [CARD_FILE]  # no weights here
    network = json.loads((shared / GLOBAL_NETWORK_FILE).read_text())
    return in_memory, champion.module.forecast_scaled(windows), card, network


def test_a_global_network_of_its_own_width_trains_registers_and_reloads(fresh_alternating_root: str) -> None:
    alternating_root = fresh_alternating_root
    config = _alternating_config(alternating_root, **{"train.hidden_sizes": [4], "train.global_hidden_sizes": [16]})
    result = train_fleet(config, list_meters(alternating_root), run_id="wide", progress=False)
    assert result.failures == {}
    trained = result.global_fits["gru"]
    assert trained.fit.module.hparams.hidden_sizes == (16,)
    winners = [meter_id for meter_id, outcome in result.outcomes.items() if outcome.decision.promoted]
    assert sorted(winners) == list_meters(alternating_root), "the global network wins these meters (see alternating_root)"
    for meter_id in winners:
        in_memory, reloaded, card, network = _served_and_reloaded_forecasts(config, alternating_root, meter_id, trained)
        assert card["hparams"]["hidden_sizes"] == [16]  # the card records the width it was built with
        assert card["train_config"]["hidden_sizes"] == [4] and card["train_config"]["global_hidden_sizes"] == [16]
        # The fleet's meter list is kept once, in the shared folder; the meter's card records its length.
        assert "meter_ids" not in card["hparams"] and card["hparams"]["n_meters"] == len(list_meters(alternating_root))
        assert network["hparams"]["meter_ids"] == list_meters(alternating_root)
        assert network["hparams"]["hidden_sizes"] == [16] and network["weights_sha256"] == card["weights_sha256"]
        assert card["hparams"]["serving_meter"] == meter_id
        np.testing.assert_array_equal(reloaded, in_memory)
    # The same configuration's local networks keep train.hidden_sizes.
    prepared = prepare_meter(config, winners[0])
    [local], failed = local_challengers(config.with_overrides({"train.scope": "both"}), prepared, run_id="wide-local")
    assert not failed and local.fit.module.hparams.hidden_sizes == (4,)


def test_a_global_network_with_a_meter_embedding_serves_each_meter_its_own_row(fresh_alternating_root: str) -> None:
    alternating_root = fresh_alternating_root
    config = _alternating_config(alternating_root, **{"train.meter_embedding_dim": 4})
    meters = list_meters(alternating_root)
    result = train_fleet(config, meters, run_id="embedded", progress=False)
    assert result.failures == {}
    trained = result.global_fits["gru"]
    winners = [meter_id for meter_id, outcome in result.outcomes.items() if outcome.decision.promoted]
    assert sorted(winners) == list_meters(alternating_root), "the global network wins these meters (see alternating_root)"
    for meter_id in winners:
        in_memory, reloaded, card, network = _served_and_reloaded_forecasts(config, alternating_root, meter_id, trained)
        assert card["hparams"]["meter_embedding_dim"] == 4
        assert "meter_ids" not in card["hparams"] and card["hparams"]["serving_meter"] == meter_id
        # The embedding table's rows follow the shared meter list (the weights and the list are stored once).
        assert network["hparams"]["meter_ids"] == meters and "serving_meter" not in network["hparams"]
        np.testing.assert_array_equal(reloaded, in_memory)  # bound to its meter after reloading
        # The same windows read as another meter's (or an unknown meter's) forecast differently.
        prepared = prepare_meter(config, meter_id)
        windows = window_inputs(prepared, prepared.window_starts["val"][:32])
        other = next(other for other in meters if other != meter_id)
        champion = load_champion(alternating_root, meter_id).module
        assert not np.allclose(champion.for_meter(other).forecast_scaled(windows), reloaded)
        assert not np.allclose(champion.for_meter("never-seen").forecast_scaled(windows), reloaded)


def _with_validation_forecasts_kw(challenger: ChallengerFit, val_kw: np.ndarray) -> ChallengerFit:
    """Return ``challenger`` forecasting ``val_kw`` on the selection windows (made errors, to steer selection)."""
    return dataclasses.replace(challenger, forecasts_kw={**challenger.forecasts_kw, SELECTION_SET: val_kw})


def _local_and_global_gru(
    root: str, run_id: str
) -> tuple[PowercastConfig, PreparedSeries, ChallengerFit, ChallengerFit]:
    """Return one meter's local GRU and the fleet's global GRU as that meter's challengers."""
    config = _alternating_config(root, **{"train.scope": "both"})
    series = [prepare_meter(config, meter_id) for meter_id in list_meters(root)]
    trained = fit_global_models(config, series, run_id=run_id, progress=False)["gru"]
    prepared = series[0]
    [local], failed = local_challengers(config, prepared, run_id=run_id)
    assert not failed
    return config, prepared, local, global_challenger(trained, "gru", prepared)


def test_a_winning_combination_with_a_global_member_serves_their_mean(
    fresh_alternating_root: str,
) -> None:
    # The combination is the best-scoring group of challengers of any scope. Here the local GRU's validation
    # errors are made the mirror image of the global GRU's, so their mean is exact and wins.
    root = fresh_alternating_root
    config, prepared, local, global_gru = _local_and_global_gru(root, "mixed")
    actual_kw = window_targets_kw(prepared, prepared.window_starts[SELECTION_SET])
    global_kw = global_gru.forecasts_kw[SELECTION_SET]
    mirrored = _with_validation_forecasts_kw(local, np.where(np.isnan(actual_kw), global_kw, 2 * actual_kw - global_kw))
    outcome = select_and_register(config, prepared.meter_id, "mixed", prepared, [mirrored, global_gru])
    assert outcome.decision.winner == "combo"
    assert set(outcome.versions) == {"gru", "gru_global", "combo"}
    champion = load_champion(root, prepared.meter_id)
    assert champion.version == "mixed-combo"
    assert set(champion.module.member_versions) == {"mixed-gru", "mixed-gru_global"}
    assert read_card(root, prepared.meter_id, "mixed-gru_global")["training"]["scope"] == "global"
    assert read_card(root, prepared.meter_id, "mixed-gru")["training"]["scope"] == "local"
    assert read_card(root, prepared.meter_id, "mixed-combo")["training"]["scope"] == "mixed"  # of its members
    # Served: the mean of the meter's own GRU and the global GRU bound to this meter.
    windows = window_inputs(prepared, prepared.window_starts["val"][:16])
    served = [local.served_module, global_gru.served_module]
    expected = np.mean([module.forecast_scaled(windows) for module in served], axis=0)
    np.testing.assert_allclose(champion.module.forecast_scaled(windows), expected, rtol=1e-5, atol=1e-6)


def test_every_contestant_is_written_and_a_rerun_of_the_run_id_replaces_them(fresh_alternating_root: str) -> None:
    # The local GRU is made exact on validation: it wins. The global GRU and the combination lose
    # and are written too (the global one as a card naming its shared weights), so a backtest can
    # replay any of them; re-running the run id, where the combination now wins, rewrites all three.
    root = fresh_alternating_root
    config, prepared, local, global_gru = _local_and_global_gru(root, "night")
    meter_id = prepared.meter_id
    actual_kw = window_targets_kw(prepared, prepared.window_starts[SELECTION_SET])
    exact = _with_validation_forecasts_kw(local, actual_kw)
    outcome = select_and_register(config, meter_id, "night", prepared, [exact, global_gru])
    assert outcome.decision.winner == "gru"
    contestants = {row["model"] for row in outcome.leaderboard if row["window_set"] == SELECTION_SET}
    assert {"gru", "gru_global", "combo"} <= contestants
    assert set(list_versions(root, meter_id)) == {"night-gru", "night-gru_global", "night-combo"}
    assert read_card(root, meter_id, "night-gru_global")["training"]["scope"] == "global"
    assert set(load_model(root, meter_id, "night-combo").module.member_versions) == {"night-gru", "night-gru_global"}

    global_kw = global_gru.forecasts_kw[SELECTION_SET]
    mirrored = _with_validation_forecasts_kw(local, np.where(np.isnan(actual_kw), global_kw, 2 * actual_kw - global_kw))
    rerun = select_and_register(config, meter_id, "night", prepared, [mirrored, global_gru])
    assert rerun.decision.winner == "combo" and load_champion(root, meter_id).version == "night-combo"
    assert set(list_versions(root, meter_id)) == {"night-gru", "night-gru_global", "night-combo"}
    card = read_card(root, meter_id, "night-combo")
    assert card["validation_mae_kw"] == pytest.approx(0.0, abs=1e-6)  # tonight's card, not the first attempt's
