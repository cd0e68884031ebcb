"""Reference forecasts every model must beat, computed on exactly the windows models are scored on.

Each baseline maps a ``PreparedSeries`` and window starts ``s`` to ``[N, H]`` forecasts in kW for
the targets ``target_kw[s+L : s+L+H]``, using only readings before the origin ``s+L``. Lags are
given in steps; the day length in steps follows the series' frequency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from powercast.core.errors import DataPreparationError

if TYPE_CHECKING:
    from powercast.prepare.series import PreparedSeries


def steps_per_day(prepared: PreparedSeries) -> int:
    """Return how many grid steps make one day for the series' frequency."""
    if len(prepared.index_utc) < 2:
        raise DataPreparationError(f"meter {prepared.meter_id}: the grid has fewer than two steps")
    step = pd.Timedelta(prepared.index_utc[1] - prepared.index_utc[0])
    per_day = pd.Timedelta(days=1) / step
    if per_day != int(per_day):
        raise DataPreparationError(f"meter {prepared.meter_id}: grid step {step} does not divide a day")
    return int(per_day)


def _history_kw(prepared: PreparedSeries, starts: np.ndarray, lags_steps: np.ndarray, name: str) -> np.ndarray:
    """Return ``target_kw[o + h - lag]`` as ``[N, H, K]`` for origins ``o = s + L`` and the K lags.

    Each lag is folded forward so that the value read is always before the origin (a 24-step lag
    for step 30 reads 48 steps back).
    """
    starts = np.asarray(starts, dtype=np.int64)
    horizon = np.arange(prepared.horizon_steps, dtype=np.int64)  # [H]
    lags = np.asarray(lags_steps, dtype=np.int64)  # [K]
    periods = np.ceil((horizon[:, None] + 1) / lags[None, :]).astype(np.int64)  # [H, K]
    offsets = horizon[:, None] - lags[None, :] * periods  # [H, K], always < 0
    origins = starts + prepared.lookback_steps  # [N]
    rows = origins[:, None, None] + offsets[None, :, :]  # [N, H, K]
    if starts.size and rows.min() < 0:
        first = int(starts[np.argmin(rows.min(axis=(1, 2)))])
        raise DataPreparationError(
            f"baseline {name} for meter {prepared.meter_id} needs {-int(offsets.min())} steps of history "
            f"before the origin, but window start {first} has only {first + prepared.lookback_steps}; "
            "score later windows or ingest more history"
        )
    return np.asarray(prepared.target_kw, dtype=np.float32)[rows]


def seasonal_naive_kw(prepared: PreparedSeries, starts: np.ndarray, lag_steps: int) -> np.ndarray:
    """Return ``[N, H]`` kW forecasts repeating the value ``lag_steps`` earlier (24 h: yesterday).

    Parameters
    ----------
    prepared : PreparedSeries
        The series and window geometry.
    starts : np.ndarray
        Window starts ``s`` to forecast (int64 ``[N]``).
    lag_steps : int
        Season length in steps.
    """
    if lag_steps < 1:
        raise DataPreparationError(f"lag_steps must be >= 1, got {lag_steps}")
    values = _history_kw(prepared, starts, np.array([lag_steps]), f"seasonal_naive({lag_steps} steps)")[..., 0]
    if np.isnan(values).any():
        # The lagged reading lies in a long gap; the same hour one more season back stands in.
        fallback = _history_kw(prepared, starts, np.array([2 * lag_steps]), f"seasonal_naive({lag_steps} steps)")[..., 0]
        values = np.where(np.isnan(values), fallback, values)
    return _checked(values, prepared, f"seasonal_naive({lag_steps} steps)")


def _same_hour_kw(prepared: PreparedSeries, starts: np.ndarray, days: int, reducer: Callable, name: str) -> np.ndarray:
    if days < 1:
        raise DataPreparationError(f"days must be >= 1, got {days}")
    per_day = steps_per_day(prepared)
    lags = per_day * np.arange(1, days + 1)  # [K]
    history = _history_kw(prepared, starts, lags, name)  # [N, H, K]
    complete = ~np.isnan(history).all(axis=-1)
    values = np.full(history.shape[:2], np.nan, dtype=np.float32)
    values[complete] = reducer(history[complete], axis=-1)
    return _checked(values, prepared, name)


def same_hour_median_kw(prepared: PreparedSeries, starts: np.ndarray, days: int = 7) -> np.ndarray:
    """Return ``[N, H]`` kW forecasts: the median of the same time of day over the previous ``days`` days."""
    return _same_hour_kw(prepared, starts, days, np.nanmedian, f"same_hour_median({days} days)")


def same_hour_mean_kw(prepared: PreparedSeries, starts: np.ndarray, days: int = 7) -> np.ndarray:
    """Return ``[N, H]`` kW forecasts: the mean of the same time of day over the previous ``days`` days."""
    return _same_hour_kw(prepared, starts, days, np.nanmean, f"same_hour_mean({days} days)")


def _checked(values: np.ndarray, prepared: PreparedSeries, name: str) -> np.ndarray:
    if np.isnan(values).any():
        raise DataPreparationError(
            f"baseline {name} for meter {prepared.meter_id} has no reading to repeat for "
            f"{int(np.isnan(values).any(axis=1).sum())} window(s): their history lies in long gaps"
        )
    return values.astype(np.float32)


BASELINES: dict[str, Callable[[PreparedSeries, np.ndarray], np.ndarray]] = {
    "seasonal_naive_24h": lambda prepared, starts: seasonal_naive_kw(prepared, starts, steps_per_day(prepared)),
    "seasonal_naive_168h": lambda prepared, starts: seasonal_naive_kw(prepared, starts, 7 * steps_per_day(prepared)),
    "same_hour_mean_7d": lambda prepared, starts: same_hour_mean_kw(prepared, starts, days=7),
    "same_hour_median_7d": lambda prepared, starts: same_hour_median_kw(prepared, starts, days=7),
}
