"""Two nightly runs started at once on one data root give the result of one run.

A scheduled night and a manual run from the UI can overlap. Both are real processes running
``flows/nightly.py`` against the session's Prefect server; the ingest, meter and publish locks
must make the pair equal a single run made on a copy of the same data root: every reading stored
once, one model trained and registered, one decision, the same published forecast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from flows.nightly import nightly
from flows.params import NightlyParams
from powercast.models.registry import list_versions, read_history
from powercast.serving.publish import read_forecasts
from powercast.store.manifest import read_manifest
from powercast.store.readings import read_readings
from powercast.store.replay import replay_days

pytestmark = pytest.mark.prefect_server

REPO_ROOT = Path(__file__).resolve().parents[2]
METER = "sceaux_household"
# The tiny budget of tests/flows/conftest.py's tiny_training, as a configuration file: the
# command line run reads its settings from POWERCAST_CONFIG.
CONFIG_TOML = """
[prepare]
lookback_steps = 24
horizon_steps = 24

[prepare.split]
mode = "trailing"
val_days = 7

[train]
hidden_sizes = [8]
batch_size = 64
max_epochs = 1
max_time_s = 60.0
accelerator = "cpu"
cpu_threads = 1
cells = ["gru"]
"""


@pytest.fixture(scope="module")
def fresh_root(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with 35 days of the sample in its landing folder and nothing ingested yet."""
    root = tmp_path_factory.mktemp("concurrent") / "root"
    replay_days(sample_path, root / "landing", start_day=date(2010, 10, 1), n_days=35)
    return root


def _start_night(root: Path, config_file: Path, api_url: str, prefect_home: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "POWERCAST_CONFIG": str(config_file),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [sys.executable, str(REPO_ROOT / "flows" / "nightly.py"), "--root", str(root)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _forecast_values(root: Path) -> pd.DataFrame:
    """The published rows without what names the run (each run has its own id)."""
    frame = read_forecasts(str(root))
    frame["model_version"] = [version.rpartition("-")[2] for version in frame["model_version"]]
    return frame.drop(columns=["run_id"]).sort_values(["meter_id", "horizon_h"]).reset_index(drop=True)


@pytest.mark.timeout(600)
def test_two_nights_at_once_equal_one(prefect_server, prefect_harness: None, fresh_root: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "powercast.toml"
    config_file.write_text(CONFIG_TOML, encoding="utf-8")
    single, pair = tmp_path / "single" / "root", tmp_path / "pair" / "root"
    shutil.copytree(fresh_root, single)
    shutil.copytree(fresh_root, pair)

    runs = [_start_night(pair, config_file, prefect_server.api_url, prefect_server.prefect_home) for _ in range(2)]
    outputs = [run.communicate(timeout=540)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n\n".join(output[-3000:] for output in outputs)
    state = nightly(NightlyParams(root=str(single), config_file=str(config_file), lock_timeout_s=60), return_state=True)
    assert state.is_completed(), state.message

    readings = read_readings(str(pair), METER).to_pandas()
    assert not readings["timestamp"].duplicated().any()
    assert len(readings) == len(read_readings(str(single), METER))
    manifest = read_manifest(str(pair)).to_pandas()
    assert not manifest["source_sha256"].duplicated().any(), "a landing file was ingested twice"
    assert len(manifest) == len(read_manifest(str(single)))
    assert len(list_versions(str(pair), METER)) == len(list_versions(str(single), METER)) == 1
    assert len(read_history(str(pair), METER)) == len(read_history(str(single), METER))
    pd.testing.assert_frame_equal(_forecast_values(pair), _forecast_values(single))
