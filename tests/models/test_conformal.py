"""Split-conformal interval offsets per horizon step."""

from __future__ import annotations

import numpy as np
import pytest

from powercast.core.errors import ConfigError, DataPreparationError
from powercast.models.conformal import ConformalIntervals


def _residual_draws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts and actuals whose error spread grows with the horizon step (skewed, like load)."""
    yhat = rng.uniform(0.5, 2.0, size=(n, 3))
    errors = rng.gamma(shape=2.0, scale=[0.1, 0.3, 0.6], size=(n, 3)) - 0.2
    return yhat + errors, yhat


def test_intervals_reach_the_target_coverage_on_new_windows() -> None:
    rng = np.random.default_rng(0)
    calibration = ConformalIntervals(coverage=0.8).fit(*_residual_draws(rng, 2000))
    actual, forecast = _residual_draws(rng, 20000)
    assert calibration.coverage_of(actual, forecast) == pytest.approx(0.8, abs=0.02)


def test_offsets_widen_with_the_error_spread_of_each_step() -> None:
    rng = np.random.default_rng(1)
    calibration = ConformalIntervals(coverage=0.9).fit(*_residual_draws(rng, 1000))
    (widths,) = calibration.hi_kw_ - calibration.lo_kw_  # one group: [1, H]
    assert widths[0] < widths[1] < widths[2]


def test_interval_always_contains_the_forecast_even_for_one_sided_errors() -> None:
    forecast = np.zeros((50, 2))
    actual = forecast + np.linspace(0.1, 1.0, 50)[:, None]  # the model always under-forecasts
    calibration = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    assert (calibration.lo_kw_ <= 0).all() and (calibration.hi_kw_ >= 0).all()
    assert (calibration.lo_kw_ == 0).all()


def test_too_few_calibration_windows_for_the_coverage_are_rejected() -> None:
    with pytest.raises(DataPreparationError, match="too few"):
        ConformalIntervals(coverage=0.95).fit(np.ones((10, 2)), np.zeros((10, 2)))


def test_coverage_outside_zero_one_is_rejected() -> None:
    with pytest.raises(ConfigError, match="coverage"):
        ConformalIntervals(coverage=1.0).fit(np.ones((10, 2)), np.zeros((10, 2)))


def test_intervals_before_fit_are_refused() -> None:
    with pytest.raises(DataPreparationError, match="not fitted"):
        ConformalIntervals().interval_kw(np.zeros((1, 2)))


def _grouped_draws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows issued in two slots: slot 1's errors are five times as spread as slot 0's."""
    groups = rng.integers(0, 2, size=n)
    yhat = rng.uniform(0.5, 2.0, size=(n, 2))
    errors = rng.normal(0.0, np.where(groups == 1, 0.5, 0.1)[:, None], size=(n, 2))
    return yhat + errors, yhat, groups


def test_offsets_per_issue_slot_reach_the_coverage_in_every_slot() -> None:
    rng = np.random.default_rng(2)
    actual, forecast, groups = _grouped_draws(rng, 4000)
    grouped = ConformalIntervals(coverage=0.8).fit(actual, forecast, groups, n_groups=2)
    pooled = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    new_actual, new_forecast, new_groups = _grouped_draws(rng, 20000)
    for slot in (0, 1):
        rows = new_groups == slot
        slot_groups = new_groups[rows]
        assert grouped.coverage_of(new_actual[rows], new_forecast[rows], slot_groups) == pytest.approx(0.8, abs=0.02)
    # One table for both slots over-covers the calm slot and under-covers the noisy one.
    assert pooled.coverage_of(new_actual[new_groups == 0], new_forecast[new_groups == 0]) > 0.95
    assert pooled.coverage_of(new_actual[new_groups == 1], new_forecast[new_groups == 1]) < 0.7


def test_a_slot_with_too_few_windows_uses_the_pooled_offsets() -> None:
    rng = np.random.default_rng(3)
    actual, forecast, groups = _grouped_draws(rng, 400)
    groups[:] = 0
    groups[:3] = 1  # three windows cannot calibrate an 80 % interval
    calibration = ConformalIntervals(coverage=0.8).fit(actual, forecast, groups, n_groups=3)
    pooled = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    assert calibration.pooled_.tolist() == [False, True, True]  # slot 1 (too few) and slot 2 (none)
    np.testing.assert_array_equal(calibration.lo_kw_[1], pooled.lo_kw_[0])
    np.testing.assert_array_equal(calibration.hi_kw_[2], pooled.hi_kw_[0])


def test_slot_dependent_offsets_need_the_slots() -> None:
    rng = np.random.default_rng(4)
    actual, forecast, groups = _grouped_draws(rng, 200)
    calibration = ConformalIntervals(coverage=0.8).fit(actual, forecast, groups, n_groups=2)
    with pytest.raises(DataPreparationError, match="issue slot"):
        calibration.interval_kw(forecast)
    with pytest.raises(DataPreparationError, match="groups must be"):
        ConformalIntervals(coverage=0.8).fit(actual, forecast, groups + 5, n_groups=2)
