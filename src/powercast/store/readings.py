"""The Parquet layout of readings: upsert by partition, and reading a meter's time range with pruning.

Layout under the data root (a local path or a URI)::

    store/readings/meter_id=<meter>/year=<YYYY>/month=<MM>/part-0.parquet

Each file holds ``READINGS_FILE_SCHEMA`` (``READINGS_SCHEMA`` minus the ``meter_id`` partition key),
one row per timestamp, sorted by timestamp. Year and month are those of the UTC timestamp. Any
hive-aware reader (pyarrow.dataset, polars, DuckDB) can read the folder directly.

An upsert rewrites only the partitions whose content changes, each one atomically (temp name,
then rename): rows at new timestamps are added, rows whose values differ from the stored ones
replace them (and are counted), and rows identical to the stored ones leave the file untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from powercast.core.errors import StoreError
from powercast.core.schemas import (
    MEASURED_COLUMNS,
    READINGS_FILE_SCHEMA,
    READINGS_SCHEMA,
    TARGET_COLUMN,
    UTC_US,
)
from powercast.io import layout
from powercast.io.atomic import atomic_write_bytes, resolve_filesystem

PARTITION_FILE = "part-0.parquet"
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
# Partitions merged and written at once by upsert_readings (encoding and fsync release the GIL).
_WRITE_THREADS = min(4, (os.cpu_count() or 1) + 1)
_PARTITION_RE = re.compile(r"meter_id=(?P<meter>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{1,2})/" + PARTITION_FILE + "$")


@dataclass(frozen=True)
class Partition:
    """One partition file of the readings store."""

    meter_id: str
    year: int
    month: int
    path: str

    @property
    def start_utc(self) -> datetime:
        """Return the first instant (UTC) the partition can hold."""
        return datetime(self.year, self.month, 1, tzinfo=_UTC)

    @property
    def end_utc(self) -> datetime:
        """Return the instant (UTC) just after the partition's month."""
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(year, month, 1, tzinfo=_UTC)


@dataclass(frozen=True)
class UpsertOutcome:
    """What an upsert changed: the partition folders it rewrote and the readings it replaced."""

    partitions_written: list[str]
    rows_replaced: int


@dataclass(frozen=True)
class EncodedPartition:
    """A partition's Parquet bytes made ahead of :func:`upsert_readings` (see :func:`encode_partitions`).

    ``rows``, ``first_us`` and ``last_us`` (UTC microseconds) describe the rows encoded; the upsert
    uses the bytes only for a partition that does not exist yet and whose incoming rows match them.
    """

    rows: int
    first_us: int
    last_us: int
    payload: bytes


@dataclass(frozen=True)
class PartitionSummary:
    """Row counts of one partition: all rows, and rows whose active power is missing."""

    meter_id: str
    year: int
    month: int
    rows: int
    rows_missing: int


def partition_folder(meter_id: str, year: int, month: int) -> str:
    """Return a partition's folder relative to ``store/readings``."""
    return f"meter_id={meter_id}/year={year:04d}/month={month:02d}"


def _readings_base(root: str) -> tuple[pafs.FileSystem, str]:
    filesystem, base = resolve_filesystem(root)
    return filesystem, layout.readings_dir(base)


def _read_partition_file(filesystem: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pa.Table:
    try:
        with filesystem.open_input_file(path) as handle:
            table = pq.ParquetFile(handle).read(columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"cannot read store partition {path}: {exc}; restore it or re-ingest its source files") from exc
    wanted = READINGS_FILE_SCHEMA if columns is None else pa.schema([READINGS_FILE_SCHEMA.field(c) for c in columns])
    try:
        return table.select(wanted.names).cast(wanted)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"store partition {path} does not match READINGS_FILE_SCHEMA: {exc}") from exc


def _list_partitions(filesystem: pafs.FileSystem, base: str, meter_id: str) -> list[Partition]:
    meter_dir = f"{base}/meter_id={meter_id}"
    infos = filesystem.get_file_info(pafs.FileSelector(meter_dir, recursive=True, allow_not_found=True))
    partitions = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        match = _PARTITION_RE.search(info.path)
        if match and match["meter"] == meter_id:
            partitions.append(Partition(meter_id, int(match["year"]), int(match["month"]), info.path))
    return sorted(partitions, key=lambda part: (part.year, part.month))


def list_meters(root: str) -> list[str]:
    """Return the meter ids that have at least one partition in the store, sorted."""
    filesystem, base = _readings_base(root)
    infos = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    meters = [
        info.base_name.removeprefix("meter_id=")
        for info in infos
        if info.type == pafs.FileType.Directory and info.base_name.startswith("meter_id=")
    ]
    return sorted(meter for meter in meters if _list_partitions(filesystem, base, meter))


def _known_partitions(root: str, meter_id: str) -> tuple[pafs.FileSystem, list[Partition]]:
    filesystem, base = _readings_base(root)
    partitions = _list_partitions(filesystem, base, meter_id)
    if not partitions:
        known = ", ".join(list_meters(root)) or "none"
        raise StoreError(
            f"unknown meter {meter_id!r} in the store at {root} (known meters: {known}); ingest its readings first"
        )
    return filesystem, partitions


def _utc_bound(value: datetime | None, name: str) -> pa.Scalar | None:
    if value is None:
        return None
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise StoreError(f"{name}={value!r} has no timezone; pass a timezone-aware UTC datetime")
    return pa.scalar(value, type=UTC_US)


def read_readings(
    root: str,
    meter_id: str,
    start_utc: datetime | None = None,
    end_utc: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Return a meter's readings with ``start_utc <= timestamp < end_utc``, sorted by timestamp.

    Only the month partitions that overlap the range are opened.

    Parameters
    ----------
    root : str
        Data root (path or URI).
    meter_id : str
        Meter to read.
    start_utc, end_utc : datetime, optional
        Timezone-aware bounds; ``None`` means unbounded.
    columns : sequence of str, optional
        Measured columns (or ``source_sha256``) to return besides ``meter_id`` and ``timestamp``;
        ``None`` returns every ``READINGS_SCHEMA`` column.

    Returns
    -------
    pa.Table
        Columns of ``READINGS_SCHEMA`` (``meter_id`` and ``timestamp`` always first), in schema order.

    Raises
    ------
    StoreError
        If the meter is unknown, a bound is naive, a column is unknown or a partition is unreadable.
    """
    start = _utc_bound(start_utc, "start_utc")
    end = _utc_bound(end_utc, "end_utc")
    if start is not None and end is not None and not start.value < end.value:
        raise StoreError(f"empty time range: start_utc {start_utc} must be before end_utc {end_utc}")
    wanted = _file_columns_wanted(columns)
    filesystem, partitions = _known_partitions(root, meter_id)
    tables = []
    for partition in partitions:
        if start is not None and partition.end_utc <= start.as_py():
            continue
        if end is not None and partition.start_utc >= end.as_py():
            continue
        table = _read_partition_file(filesystem, partition.path, wanted)
        mask = None
        if start is not None:
            mask = pc.greater_equal(table["timestamp"], start)
        if end is not None:
            below = pc.less(table["timestamp"], end)
            mask = below if mask is None else pc.and_(mask, below)
        tables.append(table if mask is None else table.filter(mask))
    return _meter_table(meter_id, tables, wanted)


def _file_columns_wanted(columns: Sequence[str] | None) -> list[str]:
    """Return the partition-file columns to read for ``columns`` (None: all), ``timestamp`` always; raise on unknown names."""
    if columns is None:
        return list(READINGS_FILE_SCHEMA.names)
    unknown = [name for name in columns if name not in READINGS_SCHEMA.names]
    if unknown:
        raise StoreError(f"unknown reading column(s) {', '.join(unknown)}; choose from {', '.join(READINGS_SCHEMA.names)}")
    return [name for name in READINGS_FILE_SCHEMA.names if name == "timestamp" or name in columns]


def _meter_table(meter_id: str, pieces: Sequence[pa.Table], wanted: Sequence[str]) -> pa.Table:
    """Return one meter's pieces of partition files as a ``READINGS_SCHEMA`` table sorted by timestamp."""
    file_schema = pa.schema([READINGS_FILE_SCHEMA.field(name) for name in wanted])
    table = pa.concat_tables(pieces) if pieces else file_schema.empty_table()
    if not _strictly_increasing(table["timestamp"]):  # months read in order are sorted already; sorting costs more than reading
        table = table.sort_by("timestamp")
    result = table.add_column(0, READINGS_SCHEMA.field("meter_id"), _repeated_string(meter_id, table.num_rows))
    return result.cast(pa.schema([READINGS_SCHEMA.field(name) for name in result.column_names]))


def _repeated_string(value: str, length: int) -> pa.Array:
    """Return a string array holding ``value`` ``length`` times, built from its buffers.

    ``pa.repeat`` grows a string builder value by value, about 10 ms for a year of 15-minute
    readings once many tables are alive, more than reading the meter's files.
    """
    encoded = value.encode("utf-8")
    if len(encoded) * length >= 2**31:  # past 32-bit offsets (never for a meter's readings, but stay correct)
        return pa.repeat(pa.scalar(value), length)
    offsets = np.arange(length + 1, dtype=np.int32) * len(encoded)
    return pa.StringArray.from_buffers(length, pa.py_buffer(offsets), pa.py_buffer(encoded * length))


def _strictly_increasing(stamps: pa.ChunkedArray) -> bool:
    """Return whether timestamps (no nulls: the schema forbids them) strictly increase."""
    micros = stamps.cast(pa.int64()).to_numpy()
    return bool((micros[1:] > micros[:-1]).all())


def read_fleet_readings(
    root: str,
    meter_ids: Sequence[str],
    end_utc: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[dict[str, pa.Table], dict[str, str]]:
    """Return (meter → its readings before ``end_utc``, as ``read_readings`` gives them; meter → why it could not be read).

    Every table at once: for a fleet too big for that, consume ``iter_fleet_readings`` instead.
    """
    tables: dict[str, pa.Table] = {}
    failures: dict[str, str] = {}
    for meter_id, table, error in iter_fleet_readings(root, meter_ids, end_utc, columns):
        if table is not None:
            tables[meter_id] = table
        else:
            failures[meter_id] = error
    return tables, failures


def iter_fleet_readings(
    root: str,
    meter_ids: Sequence[str],
    end_utc: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[str, pa.Table | None, str | None]]:
    """Yield ``(meter, its readings before end_utc, None)`` or ``(meter, None, why not)`` for each asked meter.

    The readings are what ``read_readings`` returns. Every asked meter's month files are read in
    one multithreaded dataset scan, not a file open after another per meter, and a meter's table
    is yielded as soon as its last file is read, so a caller that prepares each meter and drops
    its readings holds one meter's raw readings at a time, not the fleet's (a year of 1-minute
    readings is about 30 times its prepared hourly series). A meter not in the store is reported,
    not raised. When the scan fails (a damaged or unreadable file, a transient I/O error), the
    meters not yet yielded are read one by one, so a failure stays with the meter whose file it
    is and names that file, and a transient error costs nothing.
    """
    end = _utc_bound(end_utc, "end_utc")
    wanted = _file_columns_wanted(columns)
    filesystem, base = _readings_base(root)
    # One listing per asked meter: a night for 3 meters of a big store lists those 3, not the store.
    partitions = {meter_id: _list_partitions(filesystem, base, meter_id) for meter_id in dict.fromkeys(meter_ids)}
    for meter_id in [meter_id for meter_id, found in partitions.items() if not found]:
        del partitions[meter_id]
        yield meter_id, None, f"unknown meter {meter_id!r} in the store at {root}; ingest its readings first"
    in_range = {
        part.path: meter_id
        for meter_id, found in partitions.items()
        for part in found  # month order (``_list_partitions`` sorts): each meter's rows arrive sorted
        if end is None or part.start_utc < end.as_py()
    }
    done: set[str] = set()
    try:
        for meter_id, table in _scan_partitions(filesystem, in_range, wanted, end):
            done.add(meter_id)
            yield meter_id, _meter_table(meter_id, [table], wanted), None
    except (OSError, pa.ArrowException, StoreError, KeyError):
        for meter_id in [meter_id for meter_id in partitions if meter_id not in done]:
            try:
                yield meter_id, read_readings(root, meter_id, end_utc=end_utc, columns=columns), None
            except StoreError as exc:
                yield meter_id, None, str(exc)
        return
    for meter_id in [meter_id for meter_id in partitions if meter_id not in done]:  # no file before end_utc
        yield meter_id, _meter_table(meter_id, [], wanted), None


def _scan_partitions(
    filesystem: pafs.FileSystem, meter_of_path: Mapping[str, str], wanted: Sequence[str], end: pa.Scalar | None
) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``(meter, its rows before end)`` from the given partition files, read in one ordered scan.

    ``meter_of_path`` lists each meter's files together and ``scan_batches`` keeps that order, so
    a meter's batches arrive together and its table is yielded when the next meter's first batch
    comes. A meter seen again after that would mean the order broke: that raises rather than
    silently splitting the meter's readings.
    """
    import pyarrow.dataset as ds  # only the fleet path needs the dataset module

    file_schema = pa.schema([READINGS_FILE_SCHEMA.field(name) for name in wanted])
    dataset = ds.dataset(list(meter_of_path), schema=file_schema, format="parquet", filesystem=filesystem)
    row_filter = None if end is None else ds.field("timestamp") < end
    finished: set[str] = set()
    current, batches = None, []
    checked: set[str] = set()
    for tagged in dataset.scanner(columns=list(wanted), filter=row_filter).scan_batches():
        path = tagged.fragment.path
        if path not in checked:  # the scan fills a column a file lacks with nulls; read_readings refuses such a file
            missing = set(wanted) - set(tagged.fragment.physical_schema.names)
            if missing:
                raise StoreError(f"store partition {path} lacks column(s) {', '.join(sorted(missing))}")
            checked.add(path)
        meter_id = meter_of_path[path]
        if meter_id != current:
            if meter_id in finished:
                raise RuntimeError(f"the store scan returned meter {meter_id!r}'s files out of order")
            if current is not None:
                finished.add(current)
                yield current, pa.Table.from_batches(batches, schema=file_schema)
            current, batches = meter_id, []
        batches.append(tagged.record_batch)
    if current is not None:
        yield current, pa.Table.from_batches(batches, schema=file_schema)


def future_cutoff_utc(tolerance_h: float, now_utc: datetime | None = None) -> datetime:
    """Return the moment (UTC) from which a reading is from the future: now plus ``tolerance_h`` hours.

    A meter whose clock jumps ahead sends such readings; ingest quarantines them and the readers
    of the store (training, the default issue time) stop before this moment.
    """
    now = datetime.now(_UTC) if now_utc is None else now_utc
    if now.tzinfo is None:
        raise StoreError(f"now_utc={now_utc!r} has no timezone; pass a timezone-aware UTC datetime")
    return now.astimezone(_UTC) + timedelta(hours=tolerance_h)


def store_time_range(root: str, meter_id: str, end_utc: datetime | None = None) -> tuple[datetime, datetime]:
    """Return the first and last stored timestamp (UTC) of a meter, among readings before ``end_utc``.

    Only the first partition and the newest ones (back to the newest holding a reading before
    ``end_utc``) are opened.

    Raises
    ------
    StoreError
        If the meter is unknown or holds no reading before ``end_utc``.
    """
    end = _utc_bound(end_utc, "end_utc")
    filesystem, partitions = _known_partitions(root, meter_id)
    first = _read_partition_file(filesystem, partitions[0].path, ["timestamp"])["timestamp"]
    for partition in reversed(partitions):
        if end is not None and partition.start_utc >= end.as_py():
            continue
        stamps = _read_partition_file(filesystem, partition.path, ["timestamp"])["timestamp"]
        if end is not None:
            stamps = stamps.filter(pc.less(stamps, end))
        if len(stamps):
            return pc.min(first).as_py(), pc.max(stamps).as_py()
    raise StoreError(f"meter {meter_id!r} has no stored reading before {end_utc}; nothing to train on or forecast")


def readings_from(root: str, meter_id: str, start_utc: datetime) -> tuple[int, datetime | None]:
    """Return how many readings a meter has at or after ``start_utc``, and the latest one's time."""
    stamps = read_readings(root, meter_id, start_utc=start_utc, columns=["timestamp"])["timestamp"]
    return len(stamps), (pc.max(stamps).as_py() if len(stamps) else None)


def _row_and_null_counts(filesystem: pafs.FileSystem, path: str) -> tuple[int, int]:
    """Return a partition's rows and null active powers, from its Parquet footer when it has null counts."""
    try:
        with filesystem.open_input_file(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        column = metadata.schema.names.index(TARGET_COLUMN)
        statistics = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    except (OSError, ValueError, pa.ArrowInvalid):
        statistics = [None]  # read the column below, which says what is wrong with the file
    if all(stats is not None and stats.has_null_count for stats in statistics):
        return metadata.num_rows, sum(stats.null_count for stats in statistics)
    power = _read_partition_file(filesystem, path, [TARGET_COLUMN])[TARGET_COLUMN]
    return len(power), power.null_count


def summarize_partitions(root: str) -> list[PartitionSummary]:
    """Return row and missing-reading counts of every partition, by meter, year and month (footers only)."""
    filesystem, base = _readings_base(root)
    summaries = []
    for meter_id in list_meters(root):
        for partition in _list_partitions(filesystem, base, meter_id):
            rows, missing = _row_and_null_counts(filesystem, partition.path)
            summaries.append(PartitionSummary(meter_id, partition.year, partition.month, rows, missing))
    return summaries


def _merge_partition(existing: pa.Table, incoming: pa.Table) -> tuple[pa.Table | None, int]:
    """Return (merged table or None when nothing changes, number of stored readings replaced)."""
    existing = existing.sort_by("timestamp")
    stored_us = pc.cast(existing["timestamp"], pa.int64()).to_numpy()
    incoming_us = pc.cast(incoming["timestamp"], pa.int64()).to_numpy()
    position = np.searchsorted(stored_us, incoming_us)
    clipped = np.minimum(position, max(len(stored_us) - 1, 0))
    if len(stored_us):
        found = (position < len(stored_us)) & (stored_us[clipped] == incoming_us)
    else:
        found = np.zeros(len(incoming_us), dtype=bool)
    same = found.copy()
    incoming_all_missing = np.ones(len(incoming_us), dtype=bool)
    for name in MEASURED_COLUMNS:
        new_values = incoming[name].to_numpy(zero_copy_only=False)
        old_values = existing[name].to_numpy(zero_copy_only=False)[clipped] if len(stored_us) else new_values
        same &= (new_values == old_values) | (np.isnan(new_values) & np.isnan(old_values))
        incoming_all_missing &= np.isnan(new_values)
    # A later all-missing line ("?") is no correction: it never erases a stored reading.
    changed = found & ~same & ~incoming_all_missing
    added = ~found
    if not changed.any() and not added.any():
        return None, 0
    keep = np.ones(len(stored_us), dtype=bool)
    keep[clipped[changed]] = False
    merged = pa.concat_tables([existing.filter(pa.array(keep)), incoming.filter(pa.array(changed | added))])
    return merged.sort_by("timestamp"), int(changed.sum())


def month_start_us(micros: int) -> int:
    """Return the first microsecond (UTC) of the month holding ``micros`` (UTC microseconds)."""
    return _month_start_us(_month_of_us(micros))


def _month_start_us(month_index: int) -> int:
    """Return the first microsecond (UTC) of a month counted from year 0 (``year * 12 + month - 1``)."""
    year, month = divmod(month_index, 12)
    return (datetime(year, month + 1, 1, tzinfo=_UTC) - _EPOCH) // timedelta(microseconds=1)


def _month_of_us(micros: int) -> int:
    stamp = _EPOCH + timedelta(microseconds=micros)
    return stamp.year * 12 + stamp.month - 1


def _partition_slices(times_us: np.ndarray, meter_starts: list[int]) -> list[tuple[int, int, int]]:
    """Return (first row, end row, month index) of each partition of rows sorted by meter and timestamp.

    Within one meter's rows (``meter_starts`` says where each meter begins) the month boundaries
    are found by binary search: O(months × log rows), not a calendar conversion of every row.
    """
    slices = []
    for start, stop in zip(meter_starts, [*meter_starts[1:], len(times_us)], strict=True):
        months = range(_month_of_us(int(times_us[start])), _month_of_us(int(times_us[stop - 1])) + 1)
        edges = np.searchsorted(times_us[start:stop], [_month_start_us(month) for month in months[1:]]) + start
        bounds = [start, *edges.tolist(), stop]
        slices += [(first, end, month) for first, end, month in zip(bounds, bounds[1:], months) if end > first]
    return slices


def _sorted_for_upsert(readings: pa.Table) -> tuple[pa.Table, np.ndarray, list[int]]:
    """Return (rows sorted by meter and timestamp, their UTC microseconds, the row where each meter begins).

    Raises
    ------
    StoreError
        If a meter and timestamp occur twice.
    """
    table = readings.select(READINGS_SCHEMA.names)
    times_us = pc.cast(table["timestamp"], pa.int64()).to_numpy()
    single_meter = pc.count_distinct(table["meter_id"]).as_py() == 1
    if not (single_meter and np.all(times_us[1:] >= times_us[:-1])):
        table = table.sort_by([("meter_id", "ascending"), ("timestamp", "ascending")])
        times_us = pc.cast(table["timestamp"], pa.int64()).to_numpy()
    if single_meter:
        meter_changes = np.zeros(len(times_us) - 1, dtype=bool)
    else:
        meters = table["meter_id"]
        meter_changes = pc.not_equal(meters[1:], meters[:-1]).to_numpy(zero_copy_only=False)
    if ((times_us[1:] == times_us[:-1]) & ~meter_changes).any():
        raise StoreError("readings to store hold the same meter and timestamp twice; resolve duplicates first")
    return table, times_us, [0, *(np.flatnonzero(meter_changes) + 1).tolist()]


def partition_parquet_bytes(table: pa.Table) -> bytes:
    """Return one partition's rows (``READINGS_FILE_SCHEMA``) as Parquet bytes (zstd).

    Only ``source_sha256`` (one or a few files' hashes) is dictionary-encoded: the measured floats
    gain nothing from a dictionary (their files come out slightly smaller without), and building
    one cost a third of the encoding time of a full-file ingest. ``source_sha256`` may come in
    dictionary-encoded (ingest tags a file's rows so: 4 bytes a row, not 64); the file does not
    store the Arrow schema, so it reads back as plain text, exactly ``READINGS_FILE_SCHEMA``.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", use_dictionary=["source_sha256"], store_schema=False)
    return sink.getvalue().to_pybytes()


def _file_columns(chunk: pa.Table, folder: str) -> pa.Table:
    """Return a partition's incoming rows as ``READINGS_FILE_SCHEMA``, ``source_sha256`` left dictionary-encoded if it is."""
    target = READINGS_FILE_SCHEMA
    sha_type = chunk.schema.field("source_sha256").type
    if pa.types.is_dictionary(sha_type) and pa.types.is_string(sha_type.value_type):
        index = target.get_field_index("source_sha256")
        target = target.set(index, target.field(index).with_type(sha_type))
    try:
        return chunk.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"readings for {folder} do not match READINGS_SCHEMA: {exc}") from exc


def _month_folder(meter_id: str, month_index: int) -> str:
    year, month = divmod(month_index, 12)
    return partition_folder(meter_id, year, month + 1)


def encode_partitions(readings: pa.Table) -> dict[str, EncodedPartition]:
    """Return the Parquet bytes of each partition of ``readings`` (``READINGS_SCHEMA`` rows), by folder.

    Ingest encodes the months a chronological file has moved past while it reads the rest; the
    upsert then only writes them (when those partitions are new and receive exactly these rows).
    """
    table, times_us, meter_starts = _sorted_for_upsert(readings)
    encoded = {}
    for first, end, month_index in _partition_slices(times_us, meter_starts):
        folder = _month_folder(table["meter_id"][first].as_py(), month_index)
        payload = partition_parquet_bytes(_file_columns(table.slice(first, end - first), folder))
        encoded[folder] = EncodedPartition(end - first, int(times_us[first]), int(times_us[end - 1]), payload)
    return encoded


def _matches(ready: EncodedPartition | None, incoming: pa.Table) -> bool:
    if ready is None or ready.rows != incoming.num_rows:
        return False
    stamps = incoming["timestamp"]
    return (stamps[0].value, stamps[-1].value) == (ready.first_us, ready.last_us)


def _upsert_partition(
    filesystem: pafs.FileSystem, base: str, meter_id: str, month_index: int, chunk: pa.Table,
    encoded: Mapping[str, EncodedPartition],
) -> tuple[str, int] | None:
    """Return (folder, readings replaced) after merging ``chunk`` into its partition, or None when nothing changed."""
    folder = _month_folder(meter_id, month_index)
    path = f"{base}/{folder}/{PARTITION_FILE}"
    incoming = _file_columns(chunk, folder)
    payload = None
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        existing = _read_partition_file(filesystem, path)
        merged, replaced = _merge_partition(existing, incoming.cast(READINGS_FILE_SCHEMA))
    else:
        merged, replaced = incoming, 0
        ready = encoded.get(folder)
        payload = ready.payload if _matches(ready, incoming) else None
    if merged is None:
        return None
    try:
        atomic_write_bytes(path, payload or partition_parquet_bytes(merged), filesystem=filesystem)
    except OSError as exc:
        raise StoreError(f"cannot write store partition {path}: {exc}") from exc
    return folder, replaced


def upsert_readings(
    root: str, readings: pa.Table, encoded: Mapping[str, EncodedPartition] | None = None
) -> UpsertOutcome:
    """Return what changed after merging ``readings`` into the store, one atomic rewrite per touched partition.

    Partitions are merged and written by a few threads at once (Parquet encoding, compression and
    fsync release the GIL); each write is atomic on its own, as before.

    Parameters
    ----------
    root : str
        Data root (path or URI).
    readings : pa.Table
        Rows with the ``READINGS_SCHEMA`` columns, at most one per (meter_id, timestamp).
    encoded : mapping of str to EncodedPartition, optional
        Partitions already encoded from exactly these rows (:func:`encode_partitions`), by folder:
        a new partition whose rows match is written from them instead of being encoded again.

    Raises
    ------
    StoreError
        If ``readings`` lacks a column, has a duplicate key, or a partition cannot be read or written
        (after every other partition's write has finished).
    """
    missing = [name for name in READINGS_SCHEMA.names if name not in readings.column_names]
    if missing:
        raise StoreError(f"readings to store lack column(s) {', '.join(missing)} of READINGS_SCHEMA")
    if readings.num_rows == 0:
        return UpsertOutcome(partitions_written=[], rows_replaced=0)
    table, times_us, meter_starts = _sorted_for_upsert(readings)
    filesystem, base = _readings_base(root)
    meter_ids = table["meter_id"]

    def upsert(piece: tuple[int, int, int]) -> tuple[str, int] | None:
        first, end, month_index = piece
        chunk = table.slice(first, end - first)
        return _upsert_partition(filesystem, base, meter_ids[first].as_py(), month_index, chunk, encoded or {})

    pieces = _partition_slices(times_us, meter_starts)
    if len(pieces) == 1:
        outcomes = [upsert(pieces[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(_WRITE_THREADS, len(pieces))) as pool:
            outcomes = list(pool.map(upsert, pieces))
    written = [outcome for outcome in outcomes if outcome is not None]
    return UpsertOutcome(
        partitions_written=[folder for folder, _ in written], rows_replaced=sum(replaced for _, replaced in written)
    )
