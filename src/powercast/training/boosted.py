"""Training the gradient-boosting challenger the way the networks are trained.

Held-out fit on the training windows, each horizon step early-stopped on the validation
windows; then, with ``train.refit_on_validation``, a refit on training + validation windows with
the rounds each step chose, which is served (the networks' "choose on validation, then refit").
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from powercast.core.config import TrainConfig
from powercast.core.errors import TrainingError
from powercast.models.baselines import steps_per_day
from powercast.models.boosting import BOOSTED_CELL, BoostedForecaster, boosting_params
from powercast.prepare.series import PreparedSeries
from powercast.prepare.windows import sliding_windows
from powercast.training.fit import FitResult


def _windows_and_targets(prepared: PreparedSeries, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``[N, L, F]`` scaled input windows at ``starts`` and their ``[N, H]`` scaled targets."""
    windows = np.ascontiguousarray(sliding_windows(prepared.inputs, prepared.lookback_steps)[starts])
    rows = starts[:, None] + prepared.lookback_steps + np.arange(prepared.horizon_steps)
    return windows, prepared.inputs[rows, 0]


def _result(module: BoostedForecaster, elapsed_s: float, curve: np.ndarray, stopped_by: str) -> FitResult:
    best = int(np.argmin(curve)) if curve.size else max(module.rounds) - 1
    return FitResult(
        name=BOOSTED_CELL,
        module=module,
        device="cpu",
        precision="float64",
        elapsed_s=elapsed_s,
        epochs_run=max(module.rounds),  # boosting rounds stand in for epochs on the leaderboard
        best_epoch=best,
        best_val_mae=float(curve[best]) if curve.size else float("nan"),
        stopped_by=stopped_by,
        curves=pd.DataFrame({"epoch": np.arange(curve.size), "train_loss": np.nan, "val_mae": curve}),
    )


def fit_boosted(prepared: PreparedSeries, config: TrainConfig) -> FitResult:
    """Return the held-out boosted fit: trained on the training windows, each step early-stopped on validation."""
    train_starts, val_starts = prepared.window_starts["train"], prepared.window_starts["val"]
    if not len(train_starts) or not len(val_starts):
        raise TrainingError(f"meter {prepared.meter_id!r}: {BOOSTED_CELL} needs training and validation windows")
    started = time.perf_counter()
    params = boosting_params(
        prepared.feature_names, prepared.lookback_steps, prepared.horizon_steps, steps_per_day(prepared), config.seed
    )
    module = BoostedForecaster(params).fit(
        *_windows_and_targets(prepared, train_starts),
        validation=_windows_and_targets(prepared, val_starts),
        threads=config.cpu_threads,
        time_budget_s=config.max_time_s,
    )
    stopped_by = "early_stopping" if min(module.rounds) < params.max_iter else "max_epochs"
    return _result(module, time.perf_counter() - started, module.validation_curve(), stopped_by)


def refit_boosted(prepared: PreparedSeries, config: TrainConfig, held_out: FitResult) -> FitResult:
    """Return a boosted model trained on training + validation windows with the rounds each step chose.

    The budget is per model, as for the networks: the refit gets what the held-out fit left of
    ``config.max_time_s``.

    Raises
    ------
    TrainingError
        The refit did not finish in what was left of the budget (the held-out fit can still serve).
    """
    started = time.perf_counter()
    starts = np.concatenate([prepared.window_starts["train"], prepared.window_starts["val"]])
    module = BoostedForecaster(held_out.module.params).fit(
        *_windows_and_targets(prepared, starts),
        n_iter=held_out.module.rounds,
        threads=config.cpu_threads,
        time_budget_s=max(0.0, config.max_time_s - held_out.elapsed_s),
    )
    return _result(module, time.perf_counter() - started, np.zeros(0), "max_epochs")
