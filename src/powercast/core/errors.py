"""Specific exceptions; every message says what was wrong, where, and what to do."""

from __future__ import annotations


class PowercastError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigError(PowercastError, ValueError):
    """A configuration value or parameter is invalid (a ValueError so pydantic reports its field)."""


class SourceFileError(PowercastError):
    """A raw input file cannot be ingested (missing, unreadable, truncated, empty, wrong header)."""


class StoreError(PowercastError):
    """The Parquet store is missing, inconsistent or cannot be written."""


class DataPreparationError(PowercastError):
    """Readings cannot be turned into windows (too little data, NaN reaching a model, ...)."""


class TrainingError(PowercastError):
    """Training failed (NaN/inf loss, no valid windows); the champion stays in place."""


class RegistryError(PowercastError):
    """The model registry has no such model or an unreadable entry."""


class ForecastError(PowercastError):
    """A forecast batch cannot be made, published or read."""


class LockedError(PowercastError):
    """Another run holds the lock for this meter; nothing was written."""


# I/O failures that come back the same however often they are retried.
PERMANENT_IO_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def transient_io_cause(exc: BaseException | None) -> OSError | None:
    """Return the I/O error behind ``exc`` (itself, or a cause in its chain) worth retrying, else None.

    The library wraps I/O failures in its own errors (``StoreError`` from an ``OSError``), so an
    orchestrator deciding whether to retry must look down the chain, not at the outer type. A
    missing file or a permission error is permanent; a full disk, a reset connection or an
    object store's throttling may pass.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and not isinstance(exc, PERMANENT_IO_ERRORS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
