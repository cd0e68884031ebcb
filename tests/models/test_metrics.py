"""kW metrics: MAE, RMSE and MASE per horizon step and overall, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from powercast.core.errors import DataPreparationError
from powercast.models.metrics import (
    mae_kw,
    mae_kw_by_step,
    rmse_kw,
    rmse_kw_by_step,
    score_forecast,
    seasonal_naive_scale_kw,
)

ACTUAL = np.array([[1.0, 2.0], [3.0, 4.0]])
FORECAST = np.array([[2.0, 2.0], [3.0, 1.0]])  # errors: [[1, 0], [0, -3]]


def test_mae_and_rmse_over_all_steps() -> None:
    assert mae_kw(ACTUAL, FORECAST) == pytest.approx(1.0)
    assert rmse_kw(ACTUAL, FORECAST) == pytest.approx(np.sqrt(10 / 4))


def test_errors_per_horizon_step() -> None:
    np.testing.assert_allclose(mae_kw_by_step(ACTUAL, FORECAST), [0.5, 1.5])
    np.testing.assert_allclose(rmse_kw_by_step(ACTUAL, FORECAST), [np.sqrt(0.5), np.sqrt(4.5)])


def test_seasonal_naive_scale_is_the_in_sample_mae_of_repeating_one_season_back() -> None:
    series = np.array([1.0, 2.0, 4.0, 2.0, np.nan, 5.0])
    # pairs two steps apart: |4-1|=3, |2-2|=0, (nan), |5-2|=3 → mean 2
    assert seasonal_naive_scale_kw(series, season_steps=2) == pytest.approx(2.0)


def test_mase_divides_mae_by_the_scale_overall_and_per_step() -> None:
    scores = score_forecast(ACTUAL, FORECAST, mase_scale_kw=2.0)
    assert scores.mase == pytest.approx(0.5)
    assert scores.mase_by_step == pytest.approx((0.25, 0.75))
    assert scores.n_windows == 2


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(DataPreparationError, match="same shape"):
        mae_kw(ACTUAL, FORECAST[:, :1])


def test_nan_forecasts_are_rejected() -> None:
    with pytest.raises(DataPreparationError, match="NaN"):
        rmse_kw(ACTUAL, np.array([[np.nan, 2.0], [3.0, 1.0]]))


def test_constant_training_series_has_no_mase_scale() -> None:
    with pytest.raises(DataPreparationError, match="constant"):
        seasonal_naive_scale_kw(np.ones(10), season_steps=2)
