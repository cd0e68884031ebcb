"""Raw source files (UCI ``;`` text, plain or gzip; generic CSV) read as batches of raw lines.

Every physical line after the header becomes one row of text, read with pyarrow's streaming,
multi-threaded CSV reader configured with a delimiter that never occurs and no quoting. Fields
are then split with ``pyarrow.compute``. Keeping the line itself means each row keeps its exact
physical line number and raw text, which quarantine needs, and a line with the wrong number of
fields is a row to quarantine rather than an error for the whole file.

Formats
-------
UCI text
    Header ``Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;
    Sub_metering_1;Sub_metering_2;Sub_metering_3``; dates ``d/m/yyyy`` (zero padding optional),
    times ``HH:MM:SS`` on the source clock (``ingest.source_utc_offset``); ``?`` or an empty
    field marks a missing value. Rows carry no meter, so they get ``ingest.default_meter_id``.
Generic CSV
    Comma separated, no quoting. Header ``timestamp,meter_id,active_power_kw`` followed by any of
    ``reactive_power_kw, voltage_v, intensity_a, sub_metering_1_wh, sub_metering_2_wh,
    sub_metering_3_wh`` in any order. ``timestamp`` is ISO 8601 ``YYYY-MM-DDTHH:MM:SS`` (a space
    may replace the ``T``) optionally ending in ``Z`` or ``+HH:MM``/``-HH:MM``; a timestamp without
    an offset is read on the source clock. ``?`` or an empty field marks a missing value.

Either format may be gzip-compressed (recognised by its magic bytes, not its name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from tqdm import tqdm

from powercast.core.errors import SourceFileError
from powercast.core.schemas import (
    GENERIC_REQUIRED_COLUMNS,
    MEASURED_COLUMNS,
    UCI_HEADER,
)

GZIP_MAGIC = b"\x1f\x8b"
# A byte that never occurs in text: each physical line becomes exactly one field.
_LINE_DELIMITER = "\x1f"
_LINE_COLUMN = "line"
_HEADER_PROBE_BYTES = 64 * 1024
_BLOCK_SIZE_BYTES = 4 * 1024 * 1024
_HASH_CHUNK_BYTES = 4 * 1024 * 1024

SourceKind = Literal["uci", "generic"]


@dataclass(frozen=True)
class SourceFormat:
    """How the fields of one file's lines are laid out.

    Attributes
    ----------
    kind : {"uci", "generic"}
        Which documented format the header announced.
    delimiter : str
        Field separator (``;`` for UCI, ``,`` for the generic CSV).
    field_names : tuple of str
        Header fields, in file order.
    measured_columns : tuple of str
        Our names (``MEASURED_COLUMNS``) of the measured values present in the file, in file order.
    """

    kind: SourceKind
    delimiter: str
    field_names: tuple[str, ...]
    measured_columns: tuple[str, ...]

    @property
    def n_fields(self) -> int:
        """Number of fields every data line must have."""
        return len(self.field_names)


@dataclass(frozen=True)
class SourceFile:
    """An opened-and-checked source: where it is, its format, its size and its sha256."""

    path: str
    filesystem: pafs.FileSystem
    size_bytes: int
    compressed: bool
    source_format: SourceFormat
    sha256: str


@dataclass(frozen=True)
class RawBatch:
    """Consecutive physical lines of a source file, as text and split into fields.

    Attributes
    ----------
    first_line_number : int
        1-based physical line number of ``lines[0]`` (the header is line 1).
    lines : pa.StringArray
        The lines' raw text, without the line ending.
    fields : pa.ListArray
        ``lines`` split on the format's delimiter (list<string>).
    """

    first_line_number: int
    lines: pa.Array
    fields: pa.Array

    @property
    def line_numbers(self) -> pa.Array:
        """Return the int64 physical line number of every line in the batch."""
        start = self.first_line_number
        return pa.array(np.arange(start, start + len(self.lines), dtype=np.int64))


def _uci_format() -> SourceFormat:
    return SourceFormat(kind="uci", delimiter=";", field_names=UCI_HEADER, measured_columns=MEASURED_COLUMNS)


def detect_format(header_line: str, source_name: str) -> SourceFormat:
    """Return the format announced by a file's header line.

    Raises
    ------
    SourceFileError
        If the header is neither the UCI header nor a valid generic CSV header.
    """
    header = header_line.lstrip("\ufeff").strip()
    if header == ";".join(UCI_HEADER):
        return _uci_format()
    names = tuple(name.strip() for name in header.split(","))
    required = len(GENERIC_REQUIRED_COLUMNS)
    if names[:required] == GENERIC_REQUIRED_COLUMNS:
        extra = names[required:]
        allowed = set(MEASURED_COLUMNS[1:])
        unknown = [name for name in extra if name not in allowed]
        if unknown:
            raise SourceFileError(
                f"{source_name}: unknown column(s) {', '.join(unknown)} in the CSV header; "
                f"allowed after {','.join(GENERIC_REQUIRED_COLUMNS)}: {', '.join(MEASURED_COLUMNS[1:])}"
            )
        if len(set(extra)) != len(extra):
            raise SourceFileError(f"{source_name}: a column appears twice in the CSV header {header!r}")
        return SourceFormat(
            kind="generic", delimiter=",", field_names=names, measured_columns=(GENERIC_REQUIRED_COLUMNS[2], *extra)
        )
    shown = header if len(header) <= 120 else header[:117] + "..."
    raise SourceFileError(
        f"{source_name}: wrong header {shown!r}; expected the UCI header {';'.join(UCI_HEADER)!r} "
        f"or a CSV header starting with {','.join(GENERIC_REQUIRED_COLUMNS)!r}"
    )


def _open_text_stream(filesystem: pafs.FileSystem, path: str, compressed: bool) -> pa.NativeFile:
    raw = filesystem.open_input_file(path)
    return pa.CompressedInputStream(raw, "gzip") if compressed else raw


def _read_header_line(filesystem: pafs.FileSystem, path: str, compressed: bool) -> str:
    with _open_text_stream(filesystem, path, compressed) as stream:
        probe = stream.read(_HEADER_PROBE_BYTES)
    if not probe.strip():
        raise SourceFileError(f"{path}: file is empty (no header and no rows); remove it or replace it with a complete file")
    first, newline, rest = probe.partition(b"\n")
    if not newline and len(probe) == _HEADER_PROBE_BYTES:
        raise SourceFileError(f"{path}: no line break in the first {_HEADER_PROBE_BYTES} bytes; this is not a text readings file")
    if not rest.strip():
        raise SourceFileError(f"{path}: file has a header but no data rows; remove it or replace it with a complete file")
    try:
        return first.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path}: header is not UTF-8 text ({exc.reason}); this is not a readings file") from exc


def file_sha256(filesystem: pafs.FileSystem, path: str) -> str:
    """Return the hex sha256 of a file's bytes as stored (compressed bytes for a .gz)."""
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def open_source(path: str, filesystem: pafs.FileSystem) -> SourceFile:
    """Return a checked source file: it exists, is readable, non-empty and has a known header.

    Raises
    ------
    SourceFileError
        With one line naming the file and what is wrong.
    """
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise SourceFileError(f"{path}: no such file; check the path")
    if info.type != pafs.FileType.File:
        raise SourceFileError(f"{path}: not a regular file")
    try:
        with filesystem.open_input_stream(path, compression=None) as stream:
            magic = stream.read(2)
        compressed = magic == GZIP_MAGIC
        header = _read_header_line(filesystem, path, compressed)
        sha256 = file_sha256(filesystem, path)
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read ({_one_line(exc)}); check permissions or replace the file") from exc
    return SourceFile(
        path=path,
        filesystem=filesystem,
        size_bytes=int(info.size or 0),
        compressed=compressed,
        source_format=detect_format(header, path),
        sha256=sha256,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def iter_raw_batches(source: SourceFile, progress: bool = False) -> Iterator[RawBatch]:
    """Yield the data lines of ``source`` in order, in batches of a few MB.

    Raises
    ------
    SourceFileError
        If the file cannot be read to its end (a truncated gzip, bytes that are not UTF-8 text).
    """
    raw = source.filesystem.open_input_file(source.path)
    stream = pa.CompressedInputStream(raw, "gzip") if source.compressed else raw
    bar = tqdm(
        total=source.size_bytes, unit="B", unit_scale=True, desc=source.path.rpartition("/")[2], disable=not progress
    )
    next_line = 2
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=[_LINE_COLUMN], skip_rows=1, block_size=_BLOCK_SIZE_BYTES, use_threads=True
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=_LINE_DELIMITER, quote_char=False, escape_char=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(column_types={_LINE_COLUMN: pa.string()}, strings_can_be_null=False),
        )
        position = 0
        for record_batch in reader:
            if record_batch.num_rows == 0:
                continue
            lines = record_batch.column(0)
            yield RawBatch(
                first_line_number=next_line,
                lines=lines,
                fields=pc.split_pattern(lines, source.source_format.delimiter),
            )
            next_line += record_batch.num_rows
            current = raw.tell()
            bar.update(current - position)
            position = current
    except (OSError, pa.ArrowInvalid) as exc:
        raise SourceFileError(
            f"{source.path}: cannot be read past line {next_line - 1} ({_one_line(exc)}); "
            "the file is truncated or not UTF-8 text: replace it with a complete copy"
        ) from exc
    finally:
        bar.close()
        stream.close()
