"""The library-level nightly training step for one meter: train, score, select, register, report.

``train_meter`` is the story of one night for one meter, in three steps; an orchestrator calls
the last two itself (one task per cell, then one to decide):

1. prepare the meter's series (or take the given ``PreparedSeries``);
2. ``fit_challenger`` per configured cell: train it (a NaN/inf loss stops here, before anything
   is written to the registry) and forecast every scoring window set in kW;
3. ``select_and_register``: score challengers, baselines and the current champion in kW on the
   same windows; the best challenger is promoted only if it beats the best baseline and the
   champion; register every challenger, move the champion pointer if promoted, record the
   decision, and write ``runs/<run_id>/<meter_id>/`` (leaderboard JSON + Parquet, loss curves PNG).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from powercast.core.config import COMBINED_MODEL, PowercastConfig, parse_timezone
from powercast.core.errors import DataPreparationError, RegistryError, TrainingError
from powercast.io import layout
from powercast.io.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    resolve_filesystem,
)
from powercast.models.baselines import BASELINES, steps_per_day
from powercast.models.boosting import BOOSTED_CELL
from powercast.models.combination import CombinedForecaster
from powercast.models.conformal import ConformalIntervals
from powercast.models.metrics import (
    ForecastScores,
    score_forecast,
    seasonal_naive_scale_kw,
)
from powercast.models.registry import (
    CHALLENGER_VERSIONS_KEY,
    CHAMPION_AFTER_KEY,
    CHAMPION_BEFORE_KEY,
    LoadedModel,
    ModelRecord,
    load_champion,
    promote,
    record_decision,
    register_model,
    version_name,
)
from powercast.models.rnn import RNNForecaster
from powercast.prepare.features import interval_slots_of
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.prepare.windows import sliding_windows, window_has_invalid
from powercast.reporting.curves import plot_loss_curves
from powercast.training.boosted import fit_boosted, refit_boosted
from powercast.training.fit import (
    FitResult,
    fit_forecaster,
    local_log_dir,
    refit_forecaster,
)
from powercast.training.freshness import DATA_END_KEY
from powercast.training.selection import Decision, select_winner

# "val" (every validation window) decides the winner; the day-ahead window sets hold only
# windows issued at local midnight, as forecasts are in service.
# Contestant names of global models end in this: "gru_global".
GLOBAL_SUFFIX = "global"
SELECTION_SET = "val"
# Window sets scored with a challenger's held-out fit (and a champion's): a model refit on the
# validation windows has seen their targets, so it is scored only on the test sets.
HELD_OUT_SETS = ("val", "val_day_ahead")

LEADERBOARD_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("version", pa.string()),
        pa.field("window_set", pa.string(), nullable=False),
        pa.field("n_windows", pa.int64(), nullable=False),
        pa.field("mae_kw", pa.float64(), nullable=False),
        pa.field("rmse_kw", pa.float64(), nullable=False),
        pa.field("mase", pa.float64(), nullable=False),
        pa.field("mae_kw_by_step", pa.list_(pa.float64()), nullable=False),
        pa.field("interval_coverage", pa.float64()),
        pa.field("train_time_s", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("epochs", pa.int64()),
        pa.field("promoted", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True, eq=False)
class TrainingOutcome:
    """What one night's training of one meter produced and decided.

    Attributes
    ----------
    meter_id, run_id : str
    leaderboard : list[dict]
        One row per model × window set (``LEADERBOARD_SCHEMA`` fields).
    decision : Decision
        The selection and its reason.
    champion_version : str or None
        The champion after this run.
    versions : dict[str, str]
        Cell → registered version of this run's challenger.
    devices : dict[str, str]
        Cell → device it trained on.
    elapsed_s : dict[str, float]
        Cell → training wall-clock time.
    run_dir : str
        Where the leaderboard and curves were written.
    """

    meter_id: str
    run_id: str
    leaderboard: list[dict[str, Any]]
    decision: Decision
    champion_version: str | None
    versions: dict[str, str]
    devices: dict[str, str]
    elapsed_s: dict[str, float]
    run_dir: str

    def leaderboard_frame(self) -> pd.DataFrame:
        """Return the leaderboard as a DataFrame."""
        return pd.DataFrame(self.leaderboard, columns=LEADERBOARD_SCHEMA.names)


def window_inputs(prepared: PreparedSeries, starts: np.ndarray) -> np.ndarray:
    """Return the scaled input windows ``[N, L, F]`` (float32 copy) at ``starts``."""
    return np.ascontiguousarray(sliding_windows(prepared.inputs, prepared.lookback_steps)[starts])


def window_lookback_kw(prepared: PreparedSeries, starts: np.ndarray) -> np.ndarray:
    """Return the input load ``[N, L]`` kW of the windows at ``starts`` (filled steps as the model read them).

    The same values ``LoadedModel.interval_kw`` reads from a served window's first column.
    """
    load_kw = prepared.scaler.inverse_target_kw(prepared.inputs[:, 0])  # [T]
    return sliding_windows(load_kw, prepared.lookback_steps)[np.asarray(starts, dtype=np.int64)]


def window_targets_kw(prepared: PreparedSeries, starts: np.ndarray) -> np.ndarray:
    """Return the actual targets ``[N, H]`` kW of the windows at ``starts``."""
    rows = np.asarray(starts, dtype=np.int64)[:, None] + prepared.lookback_steps + np.arange(prepared.horizon_steps)
    return np.asarray(prepared.target_kw, dtype=np.float32)[rows]


def scoring_windows(prepared: PreparedSeries) -> dict[str, np.ndarray]:
    """Return window set name → window starts, leaving out empty sets (e.g. no test split)."""
    sets = {
        "val": prepared.window_starts["val"],
        "val_day_ahead": prepared.origin_starts["val"],
        "test": prepared.window_starts["test"],
        "test_day_ahead": prepared.origin_starts["test"],
    }
    return {name: np.asarray(starts, dtype=np.int64) for name, starts in sets.items() if len(starts)}


def forecast_module_kw(module: RNNForecaster, prepared: PreparedSeries, starts: np.ndarray) -> np.ndarray:
    """Return a freshly trained model's ``[N, H]`` kW forecasts for the windows at ``starts``."""
    return prepared.scaler.inverse_target_kw(module.forecast_scaled(window_inputs(prepared, starts)))


def forecast_champion_kw(
    champion: LoadedModel, prepared: PreparedSeries, config: PowercastConfig, starts: np.ndarray, held_out: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return the champion's ``[M, H]`` kW forecasts for today's windows, and the ``[N]`` mask of those it could make.

    ``held_out=True`` forecasts with the champion's held-out fit when it was served refit (so
    that it is compared with tonight's challengers out of sample, as they are).

    When the champion was fit with today's scaler and features it reads today's inputs as they
    are; otherwise the meter is prepared again with the champion's own scaler and features, and
    windows are matched by their origin time. Windows whose inputs are missing for the champion
    are left out (mask False).
    """
    same_inputs = (
        champion.feature_names == prepared.feature_names
        and champion.prepare_config.lookback_steps == prepared.lookback_steps
        and champion.scaler.to_dict() == prepared.scaler.to_dict()
    )
    if same_inputs:
        return champion.predict_kw(window_inputs(prepared, starts), held_out), np.ones(len(starts), dtype=bool)
    own_prepare = champion.prepare_config.model_copy(update={"split": config.prepare.split})
    end_utc = (prepared.index_utc[-1] + (prepared.index_utc[1] - prepared.index_utc[0])).to_pydatetime()
    theirs = prepare_meter(
        config.model_copy(update={"prepare": own_prepare}), prepared.meter_id, end_utc=end_utc, scaler=champion.scaler
    )
    origins_utc = prepared.index_utc[starts + prepared.lookback_steps]
    origin_rows = theirs.index_utc.get_indexer(origins_utc)
    their_starts = origin_rows - theirs.lookback_steps
    invalid = window_has_invalid(~np.isfinite(theirs.inputs).all(axis=1), theirs.lookback_steps)
    usable = (origin_rows >= 0) & (their_starts >= 0)
    usable[usable] = ~invalid[their_starts[usable]]
    return champion.predict_kw(window_inputs(theirs, their_starts[usable]), held_out), usable


def _score_row(
    run_id: str, meter_id: str, model: str, kind: str, window_set: str, scores: ForecastScores, **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run_id,
        "meter_id": meter_id,
        "model": model,
        "kind": kind,
        "version": None,
        "window_set": window_set,
        "n_windows": scores.n_windows,
        "mae_kw": scores.mae_kw,
        "rmse_kw": scores.rmse_kw,
        "mase": scores.mase,
        "mae_kw_by_step": list(scores.mae_kw_by_step),
        "interval_coverage": None,
        "train_time_s": None,
        "device": None,
        "epochs": None,
        "promoted": False,
    }
    row.update(extra)
    return row


def _run_dir(config: PowercastConfig, run_id: str, meter_id: str) -> str:
    _, base = resolve_filesystem(config.root)
    return layout.run_dir(base, run_id, meter_id)


@dataclass(frozen=True, eq=False)
class ChallengerFit:
    """One trained cell and its kW forecasts on every scoring window set of the series it learned from.

    Attributes
    ----------
    cell : str
        The recurrent cell (``"gru"`` or ``"lstm"``).
    fit : FitResult
        The held-out fit (trained on the training windows, early-stopped on validation) and the
        record of its training (device, elapsed time, curves).
    forecasts_kw : dict[str, numpy.ndarray]
        Window set name (``scoring_windows``) → ``[N, H]`` kW forecasts: the held-out fit's on
        ``HELD_OUT_SETS``, the served model's on the others.
    refit : FitResult or None
        The model retrained on training + validation windows for the held-out fit's epoch count,
        which is served; None when there was no refit (the held-out fit is served).
    refit_skipped : str or None
        Why there was no refit (switched off, the time budget, or a failed refit); None after a refit.
    discarded_refit_s : float
        Seconds spent on a refit that was then not served (cut by the budget or failed).
    scope : {"local", "global"}
        Trained on this meter alone, or one model trained on every meter's windows (the same
        module for every meter; its forecasts here are this meter's).
    """

    cell: str
    fit: FitResult
    forecasts_kw: dict[str, np.ndarray]
    refit: FitResult | None = None
    refit_skipped: str | None = None
    discarded_refit_s: float = 0.0
    scope: Literal["local", "global"] = "local"

    @property
    def name(self) -> str:
        """Return the contestant's name on the leaderboard and in version names (``gru``, ``gru_global``)."""
        return self.cell if self.scope == "local" else f"{self.cell}_{GLOBAL_SUFFIX}"

    @property
    def served_module(self) -> RNNForecaster:
        """Return the model that forecasts in service: the refit one when there is one."""
        return self.refit.module if self.refit is not None else self.fit.module

    @property
    def device(self) -> str:
        """Return where the cell trained (``"cpu"`` or ``"cuda:<name>"``)."""
        return self.fit.device

    @property
    def refit_elapsed_s(self) -> float:
        """Return the seconds spent refitting on train + validation, whether the refit is served or not."""
        return self.refit.elapsed_s if self.refit is not None else self.discarded_refit_s

    @property
    def elapsed_s(self) -> float:
        """Return the cell's training wall-clock time in seconds (held-out fit and refit, served or not)."""
        return self.fit.elapsed_s + self.refit_elapsed_s


def selectable_windows(prepared: PreparedSeries) -> dict[str, np.ndarray]:
    """Return ``scoring_windows(prepared)``, which must include the selection set.

    Raises
    ------
    TrainingError
        The series has no validation window to select a model on.
    """
    windows = scoring_windows(prepared)
    if SELECTION_SET not in windows:
        raise TrainingError(f"meter {prepared.meter_id!r} has no validation window to select a model on")
    return windows


def interval_slots(
    prepared: PreparedSeries, config: PowercastConfig, windows: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int]:
    """Return window set → ``[N]`` interval slots of the windows' issue times, and the number of slots.

    A slot is the origin's position in its local day in grid steps (the hour at 1 h); see
    ``features.interval_slots_of`` for grids too fine to calibrate per slot.
    """
    local_tz = parse_timezone(config.prepare.local_timezone)
    step = prepared.index_utc[1] - prepared.index_utc[0]
    slots: dict[str, np.ndarray] = {}
    n_slots = 1
    for name, starts in windows.items():
        slots[name], n_slots = interval_slots_of(prepared.index_utc[starts + prepared.lookback_steps], local_tz, step)
    return slots, n_slots


def _check_series_of(prepared: PreparedSeries, meter_id: str) -> None:
    if prepared.meter_id != meter_id:
        raise DataPreparationError(f"the given series belongs to meter {prepared.meter_id!r}, not {meter_id!r}")


def fit_challenger(
    config: PowercastConfig, prepared: PreparedSeries, cell: str, run_id: str, progress: bool | None = None
) -> ChallengerFit:
    """Return one ``cell`` trained on ``prepared`` and its kW forecasts on every scoring window set.

    The cell is first fitted on the training windows with early stopping on validation (the
    held-out fit, which selection scores); with ``train.refit_on_validation`` a fresh model is
    then trained on training + validation windows for the epochs the held-out fit needed, and
    that one is served (it has seen the most recent readings). Writes only Lightning's logs (under
    ``runs/<run_id>/<meter_id>/<cell>``, or a temp folder deleted afterwards for non-local roots;
    its checkpoint is removed once read back); the registry is left alone until ``select_and_register``.

    Parameters
    ----------
    config : PowercastConfig
        Root and training settings.
    prepared : PreparedSeries
        The meter's series, scaled, with its split windows.
    cell : str
        The recurrent cell to train.
    run_id : str
        The run the challenger belongs to (names its log folder).
    progress : bool, optional
        Progress bars; None shows them only on a terminal.

    Raises
    ------
    TrainingError
        The series has no validation window, or a loss became NaN/inf.
    """
    windows = selectable_windows(prepared)
    if cell == BOOSTED_CELL:
        return _fit_boosted_challenger(config, prepared, windows)
    filesystem, _ = resolve_filesystem(config.root)
    with local_log_dir(filesystem, _run_dir(config, run_id, prepared.meter_id), "powercast-train-") as log_dir:
        fit = fit_forecaster(prepared, config.train, cell, log_dir / cell, progress)
        refit, refit_skipped, discarded_refit_s = _refit_for_service(config, prepared, fit, log_dir, progress)
    return _scored_challenger(cell, prepared, windows, fit, refit, refit_skipped, discarded_refit_s)


def _scored_challenger(
    cell: str,
    prepared: PreparedSeries,
    windows: dict[str, np.ndarray],
    fit: FitResult,
    refit: FitResult | None,
    refit_skipped: str | None,
    discarded_refit_s: float = 0.0,
) -> ChallengerFit:
    """Return the challenger with its kW forecasts: the held-out fit's where it scores held out, the served model's elsewhere."""
    served = refit.module if refit is not None else fit.module
    return ChallengerFit(
        cell=cell,
        fit=fit,
        forecasts_kw={
            name: forecast_module_kw(fit.module if name in HELD_OUT_SETS else served, prepared, starts)
            for name, starts in windows.items()
        },
        refit=refit,
        refit_skipped=refit_skipped,
        discarded_refit_s=discarded_refit_s,
    )


def _fit_boosted_challenger(
    config: PowercastConfig, prepared: PreparedSeries, windows: dict[str, np.ndarray]
) -> ChallengerFit:
    """Return the gradient-boosting challenger, held-out fit and refit as for a network (no logs to write)."""
    fit = fit_boosted(prepared, config.train)
    refit, refit_skipped, discarded_refit_s = None, "train.refit_on_validation is off", 0.0
    if config.train.refit_on_validation:
        started = time.perf_counter()
        try:
            refit, refit_skipped = refit_boosted(prepared, config.train, fit), None
        except TrainingError as exc:  # out of budget: the held-out fit is still a model worth serving
            refit_skipped, discarded_refit_s = f"the refit did not finish: {exc}", time.perf_counter() - started
    return _scored_challenger(BOOSTED_CELL, prepared, windows, fit, refit, refit_skipped, discarded_refit_s)


def _refit_for_service(
    config: PowercastConfig, prepared: PreparedSeries, fit: FitResult, log_dir: Path, progress: bool | None
) -> tuple[FitResult | None, str | None, float]:
    """Return (the refit to serve or None, why there is none, seconds spent on a refit not served)."""
    if not config.train.refit_on_validation:
        return None, "train.refit_on_validation is off", 0.0
    budget_left_s = config.train.max_time_s - fit.elapsed_s
    if fit.stopped_by == "max_time" or budget_left_s <= 0:
        # The budget already cut the held-out fit: its epoch count is not a choice, and a refit
        # on more windows would be cut too. Serve the held-out fit rather than half a schedule.
        return None, f"the held-out fit used the whole train.max_time_s={config.train.max_time_s:g}", 0.0
    # The budget is per model: the refit gets what the held-out fit left of it.
    refit_config = config.train.model_copy(update={"max_time_s": budget_left_s})
    started = time.perf_counter()
    try:
        refit = refit_forecaster(
            prepared, refit_config, fit.name, fit.best_epoch + 1, log_dir / f"{fit.name}-refit", progress
        )
    except TrainingError as exc:  # a good held-out fit is still a model worth serving
        return None, f"the refit failed: {exc}", time.perf_counter() - started
    if refit.stopped_by == "max_time":
        left = f"{budget_left_s:.0f} s left of train.max_time_s={config.train.max_time_s:g}"
        return None, f"the refit did not finish in the {left}", refit.elapsed_s
    return refit, None, 0.0


def _fit_record(module: Any) -> FitResult:
    """Return the record of a model that was assembled, not trained (a combination of trained ones)."""
    return FitResult(
        name=COMBINED_MODEL, module=module, device="cpu", precision="-", elapsed_s=0.0, epochs_run=0, best_epoch=0,
        best_val_mae=float("nan"), stopped_by="assembled",
        curves=pd.DataFrame({"epoch": [], "train_loss": [], "val_mae": []}),
    )


def combination_challenger(
    fits: Sequence[ChallengerFit], validation_kw: np.ndarray, run_id: str
) -> ChallengerFit | None:
    """Return the mean of the challengers whose mean has the lowest validation MAE, or None with fewer than two.

    Every group of two or more challengers is a candidate (at most 26 with the five a night can
    train: three local cells, two global networks), and the group whose equal-weight mean scores
    best on the selection windows is the combination. Picking the two best challengers alone
    missed the best mean: two networks that err alike gain little from each other, while a
    slightly worse model that errs differently (hgb beside the networks) gains more. Members may
    be local or global: a global network learned from the whole fleet, which is what a mean gains
    from. Its forecasts are the members' mean on every window set (held-out fits where they score
    held out, served models elsewhere), so it is scored like any other contestant.
    """
    candidates = sorted(
        (challenger for challenger in fits if challenger.cell != COMBINED_MODEL), key=lambda challenger: challenger.name
    )
    if len(candidates) < 2:
        return None
    members = best_mean_group(
        {challenger.name: challenger.forecasts_kw[SELECTION_SET] for challenger in candidates}, validation_kw
    )
    if not members:
        return None
    members_fits = [challenger for challenger in candidates if challenger.name in members]
    members_fits.sort(key=lambda challenger: members.index(challenger.name))
    versions = tuple(version_name(run_id, member.name) for member in members_fits)
    held_out = CombinedForecaster([member.fit.module for member in members_fits], versions)
    served = CombinedForecaster([member.served_module for member in members_fits], versions)
    refit = any(member.refit is not None for member in members_fits)
    return ChallengerFit(
        cell=COMBINED_MODEL,
        fit=_fit_record(held_out),
        forecasts_kw={
            name: np.mean([member.forecasts_kw[name] for member in members_fits], axis=0)
            for name in members_fits[0].forecasts_kw
        },
        refit=_fit_record(served) if refit else None,
        refit_skipped=None if refit else "its members were not refit",
    )


def best_mean_group(forecasts_kw: dict[str, np.ndarray], actual_kw: np.ndarray) -> list[str]:
    """Return the names (best single model first) of the group of two or more whose mean forecast has the lowest MAE.

    ``forecasts_kw`` maps a model name to its ``[N, H]`` kW forecasts of the windows whose actuals
    are ``actual_kw`` (NaN where unknown: those steps are not scored). A model that did not
    forecast every scored step (NaN, inf: a diverged fit) is in no group, since its share of a mean
    would be missing too; with fewer than two others there is no group, and [] is returned. Ties
    go to the smaller group, then to the group of the better single models, then by name.
    """
    known = np.isfinite(actual_kw)

    def mae_kw(forecast_kw: np.ndarray) -> float:
        return float(np.abs(forecast_kw[known] - actual_kw[known]).mean()) if known.any() else math.inf

    usable = [name for name, forecast_kw in forecasts_kw.items() if np.isfinite(forecast_kw[known]).all()]
    ranked = sorted(usable, key=lambda name: (mae_kw(forecasts_kw[name]), name))
    groups = [
        list(group) for size in range(2, len(ranked) + 1) for group in itertools.combinations(ranked, size)
    ]  # combinations keep the ranked order, so each group lists its best model first
    scores = {tuple(group): mae_kw(np.mean([forecasts_kw[name] for name in group], axis=0)) for group in groups}
    return min(
        groups, key=lambda group: (scores[tuple(group)], len(group), [ranked.index(n) for n in group]), default=[]
    )


def _check_fits(meter_id: str, fits: Sequence[ChallengerFit], windows: dict[str, np.ndarray]) -> None:
    """Raise TrainingError unless ``fits`` are distinct cells forecasting exactly ``windows``."""
    if not fits:
        raise TrainingError(f"meter {meter_id!r}: no trained challenger to select from; train at least one cell")
    names = [challenger.name for challenger in fits]
    if len(set(names)) != len(names):
        raise TrainingError(f"meter {meter_id!r}: challengers {names} were given more than once; pass one fit each")
    for challenger in fits:
        shapes = {name: forecast.shape[0] for name, forecast in challenger.forecasts_kw.items()}
        if shapes != {name: len(starts) for name, starts in windows.items()}:
            raise TrainingError(
                f"meter {meter_id!r}: the {challenger.name} challenger was scored on other windows than the given "
                "series has; fit it on this series with fit_challenger"
            )


def select_and_register(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    prepared: PreparedSeries,
    fits: Sequence[ChallengerFit],
) -> TrainingOutcome:
    """Return the outcome of scoring ``fits`` against the baselines and champion, selecting and registering.

    Parameters
    ----------
    config : PowercastConfig
        Root, preparation, training and interval settings (recorded on each model card).
    meter_id : str
        The meter the challengers belong to.
    run_id : str
        Names the registered versions (``<run_id>-<cell>``) and the run folder; re-running a
        run id replaces what it wrote.
    prepared : PreparedSeries
        The series every fit in ``fits`` learned from and was scored on.
    fits : sequence of ChallengerFit
        One per cell, from ``fit_challenger``.

    Raises
    ------
    TrainingError
        No fit, a cell given twice, a fit scored on another series, no validation window, or a
        champion that cannot forecast any of today's validation windows; nothing was registered.
    """
    _check_series_of(prepared, meter_id)
    windows = selectable_windows(prepared)
    _check_fits(meter_id, fits, windows)
    combination = combination_challenger(fits, window_targets_kw(prepared, windows[SELECTION_SET]), run_id)
    fits = [*fits, combination] if combination is not None else list(fits)
    board = _score_contestants(config, meter_id, prepared, fits, windows)
    decision = _decide(board, [challenger.name for challenger in fits])
    # Every contestant is written, a global network too: its weights are stored once per night
    # (registry: models/_global), so under a meter it is a card. A later backtest can replay any
    # of them, a combination's members are always there, and re-running a run id rewrites all.
    versions = {challenger.name: version_name(run_id, challenger.name) for challenger in fits}
    intervals = _calibrate_intervals(config, board, fits)
    leaderboard = _leaderboard(run_id, meter_id, board, fits, versions, intervals, decision)
    for challenger in fits:
        _register_challenger(
            config, run_id, prepared, challenger, versions[challenger.name], leaderboard, intervals[challenger.name]
        )
    data_end_utc = prepared.index_utc[-1] + (prepared.index_utc[1] - prepared.index_utc[0])
    champion_after = _promote_and_record(config, meter_id, run_id, decision, versions, data_end_utc)
    run_dir = _run_dir(config, run_id, meter_id)
    curves = {challenger.name: challenger.fit.curves for challenger in fits if len(challenger.fit.curves)}
    _write_run_report(config, run_dir, run_id, meter_id, leaderboard, decision, champion_after, curves)
    return TrainingOutcome(
        meter_id=meter_id,
        run_id=run_id,
        leaderboard=leaderboard,
        decision=decision,
        champion_version=champion_after,
        versions=versions,
        devices={challenger.name: challenger.device for challenger in fits},
        elapsed_s={challenger.name: challenger.elapsed_s for challenger in fits},
        run_dir=run_dir,
    )


@dataclass(frozen=True)
class _Scoreboard:
    """Tonight's windows, their actuals, and every contestant's forecasts of them in kW."""

    windows: dict[str, np.ndarray]
    actual_kw: dict[str, np.ndarray]
    mase_scale_kw: float
    forecasts_kw: dict[str, dict[str, np.ndarray]]  # challengers' and baselines', by window set
    champion: LoadedModel | None
    champion_error: str | None  # why the champion in service could not be loaded (its files are damaged)
    champion_kw: dict[str, np.ndarray]  # only the windows the champion could forecast
    champion_masks: dict[str, np.ndarray]
    selection_mask: np.ndarray  # validation windows every contestant forecast
    slots: dict[str, np.ndarray]  # each window's interval slot (local time of day it is issued at)
    n_slots: int
    lookback_kw: dict[str, np.ndarray]  # [N, L] each window's input load in kW (scales its interval)

    def selection_mae_kw(self, yhat_kw: np.ndarray) -> float:
        """Return the selection MAE of a forecast of every validation window, on the shared windows."""
        truth = self.actual_kw[SELECTION_SET][self.selection_mask]
        return float(np.abs(yhat_kw[self.selection_mask] - truth).mean())


def _score_contestants(
    config: PowercastConfig,
    meter_id: str,
    prepared: PreparedSeries,
    fits: Sequence[ChallengerFit],
    windows: dict[str, np.ndarray],
) -> _Scoreboard:
    """Return the scoreboard: actuals, challengers', baselines' and the champion's forecasts."""
    actual_kw = {name: window_targets_kw(prepared, starts) for name, starts in windows.items()}
    train_start, train_end = prepared.split_bounds_utc["train"]
    train_rows = (prepared.index_utc >= train_start) & (prepared.index_utc < train_end)
    forecasts_kw: dict[str, dict[str, np.ndarray]] = {challenger.name: challenger.forecasts_kw for challenger in fits}
    for name, baseline in BASELINES.items():
        forecasts_kw[name] = {set_name: baseline(prepared, starts) for set_name, starts in windows.items()}
    champion, champion_error = _readable_champion(config.root, meter_id)
    champion_kw: dict[str, np.ndarray] = {}
    champion_masks: dict[str, np.ndarray] = {}
    selection_mask = np.ones(len(windows[SELECTION_SET]), dtype=bool)
    if champion is not None:
        for name, starts in windows.items():
            champion_kw[name], champion_masks[name] = forecast_champion_kw(
                champion, prepared, config, starts, held_out=name in HELD_OUT_SETS
            )
        selection_mask = champion_masks[SELECTION_SET]
        if not selection_mask.any():
            raise TrainingError(
                f"champion {champion.version} of meter {meter_id!r} cannot forecast any of today's validation windows"
            )
    slots, n_slots = interval_slots(prepared, config, windows)
    return _Scoreboard(
        windows=windows,
        actual_kw=actual_kw,
        mase_scale_kw=seasonal_naive_scale_kw(prepared.target_kw[train_rows], steps_per_day(prepared)),
        forecasts_kw=forecasts_kw,
        champion=champion,
        champion_error=champion_error,
        champion_kw=champion_kw,
        champion_masks=champion_masks,
        selection_mask=selection_mask,
        slots=slots,
        n_slots=n_slots,
        lookback_kw={name: window_lookback_kw(prepared, starts) for name, starts in windows.items()},
    )


def _readable_champion(root: str, meter_id: str) -> tuple[LoadedModel | None, str | None]:
    """Return (the champion or None, why it could not be loaded): a damaged champion competes as none.

    Its challengers can then replace it tonight instead of the meter staying on the fallback.
    """
    try:
        return load_champion(root, meter_id), None
    except RegistryError as exc:
        return None, str(exc)


def _decide(board: _Scoreboard, cells: Sequence[str]) -> Decision:
    """Return the selection decision on the validation windows every contestant forecast."""
    champion = board.champion
    validation_kw = {name: forecasts[SELECTION_SET] for name, forecasts in board.forecasts_kw.items()}
    truth_kw = board.actual_kw[SELECTION_SET][board.selection_mask]
    decision = select_winner(
        challenger_val_mae_kw={cell: board.selection_mae_kw(validation_kw[cell]) for cell in cells},
        baseline_val_mae_kw={name: board.selection_mae_kw(validation_kw[name]) for name in BASELINES},
        champion_val_mae_kw=(
            float(np.abs(board.champion_kw[SELECTION_SET] - truth_kw).mean()) if champion is not None else None
        ),
        champion_version=champion.version if champion is not None else None,
        n_val_windows=int(board.selection_mask.sum()),
    )
    if board.champion_error is None:
        return decision
    return dataclasses.replace(
        decision, reason=f"{decision.reason} (the champion in service is damaged and was not compared: {board.champion_error})"
    )


def _calibrate_intervals(
    config: PowercastConfig, board: _Scoreboard, fits: Sequence[ChallengerFit]
) -> dict[str, ConformalIntervals]:
    """Return each challenger's conformal intervals, fitted on its held-out validation residuals.

    With ``forecast.interval_scale`` the residuals are taken relative to each window's input load.
    """
    truth_kw, slots = board.actual_kw[SELECTION_SET], board.slots[SELECTION_SET]
    lookback_kw = board.lookback_kw[SELECTION_SET]
    return {
        challenger.name: ConformalIntervals(config.forecast.interval_coverage, config.forecast.interval_scale).fit(
            truth_kw, board.forecasts_kw[challenger.name][SELECTION_SET], slots, board.n_slots, lookback_kw
        )
        for challenger in fits
    }


def _leaderboard(
    run_id: str,
    meter_id: str,
    board: _Scoreboard,
    fits: Sequence[ChallengerFit],
    versions: dict[str, str],
    intervals: dict[str, ConformalIntervals],
    decision: Decision,
) -> list[dict[str, Any]]:
    """Return one row per contestant and window set: challengers, then baselines, then the champion."""
    rows: list[dict[str, Any]] = []
    model_of_version = {version: model for model, version in versions.items()}
    for challenger in fits:
        cell = challenger.name
        # Which models a combination averages (JSON report only): the group changes from night to night.
        members = [model_of_version.get(v, v) for v in getattr(challenger.fit.module, "member_versions", ())]
        for name in board.windows:
            forecast_kw = board.forecasts_kw[cell][name]
            coverage = intervals[cell].coverage_of(
                board.actual_kw[name], forecast_kw, board.slots[name], board.lookback_kw[name]
            )
            rows.append(
                _score_row(
                    run_id, meter_id, cell, "challenger", name,
                    score_forecast(board.actual_kw[name], forecast_kw, board.mase_scale_kw),
                    version=versions.get(cell),
                    interval_coverage=coverage,
                    train_time_s=challenger.elapsed_s, device=challenger.device, epochs=challenger.fit.epochs_run,
                    promoted=decision.winner == cell,
                    **({"members": members} if members else {}),
                )
            )
    for name in BASELINES:
        for set_name in board.windows:
            scores = score_forecast(board.actual_kw[set_name], board.forecasts_kw[name][set_name], board.mase_scale_kw)
            rows.append(_score_row(run_id, meter_id, name, "baseline", set_name, scores))
    if board.champion is not None:
        for set_name in board.windows:
            mask = board.champion_masks[set_name]
            if not mask.any():
                continue
            truth_kw = board.actual_kw[set_name][mask]
            scores = score_forecast(truth_kw, board.champion_kw[set_name], board.mase_scale_kw)
            version = board.champion.version
            rows.append(_score_row(run_id, meter_id, "champion", "champion", set_name, scores, version=version))
    return rows


def _register_challenger(
    config: PowercastConfig,
    run_id: str,
    prepared: PreparedSeries,
    challenger: ChallengerFit,
    version: str,
    leaderboard: list[dict[str, Any]],
    intervals: ConformalIntervals,
) -> None:
    """Write a challenger's served (and held-out) weights and its model card to the registry."""
    fit, refit = challenger.fit, challenger.refit
    served_start, served_end = prepared.split_bounds_utc["train"]
    if refit is not None:
        served_end = prepared.split_bounds_utc["val"][1]
    index = prepared.index_utc
    record = ModelRecord(
        cell=challenger.cell,
        scaler=prepared.scaler,
        feature_names=prepared.feature_names,
        prepare_config=config.prepare,
        train_config=config.train,
        training_range_utc=(served_start, served_end),
        data_range_utc=(index[0], index[-1] + (index[1] - index[0])),
        validation_mae_kw=_row_mae(leaderboard, challenger.name, SELECTION_SET),
        metrics={row["window_set"]: _metrics_of(row) for row in leaderboard if row["model"] == challenger.name},
        interval_lo=intervals.lo_,
        interval_hi=intervals.hi_,
        interval_coverage=config.forecast.interval_coverage,
        interval_scale=intervals.scale,
        interval_scale_floor_kw=intervals.scale_floor_kw_,
        run_id=run_id,
        training={
            "device": fit.device,
            "precision": fit.precision,
            "elapsed_s": challenger.elapsed_s,
            "fit_s": fit.elapsed_s,  # the held-out fit (chooses the epochs and is scored)
            "refit_s": challenger.refit_elapsed_s,  # the refit on train + validation, served or not
            "epochs_run": fit.epochs_run,
            "best_epoch": fit.best_epoch,
            "stopped_by": fit.stopped_by,
            "refit_epochs": refit.epochs_run if refit is not None else None,
            "refit_skipped": challenger.refit_skipped,
            "ensemble_members": int(getattr(fit.module.hparams, "n_members", 1)),
            "scope": card_scope(challenger),
        },
    )
    register_model(
        config.root, prepared.meter_id, version, challenger.served_module, record,
        holdout_module=fit.module if refit is not None else None,
    )


def card_scope(challenger: ChallengerFit) -> str:
    """Return the scope its model card names: as trained, and for a combination its members' ("mixed" when a
    global network and a meter's own model are averaged; the combination itself is trained on nothing)."""
    if challenger.cell != COMBINED_MODEL:
        return challenger.scope
    suffix = f"_{GLOBAL_SUFFIX}"
    scopes = {"global" if version.endswith(suffix) else "local" for version in challenger.fit.module.member_versions}
    return scopes.pop() if len(scopes) == 1 else "mixed" if scopes else challenger.scope


def _promote_and_record(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    decision: Decision,
    versions: dict[str, str],
    data_end_utc: pd.Timestamp,
) -> str | None:
    """Move the champion pointer when the decision promotes, record the decision; return the champion after."""
    champion_after = decision.champion_version
    if decision.promoted and decision.winner is not None:
        champion_after = versions[decision.winner]
        promote(config.root, meter_id, champion_after, run_id)
    record_decision(
        config.root,
        meter_id,
        run_id,
        {
            **decision.to_dict(),
            CHAMPION_BEFORE_KEY: decision.champion_version,
            CHAMPION_AFTER_KEY: champion_after,
            CHALLENGER_VERSIONS_KEY: versions,
            # What the night learned from, promoted or not: a run with nothing newer skips training.
            DATA_END_KEY: pd.Timestamp(data_end_utc).isoformat(),
            "decided_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    return champion_after


def train_meter(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    prepared: PreparedSeries | None = None,
    progress: bool | None = None,
) -> TrainingOutcome:
    """Return the outcome of training, scoring, selecting and registering this night's models for one meter.

    The one-call composition of ``fit_challenger`` (each configured cell, in order) and
    ``select_and_register``.

    Parameters
    ----------
    config : PowercastConfig
        Root, preparation, training and interval settings.
    meter_id : str
        The meter to train.
    run_id : str
        Names the registered versions (``<run_id>-<cell>``) and the run folder; re-running a
        run id replaces what it wrote.
    prepared : PreparedSeries, optional
        Use this series instead of preparing the meter from the store.
    progress : bool, optional
        Progress bars; None shows them only on a terminal.

    Raises
    ------
    TrainingError
        A loss became NaN/inf or a split has no window; nothing was registered and the
        champion is unchanged.
    """
    series = prepared if prepared is not None else prepare_meter(config, meter_id)
    _check_series_of(series, meter_id)
    fits = [fit_challenger(config, series, cell, run_id, progress) for cell in config.train.cells]
    return select_and_register(config, meter_id, run_id, series, fits)


def _row_mae(leaderboard: list[dict[str, Any]], model: str, window_set: str) -> float:
    return next(row["mae_kw"] for row in leaderboard if row["model"] == model and row["window_set"] == window_set)


def _metrics_of(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("n_windows", "mae_kw", "rmse_kw", "mase", "mae_kw_by_step", "interval_coverage")
    return {key: row[key] for key in keys}


def _write_run_report(
    config: PowercastConfig,
    run_dir: str,
    run_id: str,
    meter_id: str,
    leaderboard: list[dict[str, Any]],
    decision: Decision,
    champion_after: str | None,
    curves: dict[str, pd.DataFrame],
) -> None:
    filesystem, _ = resolve_filesystem(config.root)
    payload = {
        "run_id": run_id,
        "meter_id": meter_id,
        "decision": decision.to_dict(),
        "champion_after": champion_after,
        "rows": leaderboard,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    atomic_write_json(f"{run_dir}/leaderboard.json", payload, filesystem)
    atomic_write_parquet(
        f"{run_dir}/leaderboard.parquet", pa.Table.from_pylist(leaderboard, schema=LEADERBOARD_SCHEMA), filesystem=filesystem
    )
    png = plot_loss_curves(curves, title=f"{meter_id} · run {run_id}: L1 loss (scaled target)")
    atomic_write_bytes(f"{run_dir}/curves.png", png, filesystem)
