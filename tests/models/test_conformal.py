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
    (widths,) = calibration.hi_ - calibration.lo_  # one group: [1, H]
    assert widths[0] < widths[1] < widths[2]


def test_interval_always_contains_the_forecast_even_for_one_sided_errors() -> None:
    forecast = np.zeros((50, 2))
    actual = forecast + np.linspace(0.1, 1.0, 50)[:, None]  # the model always under-forecasts
    calibration = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    assert (calibration.lo_ <= 0).all() and (calibration.hi_ >= 0).all()
    assert (calibration.lo_ == 0).all()


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
    np.testing.assert_array_equal(calibration.lo_[1], pooled.lo_[0])
    np.testing.assert_array_equal(calibration.hi_[2], pooled.hi_[0])


def test_slot_dependent_offsets_need_the_slots() -> None:
    rng = np.random.default_rng(4)
    actual, forecast, groups = _grouped_draws(rng, 200)
    calibration = ConformalIntervals(coverage=0.8).fit(actual, forecast, groups, n_groups=2)
    with pytest.raises(DataPreparationError, match="issue slot"):
        calibration.interval_kw(forecast)
    with pytest.raises(DataPreparationError, match="groups must be"):
        ConformalIntervals(coverage=0.8).fit(actual, forecast, groups + 5, n_groups=2)


def _level_draws(rng: np.random.Generator, n: int, level_kw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of a load around ``level_kw`` whose forecast errors are proportional to that level.

    Returns actuals and forecasts ``[n, 3]`` and the input load ``[n, 24]`` each window read.
    """
    levels_kw = level_kw * rng.uniform(0.7, 1.3, size=n)  # [n]
    lookback_kw = levels_kw[:, None] * rng.uniform(0.5, 1.5, size=(n, 24))  # [n, 24], mean ~ the level
    yhat = levels_kw[:, None] * rng.uniform(0.8, 1.2, size=(n, 3))
    errors = levels_kw[:, None] * (rng.gamma(shape=2.0, scale=[0.1, 0.2, 0.3], size=(n, 3)) - 0.2)
    return yhat + errors, yhat, lookback_kw


def test_scaled_offsets_keep_the_coverage_when_the_load_level_shifts() -> None:
    """Calibrated on a 1 kW season, served in a 2 kW one (a winter after a summer validation)."""
    rng = np.random.default_rng(5)
    actual, forecast, lookback_kw = _level_draws(rng, 3000, level_kw=1.0)
    scaled = ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast, lookback_kw=lookback_kw)
    additive = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    winter_actual, winter_forecast, winter_lookback_kw = _level_draws(rng, 20000, level_kw=2.0)
    assert scaled.coverage_of(winter_actual, winter_forecast, lookback_kw=winter_lookback_kw) == pytest.approx(
        0.8, abs=0.02
    )
    assert additive.coverage_of(winter_actual, winter_forecast) < 0.65  # kW offsets of the calm season: too narrow
    assert scaled.scale_floor_kw_ == pytest.approx(0.1 * np.median(lookback_kw.mean(axis=1)))


def test_scaled_intervals_contain_the_forecast_and_stay_finite_at_zero_load() -> None:
    rng = np.random.default_rng(6)
    actual, forecast, lookback_kw = _level_draws(rng, 500, level_kw=1.0)
    scaled = ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast, lookback_kw=lookback_kw)
    idle_kw = np.zeros((4, 24))  # a week with no load: the floor keeps the interval open
    lower, upper = scaled.interval_kw(forecast[:4], lookback_kw=idle_kw)
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    assert (lower <= forecast[:4]).all() and (forecast[:4] <= upper).all()
    expected_kw = np.repeat(scaled.hi_ * scaled.scale_floor_kw_, 4, axis=0)  # [4, H]
    np.testing.assert_allclose(upper - forecast[:4], expected_kw, rtol=1e-4)
    assert ((upper - lower) > 0).all()


def test_unscaled_offsets_are_the_kw_quantiles_as_before() -> None:
    """scale="none" ignores any input load: the offsets are the residuals' own quantiles in kW."""
    rng = np.random.default_rng(7)
    actual, forecast, lookback_kw = _level_draws(rng, 400, level_kw=1.0)
    unscaled = ConformalIntervals(coverage=0.8).fit(actual, forecast, lookback_kw=lookback_kw)
    residuals = np.sort(actual - forecast, axis=0)
    rank_hi = int(np.ceil(401 * 0.9))  # the finite-sample rank of split conformal
    np.testing.assert_allclose(unscaled.hi_[0], residuals[rank_hi - 1], rtol=1e-6)
    np.testing.assert_allclose(unscaled.lo_[0], residuals[400 - rank_hi], rtol=1e-6)
    assert unscaled.scale_floor_kw_ == 0.0
    lower, upper = unscaled.interval_kw(forecast)
    np.testing.assert_allclose(upper - forecast, np.repeat(unscaled.hi_, len(forecast), axis=0), atol=1e-6)


def test_scaled_offsets_refuse_a_missing_or_broken_input_load() -> None:
    rng = np.random.default_rng(8)
    actual, forecast, lookback_kw = _level_draws(rng, 100, level_kw=1.0)
    with pytest.raises(DataPreparationError, match="lookback_kw"):
        ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast)
    with pytest.raises(DataPreparationError, match=r"lookback_kw must be \[100, L\]"):
        ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast, lookback_kw=lookback_kw[:5])
    broken = lookback_kw.copy()
    broken[3, 4] = np.nan
    with pytest.raises(DataPreparationError, match="NaN"):
        ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast, lookback_kw=broken)
    with pytest.raises(ConfigError, match="interval scale"):
        ConformalIntervals(coverage=0.8, scale="median").fit(actual, forecast)  # type: ignore[arg-type]


def test_a_mostly_idle_meter_keeps_kw_offsets_instead_of_failing() -> None:
    """More than half the calibration windows read a week of zero load (an idle sub-meter): nothing to scale by."""
    rng = np.random.default_rng(9)
    actual, forecast, lookback_kw = _level_draws(rng, 200, level_kw=1.0)
    lookback_kw[:110] = 0.0
    scaled = ConformalIntervals(coverage=0.8, scale="lookback_mean").fit(actual, forecast, lookback_kw=lookback_kw)
    unscaled = ConformalIntervals(coverage=0.8).fit(actual, forecast)
    assert scaled.scale == "none" and scaled.scale_floor_kw_ == 0.0
    np.testing.assert_allclose(scaled.hi_, unscaled.hi_)
    np.testing.assert_allclose(scaled.lo_, unscaled.lo_)
    lower, upper = scaled.interval_kw(forecast[:3], lookback_kw=lookback_kw[:3])
    assert (lower <= forecast[:3]).all() and (forecast[:3] <= upper).all()
