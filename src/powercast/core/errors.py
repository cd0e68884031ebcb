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
