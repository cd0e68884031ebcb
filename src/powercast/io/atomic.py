"""Atomic file writes (temp name → fsync → rename) for local paths and pyarrow filesystems.

A reader either sees the previous complete file or the new complete file, never a partial one.
Temporary names start with ``.tmp-`` and end with ``.tmp`` so that neither dataset readers (which
skip files starting with ``.`` or ``_``) nor glob patterns such as ``*.parquet`` pick them up.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TEMP_PREFIX = ".tmp-"


def is_uri(root: str | Path) -> bool:
    """Return whether ``root`` is a URI such as ``s3://bucket/x`` rather than a local path."""
    return "://" in str(root)


def resolve_filesystem(root: str | Path) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path inside it) for a local path or a URI such as ``s3://bucket/x``."""
    text = str(root)
    if is_uri(text):
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).absolute())


def _temp_sibling(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/{TEMP_PREFIX}{name}-{uuid.uuid4().hex}.tmp"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, payload: bytes, filesystem: pafs.FileSystem | None = None) -> None:
    """Write ``payload`` to ``path`` so that readers see either the old or the new whole file."""
    if filesystem is None or isinstance(filesystem, pafs.LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(_temp_sibling(str(target)))
        try:
            with open(temp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        finally:
            if temp.exists():
                temp.unlink()
        _fsync_directory(target.parent)
        return
    target_str = str(path)
    filesystem.create_dir(target_str.rpartition("/")[0], recursive=True)
    temp_str = _temp_sibling(target_str)
    try:
        with filesystem.open_output_stream(temp_str) as stream:
            stream.write(payload)
        filesystem.move(temp_str, target_str)
    except BaseException:
        # Only a failed write can leave its temp file behind; a successful move consumed it.
        if filesystem.get_file_info(temp_str).type == pafs.FileType.File:
            filesystem.delete_file(temp_str)
        raise


def read_bytes(path: str | Path, filesystem: pafs.FileSystem | None = None) -> bytes | None:
    """Return the whole file at ``path``, or None when there is no such file (also when it vanishes mid-read)."""
    filesystem = filesystem or pafs.LocalFileSystem()
    target = str(path)
    if filesystem.get_file_info(target).type != pafs.FileType.File:
        return None
    try:
        with filesystem.open_input_stream(target) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def parquet_bytes(table: pa.Table, metadata: dict[str, str] | None = None, compression: str = "zstd") -> bytes:
    """Return ``table`` serialised as one Parquet file, with extra key-value metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def atomic_write_parquet(
    path: str | Path,
    table: pa.Table,
    metadata: dict[str, str] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> None:
    """Write ``table`` as a Parquet file at ``path`` atomically."""
    atomic_write_bytes(path, parquet_bytes(table, metadata), filesystem)


def atomic_write_json(path: str | Path, payload: Any, filesystem: pafs.FileSystem | None = None) -> None:
    """Write ``payload`` as indented JSON at ``path`` atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), filesystem)
