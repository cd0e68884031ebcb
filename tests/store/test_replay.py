"""Replay: one UCI file per local day in a landing folder, idempotent, re-ingesting to the same rows."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import ConfigError, SourceFileError
from powercast.core.schemas import UCI_HEADER
from powercast.store.ingest import ingest_paths
from powercast.store.readings import read_readings
from powercast.store.replay import replay_days

HEADER = ";".join(UCI_HEADER)
UTC = timezone.utc


def _text(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def _line(day: str, time: str) -> str:
    return f"{day};{time};1.000;0.100;240.000;4.000;0.000;1.000;0.000"


def test_each_local_day_becomes_one_uci_file_with_its_lines(write_source, tmp_path: Path) -> None:
    lines = [_line("1/1/2007", "23:59:00"), _line("2/1/2007", "00:00:00"), "2/1/2007;00:01:00;?;?;?;?;?;?;"]
    paths = replay_days(write_source("src.txt", lines), tmp_path / "landing")
    assert [p.name for p in paths] == ["src_2007-01-01.txt.gz", "src_2007-01-02.txt.gz"]
    assert _text(paths[0]) == [HEADER, lines[0]]
    assert _text(paths[1]) == [HEADER, lines[1], lines[2]]


def test_start_day_and_days_select_calendar_days(sample_path: Path, tmp_path: Path) -> None:
    paths = replay_days(sample_path, tmp_path / "landing", start_day=date(2010, 11, 20), n_days=3)
    assert [p.name[-17:] for p in paths] == ["2010-11-20.txt.gz", "2010-11-21.txt.gz", "2010-11-22.txt.gz"]
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == [p.name for p in paths]
    assert all(len(_text(p)) == 1 + 1440 for p in paths)


def test_replaying_twice_leaves_the_files_untouched(write_source, tmp_path: Path) -> None:
    source = write_source("src.txt", [_line("1/1/2007", "00:00:00"), _line("2/1/2007", "00:00:00")])
    first = replay_days(source, tmp_path / "landing")
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in first]
    second = replay_days(source, tmp_path / "landing")
    assert second == first
    assert [(p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in second] == stamps


def test_a_line_with_an_unreadable_date_goes_with_the_line_before(write_source, tmp_path: Path) -> None:
    lines = [_line("1/1/2007", "23:59:00"), "garbage line", _line("2/1/2007", "00:00:00")]
    paths = replay_days(write_source("src.txt", lines), tmp_path / "landing")
    assert _text(paths[0]) == [HEADER, lines[0], "garbage line"]


def test_replayed_days_reingest_to_the_same_rows(sample_path: Path, ingested_sample_root: str, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    replay_days(sample_path, landing, start_day=date(2010, 10, 30), n_days=3)
    config = PowercastConfig(root=str(tmp_path / "root"))
    reports = ingest_paths([landing], config)
    start, end = datetime(2010, 10, 29, 23, tzinfo=UTC), datetime(2010, 11, 1, 23, tzinfo=UTC)
    replayed = read_readings(config.root, "sceaux_household", start, end).drop_columns(["source_sha256"])
    original = read_readings(ingested_sample_root, "sceaux_household", start, end).drop_columns(["source_sha256"])
    assert sum(r.rows_in for r in reports) == replayed.num_rows == 3 * 1440
    assert replayed.equals(original)


def test_replay_refuses_a_generic_csv(write_source, tmp_path: Path) -> None:
    source = write_source("m.csv", ["2010-01-01T00:00:00Z,m1,1.0"], header="timestamp,meter_id,active_power_kw")
    with pytest.raises(SourceFileError, match="UCI-format files only"):
        replay_days(source, tmp_path / "landing")


def test_replay_refuses_zero_days(sample_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_days=0"):
        replay_days(sample_path, tmp_path / "landing", n_days=0)
