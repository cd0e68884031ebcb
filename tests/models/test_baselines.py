"""Baselines on the ingested sample: values checked by hand, only past readings used, exact windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from powercast.core.errors import DataPreparationError
from powercast.models.baselines import (
    BASELINES,
    same_hour_mean_kw,
    same_hour_median_kw,
    seasonal_naive_kw,
    steps_per_day,
)
from powercast.prepare.series import PreparedSeries


def test_hourly_series_has_24_steps_per_day(tiny_prepared: PreparedSeries) -> None:
    assert steps_per_day(tiny_prepared) == 24


def test_seasonal_naive_repeats_the_reading_one_day_earlier(tiny_prepared: PreparedSeries) -> None:
    starts = tiny_prepared.window_starts["val"][:5]
    forecast = seasonal_naive_kw(tiny_prepared, starts, lag_steps=24)
    origin = starts[2] + tiny_prepared.lookback_steps
    expected = [tiny_prepared.target_kw[origin + h - 24] for h in range(tiny_prepared.horizon_steps)]
    np.testing.assert_array_equal(forecast[2], expected)


def test_seasonal_naive_shorter_than_the_horizon_repeats_its_last_season(tiny_prepared: PreparedSeries) -> None:
    start = tiny_prepared.window_starts["val"][:1]
    forecast = seasonal_naive_kw(tiny_prepared, start, lag_steps=6)[0]
    origin = start[0] + tiny_prepared.lookback_steps
    np.testing.assert_array_equal(forecast[:6], forecast[6:12])
    np.testing.assert_array_equal(forecast[:6], tiny_prepared.target_kw[origin - 6 : origin])


def test_same_hour_median_and_mean_use_the_previous_seven_days(tiny_prepared: PreparedSeries) -> None:
    start = tiny_prepared.window_starts["test"][7:8]
    origin = start[0] + tiny_prepared.lookback_steps
    step = 5
    same_hour = tiny_prepared.target_kw[[origin + step - 24 * day for day in range(1, 8)]]
    assert same_hour_median_kw(tiny_prepared, start)[0, step] == pytest.approx(np.median(same_hour))
    assert same_hour_mean_kw(tiny_prepared, start)[0, step] == pytest.approx(np.mean(same_hour), rel=1e-6)


def test_baselines_read_nothing_at_or_after_the_origin(tiny_prepared: PreparedSeries) -> None:
    starts = tiny_prepared.window_starts["val"][::50]
    first_origin = int(starts[0]) + tiny_prepared.lookback_steps
    future_scrambled = tiny_prepared.target_kw.copy()
    future_scrambled[first_origin:] = 99.0
    scrambled = dataclasses.replace(tiny_prepared, target_kw=future_scrambled)
    for name, baseline in BASELINES.items():
        np.testing.assert_array_equal(baseline(scrambled, starts[:1]), baseline(tiny_prepared, starts[:1]), err_msg=name)


def test_every_baseline_forecasts_exactly_the_given_windows(tiny_prepared: PreparedSeries) -> None:
    starts = tiny_prepared.origin_starts["test"]
    for name, baseline in BASELINES.items():
        forecast = baseline(tiny_prepared, starts)
        assert forecast.shape == (len(starts), tiny_prepared.horizon_steps), name
        assert np.isfinite(forecast).all(), name


def test_window_without_a_week_of_history_is_rejected(tiny_prepared: PreparedSeries) -> None:
    earliest = tiny_prepared.window_starts["train"][:1]
    with pytest.raises(DataPreparationError, match="steps of history"):
        same_hour_median_kw(tiny_prepared, earliest)
