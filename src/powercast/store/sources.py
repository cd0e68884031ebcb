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

Two readers
-----------
:func:`iter_field_batches` is the fast one ingest tries first: pyarrow's multi-threaded CSV
reader splits the fields and parses the measured values in C++ (float32, null for a missing
marker), and hands dates, times and meter ids over dictionary-encoded (a date or a time of day
recurs thousands of times in a batch, so validation decides each distinct text once). It keeps no
raw text. It gives up with :class:`NeedsLineReading` on any line it cannot classify alone: a line
with another field count, an empty line (which it would read as a row of empty fields), a measured
text that is not a number or a missing marker (pyarrow would fail, or read ``nan``/``inf``, which
the row rules call non-numeric), or bytes that are not UTF-8. :func:`iter_raw_batches` reads every
physical line as one text and splits it itself; it classifies every line and keeps its text, and
ingest falls back to it for such a file (and reads the raw text of quarantined lines with it).
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
_BLOCK_SIZE_BYTES = 16 * 1024 * 1024
_HASH_CHUNK_BYTES = 4 * 1024 * 1024

SourceKind = Literal["uci", "generic"]
_DICTIONARY_TEXT = pa.dictionary(pa.int32(), pa.string())
# A measured field with one of these texts (after trimming whitespace) is a missing value.
MISSING_MARKERS: tuple[str, ...] = ("?", "")


class NeedsLineReading(Exception):
    """The field reader met a line it cannot classify alone; read the file line by line instead."""


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


@dataclass(frozen=True)
class FieldBatch:
    """Consecutive physical lines of a source file, each with exactly the header's fields, parsed.

    Attributes
    ----------
    first_line_number : int
        1-based physical line number of the first row (the header is line 1).
    fields : dict of str to pa.Array
        Header field -> its value in every line: a measured field as float32 (null where the
        text is a missing marker), a generic CSV's timestamp as text, any other field as
        ``dictionary<int32, string>`` text. The lines' raw text is not kept.
    """

    first_line_number: int
    fields: dict[str, pa.Array]

    @property
    def n_rows(self) -> int:
        """Return the number of lines in the batch."""
        return len(next(iter(self.fields.values())))

    @property
    def line_numbers(self) -> pa.Array:
        """Return the int64 physical line number of every line in the batch."""
        start = self.first_line_number
        return pa.array(np.arange(start, start + self.n_rows, dtype=np.int64))


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


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(source: SourceFile, progress: bool) -> _NoProgress:
    """Return a tqdm bar over the file's bytes, or a stand-in (no tqdm import, no monitor thread) without progress."""
    if not progress:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=source.size_bytes, unit="B", unit_scale=True, desc=source.path.rpartition("/")[2])


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
    bar = _progress_bar(source, progress)
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


def _field_types(source_format: SourceFormat) -> dict[str, pa.DataType]:
    """Return the CSV reader's type of each field: float32 measured values, text for the others."""
    measured = source_format.field_names[len(source_format.field_names) - len(source_format.measured_columns) :]
    types: dict[str, pa.DataType] = {}
    for name in source_format.field_names:
        if name in measured:
            types[name] = pa.float32()
        elif source_format.kind == "generic" and name == "timestamp":
            types[name] = pa.string()  # distinct on every line: a dictionary would only cost
        else:
            types[name] = _DICTIONARY_TEXT
    return types


def _field_reader(stream: pa.NativeFile, source_format: SourceFormat) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(
            column_names=list(source_format.field_names), skip_rows=1, block_size=_BLOCK_SIZE_BYTES, use_threads=True
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=source_format.delimiter, quote_char=False, escape_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=_field_types(source_format), null_values=list(MISSING_MARKERS), strings_can_be_null=False
        ),
    )


def _unclassified(fields: dict[str, pa.Array], first_field: str) -> str | None:
    """Return why the field reader cannot classify some line of the batch alone, or None."""
    first = fields[first_field]
    texts = first.dictionary if pa.types.is_dictionary(first.type) else first  # a dictionary holds only used texts
    if pc.any(pc.equal(texts, "")).as_py():
        return "a line with an empty first field (perhaps an empty line)"
    for name, values in fields.items():
        if pa.types.is_floating(values.type) and pc.any(pc.invert(pc.is_finite(values))).as_py():
            return f"a non-finite {name} (nan or inf: the row rules call such a text non-numeric)"
    return None


def iter_field_batches(source: SourceFile, progress: bool = False) -> Iterator[FieldBatch]:
    """Yield the data lines of ``source`` in order, split into the header's fields, in batches of a few MB.

    Raises
    ------
    NeedsLineReading
        At the first line this reader cannot classify alone (another field count; an empty line: a
        line whose first field is empty is taken for one; a measured text that is neither a number
        nor a missing marker) or bytes it cannot read (not UTF-8, a truncated gzip):
        :func:`iter_raw_batches` reads such a file and classifies every line, or says what is wrong.
    """
    raw = source.filesystem.open_input_file(source.path)
    stream = pa.CompressedInputStream(raw, "gzip") if source.compressed else raw
    bar = _progress_bar(source, progress)
    next_line, position = 2, 0
    first_field = source.source_format.field_names[0]
    try:
        for record_batch in _field_reader(stream, source.source_format):
            if record_batch.num_rows == 0:
                continue
            fields = dict(zip(source.source_format.field_names, record_batch.columns, strict=True))
            reason = _unclassified(fields, first_field)
            if reason is not None:
                raise NeedsLineReading(f"{source.path}: {reason} in the lines from {next_line}")
            yield FieldBatch(first_line_number=next_line, fields=fields)
            next_line += record_batch.num_rows
            current = raw.tell()
            bar.update(current - position)
            position = current
    except (OSError, pa.ArrowInvalid) as exc:
        raise NeedsLineReading(f"{source.path}: {_one_line(exc)}") from exc
    finally:
        bar.close()
        stream.close()
