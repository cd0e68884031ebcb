"""One night's training for a fleet: local models per meter, global models over every meter, selection per meter.

``train.scope`` chooses the contestants. ``local`` (the default) trains each configured cell on
each meter alone, as ``pipeline.train_meter`` does. ``global`` trains one network per cell on the
training windows of every meter, each meter scaled by its own training statistics (its
``PreparedSeries`` already is), on a budget of ``train.global_steps_per_epoch`` sampled batches
per epoch, early-stopped on a seeded sample of ``train.global_val_windows`` validation windows
across meters: its cost follows that budget, not the number of meters. A global network is
``train.global_hidden_sizes`` wide (``train.hidden_sizes`` when None), records the meters it
learned (``meter_ids``, in the sorted order of the fleet) and, with ``train.meter_embedding_dim``,
learns a vector per meter; each meter's challenger is the network bound to that meter
(``RNNForecaster.for_meter``), so a registered global model forecasts with its meter's row after
reloading. ``both`` lets the two compete. Selection is per meter, on that meter's own validation windows, among its local cells,
the global cells (named ``gru_global``, ``lstm_global``), the baselines and its champion.

With ``train.refit_on_validation`` a global model is chosen and scored like a local one: the
held-out fit picks the epoch count and is what selection scores; a refit on every meter's
training and validation windows, for that many epochs on the same step budget, is what serves
(the most recent months matter most). Every meter's registry gets a card for it (its weights
are stored once per night, in ``models/_global``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from powercast.core.config import RECURRENT_CELLS, PowercastConfig, TrainConfig
from powercast.core.errors import PowercastError, TrainingError
from powercast.io import layout
from powercast.io.atomic import is_uri, resolve_filesystem
from powercast.io.locking import meter_lock
from powercast.prepare.datamodule import fleet_train_loader, fleet_val_loader
from powercast.prepare.series import PreparedSeries, prepare_meters
from powercast.store.readings import list_meters
from powercast.training.fit import (
    FitResult,
    build_forecaster,
    check_devices,
    fit_module,
    local_log_dir,
    resolve_accelerator,
    target_scale_kw,
)
from powercast.training.pipeline import (
    HELD_OUT_SETS,
    ChallengerFit,
    TrainingOutcome,
    fit_challenger,
    forecast_module_kw,
    scoring_windows,
    select_and_register,
)

# Where the global models' training logs go: runs/<run_id>/<FLEET_RUN_FOLDER>/<cell>_global.
FLEET_RUN_FOLDER = layout.FLEET_RUN_FOLDER


@dataclass
class FleetOutcome:
    """What a fleet's night of training did: each meter's outcome, and the meters that failed (meter → error)."""

    outcomes: dict[str, TrainingOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    global_fits: dict[str, GlobalFit] = field(default_factory=dict)
    failed_cells: dict[str, dict[str, str]] = field(default_factory=dict)  # meter → cell → error, left out
    global_failure: str | None = None  # why tonight's global networks could not be trained; None when they were


def fit_global(
    config: PowercastConfig, series: Sequence[PreparedSeries], cell: str, log_dir: str | Path, progress: bool | None
) -> FitResult:
    """Return one ``cell`` network trained on the windows of every series, early-stopped on a sample of theirs."""
    _check_same_inputs(series)
    return _train_global(config.train, series, series, cell, f"{cell}_global", log_dir, progress)


def refit_global(
    config: PowercastConfig, series: Sequence[PreparedSeries], held_out: FitResult, log_dir: str | Path,
    progress: bool | None,
) -> FitResult:
    """Return a fresh ``held_out`` network trained on every meter's training and validation windows.

    As ``fit.refit_forecaster`` does for one meter: the same seed and step budget, exactly the
    epochs the held-out fit found best, the last weights kept. The logged validation MAE is
    in-sample and only shown.
    """
    cell = held_out.name.removesuffix("_global")
    train = config.train.model_copy(update={"max_epochs": held_out.best_epoch + 1})
    joined = [_validation_joined_to_training(item) for item in series]
    return _train_global(
        train, joined, series, cell, f"{cell}_global-refit", log_dir, progress, early_stopping=False, restore_best=False
    )


def _train_global(
    train: TrainConfig,
    train_series: Sequence[PreparedSeries],
    val_series: Sequence[PreparedSeries],
    cell: str,
    name: str,
    log_dir: str | Path,
    progress: bool | None,
    **fit_options: bool,
) -> FitResult:
    """Return a ``cell`` network trained on sampled batches of ``train_series``' training windows (the budget of
    ``train.global_steps_per_epoch``), validated on a seeded sample of ``val_series``' validation windows."""
    train = global_train_config(train)
    meter_ids = [item.meter_id for item in train_series]
    if [item.meter_id for item in val_series] != meter_ids or len(set(meter_ids)) != len(meter_ids):
        raise TrainingError(f"a global model needs each meter once, in one order, for training and validation: {meter_ids}")
    # Windows carry their meter's index only for an embedding to read (without one, batches are as they were).
    indexed = meter_ids if train.meter_embedding_dim else None
    pl.seed_everything(train.seed, workers=True, verbose=False)
    train_loader = fleet_train_loader(train_series, train.batch_size, train.global_steps_per_epoch, train.seed, indexed)
    val_loader = fleet_val_loader(val_series, train.batch_size, train.global_val_windows, train.seed, indexed)
    # The logged val_mae_kw of a global model is in a typical meter's kW (the median scale).
    scale_kw = statistics.median(target_scale_kw(item) for item in val_series)
    module = build_forecaster(val_series[0], train, cell, scale_kw=scale_kw, meter_ids=meter_ids)
    return fit_module(
        module, train_loader, val_loader, train, name, log_dir, progress, devices=train.global_devices, **fit_options
    )


def global_train_config(train: TrainConfig) -> TrainConfig:
    """Return ``train`` as a global network is built with: ``train.global_hidden_sizes`` wide when set."""
    if train.global_hidden_sizes is None:
        return train
    return train.model_copy(update={"hidden_sizes": list(train.global_hidden_sizes)})


def _validation_joined_to_training(prepared: PreparedSeries) -> PreparedSeries:
    """Return the series with its validation windows (complete and through gaps) counted as training windows."""

    def joined(starts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "val" not in starts:
            return starts
        return {**starts, "train": np.concatenate([starts.get("train", np.zeros(0, dtype=np.int64)), starts["val"]])}

    return dataclasses.replace(
        prepared, window_starts=joined(prepared.window_starts), gap_window_starts=joined(prepared.gap_window_starts)
    )


def _check_same_inputs(series: Sequence[PreparedSeries]) -> None:
    """Raise TrainingError unless every series has the same features, lookback and horizon."""
    if not series:
        raise TrainingError("a global model needs at least one meter's series")
    shapes = {(item.feature_names, item.lookback_steps, item.horizon_steps) for item in series}
    if len(shapes) > 1:
        raise TrainingError(
            f"a global model needs one input layout, the series have {len(shapes)}: {sorted(map(str, shapes))}"
        )


@dataclass(frozen=True)
class GlobalFit:
    """One global network: the held-out fit selection scores, and the refit that serves (None: the fit serves)."""

    fit: FitResult
    refit: FitResult | None = None
    refit_skipped: str | None = None
    discarded_refit_s: float = 0.0  # a refit that ran but is not served (out of budget, failed)

    @property
    def elapsed_s(self) -> float:
        """Return the seconds of the held-out fit and its refit together, served or not."""
        return self.fit.elapsed_s + (self.refit.elapsed_s if self.refit is not None else self.discarded_refit_s)

    @property
    def device(self) -> str:
        """Return where the network trained."""
        return self.fit.device


def fit_global_models(
    config: PowercastConfig, series: Sequence[PreparedSeries], run_id: str, progress: bool | None = None
) -> dict[str, GlobalFit]:
    """Return one global network per configured cell, trained on ``series`` (logs under ``runs/<run_id>/_fleet``)."""
    filesystem, base = resolve_filesystem(config.root)
    with local_log_dir(filesystem, layout.run_dir(base, run_id, FLEET_RUN_FOLDER), "powercast-global-") as log_dir:
        cells = [cell for cell in config.train.cells if cell in RECURRENT_CELLS]  # global models are networks
        return {cell: _fit_and_refit_global(config, series, cell, log_dir, progress) for cell in cells}


def _fit_and_refit_global(
    config: PowercastConfig, series: Sequence[PreparedSeries], cell: str, log_dir: Path, progress: bool | None
) -> GlobalFit:
    """Return the held-out global fit of ``cell`` and, with ``train.refit_on_validation``, its refit."""
    fit = fit_global(config, series, cell, log_dir / f"{cell}_global", progress)
    if not config.train.refit_on_validation:
        return GlobalFit(fit, refit_skipped="train.refit_on_validation is off")
    if fit.stopped_by == "max_time" or fit.elapsed_s >= config.train.max_time_s:
        return GlobalFit(fit, refit_skipped=f"the held-out fit used the whole train.max_time_s={config.train.max_time_s:g}")
    budget = config.model_copy(update={"train": config.train.model_copy(update={"max_time_s": config.train.max_time_s - fit.elapsed_s})})
    started = time.perf_counter()
    try:
        refit = refit_global(budget, series, fit, log_dir / f"{cell}_global-refit", progress)
    except PowercastError as exc:  # a good held-out fit is still a model worth serving
        return GlobalFit(fit, refit_skipped=f"the refit failed: {exc}", discarded_refit_s=time.perf_counter() - started)
    if refit.stopped_by == "max_time":
        why = "the refit did not finish in what was left of train.max_time_s"
        return GlobalFit(fit, refit_skipped=why, discarded_refit_s=refit.elapsed_s)
    return GlobalFit(fit, refit)


def global_challenger(trained: GlobalFit, cell: str, prepared: PreparedSeries) -> ChallengerFit:
    """Return a global network as one meter's challenger: the shared modules, this meter's forecasts in kW.

    The held-out fit forecasts where scores must be held out (validation), the served model elsewhere.
    """
    fit = _bound_to(trained.fit, prepared.meter_id)
    refit = _bound_to(trained.refit, prepared.meter_id) if trained.refit is not None else None
    served = refit.module if refit is not None else fit.module
    windows = scoring_windows(prepared)
    return ChallengerFit(
        cell=cell,
        fit=fit,
        forecasts_kw={
            name: forecast_module_kw(fit.module if name in HELD_OUT_SETS else served, prepared, starts)
            for name, starts in windows.items()
        },
        refit=refit,
        refit_skipped=trained.refit_skipped,
        discarded_refit_s=trained.discarded_refit_s,
        scope="global",
    )


def _bound_to(fit: FitResult, meter_id: str) -> FitResult:
    """Return ``fit`` with its network bound to ``meter_id`` (weights shared): its forecasts read that meter's
    embedding row, and the card it is registered with names the meter (``serving_meter``)."""
    return dataclasses.replace(fit, module=fit.module.for_meter(meter_id))


def local_challengers(
    config: PowercastConfig, prepared: PreparedSeries, run_id: str, progress: bool | None = None
) -> tuple[list[ChallengerFit], dict[str, str]]:
    """Return this meter's own fits of the configured cells (when ``train.scope`` and ``train.local_meters``
    give it local models) and (cell → error) of those that failed; a failed cell is left out and the others
    still compete."""
    if not config.train.trains_local_models_of(prepared.meter_id):
        return [], {}
    fits, failed = [], {}
    for cell in config.train.cells:
        try:
            fits.append(fit_challenger(config, prepared, cell, run_id, progress))
        except PowercastError as exc:
            failed[cell] = str(exc)
    return fits, failed


def check_global_devices(config: PowercastConfig) -> None:
    """Raise ConfigError now when ``train.global_devices`` asks for more GPUs than there are, before a fleet is read."""
    check_devices(resolve_accelerator(config.train.accelerator), config.train.global_devices)


def local_meters_without_readings(config: PowercastConfig) -> list[str]:
    """Return the meters ``train.local_meters`` names that the store holds no readings of.

    A typo there passes unnoticed otherwise: no meter of that id trains its own models.
    """
    if not config.train.local_meters:
        return []
    return sorted(set(config.train.local_meters) - set(list_meters(config.root)))


def trains_global(config: PowercastConfig) -> bool:
    """Return whether ``train.scope`` asks for global models tonight."""
    return config.train.scope in ("global", "both")


def prepare_fleet(
    config: PowercastConfig, meter_ids: Sequence[str], end_utc: datetime | None = None
) -> tuple[list[PreparedSeries], dict[str, str]]:
    """Return (the meters' series that can select a model, sorted by meter; meter → why it cannot).

    Sorted, so global models see the same order of windows whatever order the meters were asked in.
    """
    prepared, left_out = prepare_meters(config, meter_ids, end_utc=end_utc)  # one scan of the store
    series: list[PreparedSeries] = []
    for meter_id, item in prepared.items():
        if len(item.window_starts["val"]):
            series.append(item)
        else:
            left_out[meter_id] = "no validation window to select a model on"
    return sorted(series, key=lambda item: item.meter_id), left_out


def train_fleet(
    config: PowercastConfig,
    meter_ids: Sequence[str],
    run_id: str,
    progress: bool | None = None,
    lock_timeout_s: float | None = None,
    end_utc: datetime | None = None,
) -> FleetOutcome:
    """Return the outcome of training, selecting and registering tonight's models for every meter.

    A meter whose series cannot be prepared or whose selection fails is recorded in
    ``failures`` and the others carry on. Global networks that cannot be trained (a PowercastError:
    a diverging or failed fit) are recorded in ``global_failure`` and the meters' own models still
    compete, as on a live night; a meter with no challenger left fails alone. As in the flow, one
    cell's failure leaves out every global cell of the night (they are trained together). Unlike
    the flow, which records any failed task, any other exception (a bug, CUDA out of memory)
    propagates.
    With ``lock_timeout_s`` (local roots), each meter's registry writes happen under its lock.
    With ``end_utc``, only the readings before it are read (a night replayed in a walk-forward).
    """
    outcome = FleetOutcome()
    if trains_global(config):
        check_global_devices(config)
    usable, outcome.failures = prepare_fleet(config, meter_ids, end_utc=end_utc)
    if trains_global(config) and usable:
        try:
            outcome.global_fits = fit_global_models(config, usable, run_id, progress)
        except PowercastError as exc:  # the meters' own models are still worth a night (the flow does the same)
            outcome.global_failure = str(exc)
    for prepared in usable:
        try:
            local, failed_cells = local_challengers(config, prepared, run_id, progress)
            if failed_cells:
                outcome.failed_cells[prepared.meter_id] = failed_cells
            fits = local + [global_challenger(fit, cell, prepared) for cell, fit in outcome.global_fits.items()]
            if not fits:
                why = {**failed_cells, **({"global": outcome.global_failure} if outcome.global_failure else {})}
                raise TrainingError(f"meter {prepared.meter_id!r}: no challenger to select from ({why})")
            with _meter_lock(config, prepared.meter_id, run_id, lock_timeout_s):
                outcome.outcomes[prepared.meter_id] = select_and_register(
                    config, prepared.meter_id, run_id, prepared, fits
                )
        except PowercastError as exc:
            outcome.failures[prepared.meter_id] = str(exc)
    return outcome


def _meter_lock(
    config: PowercastConfig, meter_id: str, run_id: str, lock_timeout_s: float | None
) -> AbstractContextManager[object]:
    """Return the meter's lock when asked for and the root is local, else a no-op."""
    if lock_timeout_s is None or is_uri(config.root):
        return nullcontext()
    return meter_lock(config.root, meter_id, lock_timeout_s, holder=run_id)


__all__ = [
    "FleetOutcome",
    "GlobalFit",
    "check_global_devices",
    "fit_global",
    "fit_global_models",
    "global_challenger",
    "global_train_config",
    "local_challengers",
    "local_meters_without_readings",
    "prepare_fleet",
    "refit_global",
    "train_fleet",
    "trains_global",
]
