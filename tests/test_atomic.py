"""Atomic writes and whole-file reads on real local folders, through a path, a file:// URI or a pyarrow filesystem."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from powercast.atomic import read_bytes


def test_read_bytes_returns_the_whole_file_or_none_when_missing(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b'{"a": 1}')
    assert read_bytes(tmp_path / "card.json") == b'{"a": 1}'
    assert read_bytes(tmp_path / "missing.json") is None
    assert read_bytes(tmp_path) is None


def test_read_bytes_through_a_pyarrow_filesystem(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b"{}")
    assert read_bytes("card.json", pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())) == b"{}"
