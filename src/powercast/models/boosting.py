"""A gradient-boosting challenger: scikit-learn's ``HistGradientBoostingRegressor``, direct multi-horizon.

The tool a practitioner reaches for first on tabular lag features. One regressor per horizon
step (direct strategy: no error feeds back through the horizon), absolute-error loss, trained on
features read from the same scaled input windows ``[N, L, F]`` the networks read, so it is
scored, registered and served exactly like them:

* the last ``lag_steps`` target values (the recent level and shape);
* the target at the same time of day on each of the last ``same_hour_days`` days, for the step
  being forecast (the daily profile, the strongest signal in household load);
* the mean of the last day and of the whole window;
* the calendar columns of the step being forecast, read from the same time one week earlier in
  the window (same hour and weekday), when the window carries calendar features;
* the known-ahead inputs (``holiday_ahead``, ``profile_ahead``) for the step's own time;
* the last value of every other input.

Missing inputs stay NaN: the histogram trees route them natively, so a window with a gap still
gets a forecast (the networks need finite inputs).
"""

from __future__ import annotations

import io
import pickle
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from powercast.core.errors import DataPreparationError, RegistryError, TrainingError

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

BOOSTED_CELL = "hgb"
CALENDAR_PREFIXES = ("hour_", "weekday_")
AHEAD_SUFFIX = "_ahead"  # known inputs computed one horizon ahead (prepare.features)


@dataclass(frozen=True)
class BoostingParams:
    """What a boosted forecaster reads and how its trees grow (stored in the model card)."""

    lookback_steps: int
    horizon_steps: int
    n_features: int
    steps_per_day: int
    calendar_columns: tuple[int, ...]  # input columns holding calendar encodings
    # Known-ahead columns (holiday_ahead, profile_ahead): row t describes time t + horizon, so the
    # step's own value sits at window row L - H + step. Empty on cards written before this was
    # read per step: those read the last row for every step, as they were trained.
    ahead_columns: tuple[int, ...] = ()
    lag_steps: int = 48
    same_hour_days: int = 7
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready parameters."""
        return {**asdict(self), "calendar_columns": list(self.calendar_columns), "ahead_columns": list(self.ahead_columns)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> BoostingParams:
        """Return the parameters stored by ``to_dict``."""
        return cls(
            **{**state, "calendar_columns": tuple(state["calendar_columns"]), "ahead_columns": tuple(state.get("ahead_columns", ()))}
        )


def boosting_params(feature_names: tuple[str, ...], lookback_steps: int, horizon_steps: int, steps_per_day: int,
                    seed: int) -> BoostingParams:
    """Return the parameters for windows of ``feature_names`` (column 0 is the scaled target)."""
    calendar = tuple(i for i, name in enumerate(feature_names) if name.startswith(CALENDAR_PREFIXES))
    ahead = tuple(i for i, name in enumerate(feature_names) if name.endswith(AHEAD_SUFFIX))
    return BoostingParams(
        lookback_steps=lookback_steps,
        horizon_steps=horizon_steps,
        n_features=len(feature_names),
        steps_per_day=steps_per_day,
        calendar_columns=calendar,
        ahead_columns=ahead,
        lag_steps=min(48, lookback_steps),
        # Only days the window reaches back to: a feature missing in every row cannot be binned.
        same_hour_days=min(7, lookback_steps // steps_per_day),
        seed=seed,
    )


def _window_rows(windows: np.ndarray, positions: np.ndarray, column: int) -> np.ndarray:
    """Return ``windows[:, p, column]`` for each position, NaN where ``p`` lies before the window."""
    inside = positions >= 0
    out = np.full((windows.shape[0], positions.size), np.nan, dtype=np.float32)
    out[:, inside] = windows[:, positions[inside], column]
    return out


def horizon_features(params: BoostingParams, windows: np.ndarray, step: int) -> np.ndarray:
    """Return the ``[N, K]`` features for forecasting horizon step ``step`` (0-based) from ``[N, L, F]`` windows."""
    length = params.lookback_steps
    target = windows[:, :, 0]
    lags = target[:, length - params.lag_steps :]
    per_day = params.steps_per_day
    # The same time of day as the step, on the last days the window holds: a step more than a
    # day ahead (horizons up to a week) reads from its own time of day, days back from the window's end.
    time_of_day = length + step % per_day
    same_hour = _window_rows(windows, time_of_day - per_day * np.arange(1, params.same_hour_days + 1), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN day gives a NaN mean, which the trees handle
        means = np.stack([np.nanmean(target[:, -per_day:], axis=1), np.nanmean(target, axis=1)], axis=1)
    # The step's calendar encodings: the same time one whole week (else one day) before it, inside
    # the window. With less than a week of lookback the weekday read is the day before the step's.
    period = 7 * per_day if length >= 7 * per_day else per_day
    calendar_at = length + step % period - period
    calendar = [_window_rows(windows, np.array([calendar_at]), column) for column in params.calendar_columns]
    # Known-ahead columns: the value for this step's own time (its holiday flag, its usual load).
    ahead_row = length - params.horizon_steps + step
    ahead = [_window_rows(windows, np.array([ahead_row]), column) for column in params.ahead_columns]
    skipped = {*params.calendar_columns, *params.ahead_columns}
    others = [windows[:, -1:, column] for column in range(1, params.n_features) if column not in skipped]
    return np.concatenate([lags, same_hour, means, *calendar, *ahead, *others], axis=1).astype(np.float32)


def _check_budget(started: float, time_budget_s: float | None, step: int, horizon_steps: int) -> None:
    """Raise TrainingError when ``time_budget_s`` seconds have passed since ``started`` with steps left to fit."""
    elapsed_s = time.perf_counter() - started
    if time_budget_s is not None and elapsed_s > time_budget_s:
        raise TrainingError(
            f"{BOOSTED_CELL}: {step} of {horizon_steps} horizon steps fit when its time budget of "
            f"{time_budget_s:.0f} s ran out ({elapsed_s:.0f} s; train.max_time_s)"
        )


class _AttributeDict(dict):
    """A dict whose keys also read as attributes, like a Lightning module's ``hparams``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class BoostedForecaster:
    """One ``HistGradientBoostingRegressor`` per horizon step, behind the networks' ``forecast_scaled``."""

    def __init__(self, params: BoostingParams, regressors: list[HistGradientBoostingRegressor] | None = None) -> None:
        self.params = params
        self.regressors = regressors or []

    @property
    def hparams(self) -> _AttributeDict:
        """Return the parameters as the model card stores them, readable like the networks' ``hparams``."""
        return _AttributeDict(self.params.to_dict())

    def _check(self, windows: np.ndarray) -> None:
        expected = (self.params.lookback_steps, self.params.n_features)
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise DataPreparationError(f"windows must be [N, {expected[0]}, {expected[1]}] scaled inputs, got {windows.shape}")

    def fit(
        self,
        windows: np.ndarray,
        targets_scaled: np.ndarray,
        n_iter: list[int] | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        threads: int | None = None,
        time_budget_s: float | None = None,
    ) -> BoostedForecaster:
        """Fit one regressor per horizon step on ``[N, L, F]`` windows and ``[N, H]`` scaled targets.

        With ``validation`` (windows, targets) each step stops adding rounds once its validation
        MAE has not improved for 10 rounds (the held-out fit); ``n_iter`` instead fixes each
        step's rounds, as the refit on train + validation does with the rounds validation chose.

        Raises
        ------
        TrainingError
            ``time_budget_s`` ran out before every horizon step had its regressor (checked between
            steps: a forecaster missing steps cannot forecast the horizon, so none is returned).
        """
        from sklearn.ensemble import HistGradientBoostingRegressor  # scikit-learn loads in over a second: only to fit

        self._check(windows)
        rounds = n_iter or [self.params.max_iter] * self.params.horizon_steps
        started = time.perf_counter()
        self.regressors = []
        # OpenMP threads spin while they wait: on a machine whose cores are busy (a fleet's other
        # workers, another job) two threads took over 200 s where one took 2.7 s for 100 rounds.
        # So "0" (the configured default: torch's choice) means one thread here, not every core.
        with threadpool_limits(limits=threads or 1):
            for step in range(self.params.horizon_steps):
                _check_budget(started, time_budget_s, step, self.params.horizon_steps)
                regressor = HistGradientBoostingRegressor(
                    loss="absolute_error",
                    learning_rate=self.params.learning_rate,
                    max_iter=rounds[step],
                    max_leaf_nodes=self.params.max_leaf_nodes,
                    min_samples_leaf=self.params.min_samples_leaf,
                    l2_regularization=self.params.l2_regularization,
                    early_stopping=validation is not None,
                    n_iter_no_change=10,
                    random_state=self.params.seed + step,
                )
                extra = {}
                if validation is not None:
                    val_windows, val_targets = validation
                    extra = {"X_val": horizon_features(self.params, val_windows, step), "y_val": val_targets[:, step]}
                features = horizon_features(self.params, windows, step)
                self.regressors.append(regressor.fit(features, targets_scaled[:, step], **extra))
        return self

    @property
    def rounds(self) -> list[int]:
        """Return each step's number of boosting rounds."""
        return [int(regressor.n_iter_) for regressor in self.regressors]

    def validation_curve(self) -> np.ndarray:
        """Return the mean over steps of the validation MAE (scaled) after each round of an early-stopped fit."""
        curves = [-np.asarray(regressor.validation_score_[1:], dtype=np.float64) for regressor in self.regressors]
        longest = max(len(curve) for curve in curves)
        # A step that stopped early keeps its last score for the rounds it did not grow.
        padded = [np.pad(curve, (0, longest - len(curve)), mode="edge") for curve in curves]
        return np.mean(padded, axis=0)

    def forecast_scaled(self, windows: np.ndarray, batch_size: int = 0) -> np.ndarray:
        """Return scaled forecasts ``[N, H]`` (float32) for scaled input windows ``[N, L, F]`` (NaN allowed)."""
        self._check(windows)
        if not self.regressors:
            raise DataPreparationError("this boosted forecaster is not fitted")
        if not len(windows):
            return np.zeros((0, self.params.horizon_steps), dtype=np.float32)
        with threadpool_limits(limits=1):  # see fit: spinning OpenMP threads stall on busy cores
            columns = [reg.predict(horizon_features(self.params, windows, s)) for s, reg in enumerate(self.regressors)]
        return np.stack(columns, axis=1).astype(np.float32)

    def to_bytes(self) -> bytes:
        """Return the fitted regressors serialised (pickle: scikit-learn's own persistence format)."""
        buffer = io.BytesIO()
        pickle.dump(self.regressors, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, params: BoostingParams, raw: bytes, source: str) -> BoostedForecaster:
        """Return a forecaster from ``to_bytes`` output; the caller has checked the bytes' sha256 against its card."""
        try:
            regressors = pickle.loads(raw)  # noqa: S301 - our own registry file, sha256-checked by the caller
        except Exception as exc:
            raise RegistryError(f"{source} cannot be unpickled ({exc}): the file is damaged; retrain") from exc
        if not isinstance(regressors, list) or len(regressors) != params.horizon_steps:
            raise RegistryError(f"{source} does not hold {params.horizon_steps} fitted regressors; retrain")
        return cls(params, regressors)

    # The networks' module API the pipeline calls on any served model.
    def to(self, device: str) -> BoostedForecaster:
        """Return self: the trees run on CPU."""
        return self

    def eval(self) -> BoostedForecaster:
        """Return self: there is no training mode to leave."""
        return self
