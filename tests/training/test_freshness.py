"""A night retrains a meter only when it has readings no recorded training has seen."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.schemas import MEASURED_COLUMNS, READINGS_SCHEMA, UTC_US
from powercast.models.registry import CARD_FILE, champion_version
from powercast.store.readings import store_time_range, upsert_readings
from powercast.training.freshness import data_seen_end_utc, training_freshness

METER = "sceaux_household"


@pytest.fixture()
def trained_root(champion_root: str, tmp_path: Path) -> PowercastConfig:
    """A writable copy of the root whose champion the pipeline trained on every stored reading."""
    root = tmp_path / "root"
    shutil.copytree(champion_root, root)
    return PowercastConfig(root=str(root))


def _add_reading(root: str, stamp: pd.Timestamp) -> None:
    row = {
        "meter_id": [METER],
        "timestamp": pa.array([stamp], type=UTC_US),
        **{name: pa.array([1.0], type=pa.float32()) for name in MEASURED_COLUMNS},
        "source_sha256": ["0" * 64],
    }
    upsert_readings(root, pa.table(row, schema=READINGS_SCHEMA))


def test_nothing_new_after_a_training_on_every_reading(trained_root: PowercastConfig) -> None:
    _, last_utc = store_time_range(trained_root.root, METER)
    # The hourly grid's end: the hour bucket holding the last minute reading is over.
    assert data_seen_end_utc(trained_root.root, METER) == pd.Timestamp(last_utc).floor("h") + pd.Timedelta(hours=1)
    freshness = training_freshness(trained_root, METER)
    assert not freshness.retrain and freshness.reason.startswith("nothing new since the last training")


def test_a_newer_reading_is_news(trained_root: PowercastConfig) -> None:
    _, last_utc = store_time_range(trained_root.root, METER)
    _add_reading(trained_root.root, pd.Timestamp(last_utc) + pd.Timedelta(hours=2))
    assert training_freshness(trained_root, METER).retrain


def test_readings_after_the_night_s_as_of_time_are_not_news_for_that_night(trained_root: PowercastConfig) -> None:
    """Re-running a past night (as of a time before the newest readings) repeats nothing it already trained."""
    seen_end = data_seen_end_utc(trained_root.root, METER)
    later = seen_end + pd.Timedelta(days=3)
    _add_reading(trained_root.root, later)
    assert not training_freshness(trained_root, METER, as_of_utc=seen_end.to_pydatetime()).retrain
    assert training_freshness(trained_root, METER, as_of_utc=(later + pd.Timedelta(hours=1)).to_pydatetime()).retrain
    # A backfill (as of a time before the data the models on record learned from) trains on what it may see.
    backfill = training_freshness(trained_root, METER, as_of_utc=(seen_end - pd.Timedelta(days=30)).to_pydatetime())
    assert backfill.retrain and "after this night's as-of time" in backfill.reason


def test_a_training_that_promoted_nothing_still_counts_as_seen(trained_root: PowercastConfig) -> None:
    """Without a champion, the history alone says the readings were learned from (no retraining in a loop)."""
    (Path(trained_root.root) / "models" / METER / "champion.json").unlink()
    assert champion_version(trained_root.root, METER) is None
    assert not training_freshness(trained_root, METER).retrain


def test_a_champion_with_damaged_weights_is_retrained(trained_root: PowercastConfig) -> None:
    version = champion_version(trained_root.root, METER)
    weights = Path(trained_root.root) / "models" / METER / version / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    freshness = training_freshness(trained_root, METER)
    assert freshness.retrain and "do not match the sha256" in freshness.reason


def test_a_meter_never_trained_and_a_damaged_champion_are_trained(trained_root: PowercastConfig) -> None:
    version = champion_version(trained_root.root, METER)
    (Path(trained_root.root) / "models" / METER / version / CARD_FILE).write_text("{trunc")
    damaged = training_freshness(trained_root, METER)
    assert damaged.retrain and "cannot be read" in damaged.reason
    shutil.rmtree(Path(trained_root.root) / "models")
    assert training_freshness(trained_root, METER).reason == "no training has seen its readings yet: training"
