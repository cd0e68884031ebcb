"""Every kind of challenger in one night: GRU, gradient boosting, and their combination.

They are scored on the same validation windows, the lowest MAE is selected among all of them,
and each round-trips through the registry like the networks.
"""

from __future__ import annotations

import numpy as np
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import TrainingError
from powercast.models.boosting import BoostedForecaster
from powercast.models.combination import CombinedForecaster
from powercast.models.registry import load_model
from powercast.training.boosted import fit_boosted, refit_boosted
from powercast.training.pipeline import SELECTION_SET, TrainingOutcome, train_meter, window_inputs

METER = "sceaux_household"


@pytest.fixture(scope="module")
def night(tiny_config_factory, tmp_path_factory: pytest.TempPathFactory) -> tuple[PowercastConfig, TrainingOutcome]:
    config = tiny_config_factory(tmp_path_factory.mktemp("challengers")).with_overrides({"train.cells": ["gru", "hgb"]})
    return config, train_meter(config, METER, "night", progress=False)


def _validation_mae_kw(outcome: TrainingOutcome) -> dict[str, float]:
    return {
        row["model"]: row["mae_kw"]
        for row in outcome.leaderboard
        if row["window_set"] == SELECTION_SET and row["kind"] == "challenger"
    }


def test_the_leaderboard_shows_every_contestant(night: tuple[PowercastConfig, TrainingOutcome]) -> None:
    _, outcome = night
    assert set(_validation_mae_kw(outcome)) == {"gru", "hgb", "combo"}
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
    gru = load_model(config.root, METER, outcome.versions["gru"])
    hgb = load_model(config.root, METER, outcome.versions["hgb"])
    assert isinstance(combo.module, CombinedForecaster) and isinstance(hgb.module, BoostedForecaster)
    assert set(combo.module.member_versions) == {outcome.versions["gru"], outcome.versions["hgb"]}
    n_features = len(combo.feature_names)
    windows = np.random.default_rng(1).normal(size=(6, config.prepare.lookback_steps, n_features)).astype(np.float32)
    expected = (gru.predict_kw(windows) + hgb.predict_kw(windows)) / 2
    np.testing.assert_allclose(combo.predict_kw(windows), expected, rtol=1e-5, atol=1e-5)
    held_out = (gru.predict_kw(windows, held_out=True) + hgb.predict_kw(windows, held_out=True)) / 2
    np.testing.assert_allclose(combo.predict_kw(windows, held_out=True), held_out, rtol=1e-5, atol=1e-5)


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
