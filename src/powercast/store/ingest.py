"""One source file, several, or a landing folder → readings store + quarantine + manifest.

For each file, in order: open and check it (exists, readable, known header), skip it when its
sha256 is already in the manifest, parse and validate every line, then write the touched store
partitions, the quarantined lines and finally the manifest row. A file that fails anywhere before
the writes (missing, unreadable, empty, truncated gzip, wrong header) raises ``SourceFileError``
and leaves the store exactly as it was. Every line is counted: ``rows_in = rows_stored +
rows_quarantined``.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from powercast.core.config import PowercastConfig
from powercast.core.errors import SourceFileError, StoreError
from powercast.core.schemas import (
    MANIFEST_SCHEMA,
    QUARANTINE_SCHEMA,
    TARGET_COLUMN,
    UTC_US,
)
from powercast.io.atomic import TEMP_PREFIX, is_uri, resolve_filesystem
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S, INGEST_LOCK_NAME, named_lock
from powercast.io.runs import new_run_id
from powercast.store.channels import split_channels
from powercast.store.manifest import append_manifest, find_ingested, ingested_sha256s
from powercast.store.quarantine import write_quarantine
from powercast.store.readings import (
    EncodedPartition,
    encode_partitions,
    future_cutoff_utc,
    month_start_us,
    upsert_readings,
)
from powercast.store.sources import (
    FieldBatch,
    NeedsLineReading,
    RawBatch,
    SourceFile,
    iter_field_batches,
    iter_raw_batches,
    open_source,
)
from powercast.store.validation import (
    REJECTED_SCHEMA,
    VALIDATED_SCHEMA,
    resolve_duplicates,
    validate_batch,
)


@dataclass(frozen=True)
class IngestReport:
    """What ingesting one source file did.

    Attributes
    ----------
    source_file : str
        Path (or URI path) of the file.
    source_sha256 : str
        sha256 of the file's bytes.
    run_id : str
        Run that ingested it (for a skipped file: the run that ingested it first).
    skipped : bool
        True when the file was already ingested (nothing was read or written).
    rows_in : int
        Data lines in the file (= rows_stored + rows_quarantined).
    rows_stored : int
        Lines now held by the store (new, replacing, or identical to a stored reading).
    rows_missing : int
        Stored lines whose measured values are all missing (``?``), kept as nulls.
    rows_quarantined : int
        Lines written to the quarantine with a reason code.
    rows_replaced : int
        Stored readings whose values this file changed (corrections).
    partitions_written : list of str
        Partition folders rewritten, relative to ``store/readings``.
    elapsed_s : float
        Wall-clock seconds spent on the file.
    """

    source_file: str
    source_sha256: str
    run_id: str
    skipped: bool
    rows_in: int
    rows_stored: int
    rows_missing: int
    rows_quarantined: int
    rows_replaced: int
    partitions_written: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _expand(paths: Sequence[str | Path]) -> Iterator[tuple[pafs.FileSystem, str, bool]]:
    """Yield (filesystem, path, came_from_a_directory) for every file named or inside a named folder."""
    if not paths:
        raise SourceFileError("no path given: name at least one file or landing folder to ingest")
    for given in paths:
        filesystem, path = resolve_filesystem(given)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            children = filesystem.get_file_info(pafs.FileSelector(path, recursive=False))
            for child in sorted(children, key=lambda item: item.base_name):
                hidden = child.base_name.startswith((".", "_", TEMP_PREFIX))
                if child.type == pafs.FileType.File and not hidden:
                    yield filesystem, child.path, True
        else:
            yield filesystem, path, False


def _should_show_progress(source: SourceFile, config: PowercastConfig, progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return source.size_bytes >= config.ingest.progress_min_bytes and sys.stderr.isatty()


def _raw_lines_at(source: SourceFile, line_numbers: pa.Array) -> pa.Table:
    """Return (line_number, raw_line) for the given lines, by reading the file once more."""
    found = []
    for batch in iter_raw_batches(source):
        wanted = pc.is_in(batch.line_numbers, value_set=line_numbers)
        if pc.any(wanted).as_py():
            found.append(pa.table({"line_number": batch.line_numbers.filter(wanted), "raw_line": batch.lines.filter(wanted)}))
    return pa.concat_tables(found) if found else pa.table({"line_number": pa.array([], pa.int64()), "raw_line": pa.array([], pa.string())})


def _skipped_report(source: SourceFile, first_run_id: str, started: float) -> IngestReport:
    return IngestReport(
        source_file=source.path,
        source_sha256=source.sha256,
        run_id=first_run_id,
        skipped=True,
        rows_in=0,
        rows_stored=0,
        rows_missing=0,
        rows_quarantined=0,
        rows_replaced=0,
        partitions_written=[],
        elapsed_s=time.perf_counter() - started,
    )


_READ_AHEAD_BATCHES = 2
_END = object()


def _read_ahead(batches: Iterator[RawBatch | FieldBatch]) -> Iterator[RawBatch | FieldBatch]:
    """Yield ``batches``, read by a background thread up to ``_READ_AHEAD_BATCHES`` ahead.

    Decompressing and splitting the next batch (pyarrow, without the GIL) runs on one core while
    the caller validates the current one on another. An error of the reader is raised here, in
    order; when the caller stops early, the reader stops and closes its file.
    """
    ready: queue.Queue = queue.Queue(maxsize=_READ_AHEAD_BATCHES)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put((batch, None)):
                    break
            else:
                put((_END, None))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            put((_END, exc))
        finally:
            batches.close()

    reader = threading.Thread(target=read, name="powercast-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            batch, error = ready.get()
            if batch is _END:
                if error is not None:
                    raise error
                return
            yield batch
    finally:
        stop.set()
        reader.join()


def _validate_batches(
    batches: Iterator[RawBatch | FieldBatch],
    source: SourceFile,
    config: PowercastConfig,
    future_from_utc: datetime,
    ahead: _EncodeAhead | None = None,
) -> tuple[pa.Table, pa.Table, int]:
    """Return (readings, rejected lines, data lines read) of every batch, before duplicates are resolved."""
    readings_parts = [VALIDATED_SCHEMA.empty_table()]
    rejected_parts = [REJECTED_SCHEMA.empty_table()]
    rows_in = 0
    for batch in batches:
        validated = validate_batch(batch, source.source_format, config.ingest, future_from_utc)
        readings_parts.append(validated.readings)
        rejected_parts.append(validated.rejected)
        rows_in += batch.n_rows if isinstance(batch, FieldBatch) else len(batch.lines)
        if ahead is not None:
            ahead.add(validated.readings)
    return pa.concat_tables(readings_parts), pa.concat_tables(rejected_parts), rows_in


def _read_by_fields(
    source: SourceFile, config: PowercastConfig, show: bool, future_from_utc: datetime
) -> tuple[pa.Table, pa.Table, int, dict[str, EncodedPartition] | None]:
    """Return (readings, rejected lines, data lines read, partitions encoded ahead) from the field reader.

    The partitions are None unless the readings are one meter's in strictly increasing time
    (then they need no sorting and hold no duplicate).

    Raises
    ------
    NeedsLineReading
        As soon as the field reader meets a line it cannot classify alone.
    """
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="powercast-encode-ahead")
    try:
        ahead = _EncodeAhead(config, source, pool)
        # closing(): an error in validation stops the reader thread and closes the file now, not
        # whenever the traceback (which an orchestrator keeps in its state) is freed.
        with closing(_read_ahead(iter_field_batches(source, progress=show))) as batches:
            readings, rejected, rows_in = _validate_batches(batches, source, config, future_from_utc, ahead)
        encoded = ahead.encoded() if ahead.strictly_increasing else None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if rejected.num_rows:
        # The field reader keeps no raw text: the quarantined lines' text is read from the file again.
        texts = _raw_lines_at(source, rejected["line_number"])
        with_text = rejected.drop_columns(["raw_line"]).join(texts, keys="line_number")
        if with_text.num_rows != rejected.num_rows or with_text["raw_line"].null_count:
            raise StoreError(
                f"{source.path}: the text of {rejected.num_rows} quarantined line(s) could not all be read back "
                "(this is a bug in powercast, please report it); nothing was written"
            )
        rejected = with_text.select(REJECTED_SCHEMA.names).cast(REJECTED_SCHEMA)
    return readings, rejected, rows_in, encoded


def _validated_lines(
    source: SourceFile, config: PowercastConfig, progress: bool | None, future_from_utc: datetime
) -> tuple[pa.Table, pa.Table, int, dict[str, EncodedPartition]]:
    """Return (readings with one line per meter and timestamp, rejected lines, data lines read,
    partitions encoded ahead) of one file.

    The fast field reader goes first; a file with a line it cannot classify alone (another field
    count, an empty line, a measured text that is neither a number nor a missing marker, bytes that
    are not UTF-8) is read again line by line, which classifies every line (or raises
    ``SourceFileError`` for an unreadable file). Both give the same readings and quarantine
    (tests/store/test_field_reader.py); such a file costs one more read.
    """
    show = _should_show_progress(source, config, progress)
    try:
        all_readings, rejected, rows_in, encoded = _read_by_fields(source, config, show, future_from_utc)
    except NeedsLineReading:
        batches = iter_raw_batches(source, progress=show)
        all_readings, rejected, rows_in = _validate_batches(batches, source, config, future_from_utc)
        encoded = None
    if encoded is not None:  # one meter in strictly increasing time: sorted, and no duplicate to resolve
        return all_readings, rejected, rows_in, encoded
    readings, duplicates = resolve_duplicates(all_readings)
    del all_readings  # a full UCI file is millions of rows: drop each intermediate as soon as the next one exists
    if duplicates.num_rows:
        # Validation kept no raw text for good lines; a duplicate's text is read back from the file.
        with_text = duplicates.join(_raw_lines_at(source, duplicates["line_number"]), keys="line_number")
        rejected = pa.concat_tables([rejected, with_text.select(REJECTED_SCHEMA.names).cast(REJECTED_SCHEMA)])
    return readings, rejected, rows_in, {}


def _check_every_line_counted(source: SourceFile, rows_in: int, readings: pa.Table, rejected: pa.Table) -> None:
    """Raise ``StoreError`` unless every line read is either a reading or a rejected line."""
    if readings.num_rows + rejected.num_rows != rows_in:
        raise StoreError(
            f"{source.path}: {rows_in} lines read but {readings.num_rows} stored + {rejected.num_rows} quarantined; "
            "nothing was written (this is a bug in powercast, please report it)"
        )


def _rows_to_store(config: PowercastConfig, source: SourceFile, readings: pa.Table) -> pa.Table:
    """Return validated readings as the store's rows, tagged with the file's sha256.

    A UCI file's lines become one row per line and configured channel meter (``ingest.channel_meters``).
    """
    if source.source_format.kind == "uci":
        readings = split_channels(readings, config.ingest.channel_meters)
    # Dictionary-encoded (4 bytes a row, not 64); a partition's file holds it as text.
    sha_column = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(readings.num_rows, dtype=np.int32)), pa.array([source.sha256])
    )
    return readings.drop_columns(["line_number"]).append_column("source_sha256", sha_column)


class _EncodeAhead:
    """Encodes the partitions of the months a UCI file has moved past, while the rest of it is read.

    A UCI file is one house in time order: once its lines reach a new month, the months before it
    are complete. While every line so far is later than the one before (so there can be no
    duplicate either), the months before the latest line's are encoded on a worker thread; the
    upsert then writes the bytes of the partitions that are new. The first line out of order stops it (the upsert
    encodes everything, as always). Nothing is written here, so a file that fails later leaves
    the store as it was.
    """

    def __init__(self, config: PowercastConfig, source: SourceFile, pool: ThreadPoolExecutor) -> None:
        self.config, self.source, self.pool = config, source, pool
        self.active = source.source_format.kind == "uci"
        self.pending: list[pa.Table] = []  # validated rows of the month not known complete yet
        self.pending_us: list[np.ndarray] = []  # their UTC microseconds
        self.last_us: int | None = None
        self.futures: list[Future] = []

    def add(self, readings: pa.Table) -> None:
        """Take one batch's validated readings, in file order."""
        if not self.active or readings.num_rows == 0:
            return
        times = pc.cast(readings["timestamp"], pa.int64()).to_numpy()
        if (self.last_us is not None and times[0] <= self.last_us) or not np.all(times[1:] > times[:-1]):
            self.active, self.pending, self.pending_us, self.futures = False, [], [], []
            return
        self.last_us = int(times[-1])
        self.pending.append(readings)
        self.pending_us.append(times)
        pending_us = np.concatenate(self.pending_us)
        complete = int(np.searchsorted(pending_us, month_start_us(self.last_us)))
        if complete:
            pending = pa.concat_tables(self.pending)
            self.futures.append(self.pool.submit(self._encode, pending.slice(0, complete)))
            self.pending, self.pending_us = [pending.slice(complete)], [pending_us[complete:]]

    def _encode(self, readings: pa.Table) -> dict[str, EncodedPartition]:
        return encode_partitions(_rows_to_store(self.config, self.source, readings))

    @property
    def strictly_increasing(self) -> bool:
        """Return whether every line so far is later than the one before (one meter: no duplicate, in key order)."""
        return self.active

    def encoded(self) -> dict[str, EncodedPartition]:
        """Return the partitions encoded ahead, by folder (none once a line came out of order)."""
        if not self.active:
            return {}
        return {folder: part for future in self.futures for folder, part in future.result().items()}


def _quarantine_rows(source: SourceFile, run_id: str, rejected: pa.Table, now: pa.Scalar) -> pa.Table:
    """Return the rejected lines, in line order, as ``QUARANTINE_SCHEMA`` rows of this file and run."""
    quarantined = rejected.sort_by("line_number")
    n_quarantined = quarantined.num_rows
    return pa.table(
        {
            "source_file": pa.repeat(pa.scalar(source.path), n_quarantined),
            "source_sha256": pa.repeat(pa.scalar(source.sha256), n_quarantined),
            "line_number": quarantined["line_number"],
            "raw_line": quarantined["raw_line"],
            "reason": quarantined["reason"],
            "detail": quarantined["detail"],
            "run_id": pa.repeat(pa.scalar(run_id), n_quarantined),
            "quarantined_at": pa.repeat(now, n_quarantined),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _manifest_row(report: IngestReport, now: pa.Scalar) -> pa.Table:
    """Return the one ``MANIFEST_SCHEMA`` row recording an ingested file."""
    return pa.table(
        {
            "source_file": [report.source_file],
            "source_sha256": [report.source_sha256],
            "run_id": [report.run_id],
            "ingested_at": pa.array([now.as_py()], UTC_US),
            "rows_in": [report.rows_in],
            "rows_stored": [report.rows_stored],
            "rows_missing": [report.rows_missing],
            "rows_quarantined": [report.rows_quarantined],
            "rows_replaced": [report.rows_replaced],
            "partitions_written": [len(report.partitions_written)],
        },
        schema=MANIFEST_SCHEMA,
    )


def ingest_file(source: SourceFile, config: PowercastConfig, run_id: str, progress: bool | None = None) -> IngestReport:
    """Return the report of ingesting one opened source file (not yet in the manifest).

    Raises
    ------
    SourceFileError
        If the file cannot be read to its end; nothing is written then.
    StoreError
        If the store, quarantine or manifest cannot be written.
    """
    started = time.perf_counter()
    ingested_at = datetime.now(timezone.utc)
    future_from = future_cutoff_utc(config.ingest.future_tolerance_h, ingested_at)
    readings, rejected, rows_in, encoded = _validated_lines(source, config, progress, future_from)
    _check_every_line_counted(source, rows_in, readings, rejected)
    now = pa.scalar(ingested_at, type=UTC_US)
    # Store, then quarantine, then manifest: the manifest row is written last, so a file whose
    # writes failed part-way is not recorded as ingested and is ingested again next time.
    outcome = upsert_readings(config.root, _rows_to_store(config, source, readings), encoded)
    quarantine = _quarantine_rows(source, run_id, rejected, now)
    write_quarantine(config.root, run_id, source.sha256, quarantine)
    report = IngestReport(
        source_file=source.path,
        source_sha256=source.sha256,
        run_id=run_id,
        skipped=False,
        rows_in=rows_in,
        rows_stored=readings.num_rows,
        rows_missing=readings[TARGET_COLUMN].null_count,
        rows_quarantined=quarantine.num_rows,
        rows_replaced=outcome.rows_replaced,
        partitions_written=outcome.partitions_written,
        elapsed_s=time.perf_counter() - started,
    )
    append_manifest(config.root, _manifest_row(report, now))
    return report


def _ingest_lock(root: str, timeout_s: float, holder: str) -> AbstractContextManager[object]:
    """Return the ingest lock of a local data root; a URI root has no file locks (see powercast.io.locking)."""
    if is_uri(root):
        return nullcontext()
    return named_lock(root, INGEST_LOCK_NAME, timeout_s=timeout_s, holder=holder)


def ingest_paths(
    paths: Sequence[str | Path],
    config: PowercastConfig,
    run_id: str | None = None,
    progress: bool | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> list[IngestReport]:
    """Return one report per file ingested or skipped, after ingesting files and landing folders in order.

    A named file already ingested (same sha256) is reported as skipped. A folder contributes every
    regular, non-hidden file in it (sorted by name) not ingested yet; its already-ingested files
    are passed over without a report.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and/or folders (local paths or URIs).
    config : PowercastConfig
        Data root, source clock, physical limits.
    run_id : str, optional
        Run id recorded in the manifest and quarantine; a fresh one by default.
    progress : bool, optional
        Force the progress bar on or off; by default shown for large files when stderr is a terminal.
    lock_timeout_s : float
        How long to wait for another process's ingest to finish. A local data root holds the
        ``_ingest`` lock for the whole call (reentrant, so a caller may already hold it); a URI
        root has no file locks, so its writers must be serialised by the orchestrator.

    Raises
    ------
    SourceFileError
        At the first bad file (missing, unreadable, empty, truncated gzip, wrong header); files
        before it stay ingested and nothing of the bad file is written.
    LockedError
        When another process still holds the ingest lock after ``lock_timeout_s``; nothing is written.
    """
    run = run_id or new_run_id("ingest")
    with _ingest_lock(config.root, lock_timeout_s, run):
        done = ingested_sha256s(config.root)
        reports = []
        for filesystem, path, from_directory in _expand(paths):
            started = time.perf_counter()
            source = open_source(path, filesystem)
            if source.sha256 in done:
                if not from_directory:
                    first = find_ingested(config.root, source.sha256) or {"run_id": run}
                    reports.append(_skipped_report(source, first["run_id"], started))
                continue
            reports.append(ingest_file(source, config, run, progress))
            done.add(source.sha256)
    return reports
