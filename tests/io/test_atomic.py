"""Atomic writes and whole-file reads on real local folders, through a path, a file:// URI or a pyarrow filesystem."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from powercast.io.atomic import (
    TEMP_PREFIX,
    atomic_write_bytes,
    atomic_write_parquet,
    read_bytes,
    resolve_filesystem,
)


def test_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "batch.bin"
    atomic_write_bytes(target, b"a much longer first version")
    atomic_write_bytes(target, b"short")
    assert target.read_bytes() == b"short"
    assert [path.name for path in target.parent.iterdir()] == ["batch.bin"]


def test_write_through_a_pyarrow_filesystem_replaces_the_whole_file(tmp_path: Path) -> None:
    filesystem = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    atomic_write_bytes("out/batch.bin", b"a much longer first version", filesystem)
    atomic_write_bytes("out/batch.bin", b"short", filesystem)
    assert (tmp_path / "out" / "batch.bin").read_bytes() == b"short"
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["batch.bin"]


def test_a_failed_local_move_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inner").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"payload")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]


def test_a_failed_filesystem_move_leaves_no_temp_file(tmp_path: Path) -> None:
    filesystem = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    (tmp_path / "taken" / "inner").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write_bytes("taken", b"payload", filesystem)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]


def test_a_leftover_temp_file_is_skipped_by_dataset_readers(tmp_path: Path) -> None:
    atomic_write_parquet(tmp_path / "part-0.parquet", pa.table({"x": [1, 2]}))
    (tmp_path / f"{TEMP_PREFIX}part-1.parquet-0a1b.tmp").write_bytes(b"half a file")
    assert ds.dataset(tmp_path, format="parquet").to_table()["x"].to_pylist() == [1, 2]


def test_read_bytes_returns_the_whole_file_or_none_when_missing(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b'{"a": 1}')
    assert read_bytes(tmp_path / "card.json") == b'{"a": 1}'
    assert read_bytes(tmp_path / "missing.json") is None
    assert read_bytes(tmp_path) is None


def test_read_bytes_through_a_pyarrow_filesystem(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b"{}")
    assert read_bytes("card.json", pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())) == b"{}"


def test_a_relative_path_resolves_to_the_local_filesystem_and_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    filesystem, path = resolve_filesystem("data/root")
    assert isinstance(filesystem, pafs.LocalFileSystem)
    assert path == str(tmp_path / "data" / "root")


def test_a_file_uri_resolves_to_the_local_filesystem_and_its_path(tmp_path: Path) -> None:
    filesystem, path = resolve_filesystem((tmp_path / "root").as_uri())
    assert isinstance(filesystem, pafs.LocalFileSystem)
    assert path == str(tmp_path / "root")
