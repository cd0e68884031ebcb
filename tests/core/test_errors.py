"""Which failures are worth retrying: an I/O error anywhere down the chain, unless it is permanent."""

from __future__ import annotations

import errno

from powercast.core.errors import StoreError, transient_io_cause


def _wrapped(cause: BaseException) -> StoreError:
    try:
        try:
            raise cause
        except OSError as exc:
            raise StoreError("cannot write store/readings/meter_id=m/part-0.parquet") from exc
    except StoreError as outer:
        return outer


def test_a_library_error_caused_by_a_full_disk_is_transient() -> None:
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    assert transient_io_cause(_wrapped(disk_full)) is disk_full


def test_a_missing_file_or_a_permission_error_is_permanent() -> None:
    assert transient_io_cause(_wrapped(FileNotFoundError(errno.ENOENT, "gone"))) is None
    assert transient_io_cause(_wrapped(PermissionError(errno.EACCES, "denied"))) is None


def test_bad_data_is_never_retried() -> None:
    assert transient_io_cause(StoreError("readings hold the same meter and timestamp twice")) is None
    assert transient_io_cause(ValueError("not a number")) is None
