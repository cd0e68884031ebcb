"""Training on the ingested sample with a tiny configuration: determinism, NaN guard, budget, curves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

import powercast.training.fit as fit_module_of_powercast
from powercast.core.config import PowercastConfig, TrainConfig
from powercast.core.errors import ConfigError, TrainingError
from powercast.prepare.series import PreparedSeries
from powercast.reporting.curves import plot_loss_curves
from powercast.training.fit import (
    CHECKPOINT_FOLDER,
    fit_forecaster,
    local_log_dir,
    refit_forecaster,
    resolve_accelerator,
)


@pytest.fixture()
def tiny_train(tiny_config: PowercastConfig) -> TrainConfig:
    return tiny_config.train


def test_two_seeded_cpu_runs_give_identical_metrics(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    first = fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path / "first", progress=False)
    second = fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path / "second", progress=False)
    assert first.best_val_mae == second.best_val_mae
    n_features = len(tiny_prepared.feature_names)
    windows = np.random.default_rng(0).normal(size=(4, tiny_prepared.lookback_steps, n_features)).astype(np.float32)
    np.testing.assert_array_equal(first.module.forecast_scaled(windows), second.module.forecast_scaled(windows))


def test_a_fit_keeps_its_epoch_log_but_not_its_checkpoint(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    # The best epoch's weights are read back into the returned module; the checkpoint file would
    # only grow runs/ night after night (megabytes per model), so it is gone once the fit returns.
    result = fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path, progress=False)
    assert not (tmp_path / CHECKPOINT_FOLDER).exists()
    assert len(list(tmp_path.rglob("metrics.csv"))) == 1 and len(result.curves) >= 1
    assert result.best_val_mae == pytest.approx(result.curves["val_mae"].min())


def test_a_fit_that_fails_after_its_checkpoint_was_written_leaves_no_checkpoint(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []

    def read_back_fails(module, best_checkpoint_path, restore_best):
        written.append(Path(best_checkpoint_path).is_file())  # the checkpoint exists when it is read back
        raise TrainingError("model gru: the checkpoint could not be read back")

    monkeypatch.setattr(fit_module_of_powercast, "_kept_module", read_back_fails)
    with pytest.raises(TrainingError, match="could not be read back"):
        fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path, progress=False)
    assert written == [True]
    assert not (tmp_path / CHECKPOINT_FOLDER).exists()


def test_refit_trains_on_train_and_val_windows_for_exactly_the_given_epochs(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    config = tiny_train.model_copy(update={"max_epochs": 6, "patience_epochs": 1})
    first = refit_forecaster(tiny_prepared, config, "gru", 3, tmp_path / "first", progress=False)
    second = refit_forecaster(tiny_prepared, config, "gru", 3, tmp_path / "second", progress=False)
    assert first.epochs_run == 3 and first.stopped_by == "max_epochs"  # no early stopping, whatever val does
    assert first.best_epoch == 2  # the last epoch's weights are kept
    n_features = len(tiny_prepared.feature_names)
    windows = np.random.default_rng(0).normal(size=(4, tiny_prepared.lookback_steps, n_features)).astype(np.float32)
    np.testing.assert_array_equal(first.module.forecast_scaled(windows), second.module.forecast_scaled(windows))
    held_out = fit_forecaster(tiny_prepared, config.model_copy(update={"max_epochs": 3}), "gru", tmp_path / "h", False)
    assert not np.array_equal(held_out.module.forecast_scaled(windows), first.module.forecast_scaled(windows))


def test_refit_needs_at_least_one_epoch(tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="at least one epoch"):
        refit_forecaster(tiny_prepared, tiny_train, "gru", 0, tmp_path, progress=False)


def test_another_seed_gives_other_weights(tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path) -> None:
    first = fit_forecaster(tiny_prepared, tiny_train, "lstm", tmp_path / "a", progress=False)
    other = fit_forecaster(tiny_prepared, tiny_train.model_copy(update={"seed": 7}), "lstm", tmp_path / "b", progress=False)
    assert first.best_val_mae != other.best_val_mae


def test_diverging_learning_rate_raises_training_error_naming_model_and_epoch(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    exploding = tiny_train.model_copy(update={"learning_rate": 1e36, "scheduler": "none"})
    with pytest.raises(TrainingError, match=r"model gru: training loss became (nan|inf) at epoch 0"):
        fit_forecaster(tiny_prepared, exploding, "gru", tmp_path, progress=False)


def test_nan_in_a_training_window_stops_before_training(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    inputs = tiny_prepared.inputs.copy()
    inputs[int(tiny_prepared.window_starts["train"][10]) + 3, 0] = np.nan
    poisoned = dataclasses.replace(tiny_prepared, inputs=inputs)
    with pytest.raises(TrainingError, match="model lstm: .* hold NaN/inf inputs"):
        fit_forecaster(poisoned, tiny_train, "lstm", tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()


def test_time_budget_stops_training_before_max_epochs(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    budget = tiny_train.model_copy(update={"max_epochs": 1000, "patience_epochs": 1000, "max_time_s": 2.0})
    result = fit_forecaster(tiny_prepared, budget, "gru", tmp_path, progress=False)
    assert result.stopped_by == "max_time"
    assert result.epochs_run < 1000


def test_result_records_device_time_epochs_and_returns_a_cpu_module(
    tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path
) -> None:
    result = fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path, progress=False)
    assert (result.device, result.precision) == ("cpu", "32-true")
    assert result.elapsed_s > 0 and result.epochs_run == tiny_train.max_epochs
    assert list(result.curves["epoch"]) == list(range(tiny_train.max_epochs))
    assert {"train_loss", "val_mae", "val_mae_kw"} <= set(result.curves.columns)
    assert next(result.module.parameters()).device == torch.device("cpu") and not result.module.training


def test_loss_curves_are_drawn_to_png(tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path) -> None:
    result = fit_forecaster(tiny_prepared, tiny_train, "gru", tmp_path, progress=False)
    png = plot_loss_curves({"gru": result.curves}, title="tiny")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_asking_for_a_gpu_without_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_accelerator("gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_trains_on_the_gpu_in_bf16(tiny_prepared: PreparedSeries, tiny_train: TrainConfig, tmp_path: Path) -> None:
    result = fit_forecaster(tiny_prepared, tiny_train.model_copy(update={"accelerator": "auto"}), "gru", tmp_path, progress=False)
    assert result.device.startswith("cuda:") and result.precision == "bf16-mixed"
    assert next(result.module.parameters()).device == torch.device("cpu")


def test_local_log_dir_is_the_destination_itself_on_a_local_filesystem(tmp_path: Path) -> None:
    with local_log_dir(pafs.LocalFileSystem(), str(tmp_path / "run"), "powercast-test-") as folder:
        assert folder == tmp_path / "run"


def test_local_log_dir_for_another_filesystem_is_a_temp_folder_deleted_afterwards(tmp_path: Path) -> None:
    remote = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    with local_log_dir(remote, "runs/r1/m1", "powercast-test-") as folder:
        (folder / "gru" / "metrics.csv").parent.mkdir()
        (folder / "gru" / "metrics.csv").write_text("epoch\n0\n")
        assert folder.name.startswith("powercast-test-") and tmp_path not in folder.parents
    assert not folder.exists()
