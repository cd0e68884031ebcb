"""Split-conformal prediction intervals: per-horizon-step offsets learned from held-out residuals.

The calibrator sees forecasts and actuals (kW) on windows the model was not fit on (validation)
and learns, for each horizon step, the lower and upper quantiles of the residual
``actual - forecast`` with the finite-sample correction of split conformal prediction. An
interval is then ``[yhat + lo_kw, yhat + hi_kw]``; ``lo_kw <= 0 <= hi_kw`` always holds.
"""

from __future__ import annotations

import math

import numpy as np

from powercast.errors import ConfigError, DataPreparationError


class ConformalIntervals:
    """Per-horizon-step split-conformal interval offsets (scikit-learn style).

    Parameters
    ----------
    coverage : float
        Target probability that the actual value falls inside the interval, in (0, 1).
    """

    def __init__(self, coverage: float = 0.8) -> None:
        self.coverage = coverage

    def fit(self, y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> ConformalIntervals:
        """Learn ``lo_kw_`` and ``hi_kw_`` ``[H]`` from ``[N, H]`` calibration actuals and forecasts; return self."""
        if not 0 < self.coverage < 1:
            raise ConfigError(f"coverage must lie in (0, 1), got {self.coverage}")
        truth = np.asarray(y_true_kw, dtype=np.float64)
        forecast = np.asarray(yhat_kw, dtype=np.float64)
        if truth.shape != forecast.shape or truth.ndim != 2:
            raise DataPreparationError(
                f"calibration actuals and forecasts must be [N, H] of one shape, got {truth.shape} and {forecast.shape}"
            )
        if not (np.isfinite(truth).all() and np.isfinite(forecast).all()):
            raise DataPreparationError("calibration actuals or forecasts contain NaN/inf")
        n_windows = truth.shape[0]
        tail = (1.0 - self.coverage) / 2.0
        # Finite-sample correction: the ceil((n+1)(1-tail))-th smallest residual guarantees
        # coverage >= 1 - tail on each side for exchangeable windows.
        rank_hi = math.ceil((n_windows + 1) * (1.0 - tail))
        if rank_hi > n_windows:
            raise DataPreparationError(
                f"{n_windows} calibration windows are too few for {self.coverage:.0%} coverage: "
                f"need at least {math.ceil(1.0 / tail) - 1}; lengthen the validation split"
            )
        residuals = np.sort(truth - forecast, axis=0)  # [N, H]
        rank_lo = n_windows + 1 - rank_hi
        self.lo_kw_ = np.minimum(residuals[rank_lo - 1], 0.0).astype(np.float32)  # [H]
        self.hi_kw_ = np.maximum(residuals[rank_hi - 1], 0.0).astype(np.float32)  # [H]
        self.n_calibration_ = n_windows
        return self

    def interval_kw(self, yhat_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lower, upper)`` kW bounds for ``[N, H]`` forecasts."""
        if not hasattr(self, "lo_kw_"):
            raise DataPreparationError("ConformalIntervals is not fitted: call fit() on validation residuals first")
        forecast = np.asarray(yhat_kw, dtype=np.float32)
        return forecast + self.lo_kw_, forecast + self.hi_kw_

    def coverage_of(self, y_true_kw: np.ndarray, yhat_kw: np.ndarray) -> float:
        """Return the fraction of actual values that fall inside the intervals of ``yhat_kw``."""
        lower, upper = self.interval_kw(yhat_kw)
        truth = np.asarray(y_true_kw, dtype=np.float32)
        return float(((truth >= lower) & (truth <= upper)).mean())
