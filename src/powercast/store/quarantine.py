"""Quarantined source lines: the raw text, source file, line number and reason, as Parquet.

Layout: ``store/quarantine/run_id=<run>/part-<sha12>.parquet`` (``QUARANTINE_SCHEMA``), one file
per ingested source file that had at least one quarantined line.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from powercast.core.errors import StoreError
from powercast.core.schemas import QUARANTINE_SCHEMA
from powercast.io import layout
from powercast.io.atomic import atomic_write_parquet, resolve_filesystem


def _quarantine_base(root: str) -> tuple[pafs.FileSystem, str]:
    filesystem, base = resolve_filesystem(root)
    return filesystem, layout.quarantine_dir(base)


def write_quarantine(root: str, run_id: str, source_sha256: str, rows: pa.Table) -> str | None:
    """Return the path written for one source file's quarantined rows, or None when there are none.

    Raises
    ------
    StoreError
        If ``rows`` does not match ``QUARANTINE_SCHEMA`` or the write fails.
    """
    if rows.num_rows == 0:
        return None
    try:
        table = rows.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"quarantine rows do not match QUARANTINE_SCHEMA: {exc}") from exc
    filesystem, base = _quarantine_base(root)
    path = f"{base}/run_id={run_id}/part-{source_sha256[:12]}.parquet"
    try:
        atomic_write_parquet(path, table, filesystem=filesystem)
    except OSError as exc:
        raise StoreError(f"cannot write quarantine file {path}: {exc}") from exc
    return path


def read_quarantine(root: str) -> pa.Table:
    """Return every quarantined line in the store (``QUARANTINE_SCHEMA``), oldest run first.

    Raises
    ------
    StoreError
        If a quarantine file cannot be read.
    """
    filesystem, base = _quarantine_base(root)
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    paths = sorted(
        info.path
        for info in infos
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
    )
    tables = []
    for path in paths:
        try:
            with filesystem.open_input_file(path) as handle:
                tables.append(pq.ParquetFile(handle).read().select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA))
        except (OSError, KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreError(f"cannot read quarantine file {path}: {exc}") from exc
    return pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()
