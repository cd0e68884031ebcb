"""The demo `make run` gives a newcomer: a year of real readings, and a trained network as champion."""

from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flows.nightly import SAMPLE_FILES, drop_sample
from powercast.core.schemas import UCI_HEADER
from powercast.serving.publish import read_forecasts

REPO_ROOT = Path(__file__).resolve().parents[2]
# The limit a committed data file must stay under (the repository carries no large data).
MAX_SAMPLE_BYTES = 5_000_000


def _first_and_last_stamp(path: Path) -> tuple[datetime, datetime]:
    with gzip.open(path, "rt", encoding="utf-8") as text:
        header = text.readline().rstrip("\n")
        first = last = text.readline()
        for line in text:
            last = line
    assert header == ";".join(UCI_HEADER), f"{path.name}: not the UCI header"
    return tuple(datetime.strptime(" ".join(row.split(";")[:2]), "%d/%m/%Y %H:%M:%S") for row in (first, last))


def test_demo_files_are_small_and_one_contiguous_year() -> None:
    stamps = [_first_and_last_stamp(path) for path in SAMPLE_FILES]
    assert all(path.stat().st_size < MAX_SAMPLE_BYTES for path in SAMPLE_FILES)
    (first_start, first_end), (second_start, second_end) = stamps
    assert second_start - first_end == timedelta(minutes=1), "the two files must meet without a gap or an overlap"
    assert second_end - first_start >= timedelta(days=360)


def test_drop_sample_copies_every_file_into_an_empty_landing_only(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert drop_sample(str(landing)) is True
    assert sorted(path.name for path in landing.iterdir()) == sorted(path.name for path in SAMPLE_FILES)
    (landing / SAMPLE_FILES[0].name).unlink()
    assert drop_sample(str(landing)) is False, "a landing folder with files is the user's: nothing is added"
    assert [path.name for path in landing.iterdir()] == [SAMPLE_FILES[1].name]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_run_serves_a_trained_network(tmp_path: Path) -> None:
    """What `make run` runs, end to end: the batch must come from a trained model, not the fallback."""
    root = tmp_path / "root"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "flows" / "nightly.py"), "--sample", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    batch = read_forecasts(str(root))
    trained = {"gru", "lstm", "hgb", "combo"}
    assert set(batch["model"]) <= trained, f"served {set(batch['model'])}, expected a trained model"
    assert len(batch) == 24
    assert "beats the best baseline" in completed.stdout + completed.stderr
