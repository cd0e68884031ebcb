"""Cut a UCI file into one file per local day in a landing folder, to simulate nightly arrivals.

Each output file is ``<source stem>_<YYYY-MM-DD>.txt.gz``: the UCI header followed by that day's
lines exactly as they are in the source (missing ``?`` rows and damaged lines included, so ingest
sees what it would have seen). A line whose date cannot be read goes with the day of the line
before it (or after it, at the top of the file), so nothing is lost. The gzip bytes are
deterministic, so replaying twice gives byte-identical files (same sha256: a re-ingest is a
no-op), and a file whose content is already there is not rewritten.
"""

from __future__ import annotations

import gzip
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from powercast.core.errors import ConfigError, SourceFileError
from powercast.core.schemas import UCI_HEADER
from powercast.io.atomic import atomic_write_bytes, resolve_filesystem
from powercast.store.sources import iter_raw_batches, open_source
from powercast.store.validation import parse_uci_dates

_EPOCH = date(1970, 1, 1)


def _stem(path: str) -> str:
    name = path.rpartition("/")[2]
    for suffix in (".gz", ".txt", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _day_numbers(batch_dates: pa.Array, previous_day: int | None) -> np.ndarray:
    """Return float day numbers per line, NaN carried forward from the line before (or ``previous_day``)."""
    days = pc.cast(pc.cast(batch_dates, pa.int32()), pa.float64()).to_numpy(zero_copy_only=False)
    if previous_day is not None and np.isnan(days[0]):
        days[0] = previous_day
    valid = ~np.isnan(days)
    positions = np.where(valid, np.arange(len(days)), 0)
    np.maximum.accumulate(positions, out=positions)
    return days[positions]


def replay_days(
    source: str | Path,
    landing_dir: str | Path,
    start_day: date | None = None,
    n_days: int | None = None,
) -> list[Path]:
    """Return the day files (one UCI-format ``.txt.gz`` per local day) written or already present in ``landing_dir``.

    Parameters
    ----------
    source : str or Path
        A UCI-format file (plain or gzip).
    landing_dir : str or Path
        Folder to write the day files into (created if needed).
    start_day : date, optional
        First local day to cut; the file's first day by default.
    n_days : int, optional
        Number of calendar days from ``start_day``; to the end of the file by default. Days without
        lines produce no file.

    Raises
    ------
    SourceFileError
        If the source is missing, unreadable, or not in the UCI format.
    ConfigError
        If ``n_days`` is below 1.
    """
    if n_days is not None and n_days < 1:
        raise ConfigError(f"n_days={n_days}: replay needs at least one day (--days >= 1)")
    filesystem, path = resolve_filesystem(source)
    opened = open_source(path, filesystem)
    if opened.source_format.kind != "uci":
        raise SourceFileError(f"{path}: replay cuts UCI-format files only (this one is a {opened.source_format.kind} CSV)")
    first_wanted = None if start_day is None else (start_day - _EPOCH).days
    last_wanted = None if first_wanted is None or n_days is None else first_wanted + n_days - 1
    lines_by_day: dict[int, list[pa.Array]] = {}
    leading: list[pa.Array] = []
    previous_day: int | None = None
    for batch in iter_raw_batches(opened):
        days = _day_numbers(parse_uci_dates(pc.list_element(batch.fields, 0)), previous_day)
        unknown = np.isnan(days)
        if unknown.any():
            leading.append(batch.lines.filter(pa.array(unknown)))
        known_days = days[~unknown].astype(np.int64)
        if known_days.size == 0:
            continue
        known_lines = batch.lines.filter(pa.array(~unknown))
        if first_wanted is None:
            first_wanted = int(known_days.min())
            last_wanted = None if n_days is None else first_wanted + n_days - 1

        def wanted(day: int) -> bool:
            return first_wanted <= day and (last_wanted is None or day <= last_wanted)

        if previous_day is None and leading and wanted(int(known_days[0])):
            lines_by_day.setdefault(int(known_days[0]), []).extend(leading)
        leading = []
        previous_day = int(known_days[-1])
        for day in np.unique(known_days).tolist():
            if wanted(day):
                lines_by_day.setdefault(day, []).append(known_lines.filter(pa.array(known_days == day)))
    if previous_day is None:
        raise SourceFileError(f"{path}: no line has a valid d/m/yyyy date; nothing to replay")
    landing_fs, landing = resolve_filesystem(landing_dir)
    landing_fs.create_dir(landing, recursive=True)
    header = ";".join(UCI_HEADER)
    written = []
    for day in sorted(lines_by_day):
        text_lines = pa.chunked_array(lines_by_day[day]).to_pylist()
        payload = gzip.compress(("\n".join([header, *text_lines]) + "\n").encode("utf-8"), compresslevel=6, mtime=0)
        target = f"{landing.rstrip('/')}/{_stem(path)}_{(_EPOCH + timedelta(days=day)).isoformat()}.txt.gz"
        if not _has_content(landing_fs, target, payload):
            atomic_write_bytes(target, payload, landing_fs)
        written.append(Path(target))
    return written


def _has_content(filesystem: pafs.FileSystem, path: str, payload: bytes) -> bool:
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return False
    with filesystem.open_input_stream(path, compression=None) as stream:
        return stream.read() == payload
