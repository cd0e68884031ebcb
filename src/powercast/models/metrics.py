"""Forecast accuracy in kW on the original scale: MAE, RMSE and MASE, per horizon step and overall.

MASE follows Hyndman & Koehler (2006) with a seasonal scale: the forecast's MAE divided by the
in-sample MAE of the seasonal-naive forecast (same hour one season earlier) on the training
split. Every model scored on the same windows shares that denominator, so MASE ranks models
exactly as MAE does while staying comparable across meters; below 1 means better than the
seasonal-naive forecast was in-sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from powercast.core.errors import DataPreparationError


@dataclass(frozen=True)
class ForecastScores:
    """Accuracy of one model on one set of windows, in kW (MASE unitless)."""

    n_windows: int
    mae_kw: float
    rmse_kw: float
    mase: float
    mae_kw_by_step: tuple[float, ...]
    rmse_kw_by_step: tuple[float, ...]
    mase_by_step: tuple[float, ...]


def _checked_pair(y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true_kw, dtype=np.float64)
    forecast = np.asarray(yhat_kw, dtype=np.float64)
    if truth.shape != forecast.shape or truth.ndim != 2:
        raise DataPreparationError(
            f"forecasts and actuals must both be [N, H] arrays of the same shape, got {forecast.shape} and {truth.shape}"
        )
    if truth.shape[0] == 0:
        raise DataPreparationError("cannot score zero windows: the split has no valid windows")
    if not (np.isfinite(truth).all() and np.isfinite(forecast).all()):
        raise DataPreparationError("forecasts or actuals contain NaN/inf: only complete windows can be scored")
    return truth, forecast


def mae_kw_by_step(y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> np.ndarray:
    """Return the mean absolute error per horizon step, ``[H]`` kW, of ``[N, H]`` forecasts."""
    truth, forecast = _checked_pair(y_true_kw, yhat_kw)
    return np.abs(forecast - truth).mean(axis=0)


def rmse_kw_by_step(y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> np.ndarray:
    """Return the root mean squared error per horizon step, ``[H]`` kW, of ``[N, H]`` forecasts."""
    truth, forecast = _checked_pair(y_true_kw, yhat_kw)
    return np.sqrt(((forecast - truth) ** 2).mean(axis=0))


def mae_kw(y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> float:
    """Return the mean absolute error in kW over every window and horizon step."""
    truth, forecast = _checked_pair(y_true_kw, yhat_kw)
    return float(np.abs(forecast - truth).mean())


def rmse_kw(y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> float:
    """Return the root mean squared error in kW over every window and horizon step."""
    truth, forecast = _checked_pair(y_true_kw, yhat_kw)
    return float(np.sqrt(((forecast - truth) ** 2).mean()))


def seasonal_naive_scale_kw(target_kw: np.ndarray, season_steps: int) -> float:
    """Return the in-sample MAE of the seasonal-naive forecast, the MASE denominator (kW).

    Parameters
    ----------
    target_kw : np.ndarray
        Training-split target series ``[T]`` in kW; NaN (long gaps) is skipped pairwise.
    season_steps : int
        Season length in steps (24 at hourly resolution: same hour yesterday).
    """
    series = np.asarray(target_kw, dtype=np.float64)
    if season_steps < 1:
        raise DataPreparationError(f"season_steps must be >= 1, got {season_steps}")
    differences = np.abs(series[season_steps:] - series[:-season_steps])
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        raise DataPreparationError(
            f"the training series has no pair of readings {season_steps} steps apart: too little data for MASE"
        )
    scale = float(differences.mean())
    if scale <= 0:
        raise DataPreparationError("the training series is constant: MASE is undefined")
    return scale


def score_forecast(y_true_kw: np.ndarray, yhat_kw: np.ndarray, mase_scale_kw: float) -> ForecastScores:
    """Return MAE, RMSE and MASE, per horizon step and overall, of ``[N, H]`` forecasts in kW."""
    if not mase_scale_kw > 0:
        raise DataPreparationError(f"mase_scale_kw must be > 0, got {mase_scale_kw}")
    mae_steps = mae_kw_by_step(y_true_kw, yhat_kw)
    rmse_steps = rmse_kw_by_step(y_true_kw, yhat_kw)
    overall_mae = float(mae_steps.mean())
    return ForecastScores(
        n_windows=int(np.shape(y_true_kw)[0]),
        mae_kw=overall_mae,
        rmse_kw=rmse_kw(y_true_kw, yhat_kw),
        mase=overall_mae / mase_scale_kw,
        mae_kw_by_step=tuple(float(v) for v in mae_steps),
        rmse_kw_by_step=tuple(float(v) for v in rmse_steps),
        mase_by_step=tuple(float(v / mase_scale_kw) for v in mae_steps),
    )
