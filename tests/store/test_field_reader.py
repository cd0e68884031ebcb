"""The fast field reader against the line reader: the same store, quarantine and counts for every kind of line.

Ingest reads a file with ``iter_field_batches`` (pyarrow's CSV reader, measured values parsed in
C++) and falls back to ``iter_raw_batches`` (every line as text) for a line the first cannot
classify alone. Each file below is ingested twice, once as ingest does and once forced onto the
line reader, and everything ingest writes or reports must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.fs as pafs
import pytest

import powercast.store.ingest as ingest_module
import powercast.store.sources as sources_module
from powercast.core.config import PowercastConfig
from powercast.core.schemas import UCI_HEADER
from powercast.store.ingest import ingest_paths
from powercast.store.quarantine import read_quarantine
from powercast.store.readings import list_meters, read_readings
from powercast.store.sources import NeedsLineReading, iter_field_batches, open_source

UCI = ";".join(UCI_HEADER)
CSV = "timestamp,meter_id,active_power_kw,voltage_v,sub_metering_1_wh"
FUTURE = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%-d/%-m/%Y")


def _uci(day: str, minute: int, values: str = "1.000;0.100;240.000;4.000;0.000;1.000;0.000") -> str:
    return f"{day};00:{minute:02d}:00;{values}"


# Files the field reader reads itself (its quarantined lines' text is read back from the file).
FIELD_READER_FILES: dict[str, tuple[str, list[str]]] = {
    "clean": (UCI, [_uci("2/1/2007", m) for m in range(5)] + [_uci("2/1/2007", 5, "?;?;?;?;?;?;")]),
    "every_row_rule": (
        UCI,
        [
            _uci("2/1/2007", 0),
            _uci("2/1/2007", 1, "-1.000;0.100;240.000;4.000;0.000;1.000;0.000"),  # negative_power
            _uci("2/1/2007", 2, "99.000;0.100;240.000;4.000;0.000;1.000;0.000"),  # power_out_of_range
            _uci("2/1/2007", 3, "1.000;0.100;300.000;4.000;0.000;1.000;0.000"),  # voltage_out_of_range
            _uci("2/1/2007", 4, "1.000;?;240.000;4.000;0.000;1.000;0.000"),  # partially_missing
            _uci("31/2/2007", 5),  # bad_timestamp: no such day
            "2/1/2007;25:00:00;1.000;0.100;240.000;4.000;0.000;1.000;0.000",  # bad_timestamp: no such hour
            _uci(FUTURE, 6),  # future_timestamp
            _uci("2/1/2007", 7, " 1.000 ;+0.1;240.;4e0;.0;1.000;0"),  # numbers in other spellings: stored
            _uci("2/1/2007", 8, "1.000;-0.100;240.000;4.000;0.000;1.000;0.000"),  # signed reactive power: stored
        ],
    ),
    "duplicates": (UCI, [_uci("2/1/2007", 0), _uci("2/1/2007", 0), _uci("2/1/2007", 1), _uci("2/1/2007", 1, "2.0;0;240;4;0;0;0")]),
    "generic": (
        CSV,
        [
            "2010-01-01T00:00:00Z,m1,1.5,240.0,0",
            "2010-01-01T00:01:00+01:00,m2,1.5,?,?",  # partially_missing
            "2010-01-01 00:02:00,m1,?,?,?",
            "2010-01-01T00:03:00,bad id,1.0,240,0",  # bad_meter_id
            "2010-01-01T00:04:00, ,1.0,240,0",  # missing_meter_id
            "2010-13-01T00:00:00,m1,1.0,240,0",  # bad_timestamp
            "2010-01-01T00:05:00,m1,1.0,240,0",
        ],
    ),
}
# Files with a line only the line reader classifies: ingest falls back to it.
LINE_READER_FILES: dict[str, tuple[str, list[str]]] = {
    "wrong_column_count": (UCI, [_uci("2/1/2007", 0), "2/1/2007;00:01:00;1.0;0.1", _uci("2/1/2007", 2)]),
    "empty_line": (UCI, [_uci("2/1/2007", 0), "", _uci("2/1/2007", 2)]),
    "empty_fields": (UCI, [_uci("2/1/2007", 0), ";;;;;;;;", _uci("2/1/2007", 2)]),
    "non_numeric": (UCI, [_uci("2/1/2007", 0), _uci("2/1/2007", 1, "x;0.1;240;4;0;0;0")]),
    "nan_and_inf": (UCI, [_uci("2/1/2007", 0, "nan;0.1;240;4;0;0;0"), _uci("2/1/2007", 1, "1.0;inf;240;4;0;0;0")]),
    "whitespace_marker": (UCI, [_uci("2/1/2007", 0, " ? ;?;?;?;?;?;?")]),
    "generic_wrong_column_count": (CSV, ["2010-01-01T00:00:00Z,m1,1.5,240.0", "2010-01-01T00:01:00Z,m1,1.5,240.0,0"]),
}


def _snapshot(root: str) -> dict[str, object]:
    """Return everything ingest wrote that does not depend on when or in which run it ran."""
    readings = {meter: read_readings(root, meter).to_pylist() for meter in list_meters(root)}
    quarantine = read_quarantine(root).drop_columns(["run_id", "quarantined_at"]).sort_by("line_number").to_pylist()
    for row in quarantine:  # a future line's detail names the cutoff, the ingest time + 2 h, to the second
        row["detail"] = row["detail"].partition(", at or after")[0]
    return {"readings": readings, "quarantine": quarantine}


def _ingest(path: Path, root: Path, force_line_reader: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, dict]:
    with monkeypatch.context() as patch:
        if force_line_reader:

            def refuse(*args: object, **kwargs: object) -> Iterator[object]:
                raise NeedsLineReading("forced by the test")
                yield

            patch.setattr(ingest_module, "iter_field_batches", refuse)
        [report] = ingest_paths([path], PowercastConfig(root=str(root)), run_id="run-x", progress=False)
    counts = (
        report.rows_in, report.rows_stored, report.rows_missing, report.rows_quarantined, report.partitions_written,
        report.rows_replaced,
    )
    return counts, _snapshot(str(root))


@pytest.mark.parametrize("name", [*FIELD_READER_FILES, *LINE_READER_FILES])
def test_both_readers_store_and_quarantine_the_same(name: str, write_source, tmp_path: Path, monkeypatch) -> None:
    header, lines = {**FIELD_READER_FILES, **LINE_READER_FILES}[name]
    path = write_source(f"{name}.txt", lines, header=header)
    fast = _ingest(path, tmp_path / "fast", False, monkeypatch)
    by_line = _ingest(path, tmp_path / "lines", True, monkeypatch)
    assert fast == by_line
    assert fast[0][0] == len(lines) == fast[0][1] + fast[0][3]


@pytest.mark.parametrize("name", FIELD_READER_FILES)
def test_the_field_reader_reads_these_files_itself(name: str, write_source) -> None:
    header, lines = FIELD_READER_FILES[name]
    source = open_source(str(write_source(f"{name}.txt", lines, header=header)), pafs.LocalFileSystem())
    assert sum(batch.n_rows for batch in iter_field_batches(source)) == len(lines)


@pytest.mark.parametrize("name", LINE_READER_FILES)
def test_the_field_reader_hands_these_files_to_the_line_reader(name: str, write_source) -> None:
    header, lines = LINE_READER_FILES[name]
    source = open_source(str(write_source(f"{name}.txt", lines, header=header)), pafs.LocalFileSystem())
    with pytest.raises(NeedsLineReading):
        list(iter_field_batches(source))


def test_many_small_batches_keep_their_line_numbers(write_source, tmp_path: Path, monkeypatch) -> None:
    """Batches of a few lines each, and a bad line in the last one: line numbers run on across batches."""
    monkeypatch.setattr(sources_module, "_BLOCK_SIZE_BYTES", 512)
    lines = [_uci("2/1/2007", minute) for minute in range(59)] + [_uci("2/1/2007", 59, "-1;0;240;4;0;0;0")]
    path = write_source("many.txt.gz", lines, compress=True)
    source = open_source(str(path), pafs.LocalFileSystem())
    assert len(list(iter_field_batches(source))) > 5
    fast = _ingest(path, tmp_path / "fast", False, monkeypatch)
    assert fast == _ingest(path, tmp_path / "lines", True, monkeypatch)
    [quarantined] = fast[1]["quarantine"]
    assert (quarantined["line_number"], quarantined["raw_line"]) == (61, lines[-1])


def _months(days: list[str], minutes: int = 3) -> list[str]:
    return [_uci(day, minute) for day in days for minute in range(minutes)]


MONTHS_IN_ORDER = _months(["30/1/2007", "31/1/2007", "1/2/2007", "28/2/2007", "1/3/2007", "15/3/2007"])


def _encoded_ahead(path: Path, config: PowercastConfig) -> dict:
    source = open_source(str(path), pafs.LocalFileSystem())
    return ingest_module._validated_lines(source, config, False, datetime.now(timezone.utc))[3]


@pytest.mark.parametrize(
    ("name", "lines", "ahead"),
    [
        # Partitions of UTC months 2007-01 and 2007-02 are complete before the last batch; 2007-03 is not.
        ("in_order", MONTHS_IN_ORDER, {"2007/month=01", "2007/month=02"}),
        # A line earlier than the one before it: nothing is encoded ahead.
        ("out_of_order", [*MONTHS_IN_ORDER[:9], MONTHS_IN_ORDER[2], *MONTHS_IN_ORDER[9:]], set()),
        ("a_repeated_line", [*MONTHS_IN_ORDER[:9], MONTHS_IN_ORDER[8], *MONTHS_IN_ORDER[9:]], set()),
    ],
)
def test_months_a_file_has_moved_past_are_encoded_ahead_and_stored_the_same(
    name: str, lines: list[str], ahead: set[str], write_source, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(sources_module, "_BLOCK_SIZE_BYTES", 256)  # a few lines a batch
    path = write_source(f"{name}.txt", lines)
    encoded = _encoded_ahead(path, PowercastConfig(root=str(tmp_path / "probe")))
    assert {folder.removeprefix("meter_id=sceaux_household/year=") for folder in encoded} == ahead
    fast = _ingest(path, tmp_path / "fast", False, monkeypatch)
    assert fast == _ingest(path, tmp_path / "lines", True, monkeypatch)
    assert len(fast[0][4]) == 3  # three month partitions written either way


def test_partitions_encoded_ahead_are_merged_into_existing_ones(write_source, tmp_path: Path, monkeypatch) -> None:
    """A partition that already exists is merged as always; its encoded-ahead bytes are not used."""
    monkeypatch.setattr(sources_module, "_BLOCK_SIZE_BYTES", 256)
    earlier = write_source("earlier.txt", _months(["15/1/2007"]) + [_uci("31/1/2007", 0, "9.000;0.1;240;4;0;0;0")])
    later = write_source("later.txt", MONTHS_IN_ORDER)
    snapshots = []
    for root, force in ((tmp_path / "fast", False), (tmp_path / "lines", True)):
        _ingest(earlier, root, force, monkeypatch)
        snapshots.append(_ingest(later, root, force, monkeypatch))
    assert snapshots[0] == snapshots[1]
    january = [row for row in snapshots[0][1]["readings"]["sceaux_household"] if row["timestamp"].month == 1]
    # The earlier file's day and the later file's three days that fall in January in UTC (1/2 00:0x local is
    # 31/1 23:0x UTC); the later file's line at 31/1 00:00 replaced the earlier one (9 kW).
    assert len(january) == 3 + 3 * 3
    assert snapshots[0][0][4][0] == "meter_id=sceaux_household/year=2007/month=01"
    assert [row["active_power_kw"] for row in january] == [1.0] * 12


def test_channel_meters_are_encoded_ahead_too(write_source, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sources_module, "_BLOCK_SIZE_BYTES", 256)
    path = write_source("channels.txt", MONTHS_IN_ORDER)
    config = PowercastConfig(root=str(tmp_path / "probe"), ingest={"channel_meters": ["total", "kitchen"]})
    assert len(_encoded_ahead(path, config)) == 4  # two complete months of two meters
