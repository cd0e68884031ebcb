"""Every kind of challenger in one night: GRU, gradient boosting, and their combination.

They are scored on the same validation windows, the lowest MAE is selected among all of them,
and each round-trips through the registry like the networks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import TrainingError
from powercast.models.combination import CombinedForecaster
from powercast.models.registry import load_model
from powercast.training.boosted import fit_boosted, refit_boosted
from powercast.training.pipeline import (
    SELECTION_SET,
    TrainingOutcome,
    best_mean_group,
    train_meter,
    window_inputs,
    window_targets_kw,
)

METER = "sceaux_household"


@pytest.fixture(scope="module")
def night(tiny_config_factory, tmp_path_factory: pytest.TempPathFactory) -> tuple[PowercastConfig, TrainingOutcome]:
    config = tiny_config_factory(tmp_path_factory.mktemp("challengers")).with_overrides({"train.cells": ["gru", "lstm", "hgb"]})
    return config, train_meter(config, METER, "night", progress=False)


def _validation_mae_kw(outcome: TrainingOutcome) -> dict[str, float]:
    return {
        row["model"]: row["mae_kw"]
        for row in outcome.leaderboard
        if row["window_set"] == SELECTION_SET and row["kind"] == "challenger"
    }


def test_the_leaderboard_shows_every_contestant(night: tuple[PowercastConfig, TrainingOutcome]) -> None:
    _, outcome = night
    assert set(_validation_mae_kw(outcome)) == {"gru", "lstm", "hgb", "combo"}
    baselines = {row["model"] for row in outcome.leaderboard if row["kind"] == "baseline"}
    assert {"same_hour_mean_7d", "seasonal_naive_24h"} <= baselines


def test_selection_picks_the_lowest_validation_mae_among_all_challengers(
    night: tuple[PowercastConfig, TrainingOutcome],
) -> None:
    _, outcome = night
    scores = _validation_mae_kw(outcome)
    assert outcome.decision.best_challenger == min(scores, key=scores.get)
    assert outcome.decision.best_challenger_val_mae_kw == pytest.approx(min(scores.values()))


def test_the_combination_is_the_mean_of_its_members(night: tuple[PowercastConfig, TrainingOutcome]) -> None:
    config, outcome = night
    combo = load_model(config.root, METER, outcome.versions["combo"])
    assert isinstance(combo.module, CombinedForecaster)
    members = [load_model(config.root, METER, version) for version in combo.module.member_versions]
    assert len(members) >= 2 and set(combo.module.member_versions) <= set(outcome.versions.values())
    n_features = len(combo.feature_names)
    windows = np.random.default_rng(1).normal(size=(6, config.prepare.lookback_steps, n_features)).astype(np.float32)
    expected = np.mean([member.predict_kw(windows) for member in members], axis=0)
    np.testing.assert_allclose(combo.predict_kw(windows), expected, rtol=1e-5, atol=1e-5)
    held_out = np.mean([member.predict_kw(windows, held_out=True) for member in members], axis=0)
    np.testing.assert_allclose(combo.predict_kw(windows, held_out=True), held_out, rtol=1e-5, atol=1e-5)


def test_the_combination_is_the_group_whose_mean_scores_best_on_validation(
    night: tuple[PowercastConfig, TrainingOutcome], tiny_prepared
) -> None:
    """Every group of two or three of the night's models, averaged from their registered held-out fits,
    scores no better on the selection windows than the group the night combined."""
    config, outcome = night
    starts = tiny_prepared.window_starts[SELECTION_SET]
    windows, actual_kw = window_inputs(tiny_prepared, starts), window_targets_kw(tiny_prepared, starts)
    held_out_kw = {
        cell: load_model(config.root, METER, outcome.versions[cell]).predict_kw(windows, held_out=True)
        for cell in ("gru", "lstm", "hgb")
    }
    group_mae_kw = {
        group: float(np.nanmean(np.abs(np.mean([held_out_kw[cell] for cell in group], axis=0) - actual_kw)))
        for size in (2, 3)
        for group in itertools.combinations(sorted(held_out_kw), size)
    }
    combined = tuple(sorted(version.rsplit("-", 1)[1] for version in load_model(
        config.root, METER, outcome.versions["combo"]).module.member_versions))
    assert group_mae_kw[combined] == pytest.approx(min(group_mae_kw.values()), abs=1e-5), group_mae_kw
    assert _validation_mae_kw(outcome)["combo"] == pytest.approx(group_mae_kw[combined], abs=1e-4)
    # The run report names the group, in the card's order.
    card_order = [version.rsplit("-", 1)[1] for version in load_model(
        config.root, METER, outcome.versions["combo"]).module.member_versions]
    combo_rows = [row for row in outcome.leaderboard if row["model"] == "combo"]
    assert combo_rows and all(row["members"] == card_order for row in combo_rows)
    assert all("members" not in row for row in outcome.leaderboard if row["model"] != "combo")


def _forecasts_erring(actual_kw: np.ndarray, errors_kw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: actual_kw + error_kw for name, error_kw in errors_kw.items()}


def test_the_best_mean_group_prefers_a_model_that_errs_differently_to_the_second_best() -> None:
    """Two networks that err alike gain nothing from each other; the third, the worst alone, errs the other
    way, so a mean with it beats the mean of the two best (gru and lstm: 0.305 kW off)."""
    actual_kw = np.ones((50, 4))
    errors_kw = {"gru": actual_kw * 0.30, "lstm": actual_kw * 0.31, "hgb": actual_kw * -0.32}
    assert best_mean_group(_forecasts_erring(actual_kw, errors_kw), actual_kw) == ["lstm", "hgb"]  # 0.005 kW off


def test_the_best_mean_group_may_hold_every_model() -> None:
    actual_kw = np.zeros((30, 2))
    swing = np.tile([1.0, -1.0, 0.0], 10)[:, None] * np.ones((1, 2))
    forecasts = {"a": swing, "b": np.roll(swing, 1, axis=0), "c": np.roll(swing, 2, axis=0)}  # their mean is exact
    assert best_mean_group(forecasts, actual_kw) == ["a", "b", "c"]


def test_the_best_mean_group_breaks_ties_towards_fewer_models_then_by_rank_and_name() -> None:
    actual_kw = np.zeros((10, 3))
    forecasts = {"worse": np.full((10, 3), 0.2), "best": np.full((10, 3), 0.1), "other": np.full((10, 3), -0.1)}
    assert best_mean_group(forecasts, actual_kw) == ["best", "other"]  # exact; no other group is
    tied = {"b": np.full((10, 3), 0.1), "a": np.full((10, 3), -0.1), "c": np.full((10, 3), 0.1)}
    # a+b and a+c are both exact, and b and c score alike alone: the names decide.
    assert best_mean_group(tied, actual_kw) == ["a", "b"]


def test_the_best_mean_group_scores_only_known_actuals() -> None:
    """x and y err by +-0.25 where the actual is known (their mean is exact) and wildly where it is not; z errs
    by 0.125. Were the unknown step scored, every group would score NaN and the first (z and x) would be taken."""
    actual_kw = np.array([[1.0, np.nan], [2.0, 3.0]])
    forecasts = {  # z first: were every score NaN, the order given would decide
        "z": np.array([[1.125, 1.0], [2.125, 3.125]]),
        "x": np.array([[1.25, 100.0], [2.25, 3.25]]),
        "y": np.array([[0.75, -50.0], [1.75, 2.75]]),
    }
    assert best_mean_group(forecasts, actual_kw) == ["x", "y"]


def test_a_model_that_did_not_forecast_every_scored_step_is_in_no_group() -> None:
    actual_kw = np.zeros((4, 2))
    diverged = np.full((4, 2), -0.1)
    diverged[2, 1] = np.nan  # its mean with "up" would be exact elsewhere
    forecasts = {"up": np.full((4, 2), 0.1), "diverged": diverged, "far": np.full((4, 2), -0.3)}
    assert best_mean_group(forecasts, actual_kw) == ["up", "far"]
    assert best_mean_group({"up": forecasts["up"], "diverged": diverged}, actual_kw) == []


def test_the_boosted_model_round_trips_through_the_registry(
    night: tuple[PowercastConfig, TrainingOutcome], tiny_prepared
) -> None:
    config, outcome = night
    loaded = load_model(config.root, METER, outcome.versions["hgb"])
    assert loaded.metadata["training"]["stopped_by"] in {"early_stopping", "max_epochs"}
    windows = window_inputs(tiny_prepared, tiny_prepared.window_starts["test"][:8])
    row = next(r for r in outcome.leaderboard if r["model"] == "hgb" and r["window_set"] == "test")
    served_kw = loaded.predict_kw(windows)
    assert np.isfinite(served_kw).all() and served_kw.shape == (8, tiny_prepared.horizon_steps)
    assert row["mae_kw"] > 0



def test_each_card_records_its_fit_and_refit_seconds(night: tuple[PowercastConfig, TrainingOutcome]) -> None:
    config, outcome = night
    for cell in ("gru", "hgb"):
        training = load_model(config.root, METER, outcome.versions[cell]).metadata["training"]
        assert training["fit_s"] > 0 and training["refit_s"] > 0, training
        assert training["elapsed_s"] == pytest.approx(training["fit_s"] + training["refit_s"])


def test_an_hgb_refit_gets_only_what_the_held_out_fit_left_of_the_budget(tiny_config_factory, tmp_path, tiny_prepared) -> None:
    """train.max_time_s bounds hgb like the networks: with nothing left, the refit is refused (the pipeline then
    serves the held-out fit, as for a network whose refit runs out of time)."""
    config = tiny_config_factory(tmp_path).with_overrides({"train.cells": ["hgb"]})
    held_out = fit_boosted(tiny_prepared, config.train)
    spent = config.train.model_copy(update={"max_time_s": held_out.elapsed_s})
    with pytest.raises(TrainingError, match="hgb: 0 of 24 horizon steps fit when its time budget of 0 s ran out"):
        refit_boosted(tiny_prepared, spent, held_out)
    refit = refit_boosted(tiny_prepared, config.train, held_out)  # the default budget leaves plenty
    assert refit.module.rounds == held_out.module.rounds
