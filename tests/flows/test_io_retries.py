"""The flows' I/O tasks retry when the library's error was caused by a transient I/O failure."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from prefect import flow

from flows.tasks import IO_RETRIES, io_task
from powercast.core.errors import StoreError

pytestmark = pytest.mark.prefect_server


def _write_through_flaky_disk(counter: Path, failures: int, error: OSError) -> int:
    """Append one attempt to ``counter``; fail like a full disk (wrapped as the store does) the first times."""
    attempts = len(counter.read_text()) if counter.exists() else 0
    counter.write_text("x" * (attempts + 1))
    if attempts < failures:
        raise StoreError(f"cannot write {counter.name}: {error.strerror}") from error
    return attempts + 1


flaky_write = io_task(_write_through_flaky_disk)


@flow
def write_once(counter: Path, failures: int, error: OSError) -> int:
    return flaky_write(counter, failures, error)


def test_a_store_error_from_a_full_disk_is_retried_until_it_passes(prefect_harness: None, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    state = write_once(counter, IO_RETRIES - 1, OSError(errno.ENOSPC, "No space left on device"), return_state=True)
    assert state.is_completed()
    assert state.result() == IO_RETRIES  # failed twice, passed on the third attempt


def test_a_missing_file_is_not_retried(prefect_harness: None, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    state = write_once(counter, 1, FileNotFoundError(errno.ENOENT, "No such file"), return_state=True)
    assert state.is_failed()
    assert counter.read_text() == "x"  # one attempt only
