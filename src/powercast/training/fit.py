"""Training one forecaster: Trainer set-up, early stopping, time budget, NaN guard, determinism.

``fit_forecaster`` trains one cell on a ``PreparedSeries`` and returns the best-validation
weights as a CPU module together with where and how long it trained. It is seeded (same seed on
CPU → identical weights and metrics), trains in bf16 mixed precision on a GPU, stops early on
validation MAE or at the time budget, and raises ``TrainingError`` naming the model and epoch as
soon as a loss is NaN/inf, before anything could be registered.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException
from torch.utils.data import DataLoader

from powercast.core.config import TrainConfig
from powercast.core.errors import ConfigError, TrainingError
from powercast.models.rnn import RNNForecaster
from powercast.prepare.datamodule import WindowDataModule
from powercast.prepare.series import PreparedSeries
from powercast.prepare.windows import window_has_invalid

MONITOR = "val_mae"
# Lightning's best-epoch checkpoint of a fit, inside its log folder: read back once, then removed.
CHECKPOINT_FOLDER = "checkpoints"


@dataclass(frozen=True, eq=False)
class FitResult:
    """A trained model with the record of its training.

    Attributes
    ----------
    name : str
        Model name (e.g. ``"gru"``).
    module : RNNForecaster
        The kept weights (best validation epoch unless asked for the last), in eval mode, on CPU.
    device : str
        Where it trained (``"cpu"`` or ``"cuda:<name>"``).
    precision : str
        Lightning precision used (``"32-true"`` on CPU, ``"bf16-mixed"`` on GPU).
    elapsed_s : float
        Wall-clock training time.
    epochs_run : int
        Epochs completed.
    best_epoch : int
        Epoch (0-based) of the kept weights.
    best_val_mae : float
        Validation MAE of the kept weights, in scaled units (as logged per epoch).
    stopped_by : str
        ``"early_stopping"``, ``"max_time"`` or ``"max_epochs"``.
    curves : pd.DataFrame
        One row per epoch: ``epoch``, ``train_loss``, ``val_mae`` (scaled) and ``val_mae_kw`` when logged.
    """

    name: str
    module: RNNForecaster  # or a BoostedForecaster (powercast.models.boosting), which has the same forecast API
    device: str
    precision: str
    elapsed_s: float
    epochs_run: int
    best_epoch: int
    best_val_mae: float
    stopped_by: str
    curves: pd.DataFrame


class NonFiniteLossGuard(Callback):
    """Raise ``TrainingError`` naming the model and epoch as soon as a loss is NaN or infinite."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        """Check the training loss of every batch."""
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise TrainingError(
                f"model {self.name}: training loss became {float(loss)} at epoch {trainer.current_epoch}, "
                f"batch {batch_idx}; lower train.learning_rate or check the inputs. Nothing was registered, "
                "the champion stays in place"
            )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the validation loss of every epoch."""
        value = trainer.callback_metrics.get(MONITOR)
        if value is not None and not torch.isfinite(value).all():
            raise TrainingError(
                f"model {self.name}: validation MAE became {float(value)} at epoch {trainer.current_epoch}; "
                "lower train.learning_rate or check the inputs. Nothing was registered, the champion stays in place"
            )


def resolve_accelerator(requested: str) -> str:
    """Return ``"gpu"`` or ``"cpu"`` for a configured accelerator (``auto`` picks a GPU when present)."""
    if requested not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"train.accelerator must be auto, cpu or gpu, got {requested!r}")
    has_gpu = torch.cuda.is_available()
    if requested == "gpu" and not has_gpu:
        raise ConfigError("train.accelerator is 'gpu' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        return "gpu" if has_gpu else "cpu"
    return requested


def device_label(accelerator: str) -> str:
    """Return a human label of the device an accelerator trains on (``cpu`` or ``cuda:<name>``)."""
    if accelerator == "gpu":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


def target_scale_kw(prepared: PreparedSeries) -> float:
    """Return how many kW one scaled unit of ``prepared``'s target is (to log validation MAE in kW)."""
    return float(prepared.scaler.inverse_target_kw(np.array(1.0)) - prepared.scaler.inverse_target_kw(np.array(0.0)))


def build_forecaster(
    prepared: PreparedSeries,
    config: TrainConfig,
    cell: str,
    scale_kw: float | None = None,
    meter_ids: Sequence[str] | None = None,
) -> RNNForecaster:
    """Return an untrained ``RNNForecaster`` sized for ``prepared`` and configured by ``config``.

    ``scale_kw`` (kW per scaled unit, for the logged ``val_mae_kw``) defaults to ``prepared``'s own.
    ``meter_ids`` makes it a global network: the meters it learns from are recorded in its
    hyperparameters (in that order), and with ``config.meter_embedding_dim`` each gets a learned
    embedding row; a local network (None) has neither.
    """
    fleet_options = (
        {} if meter_ids is None else {"meter_ids": list(meter_ids), "meter_embedding_dim": config.meter_embedding_dim}
    )
    return RNNForecaster(
        n_features=len(prepared.feature_names),
        lookback_steps=prepared.lookback_steps,
        horizon_steps=prepared.horizon_steps,
        cell=cell,
        hidden_sizes=tuple(config.hidden_sizes),
        dropout=config.dropout,
        segment_steps=min(config.segment_steps, prepared.lookback_steps),
        highway_steps=prepared.lookback_steps if config.highway else 0,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        scheduler=config.scheduler,
        target_scale_kw=target_scale_kw(prepared) if scale_kw is None else scale_kw,
        n_members=config.ensemble_members,
        **fleet_options,
    )


def check_windows_finite(prepared: PreparedSeries, name: str) -> None:
    """Raise ``TrainingError`` if any training or validation window holds NaN/inf (no NaN may reach a model)."""
    window_steps = prepared.lookback_steps + prepared.horizon_steps
    invalid = window_has_invalid(~np.isfinite(prepared.inputs).all(axis=1), window_steps)
    for split in ("train", "val"):
        starts = prepared.window_starts[split]
        if starts.size == 0:
            raise TrainingError(
                f"model {name}: meter {prepared.meter_id!r} has no {split} window "
                f"(excluded: {prepared.exclusions.get(split)}); ingest more readings or widen the split"
            )
        bad = starts[invalid[starts]]
        if bad.size:
            raise TrainingError(
                f"model {name}: {bad.size} {split} window(s) of meter {prepared.meter_id!r} hold NaN/inf inputs "
                f"(first at {prepared.index_utc[int(bad[0])]}); nothing was trained, the champion stays in place"
            )


def _fresh_log_dir(log_dir: str | Path) -> Path:
    """Return ``log_dir`` as a Path, emptied of any earlier log and checkpoint."""
    folder = Path(log_dir)
    # A re-run of the same run replaces this model's log and checkpoint rather than mixing with them.
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def _fit_callbacks(
    name: str, folder: Path, config: TrainConfig, early_stopping: bool
) -> tuple[ModelCheckpoint, list[Callback]]:
    """Return (the best-validation checkpoint, every callback of the fit: NaN guard, checkpoint, early stopping)."""
    checkpoint = ModelCheckpoint(
        dirpath=folder / CHECKPOINT_FOLDER, filename=f"{name}-best", monitor=MONITOR, mode="min", save_top_k=1,
        enable_version_counter=False,
    )
    callbacks: list[Callback] = [NonFiniteLossGuard(name), checkpoint]
    if early_stopping:
        stopper = EarlyStopping(monitor=MONITOR, mode="min", patience=config.patience_epochs, check_finite=False)
        callbacks.append(stopper)
    return checkpoint, callbacks


def _trainer(
    config: TrainConfig,
    accelerator: str,
    precision: str,
    callbacks: list[Callback],
    logger: CSVLogger,
    n_train_batches: int,
    show_progress: bool,
    folder: Path,
    devices: int,
) -> pl.Trainer:
    """Return the Lightning Trainer of one fit (deterministic on CPU, stopped at the epoch or time budget).

    On more than one device it is Lightning's DDP with spawned processes ("ddp_spawn"): a fit runs
    inside a Prefect task or a library call, where the default DDP launcher (which re-runs the
    calling script once per device) cannot work. The trained weights come back to this process.
    """
    return pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        precision=precision,
        max_epochs=config.max_epochs,
        max_time=timedelta(seconds=config.max_time_s),
        gradient_clip_val=config.gradient_clip,
        deterministic=accelerator == "cpu",
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=max(1, min(50, math.ceil(n_train_batches / devices))),  # each process runs its share
        enable_progress_bar=show_progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(folder),
    )


def _kept_module(trained: RNNForecaster, best_checkpoint_path: str, restore_best: bool) -> RNNForecaster:
    """Return a CPU copy of the weights to keep, in eval mode: the best checkpoint's, or the last epoch's."""
    kept = RNNForecaster(**trained.hparams)
    if restore_best:
        state = torch.load(best_checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    else:
        state = {key: tensor.detach().to("cpu") for key, tensor in trained.state_dict().items()}
    kept.load_state_dict(state)
    kept.eval()
    return kept


def fit_module(
    module: RNNForecaster,
    train_loader: DataLoader,
    val_loader: DataLoader,
    config: TrainConfig,
    name: str,
    log_dir: str | Path,
    progress: bool | None = None,
    early_stopping: bool = True,
    restore_best: bool = True,
    devices: int = 1,
) -> FitResult:
    """Return ``module`` trained with the configured Trainer (reloaded at its best validation MAE by default).

    Parameters
    ----------
    module : RNNForecaster
        Untrained module (seed before building it for reproducible weights).
    train_loader, val_loader : DataLoader
        Batches of (x [B, L, F], y [B, H]).
    config : TrainConfig
        Epochs, patience, time budget, gradient clipping, accelerator, seed.
    name : str
        Model name used in logs, checkpoints and error messages.
    log_dir : str or Path
        Folder for the CSV log and the best checkpoint of this model.
    progress : bool, optional
        Show a progress bar; None shows one only when stderr is a terminal.
    early_stopping : bool
        Stop when validation MAE has not improved for ``config.patience_epochs`` epochs.
    restore_best : bool
        Return the weights of the best validation epoch; False keeps the last epoch's weights.
    devices : int
        Devices to train on at once (DDP over spawned processes when more than 1); each device
        takes its share of ``train_loader``'s batches, so an epoch costs the same steps in all.
    """
    accelerator = resolve_accelerator(config.accelerator)
    check_devices(accelerator, devices)
    precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    show_progress = sys.stderr.isatty() if progress is None else progress
    folder = _fresh_log_dir(log_dir)
    checkpoint, callbacks = _fit_callbacks(name, folder, config, early_stopping)
    logger = CSVLogger(save_dir=str(folder), name="csv", version=name)
    threads = config.cpu_threads if accelerator == "cpu" else 0
    try:
        # The Trainer is built inside the quiet block too: Lightning logs its device lines when it is created.
        with _quiet_lightning(show_progress), _cpu_threads(threads), _spawn_sharing(devices):
            trainer = _trainer(
                config, accelerator, precision, callbacks, logger, len(train_loader), show_progress, folder, devices
            )
            started = time.perf_counter()
            if devices > 1:
                _fit_in_processes(trainer, module, train_loader, val_loader, name)
            else:
                trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        elapsed_s = time.perf_counter() - started
        if not checkpoint.best_model_path:
            raise TrainingError(
                f"model {name}: no validation epoch finished within train.max_time_s={config.max_time_s}; raise the budget"
            )
        kept = _kept_module(module, checkpoint.best_model_path, restore_best)
    finally:
        # The kept weights are in memory now, and the registry stores what serves: left in runs/, a
        # checkpoint per model and night grew the data root by megabytes a meter a night, read by nothing.
        shutil.rmtree(folder / CHECKPOINT_FOLDER, ignore_errors=True)
    curves = _epoch_curves(Path(logger.log_dir) / "metrics.csv")
    kept_row = curves[MONITOR].idxmin() if restore_best else curves[MONITOR].last_valid_index()
    return FitResult(
        name=name,
        module=kept,
        device=device_label(accelerator) + (f" x{devices}" if devices > 1 else ""),
        precision=precision,
        elapsed_s=elapsed_s,
        epochs_run=int(trainer.current_epoch) if devices == 1 else len(curves),
        best_epoch=int(curves.loc[kept_row, "epoch"]),
        best_val_mae=float(curves.loc[kept_row, MONITOR]),
        stopped_by=_stop_reason(trainer, callbacks, config) if devices == 1 else _spawned_stop_reason(curves, config, early_stopping),
        curves=curves,
    )


def check_devices(accelerator: str, devices: int) -> None:
    """Raise ConfigError when ``devices`` (``train.global_devices``) asks for more GPUs than the machine has.

    ``accelerator`` is a resolved one (``cpu`` or ``gpu``); on CPU any count runs that many processes.
    """
    if devices < 1:
        raise ConfigError(f"train.global_devices must be >= 1, got {devices}")
    if accelerator == "gpu" and devices > torch.cuda.device_count():
        raise ConfigError(
            f"train.global_devices={devices} but this machine has {torch.cuda.device_count()} GPU(s); "
            "ask for at most that many"
        )


def _fit_in_processes(
    trainer: pl.Trainer, module: RNNForecaster, train_loader: DataLoader, val_loader: DataLoader, name: str
) -> None:
    """Run ``trainer.fit`` over spawned processes, as a one-process fit fails: TrainingError naming the model.

    An error inside a spawned process reaches this one as torch's ProcessRaisedException (or
    ProcessExitedException when the process died); the callers keep a good held-out fit when a
    refit raises a PowercastError, so it is turned into one, with the child's own last line. The
    address Lightning chose for the processes' rendezvous is forgotten afterwards, so a later fit
    in this process picks a fresh port instead of reusing one that may still be held.
    """
    saved = {key: os.environ.get(key) for key in ("MASTER_ADDR", "MASTER_PORT")}
    try:
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    except (ProcessRaisedException, ProcessExitedException) as exc:
        last_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"model {name}: a training process failed: {last_line}") from exc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _spawned_stop_reason(curves: pd.DataFrame, config: TrainConfig, early_stopping: bool) -> str:
    """Return why a multi-device fit stopped, from its epoch log: the spawned processes' trainer and
    early-stopping state do not come back to this process (only the weights and the best checkpoint do)."""
    if len(curves) >= config.max_epochs:
        return "max_epochs"
    epochs_since_best = len(curves) - 1 - int(curves[MONITOR].idxmin())
    if early_stopping and epochs_since_best >= config.patience_epochs:
        return "early_stopping"
    return "max_time"


@contextmanager
def local_log_dir(filesystem: pafs.FileSystem, path: str, prefix: str) -> Iterator[Path]:
    """Yield a local folder for Lightning's logs and checkpoints, removing it afterwards when it is a temp one.

    Parameters
    ----------
    filesystem : pyarrow.fs.FileSystem
        Filesystem of the destination ``path``.
    path : str
        Where the logs belong; used as is on a local filesystem.
    prefix : str
        Name prefix of the temp folder used (and deleted when the block ends) for any other filesystem.
    """
    if isinstance(filesystem, pafs.LocalFileSystem):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def fit_forecaster(
    prepared: PreparedSeries,
    config: TrainConfig,
    cell: str,
    log_dir: str | Path,
    progress: bool | None = None,
) -> FitResult:
    """Return a ``cell`` forecaster trained on ``prepared``'s train windows, best on its validation windows.

    Seeds everything first, so two CPU runs with the same config give identical weights.
    """
    check_windows_finite(prepared, cell)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = WindowDataModule(prepared, batch_size=config.batch_size, shuffle_train=True, seed=config.seed)
    module = build_forecaster(prepared, config, cell)
    return fit_module(module, data.train_dataloader(), data.val_dataloader(), config, cell, log_dir, progress)


def refit_forecaster(
    prepared: PreparedSeries,
    config: TrainConfig,
    cell: str,
    epochs: int,
    log_dir: str | Path,
    progress: bool | None = None,
) -> FitResult:
    """Return a ``cell`` forecaster trained on the train and validation windows together for ``epochs`` epochs.

    The second half of "choose on validation, then refit": ``fit_forecaster`` has found how many
    epochs generalise (its best epoch + 1); this run trains a fresh model with the same seed on
    every training and validation window for exactly that many epochs (the one-cycle schedule
    anneals over them) and keeps the last weights. No early stopping: the validation windows are
    now training data, so the logged ``val_mae`` is in-sample and only shown, never used to choose.
    """
    if epochs < 1:
        raise TrainingError(f"model {cell}: refit needs at least one epoch, got {epochs}")
    check_windows_finite(prepared, cell)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = WindowDataModule(prepared, batch_size=config.batch_size, shuffle_train=True, seed=config.seed)
    refit_config = config.model_copy(update={"max_epochs": epochs})
    module = build_forecaster(prepared, refit_config, cell)
    return fit_module(
        module, data.train_and_val_dataloader(), data.val_dataloader(), refit_config, f"{cell}-refit", log_dir,
        progress, early_stopping=False, restore_best=False,
    )


def _stop_reason(trainer: pl.Trainer, callbacks: list[Callback], config: TrainConfig) -> str:
    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            return "early_stopping"
    if trainer.current_epoch < config.max_epochs:
        return "max_time"
    return "max_epochs"


def _epoch_curves(metrics_csv: Path) -> pd.DataFrame:
    """Return one row per epoch from Lightning's CSV log (train and validation rows merged)."""
    if not metrics_csv.is_file():
        return pd.DataFrame(columns=["epoch", "train_loss", MONITOR])
    raw = pd.read_csv(metrics_csv)
    columns = [c for c in ("train_loss", MONITOR, f"{MONITOR}_kw") if c in raw.columns]
    return raw.groupby("epoch", as_index=False)[columns].first().sort_values("epoch").reset_index(drop=True)


@contextmanager
def _spawn_sharing(devices: int) -> Iterator[None]:
    """Share tensors with spawned DDP processes through files in shared memory inside the block, then restore.

    torch's default on Linux passes file descriptors, and a spawned process failed to rebuild the
    fit's tensors from them ("unable to resize file <filename not specified>"); the file-system
    strategy works. One device spawns nothing and changes nothing.
    """
    if devices == 1:
        yield
        return
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        torch.multiprocessing.set_sharing_strategy(previous)


@contextmanager
def _cpu_threads(n_threads: int) -> Iterator[None]:
    """Use ``n_threads`` torch intra-op threads inside the block (0 = leave as is), then restore."""
    previous = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _quiet_lightning:
    """Silence Lightning's info lines (GPU available, tips) unless a progress bar is wanted.

    Also hides one deprecation notice Lightning raises against newer torch versions on every fit.
    """

    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")

    def __init__(self, show: bool) -> None:
        self.show = show
        self.levels: dict[str, int] = {}
        self.warning_filters = warnings.catch_warnings()

    def __enter__(self) -> None:
        self.warning_filters.__enter__()
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        if not self.show:
            for logger_name in self.names:
                logger = logging.getLogger(logger_name)
                self.levels[logger_name] = logger.level
                logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        for logger_name, level in self.levels.items():
            logging.getLogger(logger_name).setLevel(level)
        self.warning_filters.__exit__(*exc)
