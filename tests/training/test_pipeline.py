"""train_meter end to end on the ingested sample: leaderboard, registry, selection against a champion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import TrainingError
from powercast.models.baselines import BASELINES
from powercast.models.conformal import ConformalIntervals
from powercast.models.registry import (
    champion_version,
    list_versions,
    load_champion,
    load_model,
    read_card,
    read_history,
)
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.training.pipeline import (
    LEADERBOARD_SCHEMA,
    ChallengerFit,
    TrainingOutcome,
    fit_challenger,
    interval_slots,
    scoring_windows,
    select_and_register,
    train_meter,
    window_inputs,
    window_lookback_kw,
    window_targets_kw,
)

METER = "sceaux_household"

# A champion worth keeping: long enough training to beat the baselines on the sample.
TRAINED = {"train.hidden_sizes": [32], "train.max_epochs": 6, "train.learning_rate": 0.01}
# A genuinely crippled challenger: the untrained network after one tiny step.
CRIPPLED = {"train.max_epochs": 1, "train.learning_rate": 1e-7, "train.scheduler": "none", "train.max_time_s": 0.5}


@pytest.fixture(scope="module")
def first_night_config(tmp_path_factory: pytest.TempPathFactory, tiny_config_factory) -> PowercastConfig:
    return tiny_config_factory(tmp_path_factory.mktemp("first_night"))


@pytest.fixture(scope="module")
def first_night(first_night_config: PowercastConfig) -> TrainingOutcome:
    """One default tiny night on a fresh root, shared by the read-only checks below."""
    return train_meter(first_night_config, METER, "night1", progress=False)


@pytest.fixture(scope="module")
def separate_fits(
    tmp_path_factory: pytest.TempPathFactory, tiny_config_factory
) -> tuple[PowercastConfig, PreparedSeries, list[ChallengerFit]]:
    """The first night's cells trained one call each, as the flow's tasks do, on a fresh root."""
    config = tiny_config_factory(tmp_path_factory.mktemp("separate_fits"))
    prepared = prepare_meter(config, METER)
    return config, prepared, [fit_challenger(config, prepared, cell, "night1", False) for cell in config.train.cells]


def test_cells_fitted_one_by_one_then_selected_give_the_one_call_outcome(
    separate_fits: tuple[PowercastConfig, PreparedSeries, list[ChallengerFit]], first_night: TrainingOutcome
) -> None:
    config, prepared, fits = separate_fits
    outcome = select_and_register(config, METER, "night1", prepared, fits)
    assert outcome.decision.reason == first_night.decision.reason
    columns = ["model", "window_set", "n_windows", "mae_kw", "rmse_kw", "promoted"]
    assert outcome.leaderboard_frame()[columns].equals(first_night.leaderboard_frame()[columns])
    assert outcome.devices == {**{fit.cell: fit.device for fit in fits}, "combo": "cpu"}
    assert list_versions(config.root, METER) == ["night1-combo", "night1-gru", "night1-lstm"]


def test_select_and_register_rejects_a_cell_given_twice(
    separate_fits: tuple[PowercastConfig, PreparedSeries, list[ChallengerFit]], tmp_path: Path, tiny_config_factory
) -> None:
    _, prepared, fits = separate_fits
    config = tiny_config_factory(tmp_path)
    with pytest.raises(TrainingError, match="more than once"):
        select_and_register(config, METER, "night1", prepared, [fits[0], fits[0]])
    assert list_versions(config.root, METER) == []


def test_leaderboard_scores_challengers_and_baselines_on_every_window_set(first_night: TrainingOutcome) -> None:
    frame = first_night.leaderboard_frame()
    assert set(frame["model"]) == {"gru", "lstm", "combo", *BASELINES}
    assert set(frame["window_set"]) == {"val", "val_day_ahead", "test", "test_day_ahead"}
    per_set = frame.groupby("window_set")["n_windows"].nunique()
    assert (per_set == 1).all()  # every model is scored on the same windows within a set
    assert frame["mae_kw"].gt(0).all() and (frame["rmse_kw"] >= frame["mae_kw"]).all()


def test_run_folder_holds_leaderboard_json_parquet_and_curves(first_night: TrainingOutcome) -> None:
    run_dir = Path(first_night.run_dir)
    table = pq.read_table(run_dir / "leaderboard.parquet")
    assert table.schema.remove_metadata().equals(LEADERBOARD_SCHEMA)
    payload = json.loads((run_dir / "leaderboard.json").read_text())
    assert payload["decision"]["reason"] == first_night.decision.reason
    assert len(payload["rows"]) == table.num_rows
    assert (run_dir / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_every_challenger_is_registered_and_the_decision_is_in_the_history(
    first_night: TrainingOutcome, first_night_config: PowercastConfig
) -> None:
    root = first_night_config.root
    assert list_versions(root, METER) == ["night1-combo", "night1-gru", "night1-lstm"]
    history = read_history(root, METER)
    assert len(history) == 1 and history[0]["run_id"] == "night1"
    assert history[0]["reason"] == first_night.decision.reason
    assert history[0]["champion_after"] == champion_version(root, METER)
    assert first_night.devices == {"gru": "cpu", "lstm": "cpu", "combo": "cpu"}
    assert set(first_night.elapsed_s) == {"gru", "lstm", "combo"}


def test_served_model_is_refit_and_validation_scores_come_from_the_held_out_fit(
    first_night: TrainingOutcome, first_night_config: PowercastConfig
) -> None:
    prepared = prepare_meter(first_night_config, METER)
    loaded = load_model(first_night_config.root, METER, "night1-lstm")
    assert loaded.holdout_module is not None
    assert loaded.training_range_utc == (prepared.split_bounds_utc["train"][0], prepared.split_bounds_utc["val"][1])
    card = read_card(first_night_config.root, METER, "night1-lstm")
    assert card["training"]["refit_epochs"] == card["training"]["best_epoch"] + 1
    assert card["training"]["ensemble_members"] == first_night_config.train.ensemble_members
    assert np.asarray(card["interval"]["hi_ratio"]).shape == (24, prepared.horizon_steps)  # local issue hour × step
    mae_kw = first_night.leaderboard_frame().query("model == 'lstm'").set_index("window_set")["mae_kw"]
    windows = scoring_windows(prepared)
    for window_set, held_out in (("val", True), ("val_day_ahead", True), ("test", False), ("test_day_ahead", False)):
        starts = windows[window_set]
        forecast_kw = loaded.predict_kw(window_inputs(prepared, starts), held_out=held_out)
        expected = float(np.abs(forecast_kw - window_targets_kw(prepared, starts)).mean())
        assert mae_kw[window_set] == pytest.approx(expected, rel=1e-5), window_set


def test_without_refit_the_held_out_fit_is_served(tiny_config: PowercastConfig) -> None:
    config = tiny_config.with_overrides({"train.cells": ["gru"], "train.refit_on_validation": False})
    train_meter(config, METER, "night1", progress=False)
    loaded = load_model(config.root, METER, "night1-gru")
    prepared = prepare_meter(config, METER)
    assert loaded.holdout_module is None
    assert loaded.training_range_utc == prepared.split_bounds_utc["train"]
    card = read_card(config.root, METER, "night1-gru")
    assert card["training"]["refit_epochs"] is None
    assert card["training"]["refit_skipped"] == "train.refit_on_validation is off"


def test_a_held_out_fit_cut_by_the_time_budget_is_served_without_refit(tiny_config: PowercastConfig) -> None:
    budget = {"train.max_epochs": 1000, "train.patience_epochs": 1000, "train.max_time_s": 2.0}
    prepared = prepare_meter(tiny_config, METER)
    challenger = fit_challenger(tiny_config.with_overrides(budget), prepared, "gru", "night1", False)
    assert challenger.fit.stopped_by == "max_time"
    assert challenger.refit is None and "max_time_s=2" in challenger.refit_skipped
    assert challenger.served_module is challenger.fit.module


def test_champion_stays_when_a_crippled_challenger_is_worse(tiny_config: PowercastConfig) -> None:
    trained = tiny_config.with_overrides({**TRAINED, "train.cells": ["gru"]})
    first = train_meter(trained, METER, "night1", progress=False)
    assert first.decision.promoted, first.decision.reason
    crippled = tiny_config.with_overrides({**CRIPPLED, "train.cells": ["lstm"]})

    second = train_meter(crippled, METER, "night2", progress=False)

    assert not second.decision.promoted
    assert champion_version(tiny_config.root, METER) == "night1-gru" == second.champion_version
    assert second.decision.champion_val_mae_kw < second.decision.best_challenger_val_mae_kw
    champion_rows = second.leaderboard_frame().query("model == 'champion' and window_set == 'val'")
    assert champion_rows["version"].tolist() == ["night1-gru"]
    history = read_history(tiny_config.root, METER)
    assert [entry["champion_after"] for entry in history] == ["night1-gru", "night1-gru"]
    assert history[-1]["promoted"] is False and history[-1]["reason"] == second.decision.reason


def test_champion_is_rescored_on_todays_windows(tiny_config: PowercastConfig) -> None:
    trained = tiny_config.with_overrides({**TRAINED, "train.cells": ["gru"]})
    first = train_meter(trained, METER, "night1", progress=False)
    second = train_meter(tiny_config.with_overrides({**CRIPPLED, "train.cells": ["gru"]}), METER, "night2", progress=False)
    first_val = first.leaderboard_frame().query("model == 'gru' and window_set == 'val'")["mae_kw"].item()
    assert second.decision.champion_val_mae_kw == pytest.approx(first_val, rel=1e-5)


def test_nan_loss_leaves_the_champion_and_registry_unchanged(tiny_config: PowercastConfig) -> None:
    trained = tiny_config.with_overrides({**TRAINED, "train.cells": ["gru"]})
    train_meter(trained, METER, "night1", progress=False)
    exploding = tiny_config.with_overrides({"train.learning_rate": 1e36, "train.scheduler": "none"})
    with pytest.raises(TrainingError, match="loss became"):
        train_meter(exploding, METER, "night2", progress=False)
    assert champion_version(tiny_config.root, METER) == "night1-gru"
    assert list_versions(tiny_config.root, METER) == ["night1-gru"]
    assert [entry["run_id"] for entry in read_history(tiny_config.root, METER)] == ["night1"]


def test_rerunning_a_run_id_replaces_its_versions_and_history_line(tiny_config: PowercastConfig) -> None:
    config = tiny_config.with_overrides({"train.cells": ["gru"]})
    train_meter(config, METER, "night1", progress=False)
    train_meter(config, METER, "night1", progress=False)
    assert list_versions(tiny_config.root, METER) == ["night1-gru"]
    assert len(read_history(tiny_config.root, METER)) == 1


def test_a_given_prepared_series_is_used_as_is(tiny_config: PowercastConfig) -> None:
    # A series cut at 1 November: the store holds readings up to 26 November, so preparing the
    # meter from the store (what train_meter does without `prepared`) gives other windows.
    cut_utc = pd.Timestamp("2010-11-01T00:00Z")
    given = prepare_meter(tiny_config, METER, end_utc=cut_utc.to_pydatetime())
    from_store = prepare_meter(tiny_config, METER)
    assert from_store.index_utc[-1] > given.index_utc[-1] + pd.Timedelta(days=20)

    outcome = train_meter(tiny_config.with_overrides({"train.cells": ["gru"]}), METER, "night1", given, False)

    card = read_card(tiny_config.root, METER, "night1-gru")
    assert pd.Timestamp(card["data_range_utc"][1]) == cut_utc  # the given series' end, not the store's
    assert [pd.Timestamp(t) for t in card["training_range_utc"]] == [
        given.split_bounds_utc["train"][0],
        given.split_bounds_utc["val"][1],
    ]
    # the baselines were scored on the given series' validation windows
    board = outcome.leaderboard_frame().query("window_set == 'val'").set_index("model")
    starts = given.window_starts["val"]
    naive_kw = BASELINES["seasonal_naive_24h"](given, starts)
    expected_mae = float(np.abs(naive_kw - window_targets_kw(given, starts)).mean())
    assert board.loc["seasonal_naive_24h", "mae_kw"] == pytest.approx(expected_mae, rel=1e-5)
    assert outcome.decision.n_val_windows == len(starts)


def test_promoted_champion_loads_and_forecasts_the_test_windows(tiny_config: PowercastConfig) -> None:
    trained = tiny_config.with_overrides({**TRAINED, "train.cells": ["gru"]})
    train_meter(trained, METER, "night1", progress=False)
    champion = load_champion(tiny_config.root, METER)
    prepared = prepare_meter(trained, METER, scaler=champion.scaler)
    starts = prepared.origin_starts["test"]
    forecast_kw = champion.predict_kw(window_inputs(prepared, starts))
    assert forecast_kw.shape == (len(starts), prepared.horizon_steps) and np.isfinite(forecast_kw).all()


def test_champion_with_an_older_scaler_is_rescored_with_its_own_scaler_on_todays_windows(
    tiny_config: PowercastConfig,
) -> None:
    trained = tiny_config.with_overrides({**TRAINED, "train.cells": ["gru"]})
    train_meter(trained, METER, "night1", progress=False)
    later = {"prepare.split": {"mode": "trailing", "val_days": 14, "test_days": 14}, "train.cells": ["lstm"]}
    tonight = tiny_config.with_overrides({**CRIPPLED, **later})

    second = train_meter(tonight, METER, "night2", progress=False)

    champion = load_champion(tiny_config.root, METER)
    own = prepare_meter(tonight, METER, scaler=champion.scaler)
    today = prepare_meter(tonight, METER)
    assert champion.scaler.to_dict() != today.scaler.to_dict()  # the training split moved
    starts = own.window_starts["val"]
    assert champion.holdout_module is not None  # served refit: selection scores the held-out fit
    expected = np.abs(champion.predict_kw(window_inputs(own, starts), held_out=True) - window_targets_kw(own, starts)).mean()
    assert second.decision.n_val_windows == len(today.window_starts["val"])
    assert second.decision.champion_val_mae_kw == pytest.approx(float(expected), rel=1e-5)


def test_interval_ratios_come_from_the_held_out_fit_relative_to_each_window_input_load(
    first_night: TrainingOutcome, first_night_config: PowercastConfig
) -> None:
    """The card's offsets are the conformal quantiles of (actual - held-out forecast) / input load on validation."""
    prepared = prepare_meter(first_night_config, METER)
    loaded = load_model(first_night_config.root, METER, "night1-lstm")
    starts = scoring_windows(prepared)["val"]
    held_out_kw = loaded.predict_kw(window_inputs(prepared, starts), held_out=True)
    slots, n_slots = interval_slots(prepared, first_night_config, {"val": starts})
    expected = ConformalIntervals(0.8, "lookback_mean").fit(
        window_targets_kw(prepared, starts), held_out_kw, slots["val"], n_slots, window_lookback_kw(prepared, starts)
    )
    assert (loaded.interval_scale, first_night_config.forecast.interval_scale) == ("lookback_mean", "lookback_mean")
    np.testing.assert_allclose(loaded.interval_hi, expected.hi_, atol=1e-5)
    np.testing.assert_allclose(loaded.interval_lo, expected.lo_, atol=1e-5)
    assert loaded.interval_scale_floor_kw == pytest.approx(expected.scale_floor_kw_)
    # The scale is the mean of the load the window read: the target's own values on complete windows.
    rows = starts[:, None] + np.arange(prepared.lookback_steps)
    np.testing.assert_allclose(window_lookback_kw(prepared, starts), prepared.target_kw[rows], atol=1e-5)

