"""Split-conformal prediction intervals: per-horizon-step offsets learned from held-out residuals.

The calibrator sees forecasts and actuals (kW) on windows the model was not fit on (validation)
and learns, for each horizon step, the lower and upper quantiles of the residual
``actual - forecast`` with the finite-sample correction of split conformal prediction. An
interval is then ``[yhat + lo, yhat + hi]``; ``lo <= 0 <= hi`` always holds.

Offsets can be learned per group of windows (the slot of the local day each window is issued
at): a day-ahead batch issued at midnight then gets the spread of evening-peak errors for its
evening steps instead of an all-origins average, which left the 19:00–21:00 steps of a
midnight batch covered ~60 % of the time and the night steps ~99 % for a nominal 80 %. A group
with too few windows for the requested coverage uses the offsets pooled over every window.

Scaled (normalised) offsets, ``scale="lookback_mean"``: a household's errors grow with its
load, and the load follows the season, so kW offsets learned on a validation half-year are too
narrow in the following winter and too wide in summer (on the UCI house, calibrated on
July-December 2009, the months of 2010 were covered 68-88 % for a nominal 80 %; see
docs/accuracy.md, "Interval coverage"). The residual is then divided by a scale known at issue
time, the mean load of the window's input (the week before the issue time by default), the
quantiles are learned on that ratio, and an interval is ``[yhat + lo * scale, yhat + hi *
scale]``. This is normalised split conformal: the finite-sample argument is the same, on ratios
instead of kW, and ratios drift less with the season than kW residuals do. The scale has a floor
(``SCALE_FLOOR_FRACTION`` of the calibration windows' median scale) so that a week of near-zero
load cannot give a zero-width interval.
"""

from __future__ import annotations

import math

import numpy as np

from powercast.core.config import INTERVAL_SCALES, IntervalScale
from powercast.core.errors import ConfigError, DataPreparationError

# The scale never drops below this fraction of the calibration windows' median scale.
SCALE_FLOOR_FRACTION = 0.1


class ConformalIntervals:
    """Per-horizon-step split-conformal interval offsets (scikit-learn style).

    Parameters
    ----------
    coverage : float
        Target probability that the actual value falls inside the interval, in (0, 1).
    scale : {"none", "lookback_mean"}
        "none": offsets in kW, the same for every window of a slot; "lookback_mean": offsets
        are ratios of each window's scale, the mean of its input load in kW (see the module).

    Attributes (after ``fit``)
    --------------------------
    lo_, hi_ : np.ndarray
        float32 ``[G, H]`` offsets per group and horizon step: kW when ``scale="none"``, else
        multiples of a window's scale.
    scale_floor_kw_ : float
        The smallest scale used (0.0 when ``scale="none"``).
    pooled_ : np.ndarray
        bool ``[G]``: True where a group had too few windows and took the pooled offsets.
    """

    def __init__(self, coverage: float = 0.8, scale: IntervalScale = "none") -> None:
        self.coverage = coverage
        self.scale = scale

    def fit(
        self,
        y_true_kw: np.ndarray,
        yhat_kw: np.ndarray,
        groups: np.ndarray | None = None,
        n_groups: int = 1,
        lookback_kw: np.ndarray | None = None,
    ) -> ConformalIntervals:
        """Learn ``lo_`` and ``hi_`` ``[G, H]`` from ``[N, H]`` calibration actuals and forecasts; return self.

        Parameters
        ----------
        y_true_kw, yhat_kw : np.ndarray
            ``[N, H]`` calibration actuals and forecasts in kW.
        groups : np.ndarray, optional
            int ``[N]`` group of each window in ``[0, n_groups)`` (e.g. its issue slot of the
            local day); None learns one set of offsets for all windows.
        n_groups : int
            Number of groups ``G`` (rows of the offset table).
        lookback_kw : np.ndarray, optional
            ``[N, L]`` load (kW) of each window's input; needed when ``scale="lookback_mean"``.
        """
        if not 0 < self.coverage < 1:
            raise ConfigError(f"coverage must lie in (0, 1), got {self.coverage}")
        if self.scale not in INTERVAL_SCALES:
            raise ConfigError(f"interval scale must be one of {list(INTERVAL_SCALES)}, got {self.scale!r}")
        truth = np.asarray(y_true_kw, dtype=np.float64)
        forecast = np.asarray(yhat_kw, dtype=np.float64)
        if truth.shape != forecast.shape or truth.ndim != 2:
            raise DataPreparationError(
                f"calibration actuals and forecasts must be [N, H] of one shape, got {truth.shape} and {forecast.shape}"
            )
        if not (np.isfinite(truth).all() and np.isfinite(forecast).all()):
            raise DataPreparationError("calibration actuals or forecasts contain NaN/inf")
        if n_groups < 1:
            raise ConfigError(f"n_groups must be >= 1, got {n_groups}")
        self.scale_floor_kw_ = 0.0
        scale_kw = np.ones(truth.shape[0])
        if self.scale == "lookback_mean":
            means_kw = lookback_mean_kw(lookback_kw, truth.shape[0])
            floor_kw = float(SCALE_FLOOR_FRACTION * np.median(means_kw))
            if floor_kw > 0:
                self.scale_floor_kw_ = floor_kw
                scale_kw = window_scale_kw(means_kw, floor_kw)
            else:
                # Most calibration windows read a week of zero load (an idle sub-meter): there is no
                # load to scale by, so this model's offsets stay in kW (the card then says scale "none").
                self.scale = "none"
        residuals = (truth - forecast) / scale_kw[:, None]  # [N, H]
        pooled = self._offsets(residuals)
        if pooled is None:
            tail = (1.0 - self.coverage) / 2.0
            raise DataPreparationError(
                f"{truth.shape[0]} calibration windows are too few for {self.coverage:.0%} coverage: "
                f"need at least {math.ceil(1.0 / tail) - 1}; lengthen the validation split"
            )
        lo = np.repeat(pooled[0][None], n_groups, axis=0)  # [G, H]
        hi = np.repeat(pooled[1][None], n_groups, axis=0)  # [G, H]
        self.pooled_ = np.zeros(n_groups, dtype=bool)  # [G] True where a group took the pooled offsets
        if groups is not None:
            group_of = np.asarray(groups, dtype=np.int64)
            if group_of.shape != (truth.shape[0],) or (group_of < 0).any() or (group_of >= n_groups).any():
                raise DataPreparationError(
                    f"groups must be [{truth.shape[0]}] integers in [0, {n_groups}), got shape {group_of.shape}"
                )
            for group in range(n_groups):
                offsets = self._offsets(residuals[group_of == group])
                if offsets is None:
                    self.pooled_[group] = True
                else:
                    lo[group], hi[group] = offsets
        self.lo_ = lo.astype(np.float32)
        self.hi_ = hi.astype(np.float32)
        self.n_calibration_ = truth.shape[0]
        return self

    def _offsets(self, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Return ``(lo, hi)`` ``[H]`` conformal offsets of ``[n, H]`` residuals, or None when n is too small."""
        n_windows = residuals.shape[0]
        tail = (1.0 - self.coverage) / 2.0
        # Finite-sample correction: the ceil((n+1)(1-tail))-th smallest residual guarantees
        # coverage >= 1 - tail on each side for exchangeable windows.
        rank_hi = math.ceil((n_windows + 1) * (1.0 - tail))
        if n_windows == 0 or rank_hi > n_windows:
            return None
        ordered = np.sort(residuals, axis=0)  # [n, H]
        rank_lo = n_windows + 1 - rank_hi
        return np.minimum(ordered[rank_lo - 1], 0.0), np.maximum(ordered[rank_hi - 1], 0.0)

    def interval_kw(
        self, yhat_kw: np.ndarray, groups: np.ndarray | None = None, lookback_kw: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lower, upper)`` kW bounds for ``[N, H]`` forecasts issued in ``groups`` ``[N]``.

        ``groups`` may be left out only when the offsets were learned without groups;
        ``lookback_kw`` ``[N, L]`` is needed when they are scaled.
        """
        if not hasattr(self, "lo_"):
            raise DataPreparationError("ConformalIntervals is not fitted: call fit() on validation residuals first")
        return interval_bounds_kw(
            yhat_kw, self.lo_, self.hi_, groups, self.scale, self.scale_floor_kw_, lookback_kw
        )

    def coverage_of(
        self,
        y_true_kw: np.ndarray,
        yhat_kw: np.ndarray,
        groups: np.ndarray | None = None,
        lookback_kw: np.ndarray | None = None,
    ) -> float:
        """Return the fraction of actual values that fall inside the intervals of ``yhat_kw``."""
        lower, upper = self.interval_kw(yhat_kw, groups, lookback_kw)
        truth = np.asarray(y_true_kw, dtype=np.float32)
        return float(((truth >= lower) & (truth <= upper)).mean())


def lookback_mean_kw(lookback_kw: np.ndarray | None, n_windows: int) -> np.ndarray:
    """Return the ``[N]`` mean load of ``[N, L]`` input windows in kW (finite, validated)."""
    if lookback_kw is None:
        raise DataPreparationError("scaled interval offsets need each window's input load (lookback_kw [N, L])")
    history = np.asarray(lookback_kw, dtype=np.float64)
    if history.ndim != 2 or history.shape[0] != n_windows or history.shape[1] == 0:
        raise DataPreparationError(f"lookback_kw must be [{n_windows}, L] with L >= 1, got shape {history.shape}")
    if not np.isfinite(history).all():
        raise DataPreparationError("lookback_kw contains NaN/inf: the input windows must be complete (or filled)")
    return history.mean(axis=1)


def window_scale_kw(means_kw: np.ndarray, floor_kw: float) -> np.ndarray:
    """Return each window's ``[N]`` scale: its input's mean load, at least ``floor_kw`` (> 0)."""
    if not floor_kw > 0:
        raise DataPreparationError(
            f"the interval scale floor must be > 0 kW, got {floor_kw}: the calibration windows' load is zero"
        )
    return np.maximum(np.asarray(means_kw, dtype=np.float64), floor_kw)


def interval_bounds_kw(
    yhat_kw: np.ndarray,
    lo_table: np.ndarray,
    hi_table: np.ndarray,
    groups: np.ndarray | None,
    scale: str,
    scale_floor_kw: float,
    lookback_kw: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 ``(lower, upper)`` kW bounds of ``[N, H]`` forecasts from ``[G, H]`` offset tables.

    ``lower <= yhat <= upper`` and both are finite wherever ``yhat`` is (offsets satisfy
    ``lo <= 0 <= hi`` and the scale is positive and finite).
    """
    forecast = np.asarray(yhat_kw, dtype=np.float32)
    lo, hi = offsets_for(lo_table, hi_table, groups, forecast.shape[0])  # [N, H]
    if scale == "none":
        return forecast + lo, forecast + hi
    if scale != "lookback_mean":
        raise DataPreparationError(f"unknown interval scale {scale!r}; known: {list(INTERVAL_SCALES)}")
    scale_kw = window_scale_kw(lookback_mean_kw(lookback_kw, forecast.shape[0]), scale_floor_kw)
    scale_kw = scale_kw.astype(np.float32)[:, None]  # [N, 1]
    return forecast + lo * scale_kw, forecast + hi * scale_kw


def offsets_for(
    lo_table: np.ndarray, hi_table: np.ndarray, groups: np.ndarray | None, n_windows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``[N, H]`` offsets of windows in ``groups`` from ``[G, H]`` offset tables."""
    if groups is None:
        if lo_table.shape[0] != 1:
            raise DataPreparationError(
                f"these interval offsets depend on the issue slot ({lo_table.shape[0]} slots): pass each window's slot"
            )
        return np.repeat(lo_table, n_windows, axis=0), np.repeat(hi_table, n_windows, axis=0)
    rows = np.asarray(groups, dtype=np.int64)
    if rows.shape != (n_windows,):
        raise DataPreparationError(f"groups must be [{n_windows}], got shape {rows.shape}")
    if lo_table.shape[0] == 1:
        rows = np.zeros_like(rows)
    elif (rows < 0).any() or (rows >= lo_table.shape[0]).any():
        raise DataPreparationError(f"issue slots must lie in [0, {lo_table.shape[0]}), got {rows.min()}..{rows.max()}")
    return lo_table[rows], hi_table[rows]
