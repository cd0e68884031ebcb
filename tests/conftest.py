"""Shared fixtures: the bundled real data sample and throw-away data roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from powercast.config import PowercastConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = REPO_ROOT / "data" / "sample" / "household_power_consumption_last120d.txt.gz"
FULL_DATA_PATH = REPO_ROOT.parent / "shared" / "data" / "household_power_consumption.txt.gz"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """The committed real slice of the UCI file (last ~120 days, original format, gzip)."""
    assert SAMPLE_PATH.is_file(), f"bundled sample missing: {SAMPLE_PATH}"
    return SAMPLE_PATH


@pytest.fixture(scope="session")
def full_data_path() -> Path:
    """The full UCI file from ../shared/data (slow tests only)."""
    if not FULL_DATA_PATH.is_file():
        pytest.skip(f"full data file not found at {FULL_DATA_PATH} (needs ../shared beside the repo)")
    return FULL_DATA_PATH


@pytest.fixture()
def config(tmp_path: Path) -> PowercastConfig:
    """A default configuration whose data root is a fresh temporary folder."""
    return PowercastConfig(root=str(tmp_path / "root"))
