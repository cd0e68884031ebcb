"""``powercast models prune``: what it prints, what a dry run leaves, how a bad keep count fails."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch
from model_records import model_record

from powercast.cli.main import main
from powercast.core.config import PowercastConfig
from powercast.models.registry import list_versions, promote, register_model
from powercast.prepare.series import PreparedSeries
from powercast.training.fit import build_forecaster

METER = "sceaux_household"


@pytest.fixture()
def two_nights(tmp_path: Path, tiny_prepared: PreparedSeries, tiny_config: PowercastConfig) -> str:
    """A registry root where night1 and night2 each registered a real tiny GRU; night2's is the champion."""
    root = str(tmp_path / "registry")
    torch.manual_seed(0)
    network = build_forecaster(tiny_prepared, tiny_config.train, "gru").eval()
    for night in ("night1", "night2"):
        record = dataclasses.replace(model_record(tiny_prepared, tiny_config), run_id=night)
        register_model(root, METER, f"{night}-gru", network, record)
    promote(root, METER, "night2-gru", run_id="night2")
    return root


def test_prune_prints_what_it_removes_and_a_dry_run_removes_nothing(two_nights: str, capsys) -> None:
    for age_days, night in enumerate(("night2", "night1"), start=1):  # each night's log folder, written days ago
        folder = Path(two_nights) / "runs" / night / METER
        folder.mkdir(parents=True)
        (folder / "leaderboard.json").write_text('{"rows": []}', encoding="utf-8")
        stamp = time.time() - age_days * 86400
        for path in (folder, folder.parent):
            os.utime(path, (stamp, stamp))
        os.utime(folder / "leaderboard.json", (stamp, stamp))
    assert main(["models", "prune", "--root", two_nights, "--keep-runs", "1", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "dry run: nothing removed" in dry and "would remove 1 (night1-gru)" in dry and "would free" in dry
    assert list_versions(two_nights, METER) == ["night1-gru", "night2-gru"]

    assert main(["models", "prune", "--root", two_nights, "--keep-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{METER}: kept 1 versions, removed 1 (night1-gru), freed" in out
    assert "runs/: kept 1 run folders, removed 1 (night1), freed" in out
    assert "removed 1 versions of 1 meters, 0 global networks and 1 run folders; freed" in out and "bytes)" in out
    assert list_versions(two_nights, METER) == ["night2-gru"]
    assert sorted(path.name for path in (Path(two_nights) / "runs").iterdir()) == ["night2"]


def test_a_keep_count_of_zero_fails_naming_the_setting(two_nights: str, capsys) -> None:
    assert main(["models", "prune", "--root", two_nights, "--keep-runs", "0"]) == 2
    assert "registry.keep_runs" in capsys.readouterr().err
    assert list_versions(two_nights, METER) == ["night1-gru", "night2-gru"]


def test_a_registry_folder_that_cannot_be_listed_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "models").write_text("a file where the registry folder should be")
    assert main(["models", "prune", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("powercast models: error: cannot list the registry folder") and str(root / "models") in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_prune_names_the_folders_without_a_card_it_removes(two_nights: str, capsys) -> None:
    crashed = Path(two_nights) / "models" / METER / "night3-gru"  # a registration that died before its card
    crashed.mkdir()
    (crashed / "weights.safetensors").write_bytes(b"weights of a version never finished")
    long_ago_s = time.time() - 7 * 24 * 3600
    for path in (crashed / "weights.safetensors", crashed):
        os.utime(path, (long_ago_s, long_ago_s))
    assert main(["models", "prune", "--root", two_nights, "--keep-runs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{METER}: kept 2 versions, removed 0 and 1 folders without a card (night3-gru), freed" in out
    assert not crashed.exists()
