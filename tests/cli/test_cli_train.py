"""The ``powercast train`` and ``powercast backtest`` commands, end to end on the bundled sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from powercast.cli.main import main
from powercast.core.config import PowercastConfig
from powercast.core.errors import TrainingError
from powercast.models.baselines import BASELINES
from powercast.models.registry import read_history


@pytest.fixture()
def tiny_config_file(tiny_config: PowercastConfig, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(tiny_config.model_dump_json())
    return path


def tiny_args(config_file: Path) -> list[str]:
    """--config and --root: an explicit root beats $POWERCAST_ROOT (which `make test` exports)."""
    root = PowercastConfig.model_validate_json(config_file.read_text()).root
    return ["--config", str(config_file), "--root", root]


def test_train_command_prints_leaderboard_and_decision(tiny_config_file: Path, capsys) -> None:
    status = main(["train", *tiny_args(tiny_config_file), "--cells", "gru", "--quiet", "--run-id", "cli1"])

    out = capsys.readouterr().out
    assert status == 0
    for model in ("gru", *BASELINES):
        assert model in out
    assert "decision:" in out and "val MAE" in out and "test-DA MAE" in out
    root = PowercastConfig.model_validate_json(tiny_config_file.read_text()).root
    assert read_history(root, "sceaux_household")[0]["run_id"] == "cli1"


def test_backtest_without_champion_fails_naming_what_to_do(tiny_config_file: Path, capsys) -> None:
    status = main(["backtest", *tiny_args(tiny_config_file), "--start", "2010-11-20", "--end", "2010-11-22"])

    err = capsys.readouterr().err
    assert status == 2
    assert "no champion" in err and "powercast train" in err


def test_help_does_not_load_torch() -> None:
    # `powercast --help` must stay quick: torch and Lightning load only in the commands that train or forecast
    probe = "import sys; from powercast.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_train_all_meters_with_a_global_scope_prints_one_line_per_meter(
    tiny_config_file: Path, sample_path: Path, tmp_path: Path, capsys
) -> None:
    root = str(tmp_path / "fleet-root")
    channels = ["total", "kitchen", "rest"]
    assert main(["ingest", str(sample_path), "--root", root, "--quiet", "--channel-meters", *channels]) == 0
    capsys.readouterr()
    status = main(
        ["train", "--config", str(tiny_config_file), "--root", root, "--all-meters", "--scope", "global", "--quiet"]
        + ["--run-id", "fleet1"]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "train.scope=global" in out and "global gru:" in out and "global lstm:" in out
    for meter_id in ("sceaux_household", "sceaux_household.kitchen", "sceaux_household.rest"):
        assert meter_id in out
        assert read_history(root, meter_id)[-1]["run_id"] == "fleet1"


def test_train_all_meters_warns_of_a_local_meter_the_store_lacks(
    tiny_config_file: Path, sample_path: Path, tmp_path: Path, capsys
) -> None:
    # A typo in train.local_meters would otherwise pass unnoticed: that meter would train no model of its own.
    root = str(tmp_path / "fleet-root")
    assert main(["ingest", str(sample_path), "--root", root, "--quiet", "--channel-meters", "total", "kitchen"]) == 0
    capsys.readouterr()
    status = main(
        ["train", "--config", str(tiny_config_file), "--root", root, "--all-meters", "--scope", "both", "--quiet"]
        + ["--cells", "gru", "--local-meters", "sceaux_household.kitchn", "--run-id", "typo"]
    )
    captured = capsys.readouterr()
    assert status == 0  # every meter is served by the global network
    assert "train.local_meters names ['sceaux_household.kitchn'], which the store holds no readings of" in captured.err
    assert "global gru:" in captured.out


def test_train_all_meters_reports_failed_global_networks_and_exits_1(
    tiny_config_file: Path, sample_path: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the global fit fails as a diverging one does; the meters' own GRUs still serve.
    def diverging(*args: object, **kwargs: object) -> None:
        raise TrainingError("model gru_global: the training loss became nan")

    monkeypatch.setattr("powercast.training.fleet.fit_global", diverging)
    root = str(tmp_path / "fleet-root")
    assert main(["ingest", str(sample_path), "--root", root, "--quiet", "--channel-meters", "total", "kitchen"]) == 0
    capsys.readouterr()
    status = main(
        ["train", "--config", str(tiny_config_file), "--root", root, "--all-meters", "--scope", "both", "--quiet"]
        + ["--cells", "gru", "--run-id", "night"]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "global models: FAILED: model gru_global: the training loss became nan" in out
    for meter_id in ("sceaux_household", "sceaux_household.kitchen"):
        assert read_history(root, meter_id)[-1]["run_id"] == "night"  # selected among its own models
