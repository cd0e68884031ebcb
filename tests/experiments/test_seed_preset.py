"""The seed preset on a slice of the bundled sample: faithful set-up, parameter counts, curves, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from powercast.cli.main import main
from powercast.core.errors import SourceFileError
from powercast.experiments.seed_preset import (
    SeedPresetResult,
    keras_parameter_count,
    read_uci_minutes,
    run_seed_preset,
    seed_supervised,
)

ROWS = 3000


@pytest.fixture(scope="module")
def seed_run(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> SeedPresetResult:
    out_dir = tmp_path_factory.mktemp("seed")
    return run_seed_preset(sample_path, out_dir, max_rows=ROWS, epochs=2, accelerator="cpu", cpu_threads=1, progress=False)


def test_missing_readings_become_zero_and_the_scaler_sees_every_row(sample_path: Path) -> None:
    values = read_uci_minutes(sample_path, max_rows=ROWS)
    values[-1, 0] = np.nan  # a missing reading in what will be the test part
    values[-2, 0] = values[:, 0][~np.isnan(values[:, 0])].max() + 5.0  # a test-period peak
    x, y, scaler, n_zero_filled = seed_supervised(values)
    assert n_zero_filled >= 1 and y[-1, 0] == pytest.approx(scaler.transform(np.zeros((1, 7)))[0, 0])
    assert scaler.data_max_[0] == pytest.approx(values[-2, 0])  # leakage, faithfully: the test peak sets the scale


def test_lookback_one_pairs_minute_t_minus_1_with_active_power_at_t(sample_path: Path) -> None:
    values = read_uci_minutes(sample_path, max_rows=ROWS)
    x, y, _, _ = seed_supervised(values)
    assert x.shape == (ROWS - 1, 1, 7) and y.shape == (ROWS - 1, 1)
    np.testing.assert_array_equal(x[1:, 0, 0], y[:-1, 0])


def test_parameter_counts_of_both_stacks(seed_run: SeedPresetResult) -> None:
    assert seed_run.models["gru"].n_parameters == seed_run.models["gru"].n_parameters_keras == 34_141
    assert seed_run.models["lstm"].n_parameters_keras == keras_parameter_count("lstm", 7, (75, 30, 30)) == 44_971
    assert seed_run.models["lstm"].n_parameters == 44_971 + 4 * (75 + 30 + 30)  # PyTorch's second bias vector


def test_split_is_70_30_in_time_order(seed_run: SeedPresetResult) -> None:
    assert seed_run.n_train == int((ROWS - 1) * 0.7) and seed_run.n_train + seed_run.n_test == ROWS - 1


def test_loss_curves_of_both_models_are_drawn(seed_run: SeedPresetResult) -> None:
    assert Path(seed_run.curves_png).read_bytes().startswith(b"\x89PNG")
    for model in seed_run.models.values():
        assert len(model.train_loss_by_epoch) == len(model.test_loss_by_epoch) == 2


def test_report_explains_why_the_numbers_are_not_comparable(seed_run: SeedPresetResult) -> None:
    report = Path(seed_run.report_md).read_text()
    for reason in ("Scaler leakage", "one-minute horizon", "Zeros for missing readings", "persistence"):
        assert reason in report
    assert f"{seed_run.models['gru'].n_parameters:,}" in report


def test_missing_source_is_a_source_file_error(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="does not exist"):
        read_uci_minutes(tmp_path / "absent.txt.gz")


def test_train_command_runs_the_seed_preset(sample_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["train", "--root", str(tmp_path / "root"), "--quiet", "--preset", "seed", "--source", str(sample_path),
            "--max-rows", "1500", "--epochs", "1", "--accelerator", "cpu", "--cpu-threads", "1", "--run-id", "seed1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "34,141 parameters" in printed and "loss curves:" in printed
    assert (tmp_path / "root" / "runs" / "seed1" / "seed" / "seed_report.md").is_file()
