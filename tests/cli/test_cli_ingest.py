"""The ``powercast ingest``, ``replay`` and ``store summary`` commands, run through the real CLI entry point."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from powercast.cli.main import main
from powercast.io.locking import INGEST_LOCK_NAME, named_lock
from powercast.store.readings import list_meters


def _line(day: str, minute: int, power: str = "1.000") -> str:
    return f"{day};00:{minute:02d}:00;{power};0.100;240.000;4.000;0.000;1.000;0.000"


def test_ingest_prints_a_row_per_file_and_the_store_counts(write_source, tmp_path: Path, capsys) -> None:
    path = write_source("day.txt", [_line("2/1/2007", 0), _line("2/1/2007", 1), "2/1/2007;00:02:00;?;?;?;?;?;?;", "bad"])
    status = main(["ingest", "--root", str(tmp_path / "root"), str(path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "day.txt" in out and "ingested" in out
    assert "store total: 3 rows, 1 missing, 1 quarantined" in out
    assert "wrong_column_count" in out


def test_ingest_of_an_already_ingested_file_says_it_is_a_no_op(write_source, tmp_path: Path, capsys) -> None:
    path = write_source("day.txt", [_line("2/1/2007", 0)])
    main(["ingest", "--root", str(tmp_path / "root"), "--run-id", "first", str(path)])
    capsys.readouterr()
    assert main(["ingest", "--root", str(tmp_path / "root"), str(path)]) == 0
    assert "already ingested (run first), no-op" in capsys.readouterr().out


def test_ingest_of_a_bad_path_prints_one_error_line_and_fails(tmp_path: Path, capsys) -> None:
    status = main(["ingest", "--root", str(tmp_path / "root"), str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "nope.txt: no such file" in err
    assert [child.name for child in (tmp_path / "root").iterdir()] == ["locks"]


def test_ingest_gives_up_after_the_lock_timeout_while_another_run_ingests(
    write_source, tmp_path: Path, capsys
) -> None:
    path = write_source("day.txt", [_line("2/1/2007", 0)])
    root = tmp_path / "root"
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with named_lock(str(root), INGEST_LOCK_NAME, holder="nightly-run"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert held.wait(10)
    try:
        status = main(["ingest", "--root", str(root), "--lock-timeout-s", "0.3", str(path)])
    finally:
        release.set()
        thread.join()
    err = capsys.readouterr().err
    assert status == 2
    assert "lock '_ingest' is locked by" in err and "nightly-run" in err and "waited 0.3 s" in err
    assert not (root / "store").exists()
    assert main(["ingest", "--root", str(root), "--lock-timeout-s", "0", str(path)]) == 0  # free now


def test_a_negative_lock_timeout_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "--root", str(tmp_path), "--lock-timeout-s", "-1", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "give 0 or more seconds" in capsys.readouterr().err


def test_replay_then_ingesting_the_landing_folder_stores_each_day(sample_path: Path, tmp_path: Path, capsys) -> None:
    landing = tmp_path / "landing"
    assert main(["replay", str(sample_path), str(landing), "--start-day", "2010-11-24", "--days", "2"]) == 0
    assert "2 day file(s)" in capsys.readouterr().out
    assert main(["ingest", "--root", str(tmp_path / "root"), "--quiet", str(landing)]) == 0
    assert "store total: 2880 rows, 0 missing, 0 quarantined" in capsys.readouterr().out
    assert main(["ingest", "--root", str(tmp_path / "root"), str(landing)]) == 0
    assert "no new files to ingest" in capsys.readouterr().out


def test_replay_rejects_a_malformed_start_day(sample_path: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(sample_path), str(tmp_path), "--start-day", "24/11/2010"])
    assert exit_info.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_store_summary_prints_rows_and_missing_per_month(ingested_sample_root: str, capsys) -> None:
    assert main(["store", "summary", "--root", ingested_sample_root]) == 0
    out = capsys.readouterr().out
    assert "2010-09      43200     5237" in out
    assert "store total: 174063 rows, 12468 missing, 0 quarantined" in out


def test_store_summary_of_an_empty_root_says_what_to_do(tmp_path: Path, capsys) -> None:
    assert main(["store", "summary", "--root", str(tmp_path)]) == 0
    assert "powercast ingest PATH" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["ingest", "--help"], ["replay", "--help"], ["store", "summary", "--help"]])
def test_every_subcommand_has_help(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: powercast" in capsys.readouterr().out


def test_channel_meters_option_stores_each_channel_as_a_meter(tmp_path: Path, sample_path: Path) -> None:
    root = tmp_path / "root"
    status = main(["ingest", str(sample_path), "--root", str(root), "--quiet", "--channel-meters", "total", "kitchen"])
    assert status == 0
    assert list_meters(str(root)) == ["sceaux_household", "sceaux_household.kitchen"]


HEAVY_PACKAGES = ("pandas", "torch", "lightning", "pytorch_lightning", "sklearn", "scipy", "prefect", "matplotlib")
_RUN_AND_LIST_HEAVY_IMPORTS = (
    "import sys; from powercast.cli.main import main; status = main(); "  # argv from sys.argv, as the console script
    f"print(sorted(name for name in {HEAVY_PACKAGES!r} if name in sys.modules)); raise SystemExit(status)"
)


def _ingest_in_a_fresh_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_HEAVY_IMPORTS, "ingest", "--quiet", *args],
        capture_output=True, text=True, check=False,
    )


def test_ingest_imports_no_pandas_torch_sklearn_or_prefect(write_source, tmp_path: Path) -> None:
    # Start-up is a large part of a whole `powercast ingest`: it needs pyarrow, numpy and pydantic only
    path = write_source("day.txt.gz", [_line("2/1/2007", 0), _line("2/1/2007", 1, "-1.0"), "bad"], compress=True)
    result = _ingest_in_a_fresh_process("--root", str(tmp_path / "root"), str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "store total: 1 rows, 0 missing, 2 quarantined" in result.stdout


def test_ingest_resolves_conflicting_duplicates_in_its_own_process(write_source, tmp_path: Path) -> None:
    # Resolving duplicates uses pandas, which pyarrow must still hand over after the spared probe
    lines = [_line("2/1/2007", 0), _line("2/1/2007", 0, "2.000"), _line("2/1/2007", 1), _line("2/1/2007", 1)]
    result = _ingest_in_a_fresh_process("--root", str(tmp_path / "root"), str(write_source("dup.txt", lines)))
    assert result.returncode == 0, result.stderr
    assert "store total: 1 rows, 0 missing, 3 quarantined" in result.stdout
    assert "conflicting_duplicate" in result.stdout and "duplicate_row" in result.stdout
