"""Selection: the best challenger is promoted only if it beats the best baseline and the champion."""

from __future__ import annotations

import pytest

from powercast.core.errors import TrainingError
from powercast.training.selection import select_winner

BASELINES = {"seasonal_naive_24h": 0.56, "same_hour_median_7d": 0.45}


def test_best_challenger_beating_baselines_and_champion_is_promoted() -> None:
    decision = select_winner({"gru": 0.41, "lstm": 0.43}, BASELINES, 0.44, "night1-lstm", n_val_windows=100)
    assert (decision.promoted, decision.winner) == (True, "gru")
    assert "night1-lstm" in decision.reason


def test_champion_stays_when_the_best_challenger_is_worse_than_it() -> None:
    decision = select_winner({"gru": 0.43, "lstm": 0.44}, BASELINES, 0.42, "night1-gru", n_val_windows=100)
    assert (decision.promoted, decision.winner) == (False, None)
    assert "champion night1-gru" in decision.reason and "stays" in decision.reason


def test_challenger_not_beating_the_best_baseline_is_not_promoted_even_without_champion() -> None:
    decision = select_winner({"gru": 0.46}, BASELINES, None, None, n_val_windows=100)
    assert not decision.promoted
    assert "same_hour_median_7d" in decision.reason and decision.best_baseline == "same_hour_median_7d"


def test_first_night_promotes_a_challenger_that_beats_the_baselines() -> None:
    decision = select_winner({"lstm": 0.40}, BASELINES, None, None, n_val_windows=10)
    assert decision.promoted and decision.winner == "lstm" and decision.champion_version is None


def test_a_tie_with_the_champion_keeps_the_champion() -> None:
    decision = select_winner({"gru": 0.42}, BASELINES, 0.42, "night1-gru", n_val_windows=10)
    assert not decision.promoted


def test_champion_score_without_its_version_is_rejected() -> None:
    with pytest.raises(TrainingError, match="together"):
        select_winner({"gru": 0.4}, BASELINES, 0.42, None, n_val_windows=10)
