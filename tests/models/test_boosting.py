"""The gradient-boosting challenger's model: features read from the windows, gaps, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from powercast.core.errors import DataPreparationError, RegistryError, TrainingError
from powercast.models.boosting import BoostedForecaster, boosting_params, horizon_features
from powercast.prepare.features import CALENDAR_FEATURES

FEATURES = ("active_power_kw", *CALENDAR_FEATURES)
LOOKBACK, HORIZON, PER_DAY = 168, 24, 24


def _windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, LOOKBACK, len(FEATURES))).astype(np.float32)


def _fitted(n: int = 300) -> tuple[BoostedForecaster, np.ndarray]:
    params = boosting_params(FEATURES, LOOKBACK, HORIZON, PER_DAY, seed=7)
    params = type(params)(**{**params.to_dict(), "calendar_columns": params.calendar_columns, "max_iter": 15})
    windows = _windows(n)
    # A target the features can explain: yesterday's value at the same hour, plus noise.
    targets = windows[:, LOOKBACK - PER_DAY : LOOKBACK - PER_DAY + HORIZON, 0] + 0.01
    return BoostedForecaster(params).fit(windows, targets), windows


def test_features_read_the_same_hour_of_earlier_days_for_each_step() -> None:
    params = boosting_params(FEATURES, LOOKBACK, HORIZON, PER_DAY, seed=0)
    windows = _windows(2)
    step = 5
    features = horizon_features(params, windows, step)
    same_hour = features[:, params.lag_steps : params.lag_steps + params.same_hour_days]
    expected = windows[:, [LOOKBACK + step - PER_DAY * k for k in range(1, 8)], 0]
    np.testing.assert_array_equal(same_hour, expected)
    # Calendar of the target step: the same hour one week earlier (the first window row here).
    calendar = features[:, -len(CALENDAR_FEATURES) :]
    np.testing.assert_array_equal(calendar, windows[:, LOOKBACK + step - 7 * PER_DAY, 1:])


def test_a_window_with_a_long_gap_still_gets_a_finite_forecast() -> None:
    model, windows = _fitted()
    gappy = windows[:3].copy()
    gappy[:, 40:140, 0] = np.nan  # 100 missing hours inside the input week
    forecast = model.forecast_scaled(gappy)
    assert forecast.shape == (3, HORIZON) and np.isfinite(forecast).all()


def test_bytes_round_trip_gives_the_same_forecasts_and_damage_is_refused() -> None:
    model, windows = _fitted()
    again = BoostedForecaster.from_bytes(model.params, model.to_bytes(), "weights.pkl")
    np.testing.assert_array_equal(again.forecast_scaled(windows[:5]), model.forecast_scaled(windows[:5]))
    with pytest.raises(RegistryError, match="weights.pkl cannot be unpickled"):
        BoostedForecaster.from_bytes(model.params, model.to_bytes()[:100], "weights.pkl")


def test_windows_of_another_shape_are_refused() -> None:
    model, windows = _fitted()
    with pytest.raises(DataPreparationError, match=r"\[N, 168, 5\]"):
        model.forecast_scaled(windows[:, :100])


def test_steps_more_than_a_day_ahead_read_their_own_time_of_day() -> None:
    """Horizons up to a week: step 24 + 5 reads 5 steps past midnight on each earlier day, all inside the window."""
    params = boosting_params(FEATURES, LOOKBACK, 168, PER_DAY, seed=0)
    windows = _windows(3)
    for step in (0, 23, 29, 100, 167):
        assert np.isfinite(horizon_features(params, windows, step)).all(), step
    same_hour = horizon_features(params, windows, 29)[:, params.lag_steps : params.lag_steps + params.same_hour_days]
    np.testing.assert_array_equal(same_hour, windows[:, [LOOKBACK + 5 - PER_DAY * k for k in range(1, 8)], 0])


def test_a_fit_that_runs_out_of_its_time_budget_is_refused_not_cut_short() -> None:
    params = boosting_params(FEATURES, LOOKBACK, HORIZON, PER_DAY, seed=7)
    windows = _windows(100)
    with pytest.raises(TrainingError, match=rf"hgb: 0 of {HORIZON} horizon steps fit when its time budget of 0 s ran out"):
        BoostedForecaster(params).fit(windows, windows[:, -HORIZON:, 0], time_budget_s=0.0)


def test_known_ahead_inputs_are_read_for_each_steps_own_time_and_old_cards_read_as_trained() -> None:
    features = ("active_power_kw", *CALENDAR_FEATURES, "holiday_ahead", "profile_ahead")
    params = boosting_params(features, LOOKBACK, HORIZON, PER_DAY, seed=0)
    assert params.ahead_columns == (5, 6)
    windows = np.random.default_rng(3).normal(size=(2, LOOKBACK, len(features))).astype(np.float32)
    for step in (0, 7, HORIZON - 1):
        # Row t of a known-ahead column describes t + horizon: step h's own value is at row L - H + h.
        ahead = horizon_features(params, windows, step)[:, -2:]
        np.testing.assert_array_equal(ahead, windows[:, LOOKBACK - HORIZON + step, 5:])
    changed = windows.copy()
    changed[:, LOOKBACK - HORIZON + 7, 6] += 1.0  # the profile at step 7's time moves step 7's features only
    moved = [not np.array_equal(horizon_features(params, windows, s), horizon_features(params, changed, s)) for s in range(HORIZON)]
    assert moved == [s == 7 for s in range(HORIZON)]
    # A card written before (no ahead_columns): every step reads the last row, as its trees were trained on.
    state = params.to_dict()
    del state["ahead_columns"]
    old = type(params).from_dict(state)
    assert old.ahead_columns == ()
    np.testing.assert_array_equal(horizon_features(old, windows, 3)[:, -2:], windows[:, -1, 5:])
