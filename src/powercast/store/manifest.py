"""Which source files (by sha256) were ingested, when, by which run, with their row counts.

The manifest is one Parquet file, ``store/manifest.parquet`` (``MANIFEST_SCHEMA``), rewritten
atomically with one more row per ingested file. It is written last for each file, so a file is
listed only once its readings and quarantined rows are safely in the store.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from powercast.core.errors import StoreError
from powercast.core.schemas import MANIFEST_SCHEMA
from powercast.io import layout
from powercast.io.atomic import atomic_write_parquet, resolve_filesystem


def _manifest_location(root: str) -> tuple[pafs.FileSystem, str]:
    filesystem, base = resolve_filesystem(root)
    return filesystem, layout.manifest_path(base)


def read_manifest(root: str) -> pa.Table:
    """Return every manifest row (``MANIFEST_SCHEMA``); an empty table when nothing was ingested yet.

    Raises
    ------
    StoreError
        If the manifest exists but cannot be read or has another schema.
    """
    filesystem, path = _manifest_location(root)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return MANIFEST_SCHEMA.empty_table()
    try:
        with filesystem.open_input_file(path) as handle:
            table = pq.ParquetFile(handle).read()
        return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    except (OSError, KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"cannot read the ingest manifest {path}: {exc}; restore it from a backup") from exc


def ingested_sha256s(root: str) -> set[str]:
    """Return the sha256 of every source file already ingested."""
    return set(read_manifest(root)["source_sha256"].to_pylist())


def find_ingested(root: str, sha256: str) -> dict[str, Any] | None:
    """Return the manifest row of the file with this sha256 as a dict, or None if it was never ingested."""
    manifest = read_manifest(root)
    matches = manifest.filter(pc.equal(manifest["source_sha256"], sha256))
    return matches.slice(0, 1).to_pylist()[0] if matches.num_rows else None


def append_manifest(root: str, rows: pa.Table) -> None:
    """Add ``rows`` (``MANIFEST_SCHEMA``) to the manifest with one atomic rewrite.

    Raises
    ------
    StoreError
        If ``rows`` does not match ``MANIFEST_SCHEMA``, repeats an ingested sha256, or the write fails.
    """
    try:
        new_rows = rows.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"manifest rows do not match MANIFEST_SCHEMA: {exc}") from exc
    current = read_manifest(root)
    repeated = set(new_rows["source_sha256"].to_pylist()) & set(current["source_sha256"].to_pylist())
    if repeated:
        raise StoreError(f"source file(s) with sha256 {', '.join(sorted(repeated))} are already in the manifest")
    filesystem, path = _manifest_location(root)
    try:
        atomic_write_parquet(path, pa.concat_tables([current, new_rows]), filesystem=filesystem)
    except OSError as exc:
        raise StoreError(f"cannot write the ingest manifest {path}: {exc}") from exc
