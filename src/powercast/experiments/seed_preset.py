"""The experiment this project grew from, reproduced faithfully, and a report on why its numbers mislead.

The original tutorial this project grew from trains a stacked LSTM(75, 30, 30) and a
GRU(75, 30, 30), each followed by Dense(1), on the minute readings of the UCI file:

* every '?' (missing reading) becomes 0, as if the house had used no power;
* a ``MinMaxScaler`` is fit on the whole series (test rows included) before the split;
* lookback 1, horizon 1: the 7 measured values of minute t-1 predict active power at minute t;
* the first 70 % of rows train, the last 30 % test (and serve as Keras' validation data);
* MAE loss, Adam (lr 1e-3), 10 epochs, batch 64, no shuffling, no gradient clipping, final weights.

Each choice is kept here on purpose, so that the figures can be set beside the default pipeline's
honest ones and the gap explained: scaler leakage, a one-minute horizon (where "same as a minute
ago" is already excellent) and zeros standing in for missing readings. The figures themselves are
in the report this module writes (``seed_report.md``) and in the README's "Results" section.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pytorch_lightning as pl
import torch
from sklearn.preprocessing import MinMaxScaler
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from powercast.core.config import TrainConfig
from powercast.core.errors import SourceFileError, TrainingError
from powercast.core.schemas import UCI_HEADER
from powercast.io import layout
from powercast.io.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    resolve_filesystem,
)
from powercast.models.registry import champion_version, read_card
from powercast.models.rnn import RNNForecaster, count_parameters
from powercast.reporting.curves import plot_loss_curves
from powercast.training.fit import FitResult, fit_module, local_log_dir

SEED_HIDDEN_SIZES: tuple[int, ...] = (75, 30, 30)
SEED_CELLS: tuple[str, ...] = ("lstm", "gru")
SEED_TRAIN_FRACTION = 0.7
SEED_EPOCHS = 10
SEED_BATCH_SIZE = 64
SEED_LEARNING_RATE = 1e-3
# Keras does not clip gradients; Lightning needs a number, so the bound is one no gradient reaches.
_NO_CLIPPING = 1e12


@dataclass(frozen=True)
class SeedModelResult:
    """One seed-preset model's size, time and test accuracy."""

    cell: str
    n_parameters: int
    n_parameters_keras: int
    elapsed_s: float
    device: str
    test_mae_scaled: float
    test_mae_kw: float
    test_rmse_kw: float
    train_loss_by_epoch: list[float]
    test_loss_by_epoch: list[float]


@dataclass(frozen=True)
class SeedPresetResult:
    """What the seed preset measured, and where it wrote its curves and report."""

    source: str
    n_rows: int
    n_missing_rows_zero_filled: int
    n_train: int
    n_test: int
    epochs: int
    persistence_test_mae_kw: float
    models: dict[str, SeedModelResult] = field(default_factory=dict)
    curves_png: str = ""
    report_md: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of the result."""
        return asdict(self)


def keras_parameter_count(cell: str, n_features: int, hidden_sizes: tuple[int, ...]) -> int:
    """Return the trainable parameters the tutorial's Keras model has (one bias per gate for LSTM, two for GRU).

    PyTorch's LSTM keeps two bias vectors per gate where Keras keeps one, so its count is larger
    by ``4 * hidden`` per layer for the same network; Keras' default GRU (``reset_after=True``) has
    two, like PyTorch.
    """
    total, size_in = 0, n_features
    for hidden in hidden_sizes:
        if cell == "lstm":
            total += 4 * (hidden * (size_in + hidden) + hidden)
        else:
            total += 3 * (hidden * (size_in + hidden) + 2 * hidden)
        size_in = hidden
    return total + size_in + 1


def read_uci_minutes(source: str | Path, max_rows: int | None = None) -> np.ndarray:
    """Return the 7 measured columns of a UCI text file as float64 ``[T, 7]``, '?' as NaN, in file order.

    Parameters
    ----------
    source : str or Path
        A UCI ``;`` file, plain or gzip (local path or URI).
    max_rows : int, optional
        Read only the first rows (quick runs).
    """
    filesystem, path = resolve_filesystem(source)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise SourceFileError(f"seed preset source {source} does not exist; pass the UCI file with --source")
    compression = "gzip" if str(path).endswith(".gz") else None
    convert = pacsv.ConvertOptions(
        column_types={name: pa.float64() for name in UCI_HEADER[2:]},
        null_values=["?", ""],
        include_columns=list(UCI_HEADER[2:]),
    )
    try:
        with filesystem.open_input_stream(path, compression=compression) as stream:
            reader = pacsv.open_csv(stream, parse_options=pacsv.ParseOptions(delimiter=";"), convert_options=convert)
            batches, n_rows = [], 0
            for batch in reader:
                batches.append(batch)
                n_rows += batch.num_rows
                if max_rows is not None and n_rows >= max_rows:
                    break
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFileError(f"seed preset cannot parse {source} as a UCI ';' file: {exc}") from exc
    table = pa.Table.from_batches(batches) if batches else None
    if table is None or table.num_rows < 10:
        raise SourceFileError(f"seed preset source {source} holds fewer than 10 readings")
    values = np.column_stack([table[name].to_numpy(zero_copy_only=False) for name in UCI_HEADER[2:]])
    return values[:max_rows] if max_rows is not None else values


def seed_supervised(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, MinMaxScaler, int]:
    """Return the tutorial's (X ``[N, 1, 7]``, y ``[N, 1]``) in scaled units, its scaler, and how many rows were zero-filled.

    Faithful to the original, not to good practice: missing readings become 0 and the scaler is
    fit on every row, test rows included.
    """
    missing = np.isnan(values).any(axis=1)
    filled = np.nan_to_num(values, nan=0.0)
    scaler = MinMaxScaler().fit(filled)
    scaled = scaler.transform(filled).astype(np.float32)  # [T, 7]
    x = scaled[:-1, None, :]  # [N, 1, 7]: every measured value at minute t-1
    y = scaled[1:, :1]  # [N, 1]: active power at minute t
    return x, y, scaler, int(missing.sum())


def _batch_loader(x: np.ndarray, y: np.ndarray, batch_size: int) -> DataLoader:
    """Return an in-order loader that slices whole batches (no per-row collation of 1.4 M rows)."""
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


def _n_train_windows(n_windows: int) -> int:
    """Return how many of the first windows train (the tutorial's 70 %); the rest test."""
    n_train = int(n_windows * SEED_TRAIN_FRACTION)
    if n_train < 1 or n_windows - n_train < 1:
        raise TrainingError(f"seed preset needs rows on both sides of the 70/30 split, got {n_windows} windows")
    return n_train


def _kw_per_scaled_unit(scaler: MinMaxScaler) -> float:
    """Return the kW that one MinMax-scaled unit of active power spans."""
    return float(scaler.data_max_[0] - scaler.data_min_[0])


def _active_power_kw(scaled: np.ndarray, scaler: MinMaxScaler) -> np.ndarray:
    """Return MinMax-scaled active power in kW."""
    return scaled * _kw_per_scaled_unit(scaler) + scaler.data_min_[0]


def _persistence_mae_kw(x_test: np.ndarray, y_test: np.ndarray, scaler: MinMaxScaler) -> float:
    """Return the test MAE in kW of "the next minute equals this minute" (``y_test`` scaled, [N_test]).

    Scored on the same zero-filled windows as the models, so the two are comparable.
    """
    previous_kw = _active_power_kw(x_test[:, 0, 0], scaler)
    return float(np.abs(_active_power_kw(y_test, scaler) - previous_kw).mean())


def _seed_train_config(epochs: int, accelerator: str, seed: int, cpu_threads: int) -> TrainConfig:
    """Return the tutorial's training settings: Adam at a fixed rate, batch 64, no clipping, no time limit."""
    return TrainConfig(
        max_epochs=epochs,
        learning_rate=SEED_LEARNING_RATE,
        scheduler="none",
        batch_size=SEED_BATCH_SIZE,
        gradient_clip=_NO_CLIPPING,
        accelerator=accelerator,
        seed=seed,
        cpu_threads=cpu_threads,
        max_time_s=24 * 3600.0,
    )


def _seed_module(cell: str, n_features: int, kw_per_scaled_unit: float) -> RNNForecaster:
    """Return an untrained tutorial network: ``cell`` (75, 30, 30) + Dense(1), one step in, one step out."""
    return RNNForecaster(
        n_features=n_features,
        lookback_steps=1,
        horizon_steps=1,
        cell=cell,
        hidden_sizes=SEED_HIDDEN_SIZES,
        dropout=0.0,
        learning_rate=SEED_LEARNING_RATE,
        scheduler="none",
        target_scale_kw=kw_per_scaled_unit,
    )


def _scored_model(
    cell: str, fit: FitResult, x_test: np.ndarray, y_test: np.ndarray, scaler: MinMaxScaler
) -> SeedModelResult:
    """Return a trained seed model's size, time, loss curves and test errors (``y_test`` scaled, [N_test])."""
    yhat_scaled = fit.module.forecast_scaled(x_test, batch_size=65536)[:, 0]  # [N_test]
    yhat_kw = _active_power_kw(yhat_scaled, scaler)
    y_test_kw = _active_power_kw(y_test, scaler)
    return SeedModelResult(
        cell=cell,
        n_parameters=count_parameters(fit.module),
        n_parameters_keras=keras_parameter_count(cell, x_test.shape[2], SEED_HIDDEN_SIZES),
        elapsed_s=fit.elapsed_s,
        device=fit.device,
        test_mae_scaled=float(np.abs(yhat_scaled - y_test).mean()),
        test_mae_kw=float(np.abs(yhat_kw - y_test_kw).mean()),
        test_rmse_kw=float(np.sqrt(((yhat_kw - y_test_kw) ** 2).mean())),
        train_loss_by_epoch=[float(v) for v in fit.curves["train_loss"]],
        test_loss_by_epoch=[float(v) for v in fit.curves["val_mae"]],
    )


def _train_seed_model(
    cell: str,
    x: np.ndarray,
    y: np.ndarray,
    n_train: int,
    scaler: MinMaxScaler,
    config: TrainConfig,
    log_dir: Path,
    progress: bool | None,
) -> SeedModelResult:
    """Return one seed model trained as the tutorial did (test windows as validation, final weights) and scored."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = _seed_module(cell, x.shape[2], _kw_per_scaled_unit(scaler))
    fit = fit_module(
        module,
        _batch_loader(x[:n_train], y[:n_train], SEED_BATCH_SIZE),
        _batch_loader(x[n_train:], y[n_train:], 4096),
        config,
        name=f"seed-{cell}",
        log_dir=log_dir,
        progress=progress,
        early_stopping=False,
        restore_best=False,
    )
    return _scored_model(cell, fit, x[n_train:], y[n_train:, 0], scaler)


def _write_seed_outputs(
    result: SeedPresetResult, honest_rows: list[dict[str, Any]] | None, filesystem: pafs.FileSystem, out: str
) -> None:
    """Write the loss-curves PNG, the markdown report and ``seed_results.json`` under ``out``."""
    png = plot_loss_curves(
        {cell.upper(): _curve_frame(result.models[cell]) for cell in SEED_CELLS},
        title="seed preset: MAE loss per epoch (train; test used as validation)",
        loss_label="MAE (MinMax-scaled units)",
    )
    atomic_write_bytes(result.curves_png, png, filesystem)
    atomic_write_bytes(result.report_md, seed_report_markdown(result, honest_rows).encode("utf-8"), filesystem)
    atomic_write_json(f"{out}/seed_results.json", result.to_dict(), filesystem)


def run_seed_preset(
    source: str | Path,
    out_dir: str | Path,
    max_rows: int | None = None,
    epochs: int = SEED_EPOCHS,
    accelerator: str = "auto",
    seed: int = 42,
    cpu_threads: int = 0,
    progress: bool | None = None,
    honest_rows: list[dict[str, Any]] | None = None,
) -> SeedPresetResult:
    """Return the seed experiment's results after training both models; writes curves PNG, report and JSON to ``out_dir``.

    Parameters
    ----------
    source : str or Path
        The UCI file (the full one reproduces the tutorial; ``max_rows`` shortens it).
    out_dir : str or Path
        Folder (path or URI) for ``seed_loss_curves.png``, ``seed_report.md``, ``seed_results.json``.
    max_rows : int, optional
        Use only the first rows of the file.
    epochs : int
        Training epochs (the tutorial: 10).
    accelerator : str
        ``auto``, ``cpu`` or ``gpu``.
    seed : int
        Seed of the weights.
    cpu_threads : int
        torch threads while training on CPU (0 = torch's default; 1 on a busy shared machine).
    progress : bool, optional
        Progress bars; None shows them only on a terminal.
    honest_rows : list of dict, optional
        The default pipeline's leaderboard rows to set beside the seed figures (see ``honest_figures``).
    """
    values = read_uci_minutes(source, max_rows)
    x, y, scaler, n_zero_filled = seed_supervised(values)
    n_train = _n_train_windows(len(x))
    persistence_mae_kw = _persistence_mae_kw(x[n_train:], y[n_train:, 0], scaler)
    config = _seed_train_config(epochs, accelerator, seed, cpu_threads)
    filesystem, out_path = resolve_filesystem(out_dir)
    models: dict[str, SeedModelResult] = {}
    # Lightning's CSV logs and checkpoints need a local folder; a URI destination logs to a temp one, then deletes it.
    with local_log_dir(filesystem, out_path, "powercast-seed-") as log_root:
        for cell in SEED_CELLS:
            models[cell] = _train_seed_model(cell, x, y, n_train, scaler, config, log_root / cell, progress)
    out = out_path.rstrip("/")
    result = SeedPresetResult(
        source=str(source),
        n_rows=int(len(values)),
        n_missing_rows_zero_filled=n_zero_filled,
        n_train=n_train,
        n_test=int(len(x) - n_train),
        epochs=epochs,
        persistence_test_mae_kw=persistence_mae_kw,
        models=models,
        curves_png=f"{out}/seed_loss_curves.png",
        report_md=f"{out}/seed_report.md",
    )
    _write_seed_outputs(result, honest_rows, filesystem, out)
    return result


def _curve_frame(model: SeedModelResult) -> pd.DataFrame:
    epochs = range(len(model.train_loss_by_epoch))
    return pd.DataFrame({"epoch": list(epochs), "train_loss": model.train_loss_by_epoch, "val_mae": model.test_loss_by_epoch})


def honest_figures(root: str, meter_id: str) -> list[dict[str, Any]] | None:
    """Return the leaderboard rows of the run that made the meter's champion, or None when there is none.

    Only the day-ahead rows are kept (test year when the run had one, else validation): the
    figures the default pipeline reports for forecasts as they are issued.
    """
    version = champion_version(root, meter_id)
    if version is None:
        return None
    card = read_card(root, meter_id, version)
    filesystem, base = resolve_filesystem(root)
    path = layout.under(layout.run_dir(base, card["run_id"], meter_id), "leaderboard.json")
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        rows = json.loads(stream.read())["rows"]
    sets = {row["window_set"] for row in rows}
    wanted = "test_day_ahead" if "test_day_ahead" in sets else "val_day_ahead"
    return [row for row in rows if row["window_set"] == wanted and row["kind"] != "champion"]


def seed_report_markdown(result: SeedPresetResult, honest_rows: list[dict[str, Any]] | None) -> str:
    """Return the seed preset's report: its figures, the default pipeline's beside them, and why they differ."""
    lines = [
        "# Seed preset: the original experiment, reproduced",
        "",
        f"Source `{result.source}`: {result.n_rows:,} minute rows, {result.n_missing_rows_zero_filled:,} of them missing "
        f"and filled with 0; {result.n_train:,} training and {result.n_test:,} test windows (70/30, in time order); "
        f"{result.epochs} epochs, batch {SEED_BATCH_SIZE}, MAE loss, Adam lr {SEED_LEARNING_RATE:g}, no shuffling.",
        "",
        "| model | parameters (PyTorch) | parameters (Keras) | test MAE (scaled) | test MAE kW | test RMSE kW | train time s | device |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model in result.models.values():
        lines.append(
            f"| {model.cell.upper()}(75, 30, 30)+Dense(1) | {model.n_parameters:,} | {model.n_parameters_keras:,} | "
            f"{model.test_mae_scaled:.4f} | {model.test_mae_kw:.4f} | {model.test_rmse_kw:.4f} | {model.elapsed_s:.0f} | {model.device} |"
        )
    lines += [
        f"| persistence (next minute = this minute) | 0 | 0 | | {result.persistence_test_mae_kw:.4f} | | | |",
        "",
        "PyTorch's LSTM keeps two bias vectors per gate where Keras keeps one, hence its larger count for the same network.",
        "",
        "## The default pipeline on the same house",
        "",
    ]
    if honest_rows:
        window_set = honest_rows[0]["window_set"]
        lines += [
            f"Day-ahead forecasts issued at local midnight, hourly, 24 steps, window set `{window_set}` "
            f"({honest_rows[0]['n_windows']} days), run `{honest_rows[0]['run_id']}`:",
            "",
            "| model | kind | MAE kW | RMSE kW | MASE |",
            "|---|---|---:|---:|---:|",
        ]
        for row in sorted(honest_rows, key=lambda item: item["mae_kw"]):
            lines.append(f"| {row['model']} | {row['kind']} | {row['mae_kw']:.4f} | {row['rmse_kw']:.4f} | {row['mase']:.3f} |")
    else:
        lines.append("No champion is registered for this meter yet: run `powercast train` to produce the honest figures.")
    lines += [
        "",
        "## Why the seed figures are not comparable (and look better than they are)",
        "",
        "- **Scaler leakage.** The MinMaxScaler is fit on every row before the split, so the test period's "
        "minimum and maximum shape the training inputs. The default pipeline fits its scaler on training rows only.",
        "- **A one-minute horizon.** Predicting the next minute from this minute is nearly persistence: the "
        f"trivial 'same as a minute ago' forecast already scores {result.persistence_test_mae_kw:.3f} kW above. "
        "The default pipeline forecasts 24 hourly values a day ahead, issued at midnight, which is what a "
        "consumer of forecasts needs and far harder.",
        "- **Zeros for missing readings.** "
        f"{result.n_missing_rows_zero_filled:,} missing minutes became 0 kW, in training and in the test score: the "
        "models learn outages that never happened and are rewarded for predicting zero after a zero. The default "
        "pipeline interpolates only short gaps and leaves windows touching long gaps out of training and scoring.",
        "- **Different units of error.** Minute values are far spikier than hourly means, and errors are "
        "averaged over different windows and periods (the last 30 % of rows versus the 2010 test year), so even "
        "the kW figures measure different things.",
        "",
    ]
    return "\n".join(lines)
