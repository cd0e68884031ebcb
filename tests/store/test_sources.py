"""Raw source files: format detection, line batches with physical line numbers, and file-level errors."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from powercast.core.errors import SourceFileError
from powercast.core.schemas import MEASURED_COLUMNS, UCI_HEADER
from powercast.store.sources import detect_format, iter_raw_batches, open_source

LOCAL = pafs.LocalFileSystem()
ROW = "16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000"


def _lines(path: Path) -> tuple[list[int], list[str]]:
    source = open_source(str(path), LOCAL)
    numbers: list[int] = []
    texts: list[str] = []
    for batch in iter_raw_batches(source):
        numbers += batch.line_numbers.to_pylist()
        texts += batch.lines.to_pylist()
    return numbers, texts


def test_uci_header_is_detected_with_every_measured_column() -> None:
    source_format = detect_format(";".join(UCI_HEADER), "x.txt")
    assert source_format.kind == "uci"
    assert source_format.measured_columns == MEASURED_COLUMNS
    assert source_format.n_fields == 9


def test_generic_header_keeps_the_files_column_order() -> None:
    source_format = detect_format("timestamp,meter_id,active_power_kw,voltage_v,intensity_a", "x.csv")
    assert source_format.kind == "generic"
    assert source_format.measured_columns == ("active_power_kw", "voltage_v", "intensity_a")


def test_generic_header_with_an_unknown_column_names_it() -> None:
    with pytest.raises(SourceFileError, match="temperature_c"):
        detect_format("timestamp,meter_id,active_power_kw,temperature_c", "x.csv")


def test_unknown_header_is_rejected_naming_the_file() -> None:
    with pytest.raises(SourceFileError, match=r"x\.txt: wrong header"):
        detect_format("date,power", "x.txt")


def test_gzip_is_recognised_by_its_bytes_not_its_name(write_source) -> None:
    path = write_source("disguised.txt", [ROW], compress=True)
    source = open_source(str(path), LOCAL)
    assert source.compressed
    assert _lines(path)[1] == [ROW]


def test_line_numbers_are_physical_lines_counting_the_header_and_blank_lines(write_source) -> None:
    path = write_source("blank.txt", [ROW, "", ROW])
    numbers, texts = _lines(path)
    assert numbers == [2, 3, 4]
    assert texts == [ROW, "", ROW]


def test_windows_line_endings_are_not_part_of_the_line(write_source) -> None:
    path = write_source("crlf.txt", [ROW + "\r", ROW + "\r"], header=";".join(UCI_HEADER) + "\r")
    assert _lines(path)[1] == [ROW, ROW]


def test_sha256_is_computed_on_the_bytes_as_stored(write_source) -> None:
    path = write_source("hash.txt.gz", [ROW], compress=True)
    assert open_source(str(path), LOCAL).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_file_is_rejected_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="nowhere.txt: no such file"):
        open_source(str(tmp_path / "nowhere.txt"), LOCAL)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(SourceFileError, match="empty.txt: file is empty"):
        open_source(str(path), LOCAL)


def test_header_without_rows_is_rejected(write_source) -> None:
    path = write_source("header_only.txt", [])
    with pytest.raises(SourceFileError, match="header but no data rows"):
        open_source(str(path), LOCAL)


def test_truncated_gzip_fails_while_reading_naming_the_file(sample_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.txt.gz"
    payload = sample_path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    source = open_source(str(path), LOCAL)
    with pytest.raises(SourceFileError, match="cut.txt.gz: cannot be read past line"):
        for _ in iter_raw_batches(source):
            pass


def test_bytes_that_are_not_utf8_fail_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes((";".join(UCI_HEADER) + "\n").encode() + b"16/12/2006;17:24:00;\xe9\xff;0;0;0;0;0;0\n")
    source = open_source(str(path), LOCAL)
    with pytest.raises(SourceFileError, match="latin1.txt: .*not UTF-8"):
        for _ in iter_raw_batches(source):
            pass


def test_bundled_sample_yields_every_line(sample_path: Path) -> None:
    source = open_source(str(sample_path), LOCAL)
    rows = sum(len(batch.lines) for batch in iter_raw_batches(source))
    with gzip.open(sample_path, "rt") as handle:
        expected = sum(1 for _ in handle) - 1
    assert rows == expected == 174_063


def test_batches_split_fields_on_the_formats_delimiter(write_source) -> None:
    path = write_source("fields.csv", ["2010-01-01T00:00:00Z,m1,1.5"], header="timestamp,meter_id,active_power_kw")
    batch = next(iter_raw_batches(open_source(str(path), LOCAL)))
    assert batch.fields.to_pylist() == [["2010-01-01T00:00:00Z", "m1", "1.5"]]
    assert batch.fields.type == pa.list_(pa.string())
